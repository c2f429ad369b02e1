"""The O3 statistic assembled (llama/science/odds.py): formulas, options, scenarios.

Term-by-term agreement with an independent reference written from SCIENCE.md is in
test_o3_statistic.py; here, each formula and each option on its own. Helpers (synthetic
maps, a seeded background sample) are shared with test_pvalue.py.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest

from llama.science import constants as C
from llama.science.background import BackgroundDensity
from llama.science.neutrinos import NeutrinoList
from llama.science.odds import EventModel, gw_energy_factor
from llama.science.signal_tables import load_signal_tables
from llama.science.skymap import SkyMap, moments_to_parameters, order_ipix_to_uniq
from llama.science.times import gps_to_mjd

T_GW = 1_240_215_503.0  # GPS s
T_GW_MJD = float(gps_to_mjd(T_GW))
RHO, RBAR = 12.0, 150.0  # an ordinary BNS: r̄ρ = 1800 Mpc, outside O3's nominal E_gw range
CENTER = (120.0, 20.0)  # map peak (ra, dec) [deg]
TABLES = load_signal_tables()


def background_sample(n=20_000, seed=7) -> BackgroundDensity:
    """Seeded isotropic sample; log10 E ~ N(3, 0.4) up-going, N(4.5, 0.4) down-going."""
    rng = np.random.default_rng(seed)
    zen = np.degrees(np.arccos(rng.uniform(-1.0, 1.0, n)))
    mu = np.where(zen > 90.0, 3.0, 4.5)
    return BackgroundDensity(zen, 10 ** rng.normal(mu, 0.4), source=f"test seed {seed}")


BACKGROUND = background_sample()


def vmf_density(ra, dec, center, sigma_deg):
    """Fisher-von Mises density [sr^-1] with kappa = 1 / sigma^2 at (ra, dec) [rad]."""
    kappa = 1.0 / math.radians(sigma_deg) ** 2
    ra0, dec0 = (math.radians(x) for x in center)
    cos_psi = np.sin(dec) * math.sin(dec0) + np.cos(dec) * math.cos(dec0) * np.cos(ra - ra0)
    return kappa * np.exp(kappa * (cos_psi - 1.0)) / (2 * math.pi * (1 - math.exp(-2 * kappa)))


def flat_map(order, sigma_deg, center=CENTER) -> SkyMap:
    """Flat NESTED map of a vMF blob, normalised on the grid."""
    nside = 2**order
    theta, phi = hp.pix2ang(nside, np.arange(12 * nside**2), nest=True)
    dens = vmf_density(phi, 0.5 * np.pi - theta, center, sigma_deg)
    dens /= dens.sum() * hp.nside2pixarea(nside)
    return SkyMap(probdensity=dens, nside=nside)


def moc_map(max_order, sigma_deg, center=CENTER, distance=None) -> SkyMap:
    """Multi-order map: order-3 pixels refined towards the blob down to ``max_order``."""
    ra0, dec0 = (math.radians(x) for x in center)
    v0 = hp.ang2vec(0.5 * np.pi - dec0, ra0)
    keep_o, keep_p = [], []
    ipix = np.arange(12 * 4**3)
    for order in range(3, max_order + 1):
        nside = 2**order
        vec = np.array(hp.pix2vec(nside, ipix, nest=True)).T
        psi = np.arccos(np.clip(vec @ v0, -1, 1))
        refine = psi < np.radians(6.0 * sigma_deg) + 2.0 * hp.max_pixrad(nside)
        if order == max_order:
            refine[:] = False
        keep_o.append(np.full((~refine).sum(), order))
        keep_p.append(ipix[~refine])
        ipix = (4 * ipix[refine][:, None] + np.arange(4)).ravel()
    order = np.concatenate(keep_o)
    ipix = np.concatenate(keep_p)
    uniq = order_ipix_to_uniq(order, ipix)
    theta = np.empty(order.size)
    phi = np.empty(order.size)
    for o in np.unique(order):
        sel = order == o
        theta[sel], phi[sel] = hp.pix2ang(2**o, ipix[sel], nest=True)
    dens = vmf_density(phi, 0.5 * np.pi - theta, center, sigma_deg)
    area = 4 * np.pi / (12 * 4.0**order)
    dens /= (dens * area).sum()
    layers = {}
    if distance is not None:  # (mean, std) [Mpc], the mean a number or f(ra, dec) [rad]
        mean, std = distance
        mean = mean(phi, 0.5 * np.pi - theta) if callable(mean) else np.full(order.size, mean)
        mu, sig, norm = moments_to_parameters(mean, std)
        layers = {"distmu": mu, "distsigma": sig, "distnorm": norm}
    return SkyMap(probdensity=dens, uniq=uniq, **layers)


def neutrinos(ra, dec, dt, sigma=0.5, energy=1e4) -> NeutrinoList:
    """A NeutrinoList at the given directions [deg] and times t_gw + dt [s]."""
    ra = np.atleast_1d(np.asarray(ra, dtype=float))
    n = ra.size
    return NeutrinoList(
        mjd=gps_to_mjd(T_GW + np.broadcast_to(np.asarray(dt, dtype=float), n)),
        ra=ra,
        dec=np.broadcast_to(np.asarray(dec, dtype=float), n).copy(),
        sigma=np.broadcast_to(np.asarray(sigma, dtype=float), n).copy(),
        energy=np.broadcast_to(np.asarray(energy, dtype=float), n).copy(),
    )


def model(skymap, rho=RHO, rbar=RBAR, population="bns", **kw) -> EventModel:
    kw.setdefault("background", BACKGROUND)
    kw.setdefault("t_gw_mjd", T_GW_MJD)
    return EventModel(skymap, rho, rbar, population, **kw)


@pytest.fixture(scope="module")
def precise():
    return moc_map(9, 1.0)


@pytest.fixture(scope="module")
def coarse():
    return moc_map(6, 15.0)


# --- the formulas ---------------------------------------------------------------------


def test_gw_energy_factor_cancels_distance_without_range_check():
    # O3: r̄² P_Egw((r̄ρ/k0)²) = k0² / (ρ² ln(E⁺/E⁻)) at any r̄, in or out of [E⁻, E⁺]
    expect = C.K0**2 / (RHO**2 * math.log(C.E_GW_MAX / C.E_GW_MIN))
    for rbar in (10.0, 150.0, 800.0, 5000.0):
        assert gw_energy_factor(RHO, rbar) == pytest.approx(expect, rel=1e-14)
    # strict: per-population range, zero outside
    lo, hi = C.E_GW_STRICT_RANGE["bns"]
    assert gw_energy_factor(RHO, RBAR, "bns") == pytest.approx(
        C.K0**2 / (RHO**2 * math.log(hi / lo)), rel=1e-14
    )
    assert gw_energy_factor(RHO, RBAR, "bbh") == 0.0


def test_single_neutrino_terms_match_the_formulas():
    """P_s1, P_c and O for one neutrino from the formulas, with S_i by brute force."""
    skymap = flat_map(8, 2.0)
    ra, dec, dt, sig, en = 121.0, 21.0, 120.0, 1.0, 3e4
    m = model(skymap)
    res = m.evaluate(neutrinos(ra, dec, dt, sig, en), T_GW)
    zen = res.zenith[0]
    assert abs(zen - (90.0 + dec)) < 0.3  # astropy's AltAz at IceCube
    bg = BACKGROUND.o3_primary(np.array([zen]), np.array([en]))
    # S_i by pixel-centre sums on the flat grid (nside 256: pixels 0.23 deg << sigma)
    nside = skymap.nside
    theta, phi = hp.pix2ang(nside, np.arange(12 * nside**2), nest=True)
    pdec = 0.5 * np.pi - theta
    r, d, s = math.radians(ra), math.radians(dec), math.radians(sig)
    psi = np.arccos(np.clip(np.sin(pdec) * math.sin(d) + np.cos(pdec) * math.cos(d) * np.cos(phi - r), -1, 1))  # fmt: skip
    g = np.exp(-(psi**2) / (2 * s**2)) / (2 * math.pi * s**2)
    a = TABLES.energy_density(bg.energy_eval[0], 90.0 + np.degrees(pdec))
    s_i = float((skymap.probability() * a * g).sum())
    # D_1 by quadrature in log E (not the kernels' closed form)
    lam0 = C.N0 * 10 * (RBAR / 100.0) ** -2 * float(TABLES.zenith_weight(zen))
    x = np.linspace(math.log(C.E_NU_MIN), math.log(C.E_NU_MAX), 20001)
    lam = lam0 * np.exp(x)
    i1 = np.trapezoid(lam * np.exp(-lam), x) / math.log(C.E_NU_MAX / C.E_NU_MIN)
    egw = C.K0**2 / (RHO**2 * math.log(C.E_GW_MAX / C.E_GW_MIN))
    ndot = 1500.0 / (365 * 24 * 3600) * 1e-9
    p_s1 = ndot / 10.0 * s_i * (500.0 - dt) * egw * i1 / (500.0 * 500.0)
    p_c = 6.4e-3 * ndot * egw * bg.density[0]
    assert res.signal_overlap[0] == pytest.approx(s_i, rel=1e-2)
    assert res.p_h_s1[0] == pytest.approx(p_s1, rel=1e-2)
    assert res.p_h_c[0] == pytest.approx(p_c, rel=1e-9)
    assert res.p_h_0[0] == 0.0 and res.p_h_s2[0] == 0.0
    assert res.odds == pytest.approx(p_s1 / p_c, rel=1e-2)
    assert res.odds > 0  # an ordinary BNS at 150 Mpc, SNR 12: not zero (O3 had no cut)


def test_odds_depend_on_distance_only_through_the_expected_count(precise):
    """r̄ enters only through <n> ∝ r̄⁻²: scaling r̄ by f is the same as scaling n0 w by f⁻²."""
    nl = neutrinos(CENTER[0], CENTER[1], 0.0)
    near = model(precise, rbar=150.0).evaluate(nl, T_GW)
    far = model(precise, rbar=1500.0).evaluate(nl, T_GW)
    assert far.odds > 0 and near.odds > 0
    assert far.p_h_c[0] == pytest.approx(near.p_h_c[0], rel=1e-12)
    lam = C.N0 * 10 * float(TABLES.zenith_weight(near.zenith[0])) * np.array([1.5, 15.0]) ** -2
    # I_1 ∝ ∫ λE e^(-λE) dE/E: for λ E⁺ << 1 it is ∝ λ
    i1 = np.exp(-lam * C.E_NU_MIN) - np.exp(-lam * C.E_NU_MAX)
    assert far.odds / near.odds == pytest.approx(i1[1] / i1[0], rel=1e-9)


def test_doublet_counts_once_at_its_first_member(precise):
    m = model(precise)
    dts = [0.0, 50.0]
    pair = neutrinos([CENTER[0], CENTER[0] + 0.3], CENTER[1], dts)
    both = m.evaluate(pair, T_GW)
    single = [m.evaluate(pair.subset([k]), T_GW) for k in (0, 1)]
    np.testing.assert_allclose(both.p_h_s1, [s.p_h_s1[0] for s in single], rtol=1e-9)
    assert both.p_h_s2[0] > 0 and both.p_h_s2[1] == 0.0
    assert both.odds == pytest.approx(both.odds_ratio.sum(), rel=1e-12)
    # reversing the list moves the pair term to the other neutrino
    rev = m.evaluate(pair.subset([1, 0]), T_GW)
    assert rev.p_h_s2[0] > 0 and rev.p_h_s2[1] == 0.0
    # far apart on the sky (> 5 (sigma_i + sigma_j)): no pair term
    apart = m.evaluate(neutrinos([CENTER[0], CENTER[0] + 10.0], CENTER[1], dts), T_GW)
    assert np.all(apart.p_h_s2 == 0)


def test_pair_time_overlap_excludes_spread_over_500_s(precise):
    m = model(precise)
    res = m.evaluate(neutrinos([CENTER[0], CENTER[0] + 0.3], CENTER[1], [-260.0, 260.0]), T_GW)
    assert np.all(res.p_h_s1 > 0) and np.all(res.p_h_s2 == 0)  # spread 520 s > 500 s


def test_empty_list_gives_zero_odds(precise):
    empty = NeutrinoList(mjd=[], ra=[], dec=[], sigma=[], energy=[])
    res = model(precise).evaluate(empty, T_GW)
    assert res.odds == 0.0 and res.odds_ratio.size == 0 and res.triggers() == []


def test_validated_list_with_floored_sigma(precise):
    nl = neutrinos(CENTER[0], CENTER[1], 0.0, sigma=0.05)  # NeutrinoList floors to 0.2
    assert nl.sigma[0] == C.SIGMA_FLOOR_DEG
    res = model(precise).evaluate(nl, T_GW)
    assert np.isfinite(res.odds) and res.odds > 0
    with pytest.raises(ValueError):
        model(precise).evaluate_batch([0.0], [0.0], [0.0], [1e3], [0.0], [90.0], [0, 1])


def test_given_zenith_and_azimuth_are_used(precise):
    nl = neutrinos(CENTER[0], CENTER[1], 0.0)
    own = model(precise).evaluate(nl, T_GW)
    nl.zenith, nl.azimuth = np.array([5.0]), np.array([10.0])  # a list that carries them
    given = model(precise).evaluate(nl, T_GW)
    assert given.zenith[0] == 5.0 and given.azimuth[0] == 10.0
    assert given.b_density[0] != own.b_density[0]  # B follows the zenith given


def test_frame_from_evaluates_astrometry_is_the_frames_own(precise):
    """evaluate fills in missing angles and keeps ERFA's astrometry at t_gw for the
    trials' frame: the angles, the frame and what it gives are a fresh model's."""
    from llama.science.detector_frame import DetectorFrame, zenith_azimuth

    nl = neutrinos([CENTER[0], CENTER[0] + 40.0], [CENTER[1], -30.0], [-100.0, 300.0])
    m = model(precise)
    res = m.evaluate(nl, T_GW)
    zen, az = zenith_azimuth(nl.ra, nl.dec, nl.mjd)
    assert np.array_equal(res.zenith, zen) and np.array_equal(res.azimuth, az)
    fresh = model(precise)
    args = ([10.0, 200.0], [20.0, -45.0], [0.0, 400.0], [np.nan, 100.0], [np.nan, np.nan])
    got, want = m.detector_frame(*args), fresh.detector_frame(*args)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert m._frame_astrometry is not None  # the frame was built from evaluate's
    assert np.array_equal(m._frame.rotation, DetectorFrame(T_GW_MJD).rotation)


# --- the options (improvements), each off by default -----------------------------------


def test_every_option_is_recorded_and_checked(precise):
    res = model(precise).evaluate(neutrinos(CENTER[0], CENTER[1], 0.0), T_GW)
    for name in ("psf", "pairs", "distance", "egw_prior", "background_band", "pair_background", "null"):  # fmt: skip
        assert res.options[name] in ("o3", "gaussian")
    assert res.options["model"] == "o3"
    with pytest.raises(ValueError, match="pairs must be one of o3, great_circle"):
        model(precise, pairs="flat")


def test_vmf_equals_gaussian_for_small_sigma(precise):
    nl = neutrinos([CENTER[0], CENTER[0] + 0.5], [CENTER[1], CENTER[1] - 0.3], [0.0, 30.0])
    g = model(precise, psf="gaussian").evaluate(nl, T_GW)
    v = model(precise, psf="vmf").evaluate(nl, T_GW)
    np.testing.assert_allclose(v.odds_ratio, g.odds_ratio, rtol=1e-2)
    wide = neutrinos(CENTER[0], CENTER[1], 0.0, sigma=20.0)
    assert model(coarse_map := moc_map(6, 15.0), psf="vmf").evaluate(wide, T_GW).odds != pytest.approx(
        model(coarse_map).evaluate(wide, T_GW).odds, rel=1e-3
    )  # fmt: skip


def test_great_circle_pairs_see_across_the_azimuth_wrap(precise):
    """Two neutrinos 1 deg apart whose azimuths straddle 0/360: O3's flat distance in
    detector coordinates does not pair them, the great-circle option does."""
    nl = neutrinos([CENTER[0], CENTER[0] + 0.3], CENTER[1], [0.0, 10.0])
    nl.zenith = np.array([110.0, 110.0])
    nl.azimuth = np.array([359.9, 0.2])
    o3 = model(precise).evaluate(nl, T_GW)
    gc = model(precise, pairs="great_circle").evaluate(nl, T_GW)
    assert o3.p_h_s2[0] == 0.0 and gc.p_h_s2[0] > 0.0


def test_strict_energy_prior_zeroes_events_outside_the_population_range(precise):
    nl = neutrinos(CENTER[0], CENTER[1], 0.0)
    o3 = model(precise).evaluate(nl, T_GW)
    strict = model(precise, egw_prior="strict").evaluate(nl, T_GW)  # E_gw 20: BNS range
    assert strict.odds == pytest.approx(o3.odds, rel=1e-12)  # the normalisation cancels
    as_bbh = model(precise, population="bbh", egw_prior="strict").evaluate(nl, T_GW)
    assert as_bbh.odds == 0.0 and not as_bbh.gw_energy_in_prior
    assert strict.options["egw_strict_range"] == list(C.E_GW_STRICT_RANGE["bns"])


def test_capped_background_band_changes_only_near_the_poles(precise):
    nl = neutrinos([CENTER[0], CENTER[0] + 0.2, 10.0], [CENTER[1], CENTER[1], -88.5], [0.0, 5.0, 9.0])  # fmt: skip
    o3 = model(precise).evaluate(nl, T_GW)
    capped = model(precise, background_band="capped").evaluate(nl, T_GW)
    np.testing.assert_allclose(capped.b_density[:2], o3.b_density[:2], rtol=1e-12)
    # zenith ~1.5 deg: O3's |cos(θ-δω) - cos(θ+δω)| undercounts the solid angle
    assert capped.b_density[2] < o3.b_density[2]


def test_fixed_partner_background_changes_only_doublets(precise):
    nl = neutrinos([CENTER[0], CENTER[0] + 0.3], CENTER[1], [0.0, 50.0], energy=[2e4, 3e3])
    o3 = model(precise).evaluate(nl, T_GW)
    fixed = model(precise, pair_background="fixed").evaluate(nl, T_GW)
    np.testing.assert_allclose(fixed.p_h_s1, o3.p_h_s1, rtol=1e-12)
    np.testing.assert_allclose(fixed.p_h_c, o3.p_h_c, rtol=1e-12)
    assert fixed.p_h_s2[0] > 0 and abs(fixed.p_h_s2[0] / o3.p_h_s2[0] - 1) > 1e-3


def test_full_null_term_from_p_terrestrial_and_snr_density(precise):
    from llama.science import gw_null

    nl = neutrinos(CENTER[0], CENTER[1], 0.0)
    o3 = model(precise).evaluate(nl, T_GW)
    snr = np.linspace(5.6, 9.0, 500)
    full = model(precise, null="full", p_terrestrial=0.3, snr_list=snr).evaluate(nl, T_GW)
    # P_0 = P_c p(x|H0) / (V0 ṅ g), every piece written out here
    r0 = C.K0 * math.sqrt(C.E_GW_MAX) / C.RHO_MIN
    v0_ndot = 4 / 3 * math.pi * r0**3 * C.NDOT_MPC3_S
    g = C.K0**4 * (C.E_GW_MAX - C.E_GW_MIN) / (RBAR * RHO**4 * math.log(C.E_GW_MAX / C.E_GW_MIN))
    p_emp = gw_null.empirical_snr_density(RHO, snr)  # RHO above the list: its last bin
    assert p_emp == pytest.approx(np.sum(snr > 9.0 - 3.4 / 50) / 500 / (3.4 / 50), rel=1e-9)
    p_h0 = 0.3 * (p_emp / 86400 + 3 * C.RHO_MIN**3 / RHO**4 * v0_ndot) / (1 / 86400 + v0_ndot)
    assert full.p_h_0[0] == pytest.approx(o3.p_h_c[0] * p_h0 / (v0_ndot * g), rel=1e-9)
    assert full.odds == pytest.approx(o3.odds * o3.p_h_c[0] / (o3.p_h_c[0] + full.p_h_0[0]), rel=1e-9)  # fmt: skip
    assert model(precise, null="full", p_terrestrial=0.0).evaluate(nl, T_GW).odds == pytest.approx(o3.odds)  # fmt: skip
    with pytest.raises(ValueError, match="p_terrestrial"):
        model(precise, null="full")


def test_marginal_distance_averages_the_count_over_each_pixel():
    """On a map whose distance layers vary across the sky (near on one side of the blob,
    far on the other), ``distance="marginal"`` replaces I_1(r̄) by its average over
    p(r | pix) inside the pixel sum: checked against a brute-force sum on a flat grid."""
    from scipy import integrate

    from llama.science.skymap import conditional_distance_pdf

    def mean_distance(ra, dec):  # 80 Mpc west of the peak, 400 Mpc east
        return 80.0 + 320.0 / (1.0 + np.exp(-(np.degrees(ra) - CENTER[0]) / 1.5))

    skymap = moc_map(8, 3.0, distance=(mean_distance, 30.0))
    nl = neutrinos([CENTER[0] - 3.0, CENTER[0] + 3.0], CENTER[1], [0.0, 300.0], sigma=1.0)
    o3 = model(skymap).evaluate(nl, T_GW)
    marg_model = model(skymap, distance="marginal")
    marg = marg_model.evaluate(nl, T_GW)
    assert marg.options["distance_marginal_applied"]
    # brute force: flat grid at order 8, pixel-centre PSF, I_1 averaged per pixel by quad
    flat = skymap.flatten(2**8)
    nside = flat.nside
    theta, phi = hp.pix2ang(nside, np.arange(12 * nside**2), nest=True)
    pdec = 0.5 * np.pi - theta
    prob = flat.probability()
    for k in range(2):
        r, d, s = (math.radians(x) for x in (nl.ra[k], nl.dec[k], nl.sigma[k]))
        psi = np.arccos(np.clip(np.sin(pdec) * math.sin(d) + np.cos(pdec) * math.cos(d) * np.cos(phi - r), -1, 1))  # fmt: skip
        sel = psi < 4.5 * s  # beyond, G < 4e-5 of its peak
        g = np.exp(-(psi[sel] ** 2) / (2 * s**2)) / (2 * math.pi * s**2)
        a = TABLES.energy_density(marg.energy_eval[k], 90.0 + np.degrees(pdec[sel]))
        lam_w = C.N0 * 10 * float(TABLES.zenith_weight(marg.zenith[k]))

        def i1(rr, lam_w=lam_w):
            lam = lam_w * (rr / 100.0) ** -2
            return (math.exp(-lam * C.E_NU_MIN) - math.exp(-lam * C.E_NU_MAX)) / math.log(C.E_NU_MAX / C.E_NU_MIN)  # fmt: skip

        mu, sg, nm = (np.asarray(x)[sel] for x in (flat.distmu, flat.distsigma, flat.distnorm))
        avg = np.array(
            [
                integrate.quad(
                    lambda rr, m_=m_, s_=s_, n_=n_: float(conditional_distance_pdf(rr, m_, s_, n_)) * i1(rr),
                    max(0.0, m_ - 8 * s_),
                    m_ + 8 * s_,
                )[0]
                for m_, s_, n_ in zip(mu, sg, nm, strict=True)
            ]
        )  # fmt: skip
        expect = float((prob[sel] * a * g * avg).sum()) / i1(RBAR)
        assert marg.signal_overlap[k] == pytest.approx(expect, rel=2e-2), k
    # the near side gains, the far side loses, against O3's r̄ (single-neutrino terms;
    # the two also form a doublet, whose term is averaged the same way)
    assert marg.p_h_s1[0] > o3.p_h_s1[0] and marg.p_h_s1[1] < o3.p_h_s1[1]
    assert marg.p_h_s2[0] > 0 and marg.p_h_s2[0] != o3.p_h_s2[0]


# --- batched = one by one ---------------------------------------------------------------


def test_batch_equals_individual_evaluations(precise):
    m = model(precise)
    rng = np.random.default_rng(2)
    lists = []
    for k in range(6):
        n = [3, 0, 1, 4, 2, 5][k]
        lists.append(
            (
                CENTER[0] + rng.normal(0, 1.0, n),
                CENTER[1] + rng.normal(0, 1.0, n),
                rng.uniform(0.2, 1.5, n),
                10 ** rng.uniform(3, 5, n),
                rng.uniform(-400, 400, n),
            )
        )
    cat = [np.concatenate([lst[q] for lst in lists]) for q in range(5)]
    offsets = np.cumsum([0] + [lst[0].size for lst in lists])
    batch = m.evaluate_batch(*cat, np.full(cat[0].size, np.nan), offsets)
    assert np.any(batch.terms["p_h_s2"] > 0)
    for k, (ra, dec, sig, en, dt) in enumerate(lists):
        one = m.evaluate_batch(ra, dec, sig, en, dt, np.full(ra.size, np.nan), [0, ra.size])
        assert batch.odds[k] == pytest.approx(one.odds[0], rel=1e-12, abs=0)
    assert batch.odds[1] == 0.0


# --- map forms --------------------------------------------------------------------------


def test_flat_and_multi_order_agree_within_one_percent():
    moc = moc_map(8, 1.5)
    flat = moc.flatten(2**8)  # the same piecewise-constant density on a flat grid
    nl = neutrinos(
        [CENTER[0], CENTER[0] + 1.0, CENTER[0] - 2.0, CENTER[0] + 0.1],
        [CENTER[1], CENTER[1] + 0.5, CENTER[1] - 1.0, CENTER[1] + 0.1],
        [0.0, 100.0, -200.0, 30.0],
        sigma=[0.2, 0.5, 1.0, 0.3],
    )
    a = model(moc).evaluate(nl, T_GW)
    b = model(flat).evaluate(nl, T_GW)
    assert np.any(a.p_h_s2 > 0)  # pairs included
    np.testing.assert_allclose(b.odds_ratio, a.odds_ratio, rtol=1e-2)
    assert b.odds == pytest.approx(a.odds, rel=1e-2)


def test_overlap_rtol_is_an_option(precise):
    """A tighter overlap tolerance moves the odds by less than the default's 1% bound,
    is recorded in the options, and nonsense is refused."""
    from kernels.overlap import RTOL

    nl = neutrinos([CENTER[0], CENTER[0] + 0.5, CENTER[0] + 3.0], CENTER[1], [0.0, 30.0, 60.0])
    default = model(precise).evaluate(nl, T_GW)
    tight = model(precise, overlap_rtol=1e-5).evaluate(nl, T_GW)
    assert default.options["overlap_rtol"] == RTOL
    assert tight.options["overlap_rtol"] == 1e-5
    np.testing.assert_allclose(default.psf_overlap, tight.psf_overlap, rtol=RTOL)
    assert default.odds == pytest.approx(tight.odds, rel=RTOL)
    for bad in (0.0, 1.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="overlap_rtol"):
            model(precise, overlap_rtol=bad)


# --- the reviewers' scenarios ---------------------------------------------------------


@pytest.mark.parametrize(
    "population,rho,rbar", [("bns", 12.0, 150.0), ("bbh", 12.0, 800.0)], ids=["BNS", "BBH"]
)
def test_reviewer_scenarios_order(precise, coarse, population, rho, rbar):
    """a > b > e > c and d ≈ 0 for ordinary events (SNR 12 at 150 Mpc, and at 800 Mpc)."""
    far = (CENTER[0] + 60.0, CENTER[1])  # 56 deg from the peak
    on = CENTER
    scen = {
        "a": (precise, on, 0.0),
        "b": (coarse, on, 0.0),
        "c": (precise, far, 0.0),
        "d": (precise, on, 600.0),
        "e": (coarse, far, 0.0),
    }
    odds = {
        k: model(m, rho, rbar, population).evaluate(neutrinos(p[0], p[1], dt), T_GW).odds
        for k, (m, p, dt) in scen.items()
    }
    assert odds["a"] > odds["b"] > odds["e"] > odds["c"] >= 0.0, odds
    assert odds["d"] == 0.0
    assert odds["a"] > 1.0 > 1e-3 > odds["c"]  # a coincidence is evidence; a miss is not


# --- degrees to radians ---------------------------------------------------------------


def test_radians_are_numpys_bit_for_bit():
    """The pair terms' and overlaps' conversion (a multiply by pi / 180) gives NumPy's
    radians to the bit: over random bit patterns (every magnitude, subnormals, both
    signs), angles of a few turns, and the special values."""
    from llama.science.odds import _radians

    rng = np.random.default_rng(8)
    patterns = rng.integers(0, 2**63 - 1, 500_000, dtype=np.int64).view(np.float64)
    angles = rng.uniform(-720.0, 720.0, 500_000)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 5e-324, 180.0, 360.0, -90.0])
    for x in (patterns, -patterns, angles, special):
        with np.errstate(invalid="ignore"):  # signalling NaNs among the patterns, both ways
            got, want = _radians(x), np.radians(x)
        assert got.dtype == np.float64
        same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
        assert same.all()
    assert np.isnan(_radians([np.nan])).all()
    assert _radians([90]).tolist() == [math.pi / 2]  # lists and integers as NumPy takes them
