"""Significance (llama/science/pvalue.py): trials, background tables, uniformity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_odds import (
    AEFF,
    CENTER,
    LOG10E_EDGES,
    SINDEC_EDGES,
    T_GW,
    flat_map,
    moc_map,
    model,
    neutrinos,
)

from llama.science.neutrinos import NeutrinoList
from llama.science.pvalue import (
    DEFAULT_N_TRIALS,
    TIE_CONVENTION,
    background_sampler,
    build_background_table,
    pvalue_from_counts,
    randomised_pvalues,
    read_background_table,
    table_pvalue,
    trial_pvalues,
)


def _aeff(energy, dec):
    ie = np.clip(
        np.searchsorted(LOG10E_EDGES, np.log10(energy), side="right") - 1, 0, AEFF.shape[0] - 1
    )
    js = np.clip(np.searchsorted(SINDEC_EDGES, np.sin(dec), side="right") - 1, 0, AEFF.shape[1] - 1)
    return AEFF[ie, js]


def _blob(ra, dec, var, center, sigma_map):
    """Flat-sky Gaussian convolution of the map blob with a PSF of variance ``var``."""
    ra0, dec0 = np.radians(center)
    cos_psi = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0)
    psi2 = np.arccos(np.clip(cos_psi, -1, 1)) ** 2
    s2 = np.radians(sigma_map) ** 2 + var
    return np.exp(-psi2 / (2 * s2)) / (2 * np.pi * s2)


def fast_model(sigma_map, center=CENTER):
    """An EventModel whose overlaps are analytic (a private stand-in for the kernels).

    These tests check the trial machinery and the p-value conventions; the heavy
    overlap kernels have their own tests, and test_injected_neutrino_real_kernels
    runs them end to end.
    """
    m = model(flat_map(3, sigma_map, center).to_moc())

    def overlap(ra, dec, sigma, energy):
        ov = _blob(ra, dec, sigma**2, center, sigma_map)
        return ov, ov * _aeff(energy, dec)

    def pair(ra, dec, sigma, energy, pi, pj):
        vi, vj = sigma[pi] ** 2, sigma[pj] ** 2
        cos_psi = np.sin(dec[pi]) * np.sin(dec[pj]) + np.cos(dec[pi]) * np.cos(dec[pj]) * np.cos(
            ra[pi] - ra[pj]
        )
        psi2 = np.arccos(np.clip(cos_psi, -1, 1)) ** 2
        g = np.exp(-psi2 / (2 * (vi + vj))) / (2 * np.pi * (vi + vj))
        w = vj / (vi + vj)  # the product of the PSFs peaks between the two (small angles)
        ra_c, dec_c = ra[pi] + w * (ra[pj] - ra[pi]), dec[pi] + w * (dec[pj] - dec[pi])
        prod = g * _blob(ra_c, dec_c, vi * vj / (vi + vj), center, sigma_map)
        return prod * _aeff(energy[pi], dec[pi]) * _aeff(energy[pj], dec[pj])

    m._psf_overlap = overlap
    m._pair_overlap = pair
    return m


@pytest.fixture(scope="module")
def coarse_model():
    # A wide map: every neutrino has a non-zero overlap, so the statistic has no ties
    # at 0 and the null p-values can be tested for uniformity.
    return fast_model(20.0)


@pytest.fixture(scope="module")
def precise_model():
    return fast_model(1.0)


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
    assert table_pvalue(0.5, path)[1]["p_value_upper"] == pytest.approx(expected[1])
    with pytest.raises(ValueError):
        table_pvalue(1.0, path, population="bbh")
    with pytest.raises(ValueError):
        table_pvalue(1.0, path, instruments="H1,L1,V1")
    with pytest.raises(ValueError):
        build_background_table([np.nan], "bns", "H1", path)


def test_empty_list_has_p_value_one(coarse_model):
    empty = NeutrinoList(mjd=[], ra=[], dec=[], sigma=[], energy=[])
    obs = coarse_model.evaluate(empty, T_GW)
    res = trial_pvalues(coarse_model, obs, n_trials=50, seed=1)
    # Every trial ties at 0: the conservative p is 1, the randomised one is U.
    assert obs.odds == 0.0 and res.method["p_value_upper"] == 1.0
    assert res.method["n_equal"] == 50 and 0.0 < res.p_value <= 1.0
    assert res.p_values_neutrino.size == 0
    res = trial_pvalues(coarse_model, obs, n_trials=50, kind="background", seed=1)
    assert res.method["p_value_upper"] == 1.0


def _observed_background_event(m, rng):
    """One background-only event: a Poisson list from the same null as the trials."""
    ra, dec, sig, en, dt, zen, off = background_sampler(m.background)(rng, 1)
    batch = m.evaluate_batch(ra, dec, sig, en, dt, zen, off)

    class Observed:  # the fields trial_pvalues reads
        pass

    obs = Observed()
    obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, obs.zenith = ra, dec, sig, en, dt, zen
    obs.odds, obs.odds_ratio = float(batch.odds[0]), batch.odds_i
    return obs


@pytest.mark.parametrize("kind", ["background", "scramble"])
def test_background_only_p_values_are_uniform(coarse_model, kind):
    rng = np.random.default_rng(2024)
    n_events, n_trials = 120, 200
    p = []
    for k in range(n_events):
        obs = _observed_background_event(coarse_model, rng)
        if kind == "scramble" and obs.ra.size == 0:
            continue  # nothing to scramble: p = 1 by construction, not a test of uniformity
        p.append(trial_pvalues(coarse_model, obs, n_trials, kind=kind, seed=k).p_value)
    # (1 + K) / (1 + M) is discrete; its KS distance to U(0, 1) is at most 1 / (1 + M).
    ks = stats.kstest(np.array(p), "uniform")
    assert ks.pvalue > 0.01, (kind, ks)


def test_injected_neutrino_is_significant(precise_model):
    # Three background neutrinos plus one at the map's peak, 20 s after the merger.
    nl = neutrinos(
        [CENTER[0], 10.0, 200.0, 300.0],
        [CENTER[1], -30.0, 45.0, 5.0],
        [20.0, -300.0, 150.0, 400.0],
        sigma=[0.5, 1.0, 2.0, 0.7],
        energy=[2e4, 1e3, 3e4, 5e3],
    )
    obs = precise_model.evaluate(nl, T_GW)
    res = trial_pvalues(precise_model, obs, n_trials=1000, kind="background", seed=5)
    assert res.p_value < 0.01
    assert res.p_values_neutrino[0] < 0.01
    assert np.all(res.p_values_neutrino[1:] > res.p_values_neutrino[0])
    assert res.method == {
        "method": "trials",
        "trial_kind": "background",
        "n_trials": 1000,
        "n_trial_neutrinos": res.method["n_trial_neutrinos"],
        "seed": 5,
        "convention": TIE_CONVENTION,
        "p_value_upper": res.method["p_value_upper"],
        "n_greater": res.method["n_greater"],
        "n_equal": res.method["n_equal"],
        "p_values_neutrino_upper": res.method["p_values_neutrino_upper"],
    }
    assert res.p_value <= res.method["p_value_upper"] < 0.01
    rows = obs.triggers(res.p_values_neutrino)
    assert [r["p_value"] for r in rows] == res.p_values_neutrino.tolist()
    assert obs.combined(res.p_value, res.method)["p_value_method"]["n_trials"] == 1000
    scr = trial_pvalues(precise_model, obs, n_trials=500, kind="scramble", seed=6)
    assert scr.p_value < 0.01 and scr.method["trial_kind"] == "scramble"
    assert scr.trial_odds.size == 500


def test_injected_neutrino_real_kernels():
    # Small trial count: the overlap kernels cost milliseconds per neutrino (see the bench).
    m = model(moc_map(7, 1.0))
    nl = neutrinos([CENTER[0], 250.0], [CENTER[1], -20.0], [10.0, -200.0], sigma=[0.4, 1.0])
    obs = m.evaluate(nl, T_GW)
    res = trial_pvalues(m, obs, n_trials=100, kind="scramble", seed=3)
    assert res.method["p_value_upper"] == pytest.approx(1 / 101)  # no scrambled list beats it
    assert 0 < res.p_value <= 1 / 101
    assert res.p_values_neutrino[0] < res.p_values_neutrino[1]


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
