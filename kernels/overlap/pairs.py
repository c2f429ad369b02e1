"""Doublets: the overlap of a pair's product ``G1 G2`` with the map, and its batch
drivers.

The same best-first traversal as :mod:`.traversal` on the product, with its own control
variate: the sphere integrals of ``G1 G2`` and ``A1 A2 G1 G2`` (band by band) by a polar
quadrature about the product's centre, where the product is nearly isotropic (exactly
so for the vMF PSF), so pairs in regions of constant density (most pairs of background
trials) need no refinement at all.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..healpix import chord2, radec_to_vec
from .bands import (
    SHELL_SKIP,
    arc_node,
    cap_frac,
    cap_split,
    cell_weight_pair,
    row_max,
    row_max_between,
    zbins,
)
from .cells import cell_spread
from .common import (
    AREA,
    ASYM,
    ATOL,
    CAP_L,
    CAP_TAIL,
    EDGE_RES,
    GLW,
    GLX,
    MAX_STEPS,
    MAXRAD,
    NGL,
    NPHI,
    PHW,
    PHX,
    R3_MEAN,
    TAYLOR_RAD,
    TWO_PI,
    helper,
    inline,
    parallel_kernel,
    per_node,
    traversal_kernel,
)
from .psf import PSF_GAUSS, PSF_VMF, psf_at, psf_from_chord2, psf_local, psf_peak, resolved
from .records import Accuracy, Heap, Neutrinos, PreparedMap, SignalRows
from .traversal import (
    CANCEL,
    DRIFT,
    HEAP_SIZE,
    converged,
    heap_pop,
    heap_push,
    new_heap,
    remaining,
)
from .tree import (
    child_tid,
    const_taylor,
    control,
    global_max,
    node_centre,
    node_info,
    taylor_value,
)

#: The far shell of a pair's band integrals (see :func:`pair_band_sum`) is skipped where
#: it may add less than this fraction of the traversal's absolute floor to the result.
SHELL_FLOOR = 1e-3


# --------------------------------------------------------------------------------------
# the pair control variate: G1 G2 (and A1 A2 G1 G2) integrated over the sphere
# --------------------------------------------------------------------------------------
@helper
def pair_frame(v1, s1, v2, s2):
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


@helper
def pair_ring(fr, psi, half, v1, s1, pk1, v2, s2, pk2, kind):
    """``int G1 G2 dphi`` over the azimuths ``|phi| <= half`` (from north) of the circle
    at angle ``psi`` around the product's centre; ``half >= pi``: the whole circle
    (trapezoid rule, exact for a periodic integrand), else Gauss-Legendre."""
    cp = math.cos(psi)
    sp = math.sin(psi)
    full = half >= math.pi
    acc = 0.0
    for k in range(NPHI):
        if full:
            phi = TWO_PI * (k + 0.5) / NPHI
            wk = TWO_PI / NPHI
        else:
            phi = half * (2.0 * PHX[k] - 1.0)
            wk = 2.0 * half * PHW[k]
        a = sp * math.cos(phi)
        b = sp * math.sin(phi)
        x = cp * fr[0] + a * fr[3] + b * fr[6]
        y = cp * fr[1] + a * fr[4] + b * fr[7]
        z = cp * fr[2] + a * fr[5] + b * fr[8]
        g = psf_from_chord2(chord2(x, y, z, v1[0], v1[1], v1[2]), s1, pk1, kind)
        g *= psf_from_chord2(chord2(x, y, z, v2[0], v2[1], v2[2]), s2, pk2, kind)
        acc += wk * g
    return acc


@helper
def pair_radial(fr, a, b, v1, s1, pk1, v2, s2, pk2, kind):
    """``int_a^b (int G1 G2 dphi) sin(psi) dpsi`` over whole circles (Gauss-Legendre)."""
    acc = 0.0
    h = b - a
    for k in range(NGL):
        t = a + h * GLX[k]
        acc += GLW[k] * pair_ring(fr, t, math.pi, v1, s1, pk1, v2, s2, pk2, kind) * math.sin(t)
    return acc * h


@helper
def pair_cap(fr, u, z1, norm, v1, s1, pk1, v2, s2, pk2, kind):
    """``int_{sin dec > z1} G1 G2 dOmega``, in polar coordinates about the product's
    centre out to ``u``, split as :func:`.bands.cap_integral` is, with the azimuthal
    integral done by quadrature on the arc north of ``z1``."""
    zn, cn = fr[2], fr[9]
    whole, pa, pb = cap_split(math.asin(min(1.0, max(-1.0, zn))), z1, u)
    if whole >= 0:
        return whole * norm
    tot = 0.0
    if pa > 0.0 and zn > z1:
        tot += pair_radial(fr, 0.0, min(pa, u), v1, s1, pk1, v2, s2, pk2, kind)
    if pa < u and pb > pa:
        for k in range(NGL):
            psi, w = arc_node(k, pa, pb, u)
            half = math.pi * cap_frac(psi, zn, cn, z1)
            if half > 0.0:
                ring = pair_ring(fr, psi, half, v1, s1, pk1, v2, s2, pk2, kind)
                tot += w * ring * math.sin(psi)
    if pb < u and cap_frac(0.5 * (pb + u), zn, cn, z1) > 0.5:
        tot += pair_radial(fr, pb, u, v1, s1, pk1, v2, s2, pk2, kind)
    return tot


@helper
def pair_shell(fr, a, b, z1, whole_b, v1, s1, pk1, v2, s2, pk2, kind):
    """``int_a^b (int_{sin dec > z1} G1 G2 dphi) sin(psi) dpsi``: the product's mass
    north of a declination between the circles at ``a`` and ``b`` about its centre,
    for the far shell of :func:`pair_band_sum` (as :func:`.bands.cap_shell`, the nodes
    densest at the square-root kinks); ``whole_b``: the shell's whole mass, returned
    where the shell lies all north. A relative accuracy of ~1e-6 is plenty: the shell
    is below 1e-9 of the product's mass."""
    zn, cn = fr[2], fr[9]
    whole, pa, pb = cap_split(math.asin(min(1.0, max(-1.0, zn))), z1, b)
    if whole == 0:
        return 0.0
    if whole == 1:
        return whole_b
    tot = 0.0
    if pa > a and zn > z1:  # circles nearer than the declination line: inside
        tot += pair_radial(fr, a, min(pa, b), v1, s1, pk1, v2, s2, pk2, kind)
    lo, hi = max(a, pa), min(b, pb)
    if hi > lo:
        h = hi - lo
        for k in range(NGL):
            t = math.pi * GLX[k]
            psi = lo + 0.5 * h * (1.0 - math.cos(t))
            half = math.pi * cap_frac(psi, zn, cn, z1)
            if half > 0.0:
                w = GLW[k] * 0.5 * h * math.sin(t) * math.pi
                ring = pair_ring(fr, psi, half, v1, s1, pk1, v2, s2, pk2, kind)
                tot += w * ring * math.sin(psi)
    if pb < b and cap_frac(0.5 * (max(a, pb) + b), zn, cn, z1) > 0.5:
        tot += pair_radial(fr, max(a, pb), b, v1, s1, pk1, v2, s2, pk2, kind)
    return tot


@helper
def pair_band_sum(fr, u, norm, arow1, arow2, sindec_edges, v1, s1, pk1, v2, s2, pk2, kind, tiny):  # fmt: skip
    """``int A1 A2 G1 G2 dOmega`` over the sphere (clamped sin dec bands), as
    :func:`.bands.band_sum`: ``A_0 norm + sum_j (A_j - A_{j-1}) * (mass north of edge
    j)`` out to ``u`` (``norm``: the product's mass there), plus the shell out to
    ``CAP_TAIL`` widths ``s12`` where the weight's jumps may make it count and it may
    exceed ``tiny``."""
    prev = arow1[0] * arow2[0]
    acc = prev * norm
    jumps = 0.0
    amax = prev
    for j in range(1, arow1.shape[0]):
        cur = arow1[j] * arow2[j]
        if cur != prev:
            acc += (cur - prev) * pair_cap(
                fr, u, sindec_edges[j], norm, v1, s1, pk1, v2, s2, pk2, kind
            )
            jumps += abs(cur - prev)
            amax = max(amax, cur)
        prev = cur
    # The shell beyond u holds ~1e-9 of the product's mass, yet counts where a band edge
    # out there carries a weight up to ~1e22 times the centre's (a(eps_i) a(eps_j) of a
    # southern pair next to the northern sky). Its mass from the ring at u, as for a
    # Gaussian of width s12 (int_u^inf G psi dpsi = s12^2 G(u)), against the rest as
    # band_sum does for one neutrino, and against ``tiny`` (the shell adds at most the
    # largest weight times its mass): most pairs skip it, and in a map's far tail,
    # where the traversal's floor dwarfs it, nearly all do.
    s12 = s1 * s2 / math.sqrt(s1 * s1 + s2 * s2)
    u2 = min(math.pi, CAP_TAIL * s12)
    if u2 <= u or jumps == 0.0:
        return acc
    shell = pair_ring(fr, u, math.pi, v1, s1, pk1, v2, s2, pk2, kind) * math.sin(u) * s12 * s12 / u  # fmt: skip
    if jumps * shell <= SHELL_SKIP * abs(acc) or amax * shell <= tiny:
        return acc
    # int over the shell of A1 A2 G1 G2: A_0 times its whole mass, each jump times the
    # part north of its edge (pair_cap counted none of it)
    whole_b = pair_radial(fr, u, u2, v1, s1, pk1, v2, s2, pk2, kind)
    prev = arow1[0] * arow2[0]
    acc += prev * whole_b
    for j in range(1, arow1.shape[0]):
        cur = arow1[j] * arow2[j]
        if cur != prev:
            acc += (cur - prev) * pair_shell(
                fr, u, u2, sindec_edges[j], whole_b, v1, s1, pk1, v2, s2, pk2, kind
            )
        prev = cur
    return acc


# --------------------------------------------------------------------------------------
# the product's local shape
# --------------------------------------------------------------------------------------
@helper
def product_centre(v1, s1, v2, s2, kind):
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


@helper
def product_mass(cst, v1, s1, pk1, v2, s2, pk2, kind):
    """Scale of ``int G1 G2 dOmega`` [sr^-1] for the absolute floor: the product at its
    centre ``cst`` (:func:`product_centre`) times ``2 pi s12^2`` (Laplace; exact on the
    flat sky for the Gaussian, ``exp(-d^2 / 2 (s1^2 + s2^2)) / 2 pi (s1^2 + s2^2)``),
    at most the coincident pair's ``min(pk1, pk2)``.

    As a single neutrino's floor is the map's peak times ``int G = 1``, a pair's is the
    map's peak times this: with ``min(pk1, pk2)`` alone a wide pair's floor was
    ``exp(d^2 / 2 (s1^2 + s2^2))`` times its own scale, and swamped pairs in the map's
    tail (S190425h's neutrinos 3 and 6, 4.96 combined sigma apart, where the map is
    1e-8 of its peak: the floor was 57x the value at rtol 1e-2, the error 14.5%; now
    2.4e-4 of it). Never above the old floor, which callers may use as a bound
    (``llama.science.fast_trials``).
    """
    g = psf_from_chord2(chord2(cst[0], cst[1], cst[2], v1[0], v1[1], v1[2]), s1, pk1, kind)
    g *= psf_from_chord2(chord2(cst[0], cst[1], cst[2], v2[0], v2[1], v2[2]), s2, pk2, kind)
    s12sq = s1 * s1 * s2 * s2 / (s1 * s1 + s2 * s2)
    return min(min(pk1, pk2), g * TWO_PI * s12sq)


@helper
def pair_cell_factor(o, x, y, z, c21, c22, v1, s1, v2, s2, kind):
    """Second-order correction of the midpoint rule for G1 G2 = exp(f) over a cell (see
    :func:`.psf.cell_factor`): ``1 + tr((grad f grad f^T + Hess f) M) / 2`` with ``M``
    the cell's own second moment (:func:`.cells.cell_spread`), ``grad f = grad log G1
    + grad log G2`` (vector sum: the two gradients cancel between the PSFs) and ``Hess
    f ~ -(1 / s1^2 + 1 / s2^2)`` times the identity. Without it the rule
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
    m_g, m_tr = cell_spread(o, x, y, z, gx, gy, gz)
    return 1.0 + 0.5 * (m_g - (1.0 / (s1 * s1) + 1.0 / (s2 * s2)) * m_tr)


@helper
def pair_taylor_coefs(x, y, z, c21, c22, v1, s1, pk1, v2, s2, pk2, kind):
    """Coefficients ``K`` of the second-order expansion of ``F = G1 G2`` about a node
    centre (as :func:`.psf.taylor_coefs` for one PSF): ``grad F = h0b h1a e1 + h0a h1b
    e2`` and ``Hess F = h0b H1 + h0a H2 + h1a h1b (e1 e2^T + e2 e1^T)``."""
    h0a, h1a, ha, hca, e1x, e1y, e1z = psf_local(x, y, z, c21, v1[0], v1[1], v1[2], s1, pk1, kind)  # fmt: skip
    h0b, h1b, hb, hcb, e2x, e2y, e2z = psf_local(x, y, z, c22, v2[0], v2[1], v2[2], s2, pk2, kind)  # fmt: skip
    a1 = 0.5 * h0b * ha
    a2 = 0.5 * h0a * hb
    c12 = 0.5 * h1a * h1b
    b = 0.5 * (h0b * hca + h0a * hcb)
    return (
        h0a * h0b,
        h0b * h1a * e1x + h0a * h1b * e2x,
        h0b * h1a * e1y + h0a * h1b * e2y,
        h0b * h1a * e1z + h0a * h1b * e2z,
        a1 * e1x * e1x + a2 * e2x * e2x + 2.0 * c12 * e1x * e2x + b * (1.0 - x * x),
        a1 * e1y * e1y + a2 * e2y * e2y + 2.0 * c12 * e1y * e2y + b * (1.0 - y * y),
        a1 * e1z * e1z + a2 * e2z * e2z + 2.0 * c12 * e1z * e2z + b * (1.0 - z * z),
        2.0 * (a1 * e1x * e1y + a2 * e2x * e2y + c12 * (e1x * e2y + e2x * e1y) - b * x * y),
        2.0 * (a1 * e1x * e1z + a2 * e2x * e2z + c12 * (e1x * e2z + e2x * e1z) - b * x * z),
        2.0 * (a1 * e1y * e1z + a2 * e2y * e2z + c12 * (e1y * e2z + e2y * e1z) - b * y * z),
    )


# --------------------------------------------------------------------------------------
# one node, one pair
# --------------------------------------------------------------------------------------
@per_node
def settled(band_lo, band_hi, b0, b1, lo, hi, narrow):
    """Does [lo, hi] meet none of the bands ``b0 .. b1 - 1`` (each [band_lo, band_hi]),
    or lie inside a finite one, no wider than ``narrow`` (> 0) times it (what else is
    unknown about the trial then matters more than the rest of this look)?"""
    for k in range(b0, b1):
        if hi >= band_lo[k] and lo <= band_hi[k]:
            width = band_hi[k] - band_lo[k]
            inside = lo >= band_lo[k] and hi <= band_hi[k] and width < math.inf
            return inside and narrow > 0.0 and hi - lo <= narrow * width
    return True


@inline
def visit_pair(pm: PreparedMap, o, p, tid, v1, s1, pk1, v2, s2, pk2, kind, arow1, arow2, edges, res, cst, c0, c0w):  # fmt: skip
    """Pair version of :func:`.traversal.visit`: integrand ``(rho - c0) G1 G2`` (and
    ``(rho w - c0w) A1 A2 G1 G2``), the control variate having taken the rest.

    Inlined into :func:`pair_walk`'s one call site, as ``visit`` is into ``walk``: too
    large for LLVM to inline, called it had the prepared map's record pushed on the
    stack at every node."""
    const, r, rwv, rmax, rmin, wmax, wmin = node_info(pm, o, p, tid)
    if const and r == c0 and rwv == c0w:
        return 0.0, 0.0, 0.0, 0.0, True  # integrand of the correction is zero here
    x, y, z = node_centre(pm, o, p, tid)
    c21 = chord2(x, y, z, v1[0], v1[1], v1[2])
    c22 = chord2(x, y, z, v2[0], v2[1], v2[2])
    rad = MAXRAD[o]
    pm1 = max(2.0 * math.asin(min(0.5 * math.sqrt(c21), 1.0)) - rad, 0.0)
    pm2 = max(2.0 * math.asin(min(0.5 * math.sqrt(c22), 1.0)) - rad, 0.0)
    jc, j0, j1 = zbins(edges, z, o)
    aconst = j0 == j1
    a1max = row_max_between(arow1, j0, j1)
    a2max = row_max_between(arow2, j0, j1)
    # across a band edge the midpoint rule takes the weight at the centre: finer cells
    res_a = res if aconst else res * EDGE_RES
    if const and resolved(o, pm1, s1, res_a) and resolved(o, pm2, s2, res_a):
        g = psf_from_chord2(c21, s1, pk1, kind) * psf_from_chord2(c22, s2, pk2, kind) * AREA[o]
        g *= pair_cell_factor(o, x, y, z, c21, c22, v1, s1, v2, s2, kind)
        # across a band edge: each band's share of the pixel (see bands.cell_weight)
        a = arow1[jc] * arow2[jc] if aconst else cell_weight_pair(arow1, arow2, edges, z, o, j0, j1)  # fmt: skip
        return (r - c0) * g, (rwv - c0w) * a * g, 0.0, 0.0, True
    g1 = psf_at(pm1, s1, pk1, kind)
    g2 = psf_at(pm2, s2, pk2, kind)
    # the tail mass of one PSF beyond pm (G(pm) / peak, see psf_at) times the other's max
    gint = g1 * g2 * min(AREA[o], min(1.0 / pk1, 1.0 / pk2))
    fo = max(rmax - c0, c0 - rmin)
    fw = max(wmax - c0w, c0w - wmin) * a1max * a2max
    bo = fo * gint
    bw = fw * gint
    if bo <= 0.0 and bw <= 0.0:
        return 0.0, 0.0, 0.0, 0.0, True
    vo = 0.0
    vw = 0.0
    s12 = s1 * s2 / math.sqrt(s1 * s1 + s2 * s2)  # width of the product G1 G2
    if pm.flat == 0 and rad <= TAYLOR_RAD * s12:
        # internal nodes from their stored moments; a constant cell (a map pixel too
        # coarse for the midpoint rule, or a sub-pixel of one) from its own moments,
        # so the pair needs no control variate where the map is flat.
        # Remainder: the exponent f = log G1 + log G2 has |grad f| <= gm = psi1/s1^2 +
        # psi2/s2^2 and |Hess f| <= 1/s12^2, so |D^3 (G1 G2)| <= G1 G2 (gm^3 + 3 gm /
        # s12^2) over the node. The gradient vanishes (up to cst[3]) at the product's
        # centre cst, so also |grad f| <= cst[3] + dist(x, cst) / s12^2, far tighter
        # between the two PSFs
        psi1 = 2.0 * math.asin(min(0.5 * math.sqrt(c21), 1.0))
        psi2 = 2.0 * math.asin(min(0.5 * math.sqrt(c22), 1.0))
        gm = (psi1 + rad) / (s1 * s1) + (psi2 + rad) / (s2 * s2)
        c2c = chord2(x, y, z, cst[0], cst[1], cst[2])
        psic = 2.0 * math.asin(min(0.5 * math.sqrt(c2c), 1.0))
        gm = min(gm, cst[3] + (psic + rad) / (s12 * s12))
        env = min(g1 * g2 * (gm * gm * gm + 3.0 * gm / (s12 * s12)), 2.7 * pk1 * pk2 / (s12 * s12 * s12))  # fmt: skip
        e3 = env * AREA[o] * R3_MEAN * rad * rad * rad / 6.0
        K = pair_taylor_coefs(x, y, z, c21, c22, v1, s1, pk1, v2, s2, pk2, kind)
        # the cubic term of a constant nearly cancels over a cell: the density's
        # variation drives the remainder (its level counts at ASYM), as in visit
        if not const:  # a constant keeps the full remainder (nothing varies to dominate)
            fo = (rmax - rmin) + ASYM * fo
            fw = (wmax - wmin) * a1max * a2max + ASYM * fw
        kc = const_taylor(K, o, x, y, z) if const else 0.0
        if fo * e3 < bo:
            vo = (r - c0) * kc if const else taylor_value(K, pm, tid, np.int64(0), c0)
            bo = fo * e3
        if fw * e3 < bw and (aconst or rad <= res * EDGE_RES * s12):
            dw = (rwv - c0w) * kc if const else taylor_value(K, pm, tid, np.int64(1), c0w)
            # across a band edge: each band's share of the node, as for a cell above
            a = arow1[jc] * arow2[jc] if aconst else cell_weight_pair(arow1, arow2, edges, z, o, j0, j1)  # fmt: skip
            vw = a * dw
            bw = fw * e3
        if bo <= 0.0 and bw <= 0.0:
            return vo, vw, 0.0, 0.0, True
    return vo, vw, bo, bw, False


@inline
def pair_walk(pm: PreparedMap, v1, s1, pk1, v2, s2, pk2, cst, arow1, arow2, edges, acc: Accuracy, heap: Heap, c0, c0w, base_o, base_w, ato, atw, band_lo, band_hi, b0, b1, margin, narrow):  # fmt: skip
    """The traversal of :func:`pair` about the control constants (c0, c0w), whose
    exact parts are (base_o, base_w), to the absolute floors (ato, atw): (overlap,
    weighted, node expansions, half). A floor ``inf``: that result is computed, but the
    pruning does not wait for it. Expansions -1: the heap is full.

    Target bands (``margin >= 0``, the weighted result waited for), as
    :func:`.traversal.walk` has them: the traversal stops as soon as the weighted
    result's interval, its running total +- (the bounds left + ``margin`` times its
    modulus), meets none of the bands ``b0 .. b1 - 1`` or lies inside one, no wider
    than ``narrow`` times it (:func:`settled`); ``half`` is then that
    interval's half width, else -1 (run to the tolerance: the same steps and result as
    without bands). Not while the corrections cancel over half the control variate's
    exact part (see :func:`pair`)."""
    kind, rtol, res = acc.psf_kind, acc.rtol, acc.res
    aimed = margin >= 0.0 and atw != math.inf
    ko = 0.0 if ato == math.inf else 1.0  # the heap's order follows the results waited for
    kw = 0.0 if atw == math.inf else 1.0
    acc_o = 0.0
    acc_w = 0.0
    rem_o = 0.0
    rem_w = 0.0
    # largest running sums of bounds since the last exact one: the sums' rounding error
    # is ~ 1e-16 of these per step, and a pair's value may sit 1e-14 below its first
    # bounds (a wide pair in the map's tail): checked only at face value, the drift kept
    # the exact sum from being taken, and the loop went on for millions of steps
    top_o = 0.0
    top_w = 0.0
    n = np.int64(0)
    steps = 0
    o, p, tid = np.int64(0), np.int64(0), np.int64(0)
    first = True
    while steps < MAX_STEPS:
        steps += 1
        tot_o = base_o + acc_o
        tot_w = base_w + acc_w
        if first:
            nch = 12  # the 12 base pixels are the roots: (order 0, ipix f, tid f)
        else:
            if n == 0:
                break
            if aimed and not (tot_w < 0.5 * base_w and base_w > CANCEL * atw):
                # the running sum may have drifted below the exact one by DRIFT x top_w
                half = rem_w + DRIFT * top_w + margin * abs(tot_w)
                if settled(band_lo, band_hi, b0, b1, tot_w - half, tot_w + half, narrow):
                    return tot_o, tot_w, steps, half
            lo_o = max(rem_o - DRIFT * top_o, 0.0)
            lo_w = max(rem_w - DRIFT * top_w, 0.0)
            if converged(lo_o, lo_w, tot_o, tot_w, rtol, ato, atw):
                rem_o, rem_w = remaining(heap, n)
                top_o, top_w = rem_o, rem_w
                if converged(rem_o, rem_w, tot_o, tot_w, rtol, ato, atw):
                    break
            o, p, tid, bo, bw, vo, vw, n = heap_pop(heap, n)
            rem_o = max(rem_o - bo, 0.0)
            rem_w = max(rem_w - bw, 0.0)
            acc_o -= vo  # provisional values are replaced by the children's
            acc_w -= vw
            nch = 4
        if n + nch > heap.ints.shape[0]:
            return 0.0, 0.0, -1, -1.0
        for c in range(nch):
            if first:
                co, cp, ct = np.int64(0), np.int64(c), np.int64(c)
            else:
                co, cp, ct = o + 1, 4 * p + c, child_tid(pm, tid, c)
            do, dw, cbo, cbw, leaf = visit_pair(
                pm, co, cp, ct, v1, s1, pk1, v2, s2, pk2, kind, arow1, arow2, edges, res,
                cst, c0, c0w,
            )  # fmt: skip
            acc_o += do
            acc_w += dw
            if not leaf:
                key = ko * cbo / max(abs(tot_o), 1e-300) + kw * cbw / max(abs(tot_w), 1e-300)  # fmt: skip
                n = heap_push(heap, n, co, cp, ct, key, cbo, cbw, do, dw)
                rem_o += cbo
                rem_w += cbw
        top_o = max(top_o, rem_o)
        top_w = max(top_w, rem_w)
        first = False
    return base_o + acc_o, base_w + acc_w, steps, -1.0


@inline
def pair(pm: PreparedMap, v1, s1, v2, s2, arow1, arow2, edges, acc: Accuracy, heap: Heap, wonly, band_lo, band_hi, b0, b1, margin, narrow):  # fmt: skip
    """(overlap, weighted, node expansions, half) of rho * G1 * G2 (and rho w A1 A2 G1
    G2) for one pair; -1 expansions: the heap is full (see :func:`.traversal.single`).
    ``wonly``: only ``weighted`` is wanted, the overlap's bounds never stop the loop.

    Target bands (``margin >= 0``; see :func:`pair_walk`): ``half >= 0`` says the
    traversal stopped early, the true weighted result within ``half`` of the one
    returned (the overlap then unconverged); ``half`` -1: both results as without
    bands.

    Cancellation guard, as :func:`.traversal.single` has: where the corrections take
    off more than half of the control variate's exact part (a pair in a band of tiny
    a(eps_i) a(eps_j) next to one of 1e22 times more, or in a map's far tail), the
    result is a small difference of large sums whose errors need not be small against
    it (bbh-6: S_ij -3.5e-24 for a true 2.3e-26). Where the part cancelled is over
    ``CANCEL`` times the floor, that result is walked again without the control
    variate; both results are clamped at 0 (a negative one is within the floor of 0).
    """
    kind, rtol = acc.psf_kind, acc.rtol
    pk1 = psf_peak(s1, kind)
    pk2 = psf_peak(s2, kind)
    cst = product_centre(v1, s1, v2, s2, kind)
    s12 = s1 * s2 / math.sqrt(s1 * s1 + s2 * s2)  # width of the product G1 G2
    fr = pair_frame(v1, s1, v2, s2)
    c0, c0w = control(pm, fr[0], fr[1], fr[2], s12)
    gr, gw = global_max(pm)
    mass = product_mass(cst, v1, s1, pk1, v2, s2, pk2, kind)
    ato = ATOL * rtol * gr * mass
    if wonly:
        ato = math.inf
    atw = ATOL * rtol * gw * mass * row_max(arow1) * row_max(arow2)
    base_o = 0.0
    base_w = 0.0
    if c0 != 0.0 or c0w != 0.0:
        u = min(math.pi, CAP_L * s12)
        norm = pair_radial(fr, 0.0, u, v1, s1, pk1, v2, s2, pk2, kind)
        base_o = c0 * norm
        if c0w != 0.0:
            tiny = SHELL_FLOOR * atw / c0w
            base_w = c0w * pair_band_sum(
                fr, u, norm, arow1, arow2, edges, v1, s1, pk1, v2, s2, pk2, kind, tiny
            )
    o_, w_, st = 0.0, 0.0, 0
    k0, k0w, bo, bw, ko, kw = c0, c0w, base_o, base_w, ato, atw
    redo_o, redo_w = True, True
    for again in range(2):  # a loop, not a second call: pair_walk is inlined once
        aim = margin if redo_w else -1.0  # bands for the weighted result walked again
        o2, w2, st2, half = pair_walk(
            pm, v1, s1, pk1, v2, s2, pk2, cst, arow1, arow2, edges, acc, heap, k0, k0w, bo,
            bw, ko, kw, band_lo, band_hi, b0, b1, aim, narrow,
        )  # fmt: skip
        if st2 < 0:
            return 0.0, 0.0, -1, -1.0
        st += st2
        if half >= 0.0:
            return o2, w2, st, half
        if redo_o:
            o_ = o2
        if redo_w:
            w_ = w2
        if again:
            break
        redo_o = o_ < 0.5 * base_o and base_o > CANCEL * ato
        redo_w = w_ < 0.5 * base_w and base_w > CANCEL * atw
        if not (redo_o or redo_w):
            break
        k0, bo = (0.0, 0.0) if redo_o else (c0, base_o)
        k0w, bw = (0.0, 0.0) if redo_w else (c0w, base_w)
        ko = ato if redo_o else math.inf
        kw = atw if redo_w else math.inf
    return max(o_, 0.0), max(w_, 0.0), st, -1.0


# --------------------------------------------------------------------------------------
# batch drivers: a range of pairs on one heap; serial, or chunks in parallel
# --------------------------------------------------------------------------------------
@traversal_kernel
def pair_serial(pm: PreparedMap, nu1: Neutrinos, nu2: Neutrinos, sig1: SignalRows, sig2: SignalRows, acc: Accuracy, wonly, heap: Heap, start, stop, out_o, out_w, steps):  # fmt: skip
    """Pairs ``(nu1[k], nu2[k])`` for ``k = start .. stop - 1`` into ``out_o`` (NaN where
    ``wonly``), ``out_w``, ``steps`` on the scratch ``heap``, in the calling thread
    (``sig1`` and ``sig2`` share their band edges). Returns the first pair not done:
    ``stop``, or one that filled the heap (call again with a larger one)."""
    edges = sig1.sindec_edges
    for i in range(start, stop):
        x1, y1, z1 = radec_to_vec(nu1.ra[i], nu1.dec[i])
        x2, y2, z2 = radec_to_vec(nu2.ra[i], nu2.dec[i])
        # no target bands (margin -1): each look runs to the tolerance
        o_, w_, st, _ = pair(
            pm, (x1, y1, z1), nu1.sigma[i], (x2, y2, z2), nu2.sigma[i], sig1.rows[i],
            sig2.rows[i], edges, acc, heap, wonly, out_w, out_w, 0, 0, -1.0, 0.0,
        )  # fmt: skip
        if st < 0:
            return i
        out_o[i], out_w[i], steps[i] = (np.nan if wonly else o_), w_, st
    return stop


@traversal_kernel
def pair_targets_serial(pm: PreparedMap, nu1: Neutrinos, nu2: Neutrinos, sig1: SignalRows, sig2: SignalRows, acc: Accuracy, heap: Heap, band_offsets, band_lo, band_hi, margin, narrow, start, stop, out_w, out_half, steps):  # fmt: skip
    """:func:`pair_serial`'s weighted results (``wonly``) with target bands: pair
    ``i``'s look stops as soon as its weighted result's interval meets none of its
    bands ``band_offsets[i] .. band_offsets[i + 1] - 1``, or lies inside one, no wider
    than ``narrow`` times it (0: never; see :func:`pair_walk`), its
    half width in ``out_half[i]``; -1 there: the look ran to the tolerance, the result
    :func:`pair_serial`'s bit for bit. Returns the first pair not done, as
    :func:`pair_serial`."""
    edges = sig1.sindec_edges
    for i in range(start, stop):
        x1, y1, z1 = radec_to_vec(nu1.ra[i], nu1.dec[i])
        x2, y2, z2 = radec_to_vec(nu2.ra[i], nu2.dec[i])
        b0, b1 = band_offsets[i], band_offsets[i + 1]
        _, w_, st, half = pair(
            pm, (x1, y1, z1), nu1.sigma[i], (x2, y2, z2), nu2.sigma[i], sig1.rows[i],
            sig2.rows[i], edges, acc, heap, True, band_lo, band_hi, b0, b1, margin, narrow,
        )  # fmt: skip
        if st < 0:
            return i
        out_w[i], out_half[i], steps[i] = w_, half, st
    return stop


@parallel_kernel
def pair_parallel(pm: PreparedMap, nu1: Neutrinos, nu2: Neutrinos, sig1: SignalRows, sig2: SignalRows, acc: Accuracy, wonly, chunk):  # fmt: skip
    """:func:`pair_serial` over all pairs, with chunks of ``chunk`` pairs spread over
    Numba's threads, each chunk on its own heap."""
    n = nu1.ra.shape[0]
    out_o = np.empty(n)
    out_w = np.empty(n)
    steps = np.empty(n, np.int64)
    nchunks = (n + chunk - 1) // chunk
    for ch in prange(nchunks):
        heap = new_heap(HEAP_SIZE)
        i, stop = ch * chunk, min(n, (ch + 1) * chunk)
        while i < stop:
            i = pair_serial(pm, nu1, nu2, sig1, sig2, acc, wonly, heap, i, stop, out_o, out_w, steps)  # fmt: skip
            if i < stop:
                heap = new_heap(2 * heap.ints.shape[0])
    return out_o, out_w, steps
