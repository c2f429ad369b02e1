"""Numba compute layer: pure functions over arrays (no I/O, no Dask, no ``llama`` imports).

``kernels.healpix``: NESTED / NUNIQ index math. ``kernels.overlap``: the PSF x sky-map
spatial overlap that dominates the LLAMA statistic, batched over many neutrinos: prepare
a map once (``prepare_map``, ``prepare_map_flat``), then evaluate on it
(``psf_overlap_prepared``, ``psf_pair_overlap_prepared``).

Compilation: every kernel is compiled by Numba on its first call, for one type per
argument (the Python side converts), and kept in Numba's on-disk cache
(``cache=True``: ``__pycache__`` here, or ``NUMBA_CACHE_DIR``); importing compiles
nothing (``kernels.plain`` evaluates the plain Python of kernels that module-level
tables need). ``llama warm`` fills the cache at install time, in parallel processes.
A cached kernel's entry is stamped with all of this package's sources
(``kernels.cache_stamp``): an edit in any file recompiles every kernel at its next use,
since a caller's compiled code holds the helpers it calls from other files.
"""

from pathlib import Path as _Path

from . import cache_stamp as _cache_stamp
from .lean_blas import load_blas_alone as _load_blas_alone

# before Numba's CPU target first loads its registries (at the first kernel): ~0.25 s
# of scipy.linalg's import spared in every process that runs kernels
_load_blas_alone()

# before any kernel module runs its decorators: Numba reads the stamp there
_cache_stamp.install(_Path(__file__).parent)

from .healpix import (  # noqa: E402 (after the stamp is installed)
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
from .overlap import (  # noqa: E402
    PSF_GAUSS,
    PSF_VMF,
    PreparedMap,
    prepare_map,
    prepare_map_flat,
    psf_norm,
    psf_overlap_prepared,
    psf_pair_overlap_prepared,
)

__all__ = [
    "PSF_GAUSS",
    "PSF_VMF",
    "PreparedMap",
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
    "prepare_map",
    "prepare_map_flat",
    "psf_norm",
    "psf_overlap_prepared",
    "psf_pair_overlap_prepared",
    "uniq_to_order_ipix",
    "uniq_to_order_ipix_array",
    "vec2pix_nest",
]
