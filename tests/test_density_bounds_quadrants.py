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


def _quadrants_cell_by_cell(pyr, n_dec, ra, dec, radius):
    """disc_quadrants as its docstring states it, each cell of the disc's box read on its
    own with its column taken modulo the row (what the kernel's column runs replace):
    the box from the kernel's _disc_box; east the columns from the centre's, west those
    up to it; north the rows from the bent great circle's lowest, south those up to its
    highest."""
    cells, rows, cell_start, row_start, levels = pyr
    d0, d1 = max(dec - radius, -0.5 * math.pi), min(dec + radius, 0.5 * math.pi)
    s, c = math.sin(radius), math.cos(dec)
    whole = abs(dec) + radius >= 0.5 * math.pi or s >= c
    half = math.pi if whole else math.asin(s / c)
    lv, cell, n_ra, r0, r1, c0, c1, whole = KB._disc_box(levels, n_dec, ra, d0, d1, radius, half, whole)  # fmt: skip
    if whole:
        box = rows[row_start[lv] + r0 : row_start[lv] + r1 + 1]
        return (box[:, 0].min(), box[:, 1].max()) * 4
    x = s / c
    bend = x * x / (1.0 + math.sqrt((1.0 - x) * (1.0 + x))) * abs(math.tan(dec)) + 1e-12
    north_from = dec - bend if dec >= 0.0 else dec
    south_to = dec if dec >= 0.0 else dec + bend
    n0 = min(max(math.floor((north_from - 1e-12 + 0.5 * math.pi) / cell), r0), r1)
    s1 = min(max(math.floor((south_to + 1e-12 + 0.5 * math.pi) / cell), r0), r1)
    cc = min(max(math.floor(ra / cell), c0), c1)
    level = cells[cell_start[lv] : cell_start[lv + 1]].reshape(n_dec >> lv, n_ra, 2)

    def extremes(r_from, r_to, c_from, c_to):
        box = level[r_from : r_to + 1, [col % n_ra for col in range(c_from, c_to + 1)]]
        return box[..., 0].min(), box[..., 1].max()

    return (
        *extremes(n0, r1, cc, c1), *extremes(r0, s1, c0, cc),  # north-east, south-west
        *extremes(n0, r1, c0, cc), *extremes(r0, s1, cc, c1),  # north-west, south-east
    )  # fmt: skip


@pytest.mark.parametrize("name", ["bbh-6", "flat"])
@pytest.mark.parametrize("n_dec", [64, 256])
def test_each_quadrant_is_its_cells_read_one_by_one(name, n_dec):
    """disc_quadrants equal, bit for bit, the extremes of each quadrant's cells read one
    at a time with a modulo per column: 600 discs, a third across RA 0 (where the
    kernel reads a row's columns as two runs), a third near a pole, radii 0.2-20 deg."""
    skymap = _map(name)
    order, ipix = skymap.order_ipix()
    density = np.ascontiguousarray(skymap.probdensity, dtype=np.float64)
    pyr = KB.minmax_pyramid(order, ipix, density, n_dec)
    rng = np.random.default_rng(23)
    wrapped = 0
    for ra, dec, radius in zip(*_discs(rng, skymap, 200), strict=True):
        got = KB.disc_quadrants(*pyr, n_dec, ra, dec, radius)
        assert got == _quadrants_cell_by_cell(pyr, n_dec, ra, dec, radius), (name, ra, dec, radius)  # fmt: skip
        wrapped += min(ra, 2 * np.pi - ra) < radius
    assert wrapped > 50  # discs across RA 0 were read
