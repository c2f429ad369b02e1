"""NESTED / NUNIQ index math of kernels.healpix against healpy."""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest

from kernels.healpix import (
    ang2pix_nest,
    angular_distance,
    children_nest,
    max_pixrad,
    nested_range,
    order_ipix_to_uniq,
    parent_nest,
    pix2ang_nest,
    pix2vec_nest,
    pix2vec_nest_array,
    pix2zphi_nest,
    pixel_area,
    pixel_distance_bounds,
    pixel_may_intersect_disc,
    pixel_resol,
    uniq_to_order_ipix,
    uniq_to_order_ipix_array,
    vec2pix_nest,
    zphi2pix_nest,
)

ORDERS = list(range(14))


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(42)


def _random_pix(rng, order, n=500):
    pix = rng.integers(0, 12 * 4**order, n)
    # always include the corners of the index range and the polar caps / face edges
    return np.concatenate([pix, [0, 12 * 4**order - 1, 4**order, 4 * 4**order]])


@pytest.mark.parametrize("order", ORDERS)
def test_pix2vec_and_pix2ang(rng, order):
    pix = _random_pix(rng, order)
    nside = 2**order
    mine = pix2vec_nest_array(np.full(pix.size, order), pix)
    ref = np.array(hp.pix2vec(nside, pix, nest=True)).T
    np.testing.assert_allclose(mine, ref, atol=1e-14)
    th, ph = hp.pix2ang(nside, pix, nest=True)
    for k in range(0, pix.size, 25):
        np.testing.assert_allclose(pix2vec_nest(order, pix[k]), ref[k], atol=1e-14)
        ra, dec = pix2ang_nest(order, pix[k])
        assert ra == pytest.approx(ph[k], abs=1e-12)
        assert dec == pytest.approx(math.pi / 2 - th[k], abs=1e-12)


@pytest.mark.parametrize("order", [0, 1, 2, 5, 9, 13, 20, 29])
def test_pix2zphi_against_healpy(order):
    """z = cos(theta), sin(theta) and phi of pixel centres as healpy gives them, the
    polar caps' first rings (where z is near +-1) and the seams included."""
    nside = 2**order
    # its own generator: the module's shared one feeds the tests after this one
    pix = _random_pix(np.random.default_rng(order), order)
    npix = 12 * 4**order
    edge = np.arange(min(npix, 64), dtype=np.int64)  # north cap's first pixels
    pix = np.unique(np.concatenate([pix, edge, npix - 1 - edge, [npix // 2]]))
    th, ph = hp.pix2ang(nside, pix, nest=True)
    got = np.array([pix2zphi_nest(order, p) for p in pix])
    np.testing.assert_allclose(got[:, 0], np.cos(th), atol=1e-14)
    # sin(theta) near the poles to a relative accuracy, not just an absolute one
    np.testing.assert_allclose(got[:, 1], np.sin(th), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[:, 2], ph, rtol=1e-13, atol=1e-14)
    assert np.all((got[:, 2] >= 0.0) & (got[:, 2] < 2 * math.pi))
    # and pix2vec_nest is its vector (the same numbers, not just close)
    for k in range(0, pix.size, 17):
        z, s, phi = got[k]
        assert pix2vec_nest(order, pix[k]) == (s * math.cos(phi), s * math.sin(phi), z)


@pytest.mark.parametrize("order", ORDERS)
def test_vec2pix_and_ang2pix(rng, order):
    nside = 2**order
    v = rng.normal(size=(400, 3))
    v = np.vstack([v, [[0, 0, 1], [0, 0, -1], [1e-12, 0, 1], [1, 0, 0]]])  # poles, seams
    mine = np.array([vec2pix_nest(order, *x) for x in v])
    np.testing.assert_array_equal(mine, hp.vec2pix(nside, *v.T, nest=True))
    ra = rng.uniform(0, 2 * np.pi, 50)
    dec = np.arcsin(rng.uniform(-1, 1, 50))
    mine = np.array([ang2pix_nest(order, a, d) for a, d in zip(ra, dec, strict=True)])
    np.testing.assert_array_equal(mine, hp.ang2pix(nside, np.pi / 2 - dec, ra, nest=True))


@pytest.mark.parametrize("order", [0, 3, 6, 9, 13, 29])
def test_zphi2pix_against_healpy(order):
    """The pixel of (sin(dec), cos(dec), ra) is healpy's ang2pix, everywhere and right
    at the poles, either side of the polar caps' edge (|z| = 2/3) and of the switch
    to sin(theta) (|z| = 0.99), and at RA 0 / 2 pi. (Points exactly on a pixel edge
    are left out: there the rounding of sin(arcsin(z)) picks the side.)"""
    rng = np.random.default_rng(100 + order)  # not the module's shared generator
    nside = 2**order
    edges = np.array([2 / 3, 0.99])
    edges = np.concatenate([edges + 1e-9, edges - 1e-9, -edges + 1e-9, -edges - 1e-9])
    ra = np.concatenate([rng.uniform(0, 2 * math.pi, 2000), [0.0, np.nextafter(2 * math.pi, 0)] * 11])  # fmt: skip
    z = np.concatenate([rng.uniform(-1, 1, 2000), [1.0, -1.0, 0.3, -0.3, 1e-9, -1e-9], edges, edges])  # fmt: skip
    z[:200] = np.sign(z[:200]) * (1.0 - 10.0 ** rng.uniform(-14, -1, 200))  # near the poles
    dec = np.arcsin(z)
    mine = np.array(
        [zphi2pix_nest(order, math.sin(d), math.cos(d), r) for r, d in zip(ra, dec, strict=True)]
    )
    np.testing.assert_array_equal(mine, hp.ang2pix(nside, 0.5 * np.pi - dec, ra, nest=True))


@pytest.mark.parametrize("order", ORDERS)
def test_sizes(order):
    nside = 2**order
    assert pixel_area(order) == pytest.approx(hp.nside2pixarea(nside), rel=1e-14)
    assert pixel_resol(order) == pytest.approx(hp.nside2resol(nside), rel=1e-14)
    assert max_pixrad(order) == pytest.approx(hp.max_pixrad(nside), rel=1e-12)


@pytest.mark.parametrize("order", [0, 1, 3, 6, 9])
def test_max_pixrad_bounds_every_point(rng, order):
    """Random points are never farther from their pixel centre than max_pixrad."""
    v = rng.normal(size=(3000, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    pix = hp.vec2pix(2**order, *v.T, nest=True)
    c = np.array(hp.pix2vec(2**order, pix, nest=True)).T
    d = np.arccos(np.clip(np.sum(v * c, axis=1), -1, 1))
    assert d.max() <= max_pixrad(order) * (1 + 1e-12)


def test_uniq_roundtrip(rng):
    for order in range(30):
        ipix = np.unique(np.concatenate([[0, 12 * 4**order - 1], rng.integers(0, 12 * 4**order, 20)]))  # fmt: skip
        for p in ipix:
            u = order_ipix_to_uniq(order, p)
            assert u == 4 * 4**order + p
            assert uniq_to_order_ipix(u) == (order, p)
    u = np.array([4, 15, 16, 4 * 4**11 + 12345, 4 * 4**29 + 7], dtype=np.int64)
    o, p = uniq_to_order_ipix_array(u)
    np.testing.assert_array_equal(o, [0, 0, 1, 11, 29])
    np.testing.assert_array_equal(p, [0, 11, 0, 12345, 7])


def test_children_parent_and_ranges(rng):
    for order in (0, 4, 11):
        for p in rng.integers(0, 12 * 4**order, 10):
            ch = children_nest(p)
            np.testing.assert_array_equal(ch, 4 * p + np.arange(4))
            assert all(parent_nest(c) == p for c in ch)
            # children centres are inside the parent (healpy agrees)
            th, ph = hp.pix2ang(2 ** (order + 1), ch, nest=True)
            np.testing.assert_array_equal(hp.ang2pix(2**order, th, ph, nest=True), p)
            lo, hi = nested_range(order, p, order + 3)
            assert (lo, hi) == (p * 64, (p + 1) * 64)


def test_angular_distance_small_and_large():
    a = np.array([1.0, 0.0, 0.0])
    for psi in (1e-9, 1e-4, 0.3, 2.0, math.pi - 1e-6):
        b = np.array([math.cos(psi), math.sin(psi), 0.0])
        assert angular_distance(*a, *b) == pytest.approx(psi, rel=1e-9)


def test_disc_test_is_conservative(rng):
    """pixel_may_intersect_disc never says False for a pixel that healpy's inclusive
    query_disc returns with its exact boundary test, and rejects far pixels."""
    for order in (2, 5, 8):
        nside = 2**order
        for _ in range(5):
            v = rng.normal(size=3)
            v /= np.linalg.norm(v)
            r = rng.uniform(0.01, 0.5)
            inside = hp.query_disc(nside, v, r, nest=True, inclusive=False)
            assert all(pixel_may_intersect_disc(order, p, *v, r) for p in inside)
            psi, lo, hi = pixel_distance_bounds(order, inside[0], *v)
            assert lo <= psi <= hi
            far = hp.query_disc(nside, -v, 0.2, nest=True)
            assert not any(pixel_may_intersect_disc(order, p, *v, r) for p in far)
