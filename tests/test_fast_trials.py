"""Fast trials (llama.science.fast_trials) against the exact statistic.

Realistic events: BAYESTAR maps of tests/data/bayestar (a 4 deg² BNS, a 53 deg² BBH;
scrambles and ring tables also on the 754 deg² BBH bbh-6), IceCube-like lists from
llama.science.sim (Poisson(6.4), sigma log-uniform 0.2-3 deg, whole sky), one with a
neutrino drawn from the map, compared with EventModel.evaluate_batch on the same trial
lists.

Scrambles are decided by bounds: every resolved trial's ranked statistic (its exact
statistic, or the cut where that is larger) lies in its bounds, and the counts at the observed values (hence the p-values) are the exact
method's, to the bit. Background lists get the screened statistic, within

    |O_fast - O_exact| <= 1e-2 O_exact + O_floor,

where O_floor is what overlaps at the floor (1e-12 of the map's peak density times
the neutrino's largest a(eps)) would give: a trial whose neutrinos all lie that far
below the map's scale is "nothing near the map", and neither statistic resolves it
(the exact kernel's own absolute tolerance is 1e-2 of that floor). +inf (O3's B_j = 0
doublets) must agree exactly.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from bayestar_events import bayestar_model

from kernels import odds as KO
from kernels import ra_lookup as KR
from llama.science import constants as C
from llama.science.detector_frame import DetectorFrame
from llama.science.fast_trials import (
    RESOLVED_FLOORS,
    SCREEN_FLOOR,
    TABLE_RTOL,
    ScrambleTrials,
    TrialScreen,
    _frame_rotation,
    _psf_at,
    _towards,
    interval_error_bounds,
    pair_annulus_bound,
    pair_overlap_bound,
    product_integral,
    ring_table,
    screened_model,
)
from llama.science.odds import EventModel
from llama.science.pvalue import (
    background_sampler,
    scramble_sampler,
    trial_pvalues,
)
from llama.science.sim import simulate_background_neutrinos, simulate_signal_neutrino
from llama.science.times import mjd_to_gps

N_TRIALS = 2000


_model = bayestar_model


@pytest.fixture(scope="module", params=["bns-1", "bbh-2"])
def model(request) -> EventModel:
    return _model(request.param)


def _lists(model: EventModel, seed: int, inject: bool):
    """(ra, dec, sigma, energy, dt, zenith) of a realistic list around the event."""
    rng = np.random.default_rng(seed)
    mjd = model.t_gw_mjd
    nl = simulate_background_neutrinos(rng, mjd)
    if inject:
        nl = nl.concatenate(simulate_signal_neutrino(rng, model.skymap, mjd))
    dt = (np.asarray(nl.mjd) - mjd) * 86400.0
    zen = np.asarray(nl.zenith, dtype=float)
    zen = np.where(np.isfinite(zen), zen, 90.0 + np.asarray(nl.dec))
    return tuple(np.asarray(a, dtype=float) for a in (nl.ra, nl.dec, nl.sigma, nl.energy)) + (dt, zen)  # fmt: skip


def _assert_close(fast, exact, floor):
    """The test's accuracy claim, with the worst case in the message."""
    inf_e, inf_f = np.isinf(exact), np.isinf(fast)
    np.testing.assert_array_equal(inf_f, inf_e)
    ok = ~inf_e
    err = np.abs(fast[ok] - exact[ok])
    tol = 1e-2 * exact[ok] + floor[ok]
    worst = int(np.argmax(err - tol)) if err.size else 0
    assert np.all(err <= tol), (exact[ok][worst], fast[ok][worst], floor[ok][worst])


def test_ring_table_reproduces_a_brute_force_ring():
    """Two Gaussian blobs in RA (one 1e-5 of the other) over a floor: the cubic of
    log values is within TABLE_RTOL of the function above the floor, and within the
    floor below it, at 20,000 random RAs."""
    dec, sigma = math.radians(-40.0), math.radians(0.3)
    width = sigma / math.cos(dec)  # in RA

    def f(phi):
        d1 = (phi - 1.0 + np.pi) % (2 * np.pi) - np.pi
        d2 = (phi - 1.3 + np.pi) % (2 * np.pi) - np.pi
        return np.exp(-0.5 * (d1 / width) ** 2) + 1e-5 * np.exp(-0.5 * (d2 / (2 * width)) ** 2)

    floor = 1e-12
    calls = []
    phi, logv = ring_table(lambda p: (calls.append(p.size), f(p))[1], dec, sigma, floor)
    x = np.random.default_rng(3).uniform(0.0, 2 * np.pi, 20000)
    got, want = np.exp(KR.ring_interp(phi, logv, x)), f(x)
    above = want > floor
    assert np.all(np.abs(got[above] / want[above] - 1) <= TABLE_RTOL)
    assert np.all(np.abs(got[~above] - want[~above]) <= floor)
    # every node was evaluated once; the other evaluations are passed midpoints
    assert phi.size <= sum(calls) <= 2 * phi.size + 8
    assert sum(calls) < 2000  # far fewer than the ~9,000 nodes of a uniform sigma/16 grid


def test_prepared_ring_lookup_is_the_same_cubic():
    """ring_lookup_prepared (monomial cubics, bucket index) against ring_interp's
    Lagrange cubic on tables with crowded and sparse nodes, RAs before the first and
    after the last node (the wrap) included: the same log values to 1e-10 relative
    (the roundings of the two forms; a sparse table's cubic swings far)."""
    rng = np.random.default_rng(9)
    tables = []
    for k in (4, 9, 300):
        phi = np.sort(rng.uniform(0.05, 2 * np.pi - 0.05, k))
        phi[: k // 3] = 1.0 + 1e-4 * np.arange(k // 3)  # crowded: sigma 0.2 deg / 64 apart
        phi = np.sort(phi)
        tables.append((phi, -30.0 + 5.0 * np.sin(phi) + rng.normal(0.0, 0.1, k)))
    offsets = np.cumsum([0] + [t[0].size for t in tables])
    phi, logv = (np.concatenate([t[i] for t in tables]) for i in (0, 1))
    m = 5000
    ra = rng.uniform(-2 * np.pi, 4 * np.pi, m * len(tables))
    ra[: len(tables)] = 0.0  # before every first node
    got = KR.ring_lookup_prepared(offsets, phi, *KR.ring_prepare(offsets, phi, logv, 2), ra)
    for t, (p_t, l_t) in enumerate(tables):
        want = KR.ring_interp(p_t, l_t, ra[t :: len(tables)] % (2 * np.pi))
        ok = want < 700.0  # a 4-node cubic swings far out; exp overflows beyond
        assert ok.mean() > 0.5
        np.testing.assert_allclose(np.log(got[t :: len(tables)][ok]), want[ok], rtol=1e-10, atol=1e-11)  # fmt: skip


def test_ring_table_of_a_wide_map_matches_the_kernel_between_nodes():
    """A neutrino's table on bbh-6 (754 deg² at 90%, uneven refinement): the looked-up S
    against the exact kernel (rtol 1e-4) at 300 random RAs, not only at the checked
    midpoints. A neighbour's new node changes an interval's cubic; before such
    intervals were checked again, this ring was off by 1.6% between nodes."""
    model = _model("bbh-6")
    dec, sigma, energy = -13.31, 0.78, 2.0e4
    eps = model.background_terms(np.array([90.0 + dec]), np.array([energy])).energy_eval
    args = (model.skymap, model.rho, model.rbar, model.population)
    table_kernel = EventModel(*args, overlap_rtol=1e-3)  # as ScrambleTrials' tables
    tight = EventModel(*args, overlap_rtol=1e-4)

    def exact(phi, m=table_kernel):
        k = phi.size
        return m.signal_overlap(np.degrees(phi), np.full(k, dec), np.full(k, sigma), np.full(k, eps[0]))[1]  # fmt: skip

    floor = SCREEN_FLOOR * model.skymap.probdensity.max() * model.tables.dec_rows(eps).max()
    phi, logv, mid = ring_table(exact, math.radians(dec), math.radians(sigma), floor, checks=True)
    x = np.random.default_rng(4).uniform(0.0, 2 * np.pi, 300)
    want = exact(x, tight)
    got = np.exp(KR.ring_interp(phi, logv, x))
    above = want > floor
    assert above.sum() > 30  # the ring crosses the map
    # the table's own 2e-3 plus its kernel's (rtol 1e-3)
    err = np.abs(got[above] / want[above] - 1)
    assert np.max(err) < 5e-3
    assert np.all(got[~above] <= 2 * floor)
    # each interval's own bound (the bounds' share of a fine table) holds the error
    # against the 1e-4 kernel (plus that kernel's own 1e-4), and is not the global 1e-2
    share = interval_error_bounds(phi, mid, 1e-3)
    j = np.searchsorted(phi, x[above], side="right") - 1  # -1: the wrapping interval
    assert np.all(err <= share[j] + 1e-4), np.max(err / share[j])
    assert np.median(share[j]) < 0.7e-2


def test_frame_azimuth_is_the_detector_frame():
    frame = DetectorFrame(58598.3459)
    rng = np.random.default_rng(1)
    n, m = 5, 400
    dec, dt = rng.uniform(-89, 89, n), rng.uniform(-500, 500, n)
    ra = rng.uniform(0, 360, n * m)
    want = frame.zenith_azimuth(ra, np.tile(dec, m), np.tile(dt, m))[1]
    a0 = frame.zenith_azimuth(np.zeros(n), dec, np.zeros(n))[1]
    turn = (frame.zenith_azimuth(np.zeros(n), dec, dt)[1] - a0) % 360.0
    got = KR.frame_azimuth(frame.rotation, turn, np.radians(dec), np.radians(ra))
    diff = (got - want + 180.0) % 360.0 - 180.0
    assert np.max(np.abs(diff)) < 1e-9


def test_frame_read_off_the_model_is_its_detector_frame():
    """The rotation and turns the scrambles take from EventModel.detector_frame (public)
    give the model's own azimuths for 2,000 random directions and times."""
    model = _model("bns-1")
    rng = np.random.default_rng(2)
    n, m = 7, 300
    dec, dt = rng.uniform(-89, 89, n), rng.uniform(-500, 500, n)
    ra = rng.uniform(0, 360, n * m)
    nan = np.full(n * m, np.nan)
    want = model.detector_frame(ra, np.tile(dec, m), np.tile(dt, m), nan, nan)[1]
    rotation, turn = _frame_rotation(model, dec, dt)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    got = KR.frame_azimuth(rotation, turn, np.radians(dec), np.radians(ra))
    assert np.max(np.abs((got - want + 180.0) % 360.0 - 180.0)) < 1e-9


def _draw_pairs(m, rng, k):
    """k pairs [rad]: the first member drawn from the map, sigma 0.2-3 deg log-uniform,
    the second at 0-6 (sigma_i + sigma_j) from it along a random bearing; energies
    1e3-1e6 GeV. Returns ra_i, dec_i, ra_j, dec_j, sig (2, k), sep, eps (2, k)."""
    nl = [simulate_signal_neutrino(rng, m.skymap, m.t_gw_mjd) for _ in range(k)]
    ra_i = np.radians([float(x.ra[0]) for x in nl])
    dec_i = np.radians([float(x.dec[0]) for x in nl])
    sig = np.radians(np.exp(rng.uniform(np.log(0.2), np.log(3.0), (2, k))))
    sep = rng.uniform(0, 6, k) * (sig[0] + sig[1])
    bearing = rng.uniform(0, 2 * np.pi, k)
    # the point at angle sep from (ra_i, dec_i) along the bearing (spherical offset)
    dec_j = np.arcsin(np.sin(dec_i) * np.cos(sep) + np.cos(dec_i) * np.sin(sep) * np.cos(bearing))  # fmt: skip
    ra_j = ra_i + np.arctan2(np.sin(bearing) * np.sin(sep) * np.cos(dec_i), np.cos(sep) - np.sin(dec_i) * np.sin(dec_j))  # fmt: skip
    eps = 10 ** rng.uniform(3, 6, (2, k))
    return ra_i, dec_i, ra_j, dec_j, sig, sep, eps


@pytest.mark.parametrize("psf", ["gaussian", "vmf"])
def test_pair_bound_holds_against_the_exact_pair_kernel(psf):
    """pair_overlap_bound >= the exact S_ij (rtol 1e-3) for 300 pairs on bbh-2, the first
    member drawn from the map, the second 0-6 (sigma_i + sigma_j) away; and it is far
    tighter than max a_j G_j,peak S_i for pairs several sigma apart."""
    m = _model("bbh-2")
    tight = EventModel(m.skymap, m.rho, m.rbar, m.population, psf=psf, overlap_rtol=1e-3)
    k = 300
    ra_i, dec_i, ra_j, dec_j, sig, sep, eps = _draw_pairs(m, np.random.default_rng(8), k)
    ra, dec, sigma = np.concatenate([ra_i, ra_j]), np.concatenate([dec_i, dec_j]), sig.ravel()
    pi, pj = np.arange(k), np.arange(k, 2 * k)
    s = tight.signal_overlap(np.degrees(ra), np.degrees(dec), np.degrees(sigma), eps.ravel())[1]
    exact = tight.pair_overlap(ra, dec, sigma, eps[0], eps[1], pi, pj)
    a_i, a_j = (m.tables.dec_rows(e).max(axis=1) for e in eps)
    kind = tight.psf_kind
    bound = pair_overlap_bound(ra_i, dec_i, sig[0], ra_j, dec_j, sig[1], s[pi], s[pj], a_i, a_j, kind)  # fmt: skip
    assert np.all(exact <= 1.005 * bound), np.max(exact / bound)
    assert np.sum(exact > 0) > k // 2
    loose = pair_overlap_bound(ra_i, dec_i, sig[0], ra_i, dec_i, sig[1], s[pi], s[pj], a_i, a_j, kind)  # fmt: skip
    far = sep > 3 * (sig[0] + sig[1])
    assert np.median(bound[far] / loose[far]) < 1e-2
    # the density bound: max a_i max a_j (rho near the product's centre) ∫ G_i G_j
    screen = TrialScreen.for_model(tight)
    t_c = sep * sig[0] ** 2 / (sig[0] ** 2 + sig[1] ** 2)
    c_ra, c_dec = _towards(ra_i, dec_i, ra_j, dec_j, sep, t_c)
    for wider in (0, 2):  # the screen's own reach, and two classes up (as the trials)
        near = screen.density_near(c_ra, c_dec, np.minimum(sig[0], sig[1]), wider)
        dense = a_i * a_j * product_integral(sep, sig[0], sig[1], kind) * near
        assert np.all(exact <= 1.01 * dense), (wider, np.max(exact / dense))
        assert np.median(exact[exact > 0] / dense[exact > 0]) > 1e-4  # not vacuous


@pytest.mark.parametrize(
    "name, psf", [("bbh-2", "gaussian"), ("bbh-6", "gaussian"), ("bbh-6", "vmf")]
)
def test_pair_annulus_bound_holds_against_the_exact_pair_kernel(name, psf):
    """pair_annulus_bound (nested discs of the map's pyramid about the pair's product)
    brackets the pair kernel's S_ij (rtol 1e-3) for 400 pairs, the first member drawn from
    the map, the second 0-6 (sigma_i + sigma_j) away, sigma 0.2-3 deg; and it is tighter
    than the largest density within the product's reach (the lookups' bound) on the
    wide maps, where the density varies on the PSFs' scale."""
    from llama.science.background_trials import SkyBounds

    m = _model(name)
    tight = EventModel(m.skymap, m.rho, m.rbar, m.population, psf=psf, overlap_rtol=1e-3)
    k = 400
    ra_i, dec_i, ra_j, dec_j, sig, sep, eps = _draw_pairs(m, np.random.default_rng(12), k)
    ra, dec = np.concatenate([ra_i, ra_j]), np.concatenate([dec_i, dec_j])
    exact = tight.pair_overlap(ra, dec, sig.ravel(), eps[0], eps[1], np.arange(k), np.arange(k, 2 * k))  # fmt: skip
    rows = m.tables.dec_rows(eps[0]) * m.tables.dec_rows(eps[1])
    kind = tight.psf_kind
    low, bound = pair_annulus_bound(SkyBounds.for_model(m), ra_i, dec_i, sig[0], ra_j, dec_j, sig[1], rows, kind)  # fmt: skip
    # the kernel's tolerance: rtol x S_ij plus its floor (ATOL rtol rho_max a_i a_j mass)
    from kernels.overlap import ATOL

    mass = product_integral(sep, sig[0], sig[1], kind)
    floor = ATOL * 1e-3 * m.skymap.probdensity.max() * rows.max(axis=1) * mass
    assert np.all(exact <= bound * (1 + 1e-3) + floor), np.max(exact / bound)
    assert np.all(exact >= low * (1 - 1e-3) - floor), np.max(low / exact)
    live = exact > 1e3 * floor
    assert live.sum() > k // 2
    assert np.median(exact[live] / bound[live]) > 0.05  # not vacuous
    assert np.median(low[live] / exact[live]) > 0.05
    if name == "bbh-6":  # the lookups' density bound, as _pair_overlap_bound takes it
        screen = TrialScreen.for_model(tight)
        t_c = sep * sig[0] ** 2 / (sig[0] ** 2 + sig[1] ** 2)
        c_ra, c_dec = _towards(ra_i, dec_i, ra_j, dec_j, sep, t_c)
        near = screen.density_near(c_ra, c_dec, np.minimum(sig[0], sig[1]))
        dense = rows.max(axis=1) * mass * near
        assert np.median(bound[live] / dense[live]) < 0.5


def test_product_integral_is_the_sky_integral():
    """∫ G_i G_j over the sphere by brute-force quadrature (psi, azimuth about n_i) is
    at most product_integral (to the quadrature's 1e-3), and within 3% of it, for sigma
    0.2-3 deg, d 0-6 (sigma_i + sigma_j), both PSFs."""
    for si, sj in [(0.2, 3.0), (1.0, 1.0), (3.0, 3.0)]:
        si, sj = math.radians(si), math.radians(sj)
        for k in (0.0, 1.5, 4.0, 6.0):
            d = k * (si + sj)
            pmax = min(math.pi, d + 14 * max(si, sj))
            psi = (np.arange(3000) + 0.5) * pmax / 3000  # midpoints: error ~ 0.05 (h/sigma)²
            phi = (np.arange(300) + 0.5) * math.pi / 300
            p, f = np.meshgrid(psi, phi, indexing="ij")
            psi_j = np.arccos(np.clip(np.cos(p) * math.cos(d) + np.sin(p) * math.sin(d) * np.cos(f), -1, 1))  # fmt: skip
            for kind in (0, 1):
                g_i = _psf_at(p, si, kind)
                g_j = _psf_at(psi_j, sj, kind)
                brute = 2 * np.sum(g_i * g_j * np.sin(p)) * (pmax / 3000) * (math.pi / 300)
                got = float(product_integral(d, si, sj, kind))
                assert brute <= got * (1 + 1e-3), (si, sj, k, kind, brute / got)
                assert brute >= got * 0.97, (si, sj, k, kind, brute / got)


@pytest.mark.parametrize("seed, inject", [(1, False), (2, False), (3, True)])
def test_scramble_bounds_hold_the_exact_statistic(model, seed, inject):
    """2,000 scrambles of a realistic list: every resolved trial's exact statistic lies
    in its bounds from lookups alone, and the decided counts at the observed values
    are the exact statistic's."""
    _check_scrambles(model, seed, inject)


@pytest.mark.parametrize("n_trials", [None, 20_000, N_TRIALS])
def test_scramble_bounds_hold_the_exact_statistic_on_a_wide_map(n_trials):
    """The same on bbh-6 (754 deg² at 90%), where tables refine unevenly (one list:
    its tables take ~1,000 kernel calls per neutrino), with fine tables (nodes at
    kernel rtol 1e-4 for many trials, 1e-3 for 20,000) and with the coarse ones a
    p-value's 2,000 trials get (nodes at the model's own tolerance)."""
    assert _check_scrambles(_model("bbh-6"), 2, False, n_trials) > 100


def test_tight_nodes_narrow_the_tables_share():
    """Nodes at kernel rtol 1e-4 (many trials expected) instead of 1e-3: on the
    intervals of a wide map's tables that are checked against the kernel, the share of
    the bounds' width from the table (:func:`interval_error_bounds`) is at least 2x
    narrower in the median, and the tables stay within their share of the tight
    kernel's S_i at random RAs."""
    model = _model("bbh-6")
    lists = _lists(model, 2, False)
    shares = {}
    for node_rtol in (1e-3, 1e-4):
        st = ScrambleTrials(model, *lists, node_rtol=node_rtol)
        assert not st.coarse and not st.direct.any()
        s = st._share[st._share < 1e-2]
        shares[node_rtol] = np.median(s)
    assert shares[1e-4] < 0.5 * shares[1e-3]
    # the looked-up S_i against a kernel 10x tighter than the nodes', above the floor
    tight = copy.copy(model)
    tight.overlap_rtol = 1e-5
    rng = np.random.default_rng(4)
    ra = rng.uniform(0.0, 360.0, 200 * st.n)
    s_look, share = KR.ring_lookup_shared(st.node_offsets, st.phi, *st._cubics, st._share, np.radians(ra))  # fmt: skip
    i = np.arange(ra.size) % st.n
    want = tight.signal_overlap(ra, st.dec[i], st.sigma[i], st._eps[i])[1]
    above = want > 10 * st.floor[i]
    assert above.sum() > 100
    # the true S within the share, the 1e-5 kernel within 1e-5 of it
    assert np.all(np.abs(s_look[above] / want[above] - 1) <= share[above] + 2e-5)


def test_held_trials_get_the_exact_kernels_numbers_in_any_order():
    """The exact S_i of held trials, computed in order of neutrino and RA, are the
    numbers ``EventModel.signal_overlap`` gives each entry in the trials' own order,
    to the bit."""
    model = _model("bbh-2")
    lists = _lists(model, 3, True)
    st = ScrambleTrials(model, *lists, n_trials=10)
    rng = np.random.default_rng(8)
    which = rng.integers(0, st.n, 300)
    ra = rng.uniform(0.0, 360.0, 300)
    want = model.signal_overlap(ra, st.dec[which], st.sigma[which], st._eps[which])[1]
    np.testing.assert_array_equal(st._single_overlaps(ra, which), want)


def test_ring_s_bounds_is_the_lookup_with_its_bounds():
    """kernels.ra_lookup.ring_s_bounds (tables looked up one after another) against the
    lookup of ring_interp's Lagrange cubic and the bounds' formula in numpy, on three
    tables (one untabled) and RAs list after list: the same values to 1e-10 relative."""
    rng = np.random.default_rng(12)
    tables = []
    for k in (8, 40, 300):
        phi = np.sort(rng.uniform(0.0, 2 * np.pi, k))
        tables.append((phi, -30.0 + 8.0 * np.cos(phi - 1.0) + rng.normal(0.0, 0.05, k)))
    offsets = np.cumsum([0] + [t[0].size for t in tables]).astype(np.int64)
    phi, logv = (np.concatenate([t[i] for t in tables]) for i in (0, 1))
    share = rng.uniform(1e-4, 1e-2, phi.size)
    n, m, n_cols = len(tables), 4000, 360
    s_max = rng.uniform(1e-14, 1e-12, (n, n_cols))
    reach = rng.random((n, n_cols)) < 0.8
    floor, atol = np.full(n, 1e-22), np.full(n, 1e-26)
    untabled = np.array([False, True, False])
    rtol, rel_floors, pad_floors = 1e-2, 3.0, 1.1
    ra = rng.uniform(0.0, 2 * np.pi, n * m)
    s, lo, hi = KR.ring_s_bounds(offsets, phi, *KR.ring_prepare(offsets, phi, logv, 2), share, ra, s_max, reach, floor, atol, untabled, rtol, rel_floors, pad_floors)  # fmt: skip
    for t, (p_t, l_t) in enumerate(tables):
        x = ra[t::n]
        col = np.floor(x / (2 * np.pi / n_cols)).astype(int) % n_cols
        cap = s_max[t, col]
        if untabled[t]:
            np.testing.assert_array_equal(s[t::n], 0.0)
            np.testing.assert_array_equal(lo[t::n], -atol[t])
            np.testing.assert_array_equal(hi[t::n], cap)
            continue
        v = np.exp(KR.ring_interp(p_t, l_t, x))
        j = (np.searchsorted(p_t, x, side="right") - 1) % p_t.size  # the interval's node
        sh = share[offsets[t] + j]
        pad = np.where(reach[t, col] & (v > rel_floors * floor[t]), atol[t], pad_floors * floor[t])
        np.testing.assert_allclose(s[t::n], v, rtol=1e-10)
        np.testing.assert_allclose(lo[t::n], np.maximum(v * (1 - sh) / (1 + rtol) - pad, -atol[t]), rtol=1e-10)  # fmt: skip
        np.testing.assert_allclose(hi[t::n], np.minimum(v * (1 + sh) / (1 - rtol) + pad, cap), rtol=1e-10)  # fmt: skip


def _ranked(st, exact):
    """A resolved scramble's ranked statistic h: the exact one, at least the cut."""
    return np.maximum(exact, st.cut)


def _exact_scrambles(model, lists, trials):
    fixed = model.background_terms(lists[5], lists[3])
    m = trials[6].size - 1
    bg = type(fixed)(*(np.tile(a, m) for a in fixed))
    return model.evaluate_batch(*trials, background_terms=bg).odds


def _assert_decided(st, thresholds, d, exact):
    """Every count of the decided trials at each threshold above the cut is the exact
    statistic's, and evaluated trials carry it to the bit."""
    checked = 0
    for t in thresholds[thresholds >= st.exact_above()]:
        np.testing.assert_array_equal(d.lo > t, exact > t)
        np.testing.assert_array_equal(d.hi < t, exact < t)
        checked += 1
    known = (d.lo == d.hi) & d.resolved
    np.testing.assert_array_equal(d.lo[known], _ranked(st, exact[known]))
    return checked


def _check_scrambles(model, seed, inject, n_trials=None):
    lists = _lists(model, seed, inject)
    n = lists[0].size
    st = ScrambleTrials(model, *lists, n_trials=n_trials)
    assert st.coarse == (n_trials is not None and n_trials <= 5000) and not st.direct.all()
    trials = scramble_sampler(*lists)(np.random.default_rng(seed), N_TRIALS)
    exact = _exact_scrambles(model, lists, trials)
    b = st.bounds(trials[0])
    r, h = b.resolved, _ranked(st, exact)
    assert np.all((b.lo[r] <= h[r]) & (h[r] <= b.hi[r]))
    # not vacuous: bounds of trials well above the cut are mostly the tables' and the
    # kernel's tolerances wide (4% fine, 7% coarse), not more
    above = r & (exact > 2 * st.cut)
    assert not above.any() or np.median(b.hi[above] / b.lo[above]) < 1.02 * (1 + st.bound_rtol) ** 2  # fmt: skip
    # doublets occur (O3's rule: flat in azimuth, zenith) and are bounded, not dropped
    zen, az = model.detector_frame(*trials[:2], trials[4], trials[5], np.full(n * N_TRIALS, np.nan))
    lon, lat = np.radians(az), np.radians(zen)
    pairs = KO.find_pairs(lon, lat, np.radians(trials[2]), trials[6], C.PAIR_SEPARATION_SIGMAS, KO.PAIR_O3_FLAT)  # fmt: skip
    assert n < 2 or pairs[0].size > 0
    # decided at the observed values and at 20 trials' own values above the cut
    fixed = model.background_terms(lists[5], lists[3])
    obs = model.evaluate_batch(*lists, [0, n], background_terms=fixed)
    t_event, t_nu = st.thresholds(lists[0], obs.odds[0], obs.odds_i)
    pool = np.sort(exact[r & (exact >= st.exact_above())])
    thresholds = np.concatenate([t_nu, [t_event], pool[:: max(1, pool.size // 20)]])
    d = st.decide_batch(thresholds, trials[0])
    assert _assert_decided(st, thresholds, d, exact) >= min(pool.size, 20)
    if inject:
        assert t_event == obs.odds[0] >= st.exact_above()
    return int(above.sum())


def test_scrambles_without_tables_are_exact(model):
    """Too few trials to pay for a table: every neutrino is evaluated at each trial's RA
    where the map is within reach (the exact kernel: its S_i is known, not bounded),
    and the decided counts are the exact statistic's."""
    lists = _lists(model, 3, True)
    st = ScrambleTrials(model, *lists, n_trials=10)
    assert st.direct.all() and st.n_nodes == 0
    trials = scramble_sampler(*lists)(np.random.default_rng(0), 200)
    exact = _exact_scrambles(model, lists, trials)
    b = st.bounds(trials[0])
    r, h = b.resolved, _ranked(st, exact)
    assert np.all((b.lo[r] <= h[r]) & (h[r] <= b.hi[r]))
    np.testing.assert_array_equal(st.evaluate_batch(trials[0]).odds, exact)
    thresholds = np.sort(exact[r])[::5]
    _assert_decided(st, thresholds, st.decide_batch(thresholds, trials[0]), exact)


def test_scramble_bounds_hold_without_a_table():
    """A neutrino outside the time window (T_i = 0: no P_s1, no table) still has
    bounds of its S_i (for its doublets' bounds): every resolved trial's ranked
    statistic lies in its bounds on 500 scrambles of an injected bbh-2 list."""
    model = _model("bbh-2")
    lists = list(_lists(model, 3, True))
    lists[4] = lists[4].copy()
    lists[4][0] = 5000.0  # 5,000 s after the merger
    st = ScrambleTrials(model, *lists)
    assert st.coef[0] == 0.0 and st.coef[1:].all()
    trials = scramble_sampler(*lists)(np.random.default_rng(0), 500)
    b = st.bounds(trials[0])
    r, h = b.resolved, _ranked(st, _exact_scrambles(model, lists, trials))
    assert r.sum() > 50 and np.all((b.lo[r] <= h[r]) & (h[r] <= b.hi[r]))


def test_background_screen_matches_the_exact_statistic(model):
    """2,000 background lists: the screened statistic against the exact kernel."""
    _check_background(model, N_TRIALS)


def test_background_screen_matches_the_exact_statistic_on_a_wide_map():
    """The same on bbh-6 (754 deg² at 90%), 1,000 lists (the exact ones cost ~2 ms each)."""
    _check_background(_model("bbh-6"), N_TRIALS // 2)


def test_ring_table_skips_the_kernel_out_of_reach():
    """With a reach mask, the kernel runs only in reachable columns; the table stays
    within TABLE_RTOL there and within the floor elsewhere, where it reads the stand-in."""
    dec, sigma = 0.3, math.radians(0.5)
    width = sigma / math.cos(dec)
    floor = 1e-12

    def f(phi):
        return np.exp(-0.5 * (((phi - 2.0 + np.pi) % (2 * np.pi) - np.pi) / width) ** 2)

    reach = np.zeros(360, dtype=bool)
    reach[95:135] = True  # 95-135 deg: the blob at 114.6 deg and ~7.4 sigma around it
    seen = []
    phi, logv = ring_table(lambda p: (seen.append(p), f(p))[1], dec, sigma, floor, reach=reach, below=lambda p: 0.5 * floor + 0 * p)  # fmt: skip
    called = np.concatenate(seen)
    cols = (called // (2 * np.pi / 360)).astype(int) % 360  # the table's own columns
    assert np.all(reach[cols])
    x = np.random.default_rng(5).uniform(0, 2 * np.pi, 20000)
    got, want = np.exp(KR.ring_interp(phi, logv, x)), f(x)
    inside = reach[(x // (2 * np.pi / 360)).astype(int) % 360] & (want > floor)
    assert np.all(np.abs(got[inside] / want[inside] - 1) <= TABLE_RTOL)
    assert np.all(np.abs(got[~inside] - want[~inside]) <= floor)
    full = ring_table(f, dec, sigma, floor)[0]
    assert called.size < full.size  # far fewer kernel calls than nodes without the mask


def _check_background(model, n_lists):
    ra, dec, sigma, energy, dt, zen, offsets = background_sampler(model.background)(
        np.random.default_rng(11), n_lists
    )
    exact = model.evaluate_batch(ra, dec, sigma, energy, dt, zen, offsets)
    fast = screened_model(model).evaluate_batch(ra, dec, sigma, energy, dt, zen, offsets)
    t = exact.terms
    # the odds an overlap at the floor gives, per neutrino, summed per list
    s_floor = SCREEN_FLOOR * model.skymap.probdensity.max() * model.tables.dec_rows(t["energy_eval"]).max(axis=1)  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        per_unit = np.where(t["signal_overlap"] > 0, t["p_h_s1"] / t["signal_overlap"], 0.0)
        floor_i = np.nan_to_num(per_unit * s_floor / (t["p_h_c"] + t["p_h_0"]))
    floor = KO.segment_sum(floor_i, offsets)
    _assert_close(fast.odds, exact.odds, floor)
    assert np.mean(exact.odds > 100 * floor) > 0.01  # some lists do reach the map


@pytest.mark.parametrize(
    "name, seed, inject",
    [("bns-1", 3, True), ("bbh-2", 1, False), ("bbh-2", 3, True), ("bbh-6", 2, False), ("bbh-6", 5, True)],
)  # fmt: skip
def test_scramble_pvalues_decided_by_bounds_are_the_exact_ones(name, seed, inject):
    """trial_pvalues' default (scrambles decided by bounds) against method="exact" on the
    same 2,000 scrambles and tie draws: wherever the observed value is resolved (at
    least RESOLVED_FLOORS floors), the counts and p-values are the exact method's, to
    the bit; every resolved trial's exact statistic lies in its bounds, and the trials
    evaluated to decide are the exact statistic, to the bit."""
    model = _model(name)
    rng = np.random.default_rng(seed)
    nl = simulate_background_neutrinos(rng, model.t_gw_mjd)
    if inject:
        nl = nl.concatenate(simulate_signal_neutrino(rng, model.skymap, model.t_gw_mjd))
    obs = model.evaluate(nl, float(mjd_to_gps(model.t_gw_mjd)))
    fast = trial_pvalues(model, obs, N_TRIALS, kind="scramble", seed=seed)
    exact = trial_pvalues(model, obs, N_TRIALS, kind="scramble", seed=seed, method="exact")
    assert fast.method["statistic"] == "fast" and fast.method["fast_path"] == "ra_lookup"
    zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
    lists = (obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen)
    st = ScrambleTrials(model, *lists, n_trials=N_TRIALS)
    t_event, t_nu = st.thresholds(obs.ra, obs.odds, obs.odds_ratio)
    floor = st.odds_floor().sum()
    # exact values far enough above the cut: no trial below it can reach them
    resolved_nu = (t_nu == obs.odds_ratio) & (t_nu >= st.exact_above())
    if t_event == obs.odds and t_event >= st.exact_above():
        for key in ("n_greater", "n_equal", "p_value_upper"):
            assert fast.method[key] == exact.method[key], key
        assert fast.p_value == exact.p_value
    else:  # only lists below the cut are ranked by the fast statistic
        assert t_event < st.exact_above() and st.exact_above() < 1.2 * RESOLVED_FLOORS * floor
    assert inject is False or t_event >= st.exact_above()  # a neutrino from the map is resolved
    np.testing.assert_array_equal(fast.p_values_neutrino[resolved_nu], exact.p_values_neutrino[resolved_nu])  # fmt: skip
    # the same trials: bounds of the exact statistic where resolved
    ra = scramble_sampler(*lists)(np.random.default_rng(seed), N_TRIALS)[0]
    b = st.bounds(ra)
    e = exact.trial_odds
    h = _ranked(st, e)
    assert np.all((b.lo <= h) & (h <= b.hi) | ~b.resolved)
    with np.errstate(divide="ignore"):
        assert b.resolved.sum() > 100
        assert np.median((b.hi / b.lo)[b.resolved]) < 1.02 * (1 + st.bound_rtol) ** 2
    lo, hi = fast.trial_bounds.T
    evaluated = (lo == hi) & b.resolved
    np.testing.assert_array_equal(fast.trial_odds[evaluated], h[evaluated])
    assert fast.method["n_trials_evaluated"] <= evaluated.sum() < N_TRIALS // 10


def test_refined_bounds_hold_the_exact_statistic():
    """Thresholds at every 7th resolved trial's own exact statistic above the cut (an
    11-neutrino list on bbh-6, doublets in most trials) make the trials go through
    every refinement (exact S_i, a coarse then the exact look at doublet terms, the
    whole statistic): the bounds still hold each resolved trial's ranked statistic
    (its exact one, at least the cut), and the trials evaluated carry it to the bit.
    Thresholds below the cut need no refinement at all."""
    model = _model("bbh-6")
    obs_lists = _lists(model, 14, False)
    n, m = obs_lists[0].size, 1000
    st = ScrambleTrials(model, *obs_lists)
    trials = scramble_sampler(*obs_lists)(np.random.default_rng(5), m)
    fixed = model.background_terms(obs_lists[5], obs_lists[3])
    bg = type(fixed)(*(np.tile(a, m) for a in fixed))
    exact = model.evaluate_batch(*trials, background_terms=bg).odds
    b = st.bounds(trials[0])
    assert n >= 8 and b.resolved.sum() > m // 2
    thresholds = np.sort(exact[b.resolved & (exact >= st.cut)])[::7]
    assert thresholds.size > 20
    d = st.decide_batch(thresholds, trials[0])
    r, h = b.resolved, _ranked(st, exact)
    assert np.all((d.lo[r] <= h[r]) & (h[r] <= d.hi[r]))
    evaluated = (d.lo == d.hi) & r
    np.testing.assert_array_equal(d.lo[evaluated], h[evaluated])
    # whole lists only for the trials at a threshold (their own) and a few more
    assert thresholds.size <= d.n_refined <= thresholds.size + m // 50
    # no resolved trial is left holding a threshold unless it is known
    t = np.sort(thresholds)
    holds = np.searchsorted(t, d.hi, side="right") > np.searchsorted(t, d.lo, side="left")
    assert not np.any(holds & (d.lo < d.hi))
    below = np.append(np.geomspace(1e-3, 0.999, 8) * st.cut, exact[exact < st.cut])
    d_below = st.decide_batch(below, trials[0])
    assert d_below.n_refined == 0
    np.testing.assert_array_equal(np.c_[d_below.lo, d_below.hi], np.c_[b.lo, b.hi])
