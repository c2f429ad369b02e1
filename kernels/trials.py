"""Numba helpers for background trials: tiling lists and counting exceedances.

Examples
--------
>>> import numpy as np
>>> from kernels.trials import tile_offsets, count_at_least
>>> tile_offsets(2, 3)
array([0, 2, 4, 6])
>>> count_at_least(np.array([1.0, 2.0, 3.0]), np.array([2.0, 5.0]))
array([2, 0])
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.odds import time_overlap

#: The largest double (``np.nan_to_num``'s stand-in for +inf).
_DBL_MAX = np.finfo(np.float64).max

__all__ = [
    "tile_offsets",
    "offsets_from_counts",
    "count_at_least",
    "segment_gather",
    "widest_single",
    "segment_bounds",
    "aimed_bands",
    "trial_units",
    "trial_singles",
    "segment_any",
]


@njit(cache=True, nogil=True)
def tile_offsets(n, m):
    """CSR offsets of ``m`` copies of an ``n``-element list.

    Examples
    --------
    >>> tile_offsets(0, 2)
    array([0, 0, 0])
    """
    out = np.empty(m + 1, dtype=np.int64)
    for k in range(m + 1):
        out[k] = k * n
    return out


@njit(cache=True, nogil=True)
def offsets_from_counts(counts):
    """CSR offsets from per-list counts.

    Examples
    --------
    >>> import numpy as np
    >>> offsets_from_counts(np.array([2, 0, 3]))
    array([0, 2, 2, 5])
    """
    out = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    for k in range(counts.shape[0]):
        out[k + 1] = out[k] + counts[k]
    return out


@njit(cache=True, nogil=True)
def count_at_least(trials, observed):
    """For each observed value x, the number of trial values >= x.

    Sorts a copy of ``trials`` once, then one binary search per observed value.

    Examples
    --------
    >>> import numpy as np
    >>> count_at_least(np.array([0.0, 0.0, 1.0]), np.array([0.0]))
    array([3])
    """
    s = np.sort(trials)
    n = s.shape[0]
    out = np.empty(observed.shape[0], dtype=np.int64)
    for k in range(observed.shape[0]):
        out[k] = n - np.searchsorted(s, observed[k], side="left")
    return out


@njit(cache=True, nogil=True)
def segment_gather(offsets, which):
    """(entry indices, new CSR offsets) of segments ``which`` of CSR ``offsets``, in
    the order given: what ``np.repeat`` and ``np.arange`` give in NumPy, in one pass
    (background_trials._refine takes the trials it still holds ~20 times per batch).

    Examples
    --------
    >>> import numpy as np
    >>> segment_gather(np.array([0, 2, 2, 5]), np.array([2, 0]))
    (array([2, 3, 4, 0, 1]), array([0, 3, 5]))
    """
    new = np.empty(which.shape[0] + 1, dtype=np.int64)
    new[0] = 0
    for k in range(which.shape[0]):
        w = which[k]
        new[k + 1] = new[k] + (offsets[w + 1] - offsets[w])
    idx = np.empty(new[-1], dtype=np.int64)
    for k in range(which.shape[0]):
        start = offsets[which[k]]
        for q in range(new[k + 1] - new[k]):
            idx[new[k] + q] = start + q
    return idx, new


@njit(cache=True, nogil=True)
def widest_single(single_lo, single_hi, pair_lo, pair_hi, idx, level, top, offsets):
    """Per segment of CSR ``offsets`` over neutrinos ``idx`` (a trial's, in
    background_trials._refine): (the entry of its widest open single, the first of
    ties; that width; the sum of its doublet bounds' widths). A single is open while
    its ``level`` is below ``top``; a closed one's width is -1. The same numbers as
    ``np.where(level < top, single_hi[idx] - single_lo[idx], -1.0)``, its first
    maximum per segment and ``np.bincount`` of ``pair_hi[idx] - pair_lo[idx]`` (sums
    in entry order). Segments must be non-empty and widths not NaN (ValueError).

    Examples
    --------
    >>> import numpy as np
    >>> lo, hi = np.zeros(3), np.array([1.0, 3.0, 3.0])
    >>> widest_single(lo, hi, lo, hi, np.array([2, 1, 0]), np.array([0, 0, 2]), 2, np.array([0, 3]))
    (array([0]), array([3.]), array([7.]))
    """
    m = offsets.shape[0] - 1
    pick = np.empty(m, dtype=np.int64)
    best = np.empty(m)
    pairs = np.empty(m)
    for s in range(m):
        if offsets[s + 1] <= offsets[s]:
            raise ValueError("widest_single needs segments none empty and widths none NaN")
        acc = 0.0
        at = -1
        top_w = 0.0
        for e in range(offsets[s], offsets[s + 1]):
            k = idx[e]
            w = single_hi[k] - single_lo[k] if level[e] < top else -1.0
            if w != w:
                raise ValueError("widest_single needs segments none empty and widths none NaN")
            if at < 0 or w > top_w:
                at = e
                top_w = w
            acc += pair_hi[k] - pair_lo[k]
        pick[s] = at
        best[s] = top_w
        pairs[s] = acc
    return pick, best, pairs


@njit(cache=True, nogil=True)
def segment_bounds(single_lo, pair_lo, single_hi, pair_hi, idx, offsets):
    """Per segment of CSR ``offsets`` over neutrinos ``idx``: the sums of
    ``max(single_lo + pair_lo, 0)`` and of ``max(single_hi + pair_hi, 0)`` (NaN kept,
    as ``np.maximum``), in entry order: a trial's O bounds from its neutrinos' parts.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([1.0, -3.0, 2.0])
    >>> segment_bounds(v, v, v, np.zeros(3), np.array([0, 1, 2]), np.array([0, 2, 3]))
    (array([2., 4.]), array([1., 2.]))
    """
    m = offsets.shape[0] - 1
    lo = np.zeros(m)
    hi = np.zeros(m)
    for s in range(m):
        a = 0.0
        b = 0.0
        for e in range(offsets[s], offsets[s + 1]):
            k = idx[e]
            x = single_lo[k] + pair_lo[k]
            a += x if (x > 0.0 or x != x) else 0.0  # np.maximum(x, 0.0): -0.0 -> 0.0
            y = single_hi[k] + pair_hi[k]
            b += y if (y > 0.0 or y != y) else 0.0
        lo[s] = a
        hi[s] = b
    return lo, hi


@njit(cache=True, nogil=True, error_model="numpy")
def aimed_bands(thresholds, cut, mid, o_lo, o_hi, rest_lo, rest_hi, pair_lo, pair_hi, unit, ok, f_lo, f_hi, cells):  # fmt: skip
    """Target bands of n kernel looks (one per row) at a trial's thresholds, in CSR
    form: (offsets, band_lo, band_hi). The numbers of the NumPy of
    background_trials' ``_aims`` (``pair_lo``, ``pair_hi`` zeros: ``_pair_looks``').

    Row n's trial has O in [o_lo[n], o_hi[n]]; threshold T (ascending; one at or above
    ``cut`` as it is, one in [mid[n], cut) as the cut, one below mid[n] none) is held
    where that interval holds it; a held one gives the look's band
    [((T - rest_hi - pair_hi) f_lo) / unit, ((T - rest_lo - pair_lo) f_hi) / unit]
    where both ends are finite, as ``cells + 1`` points (``cells`` equal cells from
    max(lo, 0) up where hi > 0, each end a band of one point), or as itself where
    ``cells`` is 0. A row not ``ok`` gets one band over everything.

    Examples
    --------
    >>> import numpy as np
    >>> one = np.ones(1)
    >>> zero, yes = np.zeros(1), np.ones(1, np.bool_)
    >>> off, lo, hi = aimed_bands(np.array([2.0]), 1.0, one, one, 3 * one, zero, 2 * one, zero, zero, one, yes, 1.0, 1.0, 2)
    >>> off.tolist(), lo.tolist(), bool((lo == hi).all())
    ([0, 3], [0.0, 1.0, 2.0], True)
    """
    n = mid.shape[0]
    per = cells + 1 if cells else 1
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    for r in range(2):  # count, then fill
        if r == 1:
            band_lo = np.empty(offsets[n])
            band_hi = np.empty(offsets[n])
        else:
            band_lo = np.empty(0)
            band_hi = np.empty(0)
        for i in range(n):
            at = offsets[i]
            if not ok[i]:
                if r == 0:
                    offsets[i + 1] = at + 1
                else:
                    band_lo[at] = -np.inf
                    band_hi[at] = np.inf
                continue
            u = unit[i]
            q = 0
            for j in range(thresholds.shape[0]):
                t = thresholds[j]
                if t >= cut:
                    big = t
                elif t >= mid[i]:
                    big = cut
                else:
                    continue
                if not (big >= o_lo[i] and big <= o_hi[i]):
                    continue
                a = (big - rest_hi[i] - pair_hi[i]) * f_lo / u
                b = (big - rest_lo[i] - pair_lo[i]) * f_hi / u
                if not (np.isfinite(a) and np.isfinite(b)):
                    continue
                if r == 1:
                    pos = at + q * per
                    if cells:
                        if b > 0.0 and not a > 0.0:  # np.maximum(a, 0.0), a finite
                            a = 0.0
                        for k in range(per):
                            v = a + (b - a) * (k / cells)
                            band_lo[pos + k] = v
                            band_hi[pos + k] = v
                    else:
                        band_lo[pos] = a
                        band_hi[pos] = b
                q += 1
            if r == 0:
                offsets[i + 1] = at + q * per
    return offsets, band_lo, band_hi


@njit(cache=True, nogil=True, error_model="numpy")
def trial_units(dt, density, d_1, half_window, rate_common, null_ratio, rate_norm, time_norm, enough_num):  # fmt: skip
    """(unit, den, enough) per trial neutrino, the numbers of background_trials'
    NumPy: T_i = ``time_overlap(dt, half_window)``, p_c = ``rate_common`` B_i,
    den = p_c + p_c ``null_ratio``, unit = ``rate_norm`` T_i d_1 / ``time_norm`` / den
    (left to right), and ``np.nan_to_num(where(unit > 0, enough_num / unit, inf),
    nan=0.0)`` (0 for NaN, the largest double for +inf).

    Examples
    --------
    >>> import numpy as np
    >>> u, d, e = trial_units(np.zeros(2), np.array([1.0, 0.0]), np.ones(2), 250.0, 2.0, 0.5, 3.0, 1.0, 1.0)
    >>> u.tolist(), d.tolist(), e.tolist()
    ([500.0, inf], [3.0, 0.0], [0.002, 0.0])
    """
    n = dt.shape[0]
    t_i = time_overlap(dt, half_window)
    unit = np.empty(n)
    den = np.empty(n)
    enough = np.empty(n)
    for k in range(n):
        p_c = rate_common * density[k]
        d = p_c + p_c * null_ratio
        u = rate_norm * t_i[k] * d_1[k] / time_norm / d
        unit[k] = u
        den[k] = d
        e = enough_num / u if u > 0 else np.inf
        if e != e:
            e = 0.0
        elif e == np.inf:
            e = _DBL_MAX
        elif e == -np.inf:
            e = -_DBL_MAX
        enough[k] = e
    return unit, den, enough


@njit(cache=True, nogil=True, error_model="numpy")
def trial_singles(s_lo, s_hi, unit, den, a_max, peak, floor, lo_div, hi_div):
    """(single_lo, single_hi, k_hi, bad) per trial neutrino from the bounds of its true
    S_i, the numbers of background_trials' NumPy: f = ``floor`` (``peak`` a_max),
    k_lo = max(s_lo - f, 0) / ``lo_div``, k_hi = (s_hi + f) / ``hi_div``, the singles
    unit k_lo and unit k_hi, bad where den is not > 0 or single_hi not finite.

    Examples
    --------
    >>> import numpy as np
    >>> one = np.ones(2)
    >>> lo, hi, k_hi, bad = trial_singles(np.array([0.0, 2.0]), 3 * one, 2 * one, np.array([1.0, 0.0]), one, 1.0, 0.5, 1.0, 0.5)
    >>> lo.tolist(), hi.tolist(), bad.tolist()
    ([0.0, 3.0], [14.0, 14.0], [False, True])
    """
    n = s_lo.shape[0]
    single_lo = np.empty(n)
    single_hi = np.empty(n)
    k_hi = np.empty(n)
    bad = np.empty(n, dtype=np.bool_)
    for k in range(n):
        f = floor * (peak * a_max[k])
        x = s_lo[k] - f
        x = x if (x > 0.0 or x != x) else 0.0  # np.maximum(x, 0.0): -0.0 -> 0.0
        hi = (s_hi[k] + f) / hi_div
        k_hi[k] = hi
        single_lo[k] = unit[k] * (x / lo_div)
        single_hi[k] = unit[k] * hi
        bad[k] = not (den[k] > 0) or not np.isfinite(single_hi[k])
    return single_lo, single_hi, k_hi, bad


@njit(cache=True, nogil=True)
def segment_any(flags, offsets):
    """Per CSR segment: does any of its ``flags`` hold (an empty segment: no).

    Examples
    --------
    >>> import numpy as np
    >>> segment_any(np.array([False, True, False]), np.array([0, 1, 1, 3])).tolist()
    [False, False, True]
    """
    m = offsets.shape[0] - 1
    out = np.zeros(m, dtype=np.bool_)
    for s in range(m):
        for k in range(offsets[s], offsets[s + 1]):
            if flags[k]:
                out[s] = True
                break
    return out
