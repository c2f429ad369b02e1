"""Helpers of BackgroundTrials._refine's rounds (kernels.trials) against the plain
NumPy they replaced, number for number."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import odds as KO
from kernels import trials as KT
from kernels.trials import offsets_from_counts


def _lexsort_widest(width, seg):
    order = np.lexsort((-width, seg))
    first = np.r_[0, np.flatnonzero(np.diff(seg[order])) + 1] if order.size else order
    return order[first]


def _numpy_segments(offsets, which):
    counts = offsets[which + 1] - offsets[which]
    new = offsets_from_counts(counts)
    idx = np.repeat(offsets[which] - new[:-1], counts) + np.arange(new[-1])
    return idx, new


def _case(rng, case, empty=False):
    counts = rng.integers(0 if empty else 1, 30, rng.integers(1, 60))
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    n = int(offsets[-1])
    width = rng.integers(-1, 4, n).astype(np.float64)
    width[rng.uniform(size=n) < 0.1] = -0.0
    if case % 2:
        width = np.where(width > 0, rng.uniform(0, 1e-9, n), width)
    return counts, offsets, width


@pytest.mark.parametrize("seed", range(6))
def test_widest_single_is_the_first_of_each_segments_lexsort(seed):
    """Segments of 1-30 entries, widths with many ties (small integers, 0.0 and -0.0,
    closed singles' -1), a permuted neutrino index: each segment's pick is the
    lexsort's, index for index, its width the width there, the doublet widths
    np.bincount's sums."""
    rng = np.random.default_rng(seed)
    for case in range(200):
        counts, offsets, width = _case(rng, case)
        n = width.size
        seg = np.repeat(np.arange(counts.size), counts)
        idx = rng.permutation(n).astype(np.int64)
        level = rng.integers(0, 3, n).astype(np.int64)
        lo = rng.uniform(-1, 1, n)
        hi = np.empty(n)
        hi[idx] = lo[idx] + width  # single_hi[idx] - single_lo[idx] is width, ±0 apart
        plo, phi = rng.uniform(0, 1, n), rng.uniform(1, 3, n)
        want_w = np.where(level < 2, hi[idx] - lo[idx], -1.0)
        pick, w, pairs = KT.widest_single(lo, hi, plo, phi, idx, level, 2, offsets)
        np.testing.assert_array_equal(pick, _lexsort_widest(want_w, seg))
        np.testing.assert_array_equal(w, want_w[pick])
        want_p = np.bincount(seg, weights=phi[idx] - plo[idx], minlength=counts.size)
        np.testing.assert_array_equal(pairs, want_p)
    none = KT.widest_single(lo, hi, plo, phi, idx[:0], level[:0], 2, np.zeros(1, np.int64))
    assert none[0].size == none[1].size == none[2].size == 0


@pytest.mark.parametrize("where", [0, 1, 2])
def test_widest_single_refuses_an_empty_segment_or_a_nan(where):
    """What _refine never gives it (every trial has a neutrino, bounds are finite):
    refused, not a segment silently without its pick."""
    counts = np.array([3, 2, 4])
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    lo, hi = np.zeros(9), np.arange(9.0)
    hi[offsets[where]] = np.nan
    level = np.zeros(9, np.int64)
    idx = np.arange(9, dtype=np.int64)
    with pytest.raises(ValueError, match="NaN"):
        KT.widest_single(lo, hi, lo, lo, idx, level, 2, offsets)
    counts[where] = 0
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    hi = np.arange(9.0)
    with pytest.raises(ValueError, match="empty"):
        KT.widest_single(lo, hi, lo, lo, idx, level, 2, offsets)


@pytest.mark.parametrize("seed", range(4))
def test_segment_gather_and_bounds_are_the_numpy_ones(seed):
    """Lists picked in any order (repeats, empty lists): the entries and offsets of
    np.repeat / np.arange; the trial bounds of KO.segment_sum over np.maximum(., 0)
    bit for bit, with negative parts, -0.0, NaN and inf among them."""
    rng = np.random.default_rng(seed)
    for case in range(100):
        counts, offsets, _ = _case(rng, case, empty=True)
        which = rng.integers(0, counts.size, rng.integers(0, 2 * counts.size)).astype(np.int64)
        idx, new = KT.segment_gather(offsets, which)
        want_idx, want_new = _numpy_segments(offsets, which)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(new, want_new)
        n = int(offsets[-1])
        parts = [rng.normal(0, 1, n) * 10.0 ** rng.integers(-20, 20, n) for _ in range(4)]
        for p in parts:
            p[rng.uniform(size=n) < 0.05] = -0.0
            p[rng.uniform(size=n) < 0.01] = rng.choice([np.nan, np.inf, -np.inf])
        s_lo, p_lo, s_hi, p_hi = parts
        lo, hi = KT.segment_bounds(s_lo, p_lo, s_hi, p_hi, idx, new)
        with np.errstate(invalid="ignore"):  # inf - inf
            want_lo = KO.segment_sum(np.maximum(s_lo[idx] + p_lo[idx], 0.0), new)
        with np.errstate(invalid="ignore"):  # inf - inf
            want_hi = KO.segment_sum(np.maximum(s_hi[idx] + p_hi[idx], 0.0), new)
        np.testing.assert_array_equal(lo, want_lo)
        np.testing.assert_array_equal(hi, want_hi)
        assert np.array_equal(np.signbit(lo), np.signbit(want_lo))


def _numpy_bands(thresholds, cut, mid, o_lo, o_hi, rest_lo, rest_hi, pair_lo, pair_hi, unit, ok, f_lo, f_hi, cells):  # fmt: skip
    """BackgroundTrials._aims' NumPy before kernels.trials.aimed_bands (_pair_looks' with
    cells 0 and pair_lo, pair_hi left out)."""
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        big = np.where(t >= cut, t, np.where(t >= mid[:, None], cut, np.nan))
        held = (big >= o_lo[:, None]) & (big <= o_hi[:, None])
        if cells:
            lo_o = (big - rest_hi[:, None] - pair_hi[:, None]) * f_lo
            hi_o = (big - rest_lo[:, None] - pair_lo[:, None]) * f_hi
        else:
            lo_o = (big - rest_hi[:, None]) * f_lo
            hi_o = (big - rest_lo[:, None]) * f_hi
        u = np.where(ok, unit, 1.0)[:, None]
        lo_s, hi_s = lo_o / u, hi_o / u
    held &= ok[:, None] & np.isfinite(lo_s) & np.isfinite(hi_s)
    everything = ~ok
    per = cells + 1 if cells else 1
    offsets = offsets_from_counts(held.sum(axis=1) * per + everything)
    band_lo, band_hi = np.empty(offsets[-1]), np.empty(offsets[-1])
    row, col = np.nonzero(held)
    at = offsets[row] + (np.cumsum(held, axis=1)[row, col] - 1) * per
    a, b = lo_s[row, col], hi_s[row, col]
    if cells:
        a = np.where(b > 0.0, np.maximum(a, 0.0), a)
        pts = a[:, None] + (b - a)[:, None] * (np.arange(per) / cells)[None, :]
        pos = (at[:, None] + np.arange(per)[None, :]).ravel()
        band_lo[pos] = band_hi[pos] = pts.ravel()
    else:
        band_lo[at], band_hi[at] = a, b
    band_lo[offsets[:-1][everything]] = -np.inf
    band_hi[offsets[:-1][everything]] = np.inf
    return offsets, band_lo, band_hi


@pytest.mark.parametrize("cells", [0, 1, 4])
@pytest.mark.parametrize("seed", range(4))
def test_aimed_bands_are_the_numpy_ones(cells, seed):
    """Rows held by none, some or all of 8 thresholds (below a NaN or finite mid, at
    and above the cut), units 0, negative, tiny, inf and NaN (not ok), bands crossing
    0 and wholly below it, -0.0: offsets and band ends bit for bit."""
    rng = np.random.default_rng(seed)
    cut, r = 1e-6, 1e-4
    for _ in range(60):
        n = int(rng.integers(0, 40))
        t = np.sort(np.r_[rng.uniform(0, 2e-6, 6), cut, 0.0])
        mid = rng.uniform(0, 1.2e-6, n)
        mid[rng.uniform(size=n) < 0.1] = np.nan
        o_lo = rng.uniform(0, 1.5e-6, n)
        o_hi = o_lo + rng.uniform(0, 1e-6, n)
        parts = [rng.uniform(-1e-7, 1e-6, n) for _ in range(4)]
        for p in parts:
            p[rng.uniform(size=n) < 0.05] = -0.0
        rest_lo, rest_hi, pair_lo, pair_hi = parts
        unit = 10.0 ** rng.uniform(-3, 3, n)
        odd = rng.choice([0.0, -1.0, 1e-310, np.inf, np.nan], n)
        unit = np.where(rng.uniform(size=n) < 0.15, odd, unit)
        ok = (unit > 0) & np.isfinite(unit) & (rng.uniform(size=n) < 0.9)
        if not cells:
            pair_lo = pair_hi = np.zeros(n)
        args = (t, cut, mid, o_lo, o_hi, rest_lo, rest_hi, pair_lo, pair_hi, unit, ok, 1 - 2 * r, 1 + 2 * r, cells)  # fmt: skip
        got, want = KT.aimed_bands(*args), _numpy_bands(*args)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
            assert np.array_equal(np.signbit(g), np.signbit(w))


def _special(rng, n, values):
    x = 10.0 ** rng.uniform(-30, 30, n) * rng.choice([1.0, 1.0, 1.0, -1.0], n)
    return np.where(rng.uniform(size=n) < 0.1, rng.choice(values, n), x)


@pytest.mark.parametrize("seed", range(4))
def test_trial_units_and_singles_are_the_numpy_ones(seed):
    """_parts' per-neutrino arithmetic (kernels.trials.trial_units, trial_singles,
    segment_any) against the NumPy it replaced, bit for bit, with zeros, -0.0,
    subnormals, infinities and NaN among B_i, d_1, dt and the S bounds."""
    rng = np.random.default_rng(seed)
    odd = [0.0, -0.0, 5e-324, np.inf, -np.inf, np.nan]
    n = 5000
    dt = np.where(rng.uniform(size=n) < 0.05, rng.choice(odd, n), rng.uniform(-600, 600, n))
    density, d_1 = _special(rng, n, odd), _special(rng, n, odd)
    half, rc, null, rn, tn = 250.0, 3.7e-13, 0.25, 1.3e9, 7.1e4
    for enough_num in (1e-20, 0.0, np.inf):
        with np.errstate(all="ignore"):
            t_i = KO.time_overlap(dt, half)
            p_c = rc * density
            den = p_c + p_c * null
            unit = rn * t_i * d_1 / tn / den
            enough = np.nan_to_num(np.where(unit > 0, enough_num / unit, np.inf), nan=0.0)
        got = KT.trial_units(dt, density, d_1, half, rc, null, rn, tn, enough_num)
        for g, w in zip(got, (unit, den, enough), strict=True):
            np.testing.assert_array_equal(g, w)
            assert np.array_equal(np.signbit(g), np.signbit(w))
    s_lo, s_hi = _special(rng, n, odd), _special(rng, n, odd)
    a_max = np.abs(_special(rng, n, odd))
    peak, floor, r = 37.5, 1e-12, 1e-4
    with np.errstate(all="ignore"):
        scale = peak * a_max
        k_lo = np.maximum(s_lo - floor * scale, 0.0) / (1.0 + 2.0 * r)
        k_hi = (s_hi + floor * scale) / (1.0 - 2.0 * r)
        want = (unit * k_lo, unit * k_hi, k_hi, ~(den > 0) | ~np.isfinite(unit * k_hi))
    got = KT.trial_singles(s_lo, s_hi, unit, den, a_max, peak, floor, 1.0 + 2.0 * r, 1.0 - 2.0 * r)  # fmt: skip
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
        assert np.array_equal(np.signbit(g), np.signbit(w))
    counts = rng.integers(0, 12, 900)
    off = np.r_[0, np.cumsum(counts)].astype(np.int64)
    flags = rng.uniform(size=int(off[-1])) < 0.02
    want_any = np.bincount(np.repeat(np.arange(counts.size), counts), weights=flags, minlength=counts.size) > 0  # fmt: skip
    np.testing.assert_array_equal(KT.segment_any(flags, off), want_any)
