"""Sky-map drawings: the GW map with neutrinos and optical candidates on top.

The scatter plot has two panels: a Mollweide all-sky view of the GW probability
density with its 50% and 90% credible contours, and a zoom on the 90% region. Each
neutrino is a circle of radius r90 = R90_PER_SIGMA * sigma (the GCN convention),
coloured by energy and labelled by its arrival time relative to the GW event.
Optical candidates (ZTF) are stars labelled by name.

The map is never flattened: each drawing grid point is looked up in the multi-order
map directly (a binary search over the rows' pixel ranges at the finest order), so a
BAYESTAR map of ~20,000 rows draws as fast as a coarse one, and credible levels are
those of the map itself, not of a resampled copy.

Drawing uses :class:`matplotlib.figure.Figure` and the Agg canvas only (no pyplot, no
global state), and every drawing holds :data:`DRAW_LOCK`, so handlers may run in
worker threads. Heavy imports (matplotlib, healpy) happen inside the functions.

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

from llama.science.constants import R90_PER_SIGMA
from llama.science.skymap import SkyMap, uniq_to_order_ipix

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from llama.science.neutrinos import NeutrinoList

__all__ = [
    "DPI",
    "DRAW_LOCK",
    "FIGSIZE_IN",
    "Candidate",
    "credible_levels",
    "draw_scatter",
    "lookup_rows",
    "save_figure",
    "small_circle",
    "zoom_window",
]

#: Size of the scatter plot [inches] and its resolution [dots per inch]: PNGs are
#: ``FIGSIZE_IN * DPI`` pixels (1300 x 560).
FIGSIZE_IN = (13.0, 5.6)
DPI = 100
#: Credible levels drawn as contours (dashed, solid).
CONTOUR_LEVELS = (0.5, 0.9)
#: Drawing grid of the all-sky panel [points in RA, Dec]: 0.5 degree cells.
ALLSKY_GRID = (720, 360)
#: Drawing grid of the zoom panel [points per side].
ZOOM_GRID = 300
#: Bounds on the zoom panel's half-height [deg].
ZOOM_MIN_HALF_DEG = 1.0
ZOOM_MAX_HALF_DEG = 60.0
#: Colour maps: GW probability density and neutrino energy.
MAP_CMAP = "Blues"
ENERGY_CMAP = "plasma"

#: Held while drawing and saving: matplotlib's font and text caches are shared.
DRAW_LOCK = threading.Lock()


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


# --- the map as a function on the sky -----------------------------------------------


def credible_levels(skymap: SkyMap) -> np.ndarray:
    """Credible level of each row: the probability in rows at least as dense.

    A row belongs to the smallest region holding probability ``p`` when its level is
    ``<= p``.
    """
    order = np.argsort(-skymap.probdensity, kind="stable")
    cum = np.cumsum(skymap.probability()[order])
    levels = np.empty_like(cum)
    levels[order] = cum / cum[-1]
    return levels


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

    ra = np.asarray(ra_deg, dtype=float)
    dec = np.asarray(dec_deg, dtype=float)
    if not skymap.is_moc:
        return hp.ang2pix(skymap.nside, ra, dec, nest=True, lonlat=True).astype(np.int64)
    order, ipix = uniq_to_order_ipix(skymap.uniq)
    max_order = int(order.max())
    shift = 2 * (max_order - order)
    start = ipix << shift
    end = (ipix + 1) << shift
    fine = hp.ang2pix(1 << max_order, ra, dec, nest=True, lonlat=True).astype(np.int64)
    row = np.searchsorted(start, fine, side="right") - 1
    inside = (row >= 0) & (fine < end[np.clip(row, 0, None)])
    return np.where(inside, row, -1)


def _sample(skymap: SkyMap, levels: np.ndarray, ra: np.ndarray, dec: np.ndarray):
    """Probability density [sr^-1] and credible level at each direction."""
    row = lookup_rows(skymap, ra, dec)
    ok = row >= 0
    density = np.where(ok, skymap.probdensity[np.clip(row, 0, None)], 0.0)
    level = np.where(ok, levels[np.clip(row, 0, None)], 1.0)
    return density, level


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


def _wrap180(x) -> np.ndarray:
    """Angles [deg] wrapped into [-180, 180)."""
    return (np.asarray(x, dtype=float) + 180.0) % 360.0 - 180.0


def zoom_window(
    skymap: SkyMap, levels: np.ndarray, level: float = CONTOUR_LEVELS[-1]
) -> tuple[float, float, float]:
    """Centre (RA, Dec) and half-height [deg] of a panel around the credible region.

    The centre is the probability-weighted mean direction of the rows inside the
    ``level`` region; the half-height reaches the farthest of them (plus a margin),
    within [ZOOM_MIN_HALF_DEG, ZOOM_MAX_HALF_DEG].
    """
    rows = np.flatnonzero(levels <= level)
    if len(rows) == 0:
        rows = np.array([int(np.argmax(skymap.probdensity))])
    ra, dec = _row_directions(skymap, rows)
    weights = skymap.probability()[rows]
    mean = (_unit_vectors(ra, dec) * weights[:, None]).sum(0)
    if np.linalg.norm(mean) < 1e-9:  # symmetric about the origin: use the peak instead
        peak = int(np.argmax(skymap.probdensity[rows]))
        ra_c, dec_c = float(ra[peak]), float(dec[peak])
    else:
        x, y, z = mean / np.linalg.norm(mean)
        ra_c = float(np.degrees(np.arctan2(y, x)) % 360.0)
        dec_c = float(np.degrees(np.arcsin(np.clip(z, -1.0, 1.0))))
    pixel_radius = np.degrees(np.sqrt(skymap.pixel_area()[rows].max()))
    reach = float(_angular_distance(ra_c, dec_c, ra, dec).max()) + pixel_radius
    half = float(np.clip(1.15 * reach, ZOOM_MIN_HALF_DEG, ZOOM_MAX_HALF_DEG))
    return ra_c, dec_c, half


# --- drawing --------------------------------------------------------------------------


def _energy_norm(energy_tev: np.ndarray):
    from matplotlib.colors import LogNorm

    if len(energy_tev) == 0:
        return LogNorm(vmin=1.0, vmax=1e3)
    lo, hi = float(energy_tev.min()), float(energy_tev.max())
    return LogNorm(vmin=lo / 1.5, vmax=hi * 1.5)


def _break_jumps(x: np.ndarray, y: np.ndarray, jump: float) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN where consecutive x differ by more than ``jump`` (wrap-around seams)."""
    cut = np.flatnonzero(np.abs(np.diff(x)) > jump) + 1
    return np.insert(x, cut, np.nan), np.insert(y, cut, np.nan)


class _Panel:
    """Coordinate mapping of one panel: (RA, Dec) [deg] -> axes data coordinates."""

    def __init__(self, ax: Axes, allsky: bool, ra_c: float = 180.0, box=None) -> None:
        self.ax = ax
        self.allsky = allsky
        self.ra_c = ra_c
        #: (RA half-width, Dec low, Dec high) of a zoom panel [deg]
        self.box = box

    def xy(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        ra = np.asarray(ra, dtype=float)
        dec = np.asarray(dec, dtype=float)
        if self.allsky:  # Mollweide: radians, RA increasing to the left, ra_c central
            return -np.radians(_wrap180(ra - self.ra_c)), np.radians(dec)
        return self.ra_c + _wrap180(ra - self.ra_c), dec

    def contains(self, ra, dec) -> np.ndarray:
        """Whether each direction falls inside a zoom panel (never for all-sky)."""
        ra = np.asarray(ra, dtype=float)
        if self.box is None:
            return np.zeros(ra.shape, dtype=bool)
        ra_half, dec_lo, dec_hi = self.box
        dec = np.asarray(dec, dtype=float)
        return (np.abs(_wrap180(ra - self.ra_c)) <= ra_half) & (dec >= dec_lo) & (dec <= dec_hi)

    def curve(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.xy(ra, dec)
        return _break_jumps(x, y, np.pi if self.allsky else 180.0)


def _draw_map(panel: _Panel, skymap: SkyMap, levels: np.ndarray, ra, dec, shape) -> None:
    """Density image and credible contours on a (RA, Dec) grid of cell centres."""
    density, level = _sample(skymap, levels, ra.ravel(), dec.ravel())
    density = density.reshape(shape)
    level = level.reshape(shape)
    x, y = panel.xy(ra, dec)
    if not panel.allsky:  # RA unwrapped around the centre, monotonic along x
        x = np.broadcast_to(np.unwrap(x[0], period=360.0)[None, :], x.shape)
    panel.ax.pcolormesh(x, y, density, cmap=MAP_CMAP, shading="nearest", rasterized=True)
    if level.min() < CONTOUR_LEVELS[-1] < level.max():
        panel.ax.contour(
            x, y, level, levels=list(CONTOUR_LEVELS), colors="k",
            linestyles=["--", "-"], linewidths=[0.8, 1.1],
        )  # fmt: skip


def _draw_neutrinos(panel: _Panel, neutrinos, dt: np.ndarray, cmap, norm, label: np.ndarray):
    """r90 circles coloured by energy, centre markers, and dt labels where ``label``."""
    if neutrinos is None or len(neutrinos) == 0:
        return None
    energy_tev = neutrinos.energy / 1000.0
    colors = cmap(norm(energy_tev))
    for i in range(len(neutrinos)):
        ra_c, dec_c = small_circle(
            neutrinos.ra[i], neutrinos.dec[i], R90_PER_SIGMA * neutrinos.sigma[i]
        )
        panel.ax.plot(*panel.curve(ra_c, dec_c), color=colors[i], linewidth=1.4)
    x, y = panel.xy(neutrinos.ra, neutrinos.dec)
    points = panel.ax.scatter(x, y, c=energy_tev, cmap=cmap, norm=norm, marker="+", s=40, zorder=4)
    for xi, yi, dti in zip(x[label], y[label], dt[label], strict=True):
        panel.ax.annotate(
            f"{dti:+.0f} s", (xi, yi), xytext=(5, 5), textcoords="offset points",
            fontsize=7, color="0.15", annotation_clip=True,
        )  # fmt: skip
    return points


def _draw_candidates(panel: _Panel, candidates: Sequence[Candidate], label: np.ndarray) -> None:
    if not candidates:
        return
    x, y = panel.xy([c.ra for c in candidates], [c.dec for c in candidates])
    panel.ax.scatter(
        x, y, marker="*", s=60, color="tab:green", edgecolors="k", linewidths=0.4, zorder=5
    )
    for i in np.flatnonzero(label):
        panel.ax.annotate(
            candidates[i].name, (x[i], y[i]), xytext=(4, -9), textcoords="offset points",
            fontsize=6, color="darkgreen", annotation_clip=True,
        )  # fmt: skip


def _ra_formatter(panel: _Panel):
    from matplotlib.ticker import FuncFormatter

    if panel.allsky:
        return FuncFormatter(lambda x, _pos: f"{(panel.ra_c - np.degrees(x)) % 360:.0f}°")
    return FuncFormatter(lambda x, _pos: f"{x % 360:g}°")


def _allsky_panel(fig: Figure, spec, skymap: SkyMap, levels: np.ndarray, ra_c: float) -> _Panel:
    """Mollweide view centred on RA ``ra_c`` [deg]."""
    ax = fig.add_subplot(spec, projection="mollweide")
    panel = _Panel(ax, allsky=True, ra_c=ra_c)
    nx, ny = ALLSKY_GRID
    ra = ra_c - 180.0 + (np.arange(nx) + 0.5) * 360.0 / nx
    dec = -90.0 + (np.arange(ny) + 0.5) * 180.0 / ny
    ra_g, dec_g = np.meshgrid(ra[::-1] % 360.0, dec)  # x = -(RA - ra_c) increasing
    _draw_map(panel, skymap, levels, ra_g, dec_g, ra_g.shape)
    ax.grid(True, color="0.6", linewidth=0.4)
    ax.xaxis.set_major_formatter(_ra_formatter(panel))
    ax.tick_params(axis="x", labelsize=7)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("Right ascension [deg]")
    ax.set_ylabel("Declination [deg]")
    ax.set_title("All sky (Mollweide)", fontsize=10)
    return panel


def _zoom_panel(fig: Figure, spec, skymap: SkyMap, levels: np.ndarray, window) -> _Panel:
    """Plate carrée view of ``window`` = (RA, Dec, half-height) [deg]."""
    ax = fig.add_subplot(spec)
    ra_c, dec_c, half = window
    dec_lo, dec_hi = max(dec_c - half, -90.0), min(dec_c + half, 90.0)
    cos_c = max(np.cos(np.radians(dec_c)), 0.2)
    ra_half = min(half / cos_c, 180.0)
    panel = _Panel(ax, allsky=False, ra_c=ra_c, box=(ra_half, dec_lo, dec_hi))
    ra = ra_c + np.linspace(-ra_half, ra_half, ZOOM_GRID)
    dec = np.linspace(dec_lo, dec_hi, ZOOM_GRID)
    ra_g, dec_g = np.meshgrid(ra % 360.0, dec)
    _draw_map(panel, skymap, levels, ra_g, dec_g, ra_g.shape)
    ax.set_xlim(ra_c + ra_half, ra_c - ra_half)  # RA increases to the left
    ax.set_ylim(dec_lo, dec_hi)
    ax.set_aspect(1.0 / cos_c, adjustable="box")
    ax.xaxis.set_major_formatter(_ra_formatter(panel))
    ax.tick_params(labelsize=8)
    ax.grid(True, color="0.7", linewidth=0.4)
    ax.set_xlabel("Right ascension [deg]")
    ax.set_ylabel("Declination [deg]")
    ax.set_title(f"90% region, {skymap.area90():.0f} deg²", fontsize=10)
    return panel


def _legend(ax: Axes, has_neutrinos: bool, has_candidates: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="k", linestyle="--", linewidth=0.8, label="50% credible"),
        Line2D([], [], color="k", linestyle="-", linewidth=1.1, label="90% credible"),
    ]
    if has_neutrinos:
        handles.append(
            Line2D([], [], color="tab:purple", marker="+", linewidth=1.4,
                   label=f"IceCube ν, r90 = {R90_PER_SIGMA}σ")
        )  # fmt: skip
    if has_candidates:
        handles.append(
            Line2D([], [], color="tab:green", marker="*", linestyle="", markeredgecolor="k",
                   label="ZTF candidate")
        )  # fmt: skip
    ax.legend(
        handles=handles, loc="lower left", bbox_to_anchor=(-0.03, -0.1), fontsize=7,
        framealpha=0.9,
    )  # fmt: skip


def draw_scatter(
    skymap: SkyMap,
    neutrinos: NeutrinoList | None = None,
    dt: np.ndarray | None = None,
    candidates: Sequence[Candidate] = (),
    title: str = "",
    note: str = "",
) -> Figure:
    """Draw the GW map with neutrinos and candidates; returns an unsaved Figure.

    Parameters
    ----------
    skymap
        The GW sky map (multi-order or flat).
    neutrinos
        Neutrinos to draw (None: a map-and-candidates plot with no neutrino layer).
    dt
        Arrival time of each neutrino relative to the GW event [s], for the labels.
    candidates
        Optical candidates to overlay.
    title
        Figure title (the caller puts the GraceID in it).
    note
        Small print under the title (e.g. what dt is relative to).

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot; save it with :func:`save_figure`.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)
    grid = fig.add_gridspec(
        1, 3, width_ratios=[2.15, 1.0, 0.04], wspace=0.18,
        left=0.04, right=0.95, bottom=0.1, top=0.84,
    )  # fmt: skip
    levels = credible_levels(skymap)
    window = zoom_window(skymap, levels)
    centre = (round(window[0] / 30.0) * 30.0) % 360.0  # keeps the meridians round
    zoom = _zoom_panel(fig, grid[0, 1], skymap, levels, window)
    allsky = _allsky_panel(fig, grid[0, 0], skymap, levels, centre)
    have_nu = neutrinos is not None and len(neutrinos) > 0
    points = _draw_neutrino_layers((allsky, zoom), neutrinos if have_nu else None, dt)
    cand_ra = np.array([c.ra for c in candidates], dtype=float)
    cand_dec = np.array([c.dec for c in candidates], dtype=float)
    in_zoom = zoom.contains(cand_ra, cand_dec)
    _draw_candidates(zoom, candidates, in_zoom)
    _draw_candidates(allsky, candidates, ~in_zoom & (len(candidates) <= 20))
    cax = fig.add_subplot(grid[0, 2])
    if points is not None:
        fig.colorbar(points, cax=cax).set_label("Neutrino energy [TeV]")
    else:
        cax.set_axis_off()
    _legend(allsky.ax, have_nu, bool(candidates))
    if neutrinos is not None and not have_nu:
        note = "; ".join(filter(None, [note, "no IceCube neutrinos in the ±500 s window"]))
    fig.suptitle(title, fontsize=13, y=0.975)
    if note:
        fig.text(0.5, 0.905, note, ha="center", fontsize=8, color="0.3")
    return fig


def _draw_neutrino_layers(panels: Sequence[_Panel], neutrinos, dt):
    """Neutrinos on every panel; all-sky labels only for those outside the zoom."""
    import matplotlib as mpl

    if neutrinos is None:
        return None
    dt = np.zeros(len(neutrinos)) if dt is None else np.asarray(dt, dtype=float)
    cmap = mpl.colormaps[ENERGY_CMAP]
    norm = _energy_norm(neutrinos.energy / 1000.0)
    allsky, zoom = panels
    in_zoom = zoom.contains(neutrinos.ra, neutrinos.dec)
    _draw_neutrinos(allsky, neutrinos, dt, cmap, norm, ~in_zoom)
    return _draw_neutrinos(zoom, neutrinos, dt, cmap, norm, in_zoom)


def save_figure(fig: Figure, path: str | Path, fmt: str | None = None) -> None:
    """Save ``fig`` with reproducible metadata (no creation date or software stamp).

    ``fmt`` defaults to the suffix of ``path`` ("png" or "pdf").
    """
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    metadata: dict[str, Any] = {"Software": None} if fmt == "png" else {}
    if fmt == "pdf":
        metadata = {"CreationDate": None, "Producer": None, "Creator": "llama"}
    fig.savefig(path, format=fmt, dpi=DPI, metadata=metadata)
