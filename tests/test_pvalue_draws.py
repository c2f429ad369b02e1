"""Background lists as pvalue._background_draws draws them: the doubles of the plain
NumPy draws they replaced (rng.uniform, fancy indexing, dec clipped per neutrino),
seed for seed, so every trial and p-value is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.trials import offsets_from_counts
from llama.science import constants as C
from llama.science.background import BackgroundDensity
from llama.science.pvalue import _SIGMA_RANGE_DEG, _background_draws, background_sampler


def _reference(background, rng, m, rate_hz=C.NU_BACKGROUND_RATE_HZ):
    """The draws as written before (rng.uniform per column, gathers by fancy index)."""
    zen_pool, en_pool = background.zenith_sorted, background.energy_by_zenith
    counts = rng.poisson(rate_hz * 2.0 * C.SEARCH_HALF_WINDOW_S, m)
    n = int(counts.sum())
    pick = rng.integers(0, zen_pool.size, n)
    zen = zen_pool[pick]
    lo, hi = np.log(_SIGMA_RANGE_DEG[0]), np.log(_SIGMA_RANGE_DEG[1])
    lists = (
        rng.uniform(0.0, 360.0, n),
        np.clip(zen - 90.0, -90.0, 90.0),
        np.exp(rng.uniform(lo, hi, n)),
        en_pool[pick],
        rng.uniform(-C.SEARCH_HALF_WINDOW_S, C.SEARCH_HALF_WINDOW_S, n),
        zen,
        offsets_from_counts(counts),
    )
    return lists, pick


@pytest.mark.parametrize("rate", [C.NU_BACKGROUND_RATE_HZ, 0.05])
def test_draws_are_the_plain_numpy_draws(rate):
    """Lists of 0, 1, 7 and 2,000 trials, three chunks in a row from one generator (as
    run_trials draws them), 40 seeds: every array equal to the reference's, bit for bit
    (zeniths at 0 and 180 deg included, where dec is clipped)."""
    rng0 = np.random.default_rng(0)
    zen = np.sort(np.concatenate([[0.0, 180.0, 90.0], rng0.uniform(0.0, 180.0, 5000)]))
    sample = BackgroundDensity(zen, 10.0 ** rng0.uniform(2, 7, zen.size))
    draw = _background_draws(sample, rate)
    for seed in range(40):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        for m in (0, 1, 7, 2000):
            got, pick = draw(a, m)
            want, pick0 = _reference(sample, b, m, rate)
            np.testing.assert_array_equal(pick, pick0)
            for x, y in zip(got, want, strict=True):
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)
        assert a.random() == b.random()  # the generators left in the same state
    lists = background_sampler(sample, rate)(np.random.default_rng(3), 50)
    for x, y in zip(lists, _reference(sample, np.random.default_rng(3), 50, rate)[0], strict=True):
        np.testing.assert_array_equal(x, y)
