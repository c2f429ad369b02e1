"""GW sky maps: flat HEALPix and LVK multi-order maps, FITS and HDF5 I/O, distances.

A :class:`SkyMap` is either

* multi-order (``uniq`` set): one row per NUNIQ pixel, ``probdensity`` in sr^-1,
  rows sorted by their range of pixels at the finest order (the order in which
  ligo.skymap writes them), or
* flat (``nside`` set): ``probdensity`` in sr^-1 for every pixel in NESTED order
  (RING input is reordered on read).

Optional distance layers ``distmu``, ``distsigma`` [Mpc] and ``distnorm`` [Mpc^-2]
follow the ansatz of Singer et al. 2016 (ApJL 829, L15): the conditional distance
density in a pixel is ``distnorm * r**2 * N(r; distmu, distsigma)``.

Multi-order maps are never flattened unless :meth:`SkyMap.flatten` is called: a
BAYESTAR map of ~20,000 rows flattened to NSIDE 2048 is 50 M pixels (403 MB a layer).

Examples
--------
>>> import numpy as np
>>> from llama.science.skymap import SkyMap
>>> m = SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1)
>>> round(float(m.probability().sum()), 12)
1.0
>>> m.to_moc().uniq[:3]
array([4, 5, 6])
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from llama.config import MAP_STORE_MIB, map_store_bytes

__all__ = [
    "SkyMap",
    "SkyMapError",
    "read_sky_map",
    "write_sky_map",
    "read_hdf5",
    "write_hdf5",
    "hdf5_copy",
    "read_hdf5_meta",
    "uniq_to_order_ipix",
    "order_ipix_to_uniq",
    "moments_to_parameters",
    "parameters_to_moments",
    "conditional_distance_pdf",
    "marginal_distance_moments",
]

#: Relative deviation of the total probability from 1 that is silently renormalised.
#: Beyond it the map is rejected: a map summing to, say, 0.5 is truncated or corrupt.
NORM_TOLERANCE = 0.05
#: Column names that may hold the probability: density (sr^-1) or per-pixel.
_DENSITY_COLUMNS = ("PROBDENSITY",)
_PER_PIXEL_COLUMNS = ("PROB", "PROBABILITY")
_DISTANCE_COLUMNS = ("DISTMU", "DISTSIGMA", "DISTNORM")
#: Format tag of the internal HDF5 copy, bumped when its layout changes.
HDF5_FORMAT = "llama-skymap"
HDF5_VERSION = 2


#: Pixel area [sr] of each HEALPix order, 4 pi / (12 * 4**order) = (pi / 3) * 2**(-2 order):
#: the same double either way, a scaling by a power of 2 being exact. Orders 0-29 are
#: HEALPix's; 30 and 31 are there for any int64 NUNIQ index (`uniq_to_order_ipix`).
_AREA_OF_ORDER = np.ldexp(np.pi / 3, -2 * np.arange(32))


class SkyMapError(ValueError):
    """A sky map that cannot be read, written or used; the message names the fix."""


# --- HEALPix index helpers (numpy; the Numba versions live in kernels/) -------------


def uniq_to_order_ipix(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split NUNIQ indices into (order, NESTED pixel index).

    ``uniq = 4 * 4**order + ipix``.

    Examples
    --------
    >>> uniq_to_order_ipix(np.array([4, 15, 16, 1024 + 7]))
    (array([0, 0, 1, 4]), array([ 0, 11,  0,  7]))
    """
    uniq = np.asarray(uniq, dtype=np.int64)
    if uniq.size and uniq.min() < 4:
        raise SkyMapError("NUNIQ indices must be >= 4; the UNIQ column is corrupt")
    # uniq lies in [4 * 4**order, 16 * 4**order): its bit length is 2 * order + 3 or
    # + 4, and the exponent field of its double (bits 52-62) is the bit length + 1022.
    # Above 2**53 the double of a uniq just below 16 * 4**order can round up to that
    # power of 2 (never down past one): one integer check mends it, only there. In
    # place, a pass over the rows each: this runs ~4 times per event on ~20,000 rows.
    order = uniq.astype(np.float64).view(np.int64)
    order >>= 52
    order -= 1025
    order >>= 1
    if uniq.size and uniq.max() >= 1 << 53:
        order -= uniq < (np.int64(4) << (2 * order))
    ipix = uniq - (np.int64(4) << (order << 1))
    return order, ipix


def order_ipix_to_uniq(order, ipix) -> np.ndarray:
    """Combine (order, NESTED pixel index) into NUNIQ indices.

    Examples
    --------
    >>> order_ipix_to_uniq(np.array([0, 4]), np.array([11, 7]))
    array([  15, 1031])
    """
    order = np.asarray(order, dtype=np.int64)
    return (np.int64(4) << (2 * order)) + np.asarray(ipix, dtype=np.int64)


def _nside_to_order(nside: int) -> int:
    order = int(nside).bit_length() - 1
    if nside < 1 or (1 << order) != nside:
        raise SkyMapError(f"NSIDE must be a power of 2, got {nside}")
    return order


def _npix_to_nside(npix: int, where: str) -> int:
    nside = int(round(math.sqrt(npix / 12)))
    if nside < 1 or 12 * nside * nside != npix or (nside & (nside - 1)):
        raise SkyMapError(
            f"{where}: {npix} pixels is not a full HEALPix map (12 * NSIDE**2 with NSIDE a "
            "power of 2); write the map with all pixels or as a multi-order (UNIQ) map"
        )
    return nside


# --- distance ansatz (Singer et al. 2016) --------------------------------------------


def _scaled_moments(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integrals of r^k N(r; z, 1) over r > 0 for k = 2, 3, 4, and their scale.

    Returns ``(i2, i3, i4, scale)`` with the true integrals being ``scale * i_k``.  For
    z < 0 the integrals are divided by the normal pdf phi(z) and use the scaled
    complementary error function, so that they stay finite where Phi(z) underflows;
    for z >= 0 they are computed directly (erfcx would overflow there).
    """
    from scipy import special  # here, not at module level: ~4 MB the kernel path never uses

    z = np.asarray(z, dtype=float)
    neg = z < 0
    zn = np.where(neg, z, 0.0)
    phi = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    # For z < 0: a = Phi(z) / phi(z), b = 1; for z >= 0: a = Phi(z), b = phi(z).
    a = np.where(neg, np.sqrt(np.pi / 2) * special.erfcx(-zn / np.sqrt(2)), special.ndtr(z))
    b = np.where(neg, 1.0, phi)
    scale = np.where(neg, phi, 1.0)
    z2 = z * z
    i2 = (z2 + 1) * a + z * b
    i3 = (z2 * z + 3 * z) * a + (z2 + 2) * b
    i4 = (z2 * z2 + 6 * z2 + 3) * a + (z2 * z + 5 * z) * b
    return i2, i3, i4, scale


def parameters_to_moments(distmu, distsigma):
    """Ansatz parameters -> (conditional mean, conditional std, normalisation).

    Parameters
    ----------
    distmu, distsigma : array_like
        Location and scale parameters of the ansatz [Mpc].

    Returns
    -------
    distmean, diststd : ndarray
        Mean and standard deviation of ``p(r) = distnorm r^2 N(r; distmu, distsigma)``
        over r > 0 [Mpc].
    distnorm : ndarray
        Normalisation [Mpc^-2].

    Examples
    --------
    For mu = 0, sigma = 1 the ansatz is a chi distribution with 3 degrees of freedom:

    >>> mean, std, norm = parameters_to_moments(0.0, 1.0)
    >>> round(float(mean), 6), round(float(norm), 6)
    (1.595769, 2.0)
    """
    mu = np.asarray(distmu, dtype=float)
    sigma = np.asarray(distsigma, dtype=float)
    with np.errstate(all="ignore"):
        z = mu / sigma
        i2, i3, i4, scale = _scaled_moments(z)
        mean = sigma * i3 / i2
        std = sigma * np.sqrt(np.maximum(i4 / i2 - (i3 / i2) ** 2, 0.0))
        norm = 1.0 / (sigma * sigma * i2 * scale)
    return mean, std, norm


# mean/std of the ansatz depends only on z = mu/sigma; below sqrt(3) (the limit
# z -> -inf) there is no solution.  ligo.skymap uses the same bound.
_MIN_MEAN_STD = math.sqrt(3) + 1e-2


def _mean_over_std(z):
    i2, i3, i4, _ = _scaled_moments(z)
    m = i3 / i2
    return m / np.sqrt(np.maximum(i4 / i2 - m * m, 1e-300))


def moments_to_parameters(distmean, diststd):
    """Conditional (mean, std) of distance -> ansatz (distmu, distsigma, distnorm).

    The inverse of :func:`parameters_to_moments`, as in ``ligo.skymap.distance``:
    where ``distmean / diststd`` is below sqrt(3) (no ansatz has that shape) or the
    inputs are not finite and positive, returns ``(inf, 1, 0)``.

    Examples
    --------
    >>> mu, sigma, norm = moments_to_parameters(400.0, 100.0)
    >>> mean, std, _ = parameters_to_moments(mu, sigma)
    >>> round(float(mean), 6), round(float(std), 6)
    (400.0, 100.0)
    """
    mean = np.asarray(distmean, dtype=float)
    std = np.asarray(diststd, dtype=float)
    mean, std = np.broadcast_arrays(mean, std)
    with np.errstate(all="ignore"):
        target = mean / std
        ok = np.isfinite(mean) & np.isfinite(std) & (std > 0) & (mean > 0)
        ok &= target >= _MIN_MEAN_STD
    t = np.where(ok, target, 3.0)
    # Vectorised bisection on z: mean/std increases monotonically with z.  At
    # z = -40 it is within 1e-3 of sqrt(3), and for large z it approaches z + O(1/z).
    lo = np.full(t.shape, -40.0)
    hi = t + 10.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = _mean_over_std(mid) < t
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    z = 0.5 * (lo + hi)
    i2, i3, _, _ = _scaled_moments(z)
    sigma = mean / (i3 / i2)
    mu = z * sigma
    _, _, norm = parameters_to_moments(mu, sigma)
    mu = np.where(ok, mu, np.inf)
    sigma = np.where(ok, sigma, 1.0)
    norm = np.where(ok, norm, 0.0)
    if mu.ndim == 0:
        return float(mu), float(sigma), float(norm)
    return mu, sigma, norm


def conditional_distance_pdf(r, distmu, distsigma, distnorm):
    """Conditional distance density in a pixel, ``distnorm r^2 N(r; distmu, distsigma)``.

    Parameters
    ----------
    r : array_like
        Distance [Mpc].
    distmu, distsigma, distnorm : array_like
        The pixel's distance layers [Mpc, Mpc, Mpc^-2].

    Returns
    -------
    ndarray
        p(r | pixel) [Mpc^-1]; 0 for pixels without distance support (distnorm 0).

    Examples
    --------
    >>> from scipy.integrate import quad
    >>> mu, sigma, norm = moments_to_parameters(300.0, 80.0)
    >>> round(quad(conditional_distance_pdf, 0, 2000, args=(mu, sigma, norm))[0], 6)
    1.0
    """
    r = np.asarray(r, dtype=float)
    mu = np.asarray(distmu, dtype=float)
    sigma = np.asarray(distsigma, dtype=float)
    with np.errstate(all="ignore"):
        gauss = np.exp(-0.5 * ((r - mu) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
        out = np.asarray(distnorm, dtype=float) * r * r * gauss
    return np.where(np.isfinite(out), out, 0.0)


def marginal_distance_moments(prob, distmu, distsigma) -> tuple[float, float]:
    """All-sky (distmean, diststd) [Mpc] from per-pixel probabilities and layers.

    Pixels with non-finite layers (no distance support) are skipped.

    Examples
    --------
    >>> mu, sigma, _ = moments_to_parameters(np.array([100.0, 300.0]), np.array([10.0, 30.0]))
    >>> mean, std = marginal_distance_moments(np.array([0.5, 0.5]), mu, sigma)
    >>> round(mean, 6)
    200.0
    """
    prob = np.asarray(prob, dtype=float)
    mean, std, _ = parameters_to_moments(distmu, distsigma)
    good = np.isfinite(prob) & np.isfinite(mean) & np.isfinite(std)
    p = prob[good]
    total = p.sum()
    if total <= 0:
        raise SkyMapError("no pixel has finite distance layers; cannot compute distances")
    rbar = float((p * mean[good]).sum() / total)
    r2bar = float((p * (std[good] ** 2 + mean[good] ** 2)).sum() / total)
    return rbar, math.sqrt(max(r2bar - rbar * rbar, 0.0))


# --- the sky map ----------------------------------------------------------------------


@dataclass
class SkyMap:
    """A GW sky map, multi-order (``uniq``) or flat NESTED (``nside``).

    Parameters
    ----------
    probdensity : ndarray
        Probability density [sr^-1] per pixel (per row for multi-order maps).
    uniq : ndarray of int64, optional
        NUNIQ pixel indices; set for multi-order maps.  Rows are sorted on creation.
    nside : int, optional
        HEALPix NSIDE; set for flat maps, whose pixels are in NESTED order.
    distmu, distsigma, distnorm : ndarray, optional
        Distance layers [Mpc, Mpc, Mpc^-2], aligned with the pixels.
    meta : dict
        Header information: ``distmean``, ``diststd`` [Mpc], ``gps_time`` [s],
        ``objid``, ``instruments`` (list), ``origin``, ``ordering`` (of the file read).

    Examples
    --------
    >>> m = SkyMap(probdensity=np.full(48, 1 / (4 * np.pi)), nside=2)
    >>> m.is_moc, m.max_order, round(m.area90(), 1)
    (False, 1, 37815.2)
    """

    probdensity: np.ndarray
    uniq: np.ndarray | None = None
    nside: int | None = None
    distmu: np.ndarray | None = None
    distsigma: np.ndarray | None = None
    distnorm: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.uniq is None) == (self.nside is None):
            raise SkyMapError("a SkyMap needs exactly one of uniq (multi-order) or nside (flat)")
        self.probdensity = np.ascontiguousarray(self.probdensity, dtype=np.float64)
        n = len(self.probdensity)
        if self.uniq is not None:
            self.uniq = np.ascontiguousarray(self.uniq, dtype=np.int64)
            if len(self.uniq) != n:
                raise SkyMapError(f"uniq has {len(self.uniq)} rows, probdensity {n}")
        else:
            self.nside = int(self.nside)
            _nside_to_order(self.nside)
            if n != 12 * self.nside**2:
                raise SkyMapError(
                    f"flat map with NSIDE {self.nside} needs {12 * self.nside**2} pixels, got {n}"
                )
        for name in _DISTANCE_COLUMNS:
            arr = getattr(self, name.lower())
            if arr is not None:
                arr = np.ascontiguousarray(arr, dtype=np.float64)
                if len(arr) != n:
                    raise SkyMapError(f"{name} has {len(arr)} rows, probdensity {n}")
                setattr(self, name.lower(), arr)
        if self.uniq is not None:
            self._sort_by_nested_range()

    def _sort_by_nested_range(self) -> None:
        order, ipix = uniq_to_order_ipix(self.uniq)
        start = ipix << (2 * (order.max() - order))
        if len(start) > 1 and np.any(np.diff(start) < 0):
            # LVK files list their rows by NUNIQ (order by order): every read sorts
            idx = np.argsort(start, kind="stable")
            # take: ~30% less than fancy indexing's general machinery, the same rows
            self.uniq = self.uniq.take(idx)
            self.probdensity = self.probdensity.take(idx)
            for name in ("distmu", "distsigma", "distnorm"):
                arr = getattr(self, name)
                if arr is not None:
                    setattr(self, name, arr.take(idx))
            # not kept: gathering the split too cost more than splitting again
            return
        self._split = (self.uniq, order, ipix)

    def _order_ipix_of_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """`uniq_to_order_ipix` of ``uniq``: the split of the check made on the map's
        rows when they came sorted (an event's HDF5 copy; ~70 us a BAYESTAR map), else
        split here (rows that were sorted, or ``uniq`` set to another array since).
        Copies: the caller may write to them."""
        kept = getattr(self, "_split", None)
        if kept is None or kept[0] is not self.uniq:
            return uniq_to_order_ipix(self.uniq)
        return kept[1].copy(), kept[2].copy()

    # -- shape ------------------------------------------------------------------------

    @property
    def is_moc(self) -> bool:
        """True for a multi-order (NUNIQ) map."""
        return self.uniq is not None

    @property
    def has_distance(self) -> bool:
        """True when all three distance layers are present."""
        return all(getattr(self, n) is not None for n in ("distmu", "distsigma", "distnorm"))

    @property
    def orders(self) -> np.ndarray:
        """HEALPix order of each row (a constant array for flat maps)."""
        if self.is_moc:
            return self._order_ipix_of_rows()[0]
        return np.full(len(self.probdensity), _nside_to_order(self.nside), dtype=np.int64)

    def order_ipix(self) -> tuple[np.ndarray, np.ndarray]:
        """(HEALPix order, nested pixel index) of each row as contiguous int64 arrays,
        for multi-order and flat maps alike (what the kernels take).

        Examples
        --------
        >>> m = SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1)
        >>> [a.tolist()[:3] for a in m.order_ipix()]
        [[0, 0, 0], [0, 1, 2]]
        """
        if self.is_moc:
            order, ipix = self._order_ipix_of_rows()
            return np.ascontiguousarray(order, np.int64), np.ascontiguousarray(ipix, np.int64)
        n = len(self.probdensity)
        return np.full(n, _nside_to_order(self.nside), np.int64), np.arange(n, dtype=np.int64)

    @property
    def max_order(self) -> int:
        """The finest HEALPix order in the map."""
        if self.is_moc:
            return int(self.orders.max())
        return _nside_to_order(self.nside)

    def __len__(self) -> int:
        return len(self.probdensity)

    def pixel_area(self) -> np.ndarray:
        """Area of each pixel [sr].

        Examples
        --------
        >>> float(SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1).pixel_area()[0])
        1.0471975511965976
        """
        # looked up per row: ldexp runs element by element (~0.1 ms on a BAYESTAR map,
        # the table lookup ~0.01 ms), for the same doubles
        return _AREA_OF_ORDER.take(self.orders)

    def probability(self) -> np.ndarray:
        """Probability in each pixel (density x area), summing to 1."""
        return self.probdensity * self.pixel_area()

    # -- conversions --------------------------------------------------------------------

    def to_moc(self) -> SkyMap:
        """This map as a multi-order map (flat maps get one row per pixel).

        Fine for NSIDE <= 1024; larger flat maps should be made multi-order upstream.
        """
        if self.is_moc:
            return self
        order = _nside_to_order(self.nside)
        uniq = order_ipix_to_uniq(order, np.arange(len(self.probdensity), dtype=np.int64))
        return SkyMap(
            probdensity=self.probdensity.copy(),
            uniq=uniq,
            distmu=None if self.distmu is None else self.distmu.copy(),
            distsigma=None if self.distsigma is None else self.distsigma.copy(),
            distnorm=None if self.distnorm is None else self.distnorm.copy(),
            meta=dict(self.meta),
        )

    def flatten(self, nside: int) -> SkyMap:
        """Resample onto a flat NESTED grid of the given NSIDE (only when asked).

        Coarser rows are copied into their children; finer rows are merged into their
        parent, conserving probability, with distance layers combined through their
        moments.

        Examples
        --------
        >>> m = SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1)
        >>> f = m.flatten(4)
        >>> f.nside, round(float(f.probability().sum()), 12)
        (4, 1.0)
        """
        target = _nside_to_order(nside)
        moc = self.to_moc()
        order, ipix = uniq_to_order_ipix(moc.uniq)
        npix = 12 * 4**target
        prob = moc.probability()
        area = 4 * np.pi / npix
        coarse = order <= target
        fine = ~coarse
        # Children of coarse rows: a run of 4**(target - order) pixels starting here.
        nchild = np.int64(1) << (2 * (target - order[coarse]))
        start = ipix[coarse] << (2 * (target - order[coarse]))
        dest = np.repeat(start, nchild) + _ranges(nchild)
        parent = ipix[fine] >> (2 * (order[fine] - target))

        out_prob = np.zeros(npix)
        out_prob[dest] = np.repeat(prob[coarse] / nchild, nchild)
        np.add.at(out_prob, parent, prob[fine])
        result = SkyMap(probdensity=out_prob / area, nside=nside, meta=dict(self.meta))
        if moc.has_distance:
            mean, std, _ = parameters_to_moments(moc.distmu, moc.distsigma)
            ok = np.isfinite(mean) & np.isfinite(std)
            w = np.where(ok, prob, 0.0)
            m1 = np.zeros(npix)
            m2 = np.zeros(npix)
            wsum = np.zeros(npix)
            for acc, val in ((m1, mean), (m2, std**2 + mean**2), (wsum, np.ones_like(mean))):
                v = np.where(ok, val, 0.0) * w
                acc[dest] = np.repeat(v[coarse] / nchild, nchild)
                np.add.at(acc, parent, v[fine])
            with np.errstate(all="ignore"):
                rbar = m1 / wsum
                rstd = np.sqrt(np.maximum(m2 / wsum - rbar**2, 0.0))
            mu, sigma, norm = moments_to_parameters(rbar, rstd)
            result.distmu, result.distsigma, result.distnorm = (
                np.asarray(mu, dtype=float),
                np.asarray(sigma, dtype=float),
                np.asarray(norm, dtype=float),
            )
        return result

    # -- summaries ------------------------------------------------------------------------

    def area90(self, level: float = 0.9) -> float:
        """Area of the smallest region holding ``level`` of the probability [deg^2].

        Examples
        --------
        >>> m = SkyMap(probdensity=np.r_[np.full(6, 1 / (2 * np.pi)), np.zeros(6)], nside=1)
        >>> round(m.area90(0.5), 4)
        10313.2403
        """
        order = np.argsort(-self.probdensity, kind="stable")
        prob = self.probability()[order]
        cum = np.cumsum(prob)
        k = int(np.searchsorted(cum, level * cum[-1]))
        area_sr = self.pixel_area()[order][: k + 1].sum()
        return float(area_sr * (180 / np.pi) ** 2)

    def distance_moments(self) -> tuple[float, float]:
        """(distmean, diststd) [Mpc]: from the header, else from the distance layers.

        Raises
        ------
        SkyMapError
            When the header has no DISTMEAN/DISTSTD and the map has no distance layers.
        """
        mean = self.meta.get("distmean")
        std = self.meta.get("diststd")
        if mean is not None and std is not None and np.isfinite(mean) and np.isfinite(std):
            return float(mean), float(std)
        if not self.has_distance:
            raise SkyMapError(
                "the sky map has neither DISTMEAN/DISTSTD header keys nor DISTMU/DISTSIGMA/"
                "DISTNORM layers; supply a map with distance information"
            )
        return marginal_distance_moments(self.probability(), self.distmu, self.distsigma)


def _ranges(counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(c) for each c in counts."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


# --- FITS -----------------------------------------------------------------------------


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else "sky map (in-memory file)"


def _fits_bytes(source, where: str) -> bytes:
    """The whole FITS file, gunzipped when its content is gzip."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                data = f.read()
        else:
            data = source.read()
        if data[:2] == b"\x1f\x8b":
            import gzip

            data = gzip.decompress(data)
        return data
    except FileNotFoundError:
        raise SkyMapError(f"{where}: no such file; check the path") from None
    except Exception as exc:  # a directory, an unreadable or corrupt gzip file, ...
        raise _not_fits(where, exc) from None


def _not_fits(where: str, exc: Exception) -> SkyMapError:
    return SkyMapError(
        f"{where}: not a readable FITS file ({exc.__class__.__name__}: {exc}); "
        "re-download the sky map or pass the FITS (optionally .gz) file itself"
    )


def _open_fits(data: bytes, where: str):
    from astropy.io import fits

    try:
        hdul = fits.open(io.BytesIO(data), memmap=False)
        hdul.verify("silentfix")
        return hdul
    except Exception as exc:  # astropy raises OSError, TypeError, ... on bad files
        raise _not_fits(where, exc) from None


def _find_table(hdul, where: str):
    from astropy.io import fits

    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU) and hdu.columns is not None and len(hdu.columns):
            return hdu
    raise SkyMapError(
        f"{where}: no binary table HDU; a HEALPix sky map stores its pixels in a BINTABLE "
        "extension (LVK or healpy format)"
    )


def _header_meta(header) -> dict[str, Any]:
    from llama.science.times import iso_to_gps, mjd_to_gps

    meta: dict[str, Any] = {}
    for key, name in (("DISTMEAN", "distmean"), ("DISTSTD", "diststd")):
        if key in header:
            meta[name] = float(header[key])
    # healpy writes OBJECT = FULLSKY/PARTIAL (map coverage), not an event id.
    if "OBJECT" in header and str(header["OBJECT"]) not in ("FULLSKY", "PARTIAL"):
        meta["objid"] = str(header["OBJECT"])
    if "DATE-OBS" in header:
        try:
            meta["gps_time"] = iso_to_gps(str(header["DATE-OBS"]))
        except ValueError:
            pass
    if "gps_time" not in meta and "MJD-OBS" in header:
        meta["gps_time"] = mjd_to_gps(float(header["MJD-OBS"]))
    if "INSTRUME" in header:
        meta["instruments"] = [s for s in str(header["INSTRUME"]).split(",") if s]
    for key, name in (("ORIGIN", "origin"), ("CREATOR", "creator"), ("REFERENC", "url")):
        if key in header:
            meta[name] = str(header[key])
    return meta


def read_sky_map(source: str | os.PathLike | BinaryIO) -> SkyMap:
    """Read a HEALPix sky map from FITS: flat RING/NESTED or LVK multi-order.

    Gzipped files are detected by content.  Multi-order maps stay multi-order; flat
    RING maps are reordered to NESTED.  Per-pixel ``PROB`` columns become densities.
    Small deviations of the total probability from 1 are renormalised.  Plain numeric
    tables (LVK and healpy maps) are read straight from the bytes
    (`llama.science.fits_bintable`, ~4x faster), anything else through astropy.io.fits;
    the map is the same either way.

    Parameters
    ----------
    source : path or binary file object

    Returns
    -------
    SkyMap

    Raises
    ------
    SkyMapError
        Not a FITS file, no probability column, NaN or negative probabilities, total
        probability far from 1, or an unknown ORDERING.

    Examples
    --------
    >>> import tempfile, os
    >>> m = SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1, meta={"distmean": 100.0})
    >>> path = os.path.join(tempfile.mkdtemp(), "m.fits.gz")
    >>> write_sky_map(path, m)
    >>> r = read_sky_map(path)
    >>> r.is_moc, len(r), r.meta["distmean"]
    (True, 12, 100.0)
    """
    where = _describe(source)
    with warnings.catch_warnings():
        # astropy only warns on a truncated file and then hands back garbage or fails
        # later with an obscure message: make it an error that names the file.
        warnings.filterwarnings("error", message=".*truncated.*")
        skymap = _read_fits_table(source, where)
    _check_probability(skymap, where)
    return skymap


def _read_fits_table(source, where: str) -> SkyMap:
    from llama.science.fits_bintable import read_bintable

    data = _fits_bytes(source, where)
    # the plain tables of LVK and healpy maps straight from the bytes (~20x faster);
    # anything else, and every broken file, through astropy
    table = read_bintable(data)
    if table is not None:
        header, names, fields = table.header, table.names, table.fields
    else:
        header, names, fields = _astropy_table(data, where)
    names = [name.upper() for name in names]
    # reshape, not ravel: a column of the fast path is a strided view of the rows, which
    # ravel would copy once before the astype below copies it again
    cols = {name: np.asarray(field).reshape(-1) for name, field in zip(names, fields, strict=True)}
    ordering = str(header.get("ORDERING", "")).strip().upper()
    if not ordering and "UNIQ" in cols:
        ordering = "NUNIQ"
    if ordering not in ("RING", "NESTED", "NUNIQ"):
        raise SkyMapError(
            f"{where}: unknown pixel ORDERING {header.get('ORDERING')!r}; expected RING, "
            "NESTED or NUNIQ (set the ORDERING header key)"
        )
    if ordering == "NUNIQ" and "UNIQ" not in cols:
        raise SkyMapError(f"{where}: ORDERING is NUNIQ but there is no UNIQ column")
    meta = _header_meta(header)
    meta["ordering"] = ordering

    density_col = next((c for c in _DENSITY_COLUMNS if c in cols), None)
    prob_col = next((c for c in _PER_PIXEL_COLUMNS if c in cols), None)
    if density_col is None and prob_col is None:
        raise SkyMapError(
            f"{where}: no PROBDENSITY or PROB column (found {', '.join(names)}); a GW sky "
            "map must have PROBDENSITY (multi-order, sr^-1) or PROB (flat, per pixel)"
        )
    layers = {n.lower(): cols[n].astype(float) for n in _DISTANCE_COLUMNS if n in cols}
    if 0 < len(layers) < 3:
        # A partial set of layers cannot be used; drop rather than guess.
        layers = {}

    if ordering == "NUNIQ":
        uniq = cols["UNIQ"].astype(np.int64)
        skymap = SkyMap(
            probdensity=_density(cols, density_col, prob_col, uniq=uniq),
            uniq=uniq,
            meta=meta,
            **layers,
        )
    else:
        nside = _npix_to_nside(len(cols[density_col or prob_col]), where)
        values = {"p": cols[density_col or prob_col].astype(float), **layers}
        if ordering == "RING":
            import healpy as hp

            ring_of_nest = hp.nest2ring(nside, np.arange(12 * nside * nside))
            values = {k: v[ring_of_nest] for k, v in values.items()}
        area = 4 * np.pi / (12 * nside * nside)
        dens = values.pop("p") if density_col else values.pop("p") / area
        skymap = SkyMap(probdensity=dens, nside=nside, meta=meta, **values)
    return skymap


def _astropy_table(data: bytes, where: str):
    """(header, column names, columns) of the first binary table, through astropy."""
    with _open_fits(data, where) as hdul:
        hdu = _find_table(hdul, where)
        try:
            table = hdu.data
            fields = [np.array(table.field(i)) for i in range(len(hdu.columns))]
        except Exception as exc:
            raise SkyMapError(
                f"{where}: the pixel table cannot be decoded ({exc}); the file is corrupt"
            ) from None
        return hdu.header, list(hdu.columns.names), fields


def _density(cols, density_col, prob_col, uniq) -> np.ndarray:
    if density_col:
        return cols[density_col].astype(float)
    order, _ = uniq_to_order_ipix(uniq)
    return cols[prob_col].astype(float) / (4 * np.pi / (12 * 4.0**order))


def _check_probability(skymap: SkyMap, where: str) -> None:
    p = skymap.probdensity
    # the smallest and largest value say it all: NaN makes both NaN, an infinity shows at
    # one end; the largest |p| comes from the two ends (no array of |p|), the test for
    # negatives from the smallest; the error arrays are made only when there is an error
    low, high = float(p.min()), float(p.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = ~np.isfinite(p)
        raise SkyMapError(
            f"{where}: {int(bad.sum())} pixel(s) have NaN or infinite probability (first at "
            f"row {int(np.argmax(bad))}); the map is corrupt: regenerate or re-download it"
        )
    scale = max(-low, high, 1e-300)
    if low < -1e-12 * scale:
        neg = p < -1e-12 * scale
        raise SkyMapError(
            f"{where}: {int(neg.sum())} pixel(s) have negative probability (first at row "
            f"{int(np.argmax(neg))}: {p[np.argmax(neg)]:g}); the map is corrupt"
        )
    if not low > 0.0:  # round-off negatives (and -0.0) to +0.0; else p stays as it is
        p = np.maximum(p, 0.0)
    total = float((p * skymap.pixel_area()).sum())
    if not abs(total - 1.0) <= NORM_TOLERANCE:
        raise SkyMapError(
            f"{where}: total probability is {total:.6g}, not 1; the map is truncated or "
            "its column holds something else (PROB must be per pixel, PROBDENSITY per sr)"
        )
    skymap.probdensity = p / total


def _fits_hdu(skymap: SkyMap):
    """The LVK multi-order BINTABLE HDU, with the header ligo.skymap writes."""
    from astropy import units as u
    from astropy.io import fits
    from astropy.table import Table

    from llama.science.times import gps_to_iso, gps_to_mjd

    moc = skymap.to_moc()
    table = Table()
    table["UNIQ"] = moc.uniq
    table["PROBDENSITY"] = moc.probdensity
    table["PROBDENSITY"].unit = u.sr**-1
    if moc.has_distance:
        for name, unit in zip(_DISTANCE_COLUMNS, (u.Mpc, u.Mpc, u.Mpc**-2), strict=True):
            table[name] = getattr(moc, name.lower())
            table[name].unit = unit
    hdu = fits.table_to_hdu(table)
    cards = [
        ("PIXTYPE", "HEALPIX", "HEALPIX pixelisation"),
        ("ORDERING", "NUNIQ", "Pixel ordering scheme: RING, NESTED, or NUNIQ"),
        ("COORDSYS", "C", "Ecliptic, Galactic or Celestial (equatorial)"),
        ("MOCORDER", moc.max_order, "MOC resolution (best order)"),
        ("INDXSCHM", "EXPLICIT", "Indexing: IMPLICIT or EXPLICIT"),
    ]
    meta = skymap.meta
    if meta.get("objid") is not None:
        cards.append(("OBJECT", str(meta["objid"]), "Unique identifier for this event"))
    if meta.get("url"):
        cards.append(("REFERENC", str(meta["url"]), "URL of this event"))
    if meta.get("instruments"):
        inst = meta["instruments"]
        inst = inst if isinstance(inst, str) else ",".join(sorted(inst))
        cards.append(("INSTRUME", inst, "Instruments that triggered this event"))
    if meta.get("gps_time") is not None:
        cards.append(("DATE-OBS", gps_to_iso(meta["gps_time"]), "UTC date of the observation"))
        cards.append(
            ("MJD-OBS", gps_to_mjd(meta["gps_time"]), "modified Julian date of the observation")
        )
    for key, fits_key, comment in (
        ("creator", "CREATOR", "Program that created this file"),
        ("origin", "ORIGIN", "Organization responsible for this FITS file"),
        ("distmean", "DISTMEAN", "Posterior mean distance (Mpc)"),
        ("diststd", "DISTSTD", "Posterior standard deviation of distance (Mpc)"),
    ):
        if meta.get(key) is not None:
            cards.append((fits_key, meta[key], comment))
    hdu.header.extend(cards)
    return hdu


def write_sky_map(path: str | os.PathLike, skymap: SkyMap) -> None:
    """Write the LVK multi-order FITS format (as ``ligo.skymap.io.fits.write_sky_map``).

    Columns UNIQ, PROBDENSITY [sr^-1] and, when present, DISTMU, DISTSIGMA [Mpc],
    DISTNORM [Mpc^-2]; header keys PIXTYPE, ORDERING=NUNIQ, COORDSYS, MOCORDER,
    INDXSCHM and the metadata (OBJECT, INSTRUME, DATE-OBS, MJD-OBS, DISTMEAN, DISTSTD,
    CREATOR, ORIGIN).  Flat maps are written one row per pixel.  A path ending in
    ``.gz`` is gzip-compressed.  The write is atomic (temporary name, then rename).
    """
    from astropy.io import fits

    path = os.fspath(path)
    hdul = fits.HDUList([fits.PrimaryHDU(), _fits_hdu(skymap)])
    buf = io.BytesIO()
    hdul.writeto(buf)
    data = buf.getvalue()
    if path.endswith(".gz"):
        import gzip

        data = gzip.compress(data, compresslevel=6, mtime=0)
    from llama.storage import atomic_write_bytes

    atomic_write_bytes(path, data)


# --- HDF5 (the internal fast-loading copy) -------------------------------------------

#: Rows of the ``layers`` dataset, in order: the density, then the distance layers
#: when the map has them (a map has all three or none).
_HDF5_LAYERS = ("probdensity", "distmu", "distsigma", "distnorm")


@dataclass(frozen=True)
class _Parsed:
    """What :func:`read_hdf5` takes from a version-2 copy: the ``layers`` rows, ``uniq``
    (multi-order) or ``nside`` (flat), and the meta attribute's JSON text."""

    layers: np.ndarray
    uniq: np.ndarray | None
    nside: int | None
    meta: str

    def skymap(self, copy: bool = True) -> SkyMap:
        # fresh arrays and meta each time, as a read of the file gives: a caller may
        # change its map in place without touching the kept one (``copy=False``: the
        # kept arrays themselves, for the store's own map, which no caller is given)
        layers = self.layers.copy() if copy else self.layers
        kwargs: dict[str, Any] = dict(zip(_HDF5_LAYERS, layers, strict=False))
        if self.uniq is not None:
            kwargs["uniq"] = self.uniq.copy() if copy else self.uniq
        else:
            kwargs["nside"] = self.nside
        kwargs["meta"] = json.loads(self.meta)
        return SkyMap(**kwargs)


class _Entry:
    """One map in the store: its parsed copy, what was derived from it, their bytes."""

    __slots__ = ("sha256", "parsed", "products", "nbytes", "data", "_own")

    def __init__(self, sha256: str, parsed: _Parsed) -> None:
        self.sha256 = sha256
        self.parsed = parsed
        self.products: dict[Any, Any] = {}
        self.nbytes = _held_bytes(parsed)
        self.data: bytes | None = None  # the HDF5 copy's bytes, where a FITS file names it
        self._own: SkyMap | None = None

    def own_map(self) -> SkyMap:
        """The entry's own map, which the products are built from: its arrays are the
        kept ones, which no caller is given, so a product holding one holds nothing a
        caller may change (and no bytes more)."""
        if self._own is None:
            self._own = self.parsed.skymap(copy=False)
        return self._own

    def same_pixels(self, skymap: SkyMap) -> bool:
        """Are ``skymap``'s pixels (uniq or nside) and densities bit for bit this
        entry's? A caller may change a map read from the store in place, or set
        another array on it: products are served only while what they were built from
        is still the map's (~40 us a BAYESTAR map)."""
        parsed = self.parsed
        if skymap.nside != parsed.nside or (skymap.uniq is None) != (parsed.uniq is None):
            return False
        arrays = [(skymap.uniq, parsed.uniq)] if parsed.uniq is not None else []
        arrays.append((skymap.probdensity, parsed.layers[0]))
        for mine, kept in arrays:
            if not (
                isinstance(mine, np.ndarray)
                and mine.dtype == kept.dtype
                and mine.shape == kept.shape
                # bits, not values: -0.0 and 0.0 (or two NaNs) are not the same pixels
                and np.array_equal(mine.view(np.uint64), kept.view(np.uint64))
            ):
                return False
        return True


def _held_bytes(obj, depth: int = 0) -> int:
    """The bytes of the NumPy arrays ``obj`` holds: itself, its tuple or list items,
    its attributes (``__dict__``, ``__slots__``), two levels down."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if depth > 2:
        return 0
    if isinstance(obj, (tuple, list)):
        return sum(_held_bytes(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        return sum(_held_bytes(x, depth + 1) for x in obj.values())
    held = 0
    if hasattr(obj, "__dict__"):
        held += sum(_held_bytes(x, depth + 1) for x in vars(obj).values())
    for name in getattr(type(obj), "__slots__", ()):
        held += _held_bytes(getattr(obj, name, None), depth + 1)
    return held


class _MapStore:
    """The sky maps of this process and what is derived from them, by the sha256 of
    their HDF5 copy; least recently used out first, bounded by bytes.

    An event writes its copy (LvcSkymapHdf5) and reads it back twice (its distances,
    then its significance): h5py spends ~1-3 ms on each opening, and reading the
    file's bytes to compare them with a kept copy's ~0.2-0.4 ms more. A copy is kept
    under the sha256 of the bytes written (`write_hdf5`), or under the one the caller
    gives for the file it reads (`read_hdf5`'s ``sha256``: `llama.event.Event.sha256`,
    which trusts a file whose size and mtime_ns are unchanged since its checksum was
    taken, as every up-to-date check does). The checksum is that trust's one place:
    this holds only checksum -> map, so a file changed in place is read again as soon
    as the event sees a new size or time stamp.

    A campaign sweeps many neutrino lists over a set of maps (``llama batch --get
    lvc_skymap.fits=maps/{map}.fits``), so a worker meets each map again and again, and
    the copy written for it has the same bytes (and sha256) each time. Beside the map,
    an entry keeps what is built from its pixels alone (`kept_product`: the exact
    kernel's tree, the background trials' min/max pyramid and density table, the trial
    screen), ~8-13 ms of CPU per BAYESTAR map and event otherwise.

    Memory, one BAYESTAR map (bns-0, -7, -9 and bbh-0, -3, -6 alike: 19,200 rows
    each): the parsed map 0.73 MiB, the exact kernel's tree 3.81, the background
    trials' pyramid and density table 3.30, the trial screen (scramble trials) 3.41;
    7.8 MiB for a background-trials event, 11.3 with all three; and the copy's bytes
    (0.74 MiB) once `hdf5_copy` has written it for a FITS file. LLAMA_MAP_STORE_MIB
    (default `MAP_STORE_BYTES`) bounds the whole (counted from the arrays and bytes each
    holds).
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        # the bound [bytes]; 0 keeps nothing (every read under a checksum opens the
        # file); None: LLAMA_MAP_STORE_MIB (llama.config.map_store_bytes) at first use
        self._max_bytes = None if max_bytes is None else int(max_bytes)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recent first
        self._by_fits: dict[str, _Entry] = {}  # a FITS file's sha256 -> its copy's entry
        # (sha256, key) of the products asked for once, the most recent `_ASKED` of them
        self._asked: OrderedDict[tuple[str, Any], None] = OrderedDict()
        self.held = 0
        self.lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        """The bound [bytes]: set, or LLAMA_MAP_STORE_MIB's, read once per process (a
        worker inherits the variable from the command that started it)."""
        if self._max_bytes is None:
            self._max_bytes = map_store_bytes()
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int | None) -> None:
        self._max_bytes = None if value is None else int(value)

    @property
    def entries(self) -> list[tuple[str, _Parsed]]:
        """(sha256, parsed map) of the entries, least recently used first."""
        with self.lock:
            return [(sha, e.parsed) for sha, e in self._entries.items()]

    def entry(self, sha256: str | None) -> _Entry | None:
        """The entry kept under ``sha256`` (now the most recently used), or None."""
        if sha256 is None:
            return None
        with self.lock:
            entry = self._entries.get(sha256)
            if entry is not None:
                self._entries.move_to_end(sha256)
            return entry

    def find(self, sha256: str | None) -> _Parsed | None:
        entry = self.entry(sha256)
        return None if entry is None else entry.parsed

    def keep(self, sha256: str, parsed: _Parsed) -> _Entry:
        """The entry of ``sha256``: the one kept (its products with it: the same bytes
        are the same map), else a new one for ``parsed``, kept if it fits."""
        with self.lock:
            entry = self._entries.get(sha256)
            if entry is not None:
                self._entries.move_to_end(sha256)
                return entry
            entry = _Entry(sha256, parsed)
            if entry.nbytes <= self.max_bytes:
                self._entries[sha256] = entry
                self.held += entry.nbytes
                self._evict()
                self._evict_met_once()
            return entry

    def _evict_met_once(self) -> None:
        """Of the entries holding only their map (no product, no FITS bytes: maps met
        once so far), the `_MET_ONCE` most recent are kept, as before the store: a
        map that never comes back holds no memory (whose growth cost the first visits
        page faults and slower kernels, ~0.9x); one that does is asked for again
        (`_asked_before` remembers it) and keeps its products then."""
        once = [sha for sha, e in self._entries.items() if not e.products and e.data is None]
        for sha in once[: max(len(once) - _MET_ONCE, 0)]:
            self.held -= self._entries.pop(sha).nbytes

    def add_product(self, entry: _Entry, key, value):
        """``value`` kept as ``entry``'s product ``key`` where it was asked for before
        (a map met once keeps nothing: memory held for maps that never come back costs
        every event page faults while the store fills, ~2,100 a BAYESTAR map, ~7% of
        its CPU); the one kept first if two threads built it. An entry no longer in the
        store keeps nothing more."""
        size = _held_bytes(value)
        with self.lock:
            if self._entries.get(entry.sha256) is not entry:
                return value
            kept = entry.products.get(key)
            if kept is not None:
                return kept
            if not self._asked_before((entry.sha256, key)):
                return value
            if entry.nbytes + size > self.max_bytes:
                return value
            entry.products[key] = value
            entry.nbytes += size
            self.held += size
            self._entries.move_to_end(entry.sha256)
            self._evict()
            return value

    def of_fits(self, fits_sha256: str | None) -> _Entry | None:
        """The entry of the copy written for the FITS file of ``fits_sha256``, with its
        bytes (now the most recently used), or None."""
        if fits_sha256 is None:
            return None
        with self.lock:
            entry = self._by_fits.get(fits_sha256)
            if entry is None or self._entries.get(entry.sha256) is not entry:
                self._by_fits.pop(fits_sha256, None)
                return None
            self._entries.move_to_end(entry.sha256)
            return entry

    def keep_fits(self, fits_sha256: str, written: HDF5Written) -> None:
        """Note that the FITS file of ``fits_sha256`` gave the copy ``written``
        (kept by `write_hdf5`): its bytes are kept with the copy's entry, if it fits,
        from the second time on (as products: `add_product`)."""
        with self.lock:
            entry = self._entries.get(written.sha256)
            if entry is None or not self._asked_before((written.sha256, fits_sha256)):
                return
            if entry.data is None:
                if entry.nbytes + len(written.data) > self.max_bytes:
                    return
                entry.data = written.data
                entry.nbytes += len(written.data)
                self.held += len(written.data)
            self._by_fits[fits_sha256] = entry
            self._entries.move_to_end(entry.sha256)
            self._evict()

    def _asked_before(self, asked) -> bool:
        """Was ``asked`` asked for before? Noted now if not (the lock held)."""
        if asked in self._asked:
            return True
        self._asked[asked] = None
        if len(self._asked) > _ASKED:
            self._asked.popitem(last=False)
        return False

    def _evict(self) -> None:
        while self.held > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self.held -= old.nbytes

    def clear(self) -> None:
        with self.lock:
            self._entries.clear()
            self._by_fits.clear()
            self._asked.clear()
            self.held = 0


#: The store's default bound per process: 256 MiB holds ~32 BAYESTAR maps with a
#: background event's products (~22 with all three; a campaign's maps in rotation),
#: small beside a worker's ~1-2 GB. LLAMA_MAP_STORE_MIB sets it (llama.config, read at
#: first use); in a process ``_KEPT.max_bytes = n`` (0 keeps nothing: every event builds
#: its own, as before the store).
MAP_STORE_BYTES = MAP_STORE_MIB[1] << 20
#: Entries holding only their map kept at most (the 4 copies kept before the store:
#: the events a process has in hand).
_MET_ONCE = 4
#: Products asked for once that the store remembers (a checksum and a key each, ~200
#: bytes): a campaign's maps in rotation, many times over.
_ASKED = 4096
_KEPT = _MapStore()
#: Files up to this size are kept (larger flat maps are read from the file each time
#: rather than held in memory).
_KEPT_MAX_BYTES = 8 << 20


def kept_product(skymap: SkyMap, key, build):
    """``build(skymap)``, built at most twice per map: kept with the map's store entry
    the second time it is asked for, where ``skymap`` came from `read_hdf5` (or
    `write_hdf5`'s copy) and its pixels are still bit for bit the kept ones
    (`_Entry.same_pixels`); else built and not kept.
    ``key`` names the product and everything besides the pixels it depends on (a
    module constant, an option); ``build`` must read only the map's pixels and
    densities (``uniq`` or ``nside``, ``probdensity``: what is checked, not the
    distance layers or meta), and what it returns is shared by every event of the map
    (read it, never change it).

    Examples
    --------
    >>> m = SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1)
    >>> kept_product(m, "peak", lambda m: float(m.probdensity.max())) > 0  # not kept
    True
    """
    entry = getattr(skymap, "_kept", None)
    if entry is None or not entry.same_pixels(skymap):
        return build(skymap)
    value = entry.products.get(key)
    if value is None:
        # built from the store's own copy: a product holding one of the map's arrays
        # holds none a caller may change later
        value = _KEPT.add_product(entry, key, build(entry.own_map()))
    return value


class HDF5Written(NamedTuple):
    """What `write_hdf5` wrote: the file's bytes (read back) and their sha256."""

    data: bytes
    sha256: str


def _file_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it cannot be read (h5py then says why) or is
    larger than `_KEPT_MAX_BYTES`."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > _KEPT_MAX_BYTES:
                return None
            return f.read()
    except OSError:
        return None


def write_hdf5(path: str | os.PathLike, skymap: SkyMap, atomic: bool = True) -> HDF5Written | None:
    """Write the internal HDF5 copy (LvcSkymapHdf5); returns the file's bytes as
    written and their sha256 (`HDF5Written`; the copy is kept under that checksum for
    :func:`read_hdf5`), or None for a file too large to keep (`_KEPT_MAX_BYTES`) or
    one that could not be read back.

    Layout (version 2): root attributes ``format`` ("llama-skymap"), ``version`` (2),
    ``meta`` (the map's meta dict, JSON-encoded) and, for flat NESTED maps, ``nside``;
    dataset ``layers`` of shape (1 or 4, rows): ``probdensity`` [sr^-1], then
    ``distmu``, ``distsigma`` [Mpc] and ``distnorm`` [Mpc^-2] when present; dataset
    ``uniq`` for multi-order maps. Two datasets and three attributes, because h5py
    spends ~0.2-0.4 ms on each (version 1 had up to 5 datasets and 14 attributes:
    4 ms to write and 4 ms to read a BAYESTAR map, now 2 and 1). The write is atomic
    (temporary name, then rename) unless ``atomic`` is False: then ``path`` is written
    directly, for a caller whose ``path`` is a temporary name already (a handler's
    output; a file created and renamed costs up to ~0.3 ms on a VM's disk), and is
    removed if the write fails.

    Examples
    --------
    >>> import tempfile, os
    >>> m = SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1, meta={"objid": "S1"})
    >>> path = os.path.join(tempfile.mkdtemp(), "m.hdf5")
    >>> written = write_hdf5(path, m)  # the bytes written and their sha256
    >>> written.data == open(path, "rb").read()
    True
    >>> r = read_hdf5(path, sha256=written.sha256)  # the kept copy: the file is not read
    >>> r.nside, r.meta["objid"]
    (1, 'S1')
    """
    path = os.fspath(path)
    names = _HDF5_LAYERS if skymap.has_distance else _HDF5_LAYERS[:1]
    layers = np.empty((len(names), len(skymap)))
    for row, name in zip(layers, names, strict=True):
        row[:] = getattr(skymap, name)
    meta = json.dumps(skymap.meta)
    uniq = None if skymap.uniq is None else skymap.uniq.copy()  # kept: not the caller's
    tmp = f"{path}.tmp{os.getpid()}" if atomic else path
    try:
        _write_hdf5_file(tmp, layers, uniq, skymap.nside, meta)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    data = _file_bytes(tmp)
    if atomic:
        os.replace(tmp, path)
    if data is None:
        return None
    written = HDF5Written(data, hashlib.sha256(data).hexdigest())
    _KEPT.keep(written.sha256, _Parsed(layers, uniq, skymap.nside, meta))
    return written


def hdf5_copy(
    path: str | os.PathLike, fits, fits_sha256: str | None, atomic: bool = True
) -> HDF5Written | None:
    """``write_hdf5(path, read_sky_map(fits), atomic)``, once per map in the process:
    where the FITS file's checksum ``fits_sha256`` (`llama.event.Event.sha256`: the
    trust of every up-to-date check) is that of a file whose copy this process wrote
    twice and still keeps, the copy's kept bytes are written again (the same bytes: a copy's
    layout has no time stamps), without parsing the FITS file or calling h5py
    (~5-7 ms a BAYESTAR map). ``fits``: what `read_sky_map` takes, or a function of no
    arguments returning it, read (called) on a miss only.

    Examples
    --------
    >>> import tempfile, os, hashlib
    >>> d = tempfile.mkdtemp()
    >>> m = SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1, meta={"objid": "S1"})
    >>> write_sky_map(os.path.join(d, "m.fits"), m)
    >>> fits_sha = hashlib.sha256(open(os.path.join(d, "m.fits"), "rb").read()).hexdigest()
    >>> for _ in range(2):  # kept the second time (as products: kept_product)
    ...     a = hdf5_copy(os.path.join(d, "a.hdf5"), os.path.join(d, "m.fits"), fits_sha)
    >>> b = hdf5_copy(os.path.join(d, "b.hdf5"), "no such file: not read", fits_sha)
    >>> b == a and open(os.path.join(d, "b.hdf5"), "rb").read() == a.data
    True
    """
    entry = _KEPT.of_fits(fits_sha256)
    if entry is not None and entry.data is not None:
        path = os.fspath(path)
        if atomic:
            from llama.storage import atomic_write_bytes

            atomic_write_bytes(path, entry.data)
        else:  # ``path`` is a temporary name already: written in place, removed on failure
            try:
                with open(path, "wb") as f:
                    f.write(entry.data)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
        return HDF5Written(entry.data, entry.sha256)
    written = write_hdf5(path, read_sky_map(fits() if callable(fits) else fits), atomic=atomic)
    if written is not None and fits_sha256 is not None:
        _KEPT.keep_fits(fits_sha256, written)
    return written


def _write_hdf5_file(path: str, layers, uniq, nside, meta: str) -> None:
    """Write the version 2 layout through h5py's low-level calls: the same bytes as
    ``h5py.File(path, "w")`` given the attributes ``format``, ``version``, ``meta``
    (then ``nside`` or the dataset ``uniq``) and the dataset ``layers``, in that order,
    with h5py's defaults (library-version bounds, alignment, no object times). The
    high-level File, AttributeManager and create_dataset spent ~1 ms more per BAYESTAR
    map on argument checks and property lists than HDF5 spends writing it."""
    from h5py import h5f, h5g

    fapl, fcpl, _, _ = _hdf5_lists()
    fid = h5f.create(os.fsencode(path), h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl)
    try:
        # the root group is released when this call returns, before the file is closed
        _fill_hdf5_root(h5g.open(fid, b"/"), layers, uniq, nside, meta)
    finally:
        fid.close()


@functools.cache
def _hdf5_lists():
    """(file access, file creation, dataset creation) property lists and the scalar
    dataspace of :func:`_write_hdf5_file`, made once per process: HDF5 copies what it
    needs of them at each use, and made per write they and the types
    (:func:`_hdf5_types`) cost ~0.2 ms of its ~1.1 ms."""
    from h5py import h5f, h5p, h5s

    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_EARLIEST, h5f.LIBVER_LATEST)
    fapl.set_alignment(1, 1)
    fcpl = h5p.create(h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_obj_track_times(False)
    return fapl, fcpl, dcpl, h5s.create(h5s.SCALAR)


@functools.cache
def _hdf5_types(kind: str):
    """(dtype, file type, memory type) as h5py makes them for ``kind``: "text" (h5py's
    variable-length UTF-8 string) or a NumPy dtype string such as "<f8". Keyed by name:
    the string dtype differs from a plain object dtype by its metadata alone, which
    dtype equality ignores."""
    from h5py import h5t

    dtype = h5t.string_dtype() if kind == "text" else np.dtype(kind)
    return dtype, h5t.py_create(dtype, logical=True), h5t.py_create(dtype)


def _fill_hdf5_root(root, layers, uniq, nside, meta: str) -> None:
    _hdf5_attribute(root, b"format", HDF5_FORMAT)
    _hdf5_attribute(root, b"version", HDF5_VERSION)
    _hdf5_attribute(root, b"meta", meta)
    if uniq is not None:
        _hdf5_dataset(root, b"uniq", uniq)
    else:
        _hdf5_attribute(root, b"nside", nside)
    _hdf5_dataset(root, b"layers", layers)


def _hdf5_attribute(root, name: bytes, value: str | int) -> None:
    """A scalar attribute as ``root.attrs[name] = value`` writes it: a str as h5py's
    variable-length UTF-8 string, an int as a 64-bit integer."""
    from h5py import h5a

    kind = "text" if isinstance(value, str) else np.array(value).dtype.str
    dtype, file_type, memory_type = _hdf5_types(kind)
    data = np.array(value, dtype=dtype)
    attr = h5a.create(root, name, file_type, _hdf5_lists()[3])
    attr.write(data, mtype=memory_type)


def _hdf5_dataset(root, name: bytes, data: np.ndarray) -> None:
    """A contiguous dataset as ``create_dataset(name, data=data)`` writes it."""
    from h5py import h5d, h5s

    _, file_type, _ = _hdf5_types(data.dtype.str)
    dset = h5d.create(root, name, file_type, h5s.create_simple(data.shape), dcpl=_hdf5_lists()[2])
    dset.write(h5s.ALL, h5s.ALL, data)


def _open_hdf5(where: str):
    """(open h5py.File, format version) of a file :func:`write_hdf5` wrote."""
    import h5py

    try:
        f = h5py.File(where, "r")
    except FileNotFoundError:
        raise SkyMapError(f"{where}: no such file; check the path") from None
    except OSError as exc:
        raise SkyMapError(
            f"{where}: not an HDF5 file ({exc}); regenerate it from the FITS sky map"
        ) from None
    attrs = f.attrs
    if attrs.get("format") != HDF5_FORMAT:
        f.close()
        raise SkyMapError(
            f"{where}: not a llama sky-map HDF5 file (format attribute missing); "
            "regenerate it with llama.science.skymap.write_hdf5"
        )
    version = int(attrs["version"])
    if version not in (1, HDF5_VERSION):
        f.close()
        raise SkyMapError(
            f"{where}: sky-map HDF5 version {version}, this llama reads 1 and "
            f"{HDF5_VERSION}; regenerate it (llama batch rewrites lvc_skymap.hdf5) or "
            "update llama"
        )
    return f, version


def read_hdf5(path: str | os.PathLike, sha256: str | None = None) -> SkyMap:
    """Read a map written by :func:`write_hdf5` (either version of its layout).

    ``sha256``: the file's checksum as the caller knows it (`llama.event.Event.sha256`,
    which trusts a file unchanged in size and mtime_ns since its checksum was taken):
    the copy kept under it, if any, is taken without opening the file, and a file read
    is kept under it. Without it the file is read, and nothing kept.

    Raises
    ------
    SkyMapError
        When the file is not an HDF5 file written by :func:`write_hdf5`.
    """
    entry = _KEPT.entry(sha256)
    parsed = None if entry is None else entry.parsed
    if parsed is None:
        where = os.fspath(path)
        f, version = _open_hdf5(where)
        with f:
            if version == 1:
                return _read_hdf5_v1(f)
            attrs = f.attrs
            parsed = _Parsed(
                layers=f["layers"][()],
                uniq=f["uniq"][()] if "uniq" in f else None,
                nside=None if "uniq" in f else int(attrs["nside"]),
                meta=attrs["meta"],
            )
        held = parsed.layers.nbytes + (0 if parsed.uniq is None else parsed.uniq.nbytes)
        if sha256 is not None and held <= _KEPT_MAX_BYTES:
            entry = _KEPT.keep(sha256, parsed)
    skymap = parsed.skymap()
    if entry is not None:
        skymap._kept = entry  # its products, while its pixels are the kept ones (kept_product)
    return skymap


def read_hdf5_meta(path: str | os.PathLike, sha256: str | None = None) -> dict[str, Any]:
    """The meta dict of a :func:`write_hdf5` file, without reading its pixels
    (``sha256``: as for :func:`read_hdf5`; a kept copy gives it without opening the file).

    Examples
    --------
    >>> import tempfile, os
    >>> m = SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1, meta={"distmean": 40.0})
    >>> path = os.path.join(tempfile.mkdtemp(), "m.hdf5")
    >>> _ = write_hdf5(path, m)
    >>> read_hdf5_meta(path)
    {'distmean': 40.0}
    """
    parsed = _KEPT.find(sha256)
    if parsed is not None:
        return json.loads(parsed.meta)
    f, version = _open_hdf5(os.fspath(path))
    with f:
        if version == 1:
            return {k: json.loads(v) for k, v in f["meta"].attrs.items()} if "meta" in f else {}
        return json.loads(f.attrs["meta"])


def _read_hdf5_v1(f) -> SkyMap:
    """Version 1: datasets ``uniq`` (multi-order), ``probdensity`` and the distance
    layers; root attributes ``moc`` and ``nside``; group ``meta``, one JSON attribute
    per key."""
    kwargs: dict[str, Any] = {"probdensity": f["probdensity"][()]}
    if bool(f.attrs["moc"]):
        kwargs["uniq"] = f["uniq"][()]
    else:
        kwargs["nside"] = int(f.attrs["nside"])
    for name in ("distmu", "distsigma", "distnorm"):
        if name in f:
            kwargs[name] = f[name][()]
    kwargs["meta"] = {k: json.loads(v) for k, v in f["meta"].attrs.items()}
    return SkyMap(**kwargs)
