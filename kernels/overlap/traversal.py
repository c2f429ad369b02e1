"""Best-first traversal of the map's tree for one neutrino, and its batch drivers.

Control variate: with ``c0 = rho`` at the neutrino, ``overlap = c0 * int G +
int (rho - c0) G``; ``int G`` over the sphere is known in closed form and ``int A G``
band by band (:func:`.bands.band_sum`), so only map-pixel boundaries inside the PSF
need refining. Nodes sit in a max-heap keyed by an upper bound of their remaining
contribution (density bound x min(G(psi_min) area, PSF tail mass beyond psi_min in the
azimuths the node spans, :func:`.psf.azimuth_share`)); the
largest is split first, and the traversal stops when the sum of all bounds left is
below ``rtol`` times the running total. An internal node no larger than sigma gets the
second-order Taylor expansion of the PSF about its centre (exact in the node's stored
moments), with the third-order remainder as its bound; a constant-density node below
``res * sigma`` (smaller in the PSF tail) is integrated with the midpoint rule, one no
larger than sigma but not yet that fine is expanded the same way as an internal node
(for a constant, the midpoint rule with :func:`.psf.cell_factor`) with that remainder
as its bound, so it is split only while the bound matters.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..healpix import chord2, radec_to_vec
from .bands import band_sum, cell_weight, cell_weight_slope, row_max, row_max_between, zbins
from .common import (
    AREA,
    ASYM,
    ATOL,
    EDGE_RES,
    MAX_STEPS,
    MAXRAD,
    NMOM,
    R3_MEAN,
    SINRAD,
    TAYLOR_RAD,
    inline,
    parallel_kernel,
    per_node,
    traversal_kernel,
)
from .psf import (
    azimuth_share,
    cell_midpoint,
    log_psf_slope_z,
    psf_at,
    psf_norm,
    psf_peak,
    resolved,
    taylor_coefs,
)
from .records import Accuracy, Heap, Neutrinos, PreparedMap, SignalRows
from .tree import child_tid, control, global_max, moment_row, node_centre, node_info, taylor_value

#: Nodes of the first heap of a traversal (256 KiB); larger heaps are rare.
HEAP_SIZE = 4096
#: Relative rounding error allowed for the running sums of bounds (1e-16 per step, over
#: up to 10^6 steps): below it the exact sum (:func:`remaining`) decides.
DRIFT = 1e-10
#: A result whose corrections cancel over half its control variate's exact part is
#: walked again without it when that part exceeds this many times the floor: the
#: cancelled sums' errors (up to ~1% of them) could then exceed the tolerance.
CANCEL = 100.0
_U0 = np.uint64(0)
_U1 = np.uint64(1)


@intrinsic
def prefetch(typingctx, arr, idx):
    """Ask the CPU to bring the cache line of element ``idx`` of ``arr``'s data (flat,
    C order) in ahead of its use (LLVM's ``llvm.prefetch``: a hint, no load, never
    faults, so an index past the end is harmless)."""
    sig = types.none(arr, idx)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return sig, codegen


@inline  # called, the map's record would be pushed on the stack
def prefetch_children(pm: PreparedMap, tid):
    """Prefetch the records :func:`visit` reads first for the 4 children of explicit
    tree node ``tid`` (their child, leaf_row, bounds and centres rows: a few cache lines
    each, consecutive). The tree is a few MiB, a look's nodes are scattered in it:
    these loads missed the caches (~8% of the look's time, perf)."""
    if tid < 0 or pm.flat != 0:
        return
    ch = pm.child[tid]
    if ch < 0:
        return
    prefetch(pm.child, ch)
    prefetch(pm.child, ch + 3)
    prefetch(pm.leaf_row, ch)
    prefetch(pm.leaf_row, ch + 3)
    prefetch(pm.bounds, 4 * ch)
    prefetch(pm.bounds, 4 * ch + 8)
    prefetch(pm.bounds, 4 * ch + 15)
    prefetch(pm.centres, 3 * ch)
    prefetch(pm.centres, 3 * ch + 8)
    prefetch(pm.centres, 3 * ch + 11)


@inline
def prefetch_grandchildren(pm: PreparedMap, tid, taylor):
    """Prefetch what :func:`visit` reads second for the children of explicit tree node
    ``tid`` (their first rows came in with :func:`prefetch_children`): a leaf's density
    and weighted density, an internal node's moments (``taylor``: its expansion may be
    taken)."""
    if tid < 0 or pm.flat != 0:
        return
    ch = pm.child[tid]
    if ch < 0:
        return
    for k in range(4):
        g = pm.child[ch + k]
        if g < 0:
            r = pm.leaf_row[ch + k]
            prefetch(pm.density, r)
            prefetch(pm.density_weighted, r)
        elif taylor:
            m = NMOM * moment_row(g)
            for j in range(0, NMOM, 8):
                prefetch(pm.moments, m + j)
            prefetch(pm.moments, m + NMOM - 1)


# --------------------------------------------------------------------------------------
# best-first heap (max-heap on key) of (key, slot); a node's ints (order, ipix, tid) and
# floats (bo, bw, vo, vw: bounds of its remaining error and its provisional (Taylor)
# values) stay in its slot (see records.Heap); where walk tracks them, the weighted
# error's bounds above and below in the slot's row of a scratch array of its own
# (``side``: the heap's slot rows stay 32 bytes and its record as the pair kernels
# pass it)
# --------------------------------------------------------------------------------------
@inline
def new_heap(size):
    """Scratch arrays of a heap of ``size`` nodes. A traversal that fills them stops
    and is run again with twice the size (rare; see :func:`single`)."""
    return Heap(np.empty(size), np.arange(size), np.empty((size, 3), np.int64), np.empty((size, 4)))  # fmt: skip


@per_node
def heap_push(heap: Heap, n, o, p, tid, key, bo, bw, vo, vw):
    """Push a node (the arrays must have room); returns n + 1."""
    keys, slots = heap.keys, heap.slots
    s = slots[n]  # a free slot
    hi_, hf = heap.ints, heap.floats
    hi_[s, 0], hi_[s, 1], hi_[s, 2] = o, p, tid
    hf[s, 0], hf[s, 1], hf[s, 2], hf[s, 3] = bo, bw, vo, vw
    k = n
    while k > 0:  # sift up
        par = (k - 1) >> 1
        if keys[par] >= key:
            break
        keys[k] = keys[par]
        slots[k] = slots[par]
        k = par
    keys[k] = key
    slots[k] = s
    return n + 1


@per_node
def heap_pop(heap: Heap, n):
    """Remove the top; returns (o, p, tid, bo, bw, vo, vw, new n). Its slot is freed:
    read before the next push.

    The sift down counts in uint64 (positions are never negative: no test for a
    negative index to wrap) and takes the larger child without a branch (the keys'
    order is random: the branch missed about every other level); the same child as
    ``if c + 1 < n and keys[c + 1] > keys[c]: c += 1``, so the same heap."""
    keys, slots = heap.keys, heap.slots
    hi_, hf = heap.ints, heap.floats
    s0 = slots[0]
    o, p, tid = hi_[s0, 0], hi_[s0, 1], hi_[s0, 2]
    bo, bw, vo, vw = hf[s0, 0], hf[s0, 1], hf[s0, 2], hf[s0, 3]
    n -= 1
    if n > 0:
        un = np.uint64(n)
        lk, ls = keys[un], slots[un]
        k = _U0
        while True:  # sift down
            c = k + k + _U1
            if c >= un:
                break
            # keys[c + 1] exists (c + 1 <= n, below the arrays' size) even where it is
            # past the heap: the test c + 1 < n then discards it
            c += np.uint64((c + _U1 < un) & (keys[c + _U1] > keys[c]))
            if keys[c] <= lk:
                break
            keys[k] = keys[c]
            slots[k] = slots[c]
            k = c
        keys[k] = lk
        slots[k] = ls
    slots[n] = s0  # position n is past the heap now: the freed slot
    return o, p, tid, bo, bw, vo, vw, n


@per_node
def remaining(heap: Heap, n):
    """Exact sums of the bounds still on the heap (guards the running sums' drift),
    in heap order."""
    return remaining_in(heap, heap.floats, n)


@per_node
def remaining_in(heap: Heap, rows, n):
    """Exact sums of columns 0 and 1 of ``rows`` (one row per heap slot) over the nodes
    still on the heap, in heap order: the bounds (``heap.floats``: :func:`remaining`),
    or each side's weighted bounds (:func:`walk` with ``sides``: its ``side`` rows)."""
    slots = heap.slots
    s0 = 0.0
    s1 = 0.0
    for k in range(n):
        s = slots[k]
        s0 += rows[s, 0]
        s1 += rows[s, 1]
    return s0, s1


@per_node
def converged(rem_o, rem_w, tot_o, tot_w, rtol, ato, atw):
    """Are both sums of remaining bounds within tolerance of their totals?"""
    return rem_o <= rtol * abs(tot_o) + ato and rem_w <= rtol * abs(tot_w) + atw


# --------------------------------------------------------------------------------------
# one node, one neutrino
# --------------------------------------------------------------------------------------
@inline
def visit(
    pm: PreparedMap, o, p, tid, vx, vy, vz, sigma, peak, kind, c0, c0w, arow, edges, res, track
):
    """Evaluate a node, expand it in moments, or bound it.

    Returns (d_overlap, d_weighted, bound_o, bound_w, above_w, below_w, done). ``done``
    means the node was integrated (or contributes exactly nothing) and needs no heap
    entry; otherwise the d_ values are provisional (a moment expansion, or 0) and the
    bounds bound their error: |error| <= bound; the weighted one also one side at a
    time, -below_w <= error <= above_w (each <= bound_w). A node left at 0 (bounded,
    not expanded) has a weighted error between (wmin - c0w) and (wmax - c0w) times
    amax times its PSF mass, one of them often 0 (the node all above or all below
    the neutrino's density): the aimed looks' interval (:func:`walk`) takes each side's
    sum, not twice the larger; an expansion's remainder counts on both sides. Computed
    only where ``track`` (else 0).
    """
    const, r, rwv, rmax, rmin, wmax, wmin = node_info(pm, o, p, tid)
    if const and r == c0 and rwv == c0w:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True  # integrand of the correction is zero here
    x, y, z = node_centre(pm, o, p, tid)
    c2 = chord2(x, y, z, vx, vy, vz)
    psi = 2.0 * math.asin(min(0.5 * math.sqrt(c2), 1.0))
    rad = MAXRAD[o]
    psi_min = max(psi - rad, 0.0)
    jc, j0, j1 = zbins(edges, z, o)
    aconst = j0 == j1
    amax = row_max_between(arow, j0, j1)
    # across a band edge the midpoint rule takes the weight at the centre: finer cells
    res_a = res if aconst else res * EDGE_RES
    if const and resolved(o, psi_min, sigma, res_a):
        ga = cell_midpoint(o, x, y, z, vx, vy, vz, c2, psi, sigma, peak, kind)
        # across a band edge: each band's share of the pixel (see bands.cell_weight),
        # and where in the pixel it lies (bands.cell_weight_slope)
        if aconst:
            a = arow[jc]
        else:
            a, a_z = cell_weight_slope(arow, edges, z, o, j0, j1)
            a += log_psf_slope_z(x, y, z, c2, psi, vz, sigma, kind) * a_z
        return (r - c0) * ga, (rwv - c0w) * a * ga, 0.0, 0.0, 0.0, 0.0, True
    fo = max(rmax - c0, c0 - rmin)
    fw = max(wmax - c0w, c0w - wmin) * amax
    g_min = psf_at(psi_min, sigma, peak, kind)
    # G(psi_min) x area, or the PSF's tail mass beyond psi_min (G / peak, see psf_at)
    # in the azimuths the node spans (a node beside the neutrino: a quarter or less)
    gint = g_min * min(AREA[o], azimuth_share(c2, psi, rad, SINRAD[o]) / peak)
    bo = fo * gint
    bw = fw * gint
    if bo <= 0.0 and bw <= 0.0:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, True
    # each side of the weighted error alone (a >= 0 over the node, at most amax)
    up_w = 0.0
    dn_w = 0.0
    if track:
        aw = amax * gint
        up_w = max(wmax - c0w, 0.0) * aw
        dn_w = max(c0w - wmin, 0.0) * aw
    vo = 0.0
    vw = 0.0
    if (const or pm.flat == 0) and rad <= TAYLOR_RAD * sigma:
        # moment expansion of an internal node, or of a constant node (a map pixel or
        # a sub-pixel of one) not yet fine enough for the midpoint rule; third-order
        # remainder as its error bound:
        # |D^3 G| <= G(t) (t^3 + 3t) / sigma^3 (t = psi / sigma), <= 2.7 peak / sigma^3
        tmax = (psi + rad) / sigma
        env = min(g_min * (tmax * tmax * tmax + 3.0 * tmax), 2.7 * peak)
        e3 = env * AREA[o] * R3_MEAN * rad * rad * rad / (6.0 * sigma * sigma * sigma)
        # the cubic term of a constant nearly cancels over a cell: the density's
        # variation drives the remainder (the offset from c0 counts at ASYM)
        fo = (rmax - rmin) + ASYM * fo
        fw = (wmax - wmin) * amax + ASYM * fw
        use_o = fo * e3 < bo
        use_w = fw * e3 < bw and (aconst or (not const and rad <= res_a * sigma))
        # the expansion only where its remainder beats the bound (in the PSF's tail
        # often neither does: its exp, atan2 and sqrt were then wasted)
        if use_o or use_w:
            ct = 0.0
            K = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            if const:
                # the expansion of a constant over a cell (its moments: its centre and
                # its own second moment) is the midpoint rule with cell_factor
                ct = cell_midpoint(o, x, y, z, vx, vy, vz, c2, psi, sigma, peak, kind)
            else:
                K = taylor_coefs(x, y, z, c2, vx, vy, vz, sigma, peak, kind)
            if use_o:
                vo = (r - c0) * ct if const else taylor_value(K, pm, tid, np.int64(0), c0)
                bo = fo * e3
            if use_w:
                # across a band edge: each band's share of the node (see
                # bands.cell_weight)
                a = arow[jc] if aconst else cell_weight(arow, edges, z, o, j0, j1)
                if const:
                    vw = a * (rwv - c0w) * ct
                else:
                    vw = a * taylor_value(K, pm, tid, np.int64(1), c0w)
                bw = fw * e3
                up_w = bw
                dn_w = bw
        if bo <= 0.0 and bw <= 0.0:
            return vo, vw, 0.0, 0.0, 0.0, 0.0, True
    return vo, vw, bo, bw, up_w, dn_w, False


@per_node
def outside(band_lo, band_hi, b0, b1, lo, hi):
    """Does [lo, hi] meet none of the bands ``b0 .. b1 - 1`` (each [band_lo, band_hi])?"""
    for k in range(b0, b1):
        if hi >= band_lo[k] and lo <= band_hi[k]:
            return False
    return True


@inline
def walk(pm: PreparedMap, vx, vy, vz, sigma, arow, edges, acc: Accuracy, heap: Heap, side, c0, c0w, ato, atw, band_lo, band_hi, b0, b1, margin, sides):  # fmt: skip
    """The traversal of :func:`single` about the control constants (c0, c0w) to the
    absolute floors (ato, atw): (overlap, weighted, node expansions, base_o, base_w,
    below, above), the bases being the control variate's exact parts. A floor ``inf``: that
    result is computed, but the pruning does not wait for it. Expansions -1: the heap
    is full.

    Target bands (``margin >= 0``, the weighted result waited for): the traversal stops
    as soon as the weighted result's interval, its running total - below .. + above,
    meets none of the bands ``b0 .. b1 - 1``; else below and above are -1 (run to the
    tolerance: the same steps and result as without bands). Each side is the bounds
    left + ``margin`` times the total's modulus: with ``sides`` each side's own sum of
    bounds (:func:`visit`, kept in ``side``, a (heap size, 2) scratch array: the
    interval often half as wide, the heap's order and the tolerance's test the same),
    else the two-sided sum on both (``side`` then unused). Not while the corrections cancel over half the
    control variate's exact part (see :func:`single`): the midpoint sums' errors are
    then not within ``margin`` of the result."""
    kind, rtol, res = acc.psf_kind, acc.rtol, acc.res
    peak = psf_peak(sigma, kind)
    norm = psf_norm(sigma, kind)
    ko = 0.0 if ato == math.inf else 1.0  # the heap's order follows the results waited for
    kw = 0.0 if atw == math.inf else 1.0
    base_o = c0 * norm  # control variate: c0 * integral of G over the sphere
    base_w = 0.0
    if c0w != 0.0:
        base_w = c0w * band_sum(vz, sigma, peak, kind, norm, arow, edges)
    acc_o = 0.0
    acc_w = 0.0
    rem_o = 0.0
    rem_w = 0.0
    n = np.int64(0)
    if heap.ints.shape[0] < 12:
        return 0.0, 0.0, -1, base_o, base_w, -1.0, -1.0
    # one loop visits the 12 base pixels, the roots (order 0, ipix f, tid f), then the
    # children of each node taken off the heap: visit is inlined (passing the map's
    # record to a call pushed ~90 words), and inlined once, not at two sites
    top_o, top_w = 0.0, 0.0  # the running sums' scale: see DRIFT and pairs.pair
    tot_o, tot_w = 0.0, 0.0
    o, p, tid = np.int64(0), np.int64(0), np.int64(0)
    steps = 0
    aimed = margin >= 0.0 and atw != math.inf
    track = aimed and sides
    rem_up = 0.0  # each side's sum of the weighted bounds left (tracked looks only)
    rem_dn = 0.0
    roots = True
    while True:
        nch = 12
        if not roots:
            if n == 0 or steps >= MAX_STEPS:
                break
            steps += 1
            tot_o = base_o + acc_o
            tot_w = base_w + acc_w
            if aimed and not (tot_w < 0.5 * base_w and base_w > CANCEL * atw):
                # the running sum may have drifted below the exact one by DRIFT x top_w
                # each side's running sum drifts no more than the two-sided one; the
                # sums in the order the two-sided half always took (the same floats)
                drift = DRIFT * top_w
                allow = margin * abs(tot_w)
                below = (max(rem_dn, 0.0) if track else rem_w) + drift + allow
                above = (max(rem_up, 0.0) if track else rem_w) + drift + allow
                if outside(band_lo, band_hi, b0, b1, tot_w - below, tot_w + above):
                    return tot_o, tot_w, steps, base_o, base_w, below, above
            lo_o = max(rem_o - DRIFT * top_o, 0.0)
            lo_w = max(rem_w - DRIFT * top_w, 0.0)
            if converged(lo_o, lo_w, tot_o, tot_w, rtol, ato, atw):
                rem_o, rem_w = remaining(heap, n)
                top_o, top_w = rem_o, rem_w
                if track:  # each side's sum exact too: its drift is then below DRIFT x top_w
                    rem_up, rem_dn = remaining_in(heap, side, n)
                if converged(rem_o, rem_w, tot_o, tot_w, rtol, ato, atw):
                    break
            if track:
                s0 = heap.slots[0]
                rem_up -= side[s0, 0]
                rem_dn -= side[s0, 1]
            o, p, tid, bo, bw, vo, vw, n = heap_pop(heap, n)
            rem_o = max(rem_o - bo, 0.0)
            rem_w = max(rem_w - bw, 0.0)
            acc_o -= vo  # provisional values are replaced by the children's
            acc_w -= vw
            if n + 4 > heap.ints.shape[0]:
                return 0.0, 0.0, -1, base_o, base_w, -1.0, -1.0
            nch = 4
            # the children's records came in ahead (below): now what they point to
            prefetch_grandchildren(pm, tid, MAXRAD[o + 1] <= TAYLOR_RAD * sigma)
        for c in range(nch):
            if roots:
                co, cp, ct = np.int64(0), np.int64(c), np.int64(c)
            else:
                co, cp, ct = o + 1, 4 * p + c, child_tid(pm, tid, c)
            do, dw, cbo, cbw, cup, cdn, leaf = visit(
                pm, co, cp, ct, vx, vy, vz, sigma, peak, kind, c0, c0w, arow, edges, res, track
            )
            acc_o += do
            acc_w += dw
            if not leaf:
                if roots:  # scaled by the running totals
                    key = ko * cbo / max(abs(base_o + acc_o), 1e-300) + kw * cbw / max(abs(base_w + acc_w), 1e-300)  # fmt: skip
                else:
                    key = ko * cbo / max(abs(tot_o), 1e-300) + kw * cbw / max(abs(tot_w), 1e-300)  # fmt: skip
                if track:
                    s = heap.slots[n]  # the free slot heap_push fills
                    side[s, 0] = cup
                    side[s, 1] = cdn
                    rem_up += cup
                    rem_dn += cdn
                n = heap_push(heap, n, co, cp, ct, key, cbo, cbw, do, dw)
                rem_o += cbo
                rem_w += cbw
        if n > 0:
            # the node popped next is most likely the top now: its children's records
            # come in while this one's bookkeeping and the next pop run
            prefetch_children(pm, heap.ints[heap.slots[0], 2])
        if roots:
            top_o, top_w = rem_o, rem_w
            roots = False
        else:
            top_o = max(top_o, rem_o)
            top_w = max(top_w, rem_w)
    return base_o + acc_o, base_w + acc_w, steps, base_o, base_w, -1.0, -1.0


@inline
def single(pm: PreparedMap, vx, vy, vz, sigma, arow, edges, acc: Accuracy, heap: Heap, side, band_lo, band_hi, b0, b1, margin, sides):  # fmt: skip
    """(overlap, weighted, node expansions, below, above) for one neutrino at unit vector (vx,
    vy, vz) with weight row ``arow`` over the bands ``edges``. Expansions -1: the heap
    is full, call again with a larger one (growing here would make every loop
    iteration pay reference counts on the heap arrays).

    Target bands (``margin >= 0``; see :func:`walk`): ``below >= 0`` says the traversal
    stopped early, the true weighted result between the one returned - ``below`` and
    + ``above`` (the overlap then unconverged; ``sides``: each side its own bounds, see
    :func:`walk`); -1: both results as without bands.

    Cancellation guard: where the corrections take off more than half of the control
    variate's exact part (the map far below ``c0`` where the PSF's weight lies: a
    neutrino in a band of tiny a(eps) next to one of 1e11 times more, or a map falling
    off within a wide PSF), the result is a small difference of two large sums whose
    errors (midpoint cells carry no bound) need not be small against it: on bbh-6 such
    an S came out at -1.2e-9 of the map's peak x max a, the true one +1.7e-9. Where
    the part cancelled is over ``CANCEL`` times the floor, that result is walked again
    without the control variate (constant 0: every correction >= 0, nothing cancels);
    both results are clamped at 0 (a negative one is within the floor of 0).
    """
    rtol = acc.rtol
    gr, gw = global_max(pm)
    ato = ATOL * rtol * gr  # below 1e-12 of the map's peak: absolute, not relative
    atw = ATOL * rtol * gw * row_max(arow)
    c0, c0w = control(pm, vx, vy, vz, sigma)
    o_, w_, st = 0.0, 0.0, 0
    k0, k0w, ko, kw = c0, c0w, ato, atw
    redo_o, redo_w = True, True
    for again in range(2):  # a loop, not a second call: walk is inlined once
        aim = margin if redo_w else -1.0  # bands for the weighted result walked again
        o2, w2, st2, bo, bw, below, above = walk(pm, vx, vy, vz, sigma, arow, edges, acc, heap, side, k0, k0w, ko, kw, band_lo, band_hi, b0, b1, aim, sides)  # fmt: skip
        if st2 < 0:
            return 0.0, 0.0, -1, -1.0, -1.0
        st += st2
        if below >= 0.0:
            return o2, w2, st, below, above
        if redo_o:
            o_ = o2
        if redo_w:
            w_ = w2
        if again:
            break
        redo_o = o_ < 0.5 * bo and bo > CANCEL * ato
        redo_w = w_ < 0.5 * bw and bw > CANCEL * atw
        if not (redo_o or redo_w):
            break
        k0 = 0.0 if redo_o else c0
        k0w = 0.0 if redo_w else c0w
        ko = ato if redo_o else math.inf
        kw = atw if redo_w else math.inf
    return max(o_, 0.0), max(w_, 0.0), st, -1.0, -1.0


# --------------------------------------------------------------------------------------
# batch drivers: a range of neutrinos on one heap; serial, or chunks in parallel
# --------------------------------------------------------------------------------------
@traversal_kernel
def overlap_serial(pm: PreparedMap, nu: Neutrinos, sig: SignalRows, acc: Accuracy, heap: Heap, start, stop, out_o, out_w, steps):  # fmt: skip
    """Neutrinos ``start .. stop - 1`` into ``out_o``, ``out_w``, ``steps`` (node
    expansions) on the scratch ``heap``, in the calling thread. Returns the first
    neutrino not done: ``stop``, or one that filled the heap (call again from there
    with a larger heap, see :func:`new_heap`)."""
    for i in range(start, stop):
        vx, vy, vz = radec_to_vec(nu.ra[i], nu.dec[i])
        # no target bands (margin -1): each look runs to the tolerance
        o_, w_, st, _, _ = single(pm, vx, vy, vz, nu.sigma[i], sig.rows[i], sig.sindec_edges, acc, heap, heap.floats, out_o, out_o, 0, 0, -1.0, False)  # fmt: skip
        if st < 0:
            return i
        out_o[i], out_w[i], steps[i] = o_, w_, st
    return stop


@traversal_kernel
def overlap_targets_serial(pm: PreparedMap, nu: Neutrinos, sig: SignalRows, acc: Accuracy, heap: Heap, side, band_offsets, band_lo, band_hi, margin, sides, start, stop, out_o, out_w, out_below, out_above, steps):  # fmt: skip
    """:func:`overlap_serial` with target bands: neutrino ``i``'s look stops as soon as
    its weighted result's interval meets none of its bands ``band_offsets[i] ..
    band_offsets[i + 1] - 1`` (see :func:`walk`), the interval's extent below and above
    the result in ``out_below[i]``, ``out_above[i]`` (equal unless ``sides``); -1
    there: the look ran to the tolerance, both results as :func:`overlap_serial`'s.
    ``side``: scratch rows for each side's bounds, at least as many as the heap's
    (:func:`walk`; read only with ``sides``)."""
    for i in range(start, stop):
        vx, vy, vz = radec_to_vec(nu.ra[i], nu.dec[i])
        b0, b1 = band_offsets[i], band_offsets[i + 1]
        o_, w_, st, below, above = single(pm, vx, vy, vz, nu.sigma[i], sig.rows[i], sig.sindec_edges, acc, heap, side, band_lo, band_hi, b0, b1, margin, sides)  # fmt: skip
        if st < 0:
            return i
        out_o[i], out_w[i], out_below[i], out_above[i], steps[i] = o_, w_, below, above, st
    return stop


@parallel_kernel
def overlap_parallel(pm: PreparedMap, nu: Neutrinos, sig: SignalRows, acc: Accuracy, chunk):
    """(overlap, weighted, node expansions) per neutrino, with chunks of ``chunk``
    neutrinos spread over Numba's threads (as many as ``numba.get_num_threads()`` says
    at the call), each chunk on its own heap."""
    n = nu.ra.shape[0]
    out_o = np.empty(n)
    out_w = np.empty(n)
    steps = np.empty(n, np.int64)
    nchunks = (n + chunk - 1) // chunk
    for ch in prange(nchunks):
        heap = new_heap(HEAP_SIZE)
        i, stop = ch * chunk, min(n, (ch + 1) * chunk)
        while i < stop:
            i = overlap_serial(pm, nu, sig, acc, heap, i, stop, out_o, out_w, steps)
            if i < stop:  # kept for the chunk's later ones
                heap = new_heap(2 * heap.ints.shape[0])
    return out_o, out_w, steps
