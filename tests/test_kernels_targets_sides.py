"""Aimed kernel looks whose interval takes each side's own bounds (``psf_overlap_targets``
with ``sides=True``, as background trials call it) against an independent brute force.

A node left unexpanded on the heap bounds the weighted error from above by (wmax -
c0w) and from below by (c0w - wmin), times its largest weight and PSF mass: beside a
dense region one of them is often 0. Each side's sum is then a valid bound of that
side alone, so a look stops as soon as ``w - below .. w + above`` (not ``w +- half``,
half the larger sum) misses its bands: the brute force must lie inside that interval,
the interval must miss every band, a look that does not stop must be the exact
kernel's bit for bit, and every look the two-sided interval stops stops here too (the
same traversal; each side's sum is at most the two-sided one).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from bayestar_events import bayestar_model
from polar_sums import BAND_LAYOUTS, bands_about
from test_kernels_targets import BRUTE, _neutrinos, kernel_args, looks_case

from kernels.overlap import psf_overlap_targets
from llama.science.signal_tables import SINDEC_EDGES

_model = functools.cache(bayestar_model)

#: Bands nearer the value than BAND_LAYOUTS' (a look must narrow to within 15-25%).
NEAR = {
    "just above": [(1.15, 3.0)],
    "just below": [(0.2, 1 / 1.15)],
    "both sides near": [(0.5, 1 / 1.25), (1.25, 2.0)],
}


def _assert_sided_stops(w, below, above, truth, off, lo, hi, what):
    """Each stopped look: both sides -1 or both >= 0; the brute force inside
    ``w - below .. w + above`` (within its own error) and no band met."""
    assert np.array_equal(below < 0.0, above < 0.0), what
    for k in np.flatnonzero(below >= 0.0):
        slack = BRUTE * truth[k]
        assert w[k] - below[k] - slack <= truth[k] <= w[k] + above[k] + slack, (what, k, w[k], below[k], above[k], truth[k])  # fmt: skip
        a, b = w[k] - below[k], w[k] + above[k]
        assert all(b < lo[j] or a > hi[j] for j in range(off[k], off[k + 1])), (what, k)


@pytest.mark.parametrize("name", ["bns-9", "bbh-6"])
def test_sided_looks_hold_the_brute_force_and_stop_no_later(name):
    ra, dec, sig, rows, pm, kind, rtol, truth, exact = looks_case(_model(name), 10, 11)
    args = (pm, ra, dec, sig, rows, SINDEC_EDGES, kind)
    stops = {}
    for what, bands in {**BAND_LAYOUTS, **NEAR}.items():
        off, lo, hi = bands_about(truth, bands)
        w, below, above = psf_overlap_targets(*args, off, lo, hi, 0.05, rtol=rtol, sides=True)
        stop = below >= 0.0
        np.testing.assert_array_equal(w[~stop], exact[~stop])
        _assert_sided_stops(w, below, above, truth, off, lo, hi, what)
        _, half = psf_overlap_targets(*args, off, lo, hi, 0.05, rtol=rtol)
        assert np.all(stop[half >= 0.0]), what  # what stops two-sided stops here
        stops[what] = (int(stop.sum()), int((half >= 0.0).sum()))
    assert stops["over it"][0] == 0, stops
    assert all(a >= b for a, b in stops.values()), stops


@pytest.mark.parametrize("name", ["bns-9", "bbh-6"])
def test_each_side_is_at_most_the_two_sided_half_and_often_less(name):
    """With no band both looks stop at their first check, after the same steps: there
    each side is at most the two-sided half width, and one side is narrower for most
    neutrinos (beside the dense region the nodes lie mostly on one side of c0)."""
    model = _model(name)
    ra, dec, sig, en = _neutrinos(model, 16, np.random.default_rng(4))
    rows = model.tables.dec_rows(en)
    args = (model.prepared_map(), ra, dec, sig, rows, SINDEC_EDGES, model.psf_kind)
    none = (np.zeros(ra.size + 1, np.int64), np.empty(0), np.empty(0), 0.05)
    w2, half = psf_overlap_targets(*args, *none)
    w, below, above = psf_overlap_targets(*args, *none, sides=True)
    np.testing.assert_array_equal(w, w2)  # the same traversal up to the same check
    assert np.all(half >= 0.0)
    tol = 1e-9 * half  # the sides' running sums are not clamped at each step
    assert np.all(below <= half + tol) and np.all(above <= half + tol)
    narrower = np.minimum(below, above) < 0.9 * half
    assert narrower.sum() > ra.size // 2, (below / half, above / half)


def test_sided_looks_without_bands_or_with_every_band():
    """No band: stopped at once; a band over every value, or a margin that no band can
    miss: the exact kernel's result, both sides -1."""
    args, exact = kernel_args(_model("bns-9"), 6, 2)
    ra = args[1]
    none = np.zeros(ra.size + 1, np.int64)
    _, below, above = psf_overlap_targets(*args, none, np.empty(0), np.empty(0), 0.05, sides=True)  # fmt: skip
    assert np.all(below >= 0.0) and np.all(above >= 0.0)
    every = np.arange(ra.size + 1)
    w, below, above = psf_overlap_targets(*args, every, np.full(ra.size, -np.inf), np.full(ra.size, np.inf), 0.05, sides=True)  # fmt: skip
    assert np.all(below == -1.0) and np.all(above == -1.0)
    np.testing.assert_array_equal(w, exact)
    w, below, above = psf_overlap_targets(*args, every, -exact, 3 * exact, 1e6, sides=True)
    assert np.all(below == -1.0)
    np.testing.assert_array_equal(w, exact)
