"""The background trials' cut kept per process and model constants: each event's cut
and d_1 are those of its own pass over the background sample, bit for bit."""

from __future__ import annotations

import math

import numpy as np

from llama.science import background_trials as BT
from llama.science.odds import EventModel
from llama.science.skymap import SkyMap
from llama.science.times import gps_to_mjd

T_GW_MJD = float(gps_to_mjd(1_240_215_503.0))


def _map() -> SkyMap:
    nside = 8
    rng = np.random.default_rng(3)
    p = rng.uniform(0.5, 1.5, 12 * nside**2)
    return SkyMap(probdensity=p / p.sum() / (4 * np.pi / p.size), nside=nside)


def _old_cut(bt):
    """BackgroundTrials._cut as each event computed it before the cut was kept."""
    from llama.science.fast_trials import RESOLVED_FLOORS, SCREEN_FLOOR
    from llama.science.pvalue import _sample_terms

    sample = bt.model.background
    terms = _sample_terms(bt.model, sample)
    a_max = bt.pool_row_max(sample, terms)
    d_1 = bt._sample_d1(sample)
    unit, _ = bt._units(np.zeros(a_max.size), sample.zenith_sorted, terms.density, d_1)
    q = unit * a_max
    q = q[np.isfinite(q)]
    top = float(q.max()) if q.size else 0.0
    return RESOLVED_FLOORS * SCREEN_FLOOR * bt.sky.peak * top, d_1


def test_kept_cut_is_each_models_own():
    """Models of one map with the same constants share the kept cut and d_1; other
    SNRs, distances and null options get their own: each the value its own pass over
    the sample gives, bit for bit."""
    BT._CUT_TOPS.clear()
    args = ([10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    seen = []
    for rho, rbar, kw in [
        (12.0, 150.0, {}),
        (12.0, 150.0, {}),
        (9.0, 150.0, {}),
        (12.0, 400.0, {}),
        (12.0, 150.0, {"null": "full", "p_terrestrial": 0.3}),
        (9.0, 150.0, {}),
    ]:
        bt = BT.BackgroundTrials(EventModel(_map(), rho, rbar, t_gw_mjd=T_GW_MJD, **kw), *args)
        cut, d_1 = _old_cut(bt)
        assert bt.cut == cut and math.isfinite(cut) and cut > 0
        assert np.array_equal(bt._sample_d1_now, d_1)
        seen.append(bt._sample_d1_now)
    assert seen[1] is seen[0] and seen[5] is seen[2]
    assert len(BT._CUT_TOPS[bt.model.background]) == 4


def test_rows_gathered_from_the_lists_are_the_looks_own():
    """The looks gather their a(ε) rows from the lists' (the sample's rows, taken by
    sample index) instead of computing them from the energies again: dec_rows is
    elementwise, so a gather of its rows is its value at the gathered energies, bit
    for bit, at every size (SIMD bodies and tails alike)."""
    from llama.science.pvalue import _sample_terms

    m = EventModel(_map(), 12.0, 150.0, t_gw_mjd=T_GW_MJD)
    energies = _sample_terms(m, m.background).energy_eval
    full = m.tables.dec_rows(energies)
    rng = np.random.default_rng(2)
    for size in [*range(1, 40), 257, 1000, 13_000]:
        at = rng.integers(0, energies.size, size)
        got = full.take(at, axis=0)
        want = m.tables.dec_rows(energies.take(at))
        assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
