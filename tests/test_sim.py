"""Synthetic data: sky maps, neutrinos, events, the shipped tables and background sample."""

from __future__ import annotations

import numpy as np
import pytest

from llama.science import constants as C
from llama.science.background import DEFAULT_BACKGROUND_SAMPLE
from llama.science.sim import (
    BACKGROUND_SAMPLE_SEED,
    BACKGROUND_SAMPLE_SIZE,
    make_graceid,
    simulate_background_neutrinos,
    simulate_background_sample,
    simulate_event,
    simulate_signal_neutrino,
    simulate_skymap,
)
from llama.science.skymap import read_sky_map, write_sky_map


@pytest.mark.parametrize("sigma", [0.5, 2.0, 8.0])
def test_skymap_normalised_and_area90_scales_with_sigma(sigma):
    m = simulate_skymap(np.random.default_rng(0), 200.0, -40.0, sigma_deg=sigma, max_order=10)
    assert m.is_moc and m.max_order == 10
    assert m.probability().sum() == pytest.approx(1.0, abs=1e-12)
    expected = np.pi * (C.R90_PER_SIGMA * sigma) ** 2
    assert m.area90() == pytest.approx(expected, rel=0.05)
    assert m.distance_moments() == (400.0, 120.0)


def test_skymap_rows_and_area90_option():
    m = simulate_skymap(np.random.default_rng(0), 10, 10, area90_deg2=500.0, max_order=11)
    assert 3000 <= len(m) <= 20000
    assert m.area90() == pytest.approx(500.0, rel=0.05)
    with pytest.raises(ValueError, match="exactly one"):
        simulate_skymap(np.random.default_rng(0), 10, 10, max_order=5)


def test_skymap_peaks_at_requested_direction():
    import healpy as hp

    from llama.science.skymap import uniq_to_order_ipix

    m = simulate_skymap(np.random.default_rng(0), 123.0, 45.0, sigma_deg=1.0, max_order=9)
    order, ipix = uniq_to_order_ipix(m.uniq[np.argmax(m.probdensity)])
    ra, dec = hp.pix2ang(2 ** int(order), int(ipix), nest=True, lonlat=True)
    assert abs(ra - 123.0) < 0.5 and abs(dec - 45.0) < 0.5


def test_skymap_multiple_blobs_and_seed_reproduces(tmp_path):
    a = simulate_skymap(np.random.default_rng(5), 0, 0, sigma_deg=3, n_blobs=3, max_order=7)
    b = simulate_skymap(np.random.default_rng(5), 0, 0, sigma_deg=3, n_blobs=3, max_order=7)
    np.testing.assert_array_equal(a.uniq, b.uniq)
    np.testing.assert_array_equal(a.probdensity, b.probdensity)
    assert a.area90() > 2 * np.pi * (C.R90_PER_SIGMA * 3) ** 2 * 0.5
    write_sky_map(tmp_path / "m.fits.gz", a)
    r = read_sky_map(tmp_path / "m.fits.gz")
    np.testing.assert_allclose(r.probdensity, a.probdensity)


def test_simulated_map_reads_in_ligo_skymap(tmp_path):
    lfits = pytest.importorskip("ligo.skymap.io.fits")
    from ligo.skymap.postprocess import find_greedy_credible_levels

    m = simulate_skymap(np.random.default_rng(1), 30, 30, area90_deg2=200.0, max_order=8)
    write_sky_map(tmp_path / "m.fits", m)
    prob, meta = lfits.read_sky_map(str(tmp_path / "m.fits"), nest=True)
    assert prob.sum() == pytest.approx(1.0)
    cls = find_greedy_credible_levels(prob)
    area = (cls <= 0.9).sum() * 4 * np.pi / len(prob) * (180 / np.pi) ** 2
    assert area == pytest.approx(m.area90(), rel=0.05)
    assert meta["distmean"] == pytest.approx(m.meta["distmean"])


def test_background_count_mean_is_6_4():
    counts = [
        len(simulate_background_neutrinos(np.random.default_rng(s), 58598.0)) for s in range(4000)
    ]
    # Poisson(6.4): the mean of 4000 draws has sd 0.04.
    assert np.mean(counts) == pytest.approx(6.4, abs=0.15)
    assert np.var(counts) == pytest.approx(6.4, rel=0.1)


def test_background_neutrino_properties():
    t0 = 58598.5
    lists = [simulate_background_neutrinos(np.random.default_rng(s), t0) for s in range(300)]
    dt = np.concatenate([nl.dt_seconds(t0) for nl in lists])
    dec = np.concatenate([nl.dec for nl in lists])
    sigma = np.concatenate([nl.sigma for nl in lists])
    energy = np.concatenate([nl.energy for nl in lists])
    assert np.all(np.abs(dt) <= 500.0)
    assert sigma.min() >= 0.2 and sigma.max() <= 3.0
    # horizon-peaked: more events within |sin dec| < 0.3 than a uniform 30%
    assert np.mean(np.abs(np.sin(np.radians(dec))) < 0.3) > 0.5
    north = np.log10(energy[dec > 20])
    south = np.log10(energy[dec < -20])
    assert 2.5 < np.median(north) < 3.5 and 4.0 < np.median(south) < 5.0
    nl = lists[0]
    np.testing.assert_allclose(nl.zenith_deg, 90 + nl.dec)
    assert np.all(np.diff(nl.mjd) >= 0)


def test_background_neutrinos_seed_reproduces():
    a = simulate_background_neutrinos(np.random.default_rng(9), 58598.0)
    b = simulate_background_neutrinos(np.random.default_rng(9), 58598.0)
    assert a.to_json() == b.to_json()


def test_signal_neutrino_follows_map():
    rng = np.random.default_rng(3)
    m = simulate_skymap(rng, 80.0, -20.0, sigma_deg=1.0, max_order=9)
    nus = [simulate_signal_neutrino(rng, m, 58598.0, sigma_deg=0.2) for _ in range(200)]
    ra = np.array([n.ra[0] for n in nus])
    dec = np.array([n.dec[0] for n in nus])
    cosd = np.sin(np.radians(dec)) * np.sin(np.radians(-20)) + np.cos(np.radians(dec)) * np.cos(
        np.radians(-20)
    ) * np.cos(np.radians(ra - 80))
    sep = np.degrees(np.arccos(np.clip(cosd, -1, 1)))
    # true direction ~ 1 deg blob, smeared by 0.2 deg: 90% within ~2.2 deg
    assert np.quantile(sep, 0.9) < 2.6
    assert all(n.type[0] == "injected" for n in nus)
    assert all(abs(n.dt_seconds(58598.0)[0]) <= 250.0 for n in nus)


def test_event_info_and_reproducible():
    a = simulate_event(np.random.default_rng(11), max_order=6, inject=True)
    b = simulate_event(np.random.default_rng(11), max_order=6, inject=True)
    assert a.skymap_info == b.skymap_info and a.graceid == b.graceid
    info = a.skymap_info
    assert info["graceid"].startswith("S") and len(info["graceid"]) >= 8
    assert info["notice_time_iso"] > info["event_time_iso"]
    assert 1e-10 <= info["far"] <= 1e-7
    assert a.skymap.meta["objid"] == a.graceid
    assert list(a.neutrinos.type).count("injected") == 1


def test_make_graceid():
    assert make_graceid(1240215503.0, 0) == "S190425a"
    assert make_graceid(1240215503.0, 25) == "S190425z"
    assert make_graceid(1240215503.0, 27) == "S190425ab"


# --- shipped data files ------------------------------------------------------------------------


def test_background_sample_file_matches_generator():
    with np.load(DEFAULT_BACKGROUND_SAMPLE) as f:
        zen, en = f["zenith"], f["energy"]
        assert int(f["seed"]) == BACKGROUND_SAMPLE_SEED
    assert len(zen) == BACKGROUND_SAMPLE_SIZE
    z2, e2 = simulate_background_sample(BACKGROUND_SAMPLE_SIZE, BACKGROUND_SAMPLE_SEED)
    # equal to rounding: libm's arccos/exp may differ in the last bit across platforms
    np.testing.assert_allclose(zen, z2, rtol=1e-12)
    np.testing.assert_allclose(en, e2, rtol=1e-12)
