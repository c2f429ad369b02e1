"""Background-kind trials decided by bounds (llama.science.background_trials) against
the exact statistic.

The bounds of S (kernels.density_bounds) are checked against the exact kernel on
thousands of random neutrinos, against a brute-force pixel sum at fine resolution and
against the analytic overlap of a uniform map; the p-values of trial_pvalues' default
path against method="exact" with the same seed on BAYESTAR maps of tests/data/bayestar
(a 4 deg² BNS, a 53 deg² and a 754 deg² BBH), lists with doublets included; and the
refinement (a coarse kernel look, the exact S_i, exact doublet terms, then the whole
statistic) with thresholds set at trials' own exact values, so that every level runs.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest
from bayestar_events import bayestar_model

import kernels.overlap as KO
from kernels import density_bounds as KB
from kernels.overlap import psf_norm
from llama.science.background_trials import BackgroundTrials, SkyBounds
from llama.science.fast_trials import SCREEN_FLOOR, TrialScreen
from llama.science.pvalue import _background_draws, _sample_terms, trial_pvalues
from llama.science.signal_tables import SINDEC_EDGES
from llama.science.sim import simulate_background_neutrinos, simulate_signal_neutrino
from llama.science.skymap import SkyMap
from llama.science.times import mjd_to_gps

_model = bayestar_model


def _neutrinos(model, n, seed):
    """n background-sample neutrinos (ra, dec, sigma [rad], a rows), the first half
    moved to directions drawn from the map (where S is large)."""
    rng = np.random.default_rng(seed)
    lists, pick = _background_draws(model.background)(rng, n)
    terms = _sample_terms(model, model.background)
    ra, dec, sig = np.radians(lists[0]), np.radians(lists[1]), np.radians(lists[2])
    k = ra.size // 2
    on_map = [simulate_signal_neutrino(rng, model.skymap, model.t_gw_mjd) for _ in range(k)]
    ra[:k] = np.radians([s.ra[0] for s in on_map])
    dec[:k] = np.radians([s.dec[0] for s in on_map])
    return ra, dec, sig, model.tables.dec_rows(terms.energy_eval[pick])


@pytest.mark.parametrize("name, psf", [("bns-1", "gaussian"), ("bbh-2", "gaussian"), ("bbh-6", "gaussian"), ("bbh-6", "vmf")])  # fmt: skip
def test_bounds_hold_the_exact_kernel(name, psf):
    """~1,600 neutrinos (half from the map): the exact kernel's S_i at the model's rtol
    lies within the bounds widened by the kernel's own tolerance, as
    BackgroundTrials uses them; on the wide map, where S is within 1e-3 of the map's
    scale, the bounds are within a factor 30 (the exact kernel decides the rest)."""
    model = _model(name, psf=psf)
    ra, dec, sig, rows = _neutrinos(model, 250, 4)
    sb = SkyBounds.for_model(model)
    s_lo, s_hi, u_hi = sb.overlap(ra, dec, sig, rows, model.psf_kind)
    pm = model.prepared_map()
    from kernels.overlap import psf_overlap_prepared

    u, s = psf_overlap_prepared(pm, ra, dec, sig, rows, SINDEC_EDGES, model.psf_kind, rtol=model.overlap_rtol)  # fmt: skip
    r = model.overlap_rtol
    scale = sb.peak * rows.max(axis=1)  # widened as BackgroundTrials widens them
    assert np.all(s >= (s_lo - SCREEN_FLOOR * scale) / (1 + 2 * r))
    assert np.all(s <= (s_hi + SCREEN_FLOOR * scale) / (1 - 2 * r)), np.max(s / s_hi)
    assert np.all(u <= (u_hi + SCREEN_FLOOR * sb.peak) / (1 - 2 * r))
    near = s > 1e-3 * sb.peak * rows.max(axis=1)
    assert near.sum() > 50
    if name == "bbh-6":
        assert np.median(s_hi[near] / s_lo[near]) < 30


def test_bounds_hold_a_brute_force_pixel_sum():
    """A few PSFs on bbh-2 (sigma 1-3 deg): S summed over NSIDE-1024 pixel centres
    (density read off the map, a from each centre's band, the Gaussian at the centre,
    times the pixel area) lies within the bounds, to the sum's own 1%."""
    model = _model("bbh-2")
    screen = TrialScreen.for_model(model)
    sb = SkyBounds.for_model(model)
    peak_pix = int(np.argmax(model.skymap.probdensity))
    from llama.science.skymap import uniq_to_order_ipix

    order, ipix = uniq_to_order_ipix(np.asarray(model.skymap.uniq)[[peak_pix]])
    theta, phi = hp.pix2ang(2 ** int(order[0]), int(ipix[0]), nest=True)
    rng = np.random.default_rng(2)
    nside = 1024
    for k in range(4):
        sigma = math.radians(rng.uniform(1.0, 3.0))
        ra0 = phi + rng.normal(0, 2 * sigma)
        dec0 = 0.5 * math.pi - theta + rng.normal(0, 2 * sigma)
        row = model.tables.dec_rows([10.0 ** rng.uniform(2, 6)])
        vec = hp.ang2vec(0.5 * math.pi - dec0, ra0)
        pix = hp.query_disc(nside, vec, 8 * sigma, nest=True)
        t, p = hp.pix2ang(nside, pix, nest=True)
        dec_p, ra_p = 0.5 * math.pi - t, p
        psi = np.arccos(np.clip(np.dot(hp.ang2vec(t, p), vec), -1, 1))
        dens = screen.density(ra_p, dec_p)
        band = np.clip(np.searchsorted(SINDEC_EDGES, np.sin(dec_p), side="right") - 1, 0, 17)
        g = np.exp(-0.5 * psi**2 / sigma**2) / (2 * math.pi * sigma**2)
        brute = np.sum(dens * row[0, band] * g) * hp.nside2pixarea(nside)
        lo, hi, _ = sb.overlap([ra0 % (2 * math.pi)], [dec0], [sigma], row, 0)
        assert lo[0] * 0.99 <= brute <= hi[0] * 1.01, (k, lo[0], brute, hi[0])


@pytest.mark.parametrize("kind", [0, 1])
def test_uniform_map_bounds_are_the_analytic_overlap(kind):
    """All-sky uniform map: U = 1/4pi times the PSF's mass (O3's Gaussian: psf_norm;
    von Mises-Fisher: 1), S = a U for a constant a; the bounds hold it within 1e-3."""
    skymap = SkyMap(probdensity=np.full(12 * 16**2, 1 / (4 * np.pi)), nside=16)
    sb = SkyBounds(skymap)
    rng = np.random.default_rng(0)
    n = 500
    ra, dec = rng.uniform(0, 2 * np.pi, n), np.arcsin(rng.uniform(-1, 1, n))
    sig = np.radians(rng.uniform(0.2, 3.0, n))
    rows = np.full((n, 18), 2.5)
    lo, hi, u_hi = sb.overlap(ra, dec, sig, rows, kind)
    mass = np.array([psf_norm(s, 0) for s in sig]) if kind == 0 else np.ones(n)
    exact = 2.5 * mass / (4 * np.pi)
    assert np.all(lo <= exact) and np.all(exact <= hi)
    assert np.max(hi / lo) < 1.001 and np.all(u_hi >= mass / (4 * np.pi))


def test_pyramid_extremes_hold_every_pixel_in_a_disc():
    """disc_minmax against a brute force over the map's own pixels: every NSIDE-256
    pixel centre within the disc has a density inside the returned (min, max)."""
    model = _model("bbh-2")
    sb = SkyBounds.for_model(model)
    screen = TrialScreen.for_model(model)
    rng = np.random.default_rng(1)
    for _ in range(40):
        ra0, dec0 = rng.uniform(0, 2 * np.pi), np.arcsin(rng.uniform(-1, 1))
        radius = math.radians(10.0 ** rng.uniform(-1, 1.3))
        pix = hp.query_disc(256, hp.ang2vec(0.5 * np.pi - dec0, ra0), radius, nest=True)
        if pix.size == 0:
            continue
        t, p = hp.pix2ang(256, pix, nest=True)
        d = screen.density(p, 0.5 * np.pi - t)
        mn, mx = KB.disc_minmax(*sb._pyramid, sb.rows, ra0, dec0, radius)
        assert mn <= d.min() and d.max() <= mx


@pytest.mark.parametrize("rows", [1, 8, 64, 256])
def test_every_pyramid_level_holds_a_lone_hot_pixel(rows):
    """A map flat but for one hot pixel, at each pole in turn: every level of the
    pyramid, each of its rows too, has the hot pixel's density as its max and the
    flat one as its min, at every grid size the bounds accept (each coarser level is
    made of the rows below it, none left out)."""
    for hot in (0, 12 * 8**2 - 1):  # nested: first pixel southern, last northern
        density = np.ones(12 * 8**2)
        density[hot] = 50.0
        sb = SkyBounds(SkyMap(probdensity=density, nside=8), rows=rows)
        cells, row_ext, cell_start, row_start, levels = sb._pyramid
        for lv in range(levels):
            for ext in (cells[cell_start[lv] : cell_start[lv + 1]], row_ext[row_start[lv] : row_start[lv + 1]]):  # fmt: skip
                assert (ext[:, 0].min(), ext[:, 1].max()) == (1.0, 50.0), (hot, lv)


@pytest.mark.parametrize("rows", [0, 3, 96, 384])
def test_grid_rows_other_than_a_power_of_two_are_refused(rows):
    """384 rows halve to 3 and then 1: the top level would miss a third of the sky."""
    with pytest.raises(ValueError, match="power of 2"):
        SkyBounds(SkyMap(probdensity=np.ones(12), nside=1), rows=rows)


def _observed(model, seed, inject):
    rng = np.random.default_rng(seed)
    nl = simulate_background_neutrinos(rng, model.t_gw_mjd)
    if inject:
        nl = nl.concatenate(simulate_signal_neutrino(rng, model.skymap, model.t_gw_mjd))
    return model.evaluate(nl, float(mjd_to_gps(model.t_gw_mjd)))


@pytest.mark.parametrize(
    "name, seed, inject",
    [("bns-1", 3, True), ("bns-9", 1, True), ("bbh-2", 2, False), ("bbh-2", 3, True), ("bbh-6", 5, True), ("bbh-6", 2, False)],
)  # fmt: skip
def test_pvalues_decided_by_bounds_are_the_exact_ones(name, seed, inject):
    """trial_pvalues' default path against method="exact", same seed: wherever the
    observed value is at or above the cut, the counts and p-values are the exact
    method's, to the bit; lists are ranked by O above the cut, by their stand-in in
    two tiers below it (the observed list too). The trials evaluated to decide carry
    the exact statistic. On the dense maps (bns-9, bbh-6) some trials' doublets are
    settled by pair looks aimed at the thresholds."""
    looks = _check_pvalues(_model(name), seed, inject)
    assert looks > 0 or name not in ("bns-9", "bbh-6")


@pytest.mark.parametrize(
    "options",
    [{"psf": "vmf", "pairs": "great_circle"}, {"null": "full", "p_terrestrial": 0.3, "pair_background": "fixed", "background_band": "capped"}],
)  # fmt: skip
def test_pvalues_with_every_option_are_the_exact_ones(options):
    """The same with the statistic's options (the bounds follow the model's PSF, pair
    rule, partner background, band normaliser and null term)."""
    _check_pvalues(_model("bbh-2", **options), 3, True)


def _check_pvalues(model, seed, inject):
    """Returns the number of aimed pair looks the fast path took."""
    obs = _observed(model, seed, inject)
    n_trials = 600
    pair_look, looks = KO.psf_pair_overlap_targets, []

    def counted_pair_look(*a, **k):
        out = pair_look(*a, **k)
        looks.append(out[1].size)
        return out

    KO.psf_pair_overlap_targets = counted_pair_look
    try:
        fast = trial_pvalues(model, obs, n_trials, seed=seed)
    finally:
        KO.psf_pair_overlap_targets = pair_look
    exact = trial_pvalues(model, obs, n_trials, seed=seed, method="exact")
    assert fast.method["statistic"] == "fast" and fast.method["fast_path"] == "bounds"
    zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
    bt = BackgroundTrials(model, obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen, obs.azimuth)  # fmt: skip
    t_event, t_nu = bt.thresholds(obs.ra, obs.odds, obs.odds_ratio)
    assert fast.method["odds_ranked"] == t_event
    if obs.odds >= bt.cut:
        assert t_event == obs.odds
        for key in ("n_greater", "n_equal", "p_value_upper"):
            assert fast.method[key] == exact.method[key], key
        assert fast.p_value == exact.p_value
    else:
        assert t_event <= bt.cut
    assert not inject or obs.odds >= bt.cut  # a neutrino from the map is above the cut
    above = (t_nu == obs.odds_ratio) & (t_nu >= bt.cut)
    np.testing.assert_array_equal(fast.p_values_neutrino[above], exact.p_values_neutrino[above])  # fmt: skip
    lo, hi = fast.trial_bounds.T
    e = exact.trial_odds
    # the same draws as trial_pvalues' (one chunk): which trials are above the cut
    lists, pick = _background_draws(model.background)(np.random.default_rng(seed), n_trials)
    pool = _sample_terms(model, model.background)
    bg = type(pool)(*(a[pick] for a in pool))
    resolved = bt.decide_batch([], *lists, background_terms=bg, sample_index=pick).resolved
    c, above = bt.cut, e >= bt.cut  # h is O above the cut, in [c/2, c) or below c/2 under it
    assert np.all((lo <= e) & (e <= hi) | ~(resolved & above))
    assert np.all((c / 2 <= lo) & (lo < c) | ~(resolved & ~above))
    assert np.all((lo == hi) & (hi < c / 2) | resolved)
    evaluated = (lo == hi) & resolved & above
    np.testing.assert_array_equal(fast.trial_odds[evaluated], e[evaluated])
    assert fast.method["n_trials_evaluated"] <= evaluated.sum()
    return sum(looks)


def test_every_refinement_level_keeps_the_exact_statistic(monkeypatch):
    """Thresholds at every 5th trial's own exact statistic above the cut (bbh-6, whose
    lists often have doublets) send trials through each level (a kernel look stopped
    at the trial's thresholds, the exact S_i, a trial's pair looks aimed at them (stopped
    early or run to the exact S_ij), its exact doublet terms, then the whole statistic):
    every resolved trial's O above the cut stays inside its bounds, no interval holds a
    threshold unless it is the exact value itself, and the counts
    at every threshold are the exact statistic's."""
    model = _model("bbh-6")
    obs = _observed(model, 8, False)
    zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
    bt = BackgroundTrials(model, obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen, obs.azimuth)  # fmt: skip
    lists, pick = _background_draws(model.background)(np.random.default_rng(3), 800)
    pool = _sample_terms(model, model.background)
    bg = type(pool)(*(a[pick] for a in pool))
    exact = model.evaluate_batch(*lists, background_terms=bg).odds
    free = bt.decide_batch([], *lists, background_terms=bg, sample_index=pick)
    resolved = free.resolved
    assert resolved.sum() > 100
    t = exact[np.flatnonzero(exact >= bt.cut)[::5]]
    assert t.size > 20
    # the ladder's steps: looks stopped at their aims, looks run to the exact S_i, pair
    # looks stopped at their aims and run to the exact S_ij, the exact doublet terms
    # (the real calls)
    looks = dict.fromkeys(("aimed", "exact", "pair_aimed", "pair_exact", "pairs"), 0)
    look, pairs, pair_look = bt._look, model.pair_terms, KO.psf_pair_overlap_targets

    def counted_look(*a):
        lo, hi, exact = look(*a)
        looks["aimed"] += int(np.sum(~exact))
        looks["exact"] += int(np.sum(exact))
        return lo, hi, exact

    def counted_pair_look(*a, **k):
        w, half = pair_look(*a, **k)
        looks["pair_aimed"] += int(np.sum(half >= 0.0))
        looks["pair_exact"] += int(np.sum(half < 0.0))
        return w, half

    def counted_pairs(*a, **k):
        looks["pairs"] += "overlap" not in k  # the exact doublet terms
        return pairs(*a, **k)

    bt._look, model.pair_terms = counted_look, counted_pairs
    monkeypatch.setattr(KO, "psf_pair_overlap_targets", counted_pair_look)
    d = bt.decide_batch(t, *lists, background_terms=bg, sample_index=pick)
    assert looks["aimed"] > 0 and looks["exact"] > 0, looks
    assert looks["pair_aimed"] > 0 and looks["pair_exact"] > 0 and looks["pairs"] > 0, looks
    above = exact >= bt.cut
    assert np.all((d.lo <= exact) & (exact <= d.hi) | ~(resolved & above))
    assert d.n_refined > 0
    singles_only = (d.lo < d.hi) & (free.lo < free.hi) & resolved
    narrowed = (d.hi - d.lo) < (free.hi - free.lo)
    assert np.any(singles_only & narrowed)  # some decided by exact S_i alone
    for x in t:
        holds = (d.lo <= x) & (x <= d.hi) & (d.lo < d.hi)
        assert not holds.any()
        assert np.sum(d.lo >= x) == np.sum(exact[resolved] >= x) + np.sum(d.lo[~resolved] >= x)  # fmt: skip
    same = (d.lo == d.hi) & resolved & above & ~(free.lo == free.hi)
    np.testing.assert_array_equal(d.lo[same], exact[same])


def test_sequential_trials_stop_with_bounds():
    """LLAMA_TRIAL_STOP_AFTER's path: per-trial comparisons from the bounds; a list
    from the map stops late, a background list early, both through BackgroundTrials."""
    model = _model("bbh-2")
    obs = _observed(model, 3, True)
    res = trial_pvalues(model, obs, 2000, seed=3, stop_after=10)
    assert res.method["fast_path"] == "bounds" and res.trial_bounds is not None
    assert res.method["n_trials_drawn"] <= 2000 and 0 < res.p_value <= 1


def _crowded_lists(rng, m, size):
    """m lists of ``size`` neutrinos crowded where O3's flat doublet test is hardest to
    foresee from the sky: around the south pole (azimuths spread over every value),
    across RA 0, at both ends of the search window, zeniths 90 deg + dec."""
    n = m * size
    pole = rng.uniform(size=n) < 0.5
    dec = np.where(pole, -90.0 + rng.uniform(0, 4, n), rng.uniform(-30, 30, n))
    ra = np.where(pole, rng.uniform(0, 360, n), rng.uniform(-3, 3, n) % 360.0)
    sigma = np.exp(rng.uniform(np.log(0.2), np.log(3.0), n))
    dt = rng.choice([-500.0, 500.0], n) + rng.uniform(-5, 5, n)
    return ra, dec, sigma, dt, 90.0 + dec, np.arange(0, n + 1, size)


@pytest.mark.parametrize("t_gw", [True, False])
def test_azimuths_only_where_a_doublet_may_be_give_the_same_doublets(t_gw):
    """BackgroundTrials computes a trial neutrino's detector azimuth only where O3's
    flat (zenith, azimuth) doublet test may pass: the doublets found are those with
    every azimuth from the frame, on 2,000 background lists and on lists crowded at the
    pole, across RA 0, +-500 s apart, and with zeniths given off 90 deg + dec; and
    most background neutrinos need none."""
    from kernels import odds as KO
    from llama.science import constants as C
    from llama.science.odds import EventModel

    model = _model("bns-1")
    if not t_gw:
        model = EventModel(model.skymap, 12.0, 150.0)
    bt = BackgroundTrials(model, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    rng = np.random.default_rng(21)
    (ra, dec, sig, _, dt, zen, off), _ = _background_draws(model.background)(rng, 2000)
    crowded = [_crowded_lists(rng, 300, 8) for _ in range(2)]
    ra2, dec2, sig2, dt2, zen2, off2 = crowded[1]
    zen2 = zen2 + rng.uniform(-2, 2, zen2.size)  # given zeniths off the sky's
    cases = [(ra, dec, sig, dt, zen, off), crowded[0], (ra2, dec2, sig2, dt2, zen2, off2)]
    for k, (ra, dec, sig, dt, zen, off) in enumerate(cases):
        z_all, az_all = model.detector_frame(ra, dec, dt, zen, np.full(ra.size, np.nan))
        z, az = bt._detector_frame(ra, dec, sig, dt, zen, np.full(ra.size, np.nan), off)
        np.testing.assert_array_equal(z, z_all)
        known = np.isfinite(az)
        np.testing.assert_allclose(az[known], az_all[known], rtol=0, atol=1e-9)
        want = KO.find_pairs(np.radians(az_all), np.radians(z_all), np.radians(sig), off, C.PAIR_SEPARATION_SIGMAS, KO.PAIR_O3_FLAT)  # fmt: skip
        got = KO.find_pairs(np.radians(az), np.radians(z), np.radians(sig), off, C.PAIR_SEPARATION_SIGMAS, KO.PAIR_O3_FLAT)  # fmt: skip
        assert want[0].size > (500 if k == 0 else 200)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        if k == 0:
            assert known.mean() < 0.3, known.mean()


def test_pool_row_maxima_are_the_rows_maxima():
    """The kept largest a(eps) per background-sample event (gathered per batch instead
    of a max along every trial neutrino's row) is its row's maximum."""
    model = _model("bns-1")
    bt = BackgroundTrials(model, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    terms = _sample_terms(model, model.background)
    rows = bt.pool_rows(model.background, terms)
    np.testing.assert_array_equal(bt.pool_row_max(model.background, terms), rows.max(axis=1))


@pytest.mark.parametrize("name", ["bbh-6", "bns-9"])
def test_what_the_sample_index_looks_up_is_what_is_computed(name):
    """decide_batch with ``sample_index`` looks up, per trial neutrino, its sample
    event's a(eps) row, its largest a and its d_1 (the cut's per-sample energy factor
    from the distinct w(theta)); without it, it computes them from the energies and
    zeniths. Both must give the same bounds bit for bit, thresholds held or not; and
    the sample's d_1 is the one computed from each event's own w(theta)."""
    from llama.science.odds import neutrino_energy_integral

    model = _model(name)
    obs = _observed(model, 6, False)
    zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
    bt = BackgroundTrials(model, obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen, obs.azimuth)  # fmt: skip
    sample = model.background
    w = model.tables.zenith_weight(sample.zenith_sorted)
    direct = model.egw * neutrino_energy_integral(model.rate_per_energy * w, 1)
    np.testing.assert_array_equal(bt._sample_d1(sample), direct)
    lists, pick = _background_draws(sample)(np.random.default_rng(11), 400)
    pool = _sample_terms(model, sample)
    bg = type(pool)(*(a[pick] for a in pool))
    free = bt.decide_batch([], *lists, background_terms=bg)
    t = np.sort(free.hi[free.resolved])[::7]
    for thresholds in ([], t):
        a = bt.decide_batch(thresholds, *lists, background_terms=bg, sample_index=pick)
        b = bt.decide_batch(thresholds, *lists, background_terms=bg)
        for x, y in ((a.lo, b.lo), (a.hi, b.hi), (a.point, b.point), (a.resolved, b.resolved)):
            np.testing.assert_array_equal(x, y)
    # lists whose neutrinos are not where the draws put their sample events (dec moved):
    # their own band's a is computed, not looked up (the stand-ins below the cut, in
    # ``point``, would differ)
    moved = list(lists)
    moved[1] = np.clip(lists[1] + 7.5, -90.0, 90.0)
    a = bt.decide_batch([], *moved, background_terms=bg, sample_index=pick)
    b = bt.decide_batch([], *moved, background_terms=bg)
    np.testing.assert_array_equal(a.point, b.point)
    np.testing.assert_array_equal(a.hi, b.hi)


def test_pool_own_band_is_each_sample_event_a_at_its_declination():
    """The kept a(eps) of each background-sample event in its own declination band
    (dec = zenith - 90) is the signal tables' a at that declination, band by band
    from SINDEC_EDGES' ends."""
    model = _model("bns-1")
    bt = BackgroundTrials(model, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    terms = _sample_terms(model, model.background)
    dec, own = bt.pool_own_band(model.background, terms)
    np.testing.assert_array_equal(dec, np.clip(model.background.zenith_sorted - 90.0, -90.0, 90.0))  # fmt: skip
    rows = bt.pool_rows(model.background, terms)
    sindec = np.sin(np.radians(dec))
    for i in np.random.default_rng(2).integers(0, dec.size, 300):
        band = next(b for b in range(SINDEC_EDGES.size - 2, -1, -1) if sindec[i] >= SINDEC_EDGES[b]) if sindec[i] >= SINDEC_EDGES[0] else 0  # fmt: skip
        assert own[i] == rows[i, band]


def test_kept_partner_background_is_the_computed_one():
    """The O3 partner background that _parts keeps gives later pair_terms calls on
    whole lists of the batch (as _refine makes them) the terms computed afresh, bit
    for bit, every doublet found among those kept; crowded lists give many doublets."""
    model = _model("bns-1")
    bt = BackgroundTrials(model, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    rng = np.random.default_rng(5)
    ra, dec, sig, dt, zen, off = _crowded_lists(rng, 300, 8)
    energy = 10.0 ** rng.uniform(2.5, 6.0, ra.size)
    bg = model.background_terms(zen, energy)
    rows = model.tables.dec_rows(bg.energy_eval)
    lists, az, off, parts = bt._lists(ra, dec, sig, energy, dt, zen, off, bg, rows)
    partners = parts[-1]
    assert partners.key.size > 200
    trials = np.flatnonzero(rng.uniform(size=off.size - 1) < 0.5)
    k = np.concatenate([np.arange(off[t], off[t + 1]) for t in trials])
    sub_off = np.r_[0, np.cumsum(np.diff(off)[trials])]
    sub_bg = type(bg)(*(a[k] for a in bg))
    call = (*(a[k] for a in lists), az[k], sub_bg, sub_off)

    def never(*_):
        raise AssertionError("a doublet of whole lists was not kept")

    looked_up = partners.of(k)
    first, value = model.pair_terms(*call, partner=lambda i, j, _: looked_up(i, j, never))
    first0, value0 = model.pair_terms(*call)
    assert first.size > 100
    np.testing.assert_array_equal(first, first0)
    np.testing.assert_array_equal(value, value0)  # NaN where O3 divided 0 by B_j = 0
