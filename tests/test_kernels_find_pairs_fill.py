"""kernels.odds.find_pairs, its fill pass only over the lists the count found pairs
in, against the plain count-then-fill passes: the same pairs in the same order."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import kernels.odds as K


@njit(cache=False)
def _two_passes(lon, lat, sigma, offsets, n_sigma, mode):
    count = 0
    for m in range(offsets.shape[0] - 1):
        for i in range(offsets[m], offsets[m + 1]):
            for j in range(i + 1, offsets[m + 1]):
                d = K._separation(lon[i], lat[i], lon[j], lat[j], mode)
                if d < n_sigma * (sigma[i] + sigma[j]):
                    count += 1
    pair_i = np.empty(count, dtype=np.int64)
    pair_j = np.empty(count, dtype=np.int64)
    p = 0
    for m in range(offsets.shape[0] - 1):
        for i in range(offsets[m], offsets[m + 1]):
            for j in range(i + 1, offsets[m + 1]):
                d = K._separation(lon[i], lat[i], lon[j], lat[j], mode)
                if d < n_sigma * (sigma[i] + sigma[j]):
                    pair_i[p] = i
                    pair_j[p] = j
                    p += 1
    return pair_i, pair_j


@pytest.mark.parametrize("mode", [K.PAIR_GREAT_CIRCLE, K.PAIR_O3_FLAT])
@pytest.mark.parametrize("seed", range(3))
def test_one_pass_gives_the_two_passes_pairs_in_order(mode, seed):
    """Poisson(6.4) lists over the sky (few with pairs), one crowded list near the
    pole (many), empty lists, and no list at all."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(6.4, 2000)
    counts[rng.integers(counts.size, size=20)] = 0
    counts[7] = 400
    n = int(counts.sum())
    off = np.r_[0, np.cumsum(counts)].astype(np.int64)
    lon = rng.uniform(0, 2 * np.pi, n)
    lat = np.arcsin(rng.uniform(-1, 1, n))
    lat[off[7] : off[8]] = np.radians(rng.uniform(80, 90, 400))  # the crowded list
    sigma = np.radians(np.exp(rng.uniform(np.log(0.2), np.log(3.0), n)))
    got = K.find_pairs(lon, lat, sigma, off, 5.0, mode)
    want = _two_passes(lon, lat, sigma, off, 5.0, mode)
    assert got[0].size > 1000  # the crowded list's
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.int64 and g.flags.c_contiguous
        np.testing.assert_array_equal(g, w)
    empty = K.find_pairs(lon[:0], lat[:0], sigma[:0], np.zeros(1, np.int64), 5.0, mode)
    assert empty[0].size == empty[1].size == 0
