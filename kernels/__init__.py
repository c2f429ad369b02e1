"""Numba compute layer: pure functions over arrays (no I/O, no Dask, no ``llama`` imports).

``kernels.healpix``: NESTED / NUNIQ index math. ``kernels.overlap``: the PSF x sky-map
spatial overlap that dominates the LLAMA statistic, batched over many neutrinos.
"""

from .healpix import (
    ang2pix_nest,
    angular_distance,
    children_nest,
    max_pixrad,
    nested_range,
    order_ipix_to_uniq,
    parent_nest,
    pix2ang_nest,
    pix2vec_nest,
    pix2vec_nest_array,
    pixel_area,
    pixel_distance_bounds,
    pixel_may_intersect_disc,
    pixel_resol,
    uniq_to_order_ipix,
    uniq_to_order_ipix_array,
    vec2pix_nest,
)
from .overlap import (
    PSF_GAUSS,
    PSF_VMF,
    aeff_lookup,
    psf_norm,
    psf_overlap,
    psf_overlap_flat,
    psf_pair_overlap,
    psf_pair_overlap_flat,
)

__all__ = [
    "PSF_GAUSS",
    "PSF_VMF",
    "aeff_lookup",
    "ang2pix_nest",
    "angular_distance",
    "children_nest",
    "max_pixrad",
    "nested_range",
    "order_ipix_to_uniq",
    "parent_nest",
    "pix2ang_nest",
    "pix2vec_nest",
    "pix2vec_nest_array",
    "pixel_area",
    "pixel_distance_bounds",
    "pixel_may_intersect_disc",
    "pixel_resol",
    "psf_norm",
    "psf_overlap",
    "psf_overlap_flat",
    "psf_pair_overlap",
    "psf_pair_overlap_flat",
    "uniq_to_order_ipix",
    "uniq_to_order_ipix_array",
    "vec2pix_nest",
]
