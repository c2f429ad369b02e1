"""Significance (llama/science/pvalue.py): trials, background tables, ties, calibration.

The calibration tests use the real statistic and real kernels, with observed events
drawn by an independent generator (``llama.science.sim``: background lists and
neutrinos injected from the map), not by the trial sampler: a p-value test whose
observed event and trials come from the same sampler passes for any statistic. The
injection tests fail for a statistic blind to direction or time.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_odds import CENTER, T_GW, T_GW_MJD, moc_map, model, neutrinos

from llama.science.background_table import (
    build_background_table,
    read_background_table,
    table_pvalue,
)
from llama.science.neutrinos import NeutrinoList
from llama.science.pvalue import (
    DEFAULT_N_TRIALS,
    TIE_CONVENTION,
    pvalue_from_counts,
    randomised_pvalues,
    trial_pvalues,
)
from llama.science.sim import simulate_background_neutrinos, simulate_signal_neutrino


@pytest.fixture(scope="module")
def coarse_model():
    return model(moc_map(6, 15.0))


@pytest.fixture(scope="module")
def precise_model():
    return model(moc_map(8, 1.0))


def test_pvalue_convention():
    assert float(pvalue_from_counts(0, DEFAULT_N_TRIALS)) <= 1e-3
    np.testing.assert_allclose(pvalue_from_counts([0, 5, 9], 9), [0.1, 0.6, 1.0])


def test_background_table_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.exponential(size=1000)
    path = tmp_path / "bg_bns_H1L1.npz"
    info = build_background_table(values, "bns", "L1,H1", path)
    assert info == {
        "population": "bns",
        "instruments": "H1,L1",
        "n_events": 1000,
        "path": str(path),
    }
    table = read_background_table(path)
    assert np.all(np.diff(table["odds"]) >= 0) and table["n_events"] == 1000
    obs = np.array([0.0, 0.5, 3.0, 100.0])
    p, method = table_pvalue(obs, path, population="bns", instruments=["H1", "L1"], seed=4)
    # Randomised over ties: p in [K_> / (1 + N), (1 + K_>=) / (1 + N)], the upper end
    # (U = 1) recorded as p_value_upper.
    expected = (1 + np.array([(values >= x).sum() for x in obs])) / 1001
    np.testing.assert_allclose(method["p_value_upper"], expected)
    assert np.all((expected - 1 / 1001 <= p) & (p <= expected))
    assert method["method"] == "background_table" and method["n_background"] == 1000
    assert table_pvalue(0.5, path)[1]["p_value_upper"] == pytest.approx(expected[1], abs=0.0)
    with pytest.raises(ValueError):
        table_pvalue(1.0, path, population="bbh")
    with pytest.raises(ValueError):
        table_pvalue(1.0, path, instruments="H1,L1,V1")
    with pytest.raises(ValueError):
        build_background_table([np.nan], "bns", "H1", path)


def test_empty_list_gives_randomised_p_at_the_atom(coarse_model):
    empty = NeutrinoList(mjd=[], ra=[], dec=[], sigma=[], energy=[])
    obs = coarse_model.evaluate(empty, T_GW)
    res = trial_pvalues(coarse_model, obs, n_trials=50, kind="scramble", seed=1)
    # Every scrambled (empty) trial ties at 0: the conservative p is 1, the randomised
    # one is U.
    assert obs.odds == 0.0 and res.method["p_value_upper"] == 1.0
    assert res.method["n_equal"] == 50 and 0.0 < res.p_value <= 1.0
    assert res.p_values_neutrino.size == 0
    # background lists: the ones at odds 0 (empty, or far from the map) tie with it
    res = trial_pvalues(coarse_model, obs, n_trials=50, seed=1)
    assert res.method["p_value_upper"] == 1.0 and res.method["trial_kind"] == "background"
    assert res.method["n_greater"] + res.method["n_equal"] == 50


@pytest.mark.parametrize(("kind", "at_least"), [("background", 0.4), ("scramble", 0.3)])
def test_background_only_events_are_calibrated(coarse_model, kind, at_least):
    """Background lists from the simulation (not the trial sampler): P(p <= a) <= a
    within noise, and not uselessly conservative.

    Measured on these 80 lists (100 trials each, fast and exact paths alike): with the
    default background trials P(p <= 0.05, 0.1, 0.5) = 0.06, 0.125, 0.59 (KS p 0.43);
    with scrambles 0.01, 0.04, 0.35 (KS p 0.0016): scrambles are conservative here, so
    their floor is lower (the issue's P(p <= 0.5) >= 0.4 is asserted for the default).
    """
    rng = np.random.default_rng(2024)
    p = []
    for k in range(80):
        nl = simulate_background_neutrinos(rng, T_GW_MJD)
        obs = coarse_model.evaluate(nl, T_GW)
        p.append(trial_pvalues(coarse_model, obs, 100, kind=kind, seed=k).p_value)
    p = np.array(p)
    for a in (0.05, 0.1, 0.5):
        # binomial noise of 80 events: 3 sigma above a
        assert np.mean(p <= a) <= a + 3 * np.sqrt(a * (1 - a) / p.size), (a, np.mean(p <= a))
    assert np.mean(p <= 0.5) >= at_least  # ties at 0 randomised, not piled at p = 1
    assert stats.kstest(p, "uniform").pvalue > 1e-3


def test_injected_neutrinos_are_recovered(precise_model):
    """Neutrinos drawn from the map, smeared by their sigma, within +-250 s, on top of a
    background list: most get p < 0.05 (a direction- or time-blind statistic would not)."""
    rng = np.random.default_rng(7)
    skymap = precise_model.skymap
    p = []
    for k in range(12):
        nl = simulate_background_neutrinos(rng, T_GW_MJD).concatenate(
            simulate_signal_neutrino(rng, skymap, T_GW_MJD)
        )
        obs = precise_model.evaluate(nl, T_GW)
        p.append(trial_pvalues(precise_model, obs, 200, kind="scramble", seed=k).p_value)
    assert np.mean(np.array(p) < 0.05) >= 0.8, p


def test_injected_neutrino_p_values_and_method(precise_model):
    # Three background neutrinos plus one at the map's peak, 20 s after the merger.
    nl = neutrinos(
        [CENTER[0], 10.0, 200.0, 300.0],
        [CENTER[1], -30.0, 45.0, 5.0],
        [20.0, -300.0, 150.0, 400.0],
        sigma=[0.5, 1.0, 2.0, 0.7],
        energy=[2e4, 1e3, 3e4, 5e3],
    )
    obs = precise_model.evaluate(nl, T_GW)
    res = trial_pvalues(precise_model, obs, n_trials=300, kind="background", seed=5)
    assert res.p_value < 0.01
    assert res.p_values_neutrino[0] < 0.01
    assert np.all(res.p_values_neutrino[1:] > res.p_values_neutrino[0])
    assert res.method == {
        "method": "trials",
        "trial_kind": "background",
        "n_trials": 300,
        "n_trial_neutrinos": res.method["n_trial_neutrinos"],
        "seed": 5,
        "convention": TIE_CONVENTION,
        "p_value_upper": res.method["p_value_upper"],
        "n_greater": res.method["n_greater"],
        "n_equal": res.method["n_equal"],
        "p_values_neutrino_upper": res.method["p_values_neutrino_upper"],
        "statistic": "fast",
        "fast_path": "bounds",
        "screen_floor": 1e-12,
        "odds_ranked": res.method["odds_ranked"],
        "n_trials_evaluated": res.method["n_trials_evaluated"],
    }
    # a list near the map's peak is above the cut: ranked by its exact statistic
    assert res.method["odds_ranked"] == obs.odds
    assert res.p_value <= res.method["p_value_upper"] < 0.01
    rows = obs.triggers(res.p_values_neutrino)
    assert [r["p_value"] for r in rows] == res.p_values_neutrino.tolist()
    fast = trial_pvalues(precise_model, obs, n_trials=300, kind="scramble", seed=6)
    assert fast.p_value < 0.01 and fast.method["fast_path"] == "ra_lookup"
    scr = trial_pvalues(precise_model, obs, n_trials=300, kind="scramble", seed=6, method="exact")
    assert scr.p_value < 0.01 and scr.method["trial_kind"] == "scramble"
    assert scr.trial_odds.size == 300 and scr.method["statistic"] == "exact"
    # the same 300 scrambles: the RA lookup's statistics are the exact ones, to 1%
    # (far below the map's scale, 1e-12 of the largest, no relative accuracy is claimed)
    floor = 1e-12 * scr.trial_odds.max()
    np.testing.assert_allclose(fast.trial_odds, scr.trial_odds, rtol=1e-2, atol=floor)
    # per-neutrino p-values: each O_i against the trials' event statistics
    o = np.sort(scr.trial_odds)
    k_ge = o.size - np.searchsorted(o, obs.odds_ratio, side="left")
    np.testing.assert_allclose(scr.method["p_values_neutrino_upper"], (1 + k_ge) / (1 + o.size))


def test_randomised_pvalue_formula():
    # Background 0, 0, 0, 2 (N = 4): at 0, K_> = 1 and K_= = 3; at 1, K_> = 1, K_= = 0.
    r = randomised_pvalues([0.0, 0.0, 0.0, 2.0], [0.0, 1.0, 3.0], [0.25, 0.25, 1.0])
    np.testing.assert_allclose(r["p"], [(1 + 0.25 * 4) / 5, (1 + 0.25) / 5, 1 / 5])
    np.testing.assert_allclose(r["p_upper"], pvalue_from_counts([4, 1, 0], 4))
    assert np.isnan(randomised_pvalues([1.0], [np.nan], [0.5])["p"][0])


class _AtomModel:
    """Stand-in for EventModel: a neutrino's O_i is 0 unless its RA is above 216 deg
    (60% of lists' neutrinos tie at 0), else (RA - 216) deg; O = sum of the O_i."""

    def evaluate_batch(self, ra, dec, sigma, energy, dt, zen, offsets, **_background):
        odds_i = np.where(ra > 216.0, ra - 216.0, 0.0)
        odds = np.add.reduceat(np.append(odds_i, 0.0), offsets[:-1]) * (np.diff(offsets) > 0)

        class Batch:
            pass

        batch = Batch()
        batch.odds, batch.odds_i = odds, odds_i
        return batch


def _one_neutrino_lists(rng, m):
    """m lists of one neutrino each: with O = O_i, event and neutrino nulls coincide."""
    n = np.ones(m, dtype=int)
    zeros = np.zeros(m)
    return (rng.uniform(0, 360, m), zeros, zeros + 1, zeros + 1e3, zeros, zeros + 90,
            np.concatenate([[0], np.cumsum(n)]))  # fmt: skip


def test_trial_ties_randomised_uniform_conservative_not():
    """Under the null with an atom at 0, randomised p-values are uniform, U = 1 not."""
    rng = np.random.default_rng(77)
    p, upper, p_nu = [], [], []
    for k in range(600):
        ra, *_ = _one_neutrino_lists(rng, 1)
        odds_i = np.where(ra > 216.0, ra - 216.0, 0.0)

        class Observed:
            pass

        obs = Observed()
        obs.odds, obs.odds_ratio = float(odds_i[0]), odds_i
        res = trial_pvalues(_AtomModel(), obs, n_trials=100, seed=k, sampler=_one_neutrino_lists)
        p.append(res.p_value)
        upper.append(res.method["p_value_upper"])
        p_nu.append(res.p_values_neutrino[0])
        assert res.p_value <= res.method["p_value_upper"]
    # Threshold: KS p-value > 1e-3 (a correct method fails about once in 1000 seeds; the
    # seed is fixed). The conservative values pile 60% of events near p = 1: KS < 1e-20.
    assert stats.kstest(p, "uniform").pvalue > 1e-3
    assert stats.kstest(p_nu, "uniform").pvalue > 1e-3
    assert stats.kstest(upper, "uniform").pvalue < 1e-20
    # The same in bins: chi-square of 10 equal bins, 9 dof, 0.1% critical value 27.9.
    counts = np.histogram(p, bins=10, range=(0, 1))[0]
    assert stats.chisquare(counts).statistic < 27.9
    counts = np.histogram(upper, bins=10, range=(0, 1))[0]
    assert stats.chisquare(counts).statistic > 27.9
