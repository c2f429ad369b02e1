"""The quadrant bounds of kernels.density_bounds (what the nested discs of the background
trials' bounds of S pair up) against a brute force over points of each quadrant.

A disc about a PSF's centre is cut by the centre's meridian plane (east / west) and by
the great circle through the centre across it (north / south); the half-turn about the
centre maps each quadrant onto the opposite one. disc_quadrants must hold, for each
quadrant, the density of every point of it, and the half-turn of every point of a
quadrant must land in the opposite one (the pairing overlap_bounds' tighter bounds
rest on). Checked at points placed exactly by their angle and azimuth about the centre,
on a wide and a compact BAYESTAR map and a flat map, with discs near the poles, across
RA 0 and up to 20 deg wide.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest
from bayestar_events import DATA
from polar_sums import points_about, unit_vector

from kernels import density_bounds as KB
from llama.science.skymap import SkyMap, read_sky_map


def _map(name):
    if name == "flat":
        nside = 32
        theta, phi = hp.pix2ang(nside, np.arange(12 * nside**2), nest=True)
        return SkyMap(probdensity=1.0 + np.cos(theta) ** 2 + 0.5 * np.sin(3 * phi), nside=nside)
    return read_sky_map(DATA / f"{name}.fits")


def _density(skymap, x):
    """The map's density at unit vectors ``x`` (n, 3), by healpy at its finest order."""
    order, ipix = skymap.order_ipix()
    top = int(order.max())
    start = ipix << (2 * (top - order))
    keep = np.argsort(start)
    p = hp.vec2pix(1 << top, x[:, 0], x[:, 1], x[:, 2], nest=True)
    j = np.searchsorted(start[keep], p, side="right") - 1
    return np.asarray(skymap.probdensity, dtype=np.float64)[keep][j]


def _discs(rng, skymap, k):
    """k disc centres (a third at the map's densest pixels, a third within 3 deg of a
    pole, a third within 1 deg of RA 0) and radii 0.2-20 deg (log-uniform)."""
    order, ipix = skymap.order_ipix()
    top = np.argsort(np.asarray(skymap.probdensity))[-50:]
    theta, phi = hp.pix2ang(1 << order[top], ipix[top], nest=True)
    pick = rng.integers(0, top.size, k)
    ra = np.concatenate([phi[pick] + rng.normal(0, 0.02, k), rng.uniform(0, 2 * np.pi, k), np.radians(rng.uniform(-1, 1, k)) % (2 * np.pi)])  # fmt: skip
    dec = np.concatenate([0.5 * np.pi - theta[pick] + rng.normal(0, 0.02, k), (0.5 * np.pi - np.radians(rng.uniform(0, 3, k))) * rng.choice([-1, 1], k), np.arcsin(rng.uniform(-1, 1, k))])  # fmt: skip
    dec = np.clip(dec, -0.5 * np.pi + 1e-6, 0.5 * np.pi - 1e-6)
    radius = np.radians(np.exp(rng.uniform(np.log(0.2), np.log(20.0), 3 * k)))
    return ra % (2 * np.pi), dec, radius


@pytest.mark.parametrize("name", ["bbh-6", "bns-1", "flat"])
@pytest.mark.parametrize("n_dec", [64, 256])
def test_each_quadrant_holds_the_density_of_its_points_and_pairs_with_the_opposite(name, n_dec):
    """For 90 discs, 2,400 points each (40 angles x 60 azimuths inside the disc): each
    point's density lies within the extremes of every quadrant that holds it (by the
    signs of its offsets from the two planes), its half-turn lies in the opposite
    quadrant, and every quadrant lies within the disc's own extremes."""
    skymap = _map(name)
    order, ipix = skymap.order_ipix()
    density = np.ascontiguousarray(skymap.probdensity, dtype=np.float64)
    pyr = KB.minmax_pyramid(order, ipix, density, n_dec)
    rng = np.random.default_rng(17)
    for ra, dec, radius in zip(*_discs(rng, skymap, 30), strict=True):
        c = unit_vector(ra, dec)
        east = np.array([-math.sin(ra), math.cos(ra), 0.0])
        north = np.cross(c, east)
        psi = (radius * np.sqrt(rng.uniform(0, 1, 40)))[:, None] * (1 - 1e-9)
        x = points_about(c, psi, rng.uniform(0, 2 * np.pi, 60)).reshape(-1, 3)
        turned = 2.0 * (x @ c)[:, None] * c - x
        q = np.array(KB.disc_quadrants(*pyr, n_dec, ra, dec, radius)).reshape(4, 2)
        whole = KB.disc_minmax(*pyr, n_dec, ra, dec, radius)
        assert np.all(q[:, 0] >= whole[0]) and np.all(q[:, 1] <= whole[1])
        for pts in (x, turned):
            e, n = pts @ east, pts @ north
            d = _density(skymap, pts)
            held = [(n >= 0) & (e >= 0), (n <= 0) & (e <= 0), (n >= 0) & (e <= 0), (n <= 0) & (e >= 0)]  # fmt: skip
            for k in range(4):
                inside = held[k]
                assert np.all(q[k, 0] <= d[inside]) and np.all(d[inside] <= q[k, 1]), (name, ra, dec, radius, k)  # fmt: skip
        e, n = x @ east, x @ north
        e_t, n_t = turned @ east, turned @ north
        # the half-turn flips both signs: the opposite quadrant (ties stay on the edge)
        assert np.all(e * e_t <= 1e-12) and np.all(n * n_t <= 1e-12)
