"""Kernel looks aimed at target bands (``psf_overlap_targets``) against an independent
brute force: a look that stops early says where the true S_i is (within its half
width), and stops only outside its bands; one that does not is the exact kernel's
look, bit for bit.

The brute force is test_kernels_single_tail's midpoint sum on a polar grid about each
neutrino (0.1% of S); the neutrinos sit on and about a BAYESTAR map's dense region,
where the traversal has the most to refine, and in its tail.
"""

from __future__ import annotations

import functools
import math

import healpy as hp
import numpy as np
import pytest
from bayestar_events import bayestar_model
from polar_sums import BAND_LAYOUTS, assert_stops_outside_bands, bands_about
from test_kernels_single_tail import brute_force

from kernels.overlap import psf_overlap_prepared, psf_overlap_targets
from llama.science.signal_tables import SINDEC_EDGES

_model = functools.cache(bayestar_model)
#: The brute force's own error, relative (test_kernels_single_tail.brute_force).
BRUTE = 2e-3


def _neutrinos(model, n, rng):
    """n neutrinos (ra, dec, sigma [rad], energy [GeV]): half within 3 deg of the map's
    densest pixel, half within 25 deg of it."""
    order, ipix = model.skymap.order_ipix()
    top = int(np.argmax(model.skymap.probdensity))
    ra0, dec0 = hp.pix2ang(1 << int(order[top]), int(ipix[top]), nest=True, lonlat=True)
    reach = np.where(np.arange(n) < n // 2, 3.0, 25.0)
    dec = np.clip(dec0 + rng.uniform(-1, 1, n) * reach, -89.0, 89.0)
    ra = ra0 + rng.uniform(-1, 1, n) * reach / max(math.cos(math.radians(dec0)), 0.2)
    sigma = np.exp(rng.uniform(math.log(0.3), math.log(3.0), n))
    energy = 10.0 ** rng.uniform(2.5, 4.5, n)
    return np.radians(ra % 360.0), np.radians(dec), np.radians(sigma), energy


def looks_case(model, n, seed):
    """(ra, dec, sig, rows, pm, kind, rtol, truth, exact) of n `_neutrinos` about the
    map: their a(eps) rows, the map's prepared record and the model's kernel options,
    the brute-force S per neutrino, and the exact kernel's."""
    ra, dec, sig, en = _neutrinos(model, n, np.random.default_rng(seed))
    rows = model.tables.dec_rows(en)
    pm, kind, rtol = model.prepared_map(), model.psf_kind, model.overlap_rtol
    uniq = np.asarray(model.skymap.uniq, dtype=np.int64)
    rho = np.asarray(model.skymap.probdensity, dtype=np.float64)
    truth = np.array([brute_force(uniq, rho, ra[k], dec[k], sig[k], rows[k]) for k in range(ra.size)])  # fmt: skip
    exact = psf_overlap_prepared(pm, ra, dec, sig, rows, SINDEC_EDGES, kind, rtol=rtol)[1]
    return ra, dec, sig, rows, pm, kind, rtol, truth, exact


def kernel_args(model, n, seed):
    """(psf_overlap_prepared's leading arguments, its exact S per neutrino) for n
    `_neutrinos` about the map."""
    ra, dec, sig, en = _neutrinos(model, n, np.random.default_rng(seed))
    args = (model.prepared_map(), ra, dec, sig, model.tables.dec_rows(en), SINDEC_EDGES, model.psf_kind)  # fmt: skip
    return args, psf_overlap_prepared(*args, rtol=model.overlap_rtol)[1]


@pytest.mark.parametrize("name", ["bns-9", "bbh-6"])
def test_aimed_looks_bound_the_brute_force_and_stop_only_outside_their_bands(name):
    """Per neutrino, bands placed about its brute-force S (wholly above it, wholly
    below, both sides, or over it): every early stop's interval holds the brute force
    and meets no band; a look over whose value a band lies runs to the end and returns
    the exact kernel's S_i; most looks aimed at bands a factor 1.5 off stop early."""
    ra, dec, sig, rows, pm, kind, rtol, truth, exact = looks_case(_model(name), 8, 5)
    early = {}
    for what, bands in BAND_LAYOUTS.items():
        off, lo, hi = bands_about(truth, bands)
        w, half = psf_overlap_targets(pm, ra, dec, sig, rows, SINDEC_EDGES, kind, off, lo, hi, 0.05, rtol=rtol)  # fmt: skip
        stop = half >= 0.0
        early[what] = int(stop.sum())
        np.testing.assert_array_equal(w[~stop], exact[~stop])
        assert_stops_outside_bands(w, half, truth, off, lo, hi, BRUTE, what)
    assert early["over it"] == 0, early
    assert early["above"] >= 6 and early["below"] >= 6, early


def test_no_bands_stop_at_once_and_bands_over_everything_never():
    """No band: the first check stops the look (where the map is not constant under the
    PSF); a band over every value: the exact kernel's result; a margin too wide for any
    band to be missed likewise."""
    args, exact = kernel_args(_model("bns-9"), 6, 2)
    ra = args[1]
    none = np.zeros(ra.size + 1, np.int64)
    _, half = psf_overlap_targets(*args, none, np.empty(0), np.empty(0), 0.05)
    assert np.all(half >= 0.0)
    every = np.arange(ra.size + 1)
    w, half = psf_overlap_targets(*args, every, np.full(ra.size, -np.inf), np.full(ra.size, np.inf), 0.05)  # fmt: skip
    assert np.all(half == -1.0)
    np.testing.assert_array_equal(w, exact)
    w, half = psf_overlap_targets(*args, every, -exact, 3 * exact, 1e6)
    assert np.all(half == -1.0)
    np.testing.assert_array_equal(w, exact)


def test_bad_bands_say_what_is_wrong():
    model = _model("bns-9")
    args = (model.prepared_map(), [0.1], [0.2], [0.01], np.ones((1, SINDEC_EDGES.size - 1)), SINDEC_EDGES, 0)  # fmt: skip
    with pytest.raises(ValueError, match="band_offsets must have"):
        psf_overlap_targets(*args, [0], [], [], 0.05)
    with pytest.raises(ValueError, match="rise from 0"):
        psf_overlap_targets(*args, [0, 2], [1.0], [2.0], 0.05)
    with pytest.raises(ValueError, match="margin"):
        psf_overlap_targets(*args, [0, 1], [1.0], [2.0], -0.1)
