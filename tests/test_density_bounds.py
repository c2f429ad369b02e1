"""The per-map min/max grids of kernels.density_bounds (what the background trials'
bounds of S rest on) against independent checks.

Every cell's [lo, hi] must hold the density of every point inside the cell (checked at
random points, and at points crowded against RA 0 and the poles, where a pixel's cells
wrap or fill whole rows), and the grids must be those of the plain per-cell painting
(each pixel's circumscribed cap, columns taken modulo the row) that the kernel's
column runs replace.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest
from bayestar_events import DATA

from kernels import density_bounds as KB
from kernels.trial_screen import pixel_cells
from llama.science.skymap import SkyMap, read_sky_map


def _pixels(skymap):
    """(order, ipix, density) of a map, as SkyBounds reads them."""
    return (*skymap.order_ipix(), np.ascontiguousarray(skymap.probdensity, dtype=np.float64))


def _maps():
    """A wide BAYESTAR map (orders 4-9), a compact one, and a flat NSIDE-32 map whose
    density varies with RA and dec (every pixel touches several cells)."""
    nside = 32
    theta, phi = hp.pix2ang(nside, np.arange(12 * nside**2), nest=True)
    flat = SkyMap(probdensity=1.0 + np.cos(theta) ** 2 + 0.5 * np.sin(3 * phi), nside=nside)  # fmt: skip
    return {
        "bbh-6": read_sky_map(DATA / "bbh-6.fits"),
        "bns-1": read_sky_map(DATA / "bns-1.fits"),
        "flat": flat,
    }


def _density_at(skymap, ra, dec):
    """The map's density at each direction [rad], by healpy at the map's finest order."""
    order, ipix, density = _pixels(skymap)
    top = int(order.max())
    start = ipix << (2 * (top - order))
    keep = np.argsort(start)
    start, density, order = start[keep], density[keep], order[keep]
    p = hp.ang2pix(1 << top, 0.5 * np.pi - dec, ra, nest=True)
    return density[np.searchsorted(start, p, side="right") - 1]


@pytest.mark.parametrize("name", ["bbh-6", "bns-1", "flat"])
@pytest.mark.parametrize("n_dec", [64, 256])
def test_each_cell_holds_the_density_of_its_points(name, n_dec):
    """60,000 points (a third uniform on the sphere, a third within 0.5 deg of RA 0,
    a third within 3 deg of a pole): each point's density lies in its cell's extremes."""
    skymap = _maps()[name]
    lo, hi = KB.minmax_grids(*_pixels(skymap), n_dec)
    rng = np.random.default_rng(7)
    k = 20_000
    ra = np.concatenate([rng.uniform(0, 2 * np.pi, k), np.radians(rng.uniform(-0.5, 0.5, k)) % (2 * np.pi), rng.uniform(0, 2 * np.pi, k)])  # fmt: skip
    z = np.concatenate([rng.uniform(-1, 1, 2 * k), np.cos(np.radians(rng.uniform(0, 3, k))) * rng.choice([-1, 1], k)])  # fmt: skip
    dec = np.arcsin(z)
    cell = math.pi / n_dec
    row = np.clip(np.floor((dec + 0.5 * np.pi) / cell).astype(int), 0, n_dec - 1)
    col = np.floor(ra / cell).astype(int) % (2 * n_dec)
    d = _density_at(skymap, ra, dec)
    assert np.all(lo[row, col] <= d) and np.all(d <= hi[row, col])
    assert np.all(lo <= hi)


@pytest.mark.parametrize("name", ["bbh-6", "flat"])
def test_grids_are_the_plain_per_cell_painting(name):
    """The same grids as painting each pixel's cap cell by cell, columns modulo the
    row (the kernel splits them into runs that never wrap)."""
    order, ipix, density = _pixels(_maps()[name])
    _assert_plain_painting(order, ipix, density, 64)


def _assert_plain_painting(order, ipix, density, n_dec: int) -> None:
    """minmax_grids gives the grids of each pixel's cap painted cell by cell."""
    lo = np.full((n_dec, 2 * n_dec), np.inf)
    hi = np.zeros((n_dec, 2 * n_dec))
    for o, p, d in zip(order, ipix, density, strict=True):
        r0, r1, c0, c1 = pixel_cells(o, p, n_dec)
        cols = np.arange(c0, c1 + 1) % (2 * n_dec)
        lo[r0 : r1 + 1, cols] = np.minimum(lo[r0 : r1 + 1, cols], d)
        hi[r0 : r1 + 1, cols] = np.maximum(hi[r0 : r1 + 1, cols], d)
    lo[np.isinf(lo)] = 0.0
    got_lo, got_hi = KB.minmax_grids(order, ipix, density, n_dec)
    np.testing.assert_array_equal(got_lo, lo)
    np.testing.assert_array_equal(got_hi, hi)


@pytest.mark.parametrize("name", ["bbh-6", "bns-1", "flat"])
@pytest.mark.parametrize("n_dec", [64, 256])
def test_minmax_pyramid_is_the_pyramid_of_the_grids(name, n_dec):
    """The pyramid painted in place holds, array for array, what pyramid() makes of
    minmax_grids() (the two-step build it replaces in the background trials)."""
    pixels = _pixels(_maps()[name])
    got = KB.minmax_pyramid(*pixels, n_dec)
    want = KB.pyramid(*KB.minmax_grids(*pixels, n_dec))
    assert got[4] == want[4]
    for g, w in zip(got[:4], want[:4], strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", ["bbh-6", "flat"])
@pytest.mark.parametrize("n_dec", [1, 8, 256])
def test_pyramid_levels_and_rows_are_numpys_block_extremes(name, n_dec):
    """Each level of the pyramid is the one below it reduced over 2 x 2 blocks, and each
    level's rows hold the extremes of that level's cells, as numpy reduces them (what
    the discs' reads of whole rows and of the coarser levels rest on)."""
    lo, hi = KB.minmax_grids(*_pixels(_maps()[name]), n_dec)
    cells, rows, cell_start, row_start, levels = KB.pyramid(lo, hi)
    assert levels == int(np.log2(n_dec)) + 1
    for lv in range(levels):
        nd = n_dec >> lv
        got = cells[cell_start[lv] : cell_start[lv + 1]].reshape(nd, 2 * nd, 2)
        np.testing.assert_array_equal(got[..., 0], lo)
        np.testing.assert_array_equal(got[..., 1], hi)
        np.testing.assert_array_equal(rows[row_start[lv] : row_start[lv + 1]], np.stack([lo.min(axis=1), hi.max(axis=1)], axis=1))  # fmt: skip
        lo = lo.reshape(nd // 2, 2, nd, 2).min(axis=(1, 3)) if nd > 1 else lo
        hi = hi.reshape(nd // 2, 2, nd, 2).max(axis=(1, 3)) if nd > 1 else hi
    assert cell_start[levels] == cells.shape[0] and row_start[levels] == rows.shape[0]


def test_pixel_cells_from_the_caps_table_are_pixel_cells():
    """pixel_cells_from with pixel_caps' radius and sine gives pixel_cells' cells for
    pixels of every order 0-12, on grids of 4 to 512 rows."""
    from kernels.trial_screen import pixel_caps, pixel_cells_from

    cap, cap_sin = pixel_caps()
    rng = np.random.default_rng(3)
    for order in range(13):
        for ipix in rng.integers(0, 12 << (2 * order), 40):
            for n_dec in (4, 64, 256, 512):
                want = pixel_cells(order, int(ipix), n_dec)
                assert pixel_cells_from(order, int(ipix), n_dec, cap[order], cap_sin[order]) == want


def _overlap_bounds_plainly(pyr, n_dec, peak, ra, dec, sigma, arows, edges, kind, enough):
    """overlap_bounds as its docstring states it, one neutrino and one disc at a time
    through the public disc_minmax, disc_quadrants and annulus_mass (what the kernel's
    shared edge exponentials, hoisted cos(dec) and modulo-free column runs must
    reproduce)."""
    radii = KB.RADII_SIGMAS
    nb = edges.size - 1

    def a_range(row, d, grow):
        lo_s, hi_s = math.sin(max(d - grow, -0.5 * math.pi)), math.sin(min(d + grow, 0.5 * math.pi))  # fmt: skip
        j0, j1 = (min(max(int(np.searchsorted(edges, s, side="right")) - 1, 0), nb - 1) for s in (lo_s, hi_s))  # fmt: skip
        return float(row[j0 : j1 + 1].min()), float(row[j0 : j1 + 1].max())

    out = np.empty((3, ra.size))
    for i in range(ra.size):
        sg, d, row = sigma[i], dec[i], arows[i]
        r = min(radii[-1] * sg, math.pi)
        m_lo, m_hi = KB.annulus_mass(0.0, r, sg, kind)
        p_lo, p_hi = KB.disc_minmax(*pyr, n_dec, ra[i], d, r)
        a_lo, a_hi = a_range(row, d, r + 0.2 * sg)
        tail = KB.annulus_mass(r, math.pi, sg, kind)[1] * peak if r < math.pi else 0.0
        quick = m_hi * p_hi * a_hi + tail * row.max()
        if quick <= enough[i]:
            out[:, i] = m_lo * p_lo * a_lo, quick, m_hi * p_hi + tail
            continue
        acc, prev = [0.0, 0.0, 0.0], 0.0
        r_last = r
        for k in range(radii.size):
            r = min(radii[k] * sg, math.pi)
            m_lo, m_hi = KB.annulus_mass(prev, r, sg, kind)
            if r == r_last:  # the largest disc: its extremes
                p_lo, p_hi = KB.disc_minmax(*pyr, n_dec, ra[i], d, r)
            else:  # opposite quadrants' extremes, paired
                ne_lo, ne_hi, sw_lo, sw_hi, nw_lo, nw_hi, se_lo, se_hi = KB.disc_quadrants(*pyr, n_dec, ra[i], d, r)  # fmt: skip
                p_lo = 0.5 * min(ne_lo + sw_lo, nw_lo + se_lo)
                p_hi = 0.5 * max(ne_hi + sw_hi, nw_hi + se_hi)
            a_lo, a_hi = a_range(row, d, r + 0.2 * sg)
            acc[0] += m_lo * p_lo * a_lo
            acc[1] += m_hi * p_hi * a_hi
            acc[2] += m_hi * p_hi
            prev = r
            if r >= math.pi:
                break
        if prev < math.pi:
            tail = KB.annulus_mass(prev, math.pi, sg, kind)[1] * peak
            acc[1] += tail * row.max()
            acc[2] += tail
        out[:, i] = acc
    return out


@pytest.mark.parametrize("kind", [0, 1])
@pytest.mark.parametrize("name", ["bbh-6", "bns-1", "flat"])
def test_overlap_bounds_are_the_plain_nested_discs_bit_for_bit(name, kind):
    """The kernel's (S_lo, S_hi, U_hi) equal, to the last bit, the nested discs read
    one by one with disc_minmax and annulus_mass (the background trials' decisions and
    their ranking below the cut rest on these exact numbers): 1,500 neutrinos, a third
    uniform, a third crowded at RA 0 and the poles, a third with PSFs up to 40 deg
    (discs capped at pi), some with an ``enough`` that stops at the first disc."""
    skymap = _maps()[name]
    n_dec = 64
    pyr = KB.pyramid(*KB.minmax_grids(*_pixels(skymap), n_dec))
    peak = float(np.max(skymap.probdensity))
    rng = np.random.default_rng(11 + kind)
    k = 500
    ra = np.concatenate([rng.uniform(0, 2 * np.pi, 2 * k), np.radians(rng.uniform(-1, 1, k)) % (2 * np.pi)])  # fmt: skip
    z = np.concatenate([rng.uniform(-1, 1, k), np.cos(np.radians(rng.uniform(0, 4, k))) * rng.choice([-1, 1], k), rng.uniform(-1, 1, k)])  # fmt: skip
    dec = np.arcsin(z)
    sigma = np.radians(np.concatenate([np.exp(rng.uniform(np.log(0.2), np.log(3.0), 2 * k)), rng.uniform(3, 40, k)]))  # fmt: skip
    edges = np.linspace(-1.0, 1.0, 19)
    arows = rng.uniform(0.1, 2.0, (ra.size, 18))
    plain_enough = np.zeros(ra.size)
    want = _overlap_bounds_plainly(pyr, n_dec, peak, ra, dec, sigma, arows, edges, kind, plain_enough)  # fmt: skip
    enough = np.where(rng.uniform(size=ra.size) < 0.3, want[1] * 10.0, 0.0)
    want_e = _overlap_bounds_plainly(pyr, n_dec, peak, ra, dec, sigma, arows, edges, kind, enough)
    for e, w in ((plain_enough, want), (enough, want_e)):
        got = KB.overlap_bounds(*pyr, n_dec, peak, ra, dec, sigma, arows, edges, kind, e)
        np.testing.assert_array_equal(np.array(got), w)
    assert np.any(want_e[1] != want[1])  # some stopped at the first disc


@pytest.mark.parametrize("name", ["bbh-6", "bns-1", "flat", "partial"])
def test_density_from_the_table_is_the_searched_one(name):
    """SkyBounds' stand-in density via its per-order-6 table of whole pixels equals the
    sorted search of density_at, and healpy's pixel at the map's finest order, at
    30,000 points (a third crowded at RA 0 and the poles); "partial": bbh-6 with every
    third pixel dropped (cells covered by nothing, or by a coarse pixel only in part)."""
    from kernels.trial_screen import density_at, density_at_table, density_table

    skymap = _maps()["bbh-6" if name == "partial" else name]
    order, ipix, density = _pixels(skymap)
    if name == "partial":
        keep = np.arange(order.size) % 3 != 0
        order, ipix, density = order[keep], ipix[keep], density[keep]
    top = int(order.max())
    start = ipix << (2 * (top - order))
    keep = np.argsort(start)
    start, stop = start[keep], ((ipix + 1) << (2 * (top - order)))[keep]
    density = density[keep]
    rng = np.random.default_rng(5)
    k = 10_000
    ra = np.concatenate([rng.uniform(0, 2 * np.pi, 2 * k), np.radians(rng.uniform(-0.5, 0.5, k)) % (2 * np.pi)])  # fmt: skip
    z = np.concatenate([rng.uniform(-1, 1, k), np.cos(np.radians(rng.uniform(0, 3, k))) * rng.choice([-1, 1], k), rng.uniform(-1, 1, k)])  # fmt: skip
    dec = np.arcsin(z)
    want = density_at(start, stop, density, top, ra, dec)
    for t_order in sorted({0, min(6, top), top}):
        table = density_table(start, stop, top, t_order)
        got = density_at_table(start, stop, density, top, table, t_order, ra, dec)
        np.testing.assert_array_equal(got, want)
    p = hp.ang2pix(1 << top, 0.5 * np.pi - dec, ra, nest=True)
    j = np.searchsorted(start, p, side="right") - 1
    brute = np.where((j >= 0) & (p < stop[np.maximum(j, 0)]), density[np.maximum(j, 0)], 0.0)
    np.testing.assert_array_equal(want, brute)
    if name == "partial":
        assert np.mean(want == 0) > 0.2


@pytest.mark.parametrize("edges", ["o3", "uniform in sin"])
def test_band_is_the_searched_band(edges):
    """_band (a guess from the declination, then steps along the edges) gives the band
    np.searchsorted finds for sin(dec), clipped to the bands, for O3's bands (10 deg
    each) and bands uniform in sin(dec): 20,000 random declinations, every edge's
    declination, its neighbouring floats and points 1e-13 to 1e-11 rad either side,
    and the poles."""
    from llama.science.signal_tables import SINDEC_EDGES

    e = SINDEC_EDGES if edges == "o3" else np.linspace(-1.0, 1.0, 19)
    at = np.arcsin(e)
    x = np.concatenate([
        np.random.default_rng(5).uniform(-0.5 * math.pi, 0.5 * math.pi, 20000),
        at, np.nextafter(at, 9.0), np.nextafter(at, -9.0), [-0.5 * math.pi, 0.5 * math.pi],
        *(at + d for d in (-1e-11, -1e-12, -1e-13, 1e-13, 1e-12, 1e-11)),
    ])  # fmt: skip
    x = np.clip(x, -0.5 * math.pi, 0.5 * math.pi)
    want = np.clip(np.searchsorted(e, np.sin(x), side="right") - 1, 0, e.size - 2)
    got = np.array([KB._band(float(v), math.sin(v), e) for v in x])
    np.testing.assert_array_equal(got, want)


def test_sky_order_is_a_stable_sort_by_grid_cell():
    """sky_order (the order overlap_bounds reads the pyramid in) is the stable argsort of
    each direction's cell of the n_rows x 2 n_rows grid, the cell found in plain Python:
    RA taken modulo 2 pi (given from -2 pi to 4 pi), dec clamped to the poles' rows, many
    directions per cell, and NaN angles put somewhere without error."""
    rng = np.random.default_rng(5)
    n, n_rows = 4000, 16
    ra = np.concatenate([rng.uniform(-2 * np.pi, 4 * np.pi, n), np.radians(rng.integers(0, 16, n) * 22.5)])  # fmt: skip
    dec = np.concatenate([np.arcsin(rng.uniform(-1, 1, n)), np.radians(rng.choice([-90.0, 0.0, 45.0, 90.0], n))])  # fmt: skip
    cell = math.pi / n_rows
    key = [
        min(max(math.floor((d + 0.5 * math.pi) / cell), 0), n_rows - 1) * 2 * n_rows
        + math.floor(r / cell) % (2 * n_rows)  # fmt: skip
        for r, d in zip(ra, dec, strict=True)
    ]
    want = np.argsort(np.array(key), kind="stable")
    np.testing.assert_array_equal(KB.sky_order(ra, dec, n_rows), want)
    odd = KB.sky_order(np.array([np.nan, 1.0, 2.0]), np.array([0.0, np.nan, np.inf]), n_rows)
    assert sorted(odd.tolist()) == [0, 1, 2]


def test_grids_of_a_map_of_many_orders_are_the_plain_per_cell_painting():
    """A sky of pixels of orders 1 to 12 (each pixel split into its four children at
    random, down to order 12 near one point): the grids are the per-cell painting of
    each pixel's cap from pixel_cells, through the ring table of the kernel (thousands
    of rings on 4,096 slots, so slots shared by several rings)."""
    rng = np.random.default_rng(3)
    centre = hp.ang2vec(1.1, 2.0)
    todo, order, ipix = [(0, p) for p in range(12)], [], []
    while todo:
        o, p = todo.pop()
        near = np.dot(hp.pix2vec(1 << o, p, nest=True), centre) > math.cos(3.0 * hp.max_pixrad(1 << o))  # fmt: skip
        if o < 12 and (near or (o < 5 and rng.uniform() < 0.6)):
            todo.extend((o + 1, 4 * p + c) for c in range(4))
        else:
            order.append(o)
            ipix.append(p)
    order, ipix = np.array(order, dtype=np.int64), np.array(ipix, dtype=np.int64)
    density = rng.uniform(0.0, 1.0, order.size)
    assert set(range(1, 13)) <= set(order.tolist())
    for n_dec in (64, 256):
        _assert_plain_painting(order, ipix, density, n_dec)


@pytest.mark.parametrize("n_dec", [0, 3, 12, 96, 384])
def test_a_pyramid_of_rows_other_than_a_power_of_two_is_refused(n_dec):
    """384 rows halve to 3 and then 1, and a row left out of a coarser level leaves its
    maxima no bounds: the kernels refuse the grid (as SkyBounds does before them)."""
    order, ipix, density = np.zeros(12, np.int64), np.arange(12, dtype=np.int64), np.arange(12.0)
    with pytest.raises(ValueError, match="power of 2"):
        KB.minmax_pyramid(order, ipix, density, n_dec)
    if n_dec:
        lo, hi = KB.minmax_grids(order, ipix, density, n_dec)
        with pytest.raises(ValueError, match="power of 2"):
            KB.pyramid(lo, hi)
