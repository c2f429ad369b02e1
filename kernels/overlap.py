"""PSF x sky-map spatial overlap: the heavy part of the LLAMA statistic (Numba).

For neutrino ``i`` with direction ``n_i``, 1-sigma error ``sigma_i`` [rad] and sky
weight ``a_i`` constant in sin(dec) bands, and a sky map of probability density
``rho`` [sr^-1]::

    overlap[i]  = integral rho(Omega) G_i(Omega) dOmega                     [sr^-1]
    weighted[i] = integral rho(Omega) w(Omega) a_i(sin dec) G_i dOmega

where ``G_i`` is the PSF (``psf_kind`` 0: O3 2-D Gaussian
``exp(-psi^2 / 2 sigma^2) / (2 pi sigma^2)``; 1: von Mises-Fisher with
``kappa = 1 / sigma^2``, normalised on the sphere), ``w`` the per-pixel weight and
``a_i`` one row per neutrino over sin(dec) bands (in the LLAMA statistic the signal
energy density a(eps_i, theta = 90 deg + dec) [GeV^-1]), clamped at its edges. (The
code calls it A_eff, its historical name.) Since the map is
piecewise constant, ``overlap`` is ``sum_pix P_gw(pix) * <G_i>_pix``: the same number
at any map resolution.

How it is computed (per neutrino, in parallel over neutrinos):

* The map becomes a quadtree over the 12 HEALPix base pixels whose leaves are the map's
  pixels; each node knows min/max of ``rho`` and ``rho*w`` below it.
* Control variate: with ``c0 = rho`` at the neutrino, ``overlap = c0 * int G +
  int (rho - c0) G``; ``int G`` over the sphere is known in closed form, and
  ``int A_eff G`` is a sum over the A_eff sin(dec) bands of the PSF mass north of each
  band edge (a 1-D quadrature per edge within reach), so the regions of constant
  density around the neutrino (above all its own pixel) cost nothing, A_eff bin edges
  included, and only map-pixel boundaries inside the PSF need refining.
* Moment expansion: every tree node stores the mass, first and second moments of
  ``rho``, ``rho*w`` and of its area (pixel centres plus each pixel's own spread).
  An internal node no larger than sigma gets the second-order Taylor expansion of the
  PSF about its centre (exact in those moments), with the third-order remainder as
  its bound (with mean, not worst-case, factors for a node's cubic moments: measured
  errors stay 3-100x below the bounds); refining it replaces the expansion by its
  children's. Wide PSFs on a finely resolved map thus stop at nodes of a fraction of
  sigma instead of the map's pixels.
* Best-first traversal: nodes sit in a max-heap keyed by an upper bound of their
  remaining contribution (density bound x min(G(psi_min) area, PSF tail mass
  beyond psi_min)); the largest is split first, and the traversal stops when the sum of
  all bounds left is below ``rtol`` times the running total. Pruning thus keeps the
  relative accuracy even for neutrinos far from the map's probability.
* A node of constant density whose size is below ``res * sigma`` (smaller in the PSF
  tail, where the Gaussian falls faster) is integrated with the midpoint rule; larger
  ones are split into their 4 children, never flattening the map.

Pairs (``G1 G2``) use the same traversal with their own control variate: the sphere
integrals of ``G1 G2`` and ``A1 A2 G1 G2`` (band by band) by a polar quadrature about the
product's centre, where the product is nearly isotropic (exactly so for the vMF PSF), so
pairs in regions of constant density need no refinement at all.

Trials: concatenate many neutrino lists into one call; the map tree is built once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

from .healpix import (
    chord2,
    max_pixrad,
    pix2vec_nest,
    pixel_area,
    radec_to_vec,
    uniq_to_order_ipix_array,
    vec2pix_nest,
)

# Functions run once per tree node are compiled without Numba's reference counting
# (``_nrt=False``, a private option Numba has long had): they only read the arrays
# they are given and allocate nothing. With it, every call, inlined or not, increfs
# and decrefs each array argument (the map tuple holds 11) with atomic instructions,
# which took a third of the traversal's time.
_per_node = njit(cache=True, _nrt=False)

#: Default relative tolerance of the pruning (sum of dropped bounds / total): the 1%
#: accuracy the search needs. The bounds are conservative: against tightly converged
#: references the errors at 1e-2 are 1e-4 (bench event) to 3.7e-3 (worst case of the
#: accuracy tests: sigma 10 deg on a 10^4 deg^2 map); 1e-3 costs 2.5x more nodes.
RTOL = 1e-2
#: Absolute floor of the pruning, relative to the map's peak density (times the PSF
#: peak for pairs, times ``rtol``): results far below the map's scale (e.g. 1e-40 for
#: distant pairs) need no relative accuracy, and chasing it costs unbounded time.
ATOL = 1e-12
#: Default resolution factor: a constant-density node is integrated at its centre when
#: its size is below ``RES * sigma`` (scaled down in the PSF tail).
RES = 0.4
#: PSF kinds.
PSF_GAUSS = 0
PSF_VMF = 1

_MAX_REFINE_ORDER = 29
_MAX_STEPS = 20_000_000  # runaway guard per neutrino (node expansions)
_NMOM = 30  # moments per tree node (see _leaf_moments)
_NGL = 16  # Gauss-Legendre points of the band integrals
_CAP_L = 6.5  # band integrals reach out to this many sigma (Gaussian tail < 1e-9)
#: Moment expansion of internal nodes up to this radius in sigma.
_TAYLOR_RAD = 1.0
#: Cells crossing an A_eff edge are integrated at this fraction of ``res``.
_EDGE_RES = 0.25
_R3_MEAN = 0.35
_ASYM = 0.1  # mean |u|^3 over a pixel, in units of its max radius cubed
_TWO_PI = 2.0 * math.pi

# per-order tables (index = order)
_AREA = np.array([pixel_area(o) for o in range(30)])
_RESOL = np.sqrt(_AREA)
# 1% margin on max_pixrad: the bound must never be optimistic
_MAXRAD = np.array([max_pixrad(o) for o in range(30)]) * 1.01
_COSRAD = np.cos(_MAXRAD)
_SINRAD = np.sin(_MAXRAD)


# ======================================================================================
# PSF
# ======================================================================================
@njit(cache=True)
def psf_norm(sigma: float, kind: int) -> float:
    """Integral of the PSF over the whole sphere.

    1 for the von Mises-Fisher PSF; for the O3 Gaussian ``(1/sigma^2) int_0^pi
    exp(-psi^2/2 sigma^2) sin(psi) dpsi`` (``1 - sigma^2/3 + ...``, < 1).
    """
    if kind == PSF_VMF:
        return 1.0
    s2 = sigma * sigma
    if sigma < 0.3:  # asymptotic series; the cut at psi = pi is below 1e-20 here
        return 1.0 - s2 / 3.0 + s2 * s2 / 15.0 - s2**3 / 105.0 + s2**4 / 945.0
    n = 4000  # Simpson on [0, pi]
    h = math.pi / n
    acc = 0.0
    for k in range(n + 1):
        t = k * h
        f = math.exp(-0.5 * t * t / s2) * math.sin(t)
        wgt = 1.0 if (k == 0 or k == n) else (4.0 if k % 2 == 1 else 2.0)
        acc += wgt * f
    return acc * h / 3.0 / s2


@njit(cache=True)
def psf_peak(sigma: float, kind: int) -> float:
    """PSF value at psi = 0 [sr^-1] (vMF normalisation is stable for huge kappa)."""
    if kind == PSF_VMF:
        kappa = 1.0 / (sigma * sigma)
        return kappa / (_TWO_PI * -math.expm1(-2.0 * kappa))
    return 1.0 / (_TWO_PI * sigma * sigma)


@njit(cache=True)
def psf_from_chord2(c2: float, sigma: float, peak: float, kind: int) -> float:
    """PSF value [sr^-1] at squared chord ``c2 = |n - x|^2 = 2 (1 - cos psi)``."""
    if kind == PSF_VMF:
        return peak * math.exp(-0.5 * c2 / (sigma * sigma))
    psi = 2.0 * math.asin(min(0.5 * math.sqrt(c2), 1.0))
    return peak * math.exp(-0.5 * psi * psi / (sigma * sigma))


@njit(cache=True)
def psf_at(psi: float, sigma: float, peak: float, kind: int) -> float:
    """PSF value [sr^-1] at angle ``psi`` [rad].

    ``psf_at(psi) / peak`` also bounds the PSF's mass at angles >= ``psi`` over the
    whole sphere (for the Gaussian since ``sin(psi) <= psi``): the tail bound of the
    traversals.
    """
    if kind == PSF_VMF:
        s = math.sin(0.5 * psi)
        return peak * math.exp(-2.0 * s * s / (sigma * sigma))
    return peak * math.exp(-0.5 * psi * psi / (sigma * sigma))


@njit(cache=True)
def _resolved(order: int, psi_min: float, sigma: float, res: float) -> bool:
    """Is a node small enough for the midpoint rule? Finer in the tail, where
    ``d log G / d psi = psi / sigma^2`` grows."""
    if order >= _MAX_REFINE_ORDER:
        return True
    return _RESOL[order] * max(1.0, 0.5 * psi_min / sigma) <= res * sigma


@njit(cache=True)
def _cell_factor(order: int, psi: float, sigma: float) -> float:
    """Second-order correction of the midpoint rule for G = exp(f) over a cell:
    ``1 + (|grad f|^2 + lap f) * A / 24`` with ``|grad f| = psi / sigma^2`` and
    ``lap f = -2 / sigma^2`` (cell second moment ~ A / 12 per axis). Lets cells in the
    PSF tail, where G falls steeply, stay larger for the same accuracy."""
    s2 = sigma * sigma
    return 1.0 + _AREA[order] * (psi * psi / s2 - 2.0) / (24.0 * s2)


# ======================================================================================
# effective area
# ======================================================================================
@njit(cache=True)
def bin_index(edges: np.ndarray, x: float) -> int:
    """Bin of ``x`` given ascending ``edges`` (n+1 values), clamped to [0, n-1]."""
    nb = edges.shape[0] - 1
    k = np.searchsorted(edges, x, side="right") - 1
    if k < 0:
        return 0
    if k > nb - 1:
        return nb - 1
    return k


@_per_node
def _zbins(sindec_edges: np.ndarray, z: float, o: int) -> tuple[int, int, int]:
    """A_eff sin(dec) bins of a pixel of order ``o`` centred at ``sin dec = z``: (bin of
    the centre, lowest and highest bin within its radius ``_MAXRAD[o]``)."""
    # sin(dec -/+ rad) by the addition theorem (no asin); clamp at the poles
    c = math.sqrt(max(0.0, 1.0 - z * z))
    cr, sr = _COSRAD[o], _SINRAD[o]
    zlo = -1.0 if c * cr + z * sr <= 0.0 else z * cr - c * sr
    zhi = 1.0 if c * cr - z * sr <= 0.0 else z * cr + c * sr
    jc = bin_index(sindec_edges, z)
    nb = sindec_edges.shape[0] - 1
    j0 = jc  # walk out from the centre's bin: rarely more than a step
    while j0 > 0 and zlo < sindec_edges[j0]:
        j0 -= 1
    j1 = jc
    while j1 < nb - 1 and zhi >= sindec_edges[j1 + 1]:
        j1 += 1
    return jc, j0, j1


@_per_node
def _arow_max(arow: np.ndarray, j0: int, j1: int) -> float:
    """Largest A_eff of one row over bins j0..j1."""
    amax = arow[j0]
    for j in range(j0 + 1, j1 + 1):
        amax = max(amax, arow[j])
    return amax


# ======================================================================================
# map representations
# ======================================================================================
# Both map kinds are described by the same tuple ``mp`` so one traversal serves both:
#   mode        0 = multi-order (explicit tree), 1 = flat NESTED (implicit tree)
#   top         order of the flat map (mode 1) / max order of the map (mode 0)
#   rho, rw     density and density*weight per row / flat pixel; mode 0 has one extra
#               row of zeros used for sky not covered by the map
#   lo, hi      nested ranges of the rows at order ``top`` (mode 0)
#   t_child     first of 4 children (or -1 for a leaf), t_row: leaf row   (mode 0)
#   b           bounds per tree node (mode 0) or per pyramid node (mode 1):
#               columns rho_max, rho_min, rw_max, rw_min
#   poff, pord  pyramid offsets per order and the deepest pyramid order (mode 1)
#   mom, cen    moments (see _leaf_moments) and centre vectors per tree node (mode 0)
# A node on the heap is (order, ipix, tid): tid >= 0 is an explicit tree node, tid < 0 a
# virtual sub-pixel of row -tid-1 (mode 0); tid is unused in mode 1.


@njit(cache=True)
def _count_internal(order: np.ndarray, ipix: np.ndarray, top: int) -> int:
    """Number of distinct strict ancestors of the rows (= internal tree nodes)."""
    count = 0
    for o in range(top):
        prev = -1
        for k in range(order.shape[0]):
            if order[k] > o:
                anc = ipix[k] >> (2 * (order[k] - o))
                if anc != prev:
                    count += 1
                    prev = anc
    return count


@njit(cache=True)
def _build_tree(order, ipix, lo, hi, rho, rw, top):
    """Quadtree of a sorted, disjoint multi-order map; returns (t_child, t_row, bounds,
    moments, centres)."""
    n = order.shape[0]
    for k in range(n - 1):
        if hi[k] > lo[k + 1]:
            raise ValueError("uniq must be sorted by nested range and disjoint")
    cap = 12 + 4 * _count_internal(order, ipix, top)
    t_ord = np.empty(cap, np.int64)
    t_pix = np.empty(cap, np.int64)
    t_a = np.empty(cap, np.int64)
    t_b = np.empty(cap, np.int64)
    t_child = np.full(cap, -1, np.int64)
    t_row = np.full(cap, n, np.int64)  # row n = "not covered" (zero density)
    for f in range(12):
        t_ord[f] = 0
        t_pix[f] = f
        t_a[f] = np.searchsorted(lo, np.int64(f) << (2 * top))
        t_b[f] = np.searchsorted(lo, np.int64(f + 1) << (2 * top))
    count = 12
    i = 0
    while i < count:  # children are appended, so parents always precede children
        a, b, o = t_a[i], t_b[i], t_ord[i]
        if b > a:
            if b - a == 1 and order[a] == o:
                t_row[i] = a
            elif order[a] < o:
                raise ValueError("overlapping pixels in the multi-order map")
            else:
                t_child[i] = count
                sh = 2 * (top - o - 1)
                k = a  # rows are sorted: one linear scan splits them among the children
                for c in range(4):
                    p = 4 * t_pix[i] + c
                    t_ord[count] = o + 1
                    t_pix[count] = p
                    t_a[count] = k
                    end = (p + 1) << sh
                    while k < b and lo[k] < end:
                        k += 1
                    t_b[count] = k
                    count += 1
        i += 1
    cen = np.empty((count, 3))  # node centres: every traversal visits them again
    for i in range(count):
        cen[i, 0], cen[i, 1], cen[i, 2] = pix2vec_nest(t_ord[i], t_pix[i])
    bnd = np.empty((count, 4))
    mom = np.empty((count, _NMOM))  # every row is written below
    for i in range(count - 1, -1, -1):
        c = t_child[i]
        if c < 0:
            r = t_row[i]
            bnd[i, 0] = bnd[i, 1] = rho[r]
            bnd[i, 2] = bnd[i, 3] = rw[r]
            _leaf_moments(mom, i, t_ord[i], cen[i, 0], cen[i, 1], cen[i, 2], rho[r], rw[r])
        else:
            for k in range(_NMOM):
                mom[i, k] = mom[c, k] + mom[c + 1, k] + mom[c + 2, k] + mom[c + 3, k]
            bnd[i, 0] = max(max(bnd[c, 0], bnd[c + 1, 0]), max(bnd[c + 2, 0], bnd[c + 3, 0]))
            bnd[i, 1] = min(min(bnd[c, 1], bnd[c + 1, 1]), min(bnd[c + 2, 1], bnd[c + 3, 1]))
            bnd[i, 2] = max(max(bnd[c, 2], bnd[c + 1, 2]), max(bnd[c + 2, 2], bnd[c + 3, 2]))
            bnd[i, 3] = min(min(bnd[c, 3], bnd[c + 1, 3]), min(bnd[c + 2, 3], bnd[c + 3, 3]))
    return t_child[:count].copy(), t_row[:count].copy(), bnd, mom, cen


@_per_node
def _leaf_moments(mom, i, o, x, y, z, r, rw):
    """Moments of a map pixel of constant density: 3 groups of 10 (rho, rho*w, area),
    each (mass, first moment x y z, second moment xx yy zz xy xz yz) of the pixel
    centre ``(x, y, z)`` with the pixel's own spread, ``A / 12`` per tangent axis."""
    a = _AREA[o]
    s = a / 12.0
    q = 1.0 - s
    m = (1.0, x, y, z, q * x * x + s, q * y * y + s, q * z * z + s, q * x * y, q * x * z, q * y * z)  # fmt: skip
    for g in range(3):
        f = (r, rw, 1.0)[g] * a
        for k in range(10):
            mom[i, 10 * g + k] = f * m[k]


@njit(cache=True)
def _build_pyramid(rho, rw, top, pord):
    """Min/max pyramid of a flat map for orders 0..pord (< top); returns (poff, b)."""
    poff = np.zeros(pord + 2, np.int64)
    for o in range(pord + 1):
        poff[o + 1] = poff[o] + (np.int64(12) << (2 * o))
    bnd = np.empty((max(poff[pord + 1], 1), 4))
    if pord < 0:
        return poff, bnd
    blk = np.int64(1) << (2 * (top - pord))
    base = poff[pord]
    for p in range(np.int64(12) << (2 * pord)):
        s = p * blk
        r0, r1, w0, w1 = rho[s], rho[s], rw[s], rw[s]
        for k in range(s + 1, s + blk):
            r0 = max(r0, rho[k])
            r1 = min(r1, rho[k])
            w0 = max(w0, rw[k])
            w1 = min(w1, rw[k])
        bnd[base + p, 0], bnd[base + p, 1], bnd[base + p, 2], bnd[base + p, 3] = r0, r1, w0, w1
    for o in range(pord - 1, -1, -1):
        for p in range(np.int64(12) << (2 * o)):
            c = poff[o + 1] + 4 * p
            d = poff[o] + p
            bnd[d, 0] = max(max(bnd[c, 0], bnd[c + 1, 0]), max(bnd[c + 2, 0], bnd[c + 3, 0]))
            bnd[d, 1] = min(min(bnd[c, 1], bnd[c + 1, 1]), min(bnd[c + 2, 1], bnd[c + 3, 1]))
            bnd[d, 2] = max(max(bnd[c, 2], bnd[c + 1, 2]), max(bnd[c + 2, 2], bnd[c + 3, 2]))
            bnd[d, 3] = min(min(bnd[c, 3], bnd[c + 1, 3]), min(bnd[c + 2, 3], bnd[c + 3, 3]))
    return poff, bnd


@_per_node
def _node_info(mp, o, p, tid):
    """(constant?, rho, rw, rho_max, rho_min, rw_max, rw_min) of a heap node."""
    # index the tuple lazily: only the arrays this node needs are touched
    if mp[0] == 0:
        if tid >= 0:
            if mp[6][tid] >= 0:
                b = mp[8]
                return False, 0.0, 0.0, b[tid, 0], b[tid, 1], b[tid, 2], b[tid, 3]
            r = mp[7][tid]
        else:
            r = -tid - 1
        x, xw = mp[2][r], mp[3][r]
        return True, x, xw, x, x, xw, xw
    top = mp[1]
    if o >= top:
        k = p >> (2 * (o - top))
        x, xw = mp[2][k], mp[3][k]
        return True, x, xw, x, x, xw, xw
    pord = mp[10]
    if o <= pord:
        d = mp[9][o] + p
    else:  # below the pyramid: the ancestor's bounds are valid, if looser
        d = mp[9][pord] + (p >> (2 * (o - pord)))
    b = mp[8]
    return False, 0.0, 0.0, b[d, 0], b[d, 1], b[d, 2], b[d, 3]


@_per_node
def _node_centre(mp, o, p, tid):
    """Unit vector of a heap node's centre (stored for explicit tree nodes)."""
    if tid >= 0 and mp[0] == 0:
        cen = mp[12]
        return cen[tid, 0], cen[tid, 1], cen[tid, 2]
    return pix2vec_nest(o, p)


@_per_node
def _child_tid(mp, tid, c):
    """tid of child ``c`` (0..3) of a heap node."""
    mode = mp[0]
    if mode == 1:
        return -1
    t_child, t_row = mp[6], mp[7]
    if tid >= 0:
        if t_child[tid] >= 0:
            return t_child[tid] + c
        return -t_row[tid] - 1
    return tid


@njit(cache=True)
def _value_at(mp, x, y, z):
    """(rho, rw) of the map pixel containing direction (x, y, z)."""
    mode, top, rho, rw, lo, hi = mp[0], mp[1], mp[2], mp[3], mp[4], mp[5]
    q = vec2pix_nest(top, x, y, z)
    if mode == 1:
        return rho[q], rw[q]
    k = np.searchsorted(lo, q, side="right") - 1
    if k >= 0 and q < hi[k]:
        return rho[k], rw[k]
    n = rho.shape[0] - 1
    return rho[n], rw[n]


@njit(cache=True)
def _scale_node_bounds(mp, vx, vy, vz, o):
    """(rho_min, rw_min) over the node at order ``o`` that contains the direction."""
    mode, top, t_child, bnd, poff, pord = mp[0], mp[1], mp[6], mp[8], mp[9], mp[10]
    q = vec2pix_nest(top, vx, vy, vz)
    if mode == 1:
        if o >= top:
            return mp[2][q], mp[3][q]
        d = poff[min(o, pord)] + (q >> (2 * (top - min(o, pord))))
        return bnd[d, 1], bnd[d, 3]
    tid = q >> (2 * top)  # base pixel
    for oo in range(1, o + 1):
        if t_child[tid] < 0:
            break
        tid = t_child[tid] + ((q >> (2 * (top - oo))) & 3)
    return bnd[tid, 1], bnd[tid, 3]


@njit(cache=True)
def _control(mp, vx, vy, vz, sigma):
    """Constants (c0, c0w) of the control variate: density and density*weight.

    The map value at the neutrino when the density stays within a factor 2 of it over a
    few sigma (then its own pixel costs nothing); otherwise the minimum over that
    region, so the corrections stay non-negative there and no large constant has to
    cancel against the midpoint sums (a sharp map peak under a wide PSF). A_eff is not
    part of ``c0w``: the control variate integrates it exactly band by band
    (:func:`_band_sum`), so A_eff bin edges cost nothing where the map is constant.
    """
    r0, rw0 = _value_at(mp, vx, vy, vz)
    o = 0
    while o < _MAX_REFINE_ORDER and _MAXRAD[o + 1] >= 3.0 * sigma:
        o += 1
    rmin, wmin = _scale_node_bounds(mp, vx, vy, vz, o)
    if rmin >= 0.5 * r0 and wmin >= 0.5 * rw0:
        return r0, rw0
    return rmin, wmin


# ======================================================================================
# the control variate's A_eff: PSF mass per sin(dec) band, by 1-D quadrature
# ======================================================================================
_GLX, _GLW = np.polynomial.legendre.leggauss(_NGL)
_GLX = 0.5 * (_GLX + 1.0)  # nodes and weights on [0, 1]
_GLW = 0.5 * _GLW


@njit(cache=True)
def _cap_frac(psi, zn, cn, z1):
    """Fraction of the circle at angle ``psi`` around the neutrino (sin dec ``zn``,
    cos dec ``cn``) that lies at ``sin dec > z1``."""
    den = math.sin(psi) * cn
    num = z1 - math.cos(psi) * zn
    if den <= 1e-300:
        return 1.0 if num < 0.0 else 0.0
    q = num / den
    if q <= -1.0:
        return 1.0
    if q >= 1.0:
        return 0.0
    return math.acos(q) / math.pi


@njit(cache=True)
def _gl_psf(a, b, sigma, peak, kind):
    """Gauss-Legendre ``int_a^b G(psi) sin(psi) dpsi`` (smooth integrand)."""
    acc = 0.0
    h = b - a
    for k in range(_NGL):
        t = a + h * _GLX[k]
        acc += _GLW[k] * psf_at(t, sigma, peak, kind) * math.sin(t)
    return acc * h


@njit(cache=True)
def _cap_split(dn, z1, u):
    """How the circles of angle ``psi <= u`` about a point at declination ``dn`` meet the
    region ``sin dec > z1``: ``(1, ., .)`` all inside, ``(0, ., .)`` none, or ``(-1, pa,
    pb)`` split, with ``pa`` / ``pb`` the angles of the declination circle's nearest and
    farthest points (where the fraction inside has square-root kinks)."""
    if z1 <= -1.0:
        return 1, 0.0, 0.0
    if z1 >= 1.0:
        return 0, 0.0, 0.0
    d1 = math.asin(z1)
    if d1 <= dn - u:
        return 1, 0.0, 0.0
    if d1 >= dn + u:
        return 0, 0.0, 0.0
    return -1, abs(dn - d1), math.pi - abs(dn + d1)


@njit(cache=True)
def _arc_node(k, pa, pb, u):
    """Node ``k`` of the quadrature over the circles that cross the declination line,
    ``psi`` in ``[pa, min(pb, u)]``: ``(psi, weight x jacobian)``, substituted so that
    the square-root ends at the kinks become smooth."""
    if pb <= u:  # both kinks: psi = pa + (pb - pa) (1 - cos t) / 2, t in [0, pi]
        h = pb - pa
        t = math.pi * _GLX[k]
        return pa + 0.5 * h * (1.0 - math.cos(t)), _GLW[k] * 0.5 * h * math.sin(t) * math.pi
    h = u - pa  # one kink: psi = pa + (u - pa) s^2, s in [0, 1]
    sk = _GLX[k]
    return pa + h * sk * sk, _GLW[k] * 2.0 * h * sk


@njit(cache=True)
def _cap_integral(zn, cn, dn, z1, sigma, peak, kind, norm):
    """``int_{sin dec > z1} G dOmega``: the PSF mass north of a declination.

    ``2 pi int G(psi) sin(psi) frac(psi) dpsi`` over ``psi < min(pi, _CAP_L sigma)``
    (the rest is below 1e-7 of the PSF), split where ``frac`` has kinks (see
    :func:`_cap_split`, :func:`_arc_node`).
    """
    u = min(math.pi, _CAP_L * sigma)
    whole, pa, pb = _cap_split(dn, z1, u)
    if whole >= 0:
        return whole * norm
    tot = 0.0
    if pa > 0.0 and zn > z1:  # circles nearer than the declination line: inside
        tot += _gl_psf(0.0, min(pa, u), sigma, peak, kind)
    if pa < u and pb > pa:
        for k in range(_NGL):
            psi, w = _arc_node(k, pa, pb, u)
            tot += w * psf_at(psi, sigma, peak, kind) * math.sin(psi) * _cap_frac(psi, zn, cn, z1)  # fmt: skip
    if pb < u and _cap_frac(0.5 * (pb + u), zn, cn, z1) > 0.5:
        tot += _gl_psf(pb, u, sigma, peak, kind)
    return _TWO_PI * tot


@njit(cache=True)
def _band_sum(vz, sigma, peak, kind, norm, arow, sindec_edges):
    """``int A_eff(sin dec) G dOmega`` over the sphere for one A_eff row (clamped bins):
    ``A_0 norm + sum_j (A_j - A_{j-1}) * (PSF mass north of edge j)``."""
    zn = min(1.0, max(-1.0, vz))
    cn = math.sqrt(max(0.0, 1.0 - zn * zn))
    dn = math.asin(zn)
    acc = arow[0] * norm
    for j in range(1, arow.shape[0]):
        da = arow[j] - arow[j - 1]
        if da != 0.0:
            acc += da * _cap_integral(zn, cn, dn, sindec_edges[j], sigma, peak, kind, norm)
    return acc


# ======================================================================================
# the pair control variate: G1 G2 (and A1 A2 G1 G2) integrated over the sphere
# ======================================================================================
_NPHI = 12  # azimuths per ring around the product's centre (the integrand is near-isotropic)
_PHX, _PHW = np.polynomial.legendre.leggauss(_NPHI)
_PHX = 0.5 * (_PHX + 1.0)  # nodes and weights on [0, 1]
_PHW = 0.5 * _PHW


@njit(cache=True)
def _pair_frame(v1, s1, v2, s2):
    """Centre of the product G1 G2 and its tangent frame: (cx, cy, cz, north xyz, east
    xyz, cos dec of the centre).

    The centre is ``normalise(n1 / s1^2 + n2 / s2^2)``: exact for the vMF PSF (whose
    product is a vMF) and the flat-sky centre of the Gaussian product.
    """
    w1 = 1.0 / (s1 * s1)
    w2 = 1.0 / (s2 * s2)
    cx, cy, cz = w1 * v1[0] + w2 * v2[0], w1 * v1[1] + w2 * v2[1], w1 * v1[2] + w2 * v2[2]
    nn = math.sqrt(cx * cx + cy * cy + cz * cz)
    if nn < 1e-12 * (w1 + w2):  # antipodal twins: any point of the great circle
        cx, cy, cz, nn = v1[0], v1[1], v1[2], 1.0
    cx, cy, cz = cx / nn, cy / nn, cz / nn
    cn = math.sqrt(max(0.0, 1.0 - cz * cz))
    if cn > 1e-12:  # north, then east
        return (cx, cy, cz, -cz * cx / cn, -cz * cy / cn, cn, -cy / cn, cx / cn, 0.0, cn)
    # at a pole sin dec does not depend on the azimuth: any frame will do
    return (cx, cy, cz, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, cn)


@njit(cache=True)
def _pair_ring(fr, psi, half, v1, s1, pk1, v2, s2, pk2, kind):
    """``int G1 G2 dphi`` over the azimuths ``|phi| <= half`` (from north) of the circle
    at angle ``psi`` around the product's centre; ``half >= pi``: the whole circle
    (trapezoid rule, exact for a periodic integrand), else Gauss-Legendre."""
    cp = math.cos(psi)
    sp = math.sin(psi)
    full = half >= math.pi
    acc = 0.0
    for k in range(_NPHI):
        if full:
            phi = _TWO_PI * (k + 0.5) / _NPHI
            wk = _TWO_PI / _NPHI
        else:
            phi = half * (2.0 * _PHX[k] - 1.0)
            wk = 2.0 * half * _PHW[k]
        a = sp * math.cos(phi)
        b = sp * math.sin(phi)
        x = cp * fr[0] + a * fr[3] + b * fr[6]
        y = cp * fr[1] + a * fr[4] + b * fr[7]
        z = cp * fr[2] + a * fr[5] + b * fr[8]
        g = psf_from_chord2(chord2(x, y, z, v1[0], v1[1], v1[2]), s1, pk1, kind)
        g *= psf_from_chord2(chord2(x, y, z, v2[0], v2[1], v2[2]), s2, pk2, kind)
        acc += wk * g
    return acc


@njit(cache=True)
def _pair_radial(fr, a, b, v1, s1, pk1, v2, s2, pk2, kind):
    """``int_a^b (int G1 G2 dphi) sin(psi) dpsi`` over whole circles (Gauss-Legendre)."""
    acc = 0.0
    h = b - a
    for k in range(_NGL):
        t = a + h * _GLX[k]
        acc += _GLW[k] * _pair_ring(fr, t, math.pi, v1, s1, pk1, v2, s2, pk2, kind) * math.sin(t)
    return acc * h


@njit(cache=True)
def _pair_cap(fr, u, z1, norm, v1, s1, pk1, v2, s2, pk2, kind):
    """``int_{sin dec > z1} G1 G2 dOmega``, in polar coordinates about the product's
    centre out to ``u``, split as :func:`_cap_integral` is, with the azimuthal integral
    done by quadrature on the arc north of ``z1``."""
    zn, cn = fr[2], fr[9]
    whole, pa, pb = _cap_split(math.asin(min(1.0, max(-1.0, zn))), z1, u)
    if whole >= 0:
        return whole * norm
    tot = 0.0
    if pa > 0.0 and zn > z1:
        tot += _pair_radial(fr, 0.0, min(pa, u), v1, s1, pk1, v2, s2, pk2, kind)
    if pa < u and pb > pa:
        for k in range(_NGL):
            psi, w = _arc_node(k, pa, pb, u)
            half = math.pi * _cap_frac(psi, zn, cn, z1)
            if half > 0.0:
                ring = _pair_ring(fr, psi, half, v1, s1, pk1, v2, s2, pk2, kind)
                tot += w * ring * math.sin(psi)
    if pb < u and _cap_frac(0.5 * (pb + u), zn, cn, z1) > 0.5:
        tot += _pair_radial(fr, pb, u, v1, s1, pk1, v2, s2, pk2, kind)
    return tot


@njit(cache=True)
def _pair_band_sum(fr, u, norm, arow1, arow2, sindec_edges, v1, s1, pk1, v2, s2, pk2, kind):
    """``int A1 A2 G1 G2 dOmega`` over the sphere (clamped sin dec bins), as
    :func:`_band_sum`: ``A_0 norm + sum_j (A_j - A_{j-1}) * (mass north of edge j)``."""
    prev = arow1[0] * arow2[0]
    acc = prev * norm
    for j in range(1, arow1.shape[0]):
        cur = arow1[j] * arow2[j]
        if cur != prev:
            acc += (cur - prev) * _pair_cap(
                fr, u, sindec_edges[j], norm, v1, s1, pk1, v2, s2, pk2, kind
            )
        prev = cur
    return acc


# ======================================================================================
# best-first heap (max-heap on key); node ints (order, ipix, tid), floats (key, bo, bw,
# vo, vw): bounds of the node's remaining error and its provisional (Taylor) values
# ======================================================================================
@njit(cache=True)
def _heap_arrays(size):
    """Scratch arrays of a heap of ``size`` nodes: ints (order, ipix, tid) and floats
    (key, bound_o, bound_w, value_o, value_w). A traversal that fills them returns -1
    and is run again with twice the size (rare; see :func:`_single`)."""
    return np.empty((size, 3), np.int64), np.empty((size, 5))


@_per_node
def _heap_push(hi_, hf, n, o, p, tid, key, bo, bw, vo, vw):
    """Push a node (the arrays must have room); returns n + 1."""
    k = n
    while k > 0:  # sift up
        par = (k - 1) >> 1
        if hf[par, 0] >= key:
            break
        for c in range(3):
            hi_[k, c] = hi_[par, c]
        for c in range(5):
            hf[k, c] = hf[par, c]
        k = par
    hi_[k, 0], hi_[k, 1], hi_[k, 2] = o, p, tid
    hf[k, 0], hf[k, 1], hf[k, 2], hf[k, 3], hf[k, 4] = key, bo, bw, vo, vw
    return n + 1


@_per_node
def _heap_pop(hi_, hf, n):
    """Remove the top; returns (o, p, tid, bo, bw, vo, vw, new n)."""
    o, p, tid = hi_[0, 0], hi_[0, 1], hi_[0, 2]
    bo, bw, vo, vw = hf[0, 1], hf[0, 2], hf[0, 3], hf[0, 4]
    n -= 1
    if n > 0:
        li0, li1, li2 = hi_[n, 0], hi_[n, 1], hi_[n, 2]
        lf0, lf1, lf2, lf3, lf4 = hf[n, 0], hf[n, 1], hf[n, 2], hf[n, 3], hf[n, 4]
        k = 0
        while True:  # sift down
            c = 2 * k + 1
            if c >= n:
                break
            if c + 1 < n and hf[c + 1, 0] > hf[c, 0]:
                c += 1
            if hf[c, 0] <= lf0:
                break
            for j in range(3):
                hi_[k, j] = hi_[c, j]
            for j in range(5):
                hf[k, j] = hf[c, j]
            k = c
        hi_[k, 0], hi_[k, 1], hi_[k, 2] = li0, li1, li2
        hf[k, 0], hf[k, 1], hf[k, 2], hf[k, 3], hf[k, 4] = lf0, lf1, lf2, lf3, lf4
    return o, p, tid, bo, bw, vo, vw, n


@_per_node
def _remaining(hf, n):
    """Exact sums of the bounds still on the heap (guards the running sums' drift)."""
    so = 0.0
    sw = 0.0
    for k in range(n):
        so += hf[k, 1]
        sw += hf[k, 2]
    return so, sw


@njit(cache=True)
def _converged(rem_o, rem_w, tot_o, tot_w, rtol, ato, atw):
    return rem_o <= rtol * abs(tot_o) + ato and rem_w <= rtol * abs(tot_w) + atw


@njit(cache=True)
def _global_max(mp):
    """Largest rho and rho*w of the map (sets the absolute floor of the tolerance)."""
    mode, top, rho, rw, bnd = mp[0], mp[1], mp[2], mp[3], mp[8]
    gr = -math.inf
    gw = -math.inf
    if mode == 1 and top == 0:  # 12 pixels and no pyramid
        for k in range(rho.shape[0]):
            gr = max(gr, rho[k])
            gw = max(gw, rw[k])
        return gr, gw
    for f in range(12):  # loops, not .max(): callers run without reference counting
        gr = max(gr, bnd[f, 0])
        gw = max(gw, bnd[f, 2])
    return gr, gw


@njit(cache=True)
def _row_max(a):
    """Largest value of a 1-D array (a loop: callers run without reference counting)."""
    m = a[0]
    for k in range(1, a.shape[0]):
        m = max(m, a[k])
    return m


# ======================================================================================
# one neutrino
# ======================================================================================
@_per_node
def _single(mp, vx, vy, vz, sigma, kind, arow, sindec_edges, rtol, res, hi_, hf):
    """(overlap, weighted, node expansions) for one neutrino; ``hi_``/``hf`` are scratch
    heap arrays. Expansions -1: the heap is full, call again with larger ones (growing
    here would make every loop iteration pay reference counts on the heap arrays)."""
    peak = psf_peak(sigma, kind)
    norm = psf_norm(sigma, kind)
    c0, c0w = _control(mp, vx, vy, vz, sigma)
    gr, gw = _global_max(mp)
    ato = ATOL * rtol * gr  # below 1e-12 of the map's peak: absolute, not relative
    atw = ATOL * rtol * gw * _row_max(arow)
    base_o = c0 * norm  # control variate: c0 * integral of G over the sphere
    base_w = 0.0
    if c0w != 0.0:
        base_w = c0w * _band_sum(vz, sigma, peak, kind, norm, arow, sindec_edges)
    acc_o = 0.0
    acc_w = 0.0
    rem_o = 0.0
    rem_w = 0.0
    n = 0
    if hi_.shape[0] < 12:
        return 0.0, 0.0, -1
    # the 12 base pixels are the roots: (order 0, ipix f, tid f)
    for f in range(12):
        o, p, tid = 0, np.int64(f), np.int64(f)
        do, dw, bo, bw, leaf = _visit(
            mp, o, p, tid, vx, vy, vz, sigma, peak, kind, c0, c0w, arow, sindec_edges, res
        )
        acc_o += do
        acc_w += dw
        if not leaf:
            key = bo / max(abs(base_o + acc_o), 1e-300) + bw / max(abs(base_w + acc_w), 1e-300)
            n = _heap_push(hi_, hf, n, o, p, tid, key, bo, bw, do, dw)
            rem_o += bo
            rem_w += bw
    steps = 0
    while n > 0 and steps < _MAX_STEPS:
        steps += 1
        tot_o = base_o + acc_o
        tot_w = base_w + acc_w
        if _converged(rem_o, rem_w, tot_o, tot_w, rtol, ato, atw):
            rem_o, rem_w = _remaining(hf, n)
            if _converged(rem_o, rem_w, tot_o, tot_w, rtol, ato, atw):
                break
        o, p, tid, bo, bw, vo, vw, n = _heap_pop(hi_, hf, n)
        rem_o = max(rem_o - bo, 0.0)
        rem_w = max(rem_w - bw, 0.0)
        acc_o -= vo  # provisional values are replaced by the children's
        acc_w -= vw
        if n + 4 > hi_.shape[0]:
            return 0.0, 0.0, -1
        for c in range(4):
            co, cp, ct = o + 1, 4 * p + c, _child_tid(mp, tid, c)
            do, dw, cbo, cbw, leaf = _visit(
                mp, co, cp, ct, vx, vy, vz, sigma, peak, kind, c0, c0w, arow, sindec_edges, res
            )
            acc_o += do
            acc_w += dw
            if not leaf:
                key = cbo / max(abs(tot_o), 1e-300) + cbw / max(abs(tot_w), 1e-300)
                n = _heap_push(hi_, hf, n, co, cp, ct, key, cbo, cbw, do, dw)
                rem_o += cbo
                rem_w += cbw
    return base_o + acc_o, base_w + acc_w, steps


@njit(cache=True)
def _psf_local(x, y, z, c2, vx, vy, vz, sigma, peak, kind):
    """Local shape of the PSF at a node centre ``x0`` (squared chord ``c2`` from the
    neutrino): ``(h, h', h'' - hc, hc, e_r)`` with ``h(psi)`` the profile, ``hc = h'
    cot(psi)`` and ``e_r`` the unit tangent at ``x0`` pointing away from the neutrino.

    On the tangent plane at ``x0`` (orthographic ``u = x - (x0.x) x0``) the PSF is
    ``h + h' e_r.u + 1/2 [(h'' - hc) (e_r.u)^2 + hc |u|^2] + O(u^3)`` (the Hessian of
    a radial function on the sphere); ``e_r.u = e_r.x`` and ``|u|^2 = |x|^2 - (x0.x)^2``.
    """
    cosp = 1.0 - 0.5 * c2
    dx, dy, dz = x * cosp - vx, y * cosp - vy, z * cosp - vz  # (away from n) * sin psi
    sinp = math.sqrt(dx * dx + dy * dy + dz * dz)
    s2 = sigma * sigma
    if kind == PSF_VMF:
        h0 = peak * math.exp(-0.5 * c2 / s2)
        h1 = -sinp / s2 * h0
        h2 = (sinp * sinp / (s2 * s2) - cosp / s2) * h0
        hc = -cosp / s2 * h0
    else:
        psi = math.atan2(sinp, cosp)
        h0 = peak * math.exp(-0.5 * psi * psi / s2)
        h1 = -psi / s2 * h0
        h2 = (psi * psi / s2 - 1.0) / s2 * h0
        hc = -h0 / s2 if sinp < 1e-12 else h1 * cosp / sinp
    if sinp < 1e-12:
        return h0, 0.0, 0.0, hc, 0.0, 0.0, 0.0
    return h0, h1, h2 - hc, hc, dx / sinp, dy / sinp, dz / sinp


@njit(cache=True)
def _taylor_coefs(x, y, z, c2, vx, vy, vz, sigma, peak, kind):
    """Coefficients ``K`` of the second-order expansion of the PSF about a node centre
    ``x0``: ``int f G dOmega ~= sum_k K[k] * moment_k(f)`` for the moments of
    :func:`_leaf_moments` (mass, first moments, second moments xx yy zz xy xz yz);
    see :func:`_psf_local`. Every term is linear in the stored moments.
    """
    h0, h1, hd, hc, ex, ey, ez = _psf_local(x, y, z, c2, vx, vy, vz, sigma, peak, kind)
    a = 0.5 * hd
    b = 0.5 * hc
    # K_m2 = a e e^T + b (I - x0 x0^T); off-diagonal coefficients doubled (symmetric m2)
    return (
        h0,
        h1 * ex,
        h1 * ey,
        h1 * ez,
        a * ex * ex + b * (1.0 - x * x),
        a * ey * ey + b * (1.0 - y * y),
        a * ez * ez + b * (1.0 - z * z),
        2.0 * (a * ex * ey - b * x * y),
        2.0 * (a * ex * ez - b * x * z),
        2.0 * (a * ey * ez - b * y * z),
    )


@_per_node
def _taylor_value(K, mom, i, g, c):
    """``sum_k K[k] * (moment_k(group g) - c * moment_k(area))`` of tree node ``i``."""
    acc = 0.0
    for k in range(10):
        acc += K[k] * (mom[i, 10 * g + k] - c * mom[i, 20 + k])
    return acc


@njit(cache=True)
def _const_taylor(K, x, y, z, a):
    """``sum_k K[k] * moment_k`` of a pixel of unit density, area ``a`` and centre
    (x, y, z) (the moments of :func:`_leaf_moments`, computed on the fly)."""
    s = a / 12.0
    q = 1.0 - s
    m2 = K[4] * (q * x * x + s) + K[5] * (q * y * y + s) + K[6] * (q * z * z + s)
    m2 += q * (K[7] * x * y + K[8] * x * z + K[9] * y * z)
    return a * (K[0] + K[1] * x + K[2] * y + K[3] * z + m2)


@_per_node
def _visit(mp, o, p, tid, vx, vy, vz, sigma, peak, kind, c0, c0w, arow, sindec_edges, res):
    """Evaluate a node, expand it in moments, or bound it.

    Returns (d_overlap, d_weighted, bound_o, bound_w, done). ``done`` means the node was
    integrated (or contributes exactly nothing) and needs no heap entry; otherwise the
    d_ values are provisional (a moment expansion, or 0) and the bounds bound their
    error.
    """
    const, r, rwv, rmax, rmin, wmax, wmin = _node_info(mp, o, p, tid)
    if const and r == c0 and rwv == c0w:
        return 0.0, 0.0, 0.0, 0.0, True  # integrand of the correction is zero here
    x, y, z = _node_centre(mp, o, p, tid)
    c2 = chord2(x, y, z, vx, vy, vz)
    psi = 2.0 * math.asin(min(0.5 * math.sqrt(c2), 1.0))
    rad = _MAXRAD[o]
    psi_min = max(psi - rad, 0.0)
    jc, j0, j1 = _zbins(sindec_edges, z, o)
    aconst = j0 == j1
    amax = _arow_max(arow, j0, j1)
    # across an A_eff edge the midpoint rule takes A at the centre: finer cells there
    res_a = res if aconst else res * _EDGE_RES
    if const and _resolved(o, psi_min, sigma, res_a):
        ga = psf_from_chord2(c2, sigma, peak, kind) * _AREA[o] * _cell_factor(o, psi, sigma)
        return (r - c0) * ga, (rwv - c0w) * arow[jc] * ga, 0.0, 0.0, True
    fo = max(rmax - c0, c0 - rmin)
    fw = max(wmax - c0w, c0w - wmin) * amax
    g_min = psf_at(psi_min, sigma, peak, kind)
    # G(psi_min) x area, or the PSF's tail mass beyond psi_min (G / peak, see psf_at)
    gint = g_min * min(_AREA[o], 1.0 / peak)
    bo = fo * gint
    bw = fw * gint
    if bo <= 0.0 and bw <= 0.0:
        return 0.0, 0.0, 0.0, 0.0, True
    vo = 0.0
    vw = 0.0
    if not const and mp[0] == 0 and rad <= _TAYLOR_RAD * sigma:
        # moment expansion of an internal node (sub-pixels of a map pixel are
        # constant and handled above); third-order remainder as its error bound:
        # |D^3 G| <= G(t) (t^3 + 3t) / sigma^3 (t = psi / sigma), <= 2.7 peak / sigma^3
        tmax = (psi + rad) / sigma
        env = min(g_min * (tmax * tmax * tmax + 3.0 * tmax), 2.7 * peak)
        e3 = env * _AREA[o] * _R3_MEAN * rad * rad * rad / (6.0 * sigma * sigma * sigma)
        K = _taylor_coefs(x, y, z, c2, vx, vy, vz, sigma, peak, kind)
        mom = mp[11]
        # the cubic term of a constant nearly cancels over a cell: the density's
        # variation drives the remainder (the offset from c0 counts at _ASYM)
        fo = (rmax - rmin) + _ASYM * fo
        fw = (wmax - wmin) * amax + _ASYM * fw
        if fo * e3 < bo:
            vo = _taylor_value(K, mom, tid, 0, c0)
            bo = fo * e3
        if fw * e3 < bw and (aconst or rad <= res_a * sigma):
            # across an A_eff edge: A at the centre, as the midpoint rule does
            a = arow[jc]
            vw = a * _taylor_value(K, mom, tid, 1, c0w)
            bw = fw * e3
        if bo <= 0.0 and bw <= 0.0:
            return vo, vw, 0.0, 0.0, True
    return vo, vw, bo, bw, False


# ======================================================================================
# one pair of neutrinos: the same traversal on the product G1 G2, with its own control
# variate (:func:`_pair_band_sum`), so pairs in regions of constant density (most pairs
# of background trials) cost no refinement
# ======================================================================================
@njit(cache=True)
def _product_centre(v1, s1, v2, s2, kind):
    """(x, y, z, g0): the point on the great circle n1 -> n2 where the gradient of
    log G1 + log G2 vanishes for the Gaussian (at angle d s1^2 / (s1^2 + s2^2) from
    n1), and g0, the gradient's magnitude there (0 for the Gaussian, small for vMF)."""
    c = min(1.0, max(-1.0, v1[0] * v2[0] + v1[1] * v2[1] + v1[2] * v2[2]))
    d = math.acos(c)
    sd = math.sin(d)
    a = d * s1 * s1 / (s1 * s1 + s2 * s2)
    if sd < 1e-12:  # (anti)parallel: the first direction, gradient bounded crudely
        g0 = 0.0 if c > 0.0 else math.pi * (1.0 / (s1 * s1) + 1.0 / (s2 * s2))
        return v1[0], v1[1], v1[2], g0
    w1 = math.sin(d - a) / sd
    w2 = math.sin(a) / sd
    x, y, z = w1 * v1[0] + w2 * v2[0], w1 * v1[1] + w2 * v2[1], w1 * v1[2] + w2 * v2[2]
    nn = math.sqrt(x * x + y * y + z * z)
    g0 = 0.0
    if kind == PSF_VMF:  # f = -(1 - cos psi) / s^2: gradient sin(psi) / s^2 per PSF
        g0 = abs(math.sin(a) / (s1 * s1) - math.sin(d - a) / (s2 * s2))
    return x / nn, y / nn, z / nn, g0


@_per_node
def _pair(mp, v1, s1, v2, s2, kind, arow1, arow2, sindec_edges, rtol, res, hi_, hf, wonly):
    """(overlap, weighted, node expansions) of rho * G1 * G2 (and rho w A1 A2 G1 G2)
    for one pair; -1 expansions: the heap is full (see :func:`_single`)."""
    pk1 = psf_peak(s1, kind)
    pk2 = psf_peak(s2, kind)
    cst = _product_centre(v1, s1, v2, s2, kind)
    s12 = s1 * s2 / math.sqrt(s1 * s1 + s2 * s2)  # width of the product G1 G2
    fr = _pair_frame(v1, s1, v2, s2)
    c0, c0w = _control(mp, fr[0], fr[1], fr[2], s12)
    base_o = 0.0
    base_w = 0.0
    if c0 != 0.0 or c0w != 0.0:
        u = min(math.pi, _CAP_L * s12)
        norm = _pair_radial(fr, 0.0, u, v1, s1, pk1, v2, s2, pk2, kind)
        base_o = c0 * norm
        if c0w != 0.0:
            base_w = c0w * _pair_band_sum(
                fr, u, norm, arow1, arow2, sindec_edges, v1, s1, pk1, v2, s2, pk2, kind
            )
    gr, gw = _global_max(mp)
    ato = ATOL * rtol * gr * min(pk1, pk2)
    if wonly:  # only ``weighted`` is wanted: the overlap's bounds never stop the loop
        ato = math.inf
    atw = ATOL * rtol * gw * min(pk1, pk2) * _row_max(arow1) * _row_max(arow2)
    acc_o = 0.0
    acc_w = 0.0
    rem_o = 0.0
    rem_w = 0.0
    n = 0
    steps = 0
    o, p, tid = 0, np.int64(0), np.int64(0)
    first = True
    while steps < _MAX_STEPS:
        steps += 1
        tot_o = base_o + acc_o
        tot_w = base_w + acc_w
        if first:
            nch = 12
        else:
            if n == 0:
                break
            if _converged(rem_o, rem_w, tot_o, tot_w, rtol, ato, atw):
                rem_o, rem_w = _remaining(hf, n)
                if _converged(rem_o, rem_w, tot_o, tot_w, rtol, ato, atw):
                    break
            o, p, tid, bo, bw, vo, vw, n = _heap_pop(hi_, hf, n)
            rem_o = max(rem_o - bo, 0.0)
            rem_w = max(rem_w - bw, 0.0)
            acc_o -= vo  # provisional values are replaced by the children's
            acc_w -= vw
            nch = 4
        if n + nch > hi_.shape[0]:
            return 0.0, 0.0, -1
        for c in range(nch):
            if first:
                co, cp, ct = 0, np.int64(c), np.int64(c)
            else:
                co, cp, ct = o + 1, 4 * p + c, _child_tid(mp, tid, c)
            do, dw, cbo, cbw, leaf = _visit_pair(
                mp, co, cp, ct, v1, s1, pk1, v2, s2, pk2, kind, arow1, arow2, sindec_edges,
                res, cst, c0, c0w,
            )  # fmt: skip
            acc_o += do
            acc_w += dw
            if not leaf:
                key = cbw / max(abs(tot_w), 1e-300)
                if not wonly:
                    key += cbo / max(abs(tot_o), 1e-300)
                n = _heap_push(hi_, hf, n, co, cp, ct, key, cbo, cbw, do, dw)
                rem_o += cbo
                rem_w += cbw
        first = False
    return base_o + acc_o, base_w + acc_w, steps


@njit(cache=True)
def _pair_cell_factor(o, x, y, z, c21, c22, v1, s1, v2, s2, kind):
    """Second-order correction of the midpoint rule for G1 G2 = exp(f) over a cell (see
    :func:`_cell_factor`): ``1 + (|grad f|^2 + lap f) * A / 24`` with
    ``grad f = grad log G1 + grad log G2`` (vector sum: the two gradients cancel
    between the PSFs) and ``lap f = -2 / s1^2 - 2 / s2^2``. Without it the rule
    underestimates the product's peak by ~ A / (12 s12^2): percent-level for cells of
    ``res`` sigma."""
    gx = 0.0
    gy = 0.0
    gz = 0.0
    for k in range(2):
        c2 = c21 if k == 0 else c22
        s = s1 if k == 0 else s2
        nx, ny, nz = (v1[0], v1[1], v1[2]) if k == 0 else (v2[0], v2[1], v2[2])
        cp = 1.0 - 0.5 * c2  # cos psi
        # grad log G = -q (x cos psi - n) / s^2 with q = psi / sin psi (Gauss), 1 (vMF)
        q = 1.0
        if kind == PSF_GAUSS:
            h = 0.5 * math.sqrt(c2)
            if h > 1e-4:
                psi = 2.0 * math.asin(min(h, 1.0))
                sp = math.sin(psi)
                q = psi / sp if sp > 1e-12 else 1.0
        f = -q / (s * s)
        gx += f * (x * cp - nx)
        gy += f * (y * cp - ny)
        gz += f * (z * cp - nz)
    g2 = gx * gx + gy * gy + gz * gz
    return 1.0 + _AREA[o] * (g2 - 2.0 / (s1 * s1) - 2.0 / (s2 * s2)) / 24.0


@_per_node
def _visit_pair(
    mp, o, p, tid, v1, s1, pk1, v2, s2, pk2, kind, arow1, arow2, sindec_edges, res, cst, c0, c0w
):
    """Pair version of :func:`_visit`: integrand ``(rho - c0) G1 G2`` (and
    ``(rho w - c0w) A1 A2 G1 G2``), the control variate having taken the rest."""
    const, r, rwv, rmax, rmin, wmax, wmin = _node_info(mp, o, p, tid)
    if const and r == c0 and rwv == c0w:
        return 0.0, 0.0, 0.0, 0.0, True  # integrand of the correction is zero here
    x, y, z = _node_centre(mp, o, p, tid)
    c21 = chord2(x, y, z, v1[0], v1[1], v1[2])
    c22 = chord2(x, y, z, v2[0], v2[1], v2[2])
    rad = _MAXRAD[o]
    pm1 = max(2.0 * math.asin(min(0.5 * math.sqrt(c21), 1.0)) - rad, 0.0)
    pm2 = max(2.0 * math.asin(min(0.5 * math.sqrt(c22), 1.0)) - rad, 0.0)
    jc, j0, j1 = _zbins(sindec_edges, z, o)
    aconst = j0 == j1
    a1max = _arow_max(arow1, j0, j1)
    a2max = _arow_max(arow2, j0, j1)
    # across an A_eff edge the midpoint rule takes A at the centre: finer cells there
    res_a = res if aconst else res * _EDGE_RES
    if const and _resolved(o, pm1, s1, res_a) and _resolved(o, pm2, s2, res_a):
        g = psf_from_chord2(c21, s1, pk1, kind) * psf_from_chord2(c22, s2, pk2, kind) * _AREA[o]
        g *= _pair_cell_factor(o, x, y, z, c21, c22, v1, s1, v2, s2, kind)
        return (r - c0) * g, (rwv - c0w) * arow1[jc] * arow2[jc] * g, 0.0, 0.0, True
    g1 = psf_at(pm1, s1, pk1, kind)
    g2 = psf_at(pm2, s2, pk2, kind)
    # the tail mass of one PSF beyond pm (G(pm) / peak, see psf_at) times the other's max
    gint = g1 * g2 * min(_AREA[o], min(1.0 / pk1, 1.0 / pk2))
    fo = max(rmax - c0, c0 - rmin)
    fw = max(wmax - c0w, c0w - wmin) * a1max * a2max
    bo = fo * gint
    bw = fw * gint
    if bo <= 0.0 and bw <= 0.0:
        return 0.0, 0.0, 0.0, 0.0, True
    vo = 0.0
    vw = 0.0
    s12 = s1 * s2 / math.sqrt(s1 * s1 + s2 * s2)  # width of the product G1 G2
    if mp[0] == 0 and rad <= _TAYLOR_RAD * s12:
        # internal nodes from their stored moments; a constant cell (a map pixel too
        # coarse for the midpoint rule, or a sub-pixel of one) from its own moments,
        # so the pair needs no control variate where the map is flat
        # moment expansion of G1 G2 (see _visit); exponent f = log G1 + log G2 has
        # |grad f| <= gm = psi1/s1^2 + psi2/s2^2 and |Hess f| <= 1/s12^2, so
        # |D^3 (G1 G2)| <= G1 G2 (gm^3 + 3 gm / s12^2) over the node. The gradient
        # vanishes (up to cst[3]) at the product's centre cst, so also
        # |grad f| <= cst[3] + dist(x, cst) / s12^2, far tighter between the two PSFs
        psi1 = 2.0 * math.asin(min(0.5 * math.sqrt(c21), 1.0))
        psi2 = 2.0 * math.asin(min(0.5 * math.sqrt(c22), 1.0))
        gm = (psi1 + rad) / (s1 * s1) + (psi2 + rad) / (s2 * s2)
        c2c = chord2(x, y, z, cst[0], cst[1], cst[2])
        psic = 2.0 * math.asin(min(0.5 * math.sqrt(c2c), 1.0))
        gm = min(gm, cst[3] + (psic + rad) / (s12 * s12))
        env = min(g1 * g2 * (gm * gm * gm + 3.0 * gm / (s12 * s12)), 2.7 * pk1 * pk2 / (s12 * s12 * s12))  # fmt: skip
        e3 = env * _AREA[o] * _R3_MEAN * rad * rad * rad / 6.0
        h0a, h1a, ha, hca, e1x, e1y, e1z = _psf_local(x, y, z, c21, v1[0], v1[1], v1[2], s1, pk1, kind)  # fmt: skip
        h0b, h1b, hb, hcb, e2x, e2y, e2z = _psf_local(x, y, z, c22, v2[0], v2[1], v2[2], s2, pk2, kind)  # fmt: skip
        # F = G1 G2: grad = h0b h1a e1 + h0a h1b e2; Hess = h0b H1 + h0a H2 + h1a h1b (e1 e2^T + e2 e1^T)
        a1 = 0.5 * h0b * ha
        a2 = 0.5 * h0a * hb
        c12 = 0.5 * h1a * h1b
        b = 0.5 * (h0b * hca + h0a * hcb)
        g1x, g1y, g1z = h0b * h1a * e1x + h0a * h1b * e2x, h0b * h1a * e1y + h0a * h1b * e2y, h0b * h1a * e1z + h0a * h1b * e2z  # fmt: skip
        K = (
            h0a * h0b,
            g1x,
            g1y,
            g1z,
            a1 * e1x * e1x + a2 * e2x * e2x + 2.0 * c12 * e1x * e2x + b * (1.0 - x * x),
            a1 * e1y * e1y + a2 * e2y * e2y + 2.0 * c12 * e1y * e2y + b * (1.0 - y * y),
            a1 * e1z * e1z + a2 * e2z * e2z + 2.0 * c12 * e1z * e2z + b * (1.0 - z * z),
            2.0 * (a1 * e1x * e1y + a2 * e2x * e2y + c12 * (e1x * e2y + e2x * e1y) - b * x * y),
            2.0 * (a1 * e1x * e1z + a2 * e2x * e2z + c12 * (e1x * e2z + e2x * e1z) - b * x * z),
            2.0 * (a1 * e1y * e1z + a2 * e2y * e2z + c12 * (e1y * e2z + e2y * e1z) - b * y * z),
        )
        mom = mp[11]
        # the cubic term of a constant nearly cancels over a cell: the density's
        # variation drives the remainder (its level counts at _ASYM), as in _visit
        if not const:  # a constant keeps the full remainder (nothing varies to dominate)
            fo = (rmax - rmin) + _ASYM * fo
            fw = (wmax - wmin) * a1max * a2max + _ASYM * fw
        kc = _const_taylor(K, x, y, z, _AREA[o]) if const else 0.0
        if fo * e3 < bo:
            vo = (r - c0) * kc if const else _taylor_value(K, mom, tid, 0, c0)
            bo = fo * e3
        if fw * e3 < bw and (aconst or rad <= res * _EDGE_RES * s12):
            dw = (rwv - c0w) * kc if const else _taylor_value(K, mom, tid, 1, c0w)
            vw = arow1[jc] * arow2[jc] * dw
            bw = fw * e3
        if bo <= 0.0 and bw <= 0.0:
            return vo, vw, 0.0, 0.0, True
    return vo, vw, bo, bw, False


# ======================================================================================
# batch drivers (parallel over neutrinos)
# ======================================================================================
@njit(cache=True, parallel=True)
def _overlap_many(mp, ra, dec, sigma, rows, sindec_edges, kind, rtol, res, cs):
    n = ra.shape[0]
    out_o = np.empty(n)
    out_w = np.empty(n)
    steps = np.empty(n, np.int64)  # node expansions per neutrino (diagnostics)
    nchunks = (n + cs - 1) // cs
    for ch in prange(nchunks):
        hi_, hf = _heap_arrays(4096)  # 256 KiB; larger heaps are rare
        for i in range(ch * cs, min(n, (ch + 1) * cs)):
            vx, vy, vz = radec_to_vec(ra[i], dec[i])
            while True:
                o_, w_, st = _single(
                    mp, vx, vy, vz, sigma[i], kind, rows[i], sindec_edges, rtol, res, hi_, hf
                )
                if st >= 0:
                    break
                hi_, hf = _heap_arrays(2 * hi_.shape[0])  # kept for the chunk's later ones
            out_o[i], out_w[i], steps[i] = o_, w_, st
    return out_o, out_w, steps


@njit(cache=True, parallel=True)
def _pair_many(mp, ra1, dec1, s1, rows1, ra2, dec2, s2, rows2, sindec_edges, kind, rtol, res, cs, wonly=False):  # fmt: skip
    n = ra1.shape[0]
    out_o = np.empty(n)
    out_w = np.empty(n)
    steps = np.empty(n, np.int64)
    nchunks = (n + cs - 1) // cs
    for ch in prange(nchunks):
        hi_, hf = _heap_arrays(4096)  # 256 KiB; larger heaps are rare
        v1 = np.empty(3)
        v2 = np.empty(3)
        for i in range(ch * cs, min(n, (ch + 1) * cs)):
            v1[0], v1[1], v1[2] = radec_to_vec(ra1[i], dec1[i])
            v2[0], v2[1], v2[2] = radec_to_vec(ra2[i], dec2[i])
            while True:
                o_, w_, st = _pair(
                    mp, v1, s1[i], v2, s2[i], kind, rows1[i], rows2[i], sindec_edges, rtol,
                    res, hi_, hf, wonly,
                )  # fmt: skip
                if st >= 0:
                    break
                hi_, hf = _heap_arrays(2 * hi_.shape[0])
            out_o[i], out_w[i], steps[i] = o_, w_, st
            if wonly:
                out_o[i] = np.nan
    return out_o, out_w, steps


# ======================================================================================
# map preparation
# ======================================================================================
@njit(cache=True)
def _prepare_moc(uniq, probdensity, pixel_weight):
    order, ipix = uniq_to_order_ipix_array(uniq)
    n = order.shape[0]
    top = 0
    for k in range(n):
        top = max(top, order[k])
    lo = np.empty(n, np.int64)
    hi = np.empty(n, np.int64)
    for k in range(n):
        sh = 2 * (top - order[k])
        lo[k] = ipix[k] << sh
        hi[k] = (ipix[k] + 1) << sh
    rho = np.zeros(n + 1)
    rw = np.zeros(n + 1)
    rho[:n] = probdensity
    rw[:n] = probdensity * pixel_weight
    t_child, t_row, bnd, mom, cen = _build_tree(order, ipix, lo, hi, rho, rw, top)
    poff = np.zeros(1, np.int64)
    return (np.int64(0), top, rho, rw, lo, hi, t_child, t_row, bnd, poff, np.int64(-1), mom, cen)


@njit(cache=True)
def _prepare_flat(prob, pixel_weight, top):
    area = pixel_area(top)
    rho = prob / area
    rw = rho * pixel_weight
    pord = min(top - 1, 7)  # pyramid down to order 7: <= 1.1 M nodes, ~35 MB
    poff, bnd = _build_pyramid(rho, rw, top, pord)
    empty = np.zeros(1, np.int64)
    mom = np.zeros((1, _NMOM))  # no moments: the implicit tree refines to the pixels
    cen = np.zeros((1, 3))  # the implicit tree computes its centres
    return (np.int64(1), np.int64(top), rho, rw, empty, empty, empty, empty, bnd, poff, np.int64(pord), mom, cen)  # fmt: skip


# ======================================================================================
# public API
# ======================================================================================
def _chunk(n):
    """Neutrinos per prange chunk: a few chunks per thread, each reusing one heap."""
    return max(1, min(64, n // (4 * get_num_threads()) + 1))


def _f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _check_psf(psf_kind):
    if psf_kind not in (PSF_GAUSS, PSF_VMF):
        raise ValueError(f"psf_kind must be 0 (Gaussian) or 1 (von Mises-Fisher), got {psf_kind}")


def _rows(rows, sindec_edges, n):
    """Validate per-neutrino weight rows (n, n_dec) against the sin(dec) band edges."""
    se = _f64(sindec_edges)
    r = _f64(rows)
    if se.ndim != 1 or se.size < 2 or np.any(np.diff(se) <= 0):
        raise ValueError("sindec_edges must be 1-D, ascending, with at least 2 edges")
    if r.ndim != 2 or r.shape != (n, se.size - 1):
        raise ValueError(
            f"weight rows must have shape (n_neutrinos, len(sindec_edges)-1) = "
            f"({n}, {se.size - 1}), got {r.shape}"
        )
    if np.any(~(r >= 0)):
        raise ValueError("weight rows must be finite and >= 0")
    return r, se


def _sorted_moc(uniq, probdensity, pixel_weight):
    uniq = np.ascontiguousarray(uniq, dtype=np.int64)
    rho = _f64(probdensity)
    w = np.ones_like(rho) if pixel_weight is None else _f64(pixel_weight)
    if not (uniq.shape == rho.shape == w.shape):
        raise ValueError("uniq, probdensity and pixel_weight must have the same length")
    order, ipix = uniq_to_order_ipix_array(uniq)
    lo = ipix << (2 * (29 - order))
    if lo.size > 1 and np.any(np.diff(lo) < 0):  # accept any row order, sort once
        idx = np.argsort(lo, kind="stable")
        uniq, rho, w = uniq[idx], rho[idx], w[idx]
    return uniq, rho, w


def _flat_order(npix):
    order = int(round(np.log2(npix / 12) / 2))
    if 12 * 4**order != npix:
        raise ValueError(f"flat map length {npix} is not 12 * 4**order")
    return order


def _neutrinos(*arrays):
    out = [_f64(a) for a in arrays]
    if len({a.shape for a in out}) != 1 or out[0].ndim != 1:
        raise ValueError("neutrino arrays must be 1-D and of equal length")
    return out


class PreparedMap:
    """A sky map prepared once for any number of overlap calls.

    Holds the sorted map, its quadtree with min/max bounds and node moments (multi-order
    maps) or the min/max pyramid (flat maps). Build it with :func:`prepare_map` or
    :func:`prepare_map_flat` and pass it to :func:`psf_overlap_prepared` and
    :func:`psf_pair_overlap_prepared`; the kernels then pay only the traversal.

    Attributes
    ----------
    mp : tuple
        The arrays the kernels read (see "map representations" in the source).
    nbytes : int
        Memory held by those arrays [bytes].
    """

    __slots__ = ("mp", "nbytes")

    def __init__(self, mp):
        self.mp = mp
        self.nbytes = int(sum(getattr(a, "nbytes", 0) for a in mp))

    def __repr__(self):
        kind = "multi-order" if self.mp[0] == 0 else "flat"
        return f"PreparedMap({kind}, order {int(self.mp[1])}, {self.nbytes / 2**20:.1f} MiB)"


def prepare_map(uniq, probdensity, pixel_weight=None) -> PreparedMap:
    """Prepare a multi-order map (arguments as in :func:`psf_overlap`) once.

    Examples
    --------
    >>> import numpy as np
    >>> pm = prepare_map(4 + np.arange(12), np.full(12, 1 / (4 * np.pi)))
    >>> ov, wt = psf_overlap_prepared(pm, [1.0], [0.2], [0.01], [[2.0]], [-1.0, 1.0],
    ...                               psf_kind=1)
    >>> bool(np.isclose(wt[0], 2 / (4 * np.pi)))
    True
    """
    uniq, rho, w = _sorted_moc(uniq, probdensity, pixel_weight)
    return PreparedMap(_prepare_moc(uniq, rho, w))


def prepare_map_flat(prob_nested, pixel_weight=None) -> PreparedMap:
    """Prepare a flat NESTED map of probability per pixel (see :func:`psf_overlap_flat`)."""
    prob = _f64(prob_nested)
    top = _flat_order(prob.size)
    w = np.ones_like(prob) if pixel_weight is None else _f64(pixel_weight)
    return PreparedMap(_prepare_flat(prob, w, top))


def psf_overlap_prepared(
    pmap,
    ra,
    dec,
    sigma,
    rows,
    sindec_edges,
    psf_kind=PSF_GAUSS,
    *,
    rtol=RTOL,
    res=RES,
):
    """:func:`psf_overlap` on a :class:`PreparedMap` (pixel weights were given there)."""
    _check_psf(psf_kind)
    ra, dec, sigma = _neutrinos(ra, dec, sigma)
    rows, se = _rows(rows, sindec_edges, ra.size)
    if ra.size == 0:
        return np.empty(0), np.empty(0)
    return _overlap_many(
        pmap.mp, ra, dec, sigma, rows, se, psf_kind, float(rtol), float(res), _chunk(ra.size)
    )[:2]


def psf_pair_overlap_prepared(
    pmap,
    ra_i,
    dec_i,
    sigma_i,
    rows_i,
    ra_j,
    dec_j,
    sigma_j,
    rows_j,
    sindec_edges,
    psf_kind=PSF_GAUSS,
    *,
    rtol=RTOL,
    res=RES,
    weighted_only=False,
):
    """:func:`psf_pair_overlap` on a :class:`PreparedMap`.

    ``weighted_only=True``: only ``weighted`` is computed to ``rtol`` (the pruning
    ignores the overlap's bounds); ``overlap`` is then returned as NaN.
    """
    _check_psf(psf_kind)
    ra_i, dec_i, sigma_i, ra_j, dec_j, sigma_j = _neutrinos(
        ra_i, dec_i, sigma_i, ra_j, dec_j, sigma_j
    )
    rows_i, se = _rows(rows_i, sindec_edges, ra_i.size)
    rows_j, _ = _rows(rows_j, sindec_edges, ra_i.size)
    if ra_i.size == 0:
        return np.empty(0), np.empty(0)
    return _pair_many(
        pmap.mp, ra_i, dec_i, sigma_i, rows_i, ra_j, dec_j, sigma_j, rows_j, se, psf_kind,
        float(rtol), float(res) / math.sqrt(2.0), _chunk(ra_i.size), bool(weighted_only),
    )[:2]  # fmt: skip


def psf_overlap(
    uniq,
    probdensity,
    ra,
    dec,
    sigma,
    rows,
    sindec_edges,
    pixel_weight=None,
    psf_kind=PSF_GAUSS,
    *,
    rtol=RTOL,
    res=RES,
):
    """Spatial overlap of many neutrino PSFs with one multi-order sky map.

    Parameters
    ----------
    uniq : (m,) int64
        NUNIQ pixel indices of a multi-order map; disjoint pixels covering the sphere
        (sky not covered counts as zero density). Any row order is accepted.
    probdensity : (m,) float64
        Probability density per pixel [sr^-1].
    ra, dec, sigma : (n,) float64
        Neutrino directions and 1-sigma errors [rad].
    rows : (n, n_dec) float64
        Per neutrino, a non-negative sky weight constant in each sin(dec) band (the
        signal energy density a(eps_i, theta = 90 deg + dec) of the LLAMA statistic, in
        any unit; ``weighted`` carries it).
    sindec_edges : (n_dec + 1,) float64
        sin(dec) band edges, ascending; positions outside use the edge bands.
    pixel_weight : (m,) float64 or None
        Non-negative per-pixel multiplier inside ``weighted`` (None: ones, the O3 case).
    psf_kind : int
        0: O3 2-D Gaussian ``exp(-psi^2/2 sigma^2)/(2 pi sigma^2)``; 1: von Mises-Fisher
        with ``kappa = 1/sigma^2`` normalised on the sphere.
    rtol : float
        Relative tolerance of the pruning: the sum of upper bounds of everything not
        evaluated is below ``rtol`` times each result.
    res : float
        Midpoint-rule resolution in units of sigma (smaller is more accurate, slower).

    Returns
    -------
    overlap : (n,) float64
        ``sum_pix rho * integral_pix G_i dOmega`` [sr^-1].
    weighted : (n,) float64
        ``sum_pix rho * w * integral_pix rows_i(dec) G_i dOmega`` [row unit / sr].

    Examples
    --------
    >>> import numpy as np
    >>> uniq = 4 + np.arange(12)          # order 0, uniform map
    >>> rho = np.full(12, 1 / (4 * np.pi))
    >>> ov, wt = psf_overlap(uniq, rho, [1.0], [0.2], [0.01], [[2.0]], [-1.0, 1.0],
    ...                      psf_kind=1)
    >>> bool(np.isclose(ov[0], 1 / (4 * np.pi))), bool(np.isclose(wt[0], 2 / (4 * np.pi)))
    (True, True)
    """
    pmap = prepare_map(uniq, probdensity, pixel_weight)
    return psf_overlap_prepared(
        pmap, ra, dec, sigma, rows, sindec_edges, psf_kind, rtol=rtol, res=res
    )


def psf_overlap_flat(
    prob_nested,
    ra,
    dec,
    sigma,
    rows,
    sindec_edges,
    pixel_weight=None,
    psf_kind=PSF_GAUSS,
    *,
    rtol=RTOL,
    res=RES,
):
    """Same as :func:`psf_overlap` for a flat NESTED map of probability PER PIXEL.

    ``prob_nested`` has ``12 * 4**order`` entries (convert a RING map first with
    ``healpy.reorder(m, r2n=True)``); the density is ``prob / pixel_area``. No uniq array
    is built: the tree is implicit, with a min/max pyramid down to order 7 (~35 MB).
    ``pixel_weight`` is per flat pixel (None: ones).
    """
    pmap = prepare_map_flat(prob_nested, pixel_weight)
    return psf_overlap_prepared(
        pmap, ra, dec, sigma, rows, sindec_edges, psf_kind, rtol=rtol, res=res
    )


def psf_pair_overlap(
    uniq,
    probdensity,
    ra_i,
    dec_i,
    sigma_i,
    rows_i,
    ra_j,
    dec_j,
    sigma_j,
    rows_j,
    sindec_edges,
    pixel_weight=None,
    psf_kind=PSF_GAUSS,
    *,
    rtol=RTOL,
    res=RES,
):
    """Doublet overlap of neutrino pairs (i[k], j[k]) with a multi-order map.

    Arguments as in :func:`psf_overlap`; the ``_i`` and ``_j`` arrays list the two
    members of each pair (equal lengths).

    Returns
    -------
    overlap : (n_pairs,) float64
        ``sum_pix rho * integral_pix G_i G_j dOmega`` [sr^-2].
    weighted : (n_pairs,) float64
        ``sum_pix rho * w * integral_pix rows_i G_i rows_j G_j dOmega`` [row unit^2 / sr^2].
    """
    pmap = prepare_map(uniq, probdensity, pixel_weight)
    args = (ra_i, dec_i, sigma_i, rows_i, ra_j, dec_j, sigma_j, rows_j, sindec_edges)
    return psf_pair_overlap_prepared(pmap, *args, psf_kind, rtol=rtol, res=res)


def psf_pair_overlap_flat(
    prob_nested,
    ra_i,
    dec_i,
    sigma_i,
    rows_i,
    ra_j,
    dec_j,
    sigma_j,
    rows_j,
    sindec_edges,
    pixel_weight=None,
    psf_kind=PSF_GAUSS,
    *,
    rtol=RTOL,
    res=RES,
):
    """:func:`psf_pair_overlap` for a flat NESTED map of probability per pixel."""
    pmap = prepare_map_flat(prob_nested, pixel_weight)
    args = (ra_i, dec_i, sigma_i, rows_i, ra_j, dec_j, sigma_j, rows_j, sindec_edges)
    return psf_pair_overlap_prepared(pmap, *args, psf_kind, rtol=rtol, res=res)
