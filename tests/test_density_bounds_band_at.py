"""kernels.density_bounds._band_at (the sin(dec) band of a declination with sin taken only
near an edge) gives _band's band (sin always) for every declination: near each edge to
the ulp, at the poles, NaN, and edge arrays of other shapes (unequal bands, edges within
a hair of +-1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from kernels import density_bounds as KB
from llama.science.signal_tables import SINDEC_EDGES


@njit(cache=False)
def _both(x, edges):
    etab = KB._edge_table(edges)
    old = np.empty(x.shape[0], np.int64)
    new = np.empty(x.shape[0], np.int64)
    for i in range(x.shape[0]):
        old[i] = KB._band(x[i], math.sin(x[i]), edges)
        new[i] = KB._band_at(x[i], etab)
    return old, new


def _near_edges(edges, rng):
    """Declinations at and around each edge's asin: +-64 ulps, +-1e-9 (the table's hair)
    +- a few ulps, and a spread of 1e-7 rad; the poles, 0, +-0.0 and random ones."""
    xs = [np.array([-math.pi / 2, math.pi / 2, 0.0, -0.0, math.nan])]
    for e in edges:
        t = math.asin(min(max(e, -1.0), 1.0))
        ulps = np.arange(-64, 65)
        xs.append(t + ulps * np.spacing(abs(t) or 1e-300))
        for h in (1e-9, -1e-9):
            u = t + h
            xs.append(u + np.arange(-8, 9) * np.spacing(abs(u)))
        xs.append(t + rng.uniform(-1e-7, 1e-7, 200))
    xs.append(rng.uniform(-math.pi / 2, math.pi / 2, 20000))
    return np.clip(np.concatenate(xs), -math.pi / 2, math.pi / 2)


@pytest.mark.parametrize(
    "edges",
    [
        SINDEC_EDGES,
        np.sin(np.radians(np.array([-90.0, -30.0, 0.0, 10.0, 11.0, 60.0, 90.0]))),
        np.array([-1.0, -1.0 + 1e-12, -0.5, 0.0, 0.999999999, 1.0]),
        np.array([-1.0, 1.0]),
        np.linspace(-1.0, 1.0, 41),
    ],
)
def test_band_at_is_band(edges):
    rng = np.random.default_rng(7)
    x = _near_edges(edges, rng)
    old, new = _both(x, edges)
    assert np.array_equal(old, new)


def test_edge_table_hair():
    """Below/above each interior edge's asin by 1e-9; -inf/inf where sin must decide."""
    etab = KB._edge_table(np.array([-1.0, -0.9999999, 0.25, 1.0]))
    assert etab[0].tolist() == [-1.0, -0.9999999, 0.25, 1.0]
    assert etab[1, 0] == -np.inf and etab[2, 0] == np.inf and etab[1, 3] == -np.inf
    assert etab[1, 1] == -np.inf and etab[2, 1] == np.inf  # within 1e-6 of -1
    assert etab[1, 2] == math.asin(0.25) - 1e-9 and etab[2, 2] == math.asin(0.25) + 1e-9
