"""O3's sub-threshold statistic (llama/science/subthreshold.py) against the specification.

Two kinds of checks: term by term against the independent reference of
``tests/o3_reference.py`` (plain numpy on flattened maps, written from SCIENCE.md
alone), and analytic pieces derived here by hand (J_i and the cWB distance integral
against closed forms and scipy's dblquad, g, π_N, N = 0, p_terr = 0, the carried
background windows).
"""

from __future__ import annotations

import math

import numpy as np
import o3_reference as ref
import pytest
from scipy import integrate
from scipy.special import erfc
from test_odds import BACKGROUND, T_GW, T_GW_MJD, flat_map, moc_map, neutrinos

from llama.science import constants as C
from llama.science.background_table import (
    make_background_table,
    table_significance,
    write_background_table,
)
from llama.science.gw_null import (
    SYNTHETIC_SNR_LIST,
    g_factor,
    horizon_volume_mpc3,
    null_gw_density,
    r0_mpc,
    read_snr_list,
    write_synthetic_snr_list,
)
from llama.science.subthreshold import (
    SubthresholdModel,
    background_count_prior,
    distance_count_integral,
    subthreshold_table_pvalue,
    subthreshold_trial_pvalue,
)

SNR = read_snr_list()
RHO, RBAR, P_TERR = 9.0, 300.0, 0.7
ORDER = 7  # nside 128: pixels of 0.46 deg resolve the neutrinos' sigma >= 1 deg


def model(skymap, pipeline="gstlal", p_terrestrial=P_TERR, **kw) -> SubthresholdModel:
    kw.setdefault("t_gw_mjd", T_GW_MJD)
    kw.setdefault("background", BACKGROUND)
    kw.setdefault("snr_list", SNR)
    return SubthresholdModel(skymap, RHO, RBAR, p_terrestrial, pipeline, **kw)


def reference(skymap, nus, pipeline="gstlal", p_terrestrial=P_TERR) -> dict:
    lists = {k: np.asarray(getattr(nus, k)) for k in ("mjd", "ra", "dec", "sigma", "energy")}
    nside = int(round(math.sqrt(skymap.probability().size / 12)))
    return ref.subthreshold_reference(
        skymap.probability(), nside, lists, T_GW_MJD, RHO, RBAR, p_terrestrial, SNR,
        BACKGROUND.zenith_sorted, BACKGROUND.energy_by_zenith, pipeline=pipeline,
    )  # fmt: skip


# lists: none, one at the blob, several (one far off, one outside the 500 s window)
LISTS = {
    "empty": ([], [], [], 1.0, 1e4),
    "one": ([121.0], [21.0], [10.0], 1.0, 2e4),
    "several": (
        [121.0, 118.0, 200.0, 119.5],
        [21.0, 18.5, -40.0, 20.0],
        [10.0, -120.0, 240.0, 30.0],
        [1.0, 2.0, 1.5, 1.2],
        [1e4, 3e3, 1e5, 5e5],
    ),
    "outside_window": ([121.0, 119.0], [21.0, 20.5], [600.0, -10.0], 1.5, [3e4, 2e3]),
}
MAPS = {
    "blob_north": ((120.0, 20.0), 4.0),
    "blob_south": ((121.0, -25.0), 2.5),  # up-going: other a(eps, theta) bands and w
}


@pytest.fixture(scope="module")
def skymaps():
    return {name: flat_map(ORDER, width, center) for name, (center, width) in MAPS.items()}


def _shift(lst, center):
    """The list moved with the map so its neutrinos stay near the blob."""
    ra, dec, dt, sigma, energy = lst
    d_ra, d_dec = center[0] - 120.0, center[1] - 20.0
    ra = np.asarray(ra, dtype=float) + d_ra
    dec = np.clip(np.asarray(dec, dtype=float) + d_dec, -89.0, 89.0)
    return neutrinos(ra, dec, dt, sigma, energy)


@pytest.mark.parametrize("pipeline", ["gstlal", "cwb"])
@pytest.mark.parametrize("list_name", list(LISTS))
@pytest.mark.parametrize("map_name", list(MAPS))
def test_terms_match_the_independent_reference(skymaps, map_name, list_name, pipeline):
    sky = skymaps[map_name]
    nus = _shift(LISTS[list_name], MAPS[map_name][0])
    got = model(sky, pipeline).evaluate(nus, T_GW)
    want = reference(sky, nus, pipeline)
    assert got.n == want["n"] == len(nus)
    for name in ("p_h_s1", "p_h_c", "p_h_0", "odds_ratio"):
        assert getattr(got, name) == pytest.approx(want[name], rel=0.05, abs=0.0), name
    assert got.p_h_s2 == 0.0
    if len(nus):
        np.testing.assert_allclose(got.terms["b_density"], want["b_density"], rtol=1e-12)
        np.testing.assert_allclose(got.terms["i_int"], want["i_int"], rtol=1e-8)
        np.testing.assert_allclose(got.terms["j_int"], want["j_int"], rtol=1e-8)
        # the only intended difference: exact PSF integrals in place of centre values
        assert got.parts["f"] == pytest.approx(want["f"], rel=0.01, abs=0.0)
        assert got.parts["w"] == pytest.approx(want["w"], rel=0.01, abs=0.0)
    if list_name != "empty":
        assert got.odds_ratio > 0


def test_a_multi_order_map_gives_the_flat_maps_numbers():
    nus = _shift(LISTS["several"], (120.0, 20.0))
    flat = model(flat_map(9, 3.0)).evaluate(nus, T_GW)
    moc = model(moc_map(9, 3.0)).evaluate(nus, T_GW)
    assert moc.odds_ratio == pytest.approx(flat.odds_ratio, rel=0.02, abs=0.0)


# --- analytic pieces ----------------------------------------------------------------------


def _closed_distance_integrals(w: float) -> tuple[float, float]:
    """(J, ∫₀^r0 I(d) dd) in closed form: with c = n0·10·w·(100 Mpc)²·E and
    H(c) = ∫₀^R e^{-c/d²} dd = R e^{-c/R²} − sqrt(π c) erfc(sqrt(c)/R),
    F(c) = ∫₀^R d² e^{-c/d²} dd = R³/3 e^{-c/R²} − (2c/3) H(c) (integration by parts)."""
    r = r0_mpc()
    log_nu = math.log(C.E_NU_MAX / C.E_NU_MIN)

    def h(c):
        return r * math.exp(-c / r**2) - math.sqrt(math.pi * c) * erfc(math.sqrt(c) / r)

    def f(c):
        return r**3 / 3.0 * math.exp(-c / r**2) - 2.0 * c / 3.0 * h(c)

    beta = C.N0 * 10.0 * w * C.R_REF_MPC**2
    lo, hi = beta * C.E_NU_MIN, beta * C.E_NU_MAX
    return (f(lo) - f(hi)) / log_nu, (h(lo) - h(hi)) / log_nu


@pytest.mark.parametrize("w", [0.064912, 1.0, 2.66636028])
def test_distance_integrals_match_closed_forms(w):
    j, i0 = _closed_distance_integrals(w)
    assert distance_count_integral(w, 2) == pytest.approx(j, rel=1e-10, abs=0.0)
    assert distance_count_integral(w, 0) == pytest.approx(i0, rel=1e-10, abs=0.0)


def test_j_matches_a_double_quadrature():
    """J = ∫₀^r0 ∫ Poisson(1; ⟨n(E, d)⟩ w) P(E) d² dE dd with dblquad, in u = ln E."""
    w = 1.7
    log_nu = math.log(C.E_NU_MAX / C.E_NU_MIN)

    def integrand(u, d):  # dE P(E) = du / ln(E⁺/E⁻)
        lam = C.N0 * 10.0 * math.exp(u) * (d / C.R_REF_MPC) ** -2 * w if d > 0 else math.inf
        return d * d * lam * math.exp(-lam) / log_nu if math.isfinite(lam) else 0.0

    value, err = integrate.dblquad(
        integrand, 0.0, r0_mpc(), math.log(C.E_NU_MIN), math.log(C.E_NU_MAX),
        epsabs=0.0, epsrel=1e-10,
    )  # fmt: skip
    assert distance_count_integral(w) == pytest.approx(value, rel=1e-8, abs=0.0)


def test_g_and_the_cwb_branch_by_hand():
    sky = flat_map(5, 10.0)
    log_gw = math.log(C.E_GW_MAX / C.E_GW_MIN)
    e_gw = (RBAR * RHO / C.K0) ** 2
    g = RBAR / (e_gw * log_gw) * (C.E_GW_MAX - C.E_GW_MIN) * C.K0**2 / RHO**2
    m = model(sky)
    assert m.g == pytest.approx(g, rel=1e-12, abs=0.0) and m.gw_chance == m.g
    assert g_factor(RHO, 2 * RBAR) == pytest.approx(g / 2, rel=1e-12, abs=0.0)  # g ∝ 1/r̄
    cwb = model(sky, "CWB")
    assert cwb.g == 1.0 and cwb.rbar == 1.0
    assert cwb.gw_chance == pytest.approx(
        C.K0**2 * r0_mpc() / (RHO**2 * log_gw), rel=1e-12, abs=0.0
    )
    # cWB's I: k0²/(ρ² ln(E⁺/E⁻)) ∫₀^r0 I(d) dd, independent of r̄
    i_cwb, _ = cwb.count_integrals(np.array([1.0]))
    assert i_cwb[0] == pytest.approx(C.K0**2 / (RHO**2 * log_gw) * _closed_distance_integrals(1.0)[1], rel=1e-10, abs=0.0)  # fmt: skip


def test_shipped_snr_list_is_labelled_synthetic_and_reproducible(tmp_path):
    """The file says what it is to whoever opens it, and is what its recipe draws."""
    head = SYNTHETIC_SNR_LIST.read_text().splitlines()[:4]
    assert head[0].startswith("# SYNTHETIC") and "NOT O3's list" in head[0]
    assert all(line.startswith("#") for line in head)
    again = tmp_path / "snr.txt"
    write_synthetic_snr_list(again)
    assert again.read_text() == SYNTHETIC_SNR_LIST.read_text()
    # The recipe's tail: rho^2 - rho_min^2 ~ 2 Exponential(1), mean 2 (error 0.045 for 2000).
    assert SNR.size == 2000 and SNR.min() > C.RHO_MIN
    assert np.mean(SNR**2 - C.RHO_MIN**2) == pytest.approx(2.0, abs=0.15)
    # A user's list: comments and blank lines skipped; anything else is one clear error.
    mine = tmp_path / "mine.txt"
    mine.write_text("# my pipeline's noise triggers\n6.0\n\n7.5\n  # note\n9.0\n")
    assert read_snr_list(mine).tolist() == [6.0, 7.5, 9.0]
    mine.write_text("6.0\nseven\n")
    with pytest.raises(ValueError, match="one number per line expected"):
        read_snr_list(mine)
    with pytest.raises(ValueError, match="cannot read it"):
        read_snr_list(tmp_path / "missing.txt")


def test_background_count_prior_is_poisson_of_mean_3_2():
    k = np.arange(8)
    want = [3.2**j * math.exp(-3.2) / math.factorial(j) for j in k]
    np.testing.assert_allclose(background_count_prior(k), want, rtol=1e-13)
    assert background_count_prior(2) == pytest.approx(want[2], rel=1e-13, abs=0.0)


def test_empty_list_has_zero_odds_and_the_formulas_terms():
    m = model(flat_map(5, 10.0))
    r = m.evaluate(neutrinos([], [], []), T_GW)
    pi0 = math.exp(-3.2)
    p_h0 = null_gw_density(RHO, P_TERR, SNR)
    assert r.odds_ratio == 0.0 and r.p_h_s1 == 0.0 and r.n == 0
    assert r.p_h_c == pytest.approx(C.NDOT_MPC3_S * m.g * pi0, rel=1e-12, abs=0.0)
    assert r.p_h_0 == pytest.approx(p_h0 * pi0 / horizon_volume_mpc3(), rel=1e-12, abs=0.0)


def test_without_p_terrestrial_only_the_real_gw_chance_term_is_left():
    sky = flat_map(ORDER, 4.0)
    nus = _shift(LISTS["several"], (120.0, 20.0))
    r = model(sky, p_terrestrial=0.0).evaluate(nus, T_GW)
    assert r.p_h_0 == 0.0
    assert r.p_h_c == pytest.approx(C.NDOT_MPC3_S * r.parts["g"] * background_count_prior(4), rel=1e-12, abs=0.0)  # fmt: skip
    assert r.odds_ratio == pytest.approx(r.p_h_s1 / r.p_h_c, rel=1e-12, abs=0.0)
    # and the signal term does not depend on p_terr at all
    assert model(sky).evaluate(nus, T_GW).p_h_s1 == r.p_h_s1


def test_signal_term_by_hand():
    """P_s = ṅ π_N(N−1) g Σ T_i I_i S_i / B_i / (500 s)², from the reported pieces."""
    sky = flat_map(ORDER, 4.0)
    nus = _shift(LISTS["several"], (120.0, 20.0))
    r = model(sky).evaluate(nus, T_GW)
    t = r.terms
    np.testing.assert_allclose(t["time_overlap"], [490.0, 380.0, 260.0, 470.0], rtol=1e-8)
    f = r.parts["g"] * np.sum(t["time_overlap"] * t["i_int"] * t["signal_overlap"] / t["b_density"])  # fmt: skip
    assert r.p_h_s1 == pytest.approx(C.NDOT_MPC3_S * background_count_prior(3) * f / 500.0**2, rel=1e-12, abs=0.0)  # fmt: skip
    w = np.sum(t["j_int"] * t["psf_energy_average"] / t["b_density"])
    p_c = C.NDOT_MPC3_S * (r.parts["g"] * background_count_prior(4) + r.parts["p_gw_h0"] * background_count_prior(3) * w)  # fmt: skip
    assert r.p_h_c == pytest.approx(p_c, rel=1e-12, abs=0.0)
    # no 1/f_b: ten times what the OPA convention (ṅ / f_b) would give
    assert r.p_h_s1 > 9.99 * C.NDOT_MPC3_S / C.BEAMING_FACTOR * background_count_prior(3) * f / 500.0**2  # fmt: skip


def test_neutrino_outside_the_window_counts_in_n_but_not_in_f():
    sky = flat_map(ORDER, 4.0)
    m = model(sky)
    alone = m.evaluate(neutrinos([121.0], [21.0], [10.0], 1.0, 2e4), T_GW)
    # the late neutrino comes second, so the first one's background is untouched
    both = m.evaluate(neutrinos([121.0, 121.0], [21.0, 21.0], [10.0, 700.0], 1.0, 2e4), T_GW)
    assert both.n == 2 and both.terms["time_overlap"][1] == 0.0
    assert both.parts["f"] == pytest.approx(alone.parts["f"], rel=1e-12, abs=0.0)
    assert both.parts["w"] > alone.parts["w"]  # it still enters W
    assert both.odds_ratio != pytest.approx(alone.odds_ratio, rel=1e-3, abs=0.0)


def test_widened_windows_carry_over_to_later_neutrinos():
    """A neutrino after one whose background windows widened gets another B."""
    sky = flat_map(ORDER, 4.0)
    m = model(sky)
    x = (121.0, 21.0, 10.0, 1.0, 2e4)
    # 1e9 GeV down-going: no sample event near it, its windows widen several times
    rare = (100.0, 60.0, -50.0, 1.0, 1e9)
    alone = m.evaluate(neutrinos(*x), T_GW)
    after = m.evaluate(neutrinos(*[[a, b] for a, b in zip(rare, x, strict=True)]), T_GW)
    before = m.evaluate(neutrinos(*[[b, a] for a, b in zip(rare, x, strict=True)]), T_GW)
    b_alone = alone.terms["b_density"][0]
    primary = BACKGROUND.o3_primary(alone.terms["zenith"], [2e4])
    assert b_alone == primary.density[0]  # the first of a list starts from 2.5 deg, 0.3
    assert before.terms["b_density"][0] == b_alone
    assert after.terms["b_density"][1] != pytest.approx(b_alone, rel=0.01, abs=0.0)
    assert after.odds_ratio != pytest.approx(before.odds_ratio, rel=0.01, abs=0.0)


def test_batch_of_lists_equals_each_list_alone():
    sky = flat_map(ORDER, 4.0)
    m = model(sky)
    lists = [_shift(LISTS[k], (120.0, 20.0)) for k in ("several", "empty", "one", "outside_window")]
    singles = [m.evaluate(nus, T_GW) for nus in lists]
    cat = {k: np.concatenate([np.asarray(getattr(n, k), dtype=float) for n in lists]) for k in ("ra", "dec", "sigma", "energy")}  # fmt: skip
    dt = np.concatenate([s.terms["dt"] for s in singles])
    zen = np.concatenate([s.terms["zenith"] for s in singles])
    offsets = np.concatenate([[0], np.cumsum([len(n) for n in lists])])
    batch = m.evaluate_batch(cat["ra"], cat["dec"], cat["sigma"], cat["energy"], dt, zen, offsets)
    np.testing.assert_allclose(batch.odds, [s.odds_ratio for s in singles], rtol=1e-12)
    np.testing.assert_allclose(batch.p_h_c, [s.p_h_c for s in singles], rtol=1e-12)


# --- p-values -----------------------------------------------------------------------------


def test_trials_find_a_coincidence_and_not_a_neutrino_far_from_the_map():
    sky = flat_map(ORDER, 2.0)
    m = model(sky)

    def p_value(ra, dec, kind):
        nus = neutrinos([ra, 300.0], [dec, -60.0], [5.0, -200.0], 1.0, [3e4, 2e3])
        r = m.evaluate(nus, T_GW)
        t = r.terms
        trials = subthreshold_trial_pvalue(
            m, nus.ra, nus.dec, nus.sigma, nus.energy, t["dt"], t["zenith"], r.odds_ratio,
            n_trials=400, kind=kind, seed=11,
        )  # fmt: skip
        assert trials.trial_odds.size == 400 and trials.method["trial_kind"] == kind
        return trials.p_value

    assert p_value(120.0, 20.0, "scramble") < 0.01  # at the map's peak
    assert p_value(300.0, 20.0, "scramble") > 0.1  # 180 deg away in RA
    assert p_value(120.0, 20.0, "background") < 0.01


def test_sequential_trials_stop_where_h_trials_reach_the_observed_odds():
    """stop_after=h: p = h / L, L the trial at which h trials reached O (each tie counted
    by p_value_upper), counted here from the trials drawn; a coincidence at the map's
    peak never stops and keeps the fixed-n p-value's precision."""
    sky = flat_map(ORDER, 2.0)
    m = model(sky)

    def trials(ra, dec, h):
        nus = neutrinos([ra, 300.0], [dec, -60.0], [5.0, -200.0], 1.0, [3e4, 2e3])
        r = m.evaluate(nus, T_GW)
        t = r.terms
        out = subthreshold_trial_pvalue(
            m, nus.ra, nus.dec, nus.sigma, nus.energy, t["dt"], t["zenith"], r.odds_ratio,
            n_trials=400, kind="scramble", seed=11, stop_after=h,
        )  # fmt: skip
        return r.odds_ratio, out

    odds, far = trials(300.0, 20.0, 5)  # 180 deg from the peak: background-like
    drawn = far.method["n_trials_drawn"]
    assert far.trial_odds.size == drawn < 400 and far.method["stop_after"] == 5
    reached = np.cumsum(far.trial_odds >= odds)  # every tie counted: the upper value
    l_upper = int(np.argmax(reached >= 5)) + 1
    assert reached[-1] >= 5
    assert far.method["p_value_upper"] == pytest.approx(5 / l_upper, rel=1e-12)
    assert 0 < far.p_value <= far.method["p_value_upper"]
    assert far.p_values_neutrino.size == 0 and "p_values_neutrino_upper" not in far.method
    _, near = trials(120.0, 20.0, 5)  # at the peak: fewer than h reach it in 400
    assert near.method["n_trials_drawn"] == 400 and near.p_value < 0.01
    with pytest.raises(ValueError, match="stop_after must be an integer >= 1"):
        trials(300.0, 20.0, 0)


def test_table_p_value_uses_only_subthreshold_keys(tmp_path):
    entries = [
        {"population": "bns", "sensitivity": "O3", "instruments": "H1,L1",
         "odds": np.linspace(0.0, 1.0, 99), "statistic": "subthreshold_odds_ratio"},
        {"population": "bbh", "sensitivity": "O3", "instruments": "H1,L1",
         "odds": np.linspace(0.0, 9.0, 10), "statistic": "odds_ratio"},
    ]  # fmt: skip
    path = write_background_table(make_background_table(entries), tmp_path / "t.nc")
    p, method = subthreshold_table_pvalue(0.505, path, "bns", "L1,H1", seed=2)
    assert method["key"] == "bns/O3/H1,L1/subthreshold" and method["n_background"] == 99
    # 49 of the 99 values k/98 exceed 0.505: p = (49 + U) / 100, p_upper = 50 / 100
    assert method["p_value_upper"] == pytest.approx(0.5, abs=0.0) and 0.49 <= p <= 0.5
    with pytest.raises(ValueError, match="no key"):
        subthreshold_table_pvalue(0.5, path, "bbh", "H1,L1")  # only an OPA key for bbh
    only_opa = write_background_table(make_background_table(entries[1:]), tmp_path / "o.nc")
    assert subthreshold_table_pvalue(0.5, only_opa, "bbh", "H1,L1") is None
    # The OPA statistic never reads a sub-threshold key, even as the only match.
    with pytest.raises(ValueError, match="no key"):
        table_significance(0.5, [], path, "bns", "H1,L1")
    only_sub = write_background_table(make_background_table(entries[:1]), tmp_path / "s.nc")
    with pytest.raises(ValueError, match="has no keys of the event statistic 'odds_ratio'"):
        table_significance(0.5, [], only_sub, "bns", "H1,L1")


def test_one_table_holds_both_statistics_for_the_same_event_kind(tmp_path):
    """O3 kept a table per statistic; one file with the same population, sensitivity and
    network for both handlers gives each its own numbers."""
    base = {"population": "bns", "sensitivity": "O3", "instruments": "H1,L1"}
    opa, sub = np.linspace(0.0, 10.0, 11), np.linspace(0.0, 1.0, 11)
    path = write_background_table(
        make_background_table([{**base, "odds": opa},
                               {**base, "odds": sub, "statistic": "subthreshold_odds_ratio"}]),
        tmp_path / "both.nc",
    )  # fmt: skip
    r = table_significance(0.55, [0.55], path, "bns", "H1,L1", seed=1)
    assert r.method["key"] == "bns/O3/H1,L1" and r.method["p_value_upper"] == pytest.approx(
        11 / 12, abs=0.0
    )
    p, method = subthreshold_table_pvalue(0.55, path, "bns", "H1,L1", seed=1)
    assert method["key"] == "bns/O3/H1,L1/subthreshold"
    assert method["p_value_upper"] == pytest.approx(6 / 12, abs=0.0)  # 0.6 ... 1.0 above, + 1


# --- realistic maps: BAYESTAR and the README's examples --------------------------------


@pytest.mark.parametrize("name", ["bbh-2", "example-S190425d"])
def test_terms_match_the_reference_on_realistic_maps(name):
    """A BAYESTAR map (its SNR and distance) and a README example (its injected list),
    flattened to order 9 so that the reference's pixel sums resolve every sigma."""
    import json
    from pathlib import Path

    from llama.science.neutrinos import NeutrinoList
    from llama.science.skymap import read_sky_map
    from llama.science.times import gps_to_mjd, iso_to_gps

    root = Path(__file__).resolve().parents[1]
    if name.startswith("example-"):
        graceid = name.removeprefix("example-")
        info = json.loads((root / "llama/examples/events" / graceid / "skymap_info.json").read_text())  # fmt: skip
        sky = read_sky_map(root / "llama/examples/events" / graceid / "lvc_skymap.fits")
        nus = NeutrinoList.read(root / "llama/examples/neutrinos" / f"inj-{graceid}.json")
        nus.zenith = nus.azimuth = None  # astropy's frame in both, as O3
        rho, rbar, t_gw = info["snr"], sky.meta["distmean"], iso_to_gps(info["event_time_iso"])
        pipeline = info["pipeline"].lower()
    else:
        event = json.loads((root / "tests/data/bayestar/events.json").read_text())[name]
        sky = read_sky_map(root / "tests/data/bayestar" / f"{name}.fits")
        peak = int(np.argmax(sky.probdensity))
        from llama.science.skymap import uniq_to_order_ipix

        order, ipix = uniq_to_order_ipix(sky.uniq[peak : peak + 1])
        import healpy as hp

        ra0, dec0 = hp.pix2ang(2 ** int(order[0]), int(ipix[0]), nest=True, lonlat=True)
        rho, rbar, t_gw = event["network_snr"], event["distmean_mpc"], T_GW
        nus = neutrinos([ra0, ra0 + 2.0, ra0 - 40.0], [dec0, dec0 - 1.0, dec0 + 5.0],
                        [20.0, -150.0, 300.0], [1.0, 2.5, 0.8], [3e4, 2e3, 1e5])  # fmt: skip
        pipeline = "gstlal"
    flat = sky.flatten(512)
    t_mjd = float(gps_to_mjd(t_gw))
    got = SubthresholdModel(flat, rho, rbar, P_TERR, pipeline, t_gw_mjd=t_mjd,
                            background=BACKGROUND, snr_list=SNR).evaluate(nus, t_gw)  # fmt: skip
    lists = {k: np.asarray(getattr(nus, k)) for k in ("mjd", "ra", "dec", "sigma", "energy")}
    want = ref.subthreshold_reference(
        flat.probability(), 512, lists, t_mjd, rho, rbar, P_TERR, SNR,
        BACKGROUND.zenith_sorted, BACKGROUND.energy_by_zenith, pipeline=pipeline,
    )  # fmt: skip
    assert got.n == want["n"] == len(nus) > 0
    for term in ("p_h_s1", "p_h_c", "p_h_0", "odds_ratio"):
        assert getattr(got, term) == pytest.approx(want[term], rel=0.05, abs=0.0), term
    assert got.odds_ratio > 0
