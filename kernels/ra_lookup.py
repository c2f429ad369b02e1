"""Lookup tables along iso-latitude rings for scramble trials (Numba).

A scramble keeps each neutrino's declination, error and energy and redraws only its
right ascension, so its spatial overlap with a sky map is a function of RA alone.
:mod:`llama.science.fast_trials` tabulates ``log S(phi)`` once per neutrino on an
adaptive, circular RA grid; the functions here read those tables.

Layout: the tables of several neutrinos are concatenated, CSR style: table ``t`` has
nodes ``phi[node_offsets[t]:node_offsets[t + 1]]`` (sorted, in [0, 2 pi)) and values
``logv`` at the same positions. Between nodes the value is the cubic through the four
nearest nodes (two on each side, wrapping around the ring). The logarithm is
interpolated because a PSF-smoothed map is close to a Gaussian in RA wherever one
part of the map dominates, and the logarithm of a Gaussian is a parabola, which the
cubic reproduces exactly, tails included.

All angles are in radians; functions take and return plain arrays.

Examples
--------
>>> import numpy as np
>>> phi = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
>>> logv = -0.5 * ((phi - np.pi) / 0.5) ** 2          # a Gaussian in RA: a parabola
>>> x = np.array([np.pi + 0.123])
>>> got = ring_interp(phi, logv, x)[0]
>>> bool(abs(got - (-0.5 * (0.123 / 0.5) ** 2)) < 1e-12)
True
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["frame_azimuth", "ring_interp", "ring_lookup"]

_TWO_PI = 2.0 * math.pi


@njit(cache=True, nogil=True)
def _interp_one(phi, logv, start, k, x):
    """Cubic through the 4 nodes around ``x`` of the table ``[start, start + k)``."""
    # left node j: the last node at or before x (j = -1: x precedes the first node)
    lo, hi = 0, k
    while lo < hi:
        mid = (lo + hi) >> 1
        if phi[start + mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    j = lo - 1
    xs = np.empty(4)
    ys = np.empty(4)
    for q in range(4):
        m = j - 1 + q
        wrap = m // k  # whole turns: unwraps the ring so the 4 nodes are increasing
        r = m - wrap * k
        xs[q] = phi[start + r] + wrap * _TWO_PI
        ys[q] = logv[start + r]
    acc = 0.0
    for q in range(4):
        w = 1.0
        for s in range(4):
            if s != q:
                w *= (x - xs[s]) / (xs[q] - xs[s])
        acc += w * ys[q]
    return acc


@njit(cache=True, nogil=True)
def ring_interp(phi, logv, x):
    """Interpolated ``logv`` of one table at each ``x`` in [0, 2 pi).

    Parameters
    ----------
    phi : (k,) float64
        Nodes, sorted, in [0, 2 pi); k >= 4.
    logv : (k,) float64
        Values at the nodes.
    x : (q,) float64
        Where to interpolate [rad], in [0, 2 pi).

    Examples
    --------
    >>> import numpy as np
    >>> phi = np.array([0.0, 1.0, 2.0, 4.0, 5.0])
    >>> ring_interp(phi, 2.0 * phi, np.array([1.5, 3.0])).tolist()  # a line stays a line
    [3.0, 6.0]
    """
    out = np.empty(x.shape[0])
    for q in range(x.shape[0]):
        out[q] = _interp_one(phi, logv, 0, phi.shape[0], x[q])
    return out


@njit(cache=True, nogil=True)
def ring_lookup(node_offsets, phi, logv, ra):
    """``exp`` of the interpolated tables at trial RAs laid out list after list.

    Parameters
    ----------
    node_offsets : (n + 1,) int64
        CSR offsets of the n tables (one per neutrino of the scrambled list).
    phi, logv : float64
        Concatenated nodes and log values (see the module docstring).
    ra : (n m,) float64
        Right ascensions [rad] of m lists of n neutrinos: entry ``k`` belongs to
        neutrino ``k % n``.

    Returns
    -------
    (n m,) float64

    Examples
    --------
    >>> import numpy as np
    >>> phi = np.linspace(0.0, 2 * np.pi, 8, endpoint=False)
    >>> off = np.array([0, 8, 16])
    >>> logv = np.concatenate([np.zeros(8), np.full(8, np.log(2.0))])
    >>> ring_lookup(off, np.concatenate([phi, phi]), logv, np.array([0.3, 0.3, 6.0, 6.0])).round(12).tolist()
    [1.0, 2.0, 1.0, 2.0]
    """
    n = node_offsets.shape[0] - 1
    out = np.empty(ra.shape[0])
    for q in range(ra.shape[0]):
        t = q % n
        start = node_offsets[t]
        x = ra[q] % _TWO_PI
        out[q] = math.exp(_interp_one(phi, logv, start, node_offsets[t + 1] - start, x))
    return out


@njit(cache=True, nogil=True)
def frame_azimuth(rotation, turn_deg, dec, ra):
    """Detector azimuth [deg] of trial directions, list after list.

    ``azimuth = atan2(v_0, v_1) + turn`` with ``v = rotation @ (cos d cos a, cos d sin
    a, sin d)``, wrapped to [0, 360): the fitted frame of
    :class:`llama.science.detector_frame.DetectorFrame`, whose Earth rotation at each
    neutrino's time is ``turn_deg``.

    Parameters
    ----------
    rotation : (3, 3) float64
        ICRS -> local (east, north, up) rotation.
    turn_deg : (n,) float64
        Azimuth turn of each neutrino of the list at its time [deg].
    dec : (n,) float64
        Declinations [rad] of the list.
    ra : (n m,) float64
        Right ascensions [rad]; entry ``k`` belongs to neutrino ``k % n``.

    Examples
    --------
    >>> import numpy as np
    >>> frame_azimuth(np.eye(3), np.zeros(1), np.zeros(1), np.array([0.0, np.pi / 2])).round(9).tolist()
    [90.0, 0.0]
    """
    n = dec.shape[0]
    out = np.empty(ra.shape[0])
    for q in range(ra.shape[0]):
        i = q % n
        cd = math.cos(dec[i])
        u0 = cd * math.cos(ra[q])
        u1 = cd * math.sin(ra[q])
        u2 = math.sin(dec[i])
        v0 = rotation[0, 0] * u0 + rotation[0, 1] * u1 + rotation[0, 2] * u2
        v1 = rotation[1, 0] * u0 + rotation[1, 1] * u1 + rotation[1, 2] * u2
        az = math.degrees(math.atan2(v0, v1)) + turn_deg[i]
        out[q] = az % 360.0
    return out
