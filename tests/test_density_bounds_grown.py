"""kernels.density_bounds.overlap_bounds' shortcuts against the plain formulas, exactly.

The kernel grows each nested disc's quadrant extremes from the disc before it where both
boxes lie at the same pyramid level (only the new columns and rows read), takes the
boxes' columns and quadrant rows from brackets of sin and asin (series, _half_brackets)
where the brackets leave none open, and the PSF's mass at the radii k sigma with k a
power of 2 from exp(-k²/2) computed once. None of that may move a bit: the kernel's
(S_lo, S_hi, U_hi) must equal the nested discs read one by one through disc_minmax,
disc_quadrants and annulus_mass, on the background trials' grid (256 rows) and trial
neutrinos like theirs (sigma 0.2-3 deg near the map, at high declination, across RA 0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from bayestar_events import DATA
from test_density_bounds import _overlap_bounds_plainly, _pixels

from kernels import density_bounds as KB
from kernels.healpix import pix2zphi_nest
from llama.science.skymap import read_sky_map


def _neutrinos(skymap, rng, k):
    """3 k trial-like neutrinos: k drawn from the map's probability (most take the
    nested discs), k at |dec| 60-89.9 deg, k within 2 deg of RA 0; sigma 0.2-3 deg."""
    order, ipix, density = _pixels(skymap)
    prob = density * 4.0 * np.pi / (12.0 * 4.0**order)
    pick = rng.choice(prob.size, size=k, p=prob / prob.sum())
    z, _, phi = zip(*(pix2zphi_nest(int(order[j]), int(ipix[j])) for j in pick), strict=True)
    dec_map = np.arcsin(np.clip(np.array(z), -1, 1)) + np.radians(rng.normal(0, 1.0, k))
    ra_map = (np.array(phi) + np.radians(rng.normal(0, 1.0, k))) % (2 * np.pi)
    dec_pole = np.radians(rng.uniform(60, 89.9, k)) * rng.choice([-1, 1], k)
    ra_pole = rng.uniform(0, 2 * np.pi, k)
    dec_wrap = np.arcsin(rng.uniform(-1, 1, k))
    ra_wrap = np.radians(rng.uniform(-2, 2, k)) % (2 * np.pi)
    ra = np.concatenate([ra_map, ra_pole, ra_wrap])
    dec = np.clip(np.concatenate([dec_map, dec_pole, dec_wrap]), -0.5 * np.pi, 0.5 * np.pi)
    sigma = np.radians(np.exp(rng.uniform(np.log(0.2), np.log(3.0), 3 * k)))
    return ra, dec, sigma


@pytest.mark.parametrize("kind", [0, 1])
@pytest.mark.parametrize("name", ["bbh-6", "bns-9"])
def test_overlap_bounds_at_256_rows_are_the_plain_nested_discs(name, kind):
    """1,800 trial-like neutrinos through every nested disc (``enough`` 0) and with an
    ``enough`` that stops some at the first disc: bit for bit the plain nested discs."""
    skymap = read_sky_map(DATA / f"{name}.fits")
    n_dec = 256
    pyr = KB.minmax_pyramid(*_pixels(skymap), n_dec)
    peak = float(np.max(skymap.probdensity))
    rng = np.random.default_rng(5 + kind)
    ra, dec, sigma = _neutrinos(skymap, rng, 600)
    edges = np.sin(np.radians(np.linspace(-90.0, 90.0, 19)))
    edges[0], edges[-1] = -1.0, 1.0
    arows = rng.uniform(0.1, 2.0, (ra.size, 18))
    zero = np.zeros(ra.size)
    want = _overlap_bounds_plainly(pyr, n_dec, peak, ra, dec, sigma, arows, edges, kind, zero)
    got = KB.overlap_bounds(*pyr, n_dec, peak, ra, dec, sigma, arows, edges, kind, zero)
    np.testing.assert_array_equal(np.array(got), want)
    enough = np.where(rng.uniform(size=ra.size) < 0.5, want[1] * 2.0, 0.0)
    want_e = _overlap_bounds_plainly(pyr, n_dec, peak, ra, dec, sigma, arows, edges, kind, enough)
    got_e = KB.overlap_bounds(*pyr, n_dec, peak, ra, dec, sigma, arows, edges, kind, enough)
    np.testing.assert_array_equal(np.array(got_e), want_e)
    assert np.any(want_e[1] != want[1])


def test_half_brackets_hold_what_sin_and_asin_give():
    """Where _half_brackets says whole rows (1), the exact test says so too; where it
    gives brackets (2), the exact RA half-width asin(sin r / cos dec) and its 1 - cos
    lie inside them; and all three states occur (radii up to 0.6 rad, declinations
    up to the poles, some where sin r is within 1e-9 of cos dec)."""
    rng = np.random.default_rng(3)
    n = 40_000
    radius = np.concatenate([rng.uniform(0, 0.6, n), np.radians(rng.uniform(0.05, 24, n))])
    dec = np.concatenate([np.arcsin(rng.uniform(-1, 1, n)), rng.uniform(-1.5707, 1.5707, n)])
    near = rng.uniform(size=2 * n) < 0.1  # sin r close to cos dec
    dec[near] = np.sign(dec[near] + 1e-300) * (
        np.arccos(np.sin(radius[near])) + rng.uniform(-1e-9, 1e-9, near.sum())
    )
    seen = set()
    for r, d in zip(radius, dec, strict=True):
        cos_d = math.cos(d)
        state, h_lo, h_hi, o_lo, o_hi = KB._half_brackets(r, d, cos_d)
        seen.add(state)
        s = math.sin(r)
        whole = abs(d) + r >= 0.5 * math.pi or s >= cos_d
        if state == 1:
            assert whole
        elif state == 2:
            assert not whole
            x = s / cos_d
            half = math.asin(x)
            olc = x * x / (1.0 + math.sqrt((1.0 - x) * (1.0 + x)))
            assert h_lo <= half <= h_hi, (r, d)
            assert o_lo <= olc <= o_hi, (r, d)
            assert h_hi - h_lo <= 2e-3 * half  # tight enough to decide most columns
    assert seen == {0, 1, 2}


def test_known_exps_are_the_exps_of_the_edges():
    """_mass_edge_known gives _mass_edge's floats at every radius k sigma (its stored
    exp(-k²/2) where the exponent is k²/2 to the bit, exp itself elsewhere), for
    sigmas over 10 decades and both PSFs; the stored values are libm's exp."""
    xs, es = KB._known_exps()
    assert np.array_equal(xs, 0.5 * KB.RADII_SIGMAS**2)
    assert [math.exp(-x) for x in xs] == es.tolist()
    rng = np.random.default_rng(9)
    sigmas = np.concatenate([10 ** rng.uniform(-8, 2, 3000), [1e-3, 0.01, 0.5, 1.0]])
    for kind in (0, 1):
        for sg in sigmas:
            for k, factor in enumerate(KB.RADII_SIGMAS):
                psi = min(factor * sg, math.pi)
                got = KB._mass_edge_known(psi, sg, kind, xs[k], es[k])
                assert got == KB._mass_edge(psi, sg, kind), (sg, factor, kind)
