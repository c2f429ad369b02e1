"""Pieces of the kernel tests' brute forces: midpoint sums on a polar (psi, phi) grid
about a point of the sky, the map's density read from its own pixels, O3's Gaussian
PSF evaluated exactly at each grid point; and the bands the aimed looks' tests place
about a brute-force value, with the check of where a look stopped.

Examples
--------
>>> import numpy as np
>>> n = unit_vector(0.0, 0.0)
>>> x = points_about(n, np.array([[0.0]]), np.array([0.0]))
>>> bool(np.allclose(x[0, 0], n)), round(float(gaussian_psf(n, n, 1.0)), 6)
(True, 0.159155)
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np


def unit_vector(ra: float, dec: float) -> np.ndarray:
    """The unit vector at (``ra``, ``dec``) [rad]."""
    return np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])


def gaussian_psf(n: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    """O3's Gaussian PSF at the points ``x`` (..., 3) about the unit vector ``n``."""
    c = np.sqrt(np.sum((x - n) ** 2, axis=-1))
    psi = 2.0 * np.arcsin(np.minimum(0.5 * c, 1.0))
    return np.exp(-0.5 * psi**2 / sigma**2) / (2.0 * math.pi * sigma**2)


def points_about(n: np.ndarray, psi: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """The points (psi.shape[0], phi.size, 3) at angles ``psi`` (a column) from ``n``
    and azimuths ``phi`` about it (phi from the local east; any axis at a pole)."""
    e1 = np.cross([0.0, 0.0, 1.0], n)
    norm = np.linalg.norm(e1)
    e1 = e1 / norm if norm > 1e-12 else np.array([1.0, 0.0, 0.0])
    e2 = np.cross(n, e1)
    return np.stack([np.cos(psi) * n[c] + np.sin(psi) * (np.cos(phi) * e1[c] + np.sin(phi) * e2[c]) for c in range(3)], axis=-1)  # fmt: skip


class MultiOrderDensity:
    """A multi-order map's density at any point: healpy's vec2pix at the map's deepest
    order, then the pixel whose nested range holds it (0 outside the map's pixels)."""

    def __init__(self, uniq: np.ndarray, rho: np.ndarray) -> None:
        order = (np.log2(uniq // 4) // 2).astype(np.int64)
        ipix = uniq - 4 * 4**order
        self.top = int(order.max())
        lo = ipix << (2 * (self.top - order))
        srt = np.argsort(lo)
        self.lo = lo[srt]
        self.hi = (ipix[srt] + 1) << (2 * (self.top - order[srt]))
        self.rho = rho[srt]

    def at(self, x: np.ndarray) -> np.ndarray:
        """The density at the unit vectors ``x`` (..., 3)."""
        p = hp.vec2pix(1 << self.top, x[..., 0], x[..., 1], x[..., 2], nest=True)
        r = np.maximum(np.searchsorted(self.lo, p, side="right") - 1, 0)
        return np.where((self.lo[r] <= p) & (p < self.hi[r]), self.rho[r], 0.0)


#: Bands about a value s, as (lower, upper) factors of s: wholly above it, wholly
#: below, on both sides, over it.
BAND_LAYOUTS = {
    "above": [(1.5, 3.0)],
    "below": [(0.2, 1 / 1.5)],
    "both sides": [(0.3, 0.6), (1.6, 2.5)],
    "over it": [(0.9, 1.1)],
}


def bands_about(values: np.ndarray, bands) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each of ``values``' bands from the factors ``bands``, CSR: (offsets, lo, hi)."""
    off = np.arange(values.size + 1) * len(bands)
    lo = np.concatenate([[f * s for f, _ in bands] for s in values])
    hi = np.concatenate([[g * s for _, g in bands] for s in values])
    return off, lo, hi


def assert_stops_outside_bands(w, half, truth, off, lo, hi, rel: float, what: str) -> None:
    """Every look that stopped (``half`` >= 0): its interval ``w +- half`` holds the
    brute force ``truth`` (within ``rel`` of it) and meets none of its bands."""
    for k in np.flatnonzero(half >= 0.0):
        assert abs(w[k] - truth[k]) <= half[k] + rel * truth[k], (what, k, w[k], half[k], truth[k])  # fmt: skip
        a, b = w[k] - half[k], w[k] + half[k]
        assert all(b < lo[j] or a > hi[j] for j in range(off[k], off[k + 1])), (what, k)
