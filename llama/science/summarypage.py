"""The one-page summary of a GW x neutrino coincidence, drawn like a circular.

An A4 page made with matplotlib only (no TeX): a header naming the event, the
gravitational-wave facts beside a box with the combined result (odds ratio, p-value and
how the p-value was obtained), the scatter plot (:mod:`llama.science.plotting`), the
table of neutrinos numbered as in the plot with their per-neutrino p-value and odds
ratio, and the notes on what the columns mean. Rows beyond :data:`MAX_ROWS` are left to
the text table, and the page says so.

The page is laid out in inches from the top-left corner, every block below the one
before it, so that nothing overlaps whatever the number of rows; long values are
shortened with an ellipsis instead of running off the page.

Examples
--------
>>> facts = [("GraceID", "S190425z"), ("Combined odds ratio", "0.42"),
...          ("Combined p-value", "0.0061"), ("p-value obtained from", "trials")]
>>> fig = summary_page("S190425z", facts, [], ["c0", "a note"], None)
>>> [round(float(v), 2) for v in fig.get_size_inches()]
[8.27, 11.69]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MAX_ROWS", "PAGE_IN", "is_result", "summary_page"]

#: Page size [in] (A4, portrait).
PAGE_IN = (8.27, 11.69)
#: Neutrino rows shown on the page (the text table lists them all).
MAX_ROWS = 20
#: Left and right margin [in].
MARGIN_IN = 0.6
#: Colours: the header band, the result box, alternate table rows, small print.
ACCENT = "#1f3b63"
RESULT_FILL = "#eef3fa"
ROW_FILL = "#f2f2f2"
SMALL_PRINT = "0.3"
#: Table headers, in the order of the rows' values (tables.COINC_COLUMNS).
TABLE_HEADERS = ("Δt [s]", "RA [°]", "Dec [°]", "E [TeV]", "σ [°]", "p-value", "odds ratio")
#: Width of the result box's notes [characters] (each line is also fitted to the box).
RESULT_NOTE_CHARS = 44
#: Height of a table row [in]; the foot of the page's content [in from the top].
ROW_PITCH_IN = 0.175
FOOT_IN = PAGE_IN[1] - 0.65


def is_result(label: str) -> bool:
    """Whether a (label, value) fact belongs to the combined result box.

    Examples
    --------
    >>> is_result("Combined p-value"), is_result("p-value obtained from"), is_result("Pipeline")
    (True, True, False)
    """
    return label.lower().startswith(("combined", "p-value"))


def _wrapped(text: str) -> list[str]:
    """Lines of a note in the result box (at most three, the last shortened)."""
    import textwrap

    lines = textwrap.wrap(text, RESULT_NOTE_CHARS) or [""]
    return lines[:2] + [_short(" ".join(lines[2:]), RESULT_NOTE_CHARS)] if len(lines) > 3 else lines


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Page:
    """Places texts and shapes in inches from the page's top-left corner."""

    def __init__(self) -> None:
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=PAGE_IN)
        self.inch = self.fig.dpi_scale_trans

    def text(self, x: float, top: float, s: str, fit: float | None = None, **style) -> Any:
        """A text at ``x`` [in] whose anchor is ``top`` [in] below the page's top; with
        ``fit`` [in], shortened with an ellipsis until it is no wider."""
        text = self.fig.text(x, PAGE_IN[1] - top, s, transform=self.inch, **style)
        if fit is not None:
            self._fit(text, fit * self.fig.dpi)
        return text

    def _fit(self, text: Any, limit_px: float) -> None:
        from llama.science.pdffonts import shared_rc
        from llama.science.skyfigure import _renderer, fit_text

        with shared_rc():  # measured with the rcParams it is saved with
            fit_text(text, limit_px, _renderer(self.fig))

    def box(self, x: float, top: float, width: float, height: float, **style) -> None:
        from matplotlib.patches import Rectangle

        bottom = PAGE_IN[1] - top - height
        self.fig.add_artist(Rectangle((x, bottom), width, height, transform=self.inch, **style))

    def rule(self, top: float, **style) -> None:
        from matplotlib.lines import Line2D

        y = PAGE_IN[1] - top
        self.fig.add_artist(
            Line2D([MARGIN_IN, PAGE_IN[0] - MARGIN_IN], [y, y], transform=self.inch, **style)
        )


def summary_page(
    eventid: str,
    facts: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[float]],
    comments: Sequence[str],
    plot_png: str | Path | None,
    more_rows_in: str = "the text table",
    footer: str = "",
) -> Figure:
    """Draw the summary page; returns an unsaved A4 Figure.

    Parameters
    ----------
    eventid
        The event's name, shown in the header.
    facts
        (label, value) pairs: the gravitational-wave facts, and the combined result
        (labels for which :func:`is_result` is true), in the order to show them.
    rows
        One row per neutrino, in list order: dt [s], RA [deg], Dec [deg], E [TeV],
        sigma [deg], p-value, odds ratio. Row i is neutrino number i + 1 of the plot.
    comments
        Notes on the table (the first, its title, is not shown).
    plot_png
        The scatter plot to show (None: a page without the plot).
    more_rows_in
        Where the rows beyond :data:`MAX_ROWS` can be read.
    footer
        Small print at the foot of the page (e.g. the software version).
    """
    page = _Page()
    width = PAGE_IN[0] - 2 * MARGIN_IN
    left = MARGIN_IN

    # header band
    page.box(0, 0, PAGE_IN[0], 0.95, color=ACCENT, linewidth=0)
    page.text(left, 0.28, "LLAMA  ·  gravitational waves × IceCube neutrinos", color="white",
              fontsize=10, va="top")  # fmt: skip
    page.text(left, 0.5, f"Coincidence summary for {eventid}", fit=width, color="white",
              fontsize=17,
              weight="bold", va="top")  # fmt: skip

    # facts on the left, the combined result in a box on the right
    top = 1.25
    event_facts = [(k, v) for k, v in facts if not is_result(k)]
    result = [(k, v) for k, v in facts if is_result(k)]
    page.text(left, top, "Gravitational-wave event", fontsize=11, weight="bold", va="top",
              color=ACCENT)  # fmt: skip
    y = top + 0.3
    for label, value in event_facts:
        page.text(left, y, label, fontsize=8.5, color=SMALL_PRINT, va="top")
        page.text(left + 1.35, y, value, fit=3.0, fontsize=8.5, va="top")
        y += 0.2
    facts_bottom = y
    box_left, box_width = left + 4.45, width - 4.45
    page.text(box_left, top, "Combined result", fontsize=11, weight="bold", va="top",
              color=ACCENT)  # fmt: skip
    box_height = 0.25 + sum(
        0.38 if k.lower().startswith("combined") else 0.04 + 0.16 * len(_wrapped(f"{k}: {v}"))
        for k, v in result
    )
    page.box(box_left, top + 0.27, box_width, box_height, facecolor=RESULT_FILL,
             edgecolor=ACCENT, linewidth=0.8)  # fmt: skip
    y = top + 0.4
    for label, value in result:
        if label.lower().startswith("combined"):
            name = label[len("combined ") :] if len(label) > 9 else label
            page.text(box_left + 0.15, y, name, fontsize=8.5, color=SMALL_PRINT, va="top")
            page.text(box_left + box_width - 0.15, y - 0.03, value, fontsize=15,
                      weight="bold", ha="right", va="top")  # fmt: skip
            y += 0.38
        else:
            for line in _wrapped(f"{label}: {value}"):
                page.text(box_left + 0.15, y, line, fit=box_width - 0.3, fontsize=7.5,
                          color=SMALL_PRINT, va="top")  # fmt: skip
                y += 0.16
            y += 0.04
    top = max(facts_bottom, top + 0.27 + box_height) + 0.2
    page.rule(top, color="0.7", linewidth=0.6)

    # the plot
    if plot_png is not None:
        import matplotlib.image as mpimg

        image = mpimg.imread(plot_png)
        height = width * image.shape[0] / image.shape[1]
        ax = page.fig.add_axes(
            (left / PAGE_IN[0], (PAGE_IN[1] - top - 0.1 - height) / PAGE_IN[1],
             width / PAGE_IN[0], height / PAGE_IN[1])
        )  # fmt: skip
        ax.imshow(image, interpolation="none")
        ax.set_axis_off()
        top += 0.1 + height + 0.05
        page.text(left, top, "GW probability per deg² with its 50% and 90% credible "
                  "contours; neutrinos numbered as the rows of the table below.",
                  fontsize=7.5, color=SMALL_PRINT, va="top", style="italic")  # fmt: skip
        top += 0.3
    # the notes on the columns go under the table (the combined line is in the box)
    notes = [c for c in comments[1:] if not c.lower().startswith("combined")]
    room = FOOT_IN - top - 0.15 * len(notes)
    top = _neutrino_table(page, top, rows, more_rows_in, room)
    for note in notes:
        page.text(left, top, note, fit=width, fontsize=6.5, color=SMALL_PRINT, va="top")
        top += 0.15
    if footer:
        page.rule(PAGE_IN[1] - 0.55, color="0.7", linewidth=0.6)
        page.text(left, PAGE_IN[1] - 0.45, footer, fontsize=6.5, color=SMALL_PRINT,
                  va="top")  # fmt: skip
    return page.fig


def _neutrino_table(page: _Page, top: float, rows, more_rows_in: str, room: float) -> float:
    """The numbered neutrino table from ``top`` [in], in at most ``room`` inches (rows
    that do not fit are left to ``more_rows_in``); returns the top of what follows."""
    from llama.science.plotting import energy_text

    left, width = MARGIN_IN, PAGE_IN[0] - 2 * MARGIN_IN
    page.text(left, top, "IceCube neutrinos within ±500 s", fontsize=11, weight="bold",
              va="top", color=ACCENT)  # fmt: skip
    top += 0.3
    if not rows:
        page.text(left, top, "None: no neutrino arrived within the time window.",
                  fontsize=8.5, va="top")  # fmt: skip
        return top + 0.35
    # title, header row, closing rule and the "and N more" line take ~0.95 in
    fits = max(int((room - 0.95) / ROW_PITCH_IN), 1)
    shown = list(rows[: min(MAX_ROWS, fits)])
    plain = "{:.3g}".format
    formats = ("{:+.1f}".format, "{:.2f}".format, "{:+.2f}".format, energy_text, "{:.2f}".format,
               plain, plain)  # fmt: skip
    # right edges of the columns [in from the left margin]: '#' then the values
    edges = [0.3] + [0.3 + (i + 1) * (width - 0.3) / len(TABLE_HEADERS) for i in range(7)]
    pitch = ROW_PITCH_IN
    page.box(left, top, width, pitch, color=ACCENT, linewidth=0)
    mid = top + pitch / 2
    page.text(left + edges[0], mid, "#", fontsize=8, color="white", weight="bold",
              ha="right", va="center")  # fmt: skip
    for edge, name in zip(edges[1:], TABLE_HEADERS, strict=True):
        page.text(left + edge - 0.05, mid, name, fontsize=8, color="white", weight="bold",
                  ha="right", va="center")  # fmt: skip
    top += pitch
    for i, row in enumerate(shown):
        if i % 2:
            page.box(left, top, width, pitch, color=ROW_FILL, linewidth=0)
        mid = top + pitch / 2
        page.text(left + edges[0], mid, str(i + 1), fontsize=8, weight="bold", ha="right",
                  va="center")  # fmt: skip
        for edge, fmt, value in zip(edges[1:], formats, row, strict=True):
            page.text(left + edge - 0.05, mid, fmt(value), fontsize=8, ha="right",
                      va="center", family="monospace")  # fmt: skip
        top += pitch
    page.rule(top, color=ACCENT, linewidth=0.8)
    top += 0.12
    if len(rows) > len(shown):
        page.text(left, top, f"… and {len(rows) - len(shown)} more neutrinos: see "
                  f"{more_rows_in}.", fit=width, fontsize=8, va="top")  # fmt: skip
        top += 0.22
    return top
