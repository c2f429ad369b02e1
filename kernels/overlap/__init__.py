"""PSF x sky-map spatial overlap: the heavy part of the LLAMA statistic (Numba).

For neutrino ``i`` with direction ``n_i``, 1-sigma error ``sigma_i`` [rad] and sky
weight ``a_i`` constant in sin(dec) bands, and a sky map of probability density
``rho`` [sr^-1]::

    overlap[i]  = integral rho(Omega) G_i(Omega) dOmega                     [sr^-1]
    weighted[i] = integral rho(Omega) w(Omega) a_i(sin dec) G_i dOmega

where ``G_i`` is the PSF (``PSF_GAUSS``: O3's 2-D Gaussian; ``PSF_VMF``: von
Mises-Fisher), ``w`` the per-pixel weight and ``a_i`` one row per neutrino over sin(dec)
bands (in the LLAMA statistic the signal energy density a(eps_i, theta = 90 deg + dec)
[GeV^-1], historically "A_eff"), clamped at its edges. Since the map is piecewise
constant, ``overlap`` is ``sum_pix P_gw(pix) * <G_i>_pix``: the same number at any map
resolution. Pairs take ``G_i G_j`` and ``a_i a_j``.

Use: :func:`prepare_map` (multi-order) or :func:`prepare_map_flat` (flat NESTED) once
per map, then :func:`psf_overlap_prepared` and :func:`psf_pair_overlap_prepared` as
often as needed (concatenate many neutrino lists into one call for trials).

Modules, by concern:

* :mod:`.api`: the public functions (checks, records, serial or parallel kernel);
* :mod:`.records`: the prepared map, neutrinos, signal rows and accuracy as named
  records;
* :mod:`.psf`: PSF values, norms and local shape;
* :mod:`.bands`: the sin(dec) bands of the sky weight and the control variate's exact
  band integrals;
* :mod:`.tree`: building the map's quadtree (or a flat map's pyramid) and what a node
  knows;
* :mod:`.traversal`: the best-first traversal for one neutrino and its batch drivers;
* :mod:`.pairs`: the same for pairs, with the product's own control variate;
* :mod:`.common`: tolerances, per-order tables, how functions are compiled.

Examples
--------
>>> import numpy as np
>>> from kernels.overlap import PSF_VMF, prepare_map, psf_overlap_prepared
>>> pm = prepare_map(4 + np.arange(12), np.full(12, 1 / (4 * np.pi)))  # uniform sky
>>> ov, wt = psf_overlap_prepared(pm, [1.0], [0.2], [0.01], [[2.0]], [-1.0, 1.0], PSF_VMF)
>>> bool(np.isclose(ov[0] * 4 * np.pi, 1.0)), bool(np.isclose(wt[0] * 4 * np.pi, 2.0))
(True, True)
"""

from .api import (
    prepare_map,
    prepare_map_flat,
    psf_overlap_prepared,
    psf_overlap_targets,
    psf_pair_overlap_prepared,
    psf_pair_overlap_targets,
)
from .common import ATOL, RES, RTOL
from .psf import PSF_GAUSS, PSF_VMF, psf_norm
from .records import Accuracy, Neutrinos, PreparedMap, SignalRows

__all__ = [
    "ATOL",
    "PSF_GAUSS",
    "PSF_VMF",
    "RES",
    "RTOL",
    "Accuracy",
    "Neutrinos",
    "PreparedMap",
    "SignalRows",
    "prepare_map",
    "prepare_map_flat",
    "psf_norm",
    "psf_overlap_prepared",
    "psf_overlap_targets",
    "psf_pair_overlap_prepared",
    "psf_pair_overlap_targets",
]
