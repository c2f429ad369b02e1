"""The sky weight's sin(dec) bands ("A_eff" bands): which bands a node touches, and the
control variate's exact ``int A(sin dec) G dOmega``, a sum over band edges of the PSF
mass north of each edge (a 1-D quadrature per edge within reach of the PSF)."""

from __future__ import annotations

import math

import numpy as np

from .common import (
    CAP_L,
    CAP_TAIL,
    COSRAD,
    GLW,
    GLX,
    NGL,
    SINRAD,
    TWO_PI,
    helper,
    inline,
    per_node,
    search_right,
)
from .psf import psf_at

#: The band integrals' shells beyond ``CAP_L`` sigma are added when they may exceed
#: this fraction of the rest (1e-3 of the default rtol: a shell otherwise changes the
#: result by less): 1.6% of the bench's random-sky neutrinos pay for them (15% at 1e-7).
SHELL_SKIP = 1e-5


@helper
def bin_index(edges: np.ndarray, x: float) -> int:
    """Bin of ``x`` given ascending ``edges`` (n+1 values), clamped to [0, n-1]."""
    nb = edges.shape[0] - 1
    k = search_right(edges, x) - 1
    if k < 0:
        return 0
    if k > nb - 1:
        return nb - 1
    return k


@inline  # once per node visit: called, every live float of the visit was saved around it
def zbins(sindec_edges: np.ndarray, z: float, o: int) -> tuple[int, int, int]:
    """Bands of a pixel of order ``o`` centred at ``sin dec = z``: (band of the
    centre, lowest and highest band within its radius ``MAXRAD[o]``)."""
    # sin(dec -/+ rad) by the addition theorem (no asin); clamp at the poles
    c = math.sqrt(max(0.0, 1.0 - z * z))
    cr, sr = COSRAD[o], SINRAD[o]
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


@helper
def row_max_between(arow: np.ndarray, j0: int, j1: int) -> float:
    """Largest weight of one row over bands j0..j1."""
    amax = arow[j0]
    for j in range(j0 + 1, j1 + 1):
        amax = max(amax, arow[j])
    return amax


@per_node
def row_max(a: np.ndarray) -> float:
    """Largest value of a 1-D array (a loop: callers run without reference counting)."""
    m = a[0]
    for k in range(1, a.shape[0]):
        m = max(m, a[k])
    return m


@helper
def ring_z(i, nside):
    """z of HEALPix ring ``i`` (0: the north pole, ``4 nside``: the south pole)."""
    if i <= nside:
        return 1.0 - i * i / (3.0 * nside * nside)
    if i < 3 * nside:
        return 4.0 / 3.0 - 2.0 * i / (3.0 * nside)
    k = 4 * nside - i
    return k * k / (3.0 * nside * nside) - 1.0


@helper
def cell_span(z, o):
    """(zn, zs): sin dec of the north and south corners of a HEALPix pixel of order
    ``o`` centred at ``sin dec = z``. A pixel is a diamond in (z, phi), equal-area
    coordinates: its north and south corners lie on the rings next to its own, its
    east and west ones on its ring (exactly so in the equatorial belt, nearly in the
    polar caps)."""
    n = np.int64(1) << o
    if z > 2.0 / 3.0:
        i = np.int64(round(n * math.sqrt(3.0 * (1.0 - z))))
    elif z < -2.0 / 3.0:
        i = 4 * n - np.int64(round(n * math.sqrt(3.0 * (1.0 + z))))
    else:
        i = np.int64(round(n * (2.0 - 1.5 * z)))
    return ring_z(max(i - 1, 0), n), ring_z(min(i + 1, 4 * n), n)


@helper
def north_share(e, z, zn, zs):
    """Fraction of the area of the diamond of :func:`cell_span` (centre ``z``, corners
    ``zn``, ``zs``) north of ``sin dec = e``: a triangle's share on either side."""
    hn = max(zn - z, 1e-300)
    hs = max(z - zs, 1e-300)
    if e >= z:
        t = max(zn - e, 0.0) / hn
        return t * t * hn / (hn + hs)
    t = max(e - zs, 0.0) / hs
    return 1.0 - t * t * hs / (hn + hs)


@per_node
def cell_weight(arow: np.ndarray, sindec_edges: np.ndarray, z: float, o: int, j0: int, j1: int) -> float:  # fmt: skip
    """Mean weight of the row over a pixel of order ``o`` centred at ``sin dec = z``
    that crosses band edges ``j0 + 1 .. j1``: each band's share of the pixel's area
    (see :func:`cell_span`). The midpoint rule's weight at the centre was off by up to
    the whole jump for a pixel straddling an edge: where the weight jumps 1e11-fold
    (a(eps) of a southern neutrino) and the edge carries the result, that was 2.5%."""
    zn, zs = cell_span(z, o)
    a = arow[j0]
    for j in range(j0 + 1, j1 + 1):
        a += (arow[j] - arow[j - 1]) * north_share(sindec_edges[j], z, zn, zs)
    return a


@per_node
def cell_weight_slope(arow: np.ndarray, sindec_edges: np.ndarray, z: float, o: int, j0: int, j1: int):  # fmt: skip
    """:func:`cell_weight` (bit for bit) and the first moment in sin dec of the row's
    weight over the pixel, about its centroid: ``int a (z - z_mean) dA / A`` over the
    diamond of :func:`cell_span`. Times the integrand's slope along sin dec, the
    first-order term the midpoint rule misses there: the part of the pixel in a band
    of larger weight lies to one side of its centre (a neutrino south of an edge where
    the weight jumps: +0.22% on the S of a 3.5 deg PSF at the default resolution)."""
    zn, zs = cell_span(z, o)
    hn = max(zn - z, 1e-300)
    hs = max(z - zs, 1e-300)
    z_mean = z + (hn - hs) / 3.0  # the two triangles' centroids, by their areas
    a = arow[j0]
    m = 0.0
    for j in range(j0 + 1, j1 + 1):
        e = sindec_edges[j]
        da = arow[j] - arow[j - 1]
        a += da * north_share(e, z, zn, zs)
        if e >= z:  # north of e: a triangle from e to the north corner
            d = max(zn - e, 0.0)
            m += da * (d / hn) * (d / hn) * hn / (hn + hs) * (zn - 2.0 * d / 3.0 - z_mean)
        else:  # the whole less the triangle south of e
            d = max(e - zs, 0.0)
            m -= da * (d / hs) * (d / hs) * hs / (hn + hs) * (zs + 2.0 * d / 3.0 - z_mean)
    return a, m


@per_node
def cell_weight_pair(arow1: np.ndarray, arow2: np.ndarray, sindec_edges: np.ndarray, z: float, o: int, j0: int, j1: int) -> float:  # fmt: skip
    """:func:`cell_weight` of a pair's weight, the product of its two rows band by band
    (no scratch row: the products are formed here)."""
    zn, zs = cell_span(z, o)
    prev = arow1[j0] * arow2[j0]
    a = prev
    for j in range(j0 + 1, j1 + 1):
        cur = arow1[j] * arow2[j]
        a += (cur - prev) * north_share(sindec_edges[j], z, zn, zs)
        prev = cur
    return a


@helper
def cap_frac(psi, zn, cn, z1):
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


@helper
def gl_psf(a, b, sigma, peak, kind):
    """Gauss-Legendre ``int_a^b G(psi) sin(psi) dpsi`` (smooth integrand)."""
    acc = 0.0
    h = b - a
    for k in range(NGL):
        t = a + h * GLX[k]
        acc += GLW[k] * psf_at(t, sigma, peak, kind) * math.sin(t)
    return acc * h


@helper
def cap_split(dn, z1, u):
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


@helper
def arc_node(k, pa, pb, u):
    """Node ``k`` of the quadrature over the circles that cross the declination line,
    ``psi`` in ``[pa, min(pb, u)]``: ``(psi, weight x jacobian)``, substituted so that
    the square-root ends at the kinks become smooth."""
    if pb <= u:  # both kinks: psi = pa + (pb - pa) (1 - cos t) / 2, t in [0, pi]
        h = pb - pa
        t = math.pi * GLX[k]
        return pa + 0.5 * h * (1.0 - math.cos(t)), GLW[k] * 0.5 * h * math.sin(t) * math.pi
    h = u - pa  # one kink: psi = pa + (u - pa) s^2, s in [0, 1]
    sk = GLX[k]
    return pa + h * sk * sk, GLW[k] * 2.0 * h * sk


@helper
def cap_shell(zn, cn, dn, z1, a, b, sigma, peak, kind):
    """``int_a^b G(psi) sin(psi) frac(psi) dpsi``: the PSF mass north of a declination
    between the circles at ``a`` and ``b`` (without the ``2 pi``), for the far shell of
    :func:`cap_integral`. ``frac`` is 0 or 1 outside the kinks ``pa``, ``pb`` (see
    :func:`cap_split`); between them the nodes sit densest at both ends, where it has
    its square-root kinks. A relative accuracy of ~1e-6 is plenty: the shell is below
    1e-9 of the PSF."""
    whole, pa, pb = cap_split(dn, z1, b)
    if whole == 0:
        return 0.0
    if whole == 1:
        return gl_psf(a, b, sigma, peak, kind)
    tot = 0.0
    if pa > a and zn > z1:  # circles nearer than the declination line: inside
        tot += gl_psf(a, min(pa, b), sigma, peak, kind)
    lo, hi = max(a, pa), min(b, pb)
    if hi > lo:
        h = hi - lo
        for k in range(NGL):
            t = math.pi * GLX[k]
            psi = lo + 0.5 * h * (1.0 - math.cos(t))
            w = GLW[k] * 0.5 * h * math.sin(t) * math.pi
            tot += w * psf_at(psi, sigma, peak, kind) * math.sin(psi) * cap_frac(psi, zn, cn, z1)  # fmt: skip
    if pb < b and cap_frac(0.5 * (max(a, pb) + b), zn, cn, z1) > 0.5:
        tot += gl_psf(max(a, pb), b, sigma, peak, kind)
    return tot


@helper
def cap_integral(zn, cn, dn, z1, sigma, peak, kind, norm):
    """``int_{sin dec > z1} G dOmega``: the PSF mass north of a declination.

    ``2 pi int G(psi) sin(psi) frac(psi) dpsi`` over ``psi < min(pi, CAP_L sigma)``
    (the rest is below 1e-9 of the PSF; :func:`cap_tail` adds it where it counts),
    split where ``frac`` has kinks (see :func:`cap_split`, :func:`arc_node`).
    """
    u = min(math.pi, CAP_L * sigma)
    whole, pa, pb = cap_split(dn, z1, u)
    if whole >= 0:
        return whole * norm
    tot = 0.0
    if pa > 0.0 and zn > z1:  # circles nearer than the declination line: inside
        tot += gl_psf(0.0, min(pa, u), sigma, peak, kind)
    if pa < u and pb > pa:
        for k in range(NGL):
            psi, w = arc_node(k, pa, pb, u)
            tot += w * psf_at(psi, sigma, peak, kind) * math.sin(psi) * cap_frac(psi, zn, cn, z1)  # fmt: skip
    if pb < u and cap_frac(0.5 * (pb + u), zn, cn, z1) > 0.5:
        tot += gl_psf(pb, u, sigma, peak, kind)
    return TWO_PI * tot


@helper
def cap_tail(zn, cn, dn, z1, sigma, peak, kind):
    """What :func:`cap_integral` leaves out between ``CAP_L`` and ``CAP_TAIL`` sigma
    (beyond, below 3e-18 of the PSF): the shell's mass north of the declination, less,
    where the whole inner disc counted as north (the whole PSF), its mass south."""
    u = min(math.pi, CAP_L * sigma)
    u2 = min(math.pi, CAP_TAIL * sigma)
    if u2 <= u:
        return 0.0
    whole = cap_split(dn, z1, u)[0]
    if cap_split(dn, z1, u2)[0] == whole and whole >= 0:  # beyond the shell too
        return 0.0
    shell = cap_shell(zn, cn, dn, z1, u, u2, sigma, peak, kind)
    if whole == 1:
        return -TWO_PI * (gl_psf(u, u2, sigma, peak, kind) - shell)
    return TWO_PI * shell


@helper
def band_sum(vz, sigma, peak, kind, norm, arow, sindec_edges):
    """``int A(sin dec) G dOmega`` over the sphere for one weight row (clamped bands):
    ``A_0 norm + sum_j (A_j - A_{j-1}) * (PSF mass north of edge j)``."""
    zn = min(1.0, max(-1.0, vz))
    cn = math.sqrt(max(0.0, 1.0 - zn * zn))
    dn = math.asin(zn)
    acc = arow[0] * norm
    jumps = 0.0
    for j in range(1, arow.shape[0]):
        da = arow[j] - arow[j - 1]
        if da != 0.0:
            acc += da * cap_integral(zn, cn, dn, sindec_edges[j], sigma, peak, kind, norm)
            jumps += abs(da)
    # the shells beyond CAP_L sigma, where the weight's jumps times the PSF's mass out
    # there (at most G(CAP_L sigma) / peak) may count (a band 1e11 times the weight of
    # the neutrino's own, as a(eps) has in the south): 2-3 edges of 1-3 dozen PSF
    # values each, which every neutrino paying for them cost 15% of the trials' time
    u = min(math.pi, CAP_L * sigma)
    if jumps * psf_at(u, sigma, peak, kind) > SHELL_SKIP * peak * abs(acc):
        for j in range(1, arow.shape[0]):
            da = arow[j] - arow[j - 1]
            if da != 0.0:
                acc += da * cap_tail(zn, cn, dn, sindec_edges[j], sigma, peak, kind)
    return acc
