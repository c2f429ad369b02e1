"""Screening of trial neutrinos against a sky map: where can a PSF overlap matter? (Numba)

On-the-fly trials put most neutrinos far from a compact GW map, where the spatial
overlap S_i = ∫ rho a_i G_i dΩ is many orders of magnitude below the map's scale and
the exact overlap kernel itself no longer resolves it (its absolute floor). This module
gives a cheap, conservative upper bound of the map density within reach of a PSF, so
the trials can skip the exact kernel wherever the bound is negligible.

Layout: an equal-angle (dec, RA) grid of ``n_dec x 2 n_dec`` cells of size
``c = pi / n_dec``. :func:`sky_max_grid` stores in each cell the largest density of
every map pixel that may touch the cell (each pixel is replaced by its circumscribed
cap of radius ``max_pixrad``). :func:`dilate_max` turns it into, per cell, the largest
density within angular distance ``radius`` of any point of the cell (again through
circumscribed caps, so the bound is never optimistic). :func:`cell_lookup` reads a
grid at many directions and :func:`density_at` reads the map's own density there.

All angles are in radians; functions take and return plain arrays (no llama imports).

Examples
--------
>>> import numpy as np
>>> from kernels.trial_screen import sky_max_grid, dilate_max, cell_lookup
>>> order = np.zeros(12, dtype=np.int64); ipix = np.arange(12)
>>> dens = np.zeros(12); dens[4] = 1.0          # one base pixel (on the equator at RA 0)
>>> g = sky_max_grid(order, ipix, dens, 90)
>>> far = cell_lookup(g, np.array([np.pi]), np.array([0.0]))  # opposite side
>>> near = cell_lookup(g, np.array([0.0]), np.array([0.0]))
>>> float(far[0]), float(near[0])
(0.0, 1.0)
>>> float(cell_lookup(dilate_max(g, 3.2), np.array([np.pi]), np.array([0.0]))[0])
1.0
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .healpix import max_pixrad, pix2zphi_nest, zphi2pix_nest

__all__ = [
    "cap_columns",
    "cap_ra_halfwidth",
    "cap_rows",
    "cell_lookup",
    "density_at",
    "density_table",
    "may_pair",
    "dilate_max",
    "pixel_caps",
    "pixel_cells",
    "pixel_cells_from",
    "psf_reach",
    "sky_max_grid",
]

_HALF_PI = 0.5 * math.pi
_TWO_PI = 2.0 * math.pi


@njit(cache=True, nogil=True)
def psf_reach(sigma: float, tail: float) -> float:
    """Angle beyond which the PSF's mass is below ``tail`` [rad], for both PSFs.

    The O3 planar Gaussian on the sphere has mass beyond psi0 below
    exp(-psi0^2 / 2 sigma^2) (since sin psi <= psi); the von Mises-Fisher PSF with
    kappa = 1 / sigma^2 below exp(kappa (cos psi0 - 1)) / (1 - exp(-2 kappa)). The
    vMF radius, acos(1 - sigma^2 ln(1 / (tail (1 - exp(-2 kappa))))), is the larger
    one, so it serves both.

    Examples
    --------
    >>> round(psf_reach(0.01, 1e-12) / 0.01, 2)  # ~ sqrt(2 ln 1e12) sigma
    7.44
    """
    kappa = 1.0 / (sigma * sigma)
    x = sigma * sigma * (math.log(1.0 / tail) - math.log1p(-math.exp(-2.0 * kappa)))
    if x >= 2.0:
        return math.pi
    return math.acos(1.0 - x)


@njit(cache=True, nogil=True)
def cap_ra_halfwidth(dec: float, radius: float) -> float:
    """Half-width in RA of a spherical cap of ``radius`` centred at ``dec`` [rad].

    ``pi`` (every RA) when the cap reaches a pole.

    Examples
    --------
    >>> round(cap_ra_halfwidth(0.0, 0.1), 6)
    0.1
    >>> cap_ra_halfwidth(1.5, 0.1)
    3.141592653589793
    """
    c = math.cos(dec)
    s = math.sin(radius)
    if abs(dec) + radius >= _HALF_PI or s >= c:
        return math.pi
    return math.asin(s / c)


@njit(cache=True, nogil=True)
def _row_of(dec: float, cell: float, n_dec: int) -> int:
    k = int(math.floor((dec + _HALF_PI) / cell))
    return min(max(k, 0), n_dec - 1)


@njit(cache=True, nogil=True)
def pixel_caps() -> tuple[np.ndarray, np.ndarray]:
    """Radius [rad] of a pixel's circumscribed cap per order 0..29 (``max_pixrad`` +
    1%, so that the cap contains the pixel), and its sine: what :func:`pixel_cells`
    needs per order, for :func:`pixel_cells_from` to look up instead of computing per
    pixel (a fifth of its time on a BAYESTAR map's 19,200 pixels)."""
    radius = np.empty(30)
    sin_radius = np.empty(30)
    for order in range(30):
        radius[order] = 1.01 * max_pixrad(order)
        sin_radius[order] = math.sin(radius[order])
    return radius, sin_radius


@njit(cache=True, nogil=True)
def pixel_cells(order: int, ipix: int, n_dec: int) -> tuple[int, int, int, int]:
    """Cells of the ``n_dec x 2 n_dec`` (dec, RA) grid that a NESTED pixel may touch.

    The pixel is replaced by its circumscribed cap (radius ``max_pixrad`` + 1%), so
    no touched cell is left out. Returns rows ``r0..r1`` and columns ``c0..c1``, the
    columns to be read modulo ``2 n_dec`` (a cap across RA 0 has c0 < 0).

    Examples
    --------
    >>> pixel_cells(0, 4, 18)  # base pixel on the equator at RA 0: a cap of ~48 deg, 10 deg cells
    (4, 13, -5, 4)
    """
    r = 1.01 * max_pixrad(order)  # 1% margin: the cap must contain the pixel
    return pixel_cells_from(order, ipix, n_dec, r, math.sin(r))


@njit(cache=True, nogil=True)
def pixel_cells_from(order: int, ipix: int, n_dec: int, radius: float, sin_radius: float) -> tuple[int, int, int, int]:  # fmt: skip
    """:func:`pixel_cells` with the cap's radius and its sine given (:func:`pixel_caps`
    at ``order``): the same cells."""
    # the centre's angles from the ring geometry (no unit vector and atan2 back)
    sin_dec, cos_dec, ra = pix2zphi_nest(order, ipix)
    r0, r1, half = cap_rows(sin_dec, cos_dec, n_dec, radius, sin_radius)
    c0, c1 = cap_columns(ra, half, n_dec)
    return r0, r1, c0, c1


@njit(cache=True, nogil=True)
def cap_rows(sin_dec: float, cos_dec: float, n_dec: int, radius: float, sin_radius: float) -> tuple[int, int, float]:  # fmt: skip
    """Rows ``r0..r1`` of the ``n_dec x 2 n_dec`` grid that the cap of ``radius`` about a
    centre at declination asin(``sin_dec``) may touch, and its RA half-width (inf: whole
    rows), for :func:`cap_columns`: what :func:`pixel_cells_from` takes of the centre's
    declination, the same for every pixel of a ring.

    Examples
    --------
    >>> r = 1.01 * max_pixrad(0)
    >>> r0, r1, half = cap_rows(0.0, 1.0, 18, r, math.sin(r))
    >>> (r0, r1), cap_columns(0.0, half, 18)    # pixel_cells(0, 4, 18)
    ((4, 13), (-5, 4))
    """
    cell = math.pi / n_dec
    dec = math.atan2(sin_dec, cos_dec)
    r0 = _row_of(dec - radius, cell, n_dec)
    r1 = _row_of(dec + radius, cell, n_dec)
    # cap_ra_halfwidth(dec, radius) with its sine given
    if abs(dec) + radius >= _HALF_PI or sin_radius >= cos_dec:
        return r0, r1, math.inf
    return r0, r1, math.asin(sin_radius / cos_dec)


@njit(cache=True, nogil=True)
def cap_columns(ra: float, half: float, n_dec: int) -> tuple[int, int]:
    """Columns ``c0..c1`` (to be read modulo ``2 n_dec``) of a cap about RA ``ra`` with
    the RA half-width ``half`` of :func:`cap_rows`."""
    n_ra = 2 * n_dec
    cell = math.pi / n_dec
    if half == math.inf:
        return 0, n_ra - 1
    c0 = int(math.floor((ra - half) / cell))
    c1 = int(math.floor((ra + half) / cell))
    if c1 - c0 >= n_ra:
        return 0, n_ra - 1
    return c0, c1


@njit(cache=True, nogil=True)
def sky_max_grid(order, ipix, density, n_dec):
    """Per (dec, RA) cell, the largest density of the map pixels that may touch it.

    Parameters
    ----------
    order, ipix : (m,) int64
        NESTED order and index of each map pixel (multi-order maps: from NUNIQ).
    density : (m,) float64
        Density per pixel (any unit; e.g. sr^-1).
    n_dec : int
        Rows of the grid (cell size pi / n_dec); there are 2 n_dec columns.

    Returns
    -------
    (n_dec, 2 n_dec) float64
        Row 0 is the southernmost band; column 0 starts at RA 0. Cells no pixel
        touches hold 0.

    Examples
    --------
    >>> import numpy as np
    >>> g = sky_max_grid(np.zeros(12, np.int64), np.arange(12), np.arange(12.0), 18)
    >>> g.shape, float(g.max())
    ((18, 36), 11.0)
    """
    n_ra = 2 * n_dec
    out = np.zeros((n_dec, n_ra))
    for k in range(order.shape[0]):
        d = density[k]
        if not d > 0.0:
            continue
        r0, r1, c0, c1 = pixel_cells(order[k], ipix[k], n_dec)
        for row in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                col = c % n_ra
                if out[row, col] < d:
                    out[row, col] = d
    return out


@njit(cache=True, nogil=True)
def _sparse_levels(n: int) -> int:
    levels = 1
    while (1 << levels) <= n:
        levels += 1
    return levels


@njit(cache=True, nogil=True)
def dilate_max(grid, radius):
    """Per cell, the largest ``grid`` value within ``radius`` [rad] of any of its points.

    A query point inside a cell lies within half a cell diagonal (< 0.75 cell) of the
    cell's centre, so its disc lies inside the cap of radius ``radius + cell`` about
    the centre; that cap lies inside the box of its declination range times its RA
    half-width (:func:`cap_ra_halfwidth`), and every cell touching the box is taken.
    Range maxima come from sparse tables (rows, then RA with wrap-around), so the
    cost does not grow with the radius.

    Parameters
    ----------
    grid : (n_dec, 2 n_dec) float64
        From :func:`sky_max_grid`.
    radius : float
        Reach [rad], e.g. :func:`psf_reach`.

    Returns
    -------
    (n_dec, 2 n_dec) float64

    Examples
    --------
    >>> import numpy as np
    >>> g = np.zeros((18, 36)); g[9, 0] = 1.0   # the cell at dec [0, 10) deg, RA [0, 10)
    >>> d = dilate_max(g, 0.05)
    >>> float(d[9, 0]), float(d[9, 1]), float(d[9, 3]), float(d[12, 0])
    (1.0, 1.0, 0.0, 0.0)
    """
    n_dec, n_ra = grid.shape
    cell = math.pi / n_dec
    reach = radius + 0.75 * cell
    # sparse table over rows: rmax[l, r, c] = max(grid[r : r + 2^l, c])
    lv = _sparse_levels(n_dec)
    rmax = np.empty((lv, n_dec, n_ra))
    rmax[0] = grid
    for level in range(1, lv):
        step = 1 << (level - 1)
        for r in range(n_dec):
            r2 = min(r + step, n_dec - 1)
            for c in range(n_ra):
                rmax[level, r, c] = max(rmax[level - 1, r, c], rmax[level - 1, r2, c])
    band = np.empty((n_dec, n_ra))
    for t in range(n_dec):
        dec_t = -_HALF_PI + (t + 0.5) * cell
        r0 = _row_of(dec_t - reach, cell, n_dec)
        r1 = _row_of(dec_t + reach, cell, n_dec)
        span = r1 - r0 + 1
        level = 0
        while (2 << level) <= span:
            level += 1
        for c in range(n_ra):
            band[t, c] = max(rmax[level, r0, c], rmax[level, r1 - (1 << level) + 1, c])
    # sparse table along RA (circular): cmax[l, r, c] = max(band[r, c : c + 2^l] wrapped)
    lc = _sparse_levels(n_ra)
    cmax = np.empty((lc, n_dec, n_ra))
    cmax[0] = band
    for level in range(1, lc):
        step = 1 << (level - 1)
        for r in range(n_dec):
            for c in range(n_ra):
                cmax[level, r, c] = max(
                    cmax[level - 1, r, c], cmax[level - 1, r, (c + step) % n_ra]
                )
    out = np.empty((n_dec, n_ra))
    for t in range(n_dec):
        dec_t = -_HALF_PI + (t + 0.5) * cell
        half = cap_ra_halfwidth(dec_t, reach)
        # cells touching [centre - half, centre + half]: the same offsets for every column
        lead = n_ra
        width = n_ra
        if half < math.pi:
            lead = -int(math.floor(0.5 - half / cell))
            width = int(math.floor(0.5 + half / cell)) + lead + 1
        if width >= n_ra:
            m = band[t, 0]
            for c in range(1, n_ra):
                m = max(m, band[t, c])
            for c in range(n_ra):
                out[t, c] = m
            continue
        level = 0
        while (2 << level) <= width:
            level += 1
        for c in range(n_ra):
            a = (c - lead) % n_ra
            b = (a + width - (1 << level)) % n_ra
            out[t, c] = max(cmax[level, t, a], cmax[level, t, b])
    return out


@njit(cache=True, nogil=True)
def cell_lookup(grid, ra, dec):
    """``grid`` at each direction (ra, dec) [rad].

    Examples
    --------
    >>> import numpy as np
    >>> g = np.arange(8.0).reshape(2, 4)
    >>> cell_lookup(g, np.array([0.1, 6.0]), np.array([-0.5, 0.5])).tolist()
    [0.0, 7.0]
    """
    n_dec, n_ra = grid.shape
    cell = math.pi / n_dec
    out = np.empty(ra.shape[0])
    for k in range(ra.shape[0]):
        row = _row_of(dec[k], cell, n_dec)
        col = int(math.floor((ra[k] % _TWO_PI) / cell)) % n_ra
        out[k] = grid[row, col]
    return out


@njit(cache=True, nogil=True)
def density_at(start, stop, density, max_order, ra, dec):
    """The map's density at each direction (ra, dec) [rad]; 0 where no pixel covers it.

    Parameters
    ----------
    start, stop : (m,) int64
        Each map pixel's range of NESTED indices at ``max_order``, ``[start, stop)``,
        sorted by ``start`` and disjoint.
    density : (m,) float64
    max_order : int

    Examples
    --------
    >>> import numpy as np
    >>> start = np.arange(12) * 4; stop = start + 4     # 12 base pixels at order 1
    >>> float(density_at(start, stop, np.arange(12.0), 1, np.array([0.0]), np.array([0.0]))[0])
    4.0
    """
    out = np.empty(ra.shape[0])
    for k in range(ra.shape[0]):
        pix = zphi2pix_nest(max_order, math.sin(dec[k]), math.cos(dec[k]), ra[k])
        j = np.searchsorted(start, pix, side="right") - 1
        out[k] = density[j] if j >= 0 and pix < stop[j] else 0.0
    return out


@njit(cache=True, nogil=True)
def density_table(start, stop, max_order, order):
    """Per NESTED pixel of ``order``, the map pixel that covers it whole (its index in
    ``start``), else -1: :func:`density_at` then needs no search for the directions in
    the map's coarse pixels (on BAYESTAR maps, orders <= 6 cover ~99% of the sky).

    Parameters
    ----------
    start, stop : (m,) int64
        As :func:`density_at` takes them.
    max_order, order : int
        Their order, and the table's (at most ``max_order``).

    Returns
    -------
    (12 4^order,) int32
        int32, not int64 (``start`` has fewer than 2**31 rows): the lookups of
        :func:`density_at_table` land all over the table, 192 KiB at order 6 rather
        than 384 KiB (0.85x its time on 2,000 trials' neutrinos).

    Examples
    --------
    >>> import numpy as np
    >>> start = np.array([0, 16, 17, 20]); stop = np.array([16, 17, 20, 192])  # at order 2
    >>> density_table(start, stop, 2, 1)[:6].tolist()   # order-1 pixel 4 holds two
    [0, 0, 0, 0, -1, 3]
    """
    if start.shape[0] >= 2**31:
        raise ValueError("more than 2**31 - 1 map pixels")
    shift = 2 * (max_order - order)
    table = np.full(12 << (2 * order), -1, dtype=np.int32)
    for j in range(start.shape[0]):
        if stop[j] - start[j] >= (1 << shift):  # a pixel of the table's order or coarser
            for c in range(start[j] >> shift, stop[j] >> shift):
                table[c] = j
    return table


@njit(cache=True, nogil=True)
def density_at_table(start, stop, density, max_order, table, order, ra, dec):
    """:func:`density_at` with its :func:`density_table` at ``order``: the same values,
    the search only where the table has no single pixel."""
    shift = 2 * (max_order - order)
    out = np.empty(ra.shape[0])
    for k in range(ra.shape[0]):
        pix = zphi2pix_nest(max_order, math.sin(dec[k]), math.cos(dec[k]), ra[k])
        j = table[pix >> shift]
        if j < 0:
            j = np.searchsorted(start, pix, side="right") - 1
        out[k] = density[j] if j >= 0 and pix < stop[j] else 0.0
    return out


@njit(cache=True, nogil=True)
def may_pair(ra, dec, zenith, sigma, dt, offsets, n_sigma, tilt, turn_rate):
    """Neutrinos that O3's flat doublet test in detector (zenith, azimuth) may pair with
    another of their list, decided without their azimuths (rigorous, never too few).

    O3 pairs i and j when sqrt(dzen² + daz²) < n_sigma (sigma_i + sigma_j) = D, with
    zeniths as given and the raw azimuth difference. So, necessarily, |dzen| < D; and
    the directions' angle in the detector frame is below D + 2 ``tilt`` (a straight
    path in the (zenith, azimuth) chart is no longer on the sphere than in the plane,
    and a given zenith differs from the frame's by at most the angle ``tilt`` between
    the frame's vertical and the south celestial pole plus its own difference e from
    90 deg + dec), so their angle on the sky is below D + 2 tilt + e_i + e_j +
    ``turn_rate`` |dt_i - dt_j| (the frame turns with the Earth between their times).

    Parameters
    ----------
    ra, dec, zenith, sigma : (n,) float64
        Directions, the zeniths the pair test reads, PSF widths [rad].
    dt : (n,) float64
        Times from the reference [s].
    offsets : (m + 1,) int64
        CSR offsets of the lists.
    n_sigma, tilt, turn_rate : float
        The test's reach [sigma], the frame's tilt [rad], its turn [rad / s].

    Returns
    -------
    (n,) bool

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([1.0, 1.01, 2.0]); s = np.full(3, 0.002)
    >>> may_pair(np.zeros(3), z - _HALF_PI, z, s, np.zeros(3), np.array([0, 3]), 5.0, 0.0, 0.0).tolist()
    [True, True, False]
    """
    out = np.zeros(ra.shape[0], dtype=np.bool_)
    cos_dec = np.empty(ra.shape[0])
    for i in range(ra.shape[0]):
        cos_dec[i] = math.cos(dec[i])
    for m in range(offsets.shape[0] - 1):
        for i in range(offsets[m], offsets[m + 1]):
            for j in range(i + 1, offsets[m + 1]):
                reach = n_sigma * (sigma[i] + sigma[j])
                # relative and absolute slack for the rounding of either side's angles
                if abs(zenith[j] - zenith[i]) >= reach * (1.0 + 1e-9) + 1e-12:
                    continue
                e_ij = abs(zenith[i] - dec[i] - _HALF_PI) + abs(zenith[j] - dec[j] - _HALF_PI)
                half = 0.5 * (reach + 2.0 * tilt + e_ij + turn_rate * abs(dt[j] - dt[i]))
                half = half * (1.0 + 1e-9) + 1e-9
                if half >= _HALF_PI:
                    out[i] = True
                    out[j] = True
                    continue
                # the haversine of their angle, sin²(dDec/2) + cos cos sin²(dRA/2), from
                # below (sin x >= x - x³/6 on [0, pi/2]), against sin²(half) from above
                # (half²): no trigonometry per pair, and never a pair missed
                x = 0.5 * abs(dec[j] - dec[i])
                d_ra = abs(ra[j] - ra[i])
                if d_ra >= _TWO_PI:
                    d_ra = d_ra % _TWO_PI
                y = 0.5 * min(d_ra, _TWO_PI - d_ra)
                sx = x - x * x * x / 6.0
                sy = y - y * y * y / 6.0
                h_lo = sx * sx + cos_dec[i] * cos_dec[j] * sy * sy
                if h_lo < half * half:
                    out[i] = True
                    out[j] = True
    return out
