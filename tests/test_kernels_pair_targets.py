"""Pair-kernel looks aimed at target bands (``kernels.overlap.pairs.pair_targets_serial``)
against an independent brute force: a look that stops early says where the true S_ij
is (within its half width), and stops only outside its bands; one that does not is the
exact pair kernel's look, bit for bit.

The brute force is test_kernels_pair_tail's midpoint sum on a polar grid about each
pair's product; the pairs sit on and about a BAYESTAR map's dense region, where the
traversal has the most to refine, their members within O3's doublet separation.
"""

from __future__ import annotations

import functools
import math

import healpy as hp
import numpy as np
import pytest
from bayestar_events import bayestar_model
from polar_sums import BAND_LAYOUTS, assert_stops_outside_bands, bands_about, unit_vector
from test_kernels_pair_tail import brute_force

from kernels.overlap.common import RES
from kernels.overlap.pairs import pair_targets_serial
from kernels.overlap.records import Accuracy, Heap, Neutrinos, SignalRows
from llama.science.signal_tables import SINDEC_EDGES

_model = functools.cache(bayestar_model)
#: The brute force's own error, relative (10 product widths, 2000 x 2048 points).
BRUTE = 2e-3
#: The allowance for the midpoint cells, relative (as background_trials passes).
MARGIN = 0.05


def _pairs(model, n, rng):
    """n pairs (ra, dec, sigma [rad] of both members, energies [GeV]): the first member
    within 3 deg of the map's densest pixel for half of them, 20 deg for the rest, the
    second within 3 (sigma_i + sigma_j) of the first."""
    order, ipix = model.skymap.order_ipix()
    top = int(np.argmax(model.skymap.probdensity))
    ra0, dec0 = hp.pix2ang(1 << int(order[top]), int(ipix[top]), nest=True, lonlat=True)
    reach = np.where(np.arange(n) < n // 2, 3.0, 20.0)
    dec1 = np.clip(dec0 + rng.uniform(-1, 1, n) * reach, -85.0, 85.0)
    ra1 = ra0 + rng.uniform(-1, 1, n) * reach / max(math.cos(math.radians(dec0)), 0.2)
    s1 = np.exp(rng.uniform(math.log(0.3), math.log(3.0), n))
    s2 = np.exp(rng.uniform(math.log(0.3), math.log(3.0), n))
    sep = 3.0 * (s1 + s2) * np.sqrt(rng.uniform(0.0, 1.0, n))
    ang = rng.uniform(0.0, 2 * math.pi, n)
    dec2 = np.clip(dec1 + sep * np.cos(ang), -85.0, 85.0)
    ra2 = ra1 + sep * np.sin(ang) / np.cos(np.radians(0.5 * (dec1 + dec2)))
    en = 10.0 ** rng.uniform(2.5, 4.5, (2, n))
    first = (np.radians(ra1 % 360.0), np.radians(dec1), np.radians(s1))
    second = (np.radians(ra2 % 360.0), np.radians(dec2), np.radians(s2))
    return first, second, en[0], en[1]


def _records(model, first, second, e1, e2):
    """The kernel's records for these pairs, as psf_pair_overlap_prepared makes them."""
    acc = Accuracy(int(model.psf_kind), float(model.overlap_rtol), RES / math.sqrt(2.0))
    edges = np.ascontiguousarray(SINDEC_EDGES, dtype=np.float64)
    nu1 = Neutrinos(*(np.ascontiguousarray(a, dtype=np.float64) for a in first))
    nu2 = Neutrinos(*(np.ascontiguousarray(a, dtype=np.float64) for a in second))
    sig1 = SignalRows(np.ascontiguousarray(model.tables.dec_rows(e1)), edges)
    sig2 = SignalRows(np.ascontiguousarray(model.tables.dec_rows(e2)), edges)
    return nu1, nu2, sig1, sig2, acc


def aimed(model, first, second, e1, e2, offsets, band_lo, band_hi, margin=MARGIN, narrow=0.0):
    """(weighted, half, node expansions) of the aimed looks at these pairs."""
    nu1, nu2, sig1, sig2, acc = _records(model, first, second, e1, e2)
    n = nu1.ra.size
    out = (np.empty(n), np.empty(n), np.empty(n, np.int64))
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    lo = np.ascontiguousarray(band_lo, dtype=np.float64)
    hi = np.ascontiguousarray(band_hi, dtype=np.float64)
    size = 1 << 12
    i = 0
    while i < n:  # a heap too small for a look: again from there with a larger one
        heap = Heap.empty(size)
        i = pair_targets_serial(model.prepared_map(), nu1, nu2, sig1, sig2, acc, heap, off, lo, hi, float(margin), float(narrow), i, n, *out)  # fmt: skip
        size *= 2
    return out


def exact(model, first, second, e1, e2):
    """The exact pair kernel's S_ij (EventModel.pair_overlap: the doublet terms' look)."""
    ra, dec, sig = (np.concatenate([a, b]) for a, b in zip(first, second, strict=True))
    n = first[0].size
    return model.pair_overlap(ra, dec, sig, e1, e2, np.arange(n), np.arange(n, 2 * n))


@pytest.mark.parametrize("name", ["bns-9", "bbh-6"])
def test_aimed_pair_looks_bound_the_brute_force_and_stop_only_outside_their_bands(name):
    """Per pair, bands placed about its brute-force S_ij (wholly above it, wholly below,
    both sides, or over it): every early stop's interval holds the brute force and
    meets no band; a look over whose value a band lies runs to the end and returns the
    exact kernel's S_ij bit for bit; most looks aimed at bands a factor 1.5 off stop
    early, after fewer node expansions than the exact look. With ``narrow``, a look
    inside a wide band stops once narrow enough against it."""
    model = _model(name)
    first, second, e1, e2 = _pairs(model, 8, np.random.default_rng(3))
    uniq = np.asarray(model.skymap.uniq, dtype=np.int64)
    rho = np.asarray(model.skymap.probdensity, dtype=np.float64)
    r1, r2 = model.tables.dec_rows(e1), model.tables.dec_rows(e2)
    truth = np.array([
        brute_force(
            uniq, rho, unit_vector(first[0][k], first[1][k]), first[2][k], r1[k],
            unit_vector(second[0][k], second[1][k]), second[2][k], r2[k],
        )
        for k in range(e1.size)
    ])  # fmt: skip
    assert np.all(truth > 0.0)
    ref = exact(model, first, second, e1, e2)
    full = aimed(model, first, second, e1, e2, np.arange(e1.size + 1), np.full(e1.size, -np.inf), np.full(e1.size, np.inf))  # fmt: skip
    early = {}
    for what, bands in BAND_LAYOUTS.items():
        off, lo, hi = bands_about(truth, bands)
        w, half, steps = aimed(model, first, second, e1, e2, off, lo, hi)
        stop = half >= 0.0
        early[what] = int(stop.sum())
        np.testing.assert_array_equal(w[~stop], ref[~stop])
        np.testing.assert_array_equal(steps[~stop], full[2][~stop])
        assert np.all(steps[stop] < full[2][stop]), (what, steps, full[2])
        assert_stops_outside_bands(w, half, truth, off, lo, hi, BRUTE, what)
    assert early["over it"] == 0, early
    assert early["above"] >= 6 and early["below"] >= 6, early
    # a band 1e4 wide about the value, with ``narrow``: the look stops once its interval
    # lies inside the band and is no wider than a quarter of it, the brute force inside
    off = np.arange(e1.size + 1)
    lo, hi = 0.01 * truth, 100.0 * truth
    w, half, steps = aimed(model, first, second, e1, e2, off, lo, hi, narrow=0.25)
    stop = half >= 0.0
    assert stop.sum() >= 6 and np.all(steps[stop] < full[2][stop]), (half, steps, full[2])
    np.testing.assert_array_equal(w[~stop], ref[~stop])  # converged first: the exact look
    a, b = w[stop] - half[stop], w[stop] + half[stop]
    assert np.all(a >= lo[stop]) and np.all(b <= hi[stop])
    assert np.all(b - a <= 0.25 * (hi[stop] - lo[stop]))
    assert np.all(np.abs(w[stop] - truth[stop]) <= half[stop] + BRUTE * truth[stop])


def test_pair_looks_without_bands_stop_at_once_and_over_everything_never():
    """No band: the first check stops each look (where the map is not constant under
    the product); a band over every value: the exact pair kernel's results, node
    expansions and all; a margin too wide for any band to be missed likewise."""
    model = _model("bns-9")
    first, second, e1, e2 = _pairs(model, 6, np.random.default_rng(2))
    n = e1.size
    ref = exact(model, first, second, e1, e2)
    _, half, _ = aimed(model, first, second, e1, e2, np.zeros(n + 1), np.empty(0), np.empty(0))  # fmt: skip
    assert np.all(half >= 0.0)
    every = np.arange(n + 1)
    w, half, _ = aimed(model, first, second, e1, e2, every, np.full(n, -np.inf), np.full(n, np.inf))  # fmt: skip
    assert np.all(half == -1.0)
    np.testing.assert_array_equal(w, ref)
    w, half, _ = aimed(model, first, second, e1, e2, every, -ref, 3 * ref, margin=1e6)
    assert np.all(half == -1.0)
    np.testing.assert_array_equal(w, ref)


def test_the_public_call_is_the_kernel_with_checks():
    """kernels.overlap.psf_pair_overlap_targets (what background_trials calls): the
    kernel's looks (bands, margin and narrow passed through, the pair resolution
    RES / sqrt 2), bit for bit, its heap grown where a look needs more; bad input
    refused."""
    from kernels.overlap import psf_pair_overlap_targets

    model = _model("bns-9")
    first, second, e1, e2 = _pairs(model, 8, np.random.default_rng(5))
    ref = exact(model, first, second, e1, e2)
    # pairs 0-3: a band about the exact value (3: and one over everything), 4-6: one
    # far below it, 7: none
    off = np.array([0, 1, 2, 3, 5, 6, 7, 8, 8])
    lo = np.r_[0.9 * ref[:4], -np.inf, 1e-3 * ref[4:7]]
    hi = np.r_[1.1 * ref[:4], np.inf, 2e-3 * ref[4:7]]
    rows = model.tables.dec_rows(e1), model.tables.dec_rows(e2)
    call = (model.prepared_map(), *first, rows[0], *second, rows[1], SINDEC_EDGES, model.psf_kind, off, lo, hi, MARGIN)  # fmt: skip
    for narrow in (0.0, 0.1):
        w, half = psf_pair_overlap_targets(*call, narrow=narrow, rtol=model.overlap_rtol)
        w_k, half_k, _ = aimed(model, first, second, e1, e2, off, lo, hi, narrow=narrow)
        np.testing.assert_array_equal(w, w_k)
        np.testing.assert_array_equal(half, half_k)
        np.testing.assert_array_equal(w[half < 0], ref[half < 0])
    assert np.any(half < 0) and np.any(half >= 0)
    with pytest.raises(ValueError, match="band_offsets"):
        psf_pair_overlap_targets(*call[:11], off[:-1], lo, hi, MARGIN)
    with pytest.raises(ValueError, match="narrow"):
        psf_pair_overlap_targets(*call, narrow=-1.0)
    with pytest.raises(ValueError, match="equal numbers"):
        psf_pair_overlap_targets(*call[:5], *(a[:-1] for a in second), rows[1][:-1], *call[9:])  # fmt: skip
    none = ([], [], [], np.empty((0, SINDEC_EDGES.size - 1)))
    w, half = psf_pair_overlap_targets(call[0], *none, *none, SINDEC_EDGES, model.psf_kind, [0], [], [], MARGIN)  # fmt: skip
    assert w.size == 0 and half.size == 0
