"""The scatter figure's layout, built once per thread and redrawn per event.

:func:`llama.science.plotting.draw_scatter` is the public entry point; this module holds
how the figure is put together. A :class:`ScatterTemplate` creates the figure, its
axes, the all-sky graticule and labels, the key and the colour bar frame once; each
event then only replaces the images' pixels and the event's own artists (contours, zoom
graticule, neutrinos, candidates, texts). Creating axes and legends is most of what a
fresh matplotlib figure costs, so a template makes a drawing several times cheaper
(the key is drawn by hand: a matplotlib legend lays itself out again at every save).
The template's unchanging artists that no event's artist meets (captions, Dec labels,
the key, the colour ramp and frames) are also rendered once for the PNGs
(:class:`StaticLayer`): texts are most of what a save costs.

Layout (inches from the lower-left corner of a 13 x 5.2 in figure): the all-sky
Mollweide panel on the left with the colour bar under it, the zoom panel in the middle,
and a side column with the key and the numbered neutrino list. Every text is placed
inside the figure, and labels beside points go through :class:`Labeller`, which keeps
their boxes apart from each other and from every other text.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llama.science.constants import R90_PER_SIGMA
from llama.science.plotting import (
    CONTOUR_LEVELS,
    DPI,
    FIGSIZE_IN,
    Candidate,
    _break_jumps,
    _max_order,
    _orders_and_areas,
    _probability,
    _row_directions,
    _rows_of_nested,
    boundary_order,
    credible_levels,
    energy_text,
    interpolated_levels,
    lookup_rows,
    small_circle,
    zoom_window,
)
from llama.science.skymap import SkyMap
from llama.science.skyproj import Mollweide, ZenithalEqualArea, wrap180

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from llama.science.neutrinos import NeutrinoList

__all__ = [
    "Labeller",
    "ScatterTemplate",
    "StaticLayer",
    "fit_text",
    "png_bytes",
    "static_layer",
    "template_for",
    "text_boxes",
]

#: Contour grid [points per side of the zoom panel; across the all-sky panel].
ZOOM_CONTOUR_GRID = 161
ALLSKY_CONTOUR_GRID = (361, 181)
#: Screen pixels per sample of the zoom image's density (drawn bilinearly between).
ZOOM_IMAGE_STEP = 2
#: Finest HEALPix order used for all-sky contours (their grid is ~1 deg).
ALLSKY_CONTOUR_MAX_ORDER = 7
#: Colour map of the GW probability (white where there is none, so it prints well).
MAP_CMAP = "Blues"
#: Colours of the overlays: neutrinos, optical candidates, contours, graticule.
NEUTRINO_COLOR = "#d62728"
CANDIDATE_COLOR = "#2ca02c"
CANDIDATE_TEXT_COLOR = "#1a5e1a"
CONTOUR_COLOR = "k"
GRID_COLOR = "0.6"
#: Backing of the RA labels that sit on the all-sky map.
LABEL_BACKING = {"boxstyle": "round,pad=0.12", "facecolor": "white", "edgecolor": "none",
                 "alpha": 0.75}  # fmt: skip
#: Neutrinos listed in the side column (the tables list them all).
MAX_LISTED = 14
#: Candidates named on the all-sky panel at most (the zoom names all of its own).
MAX_NAMED_ALLSKY = 20

#: Units the right ascension may be labelled in: degrees (as ligo.skymap's "astro
#: degrees" axes) or hours, minutes and seconds of time (as its "astro hours" axes).
RA_UNITS = ("deg", "hours")

#: Panel rectangles [in]: (left, bottom, width, height).
ALLSKY_IN = (0.55, 1.2, 6.1, 3.05)
COLORBAR_IN = (1.6, 0.62, 4.0, 0.13)
ZOOM_IN = (7.4, 0.75, 3.3, 3.3)
SIDE_LEFT_IN = 10.95
#: Top of the side column [figure fraction].
SIDE_TOP = 0.84

_DEG2_PER_SR = (180.0 / np.pi) ** 2

_local = threading.local()


def template_for(
    has_neutrinos: bool, has_candidates: bool, fresh: bool = False, ra_unit: str = "deg"
):
    """This thread's template for a legend variant and RA unit (a new one when
    ``fresh``)."""
    if fresh:
        return ScatterTemplate(has_neutrinos, has_candidates, ra_unit)
    cache = _local.__dict__.setdefault("templates", {})
    key = (has_neutrinos, has_candidates, ra_unit)
    if key not in cache:
        cache[key] = ScatterTemplate(has_neutrinos, has_candidates, ra_unit)
    return cache[key]


def ra_text(ra_deg: float, unit: str, step_deg: float = 60.0) -> str:
    """A right ascension label in degrees ("135°") or hours ("9ʰ", "9ʰ20ᵐ",
    "9ʰ20ᵐ30ˢ": as many fields as a graticule step of ``step_deg`` needs).

    Examples
    --------
    >>> ra_text(135.0, "deg"), ra_text(135.0, "hours"), ra_text(140.0, "hours", 2.5)
    ('135°', '9ʰ', '9ʰ20ᵐ')
    >>> ra_text(0.125, "hours", 0.125), ra_text(359.9999999, "hours", 0.25)
    ('0ʰ00ᵐ30ˢ', '0ʰ00ᵐ')
    """
    if unit == "deg":
        return f"{round(ra_deg % 360.0, 6):g}°"
    seconds = round(ra_deg % 360.0 * 240.0) % 86400  # 1 deg = 4 min = 240 s of time
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    step_s = step_deg * 240.0
    if step_s % 3600 < 0.5:
        return f"{h}ʰ"
    if step_s % 60 < 0.5:
        return f"{h}ʰ{m:02d}ᵐ"
    return f"{h}ʰ{m:02d}ᵐ{sec:02d}ˢ"


def _rect(inches: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A rectangle in inches as figure fractions."""
    left, bottom, width, height = inches
    fw, fh = FIGSIZE_IN
    return (left / fw, bottom / fh, width / fw, height / fh)


def _bare_axes(fig: Figure, rect, frame: bool):
    """Axes with no tick machinery (cheaper to draw), optionally framed."""
    ax = fig.add_axes(_rect(rect))
    ax.xaxis.set_visible(False)
    ax.yaxis.set_visible(False)
    ax.set_frame_on(frame)
    ax.patch.set_visible(False)
    return ax


def _allsky_pixels(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(RA, Dec) [deg] at the centre of each pixel of the all-sky image (NaN outside
    the ellipse), top row first."""
    moll = Mollweide()
    x = ((np.arange(width) + 0.5) / width * 2 - 1) * moll.half_width
    y = (1 - (np.arange(height) + 0.5) / height * 2) * moll.half_height
    return moll.inverse(*np.meshgrid(x, y))


def _density_deg2(
    skymap: SkyMap, ra: np.ndarray, dec: np.ndarray, ipix_cache: dict | None = None
) -> np.ndarray:
    """GW probability per deg² at each direction (0 off the map and at NaN).

    ``ipix_cache`` keeps the NESTED pixel of each direction per HEALPix order, for a
    grid of directions that does not change between calls (the all-sky image's)."""
    import healpy as hp

    ok = np.isfinite(ra)
    out = np.zeros(ra.shape)
    if ok.any():
        order = _max_order(skymap)
        ipix = None if ipix_cache is None else ipix_cache.get(order)
        if ipix is None:
            ipix = hp.ang2pix(1 << order, ra[ok], dec[ok], nest=True, lonlat=True)
            if ipix_cache is not None:
                ipix_cache[order] = ipix
        row = _rows_of_nested(skymap, order, ipix)
        out[ok] = np.where(row >= 0, skymap.probdensity[np.clip(row, 0, None)], 0.0)
    return out / _DEG2_PER_SR


def _smooth_density_deg2(skymap: SkyMap, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """GW probability per deg², interpolated bilinearly between the centres of the
    pixels at the order of the map's pixel at each direction (so a multi-order map is
    smooth at every resolution it has; 0 off the map and at NaN)."""
    ok = np.isfinite(ra) & np.isfinite(dec)
    out = np.zeros(ra.shape)
    if not ok.any():
        return out
    rows = lookup_rows(skymap, ra[ok], dec[ok])
    top = _max_order(skymap)
    orders = np.full(rows.shape, top)
    if skymap.is_moc:
        orders = np.where(rows >= 0, _orders_and_areas(skymap)[0][np.clip(rows, 0, None)], top)
    values = np.empty(rows.shape)
    for order in np.unique(orders):
        sel = orders == order
        values[sel] = interpolated_levels(
            skymap, skymap.probdensity, ra[ok][sel], dec[ok][sel], int(order), missing=0.0
        )
    out[ok] = values
    return out / _DEG2_PER_SR


@dataclass
class Panel:
    """One drawing panel: its axes, its projection, its extent in plane units."""

    ax: Axes
    projection: Any
    reach: float  # half-width of the zoom panel in plane units (unused for all-sky)
    seam: float | None = None  # plane-x jump marking an RA wrap (all-sky only)

    def xy(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        return self.projection.forward(ra, dec)

    def curve(self, ra, dec) -> np.ndarray:
        """A polyline on the sky in plane coordinates, broken at the RA seam."""
        x, y = self.xy(ra, dec)
        if self.seam is not None:
            x, y = _break_jumps(x, y, self.seam)
        return np.column_stack([x, y])

    def contains(self, ra, dec) -> np.ndarray:
        """Whether directions fall inside a zoom panel's square."""
        x, y = self.xy(np.atleast_1d(ra), np.atleast_1d(dec))
        with np.errstate(invalid="ignore"):
            return (np.abs(x) <= self.reach) & (np.abs(y) <= self.reach)


# --- text placement -------------------------------------------------------------------


def text_boxes(fig: Figure, renderer=None) -> list:
    """Display-space boxes of every visible, non-empty text of ``fig``.

    Texts inside hidden artists (an axes' hidden tick labels) do not count. The figure
    is laid out first (a draw without rendering), since a legend places its texts only
    when drawn. Used by the label placement and by tests that check that no two texts
    overlap and that all stay inside the figure.
    """
    renderer = renderer or _renderer(fig)
    fig.draw_without_rendering()
    return [t.get_window_extent(renderer) for t in _visible_texts(fig)]


def _visible_texts(artist):
    from matplotlib.text import Text

    if not artist.get_visible():
        return
    if isinstance(artist, Text):
        if artist.get_text().strip():
            yield artist
        return
    for child in artist.get_children():
        yield from _visible_texts(child)


def _renderer(fig: Figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    return canvas.get_renderer()


def fit_text(text, limit_px: float, renderer) -> None:
    """Shorten a Text until it is at most ``limit_px`` wide, ending it in an ellipsis
    (the longest prefix that fits, found by bisection on the renderer's measure)."""
    s = text.get_text()
    if text.get_window_extent(renderer).width <= limit_px:
        return
    lo, hi = 0, len(s)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        text.set_text(s[:mid].rstrip() + "…")
        if text.get_window_extent(renderer).width <= limit_px:
            lo = mid
        else:
            hi = mid - 1
    text.set_text(s[:lo].rstrip() + "…")


class Labeller:
    """Places short labels beside points so that no two text boxes overlap and each
    stays inside its panel: tries eight directions at growing distances and gives up
    (returns False, drawing nothing) when none is free.

    Parameters
    ----------
    fig
        The figure (its Agg renderer measures the texts).
    taken
        Display-space boxes already occupied.
    """

    OFFSETS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
    DISTANCES_PT = (4.0, 8.0, 13.0)

    def __init__(self, fig: Figure, taken: Sequence[Any] = ()) -> None:
        self.renderer = _renderer(fig)
        self.taken = list(taken)
        self.placed: list[Any] = []

    def reserve(self, artist) -> None:
        """Count ``artist``'s box (a text already drawn) as taken."""
        self.taken.append(artist.get_window_extent(self.renderer))

    def place(self, ax: Axes, x: float, y: float, text: str, **style) -> bool:
        """Annotate (x, y) of ``ax`` with ``text`` where it fits; False if nowhere.

        The text is measured once; each candidate position's box is that box moved by
        the offset and the alignment (measuring every candidate again cost more than
        the rest of the placement)."""
        from matplotlib.transforms import Bbox

        panel = ax.get_window_extent(self.renderer)
        label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 0),
                            ha="left", va="bottom", annotation_clip=False,
                            **style)  # fmt: skip
        first = label.get_window_extent(self.renderer)  # left, bottom at the point
        width, height = first.width, first.height
        px_per_pt = self.renderer.points_to_pixels(1.0)
        for distance in self.DISTANCES_PT:
            for dx, dy in self.OFFSETS:
                x0 = first.x0 + dx * distance * px_per_pt - (1 - dx) * width / 2
                y0 = first.y0 + dy * distance * px_per_pt - (1 - dy) * height / 2
                box = Bbox.from_bounds(x0, y0, width, height).padded(1.0)
                inside = (
                    box.x0 >= panel.x0 and box.x1 <= panel.x1
                    and box.y0 >= panel.y0 and box.y1 <= panel.y1
                )  # fmt: skip
                if inside and not any(box.overlaps(t) for t in self.taken):
                    label.set_position((dx * distance, dy * distance))
                    label.set_horizontalalignment({1: "left", -1: "right", 0: "center"}[dx])
                    label.set_verticalalignment({1: "bottom", -1: "top", 0: "center"}[dy])
                    self.taken.append(box)
                    self.placed.append(label)
                    return True
        label.remove()
        return False


# --- the PNG's pre-rendered layer ------------------------------------------------------


class StaticLayer:
    """The artists of a template that are the same for every event and lie clear of
    every event's artists (axis captions, Dec labels, the key, frames, the colour
    ramp, the sky's outline), rendered once and laid over each event's PNG.

    A PNG save then draws only the rest (the images, the graticule, the event's
    artists) and blends the stored pixels over it, the way Agg would have drawn them
    (Agg's buffer holds straight, not premultiplied, alpha). Texts are most of a
    save's cost and these are a third of the figure's text. The PDF still draws every
    artist as vectors; the figure keeps every artist, so measurements (text boxes)
    see them all.

    Parameters
    ----------
    fig
        The template's figure, fully built.
    per_event
        Artists that change between events, or lie under an event's artists: drawn
        with each event, never pre-rendered.
    """

    def __init__(self, fig: Figure, per_event: Sequence[Any]) -> None:
        from matplotlib.axes import Axes

        self.fig = fig
        skip = {id(a) for a in per_event} | {id(fig.patch)}
        self.artists: list[Any] = []
        for artist in fig.get_children():
            children = artist.get_children() if isinstance(artist, Axes) else [artist]
            if isinstance(artist, Axes) and not artist.get_frame_on():
                # an axes draws no spines when its frame is off, visible or not
                skip |= {id(spine) for spine in artist.spines.values()}
            for child in children:
                if id(child) not in skip and child is not getattr(artist, "patch", None):
                    if child.get_visible():
                        self.artists.append(child)
        self._pixels: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _render(self, canvas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat indices, RGB, alpha) of the layer's non-transparent pixels."""
        canvas.draw()  # lays the figure out (transforms, the renderer's size)
        renderer = canvas.get_renderer()
        renderer.clear()  # transparent
        for artist in self.artists:
            artist.draw(renderer)
        rgba = np.asarray(renderer.buffer_rgba()).reshape(-1, 4)
        index = np.flatnonzero(rgba[:, 3])
        return index, rgba[index, :3].astype(np.uint32), rgba[index, 3:].astype(np.uint32)

    def png(self, path: Any, compress_level: int) -> None:
        """Save the figure as a PNG: the per-event artists drawn, this layer blended
        over them."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig = self.fig
        canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
        if self._pixels is None:
            self._pixels = self._render(canvas)
        for artist in self.artists:
            artist.set_visible(False)
        try:
            canvas.draw()
        finally:
            for artist in self.artists:
                artist.set_visible(True)
        index, rgb, alpha = self._pixels
        height, width = int(fig.bbox.height), int(fig.bbox.width)
        out = np.array(np.asarray(canvas.buffer_rgba())[..., :3])  # the figure is opaque
        flat = out.reshape(-1, 3)
        under = flat[index].astype(np.uint32)
        flat[index] = ((rgb * alpha + under * (255 - alpha) + 127) // 255).astype(np.uint8)
        assert out.shape == (height, width, 3)
        data = png_bytes(out, fig.dpi, compress_level)
        if hasattr(path, "write"):
            path.write(data)
        else:
            with open(path, "wb") as file:
                file.write(data)


def png_bytes(rgb: np.ndarray, dpi: float, compress_level: int) -> bytes:
    """An RGB image (height, width, 3) of uint8 as PNG file bytes, at ``dpi``.

    Rows are stored unfiltered and deflated at ``compress_level``: on our plots (large
    flat areas) that is as small as Pillow's PNG at the same level, whose adaptive
    filter choice costs more than the compression itself (~9 against ~20 ms for a
    1300 x 520 figure).

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    >>> back = Image.open(io.BytesIO(png_bytes(rgb, 100, 1)))
    >>> bool((np.asarray(back) == rgb).all()), back.info["dpi"][0].__round__()
    (True, 100)
    """
    import struct
    import zlib

    height, width, _ = rgb.shape
    rows = np.empty((height, 1 + 3 * width), np.uint8)
    rows[:, 0] = 0  # filter type "None" for every row
    rows[:, 1:] = rgb.reshape(height, 3 * width)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    per_metre = round(dpi / 0.0254)
    return b"".join([
        b"\x89PNG\r\n\x1a\n",
        chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),  # 8-bit RGB
        chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)),
        chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level)),
        chunk(b"IEND", b""),
    ])  # fmt: skip


_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def static_layer(fig: Figure) -> StaticLayer | None:
    """The pre-rendered PNG layer of a scatter figure (None for any other figure)."""
    return _LAYERS.get(fig)


# --- the template ----------------------------------------------------------------------


class ScatterTemplate:
    """The figure, its axes and its static artists; :meth:`draw` fills in an event.

    Parameters
    ----------
    has_neutrinos, has_candidates
        Which layers the legend lists (a neutrino layer may still be empty).
    ra_unit
        Right ascension labelled in "deg" or "hours" (see :data:`RA_UNITS`).
    """

    def __init__(self, has_neutrinos: bool, has_candidates: bool, ra_unit: str = "deg") -> None:
        import matplotlib as mpl
        from matplotlib.figure import Figure

        if ra_unit not in RA_UNITS:
            raise ValueError(f"RA unit {ra_unit!r}: choose one of {', '.join(RA_UNITS)}")
        self.has_neutrinos = has_neutrinos
        self.has_candidates = has_candidates
        self.ra_unit = ra_unit
        self.fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)
        self.cmap = mpl.colormaps[MAP_CMAP]
        self.key: Any = None
        self._event_artists: list[Any] = []
        self._build_allsky()
        self._build_zoom()
        self._build_colorbar()
        self._build_side_column()
        fig = self.fig
        self.title = fig.text(0.5, 0.97, "", ha="center", va="top", fontsize=12, weight="bold")
        self.note = fig.text(0.5, 0.915, "", ha="center", va="top", fontsize=7.5, color="0.3")
        self.static_boxes = text_boxes(fig)
        per_event = [self.title, self.note, self.list_title, self.list_body, self.zoom_title,
                     self.colorbar_label, self.allsky_image, self.zoom_image,
                     *self._under_event]  # fmt: skip
        _LAYERS[fig] = StaticLayer(fig, per_event)

    # -- static parts ------------------------------------------------------------------

    def _build_allsky(self) -> None:
        from matplotlib.collections import LineCollection
        from matplotlib.patches import Ellipse

        moll = Mollweide()
        ax = _bare_axes(self.fig, ALLSKY_IN, frame=False)
        ax.set_xlim(-moll.half_width, moll.half_width)
        ax.set_ylim(-moll.half_height, moll.half_height)
        self.allsky = Panel(ax, moll, reach=np.inf, seam=moll.half_width)
        width_px = round(ALLSKY_IN[2] * DPI)
        self.allsky_pixels = _allsky_pixels(width_px, width_px // 2)
        self._allsky_ipix: dict[int, np.ndarray] = {}  # HEALPix order -> pixels of the grid
        extent = (-moll.half_width, moll.half_width, -moll.half_height, moll.half_height)
        self.allsky_image = ax.imshow(
            np.zeros((2, 2, 4), np.uint8), extent=extent, origin="upper",
            interpolation="none", aspect="auto", zorder=0,
        )  # fmt: skip
        outline = Ellipse((0, 0), 2 * moll.half_width, 2 * moll.half_height, fill=False,
                          lw=0.9, ec="0.25", zorder=6)  # fmt: skip
        ax.add_patch(outline)
        # the outline, the graticule and the RA labels meet the event's artists (numbers
        # over the outline, contours and neutrinos over the rest), so they are drawn
        # with each event in their order, never pre-rendered
        self._under_event = [outline]
        self.allsky_image.set_clip_path(outline)
        lines = [self.allsky.curve(np.full(91, r), np.linspace(-90, 90, 91))
                 for r in np.arange(0.0, 360.0, 30.0)]  # fmt: skip
        run = moll.ra_centre - 179.999 + np.linspace(0, 359.998, 181)
        lines += [self.allsky.curve(run, np.full(181, d)) for d in (-60, -30, 0, 30, 60)]
        self._under_event += [ax.add_collection(
            LineCollection(lines, colors=GRID_COLOR, linewidths=0.45, zorder=1), autolim=False
        )]  # fmt: skip
        for ra in np.arange(0.0, 360.0, 60.0):
            x, y = moll.forward(ra, 0.0)
            # on the equator, as ligo.skymap draws them: a pale backing keeps them legible
            # over the map and the contours, and they stay under the neutrinos
            self._under_event.append(ax.text(
                x, y - 0.03, ra_text(ra, self.ra_unit), fontsize=7, color="0.2",
                ha="center", va="top", zorder=3.5, bbox=LABEL_BACKING,
            ))  # fmt: skip
        for dec in (-60.0, -30.0, 0.0, 30.0, 60.0):
            x, y = moll.forward(moll.ra_centre + 179.999, dec)
            ax.text(x - 0.05, y, f"{dec:+.0f}°", fontsize=7, color="0.25", ha="right",
                    va="center", clip_on=False)  # fmt: skip
        unit = "[deg]" if self.ra_unit == "deg" else "[h]"
        ax.text(0.5, -0.035, f"Right ascension {unit}, increasing to the left; all sky, "
                "Mollweide projection", transform=ax.transAxes, ha="center", va="top",
                fontsize=7.5)  # fmt: skip

    def _build_zoom(self) -> None:
        ax = _bare_axes(self.fig, ZOOM_IN, frame=True)
        for spine in ax.spines.values():
            spine.set_linewidth(0.8)
        self._under_event.extend(ax.spines.values())  # contours end on the frame
        self.zoom_image = ax.imshow(
            np.zeros((2, 2, 4), np.uint8), extent=(-1, 1, -1, 1), origin="upper",
            interpolation="bilinear", aspect="auto", zorder=0,
        )  # fmt: skip
        unit = "[deg]" if self.ra_unit == "deg" else "[h]"
        ax.text(0.5, -0.075, f"Right ascension {unit}", transform=ax.transAxes, ha="center",
                va="top", fontsize=7.5)  # fmt: skip
        ax.text(-0.15, 0.5, "Declination [deg]", transform=ax.transAxes, ha="right",
                va="center", rotation=90, fontsize=7.5)  # fmt: skip
        self.zoom_title = ax.text(0.5, 1.02, "", transform=ax.transAxes, ha="center",
                                  va="bottom", fontsize=9)  # fmt: skip
        self.zoom_ax = ax

    def _build_colorbar(self) -> None:
        ax = _bare_axes(self.fig, COLORBAR_IN, frame=True)
        for spine in ax.spines.values():
            spine.set_linewidth(0.6)
        # coloured once here, so that no save colour-maps it again
        ramp = self.cmap(np.linspace(0, 1, 256)[None, :], bytes=True)
        ax.imshow(ramp, extent=(0, 1, 0, 1), aspect="auto", interpolation="none")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        self.colorbar_label = ax.text(0.5, -1.9, "", transform=ax.transAxes, ha="center",
                                      va="top", fontsize=8)  # fmt: skip
        self.colorbar_ax = ax

    def _build_side_column(self) -> None:
        """The key (drawn by hand: a matplotlib legend lays itself out again at every
        save, a cost paid per event) and the frame of the neutrino list under it."""
        from matplotlib.lines import Line2D

        fig, inch = self.fig, self.fig.dpi_scale_trans
        entries: list[tuple[dict[str, Any], str]] = [
            ({"color": CONTOUR_COLOR, "linestyle": "--", "linewidth": 0.9},
             "50% credible region"),
            ({"color": CONTOUR_COLOR, "linestyle": "-", "linewidth": 1.2},
             "90% credible region"),
        ]  # fmt: skip
        if self.has_neutrinos:
            entries.append((
                {"color": NEUTRINO_COLOR, "marker": "o", "markerfacecolor": "none",
                 "markersize": 9, "linestyle": ""},
                "Neutrino: direction and\n90% containment radius",
            ))  # fmt: skip
        if self.has_candidates:
            entries.append((
                {"color": CANDIDATE_COLOR, "marker": "*", "linestyle": "",
                 "markeredgecolor": "k", "markeredgewidth": 0.4, "markersize": 9},
                "ZTF candidate",
            ))  # fmt: skip
        entries.append(
            ({"color": "0.3", "linestyle": ":", "linewidth": 0.8}, "Zoom panel's outline")
        )
        x = SIDE_LEFT_IN
        y = SIDE_TOP * FIGSIZE_IN[1] - 0.07
        for style, label in entries:
            lines = label.count("\n") + 1
            mid = y - 0.065 * (lines - 1)
            xs = [x + 0.14] if style.get("linestyle") == "" else [x, x + 0.28]
            fig.add_artist(Line2D(xs, [mid] * len(xs), transform=inch, **style))
            fig.text(x + 0.38, mid, label, transform=inch, fontsize=7.5, va="center",
                     linespacing=1.15)  # fmt: skip
            y -= 0.2 + 0.13 * (lines - 1)
        below = (y - 0.12) / FIGSIZE_IN[1]
        x = SIDE_LEFT_IN / FIGSIZE_IN[0]
        self.list_title = fig.text(x, below, "", fontsize=8, weight="bold", va="top")
        self.list_body = fig.text(x, below - 0.04, "", family="monospace", fontsize=7,
                                  va="top", linespacing=1.3)  # fmt: skip

    # -- per event ---------------------------------------------------------------------

    def _own(self, artist):
        self._event_artists.append(artist)
        return artist

    def clear(self) -> None:
        """Remove the previous event's artists."""
        for artist in self._event_artists:
            artist.remove()
        self._event_artists.clear()
        self.key = None

    def draw(
        self,
        skymap: SkyMap,
        neutrinos: NeutrinoList | None,
        dt: np.ndarray | None,
        candidates: Sequence[Candidate],
        title: str,
        note: str,
    ) -> Figure:
        """Fill the template with one event; returns the figure (valid until the next
        draw on this template)."""
        from matplotlib.colors import Normalize

        self.clear()
        levels = credible_levels(skymap)
        peak = float(skymap.probdensity.max()) / _DEG2_PER_SR
        norm = Normalize(vmin=0.0, vmax=peak if peak > 0 else 1.0)
        ra, dec = self.allsky_pixels
        density = _density_deg2(skymap, ra, dec, self._allsky_ipix)
        self.allsky_image.set_data(self._rgba(density, norm))
        zoom = self._draw_zoom(skymap, levels, norm)
        self.zoom_panel = zoom  # this event's zoom: its projection and reach
        self._draw_contours(skymap, levels, zoom)
        self._draw_zoom_outline(zoom)
        labeller = Labeller(self.fig, self.static_boxes)
        self._colorbar_ticks(norm, labeller)
        area = skymap.area90()
        area_text = f"{area:,.0f}" if area >= 10 else f"{area:.2g}"
        self.zoom_title.set_text(f"Zoom on the 90% credible region ({area_text} deg²)")
        self.title.set_text(title)
        self.note.set_text(note)
        for text in (self.title, self.note):  # long event names stay inside the figure
            fit_text(text, 0.96 * self.fig.bbox.width, labeller.renderer)
        self._fill_list(neutrinos, dt)
        for text in (self.zoom_title, self.title, self.note, self.list_title, self.list_body):
            if text.get_text():
                labeller.reserve(text)
        for text in self._zoom_labels:
            labeller.reserve(text)
        if neutrinos is not None and len(neutrinos) > 0:
            in_zoom = zoom.contains(neutrinos.ra, neutrinos.dec)
            self._draw_neutrinos(zoom, neutrinos, in_zoom, labeller)
            self._draw_neutrinos(self.allsky, neutrinos, ~in_zoom, labeller)
        if candidates:
            cra = np.array([c.ra for c in candidates], dtype=float)
            cdec = np.array([c.dec for c in candidates], dtype=float)
            in_zoom = zoom.contains(cra, cdec)
            named = ~in_zoom & (len(candidates) <= MAX_NAMED_ALLSKY)
            self._draw_candidates(zoom, candidates, in_zoom, labeller)
            self._draw_candidates(self.allsky, candidates, named, labeller)
        self._event_artists.extend(labeller.placed)
        return self.fig

    def _rgba(self, density: np.ndarray, norm) -> np.ndarray:
        """Colour an image of probability per deg², opaque.

        Opaque even off the sky: the all-sky image is clipped to the ellipse and the
        zoom never reaches its projection's edge (ZOOM_MAX_HALF_DEG), and a PDF embeds
        an image with no alpha channel at about half the cost of one with it."""
        return self.cmap(norm(density), bytes=True)

    def _draw_zoom(self, skymap: SkyMap, levels: np.ndarray, norm) -> Panel:
        """The zoom image around the 90% credible region, and its graticule.

        The zoom magnifies the map's pixels: its image interpolates the density
        bilinearly between the pixel centres at the finest order inside the 90% region,
        so that it is as smooth as the contours drawn over it."""
        ra_c, dec_c, half = zoom_window(skymap, levels)
        zea = ZenithalEqualArea(ra_c, dec_c)
        reach = float(np.degrees(2 * np.sin(np.radians(half) / 2)))  # plane radius of `half`
        ax = self.zoom_ax
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        # the smooth density is sampled at every other screen pixel and the image is
        # drawn with bilinear interpolation: the same look at a quarter of the cost
        n = round(ZOOM_IN[2] * DPI) // ZOOM_IMAGE_STEP
        x = (np.arange(n) + 0.5) / n * 2 * reach - reach
        ra, dec = zea.inverse(*np.meshgrid(x, x[::-1]))
        self.zoom_image.set_data(self._rgba(_smooth_density_deg2(skymap, ra, dec), norm))
        self.zoom_image.set_extent((-reach, reach, -reach, reach))
        panel = Panel(ax, zea, reach=reach)
        self._zoom_labels = self._zoom_graticule(panel, ra, dec)
        return panel

    def _zoom_graticule(self, panel: Panel, ra: np.ndarray, dec: np.ndarray) -> list[Any]:
        """Meridians and parallels at round values, labelled where they leave the frame
        (RA on the bottom edge, Dec on the left edge); returns the labels."""
        from matplotlib.collections import LineCollection

        zea, ax, reach = panel.projection, panel.ax, panel.reach
        ok = np.isfinite(ra)
        dec_lo, dec_hi = float(dec[ok].min()), float(dec[ok].max())
        dra = wrap180(ra[ok] - zea.ra_centre)
        pole = dec_hi > 89.5 or dec_lo < -89.5
        ra_lo, ra_hi = (-180.0, 180.0) if pole else (float(dra.min()), float(dra.max()))
        # steps from what the labelled edges span: RA along the bottom edge, Dec along
        # the left one, so that each edge gets three to five labels whatever the zoom
        bottom = ra[-1][np.isfinite(ra[-1])]
        left = dec[:, 0][np.isfinite(dec[:, 0])]
        ra_span = np.ptp(np.degrees(np.unwrap(np.radians(bottom)))) if len(bottom) else 360
        dec_span = np.ptp(left) if len(left) else dec_hi - dec_lo
        ra_step = _nice_step(float(ra_span), hours=self.ra_unit == "hours")
        dec_step = _nice_step(float(dec_span))
        lines, ra_marks, dec_marks = [], [], []
        # lines run a step beyond the frame on each side, so that each one crosses the
        # frame's edge where it is labelled (the axes clip them)
        first = np.ceil(dec_lo / dec_step) * dec_step
        for d in np.arange(first, dec_hi + 1e-9, dec_step):
            if abs(d) >= 89.999:
                continue
            run = zea.ra_centre + np.linspace(ra_lo - ra_step, ra_hi + ra_step, 361)
            xy = np.column_stack(zea.forward(run, np.full(run.shape, d)))
            lines.append(xy)
            text = f"{round(float(d), 6) + 0.0:+g}°"  # + 0.0: never "-0°"
            dec_marks.append((_crossing(xy, axis=0, at=-reach), text))
        run = np.linspace(max(dec_lo - dec_step, -90.0), min(dec_hi + dec_step, 90.0), 241)
        first = np.ceil((zea.ra_centre + ra_lo) / ra_step) * ra_step
        for r in np.arange(first, zea.ra_centre + ra_hi + 1e-9, ra_step):
            xy = np.column_stack(zea.forward(np.full(241, r), run))
            lines.append(xy)
            ra_marks.append((_crossing(xy, axis=1, at=-reach), ra_text(r, self.ra_unit, ra_step)))
        self._own(ax.add_collection(
            LineCollection(lines, colors=GRID_COLOR, linewidths=0.45, zorder=1),
            autolim=False,  # the limits are set: computing data limits only costs
        ))  # fmt: skip
        labels = []
        for pos, text in _spaced(ra_marks, 0.25 * reach):
            labels.append(ax.text(pos, -reach * 1.015, text, fontsize=7, ha="center",
                                  va="top", clip_on=False))  # fmt: skip
        for pos, text in _spaced(dec_marks, 0.12 * reach):
            labels.append(ax.text(-reach * 1.02, pos, text, fontsize=7, ha="right",
                                  va="center", clip_on=False))  # fmt: skip
        self._event_artists.extend(labels)
        return labels

    def _draw_contours(self, skymap: SkyMap, levels: np.ndarray, zoom: Panel) -> None:
        """Smooth 50%/90% contours in both panels.

        The zoom grid gives the contours wherever the 90% region fits in the zoom
        panel, and they are reprojected onto the all-sky panel; a region wider than the
        zoom is contoured on an all-sky grid instead.

        The field contoured is each pixel's credible level at its centre, counting half
        of the pixel's own probability (the cumulative level counts all of it): a pixel
        that alone holds more than 90% then still gets its contours, around it, and on
        fine maps the difference is below a pixel's share.
        """
        order = boundary_order(skymap, levels)
        prob = _probability(skymap)
        levels_at_centres = levels - 0.5 * prob / prob.sum()
        g = np.linspace(-zoom.reach, zoom.reach, ZOOM_CONTOUR_GRID)
        zra, zdec = zoom.projection.inverse(*np.meshgrid(g, g))
        field = interpolated_levels(skymap, levels_at_centres, zra, zdec, order)
        zoom_lines = _contour_lines(g, g, field)
        self._add_contours(zoom.ax, zoom_lines)
        rows = np.flatnonzero(levels <= CONTOUR_LEVELS[-1])
        if np.all(zoom.contains(*_row_directions(skymap, rows))):
            inverse = zoom.projection.inverse
            lines = [[self.allsky.curve(*inverse(s[:, 0], s[:, 1])) for s in segs]
                     for segs in zoom_lines]  # fmt: skip
        else:
            gx, gy, ara, adec = self._allsky_contour_grid()
            low = min(order, ALLSKY_CONTOUR_MAX_ORDER)
            field = interpolated_levels(skymap, levels_at_centres, ara, adec, low)
            lines = _contour_lines(gx, gy, field)
        self._add_contours(self.allsky.ax, lines)

    def _allsky_contour_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, RA, Dec) of the all-sky contour grid, the same for every event."""
        if getattr(self, "_contour_grid", None) is None:
            moll = self.allsky.projection
            nx, ny = ALLSKY_CONTOUR_GRID
            gx = np.linspace(-moll.half_width, moll.half_width, nx)
            gy = np.linspace(-moll.half_height, moll.half_height, ny)
            self._contour_grid = (gx, gy, *moll.inverse(*np.meshgrid(gx, gy)))
        return self._contour_grid

    def _add_contours(self, ax: Axes, lines: list[list[np.ndarray]]) -> None:
        from matplotlib.collections import LineCollection

        for segs, style, width in zip(lines, ("--", "-"), (0.9, 1.2), strict=True):
            if segs:
                self._own(ax.add_collection(
                    LineCollection(segs, colors=CONTOUR_COLOR, linestyles=style,
                                   linewidths=width, zorder=3),
                    autolim=False,
                ))  # fmt: skip

    def _draw_zoom_outline(self, zoom: Panel) -> None:
        """The zoom panel's frame drawn on the all-sky panel (dotted)."""
        r = zoom.reach
        t = np.linspace(-r, r, 60)
        edge_x = np.r_[t, np.full(60, r), t[::-1], np.full(60, -r)]
        edge_y = np.r_[np.full(60, -r), t, np.full(60, r), t[::-1]]
        curve = self.allsky.curve(*zoom.projection.inverse(edge_x, edge_y))
        (line,) = self.allsky.ax.plot(*curve.T, color="0.3", linewidth=0.8, linestyle=":",
                                      zorder=2)  # fmt: skip
        self._own(line)

    def _colorbar_ticks(self, norm, labeller: Labeller) -> None:
        """Round tick values of the colour bar for this event's peak density."""
        from matplotlib.collections import LineCollection
        from matplotlib.ticker import MaxNLocator

        ax = self.colorbar_ax
        values = [v for v in MaxNLocator(4).tick_values(0.0, norm.vmax) if 0 <= v <= norm.vmax]
        pos = [v / norm.vmax for v in values]
        # ticks read 2.5, 5, 7.5 with the power of ten in the label, not 0.0025 ...
        exponent = colorbar_exponent(norm.vmax)
        values = [v / 10.0**exponent for v in values]
        scale = f" (×10{_superscript(exponent)})" if exponent else ""
        self.colorbar_label.set_text(f"GW probability per deg²{scale}")
        labeller.reserve(self.colorbar_label)
        self._own(ax.add_collection(LineCollection(
            [[(p, 0.0), (p, -0.35)] for p in pos], colors="k", linewidths=0.6,
            transform=ax.transAxes, clip_on=False,
        ), autolim=False))  # fmt: skip
        for p, v in zip(pos, values, strict=True):
            text = ax.text(p, -0.45, f"{v:.3g}", transform=ax.transAxes, ha="center",
                           va="top", fontsize=7, clip_on=False)  # fmt: skip
            labeller.reserve(self._own(text))

    def _fill_list(self, neutrinos, dt) -> None:
        """The numbered neutrino list of the side column."""
        if neutrinos is None:
            self.list_title.set_text("")
            self.list_body.set_text("")
            return
        self.list_title.set_text("IceCube neutrinos")
        if len(neutrinos) == 0:
            self.list_body.set_text("none in the ±500 s window")
            return
        dt = np.zeros(len(neutrinos)) if dt is None else np.asarray(dt, dtype=float)
        rows = [f"{'#':>2} {'Δt[s]':>6} {'E[TeV]':>7} {'σ[°]':>5}"]
        for i in range(min(len(neutrinos), MAX_LISTED)):
            energy = energy_text(neutrinos.energy[i] / 1e3)
            rows.append(f"{i + 1:>2} {dt[i]:>+6.0f} {energy:>7} {neutrinos.sigma[i]:>5.2f}")
        if len(neutrinos) > MAX_LISTED:
            rows.append(f"and {len(neutrinos) - MAX_LISTED} more (see the table)")
        self.list_body.set_text("\n".join(rows))

    def _draw_neutrinos(self, panel: Panel, neutrinos, numbered, labeller: Labeller) -> None:
        """90% containment circles, direction markers, and row numbers where
        ``numbered``."""
        from matplotlib.collections import LineCollection

        circles = [
            panel.curve(*small_circle(ra, dec, R90_PER_SIGMA * s))
            for ra, dec, s in zip(neutrinos.ra, neutrinos.dec, neutrinos.sigma, strict=True)
        ]
        ax = panel.ax
        self._own(ax.add_collection(
            LineCollection(circles, colors=NEUTRINO_COLOR, linewidths=1.1, zorder=4),
            autolim=False,
        ))  # fmt: skip
        x, y = panel.xy(neutrinos.ra, neutrinos.dec)
        (marks,) = ax.plot(x, y, linestyle="", marker="+", markersize=6, color=NEUTRINO_COLOR,
                           zorder=5)  # fmt: skip
        self._own(marks)
        for i in np.flatnonzero(numbered):
            labeller.place(ax, float(x[i]), float(y[i]), str(i + 1), fontsize=8,
                           weight="bold", color=NEUTRINO_COLOR, zorder=8,
                           path_effects=_halo())  # fmt: skip

    def _draw_candidates(self, panel: Panel, candidates, named, labeller: Labeller) -> None:
        x, y = panel.xy([c.ra for c in candidates], [c.dec for c in candidates])
        (marks,) = panel.ax.plot(
            x, y, linestyle="", marker="*", markersize=9, color=CANDIDATE_COLOR,
            markeredgecolor="k", markeredgewidth=0.4, zorder=5,
        )  # fmt: skip
        self._own(marks)
        for i in np.flatnonzero(named):
            labeller.place(panel.ax, float(x[i]), float(y[i]), candidates[i].name,
                           fontsize=6.5, color=CANDIDATE_TEXT_COLOR, zorder=8,
                           path_effects=_halo())  # fmt: skip


# --- helpers ---------------------------------------------------------------------------


def colorbar_exponent(vmax: float) -> int:
    """Power of ten taken out of the colour bar's tick values: that of the largest
    value when it is below 0.01 or at least 1000, else 0.

    Examples
    --------
    >>> colorbar_exponent(0.0097), colorbar_exponent(0.45), colorbar_exponent(3.2e-5)
    (-3, 0, -5)
    """
    if not np.isfinite(vmax) or vmax <= 0 or 0.01 <= vmax < 1000:
        return 0
    return int(np.floor(np.log10(vmax)))


def _superscript(n: int) -> str:
    """An integer as Unicode superscript digits (e.g. -3 -> ⁻³), no mathtext needed."""
    return str(n).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _halo() -> list:
    """A thin white outline that keeps a label legible over lines and the map."""
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.0, foreground="white")]


def _nice_step(span: float, target: int = 4, hours: bool = False) -> float:
    """A graticule step [deg] near span/target: from 1-2-5 x 10^k, 15, 30, 45, 60, 90
    degrees, or with ``hours`` from round times (30 s, 1, 2, 5, 10, 15, 20, 30 min,
    1, 2, 3, 4, 6 h; 1 min of time is 0.25 deg).

    Examples
    --------
    >>> _nice_step(8.0), _nice_step(8.0, hours=True)  # 2 deg; 10 min of time
    (2.0, 2.5)
    """
    if hours:
        minutes = (0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360)
        steps = sorted(0.25 * m for m in minutes)
    else:
        steps = sorted({*(s * 10.0**k for k in range(-2, 2) for s in (1.0, 2.0, 5.0)),
                        15.0, 30.0, 45.0, 60.0, 90.0})  # fmt: skip
    wanted = span / target
    return next((s for s in steps if s >= wanted), steps[-1])


def _crossing(xy: np.ndarray, axis: int, at: float) -> float | None:
    """Where a polyline crosses {coordinate ``axis`` == at}: the other coordinate
    there when it lies inside the frame [-|at|, |at|], else None."""
    v = xy[:, axis] - at
    other = xy[:, 1 - axis]
    ok = np.isfinite(v) & np.isfinite(other)
    v, other = v[ok], other[ok]
    for i in np.flatnonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0):
        t = v[i] / (v[i] - v[i + 1])
        pos = float(other[i] + t * (other[i + 1] - other[i]))
        if abs(pos) <= abs(at) * 0.95:
            return pos
    return None


def _spaced(marks, gap: float) -> list[tuple[float, str]]:
    """Labels (position, text) at least ``gap`` apart, in order of position."""
    out: list[tuple[float, str]] = []
    for pos, text in sorted((p, t) for p, t in marks if p is not None):
        if not out or pos - out[-1][0] >= gap:
            out.append((pos, text))
    return out


def _contour_lines(x: np.ndarray, y: np.ndarray, field: np.ndarray) -> list[list[np.ndarray]]:
    """Contour lines of a gridded field: one list of (n, 2) arrays per level of
    CONTOUR_LEVELS (NaN cells are left out)."""
    import contourpy

    gen = contourpy.contour_generator(
        x, y, np.ma.masked_invalid(field), line_type=contourpy.LineType.Separate
    )
    return [list(gen.lines(level)) for level in CONTOUR_LEVELS]
