"""Kernel-level checks of kernels/odds.py and kernels/trials.py against plain Python."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from kernels import odds as K
from kernels import trials as KT
from llama.science import constants as C


def test_time_overlap_analytic_cases():
    # T = max(0, 2h - |dt|) for equal half-windows h = 250 s.
    dt = np.array([0.0, 250.0, -250.0, 499.0, 500.0, 700.0, -1000.0])
    expected = np.array([500.0, 250.0, 250.0, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(K.time_overlap(dt, 250.0), expected, atol=1e-12)


def test_pair_time_overlap_three_windows():
    dt = np.array([0.0, 100.0, -200.0, 200.0, -300.0, 300.0])
    pi = np.array([0, 2, 4, 0])
    pj = np.array([1, 3, 5, 3])
    # windows [t-250, t+250] of GW (t=0) and both neutrinos; overlap = 500 - spread.
    expected = [400.0, 100.0, 0.0, 300.0]
    np.testing.assert_allclose(K.pair_time_overlap(dt, pi, pj, 250.0), expected)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("a", [0.0, 1e-3, 1.0, 11.0, 300.0, 1e5])
def test_poisson_energy_integral_matches_quad(k, a):
    lo, hi = C.E_NU_MIN, C.E_NU_MAX
    log_range = math.log(hi / lo)

    def integrand(log_e):  # substitute E = exp(u): P(E) dE = du / L
        lam = a * math.exp(log_e)
        return stats.poisson.pmf(k, lam) / log_range

    ref, _ = integrate.quad(integrand, math.log(lo), math.log(hi), limit=400, epsabs=1e-14)
    got = K.poisson_energy_integral(np.array([a]), k, lo, hi)[0]
    assert got == pytest.approx(ref, rel=1e-7, abs=1e-14)


def _brute_pairs(ra, dec, sigma, offsets, mode):
    out = []
    for m in range(len(offsets) - 1):
        for i in range(offsets[m], offsets[m + 1]):
            for j in range(i + 1, offsets[m + 1]):
                if mode == K.PAIR_GREAT_CIRCLE:
                    c = math.sin(dec[i]) * math.sin(dec[j]) + math.cos(dec[i]) * math.cos(
                        dec[j]
                    ) * math.cos(ra[i] - ra[j])
                    d = math.acos(max(-1.0, min(1.0, c)))
                else:
                    # O3: flat in degrees of (azimuth, zenith), azimuth NOT wrapped
                    d = math.hypot(dec[i] - dec[j], ra[i] - ra[j])
                if d < 5.0 * (sigma[i] + sigma[j]):
                    out.append((i, j))
    return out


@pytest.mark.parametrize("mode", [K.PAIR_GREAT_CIRCLE, K.PAIR_O3_FLAT])
def test_find_pairs_matches_brute_force_and_respects_lists(mode):
    rng = np.random.default_rng(3)
    n = 300
    # Clustered near the pole, where flat and great-circle distances differ most.
    ra = rng.uniform(0, 2 * np.pi, n)
    dec = np.radians(rng.uniform(70, 90, n))
    sigma = np.radians(rng.uniform(0.2, 3.0, n))
    offsets = np.array([0, 7, 7, 50, 120, 300])
    pi, pj = K.find_pairs(ra, dec, sigma, offsets, 5.0, mode)
    assert sorted(zip(pi.tolist(), pj.tolist(), strict=True)) == _brute_pairs(
        ra, dec, sigma, offsets, mode
    )
    seg = np.searchsorted(offsets, pi, side="right")
    assert np.array_equal(seg, np.searchsorted(offsets, pj, side="right"))


def test_o3_flat_distance_does_not_wrap_the_azimuth():
    # azimuths 359.5 and 0.5 deg at the same zenith: 1 deg apart on the sky, 359 flat
    az = np.radians([359.5, 0.5])
    zen = np.radians([100.0, 100.0])
    sigma = np.radians([0.3, 0.3])
    off = np.array([0, 2])
    assert K.find_pairs(az, zen, sigma, off, 5.0, K.PAIR_O3_FLAT)[0].size == 0
    assert K.find_pairs(az, np.pi / 2 - zen, sigma, off, 5.0, K.PAIR_GREAT_CIRCLE)[0].size == 1


def test_flat_and_great_circle_differ_near_pole():
    # Two points at dec 89 deg, 180 deg apart in RA: 2 deg apart on the sky.
    ra = np.array([0.0, np.pi])
    dec = np.radians([89.0, 89.0])
    sigma = np.radians([0.3, 0.3])  # threshold 5 (0.3 + 0.3) = 3 deg
    off = np.array([0, 2])
    assert K.find_pairs(ra, dec, sigma, off, 5.0, K.PAIR_GREAT_CIRCLE)[0].size == 1
    assert K.find_pairs(ra, dec, sigma, off, 5.0, K.PAIR_O3_FLAT)[0].size == 0


def test_combine_odds_nan_negative_pairs_once_and_infinity():
    p_s1 = np.array([1.0, np.nan, -1.0, 2.0, 1.0])
    p_c = np.array([1.0, 1.0, 1.0, 0.0, 2.0])
    # two doublets, (0, 1) and (0, 4), each entering only at its first member, 0
    first, term = np.array([0, 0]), np.array([2.0, 0.5])
    odds, p_s2 = K.combine_odds(p_s1, first, term, p_c, np.zeros(5))
    np.testing.assert_allclose(p_s2, [2.5, 0.0, 0.0, 0.0, 0.0])
    # NaN -> 0, negative -> 0, 2/0 = +inf kept (O3), 1 (no pair term at member 4)
    np.testing.assert_allclose(odds, [3.5, 0.0, 0.0, np.inf, 0.5])
    odds0, _ = K.combine_odds(np.zeros(1), first[:0], term[:0], np.zeros(1), np.zeros(1))
    assert odds0[0] == 0.0  # 0/0 is NaN -> 0


def test_segment_sum_and_offsets():
    v = np.arange(6.0)
    np.testing.assert_allclose(K.segment_sum(v, np.array([0, 0, 3, 6])), [0.0, 3.0, 12.0])
    assert KT.offsets_from_counts(np.array([0, 2, 1])).tolist() == [0, 0, 2, 3]
    assert KT.tile_offsets(3, 2).tolist() == [0, 3, 6]


def test_count_at_least_matches_numpy():
    rng = np.random.default_rng(0)
    t = rng.exponential(size=1000)
    t[:50] = 0.0
    obs = np.concatenate([[0.0, 10.0], rng.exponential(size=20)])
    expected = [(t >= x).sum() for x in obs]
    assert KT.count_at_least(t, obs).tolist() == expected
