"""Sky-map drawings: the GW map with neutrinos and optical candidates on top.

One figure, saved as PNG and PDF, with three parts:

- an all-sky Mollweide panel (equal-area, centred on RA 180° for every event, RA
  increasing to the left, RA and Dec in degrees, like ligo.skymap's "astro degrees
  mollweide"; or RA in hours like its "astro hours mollweide", with ``ra_unit="hours"``
  or ``LLAMA_PLOT_RA_UNIT=hours``) showing the GW probability per deg² as an image, its 50% (dashed) and
  90% (solid) credible contours, and the outline of the zoom panel;
- a zoom panel in Lambert's azimuthal equal-area projection centred on the
  probability-weighted centre of the 90% credible region (of its densest lobe when the
  region is too wide), reaching just past its farthest pixel (:func:`zoom_window`),
  north up, its image interpolated bilinearly between pixel centres;
- a side column with the key and the neutrino list (arrival time Δt, energy, sigma). Neutrinos are numbered in list
  order, the row order of every neutrino table, and drawn as their 90% containment
  circles (radius R90_PER_SIGMA * sigma, the GCN convention) computed as true small
  circles on the sky.

One colour bar serves both panels (same linear scale, its power of ten in its label). Contours are smooth: the
credible level is interpolated bilinearly between pixel centres at the resolution of
the map's pixels on the 90% boundary (:func:`interpolated_levels`) and contoured on a
grid finer than the drawing, never drawn from pixel edges. For a small region they are
computed once in the zoom panel and reprojected onto the all-sky panel.

Speed: the layout is built once per thread and refilled per event
(:mod:`llama.science.skyfigure`), images are coloured in numpy at the panels' pixel
size, the all-sky grid's inverse projection is computed once per process, everything
sits in plain axes with affine transforms, no tight-bbox pass is made, and the PNG and
PDF of one plot share one drawing (:func:`drawing_key`). A PNG draws only what changes
between events and blends the rest, rendered once
(:class:`llama.science.skyfigure.StaticLayer`); a PDF embeds opaque images and
TrueType fonts whose subsets are cut once (:mod:`llama.science.pdffonts`). Texts are
laid out once per string and font and drawn from kept glyphs (PDF:
:func:`llama.science.pdffonts.cached_text`; PNG:
:mod:`llama.science.glyphcache`), with the same bytes and pixels as matplotlib's own
drawing; a map's rows are looked up in a table of every pixel up to order 8
(:data:`DENSE_MAX_ORDER`). A drawing plus its PNG and PDF take ~0.15-0.19 s of CPU on
the loaded test machine (``bench/bench_plots.py``).

Threads: drawing uses :class:`matplotlib.figure.Figure` and the Agg canvas only (no
pyplot, no current figure), and each thread draws on figures of its own (the
template is per thread). Matplotlib's advice for threads is exactly that: separate
figures per thread, a non-interactive backend, no shared artists; the state it still
shares is thread-safe (FreeType fonts are opened per thread, the text-size cache is an
``lru_cache`` per renderer, and each figure has its own renderer; matplotlib's source
notes a possible race on the weak dictionary that holds those caches, never seen
here) or handled here (the rcParams of drawing and saving are set once for all
threads by :func:`llama.science.pdffonts.shared_rc`, and the PDF font subsets are
cached under a lock). So threads draw at the same time with no lock; a test compares
their PNGs and PDFs, byte for byte, with the same events drawn one at a time. Heavy
imports (matplotlib, healpy) happen inside the functions.

Examples
--------
>>> import numpy as np
>>> from llama.science.skymap import SkyMap
>>> from llama.science.plotting import credible_levels
>>> m = SkyMap(probdensity=np.r_[np.full(6, 1 / (2 * np.pi)), np.zeros(6)], nside=1)
>>> credible_levels(m)[:7].round(3)
array([0.167, 0.333, 0.5  , 0.667, 0.833, 1.   , 1.   ])
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llama.science.skymap import SkyMap, uniq_to_order_ipix

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from llama.science.neutrinos import NeutrinoList

__all__ = [
    "DPI",
    "RA_UNIT_VARIABLE",
    "FIGSIZE_IN",
    "Candidate",
    "credible_levels",
    "draw_scatter",
    "drawing_key",
    "energy_text",
    "interpolated_levels",
    "lookup_rows",
    "ra_unit_setting",
    "save_figure",
    "small_circle",
    "text_boxes",
    "boundary_order",
    "zoom_window",
]

#: Size of the scatter plot [inches] and its resolution [dots per inch]: PNGs are
#: ``FIGSIZE_IN * DPI`` pixels (1300 x 520).
FIGSIZE_IN = (13.0, 5.2)
DPI = 100
#: Credible levels drawn as contours (dashed, solid).
CONTOUR_LEVELS = (0.5, 0.9)
#: Bounds on the zoom panel's angular radius [deg].
ZOOM_MIN_HALF_DEG = 1.0
ZOOM_MAX_HALF_DEG = 60.0

#: Environment variable choosing the sky plots' RA unit: "deg" (default) or "hours".
RA_UNIT_VARIABLE = "LLAMA_PLOT_RA_UNIT"

#: Resolution of the images inside a PDF [dots per inch]: the zoom image is sampled
#: every ZOOM_IMAGE_STEP screen pixels (50 per inch), so 72 keeps all it holds and
#: costs ~7 ms less per PDF than 100 (everything else in a PDF is vector).
PDF_IMAGE_DPI = 72

#: zlib level of the PNGs: 1 costs ~25 ms less per save than matplotlib's 6, for
#: files ~10% larger (bench/bench_plots.py).
PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class Candidate:
    """An optical (or other) counterpart candidate: a point with a name.

    Parameters
    ----------
    ra, dec : float
        Direction [deg].
    name : str
        Label drawn beside the marker.
    """

    ra: float
    dec: float
    name: str = ""


def energy_text(tev: float) -> str:
    """A neutrino energy [TeV] for tables and lists: three significant digits,
    thousands written out (never "1e+03").

    Examples
    --------
    >>> energy_text(2.0), energy_text(12.345), energy_text(1.0e3), energy_text(0.0123)
    ('2', '12.3', '1,000', '0.0123')
    """
    return f"{tev:,.0f}" if abs(tev) >= 1000 else f"{tev:.3g}"


# --- the map as a function on the sky -----------------------------------------------


def credible_levels(skymap: SkyMap) -> np.ndarray:
    """Credible level of each row: the probability in rows at least as dense.

    A row belongs to the smallest region holding probability ``p`` when its level is
    ``<= p``.
    """
    order = np.argsort(-skymap.probdensity, kind="stable")
    cum = np.cumsum(_probability(skymap)[order])
    levels = np.empty_like(cum)
    levels[order] = cum / cum[-1]
    return levels


def _rows_of_nested(skymap: SkyMap, order: int, ipix: np.ndarray) -> np.ndarray:
    """Row holding the first finest-order sub-pixel of each NESTED pixel at ``order``
    (-1 where the map has no row); ``order`` may exceed the map's finest."""
    ipix = np.asarray(ipix, dtype=np.int64)
    if not skymap.is_moc:
        shift = 2 * (order - int(np.log2(skymap.nside)))
        return ipix >> shift if shift >= 0 else ipix << -shift
    top, start, end, dense = _nested_ranges(skymap.uniq, order)
    fine = ipix << (2 * (top - order))
    if dense is not None:
        return dense[fine]
    row = np.searchsorted(start, fine, side="right") - 1
    inside = (row >= 0) & (fine < end[np.clip(row, 0, None)])
    return np.where(inside, row, -1)


#: Finest order at which a multi-order map's rows are also kept as a table of every
#: pixel (12 * 4**8 pixels = 3 MB of int32): a drawing looks up ~0.5 M directions, and
#: a gather in the table is several times cheaper than a binary search among the rows.
DENSE_MAX_ORDER = 8

#: id(uniq) -> (uniq, top order, first and past-the-last pixel of each row at top, the
#: row of every pixel at top or None): a drawing looks rows up a dozen times in the
#: same map.
_RANGES: dict[int, tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray | None]] = {}
_RANGES_LOCK = threading.Lock()


def _nested_ranges(
    uniq: np.ndarray, order: int
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray | None]:
    """(top, start, end, dense): the NESTED range of each row of a multi-order map at an
    order ``top`` at least ``order`` and the map's finest, and the row of every pixel at
    ``top`` (-1 where none) when ``top`` <= DENSE_MAX_ORDER, cached per ``uniq`` array."""
    hit = _RANGES.get(id(uniq))
    if hit is not None and hit[0] is uniq and hit[1] >= order:
        return hit[1:]
    row_order, row_ipix = uniq_to_order_ipix(uniq)
    top = max(int(row_order.max()), order)
    start = row_ipix << (2 * (top - row_order))
    end = (row_ipix + 1) << (2 * (top - row_order))
    dense = _dense_rows(start, end, top) if top <= DENSE_MAX_ORDER else None
    with _RANGES_LOCK:
        if len(_RANGES) >= 8:  # a few maps at a time (threads); bounded memory
            _RANGES.pop(next(iter(_RANGES)))
        _RANGES[id(uniq)] = (uniq, top, start, end, dense)  # holds uniq: its id is not reused
    return top, start, end, dense


def _dense_rows(start: np.ndarray, end: np.ndarray, top: int) -> np.ndarray:
    """The row of every NESTED pixel at order ``top`` (-1 where no row covers it), from
    the rows' pixel ranges [start, end) at that order."""
    counts = end - start
    rows = np.arange(len(start), dtype=np.int32)
    npix = 12 << (2 * top)
    if len(start) and start[0] == 0 and end[-1] == npix and np.array_equal(start[1:], end[:-1]):
        return np.repeat(rows, counts)  # the whole sky, rows in pixel order: one repeat
    dense = np.full(npix, -1, dtype=np.int32)
    offset = np.repeat(start - (np.cumsum(counts) - counts), counts)
    dense[offset + np.arange(int(counts.sum()))] = np.repeat(rows, counts)
    return dense


#: id(uniq) -> (uniq, HEALPix order of each row, pixel area of each row [sr]): a drawing
#: asks for them a dozen times, and SkyMap decodes the rows' pixels at each request.
_ORDERS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _orders_and_areas(skymap: SkyMap) -> tuple[np.ndarray, np.ndarray]:
    """(order, area [sr]) of each row of ``skymap``, cached per ``uniq`` array (the
    values of ``skymap.orders`` and ``skymap.pixel_area()``)."""
    if not skymap.is_moc:
        return skymap.orders, skymap.pixel_area()
    hit = _ORDERS.get(id(skymap.uniq))
    if hit is not None and hit[0] is skymap.uniq:
        return hit[1], hit[2]
    orders = skymap.orders
    areas = 4 * np.pi / (12 * 4.0 ** orders.astype(float))  # as SkyMap.pixel_area
    with _RANGES_LOCK:
        if len(_ORDERS) >= 8:  # a few maps at a time (threads); bounded memory
            _ORDERS.pop(next(iter(_ORDERS)))
        _ORDERS[id(skymap.uniq)] = (skymap.uniq, orders, areas)  # holds uniq: id not reused
    return orders, areas


def _max_order(skymap: SkyMap) -> int:
    """``skymap.max_order``, from the cached orders."""
    return int(_orders_and_areas(skymap)[0].max()) if skymap.is_moc else skymap.max_order


def _probability(skymap: SkyMap) -> np.ndarray:
    """``skymap.probability()`` (density x pixel area), from the cached areas."""
    return skymap.probdensity * _orders_and_areas(skymap)[1]


def lookup_rows(skymap: SkyMap, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Row of ``skymap`` containing each direction (-1 where the map has no row).

    Works on multi-order maps without flattening them: directions are indexed at the
    map's finest order and found among the rows' NESTED pixel ranges.

    Examples
    --------
    >>> m = SkyMap(probdensity=np.ones(12) / (4 * np.pi), nside=1)
    >>> lookup_rows(m, np.array([45.0, 0.0]), np.array([60.0, -60.0])).tolist()
    [0, 8]
    """
    import healpy as hp

    order = _max_order(skymap)
    ipix = hp.ang2pix(1 << order, ra_deg, dec_deg, nest=True, lonlat=True)
    return _rows_of_nested(skymap, order, ipix)


def _sample(skymap: SkyMap, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Probability density [sr^-1] at each direction (0 off the map and at NaN)."""
    ok = np.isfinite(ra) & np.isfinite(dec)
    density = np.zeros(ra.shape)
    if ok.any():
        row = lookup_rows(skymap, ra[ok], dec[ok])
        density[ok] = np.where(row >= 0, skymap.probdensity[np.clip(row, 0, None)], 0.0)
    return density


def boundary_order(skymap: SkyMap, levels: np.ndarray, level: float = 0.9) -> int:
    """HEALPix order of the map's pixels on the ``level`` credible boundary.

    The median order of the rows whose credible level lies within ±0.05 of ``level``
    (the map's finest order when none does): the resolution at which the contour is
    known, and at which :func:`interpolated_levels` interpolates.
    """
    near = np.abs(levels - level) <= 0.05
    if not skymap.is_moc or not near.any():
        return _max_order(skymap)
    return int(np.median(_orders_and_areas(skymap)[0][near]))


def interpolated_levels(
    skymap: SkyMap, levels: np.ndarray, ra_deg, dec_deg, order: int, missing: float = 1.0
) -> np.ndarray:
    """Credible level at directions, interpolated bilinearly between the centres of the
    four nearest HEALPix pixels of ``order`` (healpy's interpolation weights).

    Contouring this continuous field gives smooth credible contours instead of the
    staircases of pixel edges. NaN directions give NaN. ``levels`` may be any value per
    row (the zoom image interpolates the probability density the same way, as
    ligo.skymap's bilinear reprojection does); pixels the map lacks count as
    ``missing``.

    Examples
    --------
    >>> m = SkyMap(probdensity=np.ones(48) / (4 * np.pi), nside=2)
    >>> lv = np.linspace(0.0, 1.0, 48)
    >>> v = interpolated_levels(m, lv, np.array([10.0, np.nan]), np.array([5.0, 0.0]), 1)
    >>> bool(0.0 <= v[0] <= 1.0), bool(np.isnan(v[1]))
    (True, True)
    """
    import healpy as hp

    ra = np.asarray(ra_deg, dtype=float)
    dec = np.asarray(dec_deg, dtype=float)
    out = np.full(ra.shape, np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if not ok.any():
        return out
    pix, weight = hp.get_interp_weights(1 << order, ra[ok], dec[ok], nest=True, lonlat=True)
    row = _rows_of_nested(skymap, order, pix.ravel()).reshape(pix.shape)
    value = np.where(row >= 0, levels[np.clip(row, 0, None)], missing)
    out[ok] = (value * weight).sum(axis=0)
    return out


def _row_directions(skymap: SkyMap, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (RA, Dec) [deg] of the given rows."""
    import healpy as hp

    if not skymap.is_moc:
        return hp.pix2ang(skymap.nside, rows, nest=True, lonlat=True)
    order, ipix = uniq_to_order_ipix(skymap.uniq[rows])
    ra = np.empty(len(rows))
    dec = np.empty(len(rows))
    for o in np.unique(order):
        sel = order == o
        ra[sel], dec[sel] = hp.pix2ang(1 << int(o), ipix[sel], nest=True, lonlat=True)
    return ra, dec


# --- geometry -------------------------------------------------------------------------


def _unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


def _angular_distance(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance [deg] (haversine, accurate at small angles)."""
    ra1, dec1, ra2, dec2 = (np.radians(x) for x in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def small_circle(
    ra_deg: float, dec_deg: float, radius_deg: float, n: int = 121
) -> tuple[np.ndarray, np.ndarray]:
    """Points (RA in [0, 360), Dec) [deg] of the circle of angular radius around a point.

    Examples
    --------
    >>> ra, dec = small_circle(10.0, 89.0, 2.0, n=5)
    >>> [round(float(_angular_distance(10.0, 89.0, r, d)), 9) for r, d in zip(ra, dec)]
    [2.0, 2.0, 2.0, 2.0, 2.0]
    """
    ra0, dec0, r = np.radians(ra_deg), np.radians(dec_deg), np.radians(radius_deg)
    bearing = np.linspace(0.0, 2 * np.pi, n)
    dec = np.arcsin(np.sin(dec0) * np.cos(r) + np.cos(dec0) * np.sin(r) * np.cos(bearing))
    ra = ra0 + np.arctan2(
        np.sin(bearing) * np.sin(r) * np.cos(dec0), np.cos(r) - np.sin(dec0) * np.sin(dec)
    )
    return np.degrees(ra) % 360.0, np.degrees(dec)


def zoom_window(
    skymap: SkyMap, levels: np.ndarray, level: float = CONTOUR_LEVELS[-1]
) -> tuple[float, float, float]:
    """Centre (RA, Dec) and angular radius [deg] of a panel around the credible region.

    The centre is the probability-weighted mean direction of the rows inside the
    ``level`` region (the projection centre of the zoom panel, for every event); the
    radius reaches the farthest of them (plus a pixel and a 15% margin), within
    [ZOOM_MIN_HALF_DEG, ZOOM_MAX_HALF_DEG]. A region too wide for that (two lobes on
    opposite sides of the sky, a long arc) is zoomed on its densest part instead: the
    rows within reach of the peak, so the panel shows a whole lobe rather than the
    empty sky between lobes.
    """
    rows = np.flatnonzero(levels <= level)
    if len(rows) == 0:
        rows = np.array([int(np.argmax(skymap.probdensity))])
    ra, dec = _row_directions(skymap, rows)
    weights = _probability(skymap)[rows]
    pixel_radius = float(np.degrees(np.sqrt(_orders_and_areas(skymap)[1][rows].max())))
    ra_c, dec_c = _mean_direction(ra, dec, weights, skymap.probdensity[rows])
    reach = float(_angular_distance(ra_c, dec_c, ra, dec).max()) + pixel_radius
    if 1.15 * reach > ZOOM_MAX_HALF_DEG:
        peak = int(np.argmax(skymap.probdensity[rows]))
        near = _angular_distance(ra[peak], dec[peak], ra, dec) <= ZOOM_MAX_HALF_DEG / 1.15
        ra, dec, weights = ra[near], dec[near], weights[near]
        ra_c, dec_c = _mean_direction(ra, dec, weights, skymap.probdensity[rows][near])
        reach = float(_angular_distance(ra_c, dec_c, ra, dec).max()) + pixel_radius
    half = float(np.clip(1.15 * reach, ZOOM_MIN_HALF_DEG, ZOOM_MAX_HALF_DEG))
    return ra_c, dec_c, half


def _mean_direction(ra, dec, weights, density) -> tuple[float, float]:
    """Weighted mean direction (RA, Dec) [deg]; the densest point when the weights
    balance out (a symmetric ring)."""
    mean = (_unit_vectors(ra, dec) * weights[:, None]).sum(0)
    if np.linalg.norm(mean) < 1e-9:
        peak = int(np.argmax(density))
        return float(ra[peak]), float(dec[peak])
    x, y, z = mean / np.linalg.norm(mean)
    return (
        float(np.degrees(np.arctan2(y, x)) % 360.0),
        float(np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))),
    )


def _break_jumps(x: np.ndarray, y: np.ndarray, jump: float) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN where consecutive x differ by more than ``jump`` (wrap-around seams)."""
    cut = np.flatnonzero(np.abs(np.diff(x)) > jump) + 1
    return np.insert(x, cut, np.nan), np.insert(y, cut, np.nan)


# --- drawing --------------------------------------------------------------------------


def draw_scatter(
    skymap: SkyMap,
    neutrinos: NeutrinoList | None = None,
    dt: np.ndarray | None = None,
    candidates: Sequence[Candidate] = (),
    title: str = "",
    note: str = "",
    key: Any = None,
    fresh: bool = False,
    ra_unit: str | None = None,
) -> Figure:
    """Draw the GW map with neutrinos and candidates; returns an unsaved Figure.

    Parameters
    ----------
    skymap
        The GW sky map (multi-order or flat).
    neutrinos
        Neutrinos to draw, numbered 1, 2, ... in list order, the row order of the
        neutrino tables (None: a map-and-candidates plot with no neutrino layer; an
        empty list: the plot says there were none).
    dt
        Arrival time of each neutrino relative to the GW event [s], for the list.
    candidates
        Optical candidates to overlay.
    title
        Figure title (the caller puts the GraceID in it).
    note
        Small print under the title (e.g. what dt is relative to).
    key
        Any hashable naming these inputs: when this thread's figure already holds the
        drawing made with the same ``key``, it is returned as it is (the PNG and the
        PDF handler of one plot draw once).
    fresh
        Draw on a new figure instead of this thread's reusable one.
    ra_unit
        Label right ascension in "deg" (as ligo.skymap's astro degrees axes) or
        "hours" (hours, minutes, seconds of time, as its astro hours axes); None: the
        :data:`RA_UNIT_VARIABLE` environment variable, else "deg".

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot; save it with :func:`save_figure` before the next call
        from the same thread (which redraws the same figure), unless ``fresh``.

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.skymap import SkyMap
    >>> flat = SkyMap(probdensity=np.full(192, 1 / (4 * np.pi)), nside=4)
    >>> fig = draw_scatter(flat, title="uniform map")
    >>> [round(float(v), 1) for v in fig.get_size_inches()]
    [13.0, 5.2]
    """
    from llama.science.pdffonts import shared_rc
    from llama.science.skyfigure import template_for

    with shared_rc():  # texts measured as they will be drawn
        unit = ra_unit_setting() if ra_unit is None else ra_unit
        template = template_for(neutrinos is not None, bool(candidates), fresh, unit)
        if key is not None and template.key == key:
            return template.fig
        fig = template.draw(skymap, neutrinos, dt, candidates, title, note)
    template.key = key
    return fig


def drawing_key(
    skymap: SkyMap,
    neutrinos: NeutrinoList | None,
    dt: np.ndarray | None,
    candidates: Sequence[Candidate],
    title: str,
    note: str,
    ra_unit: str | None = None,
) -> str:
    """A digest of everything :func:`draw_scatter` draws, for its ``key``: the PNG and
    the PDF handler of one plot compute the same key, so the second one saves the
    drawing the first one made instead of drawing it again.

    Examples
    --------
    >>> flat = SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1)
    >>> drawing_key(flat, None, None, (), "a", "") == drawing_key(flat, None, None, (), "a", "")
    True
    >>> drawing_key(flat, None, None, (), "a", "") == drawing_key(flat, None, None, (), "b", "")
    False
    """
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    arrays = [skymap.probdensity, skymap.uniq, np.asarray(skymap.nside or 0)]
    if neutrinos is not None:
        arrays += [neutrinos.ra, neutrinos.dec, neutrinos.sigma, neutrinos.energy]
    arrays.append(np.asarray([] if dt is None else dt, dtype=float))
    for a in arrays:
        a = np.ascontiguousarray(np.asarray([] if a is None else a))
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    unit = ra_unit_setting() if ra_unit is None else ra_unit
    digest.update(repr((neutrinos is None, list(candidates), title, note, unit)).encode())
    return digest.hexdigest()


def ra_unit_setting() -> str:
    """The RA unit of the sky plots: :data:`RA_UNIT_VARIABLE` ("deg" or "hours"),
    "deg" when unset.

    Examples
    --------
    >>> import os
    >>> os.environ[RA_UNIT_VARIABLE] = "hours"
    >>> ra_unit_setting()
    'hours'
    >>> del os.environ[RA_UNIT_VARIABLE]
    >>> ra_unit_setting()
    'deg'
    """
    import os

    from llama.science.skyfigure import RA_UNITS

    value = os.environ.get(RA_UNIT_VARIABLE, "").strip() or "deg"
    if value not in RA_UNITS:
        raise ValueError(
            f"{RA_UNIT_VARIABLE}={value!r} is not a unit of right ascension; set "
            f"{' or '.join(RA_UNITS)} (or unset it for degrees)"
        )
    return value


def text_boxes(fig: Figure) -> list:
    """Display-space boxes of every visible, non-empty text of ``fig`` (for checking
    that no two overlap and that all lie inside the figure)."""
    from llama.science.skyfigure import text_boxes as boxes

    return boxes(fig)


def save_figure(fig: Figure, path: Any, fmt: str | None = None) -> None:
    """Save ``fig`` with reproducible metadata (no creation date or software stamp).

    ``path`` is a file name or a binary file object; ``fmt`` defaults to the suffix
    of ``path`` ("png" or "pdf"). The figure is saved at its own size (no tight
    bounding box: the layout already keeps everything inside). PDFs embed their fonts
    as TrueType (Type 42), with the font subsets cached (:mod:`llama.science.pdffonts`);
    PNGs are compressed at :data:`PNG_COMPRESS_LEVEL`. Threads may save different
    figures at the same time.
    """
    from llama.science.glyphcache import cached_glyphs
    from llama.science.pdffonts import cached_subsets, cached_text, plain_image_rows, shared_rc

    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    options: dict[str, Any] = {}
    if fmt == "png":
        options = {"metadata": {"Software": None},
                   "pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}}  # fmt: skip
    elif fmt == "pdf":
        options = {"metadata": {"CreationDate": None, "Producer": None, "Creator": "llama"}}
    from llama.science.skyfigure import static_layer

    layer = static_layer(fig) if fmt == "png" else None
    with shared_rc(), cached_subsets(), cached_text(), plain_image_rows(), cached_glyphs():
        if layer is not None and fig.dpi == DPI:
            layer.png(path, PNG_COMPRESS_LEVEL)  # its unchanging parts pre-rendered
        else:
            dpi = PDF_IMAGE_DPI if fmt == "pdf" else DPI
            fig.savefig(path, format=fmt, dpi=dpi, **options)
