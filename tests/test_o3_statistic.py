"""The default statistic (model o3) term by term against the independent reference.

``tests/o3_reference.py`` was written from SCIENCE.md alone, with no code shared with
``llama/science/odds.py``, its background kernels or the overlap kernels: plain numpy
sums over a flattened map, PSF at pixel centres, count integrals by adaptive
quadrature. Both read the same O3 tables and background sample. On maps fine enough
to resolve every sigma (pixels < sigma / 4) the two must agree within 5% term by term
(SCIENCE.md: a few per cent at most, from our exact PSF integrals replacing O3's
pixel sums); the background terms are counts and must agree exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import healpy as hp
import numpy as np
import o3_reference as ref
import pytest
from test_odds import flat_map

from llama.science.background import load_background_sample
from llama.science.neutrinos import NeutrinoList
from llama.science.odds import EventModel
from llama.science.skymap import read_sky_map
from llama.science.times import gps_to_mjd, iso_to_gps

T_GW = 1_240_215_503.0  # GPS s (2019-04-25)
T_GW_MJD = float(gps_to_mjd(T_GW))
BACKGROUND = load_background_sample()  # the shipped sample, for both implementations
RTOL = 0.05


def make_list(rows) -> NeutrinoList:
    """rows: (ra, dec, sigma, energy, dt) per neutrino, in list order."""
    ra, dec, sigma, energy, dt = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    return NeutrinoList(
        mjd=gps_to_mjd(T_GW + dt), ra=ra, dec=dec, sigma=sigma, energy=energy, complete=True
    )


# Three maps x lists chosen to reach every branch: doublets (several sharing a first
# member, one whose spread exceeds 500 s), |dt| > 500 s, energies from 30 GeV to 1e8 GeV
# (raised to the band minimum, moved x10 and /10, the 3.7 correction above 80 deg),
# north and south, and neutrinos far from the map.
CASES = {
    "compact-north": (
        (9, 1.0, (120.0, 20.0)),  # flat order 9 (0.11 deg pixels), 1 deg blob
        [
            (120.3, 20.2, 0.5, 3e3, 10.0),
            (120.5, 19.9, 0.8, 2e4, -120.0),
            (119.6, 20.4, 0.6, 40.0, 200.0),
            (121.5, 21.0, 1.0, 8e5, 400.0),
            (125.0, 18.0, 2.0, 1.5e3, 520.0),  # outside the window: T = 0
            (200.0, -40.0, 1.0, 5e4, 30.0),  # far from the map
        ],
    ),
    "wide-south": (
        (9, 10.0, (300.0, -45.0)),
        [
            (298.0, -44.0, 2.5, 1e5, -300.0),
            (301.0, -46.5, 3.0, 3e6, 100.0),
            (305.0, -40.0, 1.5, 1e8, 0.0),
            (290.0, -50.0, 0.7, 30.0, 250.0),
        ],
    ),
    "horizon": (
        (9, 4.0, (45.0, -8.0)),  # zenith ~82 deg: the (eps_i/eps)^3.7 branch
        [
            (45.5, -8.5, 1.2, 2e5, 50.0),
            (44.0, -7.0, 1.5, 6e2, 60.0),
            (46.0, -9.5, 0.9, 9e6, -450.0),
        ],
    ),
}


# BAYESTAR maps (tests/data/bayestar), flattened to order 9 for the reference's pixel
# sums (both implementations get the same flat map); neutrinos placed around the
# map's most probable pixel, in (offset ra, offset dec, sigma, energy, dt).
BAYESTAR = Path(__file__).parent / "data" / "bayestar"
BAYESTAR_CASES = {
    "bayestar-bns-1": [
        (0.2, -0.3, 0.6, 5e3, 30.0),
        (-0.8, 0.5, 1.0, 2e5, -100.0),
        (1.5, 1.0, 2.5, 800.0, 240.0),
        (40.0, 10.0, 0.8, 1e4, 0.0),
    ],
    "bayestar-bbh-2": [
        (0.0, 0.0, 1.5, 3e4, -20.0),
        (2.0, -1.0, 3.0, 2e3, 150.0),
        (-3.0, 2.0, 0.7, 6e5, 350.0),
    ],
}


def bayestar_case(name):
    event = json.loads((BAYESTAR / "events.json").read_text())[name.removeprefix("bayestar-")]
    skymap = read_sky_map(BAYESTAR / f"{name.removeprefix('bayestar-')}.fits").flatten(512)
    peak = int(np.argmax(skymap.probability()))
    ra0, dec0 = hp.pix2ang(skymap.nside, peak, nest=True, lonlat=True)
    rows = [(ra0 + dra, dec0 + ddec, *rest) for dra, ddec, *rest in BAYESTAR_CASES[name]]
    return skymap, rows, event["network_snr"], event["distmean_mpc"], event["population"]


# The README's examples: a simulated event with its injected list (the injection and
# three background neutrinos), at the example's own time.
EXAMPLES = Path(__file__).resolve().parents[1] / "llama" / "examples"


def example_case(graceid):
    info = json.loads((EXAMPLES / "events" / graceid / "skymap_info.json").read_text())
    skymap = read_sky_map(EXAMPLES / "events" / graceid / "lvc_skymap.fits")
    nl = NeutrinoList.read(EXAMPLES / "neutrinos" / f"inj-{graceid}.json")
    nl.zenith = nl.azimuth = None  # the simulation writes 90 + dec: take astropy's, as O3
    rbar = float(skymap.meta["distmean"])
    return skymap.flatten(512), nl, info["snr"], rbar, iso_to_gps(info["event_time_iso"])


@pytest.fixture(
    scope="module", params=sorted(CASES) + sorted(BAYESTAR_CASES) + ["example-S190425g"]
)
def case(request):
    t_gw = T_GW
    if request.param.startswith("example-"):
        skymap, nl, rho, rbar, t_gw = example_case(request.param.removeprefix("example-"))
        population = "bbh"
    elif request.param in CASES:
        (order, sigma_map, centre), rows = CASES[request.param]
        skymap, rho, rbar, population = flat_map(order, sigma_map, centre), 12.0, 150.0, "bns"
    else:
        skymap, rows, rho, rbar, population = bayestar_case(request.param)
    if not request.param.startswith("example-"):
        nl = make_list(rows)
    t_mjd = float(gps_to_mjd(t_gw))
    model = EventModel(skymap, rho, rbar, population, t_gw_mjd=t_mjd, background=BACKGROUND)
    ours = model.evaluate(nl, t_gw)
    theirs = ref.opa_reference(
        skymap.probability(),
        skymap.nside,
        {"mjd": nl.mjd, "ra": nl.ra, "dec": nl.dec, "sigma": nl.sigma, "energy": nl.energy},
        t_mjd,
        rho,
        rbar,
        BACKGROUND.zenith_sorted,
        BACKGROUND.energy_by_zenith,
    )
    return request.param, ours, theirs


def test_detector_frame_and_background_agree_exactly(case):
    name, ours, theirs = case
    np.testing.assert_allclose(ours.zenith, theirs["zenith"], atol=1e-9)
    np.testing.assert_allclose(ours.azimuth, theirs["azimuth"], atol=1e-9)
    np.testing.assert_allclose(ours.dt, theirs["dt"], atol=1e-3)
    np.testing.assert_allclose(ours.energy_eval, theirs["energy_eval"], rtol=1e-12)
    np.testing.assert_allclose(ours.b_density, theirs["b_density"], rtol=1e-12)


def test_every_term_within_five_percent(case):
    name, ours, theirs = case
    for term in ("psf_overlap", "signal_overlap", "p_h_s1", "p_h_s2", "p_h_c", "odds_ratio"):
        got, want = getattr(ours, term), np.asarray(theirs[term])
        finite = want[np.isfinite(want)]
        tiny = want < 1e-9 * max(finite.max(initial=0.0), 1e-300)  # PSF tails underflow
        ok = tiny | np.isclose(got, want, rtol=RTOL, atol=0.0, equal_nan=True)  # B_j = 0: inf, NaN
        assert ok.all(), (name, term, got, want)
    assert ours.odds == pytest.approx(theirs["event_odds_ratio"], rel=RTOL, abs=0)
    assert ours.odds > 0


def test_cases_exercise_the_quirks(case):
    """The comparison above means something only if the branches were taken."""
    name, ours, theirs = case
    pairs = theirs["pairs"]
    if name == "compact-north":
        assert sum(p["t_ij"] > 0 for p in pairs) >= 3  # several doublets in the window
        assert len({p["i"] for p in pairs}) < len(pairs)  # one first member, two partners
        assert ours.p_h_s1[4] == 0.0  # |dt| > 500 s
        assert ours.energy_eval[2] > ours.energy[2]  # 40 GeV raised to the band minimum
        # O3's partner slip: a low-energy partner clamped to the primary's band and moved
        # away from the sample (the primary's energy decides) ends with B_j = 0: +inf kept
        assert np.isinf(ours.odds_ratio).any()
    if name == "horizon":
        assert np.any(ours.zenith > 80.0)


def test_handler_takes_replacement_signal_tables(tmp_path, monkeypatch):
    """LLAMA_SIGNAL_TABLES swaps O3's a(eps, theta) and w(theta) for a file of the same
    layout: the handler's odds are then the model's with that file (recorded in the
    significance file), and differ from the default's where w enters <n>."""
    import shutil

    from llama.event import Event
    from llama.handler import Status
    from llama.handlers.coinc import CoincSignificanceI3Lvc
    from llama.pipeline import select_pipeline
    from llama.science.signal_tables import DEFAULT_SIGNAL_TABLES, load_signal_tables

    ev = Event(tmp_path / "S190425g-inj", flags={"ONLINE": "false"})
    for name in ("skymap_info.json", "lvc_skymap.fits"):
        shutil.copy(EXAMPLES / "events" / "S190425g" / name, ev.path(name))
    shutil.copy(EXAMPLES / "neutrinos" / "inj-S190425g.json", ev.path("icecube_neutrino_list.json"))
    for handler in select_pipeline(with_ancestors=["CoincSignificanceI3Lvc"]):
        if ev.status(handler) is Status.READY and handler is not CoincSignificanceI3Lvc:
            ev.generate(handler)
    monkeypatch.setenv("LLAMA_N_TRIALS", "10")
    default = CoincSignificanceI3Lvc(ev).significance()
    tables = json.loads(DEFAULT_SIGNAL_TABLES.read_text())
    tables["zenith_weight"]["values"] = [3.0 * v for v in tables["zenith_weight"]["values"]]
    mine = tmp_path / "my_tables.json"
    mine.write_text(json.dumps(tables))
    monkeypatch.setenv("LLAMA_SIGNAL_TABLES", str(mine))
    data = CoincSignificanceI3Lvc(ev).significance()
    assert default["inputs"]["options"]["signal_tables"] == str(DEFAULT_SIGNAL_TABLES)
    assert data["inputs"]["options"]["signal_tables"] == str(mine)
    inputs = data["inputs"]
    t_gw = iso_to_gps(inputs["skymap_info"]["event_time_iso"])
    model = EventModel(
        read_sky_map(ev.path("lvc_skymap.fits")), inputs["snr"], inputs["distmean_mpc"],
        inputs["population"], t_gw_mjd=float(gps_to_mjd(t_gw)),
        p_terrestrial=inputs["p_astro"]["Terrestrial"], signal_tables=load_signal_tables(mine),
    )  # fmt: skip
    want = model.evaluate(NeutrinoList.read(ev.path("icecube_neutrino_list.json")), t_gw).odds
    got = data["outputs"]["neutrino_gw_combined"]["odds_ratio"]
    assert got == pytest.approx(want, rel=1e-9, abs=0.0)
    assert got != pytest.approx(
        default["outputs"]["neutrino_gw_combined"]["odds_ratio"], rel=1e-3, abs=0.0
    )


def test_pair_overlap_of_a_wide_pair_in_the_map_tail():
    """S_ij of the README example S190425h's neutrinos 3 and 6 (15.3 deg apart, sigma
    0.98 and 2.94 deg, ~1e-10 of the map's scale) against a brute-force pixel sum at
    NSIDE 2048 (the map's finest order is 8, so its pixels are exact there): found by
    comparing every example term by term with the reference (odds of that neutrino
    5.9e-12 against the event's 1.9e-3, so the event statistic moves by 1e-9)."""
    moc = read_sky_map(EXAMPLES / "events" / "S190425h" / "lvc_skymap.fits")
    nl = NeutrinoList.read(EXAMPLES / "neutrinos" / "inj-S190425h.json")
    ra, dec, sigma = (np.asarray(getattr(nl, k))[[3, 6]] for k in ("ra", "dec", "sigma"))
    eps_i, eps_j = 96517.64380561435, 8921.70196819783  # O3's evaluation energies
    model = EventModel(moc, 12.0, 150.0, background=BACKGROUND)
    ours = model.pair_overlap(
        np.radians(ra), np.radians(dec), np.radians(sigma),
        np.array([eps_i]), np.array([eps_j]), np.array([0]), np.array([1]),
    )[0]  # fmt: skip
    assert moc.max_order <= 8
    coarse = moc.flatten(256)
    fine = 2048
    pix = hp.query_disc(fine, hp.ang2vec(ra[0], dec[0], lonlat=True), np.radians(25.0), nest=True)
    prob = coarse.probability()[pix // (fine // 256) ** 2] / (fine // 256) ** 2
    vec = np.array(hp.pix2vec(fine, pix, nest=True)).T
    zenith = 90.0 + hp.pix2ang(fine, pix, nest=True, lonlat=True)[1]
    brute = np.sum(
        prob * ref.signal_density(eps_i, zenith) * ref.signal_density(eps_j, zenith)
        * ref.psf(vec, ra[0], dec[0], sigma[0]) * ref.psf(vec, ra[1], dec[1], sigma[1])
    )  # fmt: skip
    assert ours == pytest.approx(brute, rel=RTOL, abs=0.0)
