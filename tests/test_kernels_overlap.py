"""PSF overlap kernels against an independent healpy brute force on finer flat grids."""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest

from kernels.overlap import (
    PSF_GAUSS,
    PSF_VMF,
    prepare_map,
    prepare_map_flat,
    psf_norm,
    psf_overlap_prepared,
    psf_pair_overlap_prepared,
)

DEG = math.pi / 180.0
SQDEG = DEG * DEG
CENTRE = (1.0, 0.3)  # (ra, dec) of the test blobs [rad]

# A_eff table: 3 energy bins x 4 sin(dec) bins, distinct values so clamping shows
LOG10E = np.array([2.0, 3.0, 4.0, 5.0])
SINDEC = np.array([-1.0, -0.2, 0.1, 0.5, 1.0])
AEFF = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]])
E_NU = 3.0e3  # GeV: middle energy bin


def psf_overlap(uniq, rho, ra, dec, sigma, rws, edges, weight=None, kind=PSF_GAUSS, **kw):
    """One multi-order map, prepared and evaluated once (the public API in one call)."""
    pm = prepare_map(uniq, rho, weight)
    return psf_overlap_prepared(pm, ra, dec, sigma, rws, edges, kind, **kw)


def psf_overlap_flat(prob, ra, dec, sigma, rws, edges, weight=None, kind=PSF_GAUSS, **kw):
    """:func:`psf_overlap` for a flat NESTED map of probability per pixel."""
    pm = prepare_map_flat(prob, weight)
    return psf_overlap_prepared(pm, ra, dec, sigma, rws, edges, kind, **kw)


def psf_pair_overlap(uniq, rho, *pairs, weight=None, kind=PSF_GAUSS, **kw):
    """Pairs on one multi-order map; ``pairs``: ra_i .. rows_j, sindec_edges[, weight,
    kind] as :func:`psf_pair_overlap_prepared` lists them."""
    pairs, extra = pairs[:9], pairs[9:]
    weight = extra[0] if extra else weight
    kind = extra[1] if len(extra) > 1 else kind
    return psf_pair_overlap_prepared(prepare_map(uniq, rho, weight), *pairs, kind, **kw)


def psf_pair_overlap_flat(prob, *pairs, **kw):
    """:func:`psf_pair_overlap` for a flat NESTED map of probability per pixel."""
    return psf_pair_overlap_prepared(prepare_map_flat(prob), *pairs, **kw)


def rows(energy):
    """Per-neutrino rows of the test table: its energy bin (clamped) for each energy."""
    e = np.atleast_1d(np.asarray(energy, dtype=float))
    ie = np.clip(np.searchsorted(LOG10E, np.log10(e), side="right") - 1, 0, AEFF.shape[0] - 1)
    return AEFF[ie]


# ----------------------------------------------------------------------------------------
# test maps (built here, independently of kernels/)
# ----------------------------------------------------------------------------------------
def fisher_density(vec, centre, kappa, floor):
    """Normalised Fisher-von Mises density [sr^-1] plus a uniform floor (total 1+floor)."""
    c = np.asarray(hp.ang2vec(math.pi / 2 - centre[1], centre[0]))
    cosd = vec @ c
    dens = kappa / (2 * np.pi * -np.expm1(-2 * kappa)) * np.exp(kappa * (cosd - 1))
    return dens + floor / (4 * np.pi)


def make_moc(area_deg2, max_order, thresh=2e-4, floor=1e-3, centre=CENTRE):
    """Multi-order map: refine a pixel while its probability exceeds ``thresh``.

    Density is the blob evaluated at each pixel centre, so the map is exactly
    piecewise constant. 90% area of a Fisher blob: 2 pi ln(10) / kappa.
    """
    kappa = 2 * np.pi * np.log(10) / (area_deg2 * SQDEG)
    uniq, rho = [], []
    ipix = np.arange(12)
    for order in range(max_order + 1):
        nside = 2**order
        vec = np.array(hp.pix2vec(nside, ipix, nest=True)).T
        dens = fisher_density(vec, centre, kappa, floor)
        # refine on the largest density the pixel may hold (centre distance - pixel radius)
        c = np.asarray(hp.ang2vec(math.pi / 2 - centre[1], centre[0]))
        psi = np.maximum(np.arccos(np.clip(vec @ c, -1, 1)) - hp.max_pixrad(nside), 0)
        dmax = kappa / (2 * np.pi * -np.expm1(-2 * kappa)) * np.exp(kappa * (np.cos(psi) - 1))
        split = (dmax * hp.nside2pixarea(nside) > thresh) & (order < max_order)
        uniq.append(4 * 4**order + ipix[~split])
        rho.append(dens[~split])
        ipix = (4 * ipix[split][:, None] + np.arange(4)).ravel()
    return np.concatenate(uniq), np.concatenate(rho)


def moc_to_flat(uniq, rho, order):
    """Rasterise a multi-order density map to a flat NESTED map of probability/pixel."""
    o = (np.log2(uniq // 4) // 2).astype(np.int64)
    ip = uniq - 4 * 4**o
    flat = np.empty(12 * 4**order)
    for k in range(uniq.size):
        sh = 4 ** (order - o[k])
        flat[ip[k] * sh : (ip[k] + 1) * sh] = rho[k]
    return flat * hp.nside2pixarea(2**order)


def density_lookup(uniq, rho, nest_pix, order):
    """Density of the map pixel containing each fine NESTED pixel (searchsorted)."""
    o = (np.log2(uniq // 4) // 2).astype(np.int64)
    ip = uniq - 4 * 4**o
    lo = ip << (2 * (29 - o))
    idx = np.argsort(lo)
    k = np.searchsorted(lo[idx], nest_pix << (2 * (29 - order)), side="right") - 1
    return rho[idx][k]


def brute(uniq, rho, ra, dec, sigma, kind, order, radius, energy=E_NU, ra2=None, dec2=None, sigma2=None):  # fmt: skip
    """Brute force: sum over a flat NESTED grid at ``order`` inside a disc of ``radius``."""
    v = hp.ang2vec(math.pi / 2 - dec, ra)
    pix = hp.query_disc(2**order, v, radius, nest=True, inclusive=True)
    vec = np.array(hp.pix2vec(2**order, pix, nest=True)).T
    dens = density_lookup(uniq, rho, pix, order) * hp.nside2pixarea(2**order)

    def g(vn, s):
        cosd = np.clip(vec @ vn, -1, 1)
        if kind == PSF_VMF:
            k = 1 / s**2
            return k / (2 * np.pi * -np.expm1(-2 * k)) * np.exp(k * (cosd - 1))
        psi = np.arccos(cosd)
        return np.exp(-(psi**2) / (2 * s**2)) / (2 * np.pi * s**2)

    ie = np.clip(np.searchsorted(LOG10E, np.log10(energy), side="right") - 1, 0, 2)
    jd = np.clip(np.searchsorted(SINDEC, vec[:, 2], side="right") - 1, 0, 3)
    a = AEFF[ie, jd]
    gi = g(v, sigma)
    if ra2 is None:
        return np.sum(dens * gi), np.sum(dens * a * gi)
    gj = g(hp.ang2vec(math.pi / 2 - dec2, ra2), sigma2)
    return np.sum(dens * gi * gj), np.sum(dens * a * a * gi * gj)


def brute_order(sigma, map_order):
    """Grid at least one order finer than the map and finer than sigma / 5."""
    o = int(np.ceil(np.log2(np.sqrt(np.pi / 3) / (sigma / 5))))
    return max(map_order + 1, o)


@pytest.fixture(scope="module")
def maps():
    return {
        1: (make_moc(1.0, 9), 9),
        100: (make_moc(100.0, 8), 8),
        10000: (make_moc(1e4, 6, thresh=1e-3), 6),
    }


def _offset(ra, dec, dist, pa=0.7):
    """Point at angular distance ``dist`` from (ra, dec) along position angle ``pa``."""
    v = hp.ang2vec(math.pi / 2 - dec, ra)
    east = np.cross([0, 0, 1], v)
    east /= np.linalg.norm(east)
    north = np.cross(v, east)
    t = np.cos(pa) * north + np.sin(pa) * east
    w = np.cos(dist) * v + np.sin(dist) * t
    th, ph = hp.vec2ang(w)
    return float(ph[0]), float(math.pi / 2 - th[0])


CASES = [  # (90% area [deg^2], sigma [deg])
    (1, 0.2),
    (1, 1.0),
    (1, 3.0),
    (100, 0.2),
    (100, 1.0),
    (100, 3.0),
    (100, 10.0),
    (10000, 1.0),
    (10000, 3.0),
    (10000, 10.0),
]


# ----------------------------------------------------------------------------------------
# accuracy against brute force
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [PSF_GAUSS, PSF_VMF])
@pytest.mark.parametrize("area,sig_deg", CASES)
def test_overlap_matches_brute_force(maps, area, sig_deg, kind):
    """Within 1% of brute force, at the peak and 1.5 / 3 combined widths off it."""
    (uniq, rho), map_order = maps[area]
    sigma = sig_deg * DEG
    width = math.hypot(sigma, math.sqrt(area * SQDEG / (2 * np.pi * np.log(10))))
    pts = [CENTRE, _offset(*CENTRE, 1.5 * width), _offset(*CENTRE, 3.0 * width, pa=2.0)]
    ra = np.array([p[0] for p in pts])
    dec = np.array([p[1] for p in pts])
    sig = np.full(3, sigma)
    ov, wt = psf_overlap(uniq, rho, ra, dec, sig, rows(np.full(3, E_NU)), SINDEC, None, kind)
    order = brute_order(sigma, map_order)
    for k in range(3):
        bo, bw = brute(uniq, rho, ra[k], dec[k], sigma, kind, order, min(np.pi, 7 * sigma))
        assert ov[k] == pytest.approx(bo, rel=0.01), (k, ov[k], bo)
        assert wt[k] == pytest.approx(bw, rel=0.01), (k, wt[k], bw)


# ----------------------------------------------------------------------------------------
# pairs, flat maps, PSF shapes
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [PSF_GAUSS, PSF_VMF])
@pytest.mark.parametrize("area,s1,s2", [(1, 0.5, 1.0), (100, 1.0, 2.0), (10000, 3.0, 5.0)])
def test_pair_overlap_matches_brute_force(maps, area, s1, s2, kind):
    (uniq, rho), map_order = maps[area]
    ra1, dec1 = _offset(*CENTRE, 0.5 * s1 * DEG)
    ra2, dec2 = _offset(*CENTRE, 1.0 * s2 * DEG, pa=2.5)
    one = np.ones(1)
    po, pw = psf_pair_overlap(
        uniq, rho, [ra1], [dec1], [s1 * DEG], rows(E_NU), [ra2], [dec2], [s2 * DEG], rows(E_NU),
        SINDEC, None, kind,
    )  # fmt: skip
    order = brute_order(min(s1, s2) * DEG / math.sqrt(2), map_order)
    bo, bw = brute(uniq, rho, ra1, dec1, s1 * DEG, kind, order, 7 * s1 * DEG, E_NU * one[0], ra2, dec2, s2 * DEG)  # fmt: skip
    assert po[0] == pytest.approx(bo, rel=0.01)
    assert pw[0] == pytest.approx(bw, rel=0.01)


@pytest.mark.parametrize("kind", [PSF_GAUSS, PSF_VMF])
@pytest.mark.parametrize("psi0,pa", [(18.0, 0.0), (18.0, 1.5), (21.0, 0.0), (21.0, 1.5)])
def test_wide_pair_in_the_map_tail_matches_brute_force(psi0, pa, kind):
    """A pair 15 deg apart (sigma 1 and 3 deg: 4.7 combined sigma) where the blob has
    fallen to 1e-10 .. 1e-14 of its peak and still varies by e^2.5 per degree. Its
    value, ~1e-5 of the coincident pair's scale there, sat below an absolute floor taken
    from the PSF peak: 4% to 54% low at the default rtol. Within 1% of brute force."""
    uniq, rho = make_moc(100.0, 8, floor=0.0)
    ra1, dec1 = _offset(*CENTRE, psi0 * DEG, pa=0.3)
    ra2, dec2 = _offset(ra1, dec1, 15.0 * DEG, pa=pa)
    s1, s2 = 1.0 * DEG, 3.0 * DEG
    po, pw = psf_pair_overlap(
        uniq, rho, [ra1], [dec1], [s1], rows(E_NU), [ra2], [dec2], [s2], rows(E_NU),
        SINDEC, None, kind,
    )  # fmt: skip
    assert rho.max() * 1e-10 > po[0] / (1 / (2 * np.pi * (s1**2 + s2**2)))  # in the tail
    bo, bw = brute(uniq, rho, ra1, dec1, s1, kind, 10, 20 * DEG, E_NU, ra2, dec2, s2)
    assert po[0] == pytest.approx(bo, rel=0.01, abs=0.0)  # approx's 1e-12 would pass 0
    assert pw[0] == pytest.approx(bw, rel=0.01, abs=0.0)


@pytest.mark.parametrize("psi0,rtol", [(15.0, 1e-4), (18.0, 1e-3)])
def test_tight_wide_pair_stops_once_the_exact_remainder_is_small(psi0, rtol):
    """The wide tail pair's value is ~1e-14 of its first bounds, below the running sums'
    rounding: they must not keep the exact sum from ending the loop (it ran 4.8 million
    node expansions instead of ~1000)."""
    from kernels.overlap import Accuracy, Neutrinos, SignalRows
    from kernels.overlap.pairs import pair_serial
    from kernels.overlap.traversal import new_heap

    uniq, rho = make_moc(100.0, 8, floor=0.0)
    ra1, dec1 = _offset(*CENTRE, psi0 * DEG, pa=0.3)
    ra2, dec2 = _offset(ra1, dec1, 15.0 * DEG, pa=0.0)
    nu1, nu2 = (Neutrinos(*(np.array([x]) for x in v)) for v in ((ra1, dec1, DEG), (ra2, dec2, 3 * DEG)))  # fmt: skip
    sig = SignalRows(rows(E_NU), SINDEC)
    out_o, out_w, steps = np.empty(1), np.empty(1), np.empty(1, np.int64)
    acc = Accuracy(PSF_GAUSS, rtol, 0.4 / math.sqrt(2))
    done = pair_serial(prepare_map(uniq, rho), nu1, nu2, sig, sig, acc, False, new_heap(1 << 16), 0, 1, out_o, out_w, steps)  # fmt: skip
    assert done == 1
    assert steps[0] < 20_000, steps[0]
    bo, bw = brute(uniq, rho, ra1, dec1, DEG, PSF_GAUSS, 10, 20 * DEG, E_NU, ra2, dec2, 3 * DEG)
    assert out_o[0] == pytest.approx(bo, rel=0.01, abs=0.0)
    assert out_w[0] == pytest.approx(bw, rel=0.01, abs=0.0)


def test_flat_equals_multi_order(maps):
    """The same piecewise-constant map, flat NESTED or multi-order: same overlaps."""
    (uniq, rho), map_order = maps[100]
    flat = moc_to_flat(uniq, rho, map_order)
    rng = np.random.default_rng(3)
    n = 40
    ra = np.concatenate([rng.uniform(0, 2 * np.pi, n // 2), CENTRE[0] + rng.normal(0, 0.1, n // 2)])  # fmt: skip
    dec = np.concatenate([np.arcsin(rng.uniform(-1, 1, n // 2)), CENTRE[1] + rng.normal(0, 0.1, n // 2)])  # fmt: skip
    sig = np.exp(rng.uniform(np.log(0.2), np.log(5.0), n)) * DEG
    en = 10 ** rng.uniform(1.5, 5.5, n)
    w_moc = 1.0 + 0.5 * np.sin(np.arange(uniq.size))
    for kind in (PSF_GAUSS, PSF_VMF):
        a = psf_overlap(uniq, rho, ra, dec, sig, rows(en), SINDEC, None, kind)
        b = psf_overlap_flat(flat, ra, dec, sig, rows(en), SINDEC, None, kind)
        np.testing.assert_allclose(a[0], b[0], rtol=0.01)
        np.testing.assert_allclose(a[1], b[1], rtol=0.01)
    # per-pixel weights travel with the pixels
    w_flat = moc_to_flat(uniq, w_moc, map_order) / hp.nside2pixarea(2**map_order)
    a = psf_overlap(uniq, rho, ra, dec, sig, rows(en), SINDEC, w_moc, PSF_VMF)
    b = psf_overlap_flat(flat, ra, dec, sig, rows(en), SINDEC, w_flat, PSF_VMF)
    np.testing.assert_allclose(a[1], b[1], rtol=0.01)
    pa = psf_pair_overlap(uniq, rho, ra[:5], dec[:5], sig[:5], rows(en[:5]), ra[20:25], dec[20:25], sig[20:25], rows(en[20:25]), SINDEC)  # fmt: skip
    pb = psf_pair_overlap_flat(flat, ra[:5], dec[:5], sig[:5], rows(en[:5]), ra[20:25], dec[20:25], sig[20:25], rows(en[20:25]), SINDEC)  # fmt: skip
    np.testing.assert_allclose(pa[0], pb[0], rtol=0.01, atol=1e-300)


def test_row_order_and_resolution_independence(maps):
    """Shuffled rows, and every pixel split into its 4 children: same overlap."""
    (uniq, rho), _ = maps[1]
    ra, dec = np.array([CENTRE[0], 1.01]), np.array([CENTRE[1], 0.31])
    args = (np.full(2, 0.5 * DEG), rows(np.full(2, E_NU)), SINDEC)
    ref = psf_overlap(uniq, rho, ra, dec, *args)
    perm = np.random.default_rng(0).permutation(uniq.size)
    shuf = psf_overlap(uniq[perm], rho[perm], ra, dec, *args)
    np.testing.assert_allclose(shuf[0], ref[0], rtol=1e-12)
    o = (np.log2(uniq // 4) // 2).astype(np.int64)
    fine = (4 * (uniq - 4 * 4**o))[:, None] + np.arange(4) + 4 * 4 ** (o[:, None] + 1)
    split = psf_overlap(fine.ravel(), np.repeat(rho, 4), ra, dec, *args)
    np.testing.assert_allclose(split[0], ref[0], rtol=0.005)


def test_vmf_equals_gauss_for_small_sigma(maps):
    (uniq, rho), _ = maps[100]
    ra = CENTRE[0] + np.array([0.0, 0.02, 0.05])
    dec = CENTRE[1] + np.array([0.0, -0.01, 0.03])
    args = (np.full(3, 0.3 * DEG), rows(np.full(3, E_NU)), SINDEC)
    g = psf_overlap(uniq, rho, ra, dec, *args, None, PSF_GAUSS)
    v = psf_overlap(uniq, rho, ra, dec, *args, None, PSF_VMF)
    np.testing.assert_allclose(v[0], g[0], rtol=1e-3)


@pytest.mark.parametrize("sig_deg", [10.0, 30.0, 60.0])
def test_psf_normalisation_on_the_sphere(sig_deg):
    """A uniform map of density 1 returns the PSF's integral: 1 for vMF at any width;
    psf_norm (< 1) for the O3 Gaussian, checked by direct quadrature."""
    uniq = 4 * 4**2 + np.arange(192)
    rho = np.ones(192)
    ra, dec, s = np.array([0.3, 2.0]), np.array([0.1, -1.2]), np.full(2, sig_deg * DEG)
    e = np.full(2, E_NU)
    v = psf_overlap(uniq, rho, ra, dec, s, rows(e), SINDEC, None, PSF_VMF)[0]
    np.testing.assert_allclose(v, 1.0, rtol=1e-6)
    g = psf_overlap(uniq, rho, ra, dec, s, rows(e), SINDEC, None, PSF_GAUSS)[0]
    t = np.linspace(0, np.pi, 200001)
    sg = sig_deg * DEG
    ref = np.trapezoid(np.exp(-(t**2) / (2 * sg**2)) * np.sin(t), t) / sg**2
    np.testing.assert_allclose(g, ref, rtol=1e-6)
    assert psf_norm(sg, PSF_GAUSS) == pytest.approx(ref, rel=1e-6)
    # brute-force check of the vMF normalisation on a flat grid
    vec = np.array(hp.pix2vec(64, np.arange(12 * 64**2))).T
    k = 1 / sg**2
    dens = k / (2 * np.pi * -np.expm1(-2 * k)) * np.exp(k * (vec[:, 2] - 1))
    assert dens.sum() * hp.nside2pixarea(64) == pytest.approx(1.0, rel=1e-3)


def test_row_bands_clamp_and_edges():
    # weighted / overlap on a uniform map is the row's value at the neutrino's band
    uniq = 4 + np.arange(12)
    rho = np.ones(12)
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    # (on an edge, sindec 0.1, half the PSF lies in each band)
    for sindec, expect in ((0.3, 3.0), (0.1, 2.5), (-0.999, 1.0), (0.999, 4.0)):
        ov, wt = psf_overlap(uniq, rho, [0.0], [math.asin(sindec)], [1e-4], row, SINDEC, None, 1)  # fmt: skip
        assert wt[0] / ov[0] == pytest.approx(expect, rel=1e-5), sindec
    # bands beyond the edges given clamp to the edge bands
    ov, wt = psf_overlap(uniq, rho, [0.0], [1.5], [1e-3], [[5.0]], [-0.5, 0.5], None, 1)
    assert wt[0] / ov[0] == pytest.approx(5.0, rel=1e-9)


def test_empty_inputs_and_validation(maps):
    (uniq, rho), _ = maps[1]
    e = np.empty(0)
    ov, wt = psf_overlap(uniq, rho, e, e, e, np.empty((0, 4)), SINDEC)
    assert ov.shape == wt.shape == (0,)
    po, pw = psf_pair_overlap(
        uniq, rho, e, e, e, np.empty((0, 4)), e, e, e, np.empty((0, 4)), SINDEC
    )
    assert po.shape == pw.shape == (0,)
    ov, _ = psf_overlap_flat(np.ones(12) / 12, e, e, e, np.empty((0, 4)), SINDEC)
    assert ov.shape == (0,)
    with pytest.raises(ValueError):
        psf_overlap(uniq, rho, [0.0], [0.0], [0.01], AEFF[:1, :2], SINDEC)
    with pytest.raises(ValueError):
        psf_overlap(uniq, rho, [0.0], [0.0], [0.01], rows(1e3), SINDEC, None, 2)
    with pytest.raises(ValueError):
        psf_overlap_flat(np.ones(13), [0.0], [0.0], [0.01], rows(1e3), SINDEC)
    with pytest.raises(ValueError, match="finite and >= 0"):
        psf_overlap(uniq, rho, [0.0], [0.0], [0.01], -rows(1e3), SINDEC)


def test_pixel_weight_scales_weighted_only():
    uniq = 4 * 4 + np.arange(48)
    rho = np.full(48, 1 / (4 * np.pi))
    args = ([0.5], [0.2], [2 * DEG], rows(E_NU), SINDEC)
    a = psf_overlap(uniq, rho, *args)
    b = psf_overlap(uniq, rho, *args, np.full(48, 3.0))
    assert b[0][0] == pytest.approx(a[0][0], rel=1e-12)
    assert b[1][0] == pytest.approx(3 * a[1][0], rel=1e-9)


def test_serial_and_parallel_kernels_agree(maps):
    """The parallel kernels (calls with many neutrinos when Numba has several threads)
    give exactly the serial kernels' numbers, item by item, whatever the chunking; a
    prepared map is only read, so it gives the same numbers on every reuse."""
    from kernels.overlap import Accuracy, Neutrinos, SignalRows
    from kernels.overlap.api import _serial
    from kernels.overlap.pairs import pair_parallel, pair_serial
    from kernels.overlap.traversal import overlap_parallel, overlap_serial

    (uniq, rho), map_order = maps[100]
    rng = np.random.default_rng(5)
    n = 12
    nu = Neutrinos(
        CENTRE[0] + rng.normal(0, 0.05, n),
        CENTRE[1] + rng.normal(0, 0.05, n),
        np.full(n, 0.8 * DEG),
    )
    sig = SignalRows(rows(np.full(n, E_NU)), SINDEC)
    acc = Accuracy(PSF_GAUSS, 1e-2, 0.4)
    w = 1.0 + 0.5 * np.cos(np.arange(uniq.size))
    for pm in (prepare_map(uniq, rho, w), prepare_map_flat(moc_to_flat(uniq, rho, map_order))):
        before = [np.copy(a) for a in pm]
        serial = _serial(overlap_serial, (pm, nu, sig, acc), n)
        for chunk in (1, 5, n):
            par = overlap_parallel(pm, nu, sig, acc, chunk)
            for x, y in zip(serial, par, strict=True):
                np.testing.assert_array_equal(x, y)
        half = [Neutrinos(*(a[:6] for a in nu)), Neutrinos(*(a[6:] for a in nu))]
        sigs = [SignalRows(sig.rows[:6], SINDEC), SignalRows(sig.rows[6:], SINDEC)]
        for wonly in (False, True):
            ps = _serial(pair_serial, (pm, *half, *sigs, acc, wonly), 6)
            pp = pair_parallel(pm, *half, *sigs, acc, wonly, 2)
            for x, y in zip(ps, pp, strict=True):
                np.testing.assert_array_equal(x, y)
            assert np.all(np.isnan(ps[0])) == wonly
        again = _serial(overlap_serial, (pm, nu, sig, acc), n)
        np.testing.assert_array_equal(again[1], serial[1])
        for a, b in zip(before, pm, strict=True):
            np.testing.assert_array_equal(a, b)


def test_bad_input_names_the_problem(maps):
    """Each bad input is refused with one message naming it."""
    (uniq, rho), _ = maps[1]
    pm = prepare_map(uniq, rho)
    one = ([0.0], [0.0], [0.01])
    with pytest.raises(ValueError, match="sigma must be > 0"):
        psf_overlap_prepared(pm, [0.0], [0.0], [0.0], rows(1e3), SINDEC)
    with pytest.raises(ValueError, match="1-D and of equal length"):
        psf_overlap_prepared(pm, [0.0, 1.0], [0.0], [0.01], rows(1e3), SINDEC)
    with pytest.raises(ValueError, match="rtol must be in"):
        psf_overlap_prepared(pm, *one, rows(1e3), SINDEC, rtol=0.0)
    with pytest.raises(ValueError, match="psf_kind must be 0"):
        psf_overlap_prepared(pm, *one, rows(1e3), SINDEC, 2)
    with pytest.raises(ValueError, match="equal numbers"):
        psf_pair_overlap_prepared(pm, *one, rows(1e3), [0.0] * 2, [0.0] * 2, [0.01] * 2, rows([1e3] * 2), SINDEC)  # fmt: skip
    with pytest.raises(ValueError, match="NUNIQ"):
        prepare_map([0, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"12 \* 4\*\*order"):
        prepare_map_flat(np.ones(13))
    with pytest.raises(ValueError, match="pixel_weight must have"):
        prepare_map_flat(np.ones(12), np.ones(3))


def test_random_pairs_match_converged_reference(maps):
    """40 random-sky pairs (sigma 0.2-3 deg, separation up to 5 (s1 + s2), energies over
    the A_eff bins) on the 1 deg^2 map: within 1% (plus the absolute floor) of the same
    kernel tightly converged. Catches the pair midpoint rule's missing second-order
    correction (it underestimated the product's peak by ~A / (12 s12^2), up to 2.2%)
    and A_eff edges taken at coarse cell centres."""
    from kernels.overlap import ATOL, RTOL

    (uniq, rho), _ = maps[1]
    rng = np.random.default_rng(1)
    n = 40
    s1 = rng.uniform(0.2, 3, n) * DEG
    s2 = rng.uniform(0.2, 3, n) * DEG
    ra1, dec1, ra2, dec2 = (np.empty(n) for _ in range(4))
    for k in range(n):
        if k % 2:  # around the blob
            ra1[k], dec1[k] = _offset(*CENTRE, rng.uniform(0, 15) * DEG, rng.uniform(0, 6.28))
        else:  # anywhere
            ra1[k], dec1[k] = rng.uniform(0, 2 * np.pi), np.arcsin(rng.uniform(-1, 1))
        sep = rng.uniform(0, 5) * (s1[k] + s2[k])
        ra2[k], dec2[k] = _offset(ra1[k], dec1[k], sep, rng.uniform(0, 6.28))
    e1 = 10 ** rng.uniform(2, 5, n)
    e2 = 10 ** rng.uniform(2, 5, n)
    args = (uniq, rho, ra1, dec1, s1, rows(e1), ra2, dec2, s2, rows(e2), SINDEC)
    po, pw = psf_pair_overlap(*args)
    ro, rw = psf_pair_overlap(*args, rtol=1e-5, res=0.2)
    flo = ATOL * RTOL * rho.max() * np.minimum(1 / (2 * np.pi * s1**2), 1 / (2 * np.pi * s2**2))
    flw = flo * AEFF.max() ** 2
    assert np.all(np.abs(po - ro) <= 0.01 * np.abs(ro) + flo), np.max(np.abs(po - ro) / (0.01 * np.abs(ro) + flo))  # fmt: skip
    assert np.all(np.abs(pw - rw) <= 0.01 * np.abs(rw) + flw), np.max(np.abs(pw - rw) / (0.01 * np.abs(rw) + flw))  # fmt: skip


@pytest.mark.parametrize("kind", [PSF_GAUSS, PSF_VMF])
def test_pair_control_variate_on_uniform_sky_matches_brute_force(kind):
    """On a uniform map the pair traversal has nothing to refine: the result is the
    control variate alone (the polar quadrature of G1 G2 and of A1 A2 G1 G2 band by
    band). Checked against healpy sums for pairs of all widths and separations, near a
    pole and straddling A_eff sin(dec) edges."""
    uniq = 4 + np.arange(12)
    rho = np.full(12, 1 / (4 * np.pi))
    rng = np.random.default_rng(7)
    edge_decs = np.arcsin(SINDEC[1:-1])
    decs = [*edge_decs, 1.52, -1.5, *np.arcsin(rng.uniform(-1, 1, 3))]
    for k, dec1 in enumerate(decs):
        ra1 = rng.uniform(0, 2 * np.pi)
        s1, s2 = rng.uniform(0.2, 3, 2) * DEG
        sep = [0.0, 0.5, 2.0, 4.0, 4.9][k % 5] * (s1 + s2)
        ra2, dec2 = _offset(ra1, dec1, sep, rng.uniform(0, 6.28))
        po, pw = psf_pair_overlap(
            uniq, rho, [ra1], [dec1], [s1], rows(E_NU), [ra2], [dec2], [s2], rows(E_NU),
            SINDEC, None, kind,
        )  # fmt: skip
        s12 = s1 * s2 / math.hypot(s1, s2)
        order = brute_order(s12, 0) + 1
        reach = sep * s1**2 / (s1**2 + s2**2) + 7 * s12
        bo, bw = brute(uniq, rho, ra1, dec1, s1, kind, order, reach, E_NU, ra2, dec2, s2)
        assert po[0] == pytest.approx(bo, rel=0.01), (k, po[0], bo)
        assert pw[0] == pytest.approx(bw, rel=0.01), (k, pw[0], bw)


def test_deep_refinement_outgrows_the_first_heap(maps):
    """rtol 1e-8 needs ~12,600 node expansions (constant cells expanded in moments
    stop sooner than the ~23,000 rtol 1e-6 took before them): far more pending nodes
    than the first heap holds (4096), so the traversal is rerun with larger heaps.
    Same answer as the default tolerance and as brute force."""
    from kernels.overlap import Accuracy, Neutrinos, SignalRows
    from kernels.overlap.api import overlap_with_steps

    (uniq, rho), map_order = maps[100]
    pm = prepare_map(uniq, rho)
    nu = Neutrinos(*(np.array([x]) for x in (CENTRE[0], CENTRE[1], DEG)))
    sig = SignalRows(rows(E_NU), SINDEC)
    deep = overlap_with_steps(pm, nu, sig, Accuracy(PSF_GAUSS, 1e-8, 0.1))
    default = overlap_with_steps(pm, nu, sig, Accuracy(PSF_GAUSS, 1e-2, 0.4))
    assert deep[2][0] > 10_000
    bo, bw = brute(uniq, rho, CENTRE[0], CENTRE[1], DEG, PSF_GAUSS, brute_order(DEG, map_order), 7 * DEG)  # fmt: skip
    assert deep[0][0] == pytest.approx(bo, rel=1e-3)
    assert deep[1][0] == pytest.approx(bw, rel=1e-3)
    assert default[0][0] == pytest.approx(deep[0][0], rel=1e-2)


def split_moc(seed):
    """A multi-order map reaching both poles, the belt and its edges: order 3
    everywhere, a random quarter split to order 5, a random quarter of those to 8;
    (uniq, order, ipix) sorted by nested range."""
    from kernels.healpix import order_ipix_to_uniq

    rng = np.random.default_rng(seed)
    order, ipix = np.full(768, 3), np.arange(768)
    for fine in (5, 8):
        split = rng.random(ipix.size) < 0.25
        grow = 2 * (fine - order[split])
        kids = np.concatenate([(p << g) + np.arange(1 << g) for p, g in zip(ipix[split], grow, strict=True)])  # fmt: skip
        order = np.concatenate([order[~split], np.full(kids.size, fine)])
        ipix = np.concatenate([ipix[~split], kids])
    at = np.argsort(ipix << (2 * (8 - order)))
    return order_ipix_to_uniq(order[at], ipix[at]), order[at], ipix[at]


def tree_pixels(child):
    """(order, ipix) of every node of a prepared map's tree (children follow parents)."""
    t_ord, t_pix = np.zeros(child.size, np.int64), np.zeros(child.size, np.int64)
    t_pix[:12] = np.arange(12)
    for i in np.flatnonzero(child >= 0):
        t_ord[child[i] : child[i] + 4] = t_ord[i] + 1
        t_pix[child[i] : child[i] + 4] = 4 * t_pix[i] + np.arange(4)
    return t_ord, t_pix


def test_tree_node_centres_are_healpix_pixel_centres_bit_for_bit():
    """The tree's node centres (longitudes' cosines shared along the equatorial
    belt's meridians) are the pixel centres of kernels.healpix, bit for bit, and
    healpy's to 1e-15, over maps reaching both poles, the belt and its edges."""
    from kernels.healpix import pix2vec_nest_array
    from kernels.overlap.tree import prepare_moc_arrays

    uniq, _, _ = split_moc(11)
    rho = np.random.default_rng(11).random(uniq.size)
    child, cen = (lambda f: (f[6], f[12]))(prepare_moc_arrays(uniq, rho, np.ones_like(rho)))
    t_ord, t_pix = tree_pixels(child)
    assert t_ord.max() == 8 and np.abs(cen[:, 2]).max() > 0.99
    assert np.array_equal(cen, pix2vec_nest_array(t_ord, t_pix))
    for o in np.unique(t_ord):
        sel = t_ord == o
        ref = np.array(hp.pix2vec(1 << int(o), t_pix[sel], nest=True)).T
        np.testing.assert_allclose(cen[sel], ref, rtol=0, atol=1e-15)


def test_tree_moments_are_sums_over_the_map_pixels_below():
    """The tree keeps moments for its internal nodes alone, row k for the node whose
    children begin at 12 + 4k; each row's masses and first moments of rho, rho*w
    and area are the sums over the map's pixels below the node (pixel areas times
    healpy's centres, summed in numpy) to 1e-12 (of the mass for first moments
    whose terms cancel)."""
    uniq, order, ipix = split_moc(12)
    rng = np.random.default_rng(12)
    rho, w = rng.random(uniq.size), rng.random(uniq.size)
    pm = prepare_map(uniq, rho, w)
    internal = np.flatnonzero(pm.child >= 0)
    assert np.array_equal(pm.child[internal], 12 + 4 * np.arange(internal.size))
    assert pm.moments.shape == (internal.size, 30)
    t_ord, t_pix = tree_pixels(pm.child)
    area = 4 * np.pi / (12 * 4.0**order)
    vec = np.empty((uniq.size, 3))
    for o in np.unique(order):
        vec[order == o] = np.array(hp.pix2vec(1 << int(o), ipix[order == o], nest=True)).T
    # the pixels below a node of order o: those whose index shifted up to order o is the
    # node's; sorted by that index once per order, each node's pixels are one slice (a
    # mask over the whole map per node took ~6 minutes)
    fields = [f * area for f in (rho, rho * w, np.ones_like(rho))]
    by_order = {}
    for o in np.unique(t_ord[internal]):
        deep = np.flatnonzero(order >= o)
        up = ipix[deep] >> (2 * (order[deep] - o))
        sort = np.argsort(up, kind="stable")
        by_order[o] = (up[sort], deep[sort])
    want = np.empty((internal.size, 3, 4))  # per node, per field: mass, first moments
    for k, i in enumerate(internal):
        up, at = by_order[t_ord[i]]
        below = at[np.searchsorted(up, t_pix[i]) : np.searchsorted(up, t_pix[i], side="right")]
        for g, f in enumerate(fields):
            mass = f[below]
            want[k, g, 0] = mass.sum()
            want[k, g, 1:] = (mass[:, None] * vec[below]).sum(axis=0)
    got = pm.moments[:, [10 * g + j for g in range(3) for j in range(4)]].reshape(want.shape)
    # masses to 1e-12 of themselves, first moments also within 1e-12 of their mass
    slack = 1e-12 * (np.abs(want) + want[:, :, :1] * (np.arange(4) > 0))
    worst = np.unravel_index(np.argmax(np.abs(got - want) - slack), want.shape)
    assert np.all(np.abs(got - want) <= slack), (worst, got[worst], want[worst])
    assert pm.moments[:, 20].sum() > 4 * np.pi  # nodes of several orders, not one
