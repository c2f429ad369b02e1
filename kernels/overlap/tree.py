"""The map's tree: building it (quadtree of a multi-order map, min/max pyramid of a flat
one), what a node knows (bounds, moments, centre, children) and the map lookups of the
control variate.

A multi-order map becomes a quadtree over the 12 HEALPix base pixels whose leaves are
the map's rows; each node knows min/max of ``rho`` and ``rho*w`` below it, each
internal node the mass, first and second moments of ``rho``, ``rho*w`` and of its
area (a leaf, a constant, is integrated from its centre). A flat NESTED map
keeps its pixels and gets a min/max pyramid down to order 7; its tree is implicit.

A node on a traversal's heap is ``(order, ipix, tid)``: ``tid >= 0`` is an explicit
tree node, ``tid < 0`` a virtual sub-pixel of map row ``-tid - 1`` (multi-order maps);
``tid`` is unused for flat maps.
"""

from __future__ import annotations

import math

import numpy as np

from ..healpix import (
    pix2vec_nest,
    pix2zphi_nest,
    pixel_area,
    uniq_to_order_ipix,
    vec2pix_nest,
)
from .cells import cell_tensor
from .common import (
    AREA,
    MAX_REFINE_ORDER,
    MAXRAD,
    NMOM,
    helper,
    kernel,
    per_node,
    search_right,
)
from .records import PreparedMap


# --------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------
@helper
def count_internal(lo, hi, top):
    """Number of distinct strict ancestors of the rows (= internal tree nodes): a row
    finer than order ``o`` (its range shorter than an order-``o`` pixel's) has the
    ancestor ``lo >> 2 (top - o)`` there."""
    count = 0
    for o in range(top):
        sh = 2 * (top - o)
        size = np.int64(1) << sh
        prev = -1
        for k in range(lo.shape[0]):
            if hi[k] - lo[k] < size:
                anc = lo[k] >> sh
                if anc != prev:
                    count += 1
                    prev = anc
    return count


@helper
def unit_moments(o, x, y, z):
    """Moments per unit area of a pixel at order ``o`` of constant unit density centred
    on ``(x, y, z)``: (1, first moment x y z, second moment xx yy zz xy xz yz), its
    centre with the pixel's own spread (:func:`.cells.cell_tensor`). The one moment
    expansion of a pixel: :func:`leaf_moments` stores it, :func:`const_taylor` uses it
    on the fly."""
    txx, tyy, tzz, txy, txz, tyz = cell_tensor(o, x, y, z)
    return (1.0, x, y, z, x * x + txx, y * y + tyy, z * z + tzz, x * y + txy, x * z + txz, y * z + tyz)  # fmt: skip


@per_node
def leaf_moments(mom, i, o, x, y, z, r, rw):
    """Moments of a map pixel of constant density: 3 groups of 10 (rho, rho*w, area),
    each (mass, first moment x y z, second moment xx yy zz xy xz yz) of
    :func:`unit_moments` times the group's density and the pixel's area."""
    a = AREA[o]
    m = unit_moments(o, x, y, z)
    for g in range(3):
        f = (r, rw, 1.0)[g] * a
        for k in range(10):
            mom[i, 10 * g + k] = f * m[k]


#: |z| of the equatorial belt's edge, 2/3, and a little: its pixel centres reach 2/3
#: (rounded), a polar cap's stay above 2/3 + 1/(3 nside) (> 1e-9 at order 29).
_BELT_EDGE = 2.0 / 3.0 + 1e-12


@helper
def node_centres(t_ord, t_pix, top):
    """Unit vectors of the nodes' centres, :func:`pix2vec_nest`'s bit for bit, with the
    cosine and sine of a longitude computed once for all orders: the equatorial belt's
    pixel centres lie on the meridians ``pi t / (4 nside)``, which a map's pixels
    share column by column (a polar cap's rarely repeat: computed as they come)."""
    n = t_ord.shape[0]
    cen = np.empty((n, 3))
    # one slot per meridian of order ``top`` (8 << top), meridian t of order o at t <<
    # (top - o): a meridian's longitude comes out the same at every order (its t and
    # 1 / nside both scale by powers of 2), so the orders share its cosine; the
    # longitude each slot holds is checked, so that none takes another's cosine
    phi_at = np.full(8 << top, np.nan)
    cos_at = np.empty(8 << top)
    sin_at = np.empty(8 << top)
    for i in range(n):
        o = np.int64(t_ord[i])
        z, sth, phi = pix2zphi_nest(o, t_pix[i])
        if abs(z) > _BELT_EDGE:  # a polar cap
            cen[i, 0], cen[i, 1], cen[i, 2] = sth * math.cos(phi), sth * math.sin(phi), z
            continue
        nside = np.int64(1) << o
        t = np.int64(phi * (4.0 * nside / math.pi) + 0.5)
        k = min(max(t, 0), 8 * nside - 1) << (top - o)
        if phi_at[k] != phi:
            phi_at[k], cos_at[k], sin_at[k] = phi, math.cos(phi), math.sin(phi)
        cen[i, 0], cen[i, 1], cen[i, 2] = sth * cos_at[k], sth * sin_at[k], z
    return cen


@per_node
def moment_row(first_child):
    """Row of :attr:`PreparedMap.moments` of the internal node whose 4 children begin at
    tree node ``first_child``: the tree's nodes are numbered breadth first, the 12 base
    pixels, then each internal node's children in turn, so ``first_child`` is ``12 +
    4 k`` for the ``k``-th internal node."""
    return (first_child - 12) >> 2


@helper
def tree_nodes(lo, hi, top, cap):
    """The tree's nodes breadth first, at most ``cap`` of them: (count, order, pixel,
    first child (-1: a leaf), row (n: not covered)); count -1 where ``cap`` is too few.
    The scratch arrays are narrow (orders int8, row ranges int32: ``n < 2**31``): a
    third less memory for the build to touch."""
    n = lo.shape[0]
    t_ord = np.empty(cap, np.int8)
    t_pix = np.empty(cap, np.int64)
    t_a = np.empty(cap, np.int32)
    t_b = np.empty(cap, np.int32)
    t_child = np.full(cap, -1, np.int64)
    t_row = np.full(cap, n, np.int64)  # row n = "not covered" (zero density)
    for f in range(12):
        t_ord[f] = 0
        t_pix[f] = f
        t_a[f] = search_right(lo, (np.int64(f) << (2 * top)) - 1)  # first lo >= f << 2top
        t_b[f] = search_right(lo, (np.int64(f + 1) << (2 * top)) - 1)
    count = 12
    i = 0
    while i < count:  # children are appended, so parents always precede children
        a, b, o = np.int64(t_a[i]), np.int64(t_b[i]), np.int64(t_ord[i])
        if b > a:
            size = np.int64(1) << (2 * (top - o))  # the node's range at order top
            if b - a == 1 and hi[a] - lo[a] == size:  # the row is the node
                t_row[i] = a
            elif hi[a] - lo[a] > size:  # coarser than the node
                raise ValueError("overlapping pixels in the multi-order map")
            else:
                if count + 4 > cap:
                    return -1, t_ord, t_pix, t_child, t_row
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
    return count, t_ord, t_pix, t_child, t_row


@helper
def build_tree(lo, hi, rho, rw, top):
    """Quadtree of a sorted, disjoint multi-order map (rows' ranges ``lo``, ``hi`` at
    order ``top``); returns (child, leaf_row, bounds, moments, centres)."""
    n = lo.shape[0]
    for k in range(n - 1):
        if hi[k] > lo[k + 1]:
            raise ValueError("uniq must be sorted by nested range and disjoint")
    # rows that tile the sky (a BAYESTAR map's) are a tree's leaves, 12 + 3 I of them
    # for I internal nodes: room for those without counting (count_internal, a pass
    # over the rows per order, was 5% of the build); counted where rows leave gaps
    cap = 12 + 4 * max((n - 12) // 3, 0)
    count, t_ord, t_pix, t_child, t_row = tree_nodes(lo, hi, top, cap)
    if count < 0:
        cap = 12 + 4 * count_internal(lo, hi, top)
        count, t_ord, t_pix, t_child, t_row = tree_nodes(lo, hi, top, cap)
    cen = node_centres(t_ord[:count], t_pix[:count], top)  # every traversal visits them
    bnd = np.empty((count, 4))
    # moments of the internal nodes alone (the traversals expand only those; a leaf
    # is a constant, integrated from its centre): row moment_row(child), see there
    mom = np.empty(((count - 12) // 4, NMOM))
    kids = np.empty((4, NMOM))  # the moments of a node's 4 children
    for i in range(count - 1, -1, -1):
        c = t_child[i]
        if c < 0:
            r = t_row[i]
            bnd[i, 0] = bnd[i, 1] = rho[r]
            bnd[i, 2] = bnd[i, 3] = rw[r]
        else:
            for q in range(4):  # the children's moments, in turn
                cq = t_child[c + q]
                if cq < 0:
                    r = t_row[c + q]
                    leaf_moments(kids, q, np.int64(t_ord[c + q]), cen[c + q, 0], cen[c + q, 1], cen[c + q, 2], rho[r], rw[r])  # fmt: skip
                else:
                    kids[q, :] = mom[moment_row(cq)]
            m = moment_row(c)
            for k in range(NMOM):
                mom[m, k] = kids[0, k] + kids[1, k] + kids[2, k] + kids[3, k]
            bnd[i, 0] = max(max(bnd[c, 0], bnd[c + 1, 0]), max(bnd[c + 2, 0], bnd[c + 3, 0]))
            bnd[i, 1] = min(min(bnd[c, 1], bnd[c + 1, 1]), min(bnd[c + 2, 1], bnd[c + 3, 1]))
            bnd[i, 2] = max(max(bnd[c, 2], bnd[c + 1, 2]), max(bnd[c + 2, 2], bnd[c + 3, 2]))
            bnd[i, 3] = min(min(bnd[c, 3], bnd[c + 1, 3]), min(bnd[c + 2, 3], bnd[c + 3, 3]))
    if count == cap:  # a tiling map's tree fills its room: no copies
        return t_child, t_row, bnd, mom, cen
    return t_child[:count].copy(), t_row[:count].copy(), bnd, mom, cen


@helper
def build_pyramid(rho, rw, top, pord):
    """Min/max pyramid of a flat map for orders 0..pord (< top); returns (offsets,
    bounds)."""
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


@helper
def order_after(u, o):
    """The order of NUNIQ index ``u`` (:func:`uniq_to_order_ipix`'s), tried first at
    ``o``, the previous row's: order ``o``'s indices are ``[4^(o+1), 4^(o+2))``, and a
    sorted map's rows come in runs of one order, so most rows need two comparisons
    instead of the decoding loop (a step per order)."""
    if (np.int64(4) << (2 * o)) <= u < (np.int64(16) << (2 * o)):
        return o
    return uniq_to_order_ipix(u)[0]


@kernel
def nested_ascending(uniq):
    """Do the rows' NESTED ranges begin in ascending order (``prepare_map`` sorts them
    otherwise)? One pass, no arrays: numpy's shifts and diff over the rows cost a
    tenth of the map's preparation."""
    prev = np.int64(-1)
    order = np.int64(0)
    for k in range(uniq.shape[0]):
        order = order_after(uniq[k], order)
        ipix = uniq[k] - (np.int64(4) << (2 * order))
        lo = ipix << (2 * (29 - order))
        if lo < prev:
            return False
        prev = lo
    return True


@kernel
def prepare_moc_arrays(uniq, probdensity, pixel_weight):
    """The fields of a :class:`PreparedMap` for a sorted, disjoint multi-order map."""
    n = uniq.shape[0]
    if n >= 2**31:
        raise ValueError("more than 2**31 - 1 rows in the multi-order map")
    # the deepest order is the largest uniq's (orders' uniq ranges [4^(o+1), 4^(o+2))
    # follow each other), so one decoding pass gives the ranges, with no order and
    # pixel arrays
    umax = np.int64(0)
    for k in range(n):
        umax = max(umax, uniq[k])
    top = uniq_to_order_ipix(umax)[0]
    lo = np.empty(n, np.int64)
    hi = np.empty(n, np.int64)
    rho = np.empty(n + 1)
    rw = np.empty(n + 1)
    order = np.int64(0)
    for k in range(n):  # a loop: slice arithmetic compiles numpy's broadcasting checks
        order = order_after(uniq[k], order)
        ipix = uniq[k] - (np.int64(4) << (2 * order))
        sh = 2 * (top - order)
        lo[k] = ipix << sh
        hi[k] = (ipix + 1) << sh
        rho[k] = probdensity[k]
        rw[k] = probdensity[k] * pixel_weight[k]
    rho[n] = rw[n] = 0.0  # the row of sky no pixel covers
    t_child, t_row, bnd, mom, cen = build_tree(lo, hi, rho, rw, top)
    poff = np.zeros(1, np.int64)
    return (np.int64(0), top, rho, rw, lo, hi, t_child, t_row, bnd, poff, np.int64(-1), mom, cen)


@kernel
def prepare_flat_arrays(prob, pixel_weight, top):
    """The fields of a :class:`PreparedMap` for a flat NESTED map of probability per
    pixel at order ``top``."""
    area = pixel_area(top)
    n = prob.shape[0]
    rho = np.empty(n)
    rw = np.empty(n)
    for k in range(n):
        rho[k] = prob[k] / area
        rw[k] = rho[k] * pixel_weight[k]
    pord = min(top - 1, 7)  # pyramid down to order 7: <= 1.1 M nodes, ~35 MB
    poff, bnd = build_pyramid(rho, rw, top, pord)
    empty = np.zeros(1, np.int64)
    mom = np.zeros((1, NMOM))  # no moments: the implicit tree refines to the pixels
    cen = np.zeros((1, 3))  # the implicit tree computes its centres
    return (np.int64(1), top, rho, rw, empty, empty, empty, empty, bnd, poff, np.int64(pord), mom, cen)  # fmt: skip


# --------------------------------------------------------------------------------------
# what a node knows
# --------------------------------------------------------------------------------------
@per_node
def node_info(pm: PreparedMap, o, p, tid):
    """(constant?, rho, rw, rho_max, rho_min, rw_max, rw_min) of a heap node."""
    if pm.flat == 0:
        if tid >= 0:
            if pm.child[tid] >= 0:
                b = pm.bounds
                return False, 0.0, 0.0, b[tid, 0], b[tid, 1], b[tid, 2], b[tid, 3]
            r = pm.leaf_row[tid]
        else:
            r = -tid - 1
        x, xw = pm.density[r], pm.density_weighted[r]
        return True, x, xw, x, x, xw, xw
    top = pm.top_order
    if o >= top:
        k = p >> (2 * (o - top))
        x, xw = pm.density[k], pm.density_weighted[k]
        return True, x, xw, x, x, xw, xw
    pord = pm.pyramid_order
    if o <= pord:
        d = pm.pyramid_offsets[o] + p
    else:  # below the pyramid: the ancestor's bounds are valid, if looser
        d = pm.pyramid_offsets[pord] + (p >> (2 * (o - pord)))
    b = pm.bounds
    return False, 0.0, 0.0, b[d, 0], b[d, 1], b[d, 2], b[d, 3]


@per_node
def node_centre(pm: PreparedMap, o, p, tid):
    """Unit vector of a heap node's centre (stored for explicit tree nodes)."""
    if tid >= 0 and pm.flat == 0:
        cen = pm.centres
        return cen[tid, 0], cen[tid, 1], cen[tid, 2]
    return pix2vec_nest(o, p)


@per_node
def child_tid(pm: PreparedMap, tid, c):
    """tid of child ``c`` (0..3) of a heap node."""
    if pm.flat == 1:
        return np.int64(-1)
    if tid >= 0:
        if pm.child[tid] >= 0:
            return pm.child[tid] + c
        return -pm.leaf_row[tid] - 1
    return tid


@per_node
def taylor_value(K, pm: PreparedMap, tid, g, c):
    """``sum_k K[k] * (moment_k(group g) - c * moment_k(area))`` of internal tree node
    ``tid`` (callers pass ``g`` as ``np.int64``: a bare literal compiles one version per
    value)."""
    mom = pm.moments
    i = moment_row(pm.child[tid])
    acc = 0.0
    for k in range(10):
        acc += K[k] * (mom[i, 10 * g + k] - c * mom[i, 20 + k])
    return acc


@helper
def const_taylor(K, o, x, y, z):
    """``sum_k K[k] * moment_k`` of a pixel of unit density at order ``o`` centred on (x,
    y, z) (the moments of :func:`leaf_moments`, :func:`unit_moments` on the fly)."""
    m = unit_moments(o, x, y, z)
    m2 = K[4] * m[4] + K[5] * m[5] + K[6] * m[6]
    m2 += K[7] * m[7] + K[8] * m[8] + K[9] * m[9]
    return AREA[o] * (K[0] + K[1] * m[1] + K[2] * m[2] + K[3] * m[3] + m2)


# --------------------------------------------------------------------------------------
# map lookups of the control variate
# --------------------------------------------------------------------------------------
@helper
def value_at(pm: PreparedMap, x, y, z):
    """(rho, rw) of the map pixel containing direction (x, y, z)."""
    q = vec2pix_nest(pm.top_order, x, y, z)
    if pm.flat == 1:
        return pm.density[q], pm.density_weighted[q]
    k = search_right(pm.range_lo, q) - 1
    if k >= 0 and q < pm.range_hi[k]:
        return pm.density[k], pm.density_weighted[k]
    n = pm.density.shape[0] - 1
    return pm.density[n], pm.density_weighted[n]


@helper
def scale_node_bounds(pm: PreparedMap, vx, vy, vz, o):
    """(rho_min, rw_min) over the node at order ``o`` that contains the direction."""
    top, bnd = pm.top_order, pm.bounds
    q = vec2pix_nest(top, vx, vy, vz)
    if pm.flat == 1:
        if o >= top:
            return pm.density[q], pm.density_weighted[q]
        pord = pm.pyramid_order
        d = pm.pyramid_offsets[min(o, pord)] + (q >> (2 * (top - min(o, pord))))
        return bnd[d, 1], bnd[d, 3]
    t_child = pm.child
    tid = q >> (2 * top)  # base pixel
    for oo in range(1, o + 1):
        if t_child[tid] < 0:
            break
        tid = t_child[tid] + ((q >> (2 * (top - oo))) & 3)
    return bnd[tid, 1], bnd[tid, 3]


@helper
def control(pm: PreparedMap, vx, vy, vz, sigma):
    """Constants (c0, c0w) of the control variate: density and density*weight.

    The map value at the neutrino when the density stays within a factor 2 of it over a
    few sigma (then its own pixel costs nothing); otherwise the minimum over that
    region, so the corrections stay non-negative there and no large constant has to
    cancel against the midpoint sums (a sharp map peak under a wide PSF). The sky
    weight is not part of ``c0w``: the control variate integrates it exactly band by
    band (:func:`.bands.band_sum`), so band edges cost nothing where the map is
    constant.
    """
    r0, rw0 = value_at(pm, vx, vy, vz)
    o = 0
    while o < MAX_REFINE_ORDER and MAXRAD[o + 1] >= 3.0 * sigma:
        o += 1
    rmin, wmin = scale_node_bounds(pm, vx, vy, vz, o)
    if rmin >= 0.5 * r0 and wmin >= 0.5 * rw0:
        return r0, rw0
    return rmin, wmin


@per_node
def global_max(pm: PreparedMap):
    """Largest rho and rho*w of the map (sets the absolute floor of the tolerance)."""
    rho, rw, bnd = pm.density, pm.density_weighted, pm.bounds
    gr = -math.inf
    gw = -math.inf
    if pm.flat == 1 and pm.top_order == 0:  # 12 pixels and no pyramid
        for k in range(rho.shape[0]):
            gr = max(gr, rho[k])
            gw = max(gw, rw[k])
        return gr, gw
    for f in range(12):  # loops, not .max(): callers run without reference counting
        gr = max(gr, bnd[f, 0])
        gw = max(gw, bnd[f, 2])
    return gr, gw
