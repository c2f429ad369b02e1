"""The statistic assembled (llama/science/odds.py): formulas, scenarios, map forms.

Helpers here (synthetic maps, a seeded background sample, simple A_eff tables) are
shared with test_pvalue.py.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest

from llama.science import constants as C
from llama.science.background import BackgroundDensity
from llama.science.neutrinos import NeutrinoList
from llama.science.odds import EventModel, compute_odds, gw_energy_prior
from llama.science.skymap import SkyMap, moments_to_parameters, order_ipix_to_uniq
from llama.science.times import gps_to_mjd

T_GW = 1_240_215_503.0  # GPS s
RHO, RBAR = 10.0, 40.0  # E_gw = (40 * 10 / 400.8)^2 ~ 1: inside the O3 prior
CENTER = (120.0, 20.0)  # map peak (ra, dec) [deg]

# A simple, smooth A_eff [m^2] (rises with energy, more in the north) and w(theta):
# chosen here so these tests do not depend on the shipped parametrisation.
LOG10E_EDGES = np.arange(1.0, 9.01, 0.5)
SINDEC_EDGES = np.linspace(-1.0, 1.0, 19)
_lc = 0.5 * (LOG10E_EDGES[1:] + LOG10E_EDGES[:-1])
_sc = 0.5 * (SINDEC_EDGES[1:] + SINDEC_EDGES[:-1])
AEFF = 10 ** (0.5 * (_lc[:, None] - 3.0)) * (1.0 + 0.5 * _sc[None, :])
EFFECTIVE_AREA = (LOG10E_EDGES, SINDEC_EDGES, AEFF)


def zenith_weight(theta_deg):
    """Test w(theta): 0.5 at the zenith/nadir, 1 at the horizon."""
    return 0.5 + 0.5 * np.sin(np.radians(np.asarray(theta_deg, dtype=float))) ** 2


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
    if distance is not None:
        mu, sig, norm = moments_to_parameters(np.full(order.size, distance[0]), distance[1])
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


def model(skymap, **kw) -> EventModel:
    kw.setdefault("effective_area", EFFECTIVE_AREA)
    kw.setdefault("zenith_weight", zenith_weight)
    kw.setdefault("background", BACKGROUND)
    return EventModel(skymap, RHO, RBAR, "bns", **kw)


@pytest.fixture(scope="module")
def precise():
    return moc_map(9, 1.0)


@pytest.fixture(scope="module")
def coarse():
    return moc_map(6, 15.0)


# --- the formulas ---------------------------------------------------------------------


def _brute_weighted_overlap(skymap_flat, ra, dec, sigma_deg, energy):
    """S_i by brute force on a flat map (pixel-centre sums): rho * area * A_eff * G."""
    nside = skymap_flat.nside
    theta, phi = hp.pix2ang(nside, np.arange(12 * nside**2), nest=True)
    pdec = 0.5 * np.pi - theta
    prob = skymap_flat.probability()
    r, d, s = math.radians(ra), math.radians(dec), math.radians(sigma_deg)
    cos_psi = np.sin(pdec) * math.sin(d) + np.cos(pdec) * math.cos(d) * np.cos(phi - r)
    psi = np.arccos(np.clip(cos_psi, -1, 1))
    g = np.exp(-(psi**2) / (2 * s**2)) / (2 * math.pi * s**2)
    ie = np.searchsorted(LOG10E_EDGES, math.log10(energy), side="right") - 1
    js = np.clip(np.searchsorted(SINDEC_EDGES, np.sin(pdec), side="right") - 1, 0, len(_sc) - 1)
    return float((prob * AEFF[ie, js] * g).sum()), float((prob * g).sum())


def test_single_neutrino_terms_match_the_formulas():
    skymap = flat_map(8, 2.0)
    ra, dec, dt, sig, en = 121.0, 21.0, 120.0, 1.0, 3e4
    res = compute_odds(
        skymap,
        neutrinos(ra, dec, dt, sig, en),
        T_GW,
        RHO,
        RBAR,
        effective_area=EFFECTIVE_AREA,
        zenith_weight=zenith_weight,
        background=BACKGROUND,
    )
    s_i, ov = _brute_weighted_overlap(skymap, ra, dec, sig, en)
    zen = 90.0 + dec
    t_i = 500.0 - abs(dt)
    e_gw = (RBAR * RHO / C.K0) ** 2
    p_egw = 1 / (e_gw * math.log(C.E_GW_MAX / C.E_GW_MIN))
    a = C.N0 * 10 * (RBAR / 100.0) ** -2 * float(zenith_weight(zen))
    i1 = (math.exp(-a * C.E_NU_MIN) - math.exp(-a * C.E_NU_MAX)) / math.log(C.E_NU_MAX / C.E_NU_MIN)
    common = C.NDOT_MPC3_S * RBAR**2 * p_egw
    p_s1 = common / C.BEAMING_FACTOR * s_i * t_i * i1 / 1000.0**2
    b_i = BACKGROUND.density(np.array([zen]), np.array([en]))[0]
    p_c = common * C.NU_BACKGROUND_RATE_HZ * b_i
    assert res.psf_overlap[0] == pytest.approx(ov, rel=1e-2)
    assert res.p_h_s1[0] == pytest.approx(p_s1, rel=1e-2)
    assert res.p_h_c[0] == pytest.approx(p_c, rel=1e-12)
    assert res.p_h_0[0] == 0.0 and res.p_h_s2[0] == 0.0
    assert res.odds == pytest.approx(p_s1 / p_c, rel=1e-2)
    assert res.dt[0] == pytest.approx(dt, abs=1e-3)
    assert gw_energy_prior(RBAR, RHO) == pytest.approx(p_egw, rel=1e-12)


def test_pair_term_enters_both_partners(precise):
    m = model(precise)
    dts = [0.0, 50.0]
    single = [
        m.evaluate(neutrinos(CENTER[0] + d, CENTER[1], t), T_GW)
        for d, t in zip((0, 0.3), dts, strict=True)
    ]
    both = m.evaluate(neutrinos([CENTER[0], CENTER[0] + 0.3], CENTER[1], dts), T_GW)
    assert np.all(both.p_h_s2 > 0)
    np.testing.assert_allclose(both.p_h_s1, [s.p_h_s1[0] for s in single], rtol=1e-9)
    # P_s2,ij = base / B_j and P_s2,ji = base / B_i: their ratio is B_i / B_j.
    b = both.p_h_c / (m.common * C.NU_BACKGROUND_RATE_HZ)
    assert both.p_h_s2[0] / both.p_h_s2[1] == pytest.approx(b[0] / b[1], rel=1e-9)
    # Far apart on the sky (> 5 (sigma_i + sigma_j)): no pair term.
    apart = m.evaluate(neutrinos([CENTER[0], CENTER[0] + 10.0], CENTER[1], dts), T_GW)
    assert np.all(apart.p_h_s2 == 0)


def test_full_null_term_scales_the_denominator(precise):
    nl = neutrinos(CENTER[0], CENTER[1], 0.0)
    o3 = model(precise).evaluate(nl, T_GW)
    full = model(precise, null_term="full", p_terrestrial=0.2).evaluate(nl, T_GW)
    assert full.p_h_0[0] == pytest.approx(o3.p_h_c[0] * 0.25, rel=1e-12)
    assert full.odds == pytest.approx(o3.odds / 1.25, rel=1e-12)
    with pytest.raises(ValueError):
        model(precise, null_term="full")


def test_vmf_equals_gaussian_for_small_sigma(precise):
    nl = neutrinos([CENTER[0], CENTER[0] + 0.5], [CENTER[1], CENTER[1] - 0.3], [0.0, 30.0])
    g = model(precise, psf="gaussian").evaluate(nl, T_GW)
    v = model(precise, psf="vmf").evaluate(nl, T_GW)
    np.testing.assert_allclose(v.odds_ratio, g.odds_ratio, rtol=1e-2)


def test_distance_aware_uniform_layers_change_nothing():
    # Every pixel has the same p(r | pix): conditioning on r-bar leaves the sky as it is.
    m = moc_map(8, 2.0, distance=(RBAR, 10.0))
    nl = neutrinos([CENTER[0], CENTER[0] + 2.0], CENTER[1], [0.0, 100.0])
    plain = model(m).evaluate(nl, T_GW)
    aware_model = model(m, distance_aware=True)
    aware = aware_model.evaluate(nl, T_GW)
    assert aware_model.distance_aware
    assert float((m.probability() * aware_model.pixel_weight).sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(aware.odds_ratio, plain.odds_ratio, rtol=1e-3)


def test_gw_energy_outside_prior_gives_zero():
    m = EventModel(moc_map(7, 2.0), 30.0, 1000.0, "bbh", effective_area=EFFECTIVE_AREA,
                   zenith_weight=zenith_weight, background=BACKGROUND)  # fmt: skip
    res = m.evaluate(neutrinos(CENTER[0], CENTER[1], 0.0), T_GW)
    assert not res.gw_energy_in_prior
    assert res.odds == 0.0


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


# --- batched = one by one ---------------------------------------------------------------


def test_batch_equals_individual_evaluations(precise):
    m = model(precise)
    rng = np.random.default_rng(2)
    lists = []
    for k in range(6):
        n = [3, 0, 1, 4, 2, 5][k]
        ra = CENTER[0] + rng.normal(0, 1.0, n)
        dec = CENTER[1] + rng.normal(0, 1.0, n)
        lists.append(
            (
                ra,
                dec,
                rng.uniform(0.2, 1.5, n),
                10 ** rng.uniform(3, 5, n),
                rng.uniform(-400, 400, n),
            )
        )
    cat = [np.concatenate([lst[q] for lst in lists]) for q in range(5)]
    offsets = np.cumsum([0] + [lst[0].size for lst in lists])
    zen = 90.0 + cat[1]
    batch = m.evaluate_batch(*cat, zen, offsets)
    for k, (ra, dec, sig, en, dt) in enumerate(lists):
        one = m.evaluate_batch(ra, dec, sig, en, dt, 90.0 + dec, [0, ra.size])
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
    assert np.all(a.p_h_s2 > 0)  # pairs included
    np.testing.assert_allclose(b.odds_ratio, a.odds_ratio, rtol=1e-2)
    assert b.odds == pytest.approx(a.odds, rel=1e-2)


# --- the reviewers' scenarios ---------------------------------------------------------


def test_reviewer_scenarios_order(precise, coarse):
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
        k: model(m).evaluate(neutrinos(p[0], p[1], dt), T_GW).odds for k, (m, p, dt) in scen.items()
    }
    assert odds["a"] > odds["b"] > odds["e"] > odds["c"] >= 0.0
    assert odds["d"] == 0.0
    assert odds["a"] > 1e3 * odds["e"]


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
