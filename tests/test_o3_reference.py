"""Self-tests of the independent O3 reference (tests/o3_reference.py).

Every expected value here comes from a closed form derived by hand, a count
made by hand on a tiny sample, or a property the spec states; none is a number
printed by the reference itself.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import o3_reference as ref
import pytest


def approx(expected, rel=1e-9, abs=0.0):  # noqa: A002
    """pytest.approx without its default 1e-12 absolute tolerance, which would
    pass any comparison of the tiny rates here (P_s1 ~ 1e-25)."""
    return pytest.approx(expected, rel=rel, abs=abs)


L_NU = math.log(ref.E_NU_MAX / ref.E_NU_MIN)
L_GW = math.log(ref.E_GW_MAX / ref.E_GW_MIN)


def rate(weight, distance):
    """a in ⟨n⟩w = a·E: n0 · 10 · (r/100)^-2 · w [per code energy unit]."""
    return ref.N0 * 10.0 * (distance / 100.0) ** -2 * weight


def closed_k1(a):
    """∫ a E e^{-aE} / (E L) dE over [E⁻, E⁺] = (e^{-aE⁻} - e^{-aE⁺}) / L."""
    return (math.exp(-a * ref.E_NU_MIN) - math.exp(-a * ref.E_NU_MAX)) / L_NU


def closed_k2(a):
    """∫ (aE)² e^{-aE} / (2 E L) dE = [(1+x)e^{-x}] from aE⁺ to aE⁻, over 2L."""
    lo, hi = a * ref.E_NU_MIN, a * ref.E_NU_MAX
    return ((1 + lo) * math.exp(-lo) - (1 + hi) * math.exp(-hi)) / (2 * L_NU)


def synthetic_background(n=4000, seed=1):
    """Zenith uniform in [0, 180) deg, energy log-uniform in [1e2, 1e6] GeV."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 180.0, n), 10.0 ** rng.uniform(2.0, 6.0, n)


def uniform_map(nside):
    npix = hp.nside2npix(nside)
    return np.full(npix, 1.0 / npix)


def one_neutrino(**overrides):
    nu = {
        "mjd": [58600.0],
        "ra": [40.0],
        "dec": [5.0],
        "sigma": [1.0],
        "energy": [3000.0],
        "zenith": [95.0],
        "azimuth": [120.0],
    }
    for key, value in overrides.items():
        nu[key] = [value]
    return nu


# --------------------------------------------------------------- detector frame
def test_zenith_is_close_to_ninety_plus_dec():
    """Near the pole zenith ≈ 90° + dec (spec: 109.947° at dec 20°)."""
    ra = np.array([0.0, 90.0, 180.0, 270.0, 33.0, 200.0, 10.0])
    dec = np.array([20.0, 20.0, 20.0, 20.0, -60.0, 75.0, 20.0])
    # The last time (2030) is beyond the bundled Earth-orientation tables.
    mjd = np.array([58600.0, 58600.3, 58700.7, 59000.1, 58900.5, 60500.2, 62500.0])
    zenith, azimuth = ref.detector_frame(ra, dec, mjd)
    assert np.all(np.abs(zenith - (90.0 + dec)) < 0.3)
    assert np.all((azimuth >= 0.0) & (azimuth < 360.0))
    # Not exactly 90 + dec: the site is 0.0056° off the pole.
    assert np.any(np.abs(zenith - (90.0 + dec)) > 1e-3)


def test_azimuth_turns_with_right_ascension():
    """At the pole, a 90° step in RA at fixed time turns the azimuth by ~90°."""
    zenith, azimuth = ref.detector_frame([10.0, 100.0], [0.0, 0.0], [58600.0, 58600.0])
    step = (azimuth[0] - azimuth[1]) % 360.0
    assert min(abs(step - 90.0), abs(step - 270.0)) < 0.5


def test_opa_fills_detector_frame_when_absent():
    nu = one_neutrino()
    del nu["zenith"], nu["azimuth"]
    bg_z, bg_e = synthetic_background()
    out = ref.opa_reference(uniform_map(8), 8, nu, 58600.0, 10.0, 300.0, bg_z, bg_e)
    zenith, azimuth = ref.detector_frame(40.0, 5.0, 58600.0)
    assert out["zenith"][0] == approx(zenith[0])
    assert out["azimuth"][0] == approx(azimuth[0])


# ------------------------------------------------------------------- tables
def test_signal_density_rows_join_continuously():
    """Row k covers log10 ε in [k/2, (k+1)/2) with log a linear from factor to
    factor + exponent; the shipped rows join end to end, so a wrong row choice
    or anchor shows up as a jump at a row boundary."""
    zenith = np.arange(5.0, 190.0, 10.0)
    for k in range(4, 16):
        edge = (k + 1) / 2.0
        below = ref.signal_density(10.0 ** (edge - 1e-9), zenith)
        at = ref.signal_density(10.0**edge, zenith)
        np.testing.assert_allclose(np.log10(at), np.log10(below), atol=1e-6)


def test_signal_density_row_choice_and_values():
    assert ref.aeff_row_key(10.0**2.49) == "4"
    assert ref.aeff_row_key(10.0**2.5) == "5"
    assert ref.aeff_row_key(10.0**7.99) == "15"
    assert ref.aeff_row_key(1e8) == "high_e"
    assert ref.aeff_row_key(1.0) == "4"
    # At the start of row k (log10 ε = k/2) log a is the row's factor: row 6,
    # zenith band 9 (θ in [90, 100)) has factor -3.27096322 in the JSON.
    assert math.log10(ref.signal_density(1e3, [95.0])[0]) == approx(-3.27096322)
    assert ref.signal_density(1e9, [95.0])[0] == approx(1e-15)


def test_signal_density_integrates_to_about_one():
    """Spec: a integrates to 0.8-1.0 over 1e2-1e9 GeV per band (we see 0.7-1.0:
    band 1, θ in [10, 20), gives 0.71 with the shipped numbers)."""
    log_e = np.linspace(2.0, 9.0, 2801)
    energy = 10.0**log_e
    for theta in np.arange(5.0, 185.0, 10.0):
        values = np.array([ref.signal_density(e, [theta])[0] for e in energy])
        integral = np.trapezoid(values * energy * math.log(10.0), log_e)
        assert 0.7 < integral < 1.0, theta


def test_zenith_weight_lookup():
    assert ref.zenith_weight(0.0) == approx(0.064912)
    assert ref.zenith_weight(4.999) == approx(0.064912)
    assert ref.zenith_weight(90.0) == approx(2.66636028)
    assert ref.zenith_weight(180.0) == ref.zenith_weight(179.0)


# ---------------------------------------------------------------- integrals
@pytest.mark.parametrize("weight", [0.065, 1.0, 2.67])
@pytest.mark.parametrize("distance", [5.0, 40.0, 300.0, 3000.0])
def test_count_integrals_match_closed_forms(weight, distance):
    a = rate(weight, distance)
    assert ref.count_integral(1, weight, distance) == approx(closed_k1(a), rel=1e-8)
    assert ref.count_integral(2, weight, distance) == approx(closed_k2(a), rel=1e-7)


def test_distance_energy_factor_gw_part_cancels_rbar():
    """r̄²·P_Egw((r̄ρ/k0)²) = k0²/(ρ² ln(E⁺/E⁻)), with no range check (r̄ρ huge)."""
    for rbar, rho in [(40.0, 30.0), (380.0, 12.0), (5000.0, 9.0)]:
        d1 = ref.distance_energy_factor(1, 95.0, rho, rbar)
        expected = ref.K0**2 / (rho**2 * L_GW) * closed_k1(rate(ref.zenith_weight(95.0), rbar))
        assert d1 == approx(expected, rel=1e-8)


def test_time_overlap():
    assert ref.time_overlap(0.0, 0.0) == 500.0
    assert ref.time_overlap(0.0, 100.0) == 400.0
    assert ref.time_overlap(100.0, 0.0) == 400.0
    assert ref.time_overlap(0.0, -499.0) == approx(1.0)
    assert ref.time_overlap(0.0, 600.0) == 0.0


def test_constants():
    assert ref.NDOT == approx(1500.0 / 3.1536e16)
    assert ref.horizon_distance() == approx(310.06, abs=0.01)
    v0 = 4.0 / 3.0 * math.pi * ref.horizon_distance() ** 3
    assert v0 * ref.NDOT == approx(5.94e-6, rel=2e-3)
    assert ref.R_NU_BG * ref.WINDOW == approx(3.2)


# --------------------------------------------------------------- background
# Sample A (counted by hand in the test docstrings).
A_ZENITH = np.array([98.0, 99.0, 100.0, 101.0, 102.5, 104.0, 120.0])
A_ENERGY = np.array([100.0, 110.0, 120.0, 140.0, 105.0, 1000.0, 5.0])
# Sample B: one zenith, two energy clusters; median (12 + 13)/2 = 12.5 GeV.
B_ENERGY = np.array([10.0, 10.5, 11.0, 11.5, 12.0, 13.0, 3000.0, 4000.0, 5000.0, 6000.0])


def sample_b(zenith):
    return np.full(B_ENERGY.size, zenith), B_ENERGY


def solid(zenith, delta_omega):
    """2π |cos(θ-δω) - cos(θ+δω)| [sr]."""
    return (
        2
        * math.pi
        * abs(
            math.cos(math.radians(zenith - delta_omega))
            - math.cos(math.radians(zenith + delta_omega))
        )
    )


def test_background_primary_widening_by_hand():
    """θ=100, ε_i=50 on sample A. Band (strict, 102.5 out): 98..101, ε_lo=100,
    ε_hi=140, ε=100. Count 1 (|100-ε_bg| < 30): 100, 110, 120 -> 3.
    Widen (δω 3.75, ΔE .45), 100 < median 110 -> ε=1000: no energy within 450
    in the band (1000 sits at 104, 4° away) -> 0. Widen (5.625, .675), ε=100:
    band 98..104, |100-ε_bg| < 67.5: 100, 110, 120, 140, 105 -> 5, stop."""
    out = ref.background_terms(100.0, 50.0, A_ZENITH, A_ENERGY)
    assert (out["eps_lo"], out["eps_hi"]) == (100.0, 140.0)
    assert out["count"] == 5
    assert out["n_counts"] == 3
    assert out["delta_omega"] == approx(5.625)
    assert out["delta_e"] == approx(0.675)
    assert out["energy_eval"] == approx(100.0)
    assert out["f_e"] == 1.0
    expected = 5 / (7 * solid(100.0, 5.625) * 2 * 0.675 * 100.0)
    assert out["b_density"] == approx(expected, rel=1e-12)


def test_background_moves_energy_both_ways_and_raises_to_band_minimum():
    """θ=100, ε_i=130 on sample A: |130-ε_bg| < 39 holds 100, 110, 120, 140 (4).
    130 >= median 110 -> ε=13: nothing within 5.85 -> 0. 13 < 110 -> ε=130,
    band 98..104: |130-ε_bg| < 87.75: 100, 110, 120, 140, 105 -> 5."""
    out = ref.background_terms(100.0, 130.0, A_ZENITH, A_ENERGY)
    assert out["n_counts"] == 3 and out["count"] == 5
    assert out["energy_eval"] == approx(130.0)
    # ε_i = 1 is raised to ε_lo = 100 (the band's minimum, not the median).
    assert ref.background_terms(100.0, 1.0, A_ZENITH, A_ENERGY)["energy_eval"] == approx(100.0)


def test_background_step4_restores_energy_above_80_degrees():
    """Sample B at θ=100, ε_i=6000: counts 2 (5000, 6000), then ε 600 -> 0,
    ε 60 -> 0, ε 6 with ΔE 1.0125 -> |6-ε_bg| < 6.075: 10..12 -> 5. ε=6 < ε_i,
    θ > 80: f_E = 1000^3.7 and ε = 6000."""
    zen, en = sample_b(100.0)
    out = ref.background_terms(100.0, 6000.0, zen, en)
    assert out["count"] == 5 and out["n_counts"] == 4
    assert out["f_e"] == approx(1000.0**3.7)
    assert out["energy_eval"] == 6000.0
    expected = 5 / (10 * solid(100.0, 8.4375) * 2 * 1.0125 * 6000.0) / 1000.0**3.7
    assert out["b_density"] == approx(expected, rel=1e-12)
    # Below 80° zenith the moved energy stays.
    zen, en = sample_b(70.0)
    out = ref.background_terms(70.0, 6000.0, zen, en)
    assert out["f_e"] == 1.0 and out["energy_eval"] == approx(6.0)


def test_background_median_tie_divides():
    """ε equal to the median is not below it: ÷10 (×10 only if ε < median).
    Energies 8..12, 100, 200..600 (11 values, median 100) at θ=70, ε_i=100:
    |100-ε_bg| < 30 -> 1; ÷10 -> 10, |10-ε_bg| < 4.5: 8..12 -> 5, stop."""
    energy = np.array([8.0, 9.0, 10.0, 11.0, 12.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0])
    out = ref.background_terms(70.0, 100.0, np.full(energy.size, 70.0), energy)
    assert out["n_counts"] == 2 and out["count"] == 5
    assert out["energy_eval"] == approx(10.0)


def test_step4_applies_just_above_80_degrees():
    """Sample B at θ=85 (above 80, below 90): same counts as at θ=100, so
    ε ends at 6 and f_E = 1000^3.7."""
    zen, en = sample_b(85.0)
    out = ref.background_terms(85.0, 6000.0, zen, en)
    assert out["f_e"] == approx(1000.0**3.7) and out["energy_eval"] == 6000.0
    zen, en = sample_b(80.0)
    assert ref.background_terms(80.0, 6000.0, zen, en)["f_e"] == 1.0


def test_background_strict_zenith_band():
    """A background event exactly δω away is outside the band."""
    zen = np.array([102.5, 102.5])
    out = ref.background_terms(100.0, 100.0, zen, np.array([50.0, 60.0]))
    assert math.isnan(out["eps_lo"])
    zen = np.array([102.4, 102.5])
    out = ref.background_terms(100.0, 100.0, zen, np.array([50.0, 60.0]))
    assert out["eps_lo"] == out["eps_hi"] == 50.0


def test_partner_slip_widens_once_even_when_first_count_suffices():
    """Primary θ=100, ε=11 on sample B: 6 within 3.3 -> no widening. Partner ε_j
    = 11.2: count 6 (>= 5), yet O3's loop widens once (δω 3.75, ΔE .45) and
    moves ε_j (11 < 12.5 -> ×10 = 112)."""
    zen, en = sample_b(100.0)
    primary = ref.background_terms(100.0, 11.0, zen, en)
    assert primary["n_counts"] == 1 and primary["delta_omega"] == 2.5
    partner = ref.partner_background_terms(100.0, 11.2, primary, zen, en)
    assert partner["count"] == 6 and partner["n_counts"] == 1
    assert partner["delta_omega"] == approx(3.75)
    assert partner["delta_e"] == approx(0.45)
    assert partner["energy_eval"] == approx(112.0)
    expected = 6 / (10 * solid(100.0, 3.75) * 2 * 0.45 * 112.0)
    assert partner["b_density"] == approx(expected, rel=1e-12)


def test_partner_clamp_and_move_direction():
    """Partner ε_j = 13 on sample B (count 6): the primary's ε 11 < 12.5 ->
    ×10 (130); with the partner's own 13 >= 12.5 -> ÷10 (1.3), and step 4
    gives back 13 with f_E = 10^3.7. Below ε_lo = 10 the partner starts at 10."""
    zen, en = sample_b(100.0)
    primary = ref.background_terms(100.0, 11.0, zen, en)
    assert (primary["eps_lo"], primary["eps_hi"]) == (10.0, 6000.0)
    by_primary = ref.partner_background_terms(100.0, 13.0, primary, zen, en)
    assert by_primary["energy_eval"] == approx(130.0) and by_primary["f_e"] == 1.0
    by_partner = ref.partner_background_terms(
        100.0, 13.0, primary, zen, en, partner_move_test="partner"
    )
    assert by_partner["energy_eval"] == approx(13.0)
    assert by_partner["f_e"] == approx(10.0**3.7)
    clamped = ref.partner_background_terms(70.0, 0.5, primary, *sample_b(70.0))
    unclamped_start = ref.partner_background_terms(70.0, 10.0, primary, *sample_b(70.0))
    assert clamped["b_density"] == unclamped_start["b_density"]
    assert clamped["energy_eval"] == unclamped_start["energy_eval"]


def test_partner_step4_uses_the_clamped_energy():
    """Reading 4: partner ε_j = 1e5 clamped to ε_hi = 6000 (sample B at θ=100,
    the partner's own ε deciding the moves): counts 2 (6000), 0 (600), 0 (60),
    5 (6, ΔE 1.0125), then one more widening and a move to 60. Step 4 gives
    back the CLAMPED 6000: f_E = (6000/60)^3.7."""
    zen, en = sample_b(100.0)
    primary = ref.background_terms(100.0, 11.0, zen, en)
    out = ref.partner_background_terms(100.0, 1e5, primary, zen, en, partner_move_test="partner")
    assert out["count"] == 5 and out["n_counts"] == 4
    assert out["delta_e"] == approx(0.3 * 1.5**4)
    assert out["energy_eval"] == 6000.0
    assert out["f_e"] == approx(100.0**3.7)
    expected = 5 / (10 * solid(100.0, 2.5 * 1.5**4) * 2 * 0.3 * 1.5**4 * 6000.0) / 100.0**3.7
    assert out["b_density"] == approx(expected, rel=1e-12)


def test_subthreshold_background_carries_windows():
    """List (θ=100, 6000) then (θ=100, 11) on sample B: the first widens three
    times (δω 8.4375, ΔE 1.0125); the second starts there: band all, ε=11,
    |11-ε_bg| < 11.1375: 10..13 -> 6, B with the carried windows."""
    zen, en = sample_b(100.0)
    terms = ref.background_list([100.0, 100.0], [6000.0, 11.0], zen, en)
    second = terms[1]
    assert second["count"] == 6 and second["n_counts"] == 1
    assert second["delta_omega"] == approx(8.4375)
    expected = 6 / (10 * solid(100.0, 8.4375) * 2 * 1.0125 * 11.0)
    assert second["b_density"] == approx(expected, rel=1e-12)
    alone = ref.background_terms(100.0, 11.0, zen, en)
    assert alone["b_density"] != approx(second["b_density"])


# ---------------------------------------------------------------------- OPA
def test_uniform_map_overlaps():
    """Uniform map: Σ P·G ≈ 1/(4π) and S_i ≈ a(ε, 95°)/(4π) (a constant over
    θ in [90, 100) for a neutrino at dec 5, σ 1°; nside 128: 0.46° pixels)."""
    bg_z, bg_e = synthetic_background()
    out = ref.opa_reference(uniform_map(128), 128, one_neutrino(), 58600.0, 10.0, 300.0, bg_z, bg_e)
    assert out["psf_overlap"][0] == approx(1 / (4 * math.pi), rel=3e-3)
    a = ref.signal_density(out["energy_eval"][0], [95.0])[0]
    assert out["signal_overlap"][0] == approx(a / (4 * math.pi), rel=3e-3)


def test_single_term_by_formula():
    """P_s1, P_c and O_i from the pieces: ṅ/f_b S T D_1/(500 s)², R ṅ k0²/(ρ²L) B."""
    bg_z, bg_e = synthetic_background()
    rho, rbar, dt = 11.0, 250.0, 120.0
    nu = one_neutrino(mjd=58600.0 + dt / 86400.0)
    out = ref.opa_reference(uniform_map(64), 64, nu, 58600.0, rho, rbar, bg_z, bg_e)
    assert out["time_overlap"][0] == approx(500.0 - dt, abs=1e-4)
    d1 = ref.K0**2 / (rho**2 * L_GW) * closed_k1(rate(ref.zenith_weight(95.0), rbar))
    p_s1 = ref.NDOT / 10.0 * out["signal_overlap"][0] * (500.0 - dt) * d1 / 500.0**2
    p_c = 6.4e-3 * ref.NDOT * ref.K0**2 / (rho**2 * L_GW) * out["b_density"][0]
    assert out["p_h_s1"][0] == approx(p_s1, rel=1e-6)
    assert out["p_h_c"][0] == approx(p_c, rel=1e-12)
    assert out["odds_ratio"][0] == approx(p_s1 / p_c, rel=1e-6)
    assert out["event_odds_ratio"] == out["odds_ratio"][0]


def test_odds_depend_on_rbar_only_through_the_count():
    """r̄²P_Egw cancels: P_c is unchanged and P_s1 scales as the k=1 integral."""
    bg_z, bg_e = synthetic_background()
    args = (uniform_map(32), 32, one_neutrino(), 58600.0, 9.0)
    near = ref.opa_reference(*args, 100.0, bg_z, bg_e)
    far = ref.opa_reference(*args, 900.0, bg_z, bg_e)
    assert far["p_h_c"][0] == approx(near["p_h_c"][0], rel=1e-12)
    w = ref.zenith_weight(95.0)
    ratio = closed_k1(rate(w, 900.0)) / closed_k1(rate(w, 100.0))
    assert far["odds_ratio"][0] / near["odds_ratio"][0] == approx(ratio, rel=1e-7)


def test_pairs_counted_once_at_first_in_list_order():
    """Neutrinos 0 and 2 are within 5(σ_i+σ_j) in detector degrees; 1 is far.
    The pair is counted once, at the first of the two in list order."""
    bg_z, bg_e = synthetic_background()
    t0 = 58600.0
    nu = {
        "mjd": [t0 + 10 / 86400, t0 - 100 / 86400, t0 + 60 / 86400],
        "ra": [40.0, 200.0, 40.8],
        "dec": [5.0, -40.0, 5.5],
        "sigma": [1.0, 1.0, 1.2],
        "energy": [3000.0, 2000.0, 5000.0],
        "zenith": [95.0, 50.0, 95.5],
        "azimuth": [120.0, 300.0, 120.8],
    }
    out = ref.opa_reference(uniform_map(64), 64, nu, t0, 10.0, 300.0, bg_z, bg_e)
    assert [(p["i"], p["j"]) for p in out["pairs"]] == [(0, 2)]
    assert out["p_h_s2"][0] > 0.0
    assert out["p_h_s2"][1] == 0.0 and out["p_h_s2"][2] == 0.0
    pair = out["pairs"][0]
    # T_ij = 500 - spread of (t_gw, t_0, t_2) = 500 - 60 s.
    assert pair["t_ij"] == approx(440.0, abs=1e-4)
    d2 = ref.K0**2 / (10.0**2 * L_GW) * closed_k2(rate(ref.zenith_weight(95.25), 300.0))
    assert pair["d2"] == approx(d2, rel=1e-7)
    # Reversed list: the same pair now sits at the new first one (old index 2).
    flipped = {key: list(reversed(value)) for key, value in nu.items()}
    back = ref.opa_reference(uniform_map(64), 64, flipped, t0, 10.0, 300.0, bg_z, bg_e)
    assert [(p["i"], p["j"]) for p in back["pairs"]] == [(0, 2)]
    assert back["p_h_s2"][0] > 0.0 and back["p_h_s2"][2] == 0.0
    # The pair term enters the event sum once.
    assert out["event_odds_ratio"] == approx(np.sum(out["odds_ratio"]))


def test_pair_term_by_formula():
    """Two neutrinos 0.5° apart, uniform map: S_ij ≈ a_i a_j/(4π) ∫G_i G_j dΩ
    with ∫G_i G_j = exp(-d²/2(σ_i²+σ_j²)) / (2π(σ_i²+σ_j²)) (radians), and
    P_s2 = ṅ/f_b S_ij T_ij D_2 / (500 s)² / B_j with the partner's background."""
    bg_z, bg_e = synthetic_background()
    rho, rbar, t0 = 10.0, 300.0, 58600.0
    nu = {
        "mjd": [t0, t0 + 100 / 86400],
        "ra": [40.0, 40.0],
        "dec": [5.0, 5.5],
        "sigma": [1.0, 1.2],
        "energy": [3000.0, 700.0],
        # Detector zeniths below 80° (given, not computed) keep step 4 out, so
        # the partner's moved energy is the one a(ε_j) must use.
        "zenith": [74.0, 76.5],
        "azimuth": [120.0, 120.3],
    }
    out = ref.opa_reference(uniform_map(128), 128, nu, t0, rho, rbar, bg_z, bg_e)
    primary = ref.background_terms(74.0, 3000.0, bg_z, bg_e)
    partner = ref.partner_background_terms(76.5, 700.0, primary, bg_z, bg_e)
    assert partner["energy_eval"] != 700.0
    pair = out["pairs"][0]
    assert pair["energy_eval"] == partner["energy_eval"]
    assert pair["b_density"] == partner["b_density"]
    a_i = ref.signal_density(primary["energy_eval"], [95.0])[0]
    a_j = ref.signal_density(partner["energy_eval"], [95.0])[0]
    var = math.radians(1.0) ** 2 + math.radians(1.2) ** 2
    overlap = math.exp(-(math.radians(0.5) ** 2) / (2 * var)) / (2 * math.pi * var)
    s_ij = a_i * a_j / (4 * math.pi) * overlap
    assert pair["s_ij"] == approx(s_ij, rel=1e-2)
    # w index int((74 + 76.5)/10) = 15, not int(74/5) = 14.
    d2 = ref.K0**2 / (rho**2 * L_GW) * closed_k2(rate(ref.zenith_weight(75.25), rbar))
    p_s2 = ref.NDOT / 10.0 * pair["s_ij"] * 400.0 * d2 / 500.0**2 / partner["b_density"]
    assert out["p_h_s2"][0] == approx(p_s2, rel=1e-6)


def test_pair_distance_is_flat_without_azimuth_wrap():
    """Azimuths 359° and 1° are 358° apart for O3's pair test: no pair."""
    bg_z, bg_e = synthetic_background()
    nu = {
        "mjd": [58600.0, 58600.0],
        "ra": [40.0, 40.5],
        "dec": [5.0, 5.0],
        "sigma": [1.0, 1.0],
        "energy": [3000.0, 3000.0],
        "zenith": [95.0, 95.0],
        "azimuth": [359.0, 1.0],
    }
    out = ref.opa_reference(uniform_map(16), 16, nu, 58600.0, 10.0, 300.0, bg_z, bg_e)
    assert out["pairs"] == []
    nu["azimuth"] = [100.0, 109.9]  # 9.9 < 5(1+1)
    out = ref.opa_reference(uniform_map(16), 16, nu, 58600.0, 10.0, 300.0, bg_z, bg_e)
    assert len(out["pairs"]) == 1


def test_sanity_ordering_precise_map_beats_far_and_late():
    """Spec scenarios a, c, d: coincident > direction far from the map; |dt| > 500 s -> 0."""
    nside = 64
    bg_z, bg_e = synthetic_background()
    vec = np.stack(hp.pix2vec(nside, np.arange(hp.nside2npix(nside)), nest=True), axis=-1)
    prob = np.exp(vec @ hp.ang2vec(40.0, 5.0, lonlat=True) * 300.0 - 300.0)
    prob /= prob.sum()
    a = ref.opa_reference(prob, nside, one_neutrino(), 58600.0, 10.0, 300.0, bg_z, bg_e)
    c = ref.opa_reference(
        prob, nside, one_neutrino(ra=220.0, dec=-5.0, zenith=85.0), 58600.0, 10.0, 300.0, bg_z, bg_e
    )
    d = ref.opa_reference(
        prob, nside, one_neutrino(mjd=58600.0 + 600 / 86400), 58600.0, 10.0, 300.0, bg_z, bg_e
    )
    assert a["event_odds_ratio"] > 100 * c["event_odds_ratio"]
    assert d["event_odds_ratio"] == 0.0


def test_odds_sanitising():
    assert ref.odds_of(1.0, 0.0) == math.inf
    assert ref.odds_of(0.0, 0.0) == 0.0
    assert ref.odds_of(-1.0, 2.0) == 0.0
    assert ref.odds_of(-1.0, 0.0) == 0.0
    assert ref.odds_of(3.0, 2.0) == 1.5


# ------------------------------------------------------------ sub-threshold
def test_empirical_snr_density_bin_rules():
    """Range [0, 50]: 50 bins of width 1. Bin 1 holds 0 and 3×0.5 (4), bin 2
    holds 1.5 (1), bin 3 is empty, bin 50 holds 2×49.5 and 50 (3); N = 8."""
    snrs = [0.0, 0.5, 0.5, 0.5, 1.5, 49.5, 49.5, 50.0]
    p = lambda rho: ref.empirical_snr_density(rho, snrs)  # noqa: E731
    assert p(0.7) == approx(4 / 8)
    assert p(1.0) == approx(4 / 8)  # on an edge: the lower bin
    assert p(1.0 + 1e-9) == approx(1 / 8)
    assert p(2.5) == approx(1 / 8)  # empty bin counts as 1
    assert p(-3.0) == approx(4 / 8)  # below the minimum: bin 1
    assert p(50.0) == approx(3 / 8)
    assert p(70.0) == approx(3 / 8)  # above the maximum: bin 50
    # Width enters: the same list stretched ×2 halves the density.
    assert ref.empirical_snr_density(1.4, np.array(snrs) * 2) == approx(4 / 8 / 2)


def test_volume_count_integral_against_closed_inner():
    from scipy import integrate

    for weight in (0.1, 2.5):
        expected, _ = integrate.quad(
            lambda d, weight=weight: closed_k1(rate(weight, d)) * d**2 if d > 0 else 0.0,
            0.0,
            310.06,
            epsrel=1e-10,
        )
        assert ref.count_volume_integral(weight, 310.06) == approx(expected, rel=1e-7)


def subthreshold_case(pipeline="gstlal", p_terr=0.6, rbar=200.0, nside=128, n=2):
    bg_z, bg_e = synthetic_background()
    t0 = 58600.0
    nu = {
        "mjd": [t0 + 30 / 86400, t0 - 200 / 86400][:n],
        "ra": [40.0, 100.0][:n],
        "dec": [5.0, 5.5][:n],
        "sigma": [0.7, 0.8][:n],
        "energy": [3000.0, 800.0][:n],
        "zenith": [95.0, 94.9][:n],
        "azimuth": [120.0, 60.0][:n],
    }
    # Range [4, 9]: bins of 0.1, 8 values at each bin centre, plus the two ends.
    snrs = np.concatenate([[4.0, 9.0], np.repeat(4.05 + 0.1 * np.arange(50), 8)])
    out = ref.subthreshold_reference(
        uniform_map(nside), nside, nu, t0, 7.05, rbar, p_terr, snrs, bg_z, bg_e, pipeline=pipeline
    )
    return out, nu


def test_subthreshold_terms_by_hand():
    """Uniform map: F ≈ g Σ_i T_i I_i a_i/(4π B_i); W = Σ J_i a_i / B_i exactly
    (a constant over each PSF); g = k0⁴(E⁺-E⁻)/(r̄ρ⁴L); P_0 = p(x|H0)π_N(N)/V0."""
    rho, rbar = 7.05, 200.0
    out, nu = subthreshold_case(rbar=rbar)
    g = ref.K0**4 * (ref.E_GW_MAX - ref.E_GW_MIN) / (rbar * rho**4 * L_GW)
    assert out["g"] == approx(g, rel=1e-12)
    a = [
        ref.signal_density(e, [90.0 + d])[0]
        for e, d in zip(out["energy_eval"], nu["dec"], strict=True)
    ]
    times = [470.0, 300.0]
    i_int = [closed_k1(rate(ref.zenith_weight(z), rbar)) for z in nu["zenith"]]
    np.testing.assert_allclose(out["i_int"], i_int, rtol=1e-8)
    f = g * sum(
        t * i * ai / (4 * math.pi * b)
        for t, i, ai, b in zip(times, i_int, a, out["b_density"], strict=True)
    )
    assert out["f"] == approx(f, rel=5e-3)
    w = sum(j * ai / b for j, ai, b in zip(out["j_int"], a, out["b_density"], strict=True))
    assert out["w"] == approx(w, rel=1e-7)
    pi = lambda k: 3.2**k * math.exp(-3.2) / math.factorial(k)  # noqa: E731
    assert out["p_h_s1"] == approx(ref.NDOT * pi(1) * out["f"] / 500.0**2, rel=1e-12)
    assert out["p_h_0"] == approx(out["p_gw_h0"] * pi(2) / out["v0"], rel=1e-12)
    assert out["p_h_s2"] == 0.0
    v0_ndot = 4 / 3 * math.pi * (400.8 * math.sqrt(18.7) / 5.59) ** 3 * 1500 / 3.1536e16
    p_h0 = 0.6 * (out["p_emp"] / 86400 + 3 * 5.59**3 / rho**4 * v0_ndot) / (1 / 86400 + v0_ndot)
    assert out["p_gw_h0"] == approx(p_h0, rel=1e-12)
    ndot = 1500 / 3.1536e16
    p_c = ndot * g * pi(2) + ndot * p_h0 * pi(1) * w
    assert out["p_h_c"] == approx(p_c, rel=1e-6)
    assert out["odds_ratio"] == approx(out["p_h_s1"] / (p_c + out["p_h_0"]), rel=1e-6)
    # P_emp: ρ = 7.05 sits in the bin (7.0, 7.1] with 8 of the 402 values.
    assert out["p_emp"] == approx(8 / 402 / 0.1, rel=1e-9)


def test_subthreshold_p_terr_zero_leaves_only_gw_chance():
    out, _ = subthreshold_case(p_terr=0.0)
    pi2 = 3.2**2 * math.exp(-3.2) / 2
    assert out["p_h_0"] == 0.0
    assert out["p_h_c"] == approx(ref.NDOT * out["g"] * pi2, rel=1e-12)
    assert out["odds_ratio"] == approx(out["p_h_s1"] / out["p_h_c"], rel=1e-12)


def test_subthreshold_rbar_does_not_cancel():
    near, _ = subthreshold_case(rbar=100.0, nside=32)
    far, _ = subthreshold_case(rbar=400.0, nside=32)
    assert near["g"] / far["g"] == approx(4.0)
    assert near["odds_ratio"] != approx(far["odds_ratio"], rel=1e-3)


def test_subthreshold_cwb_branch():
    """cWB: g = 1, first chance term ṅ π_N(N) k0² r0/(ρ² L), and
    I_i = k0²/(ρ²L) ∫₀^r0 (k=1 integral at d) dd (the d² cancels 1/E_gw)."""
    from scipy import integrate

    rho = 7.05
    out, nu = subthreshold_case(pipeline="CWB", p_terr=0.0, nside=32)
    r0 = ref.horizon_distance()
    assert out["g"] == 1.0
    pi2 = 3.2**2 * math.exp(-3.2) / 2
    assert out["p_h_c"] == approx(ref.NDOT * pi2 * ref.K0**2 * r0 / (rho**2 * L_GW), rel=1e-9)
    for zenith, value in zip(nu["zenith"], out["i_int"], strict=True):
        w = ref.zenith_weight(zenith)
        inner, _ = integrate.quad(
            lambda d, w=w: closed_k1(rate(w, d)) if d > 0 else 0.0, 0.0, r0, epsrel=1e-10
        )
        assert value == approx(ref.K0**2 / (rho**2 * L_GW) * inner, rel=1e-7)


def test_subthreshold_empty_list_has_zero_odds():
    out, _ = subthreshold_case(n=0, nside=8)
    assert out["odds_ratio"] == 0.0 and out["n"] == 0
