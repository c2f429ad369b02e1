"""The refining looks' a(ε) rows gathered from the lists' rows: the same bits."""

from __future__ import annotations

import numpy as np

from llama.science.odds import EventModel
from llama.science.skymap import SkyMap
from llama.science.times import gps_to_mjd

T_GW_MJD = float(gps_to_mjd(1_240_215_503.0))


def _map() -> SkyMap:
    nside = 8
    rng = np.random.default_rng(3)
    p = rng.uniform(0.5, 1.5, 12 * nside**2)
    return SkyMap(probdensity=p / p.sum() / (4 * np.pi / p.size), nside=nside)


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
