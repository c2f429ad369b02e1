"""The public side of the overlap kernels: prepare a sky map once, then evaluate PSF
overlaps of neutrinos and of neutrino pairs on it.

Everything here runs in Python: it checks and converts the inputs (one dtype and
layout per argument, so each kernel compiles once), packs them into the records of
:mod:`.records` and picks the serial kernel or, when Numba has several threads and the
call has work enough for them, the parallel one.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import get_num_threads

from ..healpix import uniq_to_order_ipix_array
from .common import RES, RTOL
from .pairs import pair_parallel, pair_serial, pair_targets_serial
from .psf import PSF_GAUSS, PSF_VMF
from .records import Accuracy, Heap, Neutrinos, PreparedMap, SignalRows
from .traversal import HEAP_SIZE, overlap_parallel, overlap_serial, overlap_targets_serial
from .tree import nested_ascending, prepare_flat_arrays, prepare_moc_arrays

#: Fewest neutrinos (or pairs) per Numba thread for which a call runs in parallel: one
#: event's handful runs in the calling thread, so the parallel kernels are compiled
#: only by calls with many (trials), and a Dask thread is never split further.
PARALLEL_MIN_PER_THREAD = 8


def _f64(a, name: str) -> np.ndarray:
    """``a`` as a writeable C-contiguous float64 array (the one type the kernels take:
    a read-only or strided array would compile another specialisation)."""
    try:
        return np.require(a, np.float64, ("C", "W"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers convertible to float64 ({exc})") from None


def _accuracy(psf_kind, rtol, res) -> Accuracy:
    if psf_kind not in (PSF_GAUSS, PSF_VMF):
        raise ValueError(
            f"psf_kind must be 0 (PSF_GAUSS, O3's Gaussian) or 1 (PSF_VMF, von Mises-Fisher), "
            f"got {psf_kind!r}"
        )
    if not 0.0 < float(rtol) < 1.0:
        raise ValueError(f"rtol must be in (0, 1) (default {RTOL}), got {rtol!r}")
    if not float(res) > 0.0:
        raise ValueError(f"res must be > 0 (default {RES}), got {res!r}")
    return Accuracy(int(psf_kind), float(rtol), float(res))


def _neutrinos(ra, dec, sigma, what: str = "neutrino") -> Neutrinos:
    nu = Neutrinos(_f64(ra, "ra"), _f64(dec, "dec"), _f64(sigma, "sigma"))
    if len({a.shape for a in nu}) != 1 or nu.ra.ndim != 1:
        shapes = ", ".join(str(a.shape) for a in nu)
        raise ValueError(f"{what} ra, dec, sigma must be 1-D and of equal length, got {shapes}")
    if np.any(~(nu.sigma > 0.0)):
        raise ValueError(f"{what} sigma must be > 0 [rad] (finite, not NaN)")
    return nu


def _signal_rows(rows, sindec_edges, n: int) -> SignalRows:
    """Validate per-neutrino weight rows (n, n_dec) against the sin(dec) band edges."""
    se = _f64(sindec_edges, "sindec_edges")
    if se.ndim != 1 or se.size < 2 or np.any(np.diff(se) <= 0):
        raise ValueError("sindec_edges must be 1-D, ascending, with at least 2 edges")
    r = _f64(rows, "rows")
    if r.ndim != 2 or r.shape != (n, se.size - 1):
        raise ValueError(
            f"weight rows must have shape (n_neutrinos, len(sindec_edges) - 1) = "
            f"({n}, {se.size - 1}), got {r.shape}"
        )
    if np.any(~(r >= 0)):
        raise ValueError("weight rows must be finite and >= 0")
    return SignalRows(r, se)


def _bands(band_offsets, band_lo, band_hi, margin, n: int):
    """Checked target bands of n looks: (offsets, band_lo, band_hi)."""
    off = np.require(band_offsets, np.int64, ("C", "W"))
    lo, hi = _f64(band_lo, "band_lo"), _f64(band_hi, "band_hi")
    if off.shape != (n + 1,) or lo.shape != hi.shape or lo.ndim != 1:
        raise ValueError(
            f"band_offsets must have n + 1 = {n + 1} entries and band_lo, band_hi one "
            f"shape, got {off.shape}, {lo.shape}, {hi.shape}"
        )
    if off[0] != 0 or off[-1] != lo.size or np.any(np.diff(off) < 0):
        raise ValueError("band_offsets must rise from 0 to the number of bands")
    if not float(margin) >= 0.0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    return off, lo, hi


def _chunk(n: int, threads: int) -> int:
    """Neutrinos per prange chunk: a few chunks per thread, each reusing one heap."""
    return max(1, min(64, n // (4 * threads) + 1))


_SCRATCH = threading.local()


def _heap(size: int = HEAP_SIZE) -> Heap:
    """This thread's scratch heap, at least ``size`` nodes (kept between calls: the
    serial kernels allocate nothing, and a heap serves one call at a time)."""
    heap = getattr(_SCRATCH, "heap", None)
    if heap is None or heap.ints.shape[0] < size:
        heap = Heap.empty(size)
        _SCRATCH.heap = heap
    return heap


def _side_rows(heap: Heap) -> np.ndarray:
    """This thread's scratch rows for an aimed look's two sides (``traversal.walk``'s
    ``side``), one per slot of ``heap``, kept between calls as the heap is."""
    rows = getattr(_SCRATCH, "side", None)
    if rows is None or rows.shape[0] < heap.ints.shape[0]:
        rows = _SCRATCH.side = np.empty((heap.ints.shape[0], 2))
    return rows


def _serial(kernel, args, n: int, after=(), out=None, side_rows: bool = False):
    """Run a serial traversal kernel, ``kernel(*args, heap, *after, i, n, *out)``, over
    items 0..n-1; ``out`` defaults to (overlap, weighted, steps). A traversal that
    fills the heap stops there and goes on with one twice the size. ``side_rows``: the
    kernel takes the heap's scratch side rows after it (`_side_rows`, sized with it)."""
    if out is None:
        out = (np.empty(n), np.empty(n), np.empty(n, np.int64))
    heap = _heap()
    i = 0
    while i < n:
        scratch = (heap, _side_rows(heap)) if side_rows else (heap,)
        i = kernel(*args, *scratch, *after, i, n, *out)
        if i < n:
            heap = _heap(2 * heap.ints.shape[0])
    return out


def _parallel(n: int) -> int:
    """Numba threads for a call of ``n`` items: 0 means run serially."""
    threads = get_num_threads()
    return threads if threads > 1 and n >= PARALLEL_MIN_PER_THREAD * threads else 0


# --------------------------------------------------------------------------------------
# preparing a map
# --------------------------------------------------------------------------------------
def prepare_map(uniq, probdensity, pixel_weight=None) -> PreparedMap:
    """Prepare a multi-order sky map once for any number of overlap calls.

    Parameters
    ----------
    uniq : (m,) int64
        NUNIQ pixel indices; disjoint pixels (sky not covered counts as zero density).
        Any row order is accepted.
    probdensity : (m,) float64
        Probability density per pixel [sr^-1].
    pixel_weight : (m,) float64 or None
        Non-negative per-pixel multiplier inside ``weighted`` (None: ones, the O3 case).

    Returns
    -------
    PreparedMap
        The map's quadtree with min/max bounds and moments, for
        :func:`psf_overlap_prepared` and :func:`psf_pair_overlap_prepared`.

    Examples
    --------
    >>> import numpy as np
    >>> pm = prepare_map(4 + np.arange(12), np.full(12, 1 / (4 * np.pi)))
    >>> ov, wt = psf_overlap_prepared(pm, [1.0], [0.2], [0.01], [[2.0]], [-1.0, 1.0],
    ...                               psf_kind=PSF_VMF)
    >>> bool(np.isclose(ov[0], 1 / (4 * np.pi))), bool(np.isclose(wt[0], 2 / (4 * np.pi)))
    (True, True)
    """
    uniq = np.require(uniq, np.int64, ("C", "W"))
    rho = _f64(probdensity, "probdensity")
    w = np.ones_like(rho) if pixel_weight is None else _f64(pixel_weight, "pixel_weight")
    if not (uniq.ndim == 1 and uniq.shape == rho.shape == w.shape):
        raise ValueError(
            f"uniq, probdensity and pixel_weight must be 1-D of one length, got "
            f"{uniq.shape}, {rho.shape}, {w.shape}"
        )
    if uniq.size and uniq.min() < 4:
        raise ValueError(f"uniq must be NUNIQ indices (>= 4), got {uniq.min()}")
    if not nested_ascending(uniq):  # accept any row order, sort once
        order, ipix = uniq_to_order_ipix_array(uniq)
        idx = np.argsort(ipix << (2 * (29 - order)), kind="stable")
        uniq, rho, w = uniq[idx], rho[idx], w[idx]
    return PreparedMap(*prepare_moc_arrays(uniq, rho, w))


def prepare_map_flat(prob_nested, pixel_weight=None) -> PreparedMap:
    """Prepare a flat NESTED map of probability PER PIXEL once.

    ``prob_nested`` has ``12 * 4**order`` entries (convert a RING map first with
    ``healpy.reorder(m, r2n=True)``); the density is ``prob / pixel_area``. No uniq
    array is built: the tree is implicit, with a min/max pyramid down to order 7
    (~35 MB). ``pixel_weight`` is per flat pixel (None: ones).

    Examples
    --------
    >>> import numpy as np
    >>> pm = prepare_map_flat(np.full(48, 1 / 48))
    >>> pm.flat, int(pm.top_order)
    (1, 1)
    """
    prob = _f64(prob_nested, "prob_nested")
    order = int(round(np.log2(max(prob.size, 1) / 12) / 2))
    if prob.ndim != 1 or 12 * 4**order != prob.size:
        raise ValueError(
            f"a flat map must have 12 * 4**order pixels (NESTED), got shape {prob.shape}"
        )
    w = np.ones_like(prob) if pixel_weight is None else _f64(pixel_weight, "pixel_weight")
    if w.shape != prob.shape:
        raise ValueError(f"pixel_weight must have the map's shape {prob.shape}, got {w.shape}")
    return PreparedMap(*prepare_flat_arrays(prob, w, np.int64(order)))


# --------------------------------------------------------------------------------------
# evaluating on it
# --------------------------------------------------------------------------------------
def psf_overlap_prepared(
    pmap: PreparedMap,
    ra,
    dec,
    sigma,
    rows,
    sindec_edges,
    psf_kind: int = PSF_GAUSS,
    *,
    rtol: float = RTOL,
    res: float = RES,
) -> tuple[np.ndarray, np.ndarray]:
    """Spatial overlap of many neutrino PSFs with a prepared sky map.

    Parameters
    ----------
    pmap : PreparedMap
        From :func:`prepare_map` or :func:`prepare_map_flat`.
    ra, dec, sigma : (n,) float64
        Neutrino directions and 1-sigma errors [rad].
    rows : (n, n_dec) float64
        Per neutrino, a non-negative sky weight constant in each sin(dec) band (the
        signal energy density a(eps_i, theta = 90 deg + dec) of the LLAMA statistic, in
        any unit; ``weighted`` carries it).
    sindec_edges : (n_dec + 1,) float64
        sin(dec) band edges, ascending; positions outside use the edge bands.
    psf_kind : int
        ``PSF_GAUSS`` (0): O3's 2-D Gaussian ``exp(-psi^2/2 sigma^2)/(2 pi sigma^2)``;
        ``PSF_VMF`` (1): von Mises-Fisher with ``kappa = 1/sigma^2``, normalised on
        the sphere.
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
    >>> pm = prepare_map(4 + np.arange(12), np.full(12, 1 / (4 * np.pi)))
    >>> ov, wt = psf_overlap_prepared(pm, [1.0], [0.2], [0.01], [[2.0]], [-1.0, 1.0])
    >>> bool(np.isclose(ov[0] * 4 * np.pi, 1.0, rtol=1e-4))  # Gaussian norm 1 - s^2/3
    True
    """
    acc = _accuracy(psf_kind, rtol, res)
    nu = _neutrinos(ra, dec, sigma)
    sig = _signal_rows(rows, sindec_edges, nu.ra.size)
    return overlap_with_steps(pmap, nu, sig, acc)[:2]


def overlap_with_steps(pmap: PreparedMap, nu: Neutrinos, sig: SignalRows, acc: Accuracy):
    """(overlap, weighted, node expansions) of checked records: the kernel call of
    :func:`psf_overlap_prepared`, with the traversal's work per neutrino."""
    n = nu.ra.size
    if n == 0:
        return np.empty(0), np.empty(0), np.empty(0, np.int64)
    threads = _parallel(n)
    if threads:
        return overlap_parallel(pmap, nu, sig, acc, _chunk(n, threads))
    return _serial(overlap_serial, (pmap, nu, sig, acc), n)


def psf_overlap_targets(
    pmap: PreparedMap,
    ra,
    dec,
    sigma,
    rows,
    sindec_edges,
    psf_kind: int,
    band_offsets,
    band_lo,
    band_hi,
    margin: float,
    *,
    rtol: float = RTOL,
    res: float = RES,
    sides: bool = False,
) -> tuple[np.ndarray, ...]:
    """:func:`psf_overlap_prepared`'s weighted result, each look stopped as soon as its
    interval leaves the neutrino's target bands.

    A caller that needs to know only on which side of some values (the bands) a
    weighted result lies says so: neutrino ``i``'s traversal stops as soon as the
    interval ``weighted - below .. weighted + above``, each side the bounds of what it
    has not yet refined on that side plus ``margin`` times ``|weighted|`` (an
    allowance for the midpoint cells, which carry no bound), meets none of its bands
    ``[band_lo[k], band_hi[k]]``, ``k`` from ``band_offsets[i]`` to ``band_offsets[i +
    1] - 1``. Without ``sides`` both sides are the two-sided bounds' sum (``half``);
    with it each side its own (a node all above or all below the neutrino's density
    bounds one side only), so the interval is narrower and a look stops sooner (bbh-3
    and bns-9's trial looks: 10-21% fewer node expansions). A look that never gets
    there runs to ``rtol``: the same traversal and the same weighted result as
    :func:`psf_overlap_prepared`'s. Serial (one event's trials, in the calling thread).

    Parameters
    ----------
    pmap, ra, dec, sigma, rows, sindec_edges, psf_kind, rtol, res
        As :func:`psf_overlap_prepared`.
    band_offsets : (n + 1,) int64
        Each neutrino's bands, CSR: non-decreasing, from 0 to ``len(band_lo)``.
    band_lo, band_hi : (m,) float64
        The bands' ends, in ``weighted``'s unit.
    margin : float
        >= 0, relative allowance in each interval.
    sides : bool
        Bound each side of the interval by its own sum, and return both sides
        (``below``, ``above``) instead of ``half``.

    Returns
    -------
    weighted : (n,) float64
        The weighted result where the look ran to ``rtol`` (``half`` -1), else the
        running total where it stopped.
    half : (n,) float64
        The interval's half width, or -1.
    below, above : (n,) float64
        With ``sides``, in place of ``half``: the interval's extent below and above
        ``weighted``, or both -1.

    Examples
    --------
    >>> import numpy as np
    >>> pm = prepare_map(4 + np.arange(12), (1 + np.arange(12)) / (26 * np.pi))  # 12 steps
    >>> args = (pm, [1.0, 1.0], [0.2, 0.2], [0.05, 0.05], [[1.0], [1.0]], [-1.0, 1.0], PSF_VMF)
    >>> w, half = psf_overlap_targets(*args, [0, 1, 2], [0.5, 0.0], [0.6, 0.1], 0.05)
    >>> bool(0 <= half[0] and w[0] + half[0] < 0.5), float(half[1])  # below; run to the end
    (True, -1.0)
    """
    acc = _accuracy(psf_kind, rtol, res)
    nu = _neutrinos(ra, dec, sigma)
    n = nu.ra.size
    sig = _signal_rows(rows, sindec_edges, n)
    off, lo, hi = _bands(band_offsets, band_lo, band_hi, margin, n)
    out = (np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n, np.int64))
    after = (off, lo, hi, float(margin), bool(sides))
    _serial(overlap_targets_serial, (pmap, nu, sig, acc), n, after, out, side_rows=True)
    if sides:
        return out[1], out[2], out[3]
    return out[1], out[2]


def _pair_inputs(psf_kind, rtol, res, ra_i, dec_i, sigma_i, rows_i, ra_j, dec_j, sigma_j, rows_j, sindec_edges):  # fmt: skip
    """A pair kernel's checked inputs: (accuracy at res / sqrt 2, both members'
    Neutrinos, both members' SignalRows on one set of band edges)."""
    acc = _accuracy(psf_kind, rtol, res / math.sqrt(2.0))
    nu_i = _neutrinos(ra_i, dec_i, sigma_i, "first members'")
    nu_j = _neutrinos(ra_j, dec_j, sigma_j, "second members'")
    n = nu_i.ra.size
    if nu_j.ra.size != n:
        raise ValueError(
            f"the pairs' members must be listed in equal numbers, got {n} and {nu_j.ra.size}"
        )
    sig_i = _signal_rows(rows_i, sindec_edges, n)
    sig_j = SignalRows(_signal_rows(rows_j, sindec_edges, n).rows, sig_i.sindec_edges)
    return acc, nu_i, nu_j, sig_i, sig_j


def psf_pair_overlap_prepared(
    pmap: PreparedMap,
    ra_i,
    dec_i,
    sigma_i,
    rows_i,
    ra_j,
    dec_j,
    sigma_j,
    rows_j,
    sindec_edges,
    psf_kind: int = PSF_GAUSS,
    *,
    rtol: float = RTOL,
    res: float = RES,
    weighted_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Doublet overlap of neutrino pairs ``(i[k], j[k])`` with a prepared sky map.

    Arguments as in :func:`psf_overlap_prepared`; the ``_i`` and ``_j`` arrays list the
    two members of each pair (equal lengths). ``weighted_only=True``: only ``weighted``
    is computed to ``rtol`` (the pruning ignores the overlap's bounds); ``overlap`` is
    then NaN.

    Returns
    -------
    overlap : (n_pairs,) float64
        ``sum_pix rho * integral_pix G_i G_j dOmega`` [sr^-2].
    weighted : (n_pairs,) float64
        ``sum_pix rho * w * integral_pix rows_i G_i rows_j G_j dOmega`` [row unit^2 /
        sr^2].

    Examples
    --------
    >>> import numpy as np
    >>> pm = prepare_map(4 + np.arange(12), np.full(12, 1 / (4 * np.pi)))
    >>> s = 0.01  # two identical vMF PSFs: int G^2 = 1 / (4 pi s^2)
    >>> ov, wt = psf_pair_overlap_prepared(pm, [1.0], [0.2], [s], [[1.0]],
    ...                                    [1.0], [0.2], [s], [[1.0]], [-1.0, 1.0], PSF_VMF)
    >>> bool(np.isclose(ov[0], 1 / (4 * np.pi) / (4 * np.pi * s * s), rtol=1e-2))
    True
    """
    acc, nu_i, nu_j, sig_i, sig_j = _pair_inputs(psf_kind, rtol, res, ra_i, dec_i, sigma_i, rows_i, ra_j, dec_j, sigma_j, rows_j, sindec_edges)  # fmt: skip
    n = nu_i.ra.size
    if n == 0:
        return np.empty(0), np.empty(0)
    wonly = bool(weighted_only)
    threads = _parallel(n)
    if threads:
        out = pair_parallel(pmap, nu_i, nu_j, sig_i, sig_j, acc, wonly, _chunk(n, threads))
    else:
        out = _serial(pair_serial, (pmap, nu_i, nu_j, sig_i, sig_j, acc, wonly), n)
    return out[:2]


def psf_pair_overlap_targets(
    pmap: PreparedMap,
    ra_i,
    dec_i,
    sigma_i,
    rows_i,
    ra_j,
    dec_j,
    sigma_j,
    rows_j,
    sindec_edges,
    psf_kind: int,
    band_offsets,
    band_lo,
    band_hi,
    margin: float,
    *,
    narrow: float = 0.0,
    rtol: float = RTOL,
    res: float = RES,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`psf_pair_overlap_prepared`'s weighted result (``weighted_only``), each
    pair's look stopped as soon as its interval leaves the pair's target bands, as
    :func:`psf_overlap_targets` does for single neutrinos.

    Pair ``k``'s traversal stops as soon as ``weighted +- half`` (the bounds of what it
    has not refined plus ``margin`` times ``|weighted|``) meets none of its bands
    ``band_offsets[k] .. band_offsets[k + 1] - 1``, or, with ``narrow`` > 0, lies inside
    a finite one and is no wider than ``narrow`` times it; a look that never gets there
    runs to ``rtol``: the weighted result of :func:`psf_pair_overlap_prepared`, bit for
    bit. Serial (one event's trials, in the calling thread).

    Parameters
    ----------
    pmap, ra_i, dec_i, sigma_i, rows_i, ra_j, dec_j, sigma_j, rows_j, sindec_edges, psf_kind, rtol, res
        As :func:`psf_pair_overlap_prepared`.
    band_offsets, band_lo, band_hi, margin
        As :func:`psf_overlap_targets`, per pair.
    narrow : float
        >= 0; 0: a look stops only outside its bands.

    Returns
    -------
    weighted : (n_pairs,) float64
        The weighted result where the look ran to ``rtol`` (``half`` -1), else the
        running total where it stopped.
    half : (n_pairs,) float64
        The interval's half width, or -1.

    Examples
    --------
    >>> import numpy as np
    >>> pm = prepare_map(4 + np.arange(12), (1 + np.arange(12)) / (26 * np.pi))
    >>> one = ([1.0], [0.2], [0.05], [[1.0]])
    >>> _, exact = psf_pair_overlap_prepared(pm, *one, *one, [-1.0, 1.0], PSF_VMF, weighted_only=True)
    >>> w, half = psf_pair_overlap_targets(pm, *one, *one, [-1.0, 1.0], PSF_VMF, [0, 1], [1e9], [2e9], 0.05)
    >>> bool(0 <= half[0] and w[0] + half[0] < 1e9)  # below its band: stopped
    True
    >>> w, half = psf_pair_overlap_targets(pm, *one, *one, [-1.0, 1.0], PSF_VMF, [0, 1], [-np.inf], [np.inf], 0.05)
    >>> float(half[0]), bool(w[0] == exact[0])  # run to the end: the exact result
    (-1.0, True)
    """
    acc, nu_i, nu_j, sig_i, sig_j = _pair_inputs(psf_kind, rtol, res, ra_i, dec_i, sigma_i, rows_i, ra_j, dec_j, sigma_j, rows_j, sindec_edges)  # fmt: skip
    n = nu_i.ra.size
    off, lo, hi = _bands(band_offsets, band_lo, band_hi, margin, n)
    if not float(narrow) >= 0.0:
        raise ValueError(f"narrow must be >= 0, got {narrow!r}")
    args = (pmap, nu_i, nu_j, sig_i, sig_j, acc)
    out = _serial(pair_targets_serial, args, n, (off, lo, hi, float(margin), float(narrow)))
    return out[0], out[1]
