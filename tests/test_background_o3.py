"""O3's background density B (kernels/background.py, BackgroundDensity.o3_*) against the spec.

The reference here is a plain-Python reading of SCIENCE.md ("Background density B and the
energy the signal is evaluated at", steps 1-5; "Pairs"; the sub-threshold "Background per
neutrino"): loops over the sample, one event at a time, nothing shared with the kernels.
Counts are integers, so kernel and reference must agree exactly (rtol 1e-12 on B).
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from kernels.background import block_sort, o3_primary_terms
from llama.science.background import BackgroundDensity

RTOL = 1e-12


# --- the reference, written from the spec text -------------------------------------------


def ref_count(sample, theta, eps, dw, de):
    """N = #{|theta - theta_bg| < dw and |eps - eps_bg| < eps dE}."""
    n = 0
    for z, e in sample:
        if abs(theta - z) < dw and abs(eps - e) < eps * de:
            n += 1
    return n


def ref_omega(theta, dw, capped):
    """Solid angle of step 5's normaliser [sr]."""
    if capped:
        top = max(0.0, theta - dw)
        bottom = min(180.0, theta + dw)
        return 2 * math.pi * (math.cos(math.radians(top)) - math.cos(math.radians(bottom)))
    return (
        2 * math.pi * abs(math.cos(math.radians(theta - dw)) - math.cos(math.radians(theta + dw)))
    )


def ref_move(eps, median, log):
    """Step 3's energy move: x10 below the median of all sample energies, else /10."""
    if eps < median:
        log.append("up")
        return eps * 10
    log.append("down")
    return eps / 10


def ref_steps_4_5(sample, theta, eps_own, eps, n, dw, de, capped):
    f_e = 1.0
    if theta > 80 and eps_own > eps:
        f_e = (eps_own / eps) ** 3.7
        eps = eps_own
    b = n / (len(sample) * ref_omega(theta, dw, capped) * 2 * de * eps) / f_e
    return b, eps, f_e


def ref_primary(sample, theta, eps_own, capped=False, dw=2.5, de=0.3):
    """Steps 1-5 for one neutrino starting from windows (dw, dE); returns a dict."""
    median = statistics.median([e for _, e in sample])
    band = [e for z, e in sample if abs(theta - z) < dw]
    lo = min(band) if band else math.nan
    hi = max(band) if band else math.nan
    eps = max(eps_own, lo) if band else eps_own
    raised = band and eps_own < lo
    dw_in = dw
    moves = []
    n = ref_count(sample, theta, eps, dw, de)
    while n < 5:
        de *= 1.5
        dw *= 1.5
        eps = ref_move(eps, median, moves)
        n = ref_count(sample, theta, eps, dw, de)
    b, eps, f_e = ref_steps_4_5(sample, theta, eps_own, eps, n, dw, de, capped)
    return dict(b=b, eps=eps, lo=lo, hi=hi, n=n, dw=dw, de=de, dw_in=dw_in, moves=moves,
                f_e=f_e, raised=raised)  # fmt: skip


def ref_partner(sample, theta, eps_own, lo, hi, rule, capped=False, eps_primary=None):
    """The partner of a doublet: clamp to the primary's [lo, hi], then steps 3-5."""
    median = statistics.median([e for _, e in sample])
    eps = min(max(eps_own, lo), hi)
    clamped = eps
    dw, de = 2.5, 0.3
    moves = []
    first_n = ref_count(sample, theta, eps, dw, de)
    if rule == "o3":
        # O3's loop: count, widen and move, and only then stop if this count reached
        # 5; at most 60 passes (the project's cap on every loop)
        for _ in range(60):
            n = ref_count(sample, theta, eps, dw, de)
            de *= 1.5
            dw *= 1.5
            # the direction of the move tests the primary's energy, not eps
            eps = eps * 10 if eps_primary < median else eps / 10
            moves.append("up" if eps_primary < median else "down")
            if n >= 5:
                break
    else:
        n = first_n
        while n < 5:
            de *= 1.5
            dw *= 1.5
            eps = ref_move(eps, median, moves)
            n = ref_count(sample, theta, eps, dw, de)
    b, eps, f_e = ref_steps_4_5(sample, theta, clamped, eps, n, dw, de, capped)
    return dict(b=b, eps=eps, n=n, first_n=first_n, moves=moves, clamped=clamped)


def ref_list(sample, thetas, energies, capped=False):
    """Sub-threshold: the same steps in list order, dw and dE set once and carried."""
    dw, de = 2.5, 0.3
    out = []
    for theta, eps_own in zip(thetas, energies, strict=True):
        r = ref_primary(sample, theta, eps_own, capped, dw, de)
        dw, de = r["dw"], r["de"]
        out.append(r)
    return out


# --- helpers -----------------------------------------------------------------------------


def random_sample(rng, n):
    """Zeniths isotropic, energies log-normal around 1e3 GeV: dense near the peak (the
    first count often reaches 5), sparse in the tails (the energy moves both ways)."""
    zen = np.degrees(np.arccos(rng.uniform(-1, 1, n)))
    en = 10 ** rng.normal(3, 0.8, n)
    return zen, en


def random_queries(rng, n):
    zen = rng.uniform(0.5, 179.5, n)
    en = 10 ** rng.uniform(0, 8, n)  # some below the band's minimum: raised
    return zen, en


def pairs(zen, en):
    return list(zip(zen.tolist(), en.tolist(), strict=True))


def assert_terms(terms, refs, index=None):
    idx = range(len(refs)) if index is None else index
    np.testing.assert_array_equal(terms.count, [refs[k]["n"] for k in idx])
    np.testing.assert_allclose(terms.density, [refs[k]["b"] for k in idx], rtol=RTOL)
    np.testing.assert_allclose(terms.energy_eval, [refs[k]["eps"] for k in idx], rtol=RTOL)


# --- primary -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_primary_matches_reference(seed):
    rng = np.random.default_rng(seed)
    zen, en = random_sample(rng, 1500)
    bg = BackgroundDensity(zen, en)
    sample = pairs(zen, en)
    qz, qe = random_queries(rng, 80)
    for band in ("o3", "capped"):
        t = bg.o3_primary(qz, qe, band=band)
        refs = [ref_primary(sample, z, e, band == "capped") for z, e in zip(qz, qe, strict=True)]
        assert_terms(t, refs)
        np.testing.assert_array_equal(t.energy_lo, [r["lo"] for r in refs])
        np.testing.assert_array_equal(t.energy_hi, [r["hi"] for r in refs])
    # The random cases must reach every branch, or this test would prove little.
    assert any(r["raised"] for r in refs)
    assert any(r["moves"] and r["moves"][0] == "up" for r in refs)
    assert any(r["moves"] and r["moves"][0] == "down" for r in refs)
    assert any(r["f_e"] > 1 for r in refs)
    assert any(not r["moves"] for r in refs)


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 1000])
def test_block_counting_is_exact_on_ties(block):
    # Zeniths and energies on grids, queries on the same grids: many events sit exactly
    # on a window edge, where only the literal |x - c| < w test decides. Every block
    # length must give the plain loop's counts.
    rng = np.random.default_rng(7)
    zen = rng.integers(0, 181, 3000).astype(float)
    en = 10.0 * rng.integers(1, 40, 3000)
    order = np.argsort(zen, kind="stable")
    zs, es = zen[order], en[order]
    median = statistics.median(es.tolist())
    qz = rng.integers(0, 181, 60).astype(float)
    qe = 10.0 * rng.integers(1, 40, 60)
    got = o3_primary_terms(
        qz, qe, zs, es, block_sort(es, block), block, median, 2.5, 0.3, 5, 1.5, 10.0, 80.0,
        3.7, 60, False,
    )  # fmt: skip
    sample = pairs(zs, es)
    refs = [ref_primary(sample, z, e) for z, e in zip(qz, qe, strict=True)]
    np.testing.assert_array_equal(got[4], [r["n"] for r in refs])
    np.testing.assert_allclose(got[0], [r["b"] for r in refs], rtol=RTOL)
    np.testing.assert_array_equal(got[2], [r["lo"] for r in refs])
    np.testing.assert_array_equal(got[3], [r["hi"] for r in refs])


def test_steep_zenith_correction_by_hand():
    # All sample energies 1e3 GeV (median 1e3). A 5e3 GeV neutrino: 0 events within
    # 30%; eps /10 -> 500 (dE 0.45: none); x10 -> 5000 (dE 0.675: none); /10 -> 500 with
    # dE 1.0125: all events in the band. Above 80 deg eps_i = 5000 > 500, so
    # f_E = 10^3.7 and eps = 5000; at 70 deg eps stays 500.
    zen = np.linspace(0.0, 180.0, 3601)
    bg = BackgroundDensity(zen, np.full(zen.size, 1e3))
    # "theta_i > 80 deg" is strict: exactly 80 deg is not corrected.
    t = bg.o3_primary([100.0, 70.0, 80.0], [5e3, 5e3, 5e3])
    assert t.energy_eval.tolist() == [5000.0, 500.0, 500.0]
    dw, de = 2.5 * 1.5**3, 0.3 * 1.5**3
    cases = [(100.0, 5000.0, 10**3.7), (70.0, 500.0, 1.0), (80.0, 500.0, 1.0)]
    for k, (theta, eps, f_e) in enumerate(cases):
        n = int(np.sum(np.abs(theta - zen) < dw))
        assert t.count[k] == n
        omega = 2 * np.pi * abs(np.cos(np.radians(theta - dw)) - np.cos(np.radians(theta + dw)))
        expect = n / (zen.size * omega * 2 * de * eps) / f_e
        np.testing.assert_allclose(t.density[k], expect, rtol=1e-9)


def test_energy_at_the_median_moves_down():
    # "x10 if eps < median else /10": an eps equal to the median moves down. Sample:
    # 1800 events at 10 GeV, one at 1e3 GeV (the median), 1800 at 1e5 GeV.
    zen = np.linspace(0.0, 180.0, 3601)
    en = np.concatenate([np.full(1800, 10.0), [1e3], np.full(1800, 1e5)])
    en = np.random.default_rng(4).permutation(en)
    bg = BackgroundDensity(zen, en)
    ref = ref_primary(pairs(zen, en), 60.0, 1e3)
    assert ref["moves"][0] == "down"
    t = bg.o3_primary([60.0], [1e3])
    assert_terms(t, [ref])


def test_runaway_loop_is_capped():
    # Every event at zenith > 170 deg: a neutrino at 10 deg has an empty band (no eps_lo,
    # so eps stays 1e-300 GeV), and eps x10 per step needs ~300 steps before its window
    # reaches the sample. The loop must stop (60 widenings) with the last count, 0.
    rng = np.random.default_rng(3)
    bg = BackgroundDensity(rng.uniform(170, 180, 50), 10 ** rng.uniform(2, 4, 50))
    t = bg.o3_primary([10.0], [1e-300])
    assert np.isnan(t.energy_lo[0]) and np.isnan(t.energy_hi[0])
    assert t.count[0] == 0 and t.density[0] == 0.0
    assert t.energy_eval[0] == pytest.approx(1e-240, rel=1e-9)


# --- partner -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_partner_matches_reference(seed):
    rng = np.random.default_rng(seed)
    zen, en = random_sample(rng, 1500)
    bg = BackgroundDensity(zen, en)
    sample = pairs(zen, en)
    pz, pe = random_queries(rng, 60)
    prim = bg.o3_primary(pz, pe)
    jz = np.clip(pz + rng.normal(0, 3, pz.size), 0.5, 179.5)
    je = 10 ** rng.uniform(0, 8, pz.size)
    results = {}
    for rule in ("o3", "fixed"):
        for band in ("o3", "capped"):
            t = bg.o3_partner(
                jz, je, prim.energy_lo, prim.energy_hi, prim.energy_eval, rule=rule, band=band
            )
            refs = [
                ref_partner(sample, z, e, lo, hi, rule, band == "capped", ep)
                for z, e, lo, hi, ep in zip(
                    jz, je, prim.energy_lo, prim.energy_hi, prim.energy_eval, strict=True
                )
            ]
            assert_terms(t, refs)
            np.testing.assert_array_equal(t.energy_lo, prim.energy_lo)
            np.testing.assert_array_equal(t.energy_hi, prim.energy_hi)
            results[rule, band] = (t, refs)
    slip, fixed = results["o3", "o3"], results["fixed", "o3"]
    # Clamping happened on both sides, and the slip changed B where the first count was
    # already enough (fixed: no widening; slip: one).
    clamped = [r["clamped"] for r in slip[1]]
    assert any(c != e and c == lo for c, e, lo in zip(clamped, je, prim.energy_lo, strict=True))
    assert any(c != e and c == hi for c, e, hi in zip(clamped, je, prim.energy_hi, strict=True))
    enough = [k for k, r in enumerate(fixed[1]) if r["first_n"] >= 5]
    assert enough
    assert all(len(slip[1][k]["moves"]) == 1 and not fixed[1][k]["moves"] for k in enough)
    assert not np.allclose(slip[0].density[enough], fixed[0].density[enough])


def test_partner_slip_widens_once_even_when_first_count_is_enough():
    zen = np.linspace(0.0, 180.0, 3601)
    bg = BackgroundDensity(zen, np.full(zen.size, 1e3))
    lo, hi = np.array([1e3]), np.array([1e3])
    # eps_j = 4e3 is clamped to the primary's eps_hi = 1e3; the first count is 99 >= 5.
    fixed = bg.o3_partner([60.0], [4e3], lo, hi, hi, rule="fixed")
    slip = bg.o3_partner([60.0], [4e3], lo, hi, hi, rule="o3")
    # the slip's move direction follows the primary's energy: below the median, x10
    up = bg.o3_partner([60.0], [4e3], lo, hi, np.array([10.0]), rule="o3")
    assert up.energy_eval[0] == 1e4 and up.count[0] == 99
    assert fixed.count[0] == slip.count[0] == 99
    assert fixed.energy_eval[0] == 1e3
    assert slip.energy_eval[0] == 1e2  # 1e3 is not below the median 1e3: /10
    deg = np.pi / 180

    def omega(dw):
        return 2 * np.pi * abs(np.cos((60 - dw) * deg) - np.cos((60 + dw) * deg))

    np.testing.assert_allclose(
        fixed.density[0], 99 / (zen.size * omega(2.5) * 2 * 0.3 * 1e3), rtol=1e-12
    )
    np.testing.assert_allclose(
        slip.density[0], 99 / (zen.size * omega(3.75) * 2 * 0.45 * 1e2), rtol=1e-12
    )


# --- sub-threshold list --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_list_matches_reference_and_carries_windows(seed):
    rng = np.random.default_rng(seed)
    zen, en = random_sample(rng, 1000)
    bg = BackgroundDensity(zen, en)
    sample = pairs(zen, en)
    qz, qe = random_queries(rng, 25)
    for band in ("o3", "capped"):
        t = bg.o3_list(qz, qe, band=band)
        refs = ref_list(sample, qz.tolist(), qe.tolist(), band == "capped")
        assert_terms(t, refs)
        np.testing.assert_array_equal(t.energy_lo, [r["lo"] for r in refs])
        np.testing.assert_array_equal(t.energy_hi, [r["hi"] for r in refs])
    # Later neutrinos started from windows widened by earlier ones, and that changed B.
    inherited = [k for k, r in enumerate(refs) if r["dw_in"] > 2.5]
    assert inherited
    fresh = bg.o3_primary(qz, qe, band="capped")
    assert not np.allclose(t.density[inherited], fresh.density[inherited])


def test_list_inherits_band_and_bounds():
    # Sample energies 1e3 GeV except a 10 GeV event at zenith 93 deg, outside the fresh
    # band of a 90 deg neutrino but inside the band widened x1.5 (3.75 deg).
    zen = np.linspace(0.0, 180.0, 3601)
    en = np.full(zen.size, 1e3)
    en[np.argmin(np.abs(zen - 93.0))] = 10.0
    bg = BackgroundDensity(zen, en)
    # The first neutrino (1e4 GeV at 40 deg) needs one widening; the second (90 deg)
    # then sees the 10 GeV event in its band.
    t = bg.o3_list([40.0, 90.0], [1e4, 1e3])
    fresh = bg.o3_primary([40.0, 90.0], [1e4, 1e3])
    assert t.energy_lo.tolist() == [1e3, 10.0]
    assert fresh.energy_lo.tolist() == [1e3, 1e3]
    n_wide = int(np.sum(np.abs(90.0 - zen) < 3.75)) - 1  # the 10 GeV event is outside 30%
    assert t.count.tolist() == [fresh.count[0], n_wide]
    assert fresh.count[1] == int(np.sum(np.abs(90.0 - zen) < 2.5))


def test_list_offsets_start_each_list_fresh():
    rng = np.random.default_rng(5)
    zen, en = random_sample(rng, 1000)
    bg = BackgroundDensity(zen, en)
    qz, qe = random_queries(rng, 30)
    together = bg.o3_list(qz, qe, offsets=[0, 10, 10, 30])
    apart = [bg.o3_list(qz[a:b], qe[a:b]) for a, b in ((0, 10), (10, 30))]
    for field in ("density", "energy_eval", "energy_lo", "energy_hi", "count"):
        np.testing.assert_array_equal(
            getattr(together, field), np.concatenate([getattr(p, field) for p in apart])
        )
    with pytest.raises(ValueError, match="offsets"):
        bg.o3_list(qz, qe, offsets=[0, 10])


# --- the capped band -----------------------------------------------------------------------


def test_capped_band_near_the_pole():
    # An isotropic sample at exact quantiles of cos(zenith), energies all 1e3 GeV, so the
    # true angular density is N_bg / 4 pi per sr and B * 2 dE eps * 4 pi should be 1.
    n = 200_000
    zen = np.degrees(np.arccos(1 - 2 * (np.arange(n) + 0.5) / n))
    bg = BackgroundDensity(zen, np.full(n, 1e3))
    theta = np.array([0.0, 1.0, 90.0])
    o3 = bg.o3_primary(theta, np.full(3, 1e3), band="o3")
    capped = bg.o3_primary(theta, np.full(3, 1e3), band="capped")
    assert (o3.count >= 5).all() and (o3.count == capped.count).all()
    scale = 2 * 0.3 * 1e3 * 4 * np.pi
    # At the pole O3's solid angle is 0: B is infinite; capped stays finite and right.
    assert np.isinf(o3.density[0])
    assert capped.density[0] * scale == pytest.approx(1.0, abs=0.02)
    # One degree off the pole O3 is ~23% high; capped is within 2%.
    err_o3 = abs(o3.density[1] * scale - 1)
    err_capped = abs(capped.density[1] * scale - 1)
    assert err_capped < 0.02 < 0.15 < err_o3
    ratio = ref_omega(1.0, 2.5, True) / ref_omega(1.0, 2.5, False)
    np.testing.assert_allclose(o3.density[1] / capped.density[1], ratio, rtol=1e-12)
    # Away from the poles the two are the same formula.
    np.testing.assert_allclose(o3.density[2], capped.density[2], rtol=1e-12)


# --- edge cases and options ----------------------------------------------------------------


def test_empty_queries():
    rng = np.random.default_rng(0)
    bg = BackgroundDensity(*random_sample(rng, 100))
    e = np.array([])
    for t in (bg.o3_primary(e, e), bg.o3_partner(e, e, e, e, e), bg.o3_list(e, e)):
        assert all(a.shape == (0,) for a in t)
        assert t.count.dtype == np.int64 and t.density.dtype == np.float64


def test_bad_options_and_shapes():
    rng = np.random.default_rng(0)
    bg = BackgroundDensity(*random_sample(rng, 100))
    z, e = np.array([90.0]), np.array([1e3])
    with pytest.raises(ValueError, match="band must be one of 'o3', 'capped'; got 'cap'"):
        bg.o3_primary(z, e, band="cap")
    with pytest.raises(ValueError, match="band must be one of 'o3', 'capped'"):
        bg.o3_list(z, e, band="fixed")
    with pytest.raises(ValueError, match="rule must be one of 'o3', 'fixed'; got 'capped'"):
        bg.o3_partner(z, e, e, e, e, rule="capped")
    with pytest.raises(ValueError, match="band must be one of"):
        bg.o3_partner(z, e, e, e, e, band="O3")
    with pytest.raises(ValueError, match="one energy_lo, energy_hi and primary_energy per partner"):
        bg.o3_partner(z, e, np.array([1.0, 2.0]), e, e)
    with pytest.raises(ValueError, match="zenith has 1 entries, energy 2"):
        bg.o3_primary(z, [1.0, 2.0])
