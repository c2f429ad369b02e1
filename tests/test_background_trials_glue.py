"""Helpers of BackgroundTrials._refine's rounds against the plain NumPy they replaced."""

from __future__ import annotations

import numpy as np
import pytest

from llama.science.background_trials import _widest


def _lexsort_widest(width, seg):
    order = np.lexsort((-width, seg))
    first = np.r_[0, np.flatnonzero(np.diff(seg[order])) + 1] if order.size else order
    return order[first]


@pytest.mark.parametrize("seed", range(6))
def test_widest_is_the_first_of_each_segments_lexsort(seed):
    """Segments of 1-30 entries, widths with many ties (small integers, 0.0 and -0.0,
    the closed singles' -1): each segment's pick is the lexsort's, index for index."""
    rng = np.random.default_rng(seed)
    for case in range(200):
        counts = rng.integers(1, 30, rng.integers(1, 60))
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
        seg = np.repeat(np.arange(counts.size), counts)
        n = int(offsets[-1])
        width = rng.integers(-1, 4, n).astype(np.float64)
        width[rng.uniform(size=n) < 0.1] = -0.0
        if case % 2:
            width = np.where(width > 0, rng.uniform(0, 1e-9, n), width)
        np.testing.assert_array_equal(_widest(width, seg, offsets), _lexsort_widest(width, seg))
    empty = np.zeros(0)
    assert _widest(empty, np.zeros(0, np.int64), np.zeros(1, np.int64)).size == 0


@pytest.mark.parametrize("where", [0, 1, 2])
def test_widest_refuses_an_empty_segment_or_a_nan(where):
    """What _refine never gives it (every trial has a neutrino, bounds are finite):
    refused, not a segment silently without its pick."""
    counts = np.array([3, 2, 4])
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    seg = np.repeat(np.arange(3), counts)
    width = np.arange(9.0)
    width[offsets[where]] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _widest(width, seg, offsets)
    counts[where] = 0
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    seg = np.repeat(np.arange(3), counts)
    width = np.arange(float(offsets[-1]))
    with pytest.raises((ValueError, IndexError)):
        _widest(width, seg, offsets)
