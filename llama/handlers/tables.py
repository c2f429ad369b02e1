"""Tables and summaries: neutrino lists as text and LaTeX, the coincidence summary.

Files
-----
icecube_neutrino_list.txt
    Fixed-width table, columns ``dt[s] RA[deg] Dec[deg] E[TeV] Sigma[deg]``, after
    ``#`` comment lines saying what dt is relative to. Read it back with
    :func:`read_fixed_width`.
icecube_neutrino_list.tex
    The same table as a LaTeX ``tabular`` (for \\input into circulars and notes).
icecube_neutrino_list_coinc.txt
    The table plus each neutrino's ``p_value`` and ``odds_ratio`` from
    ``significance_lvc-i3.json``, and the combined result in the comments (for GCN
    circulars).
summary_lvc-i3.tex
    A standalone LaTeX document summarising the event: GW facts, the combined odds
    ratio and p-value and how the p-value was obtained, the neutrino table, and the
    scatter plot (``\\includegraphics{scatterplot_lvc-i3.png}``, in the same
    directory).
summary_lvc-i3.pdf
    The same summary drawn with matplotlib (LaTeX is not needed).

dt is the neutrino arrival time minus the GW event time [s]. The GW time comes from
``skymap_info.json`` (the neutrino list's own input, so a change to it makes these
files obsolete through the list; for the coincidence table, from the skymap info the
significance file recorded). With no GW time, dt is relative to the first neutrino and
the file says so. Neutrinos are read through
:func:`llama.handlers.neutrino.read_neutrino_list`: under BLINDED_NEUTRINOS=true a
supplied unblinded list shows scrambled right ascensions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama.handler import FileHandler
from llama.handlers.coinc import CoincSignificanceI3Lvc
from llama.handlers.gw import SkymapInfo
from llama.handlers.neutrino import IceCubeNeutrinoList, read_neutrino_list
from llama.handlers.plots import CoincScatterI3LvcPng, reference_time

if TYPE_CHECKING:
    from llama.science.neutrinos import NeutrinoList

__all__ = [
    "COINC_COLUMNS",
    "NEUTRINO_COLUMNS",
    "Column",
    "CoincSummaryI3LvcPdf",
    "CoincSummaryI3LvcTex",
    "IceCubeNeutrinoListCoincTxt",
    "IceCubeNeutrinoListTex",
    "IceCubeNeutrinoListTxt",
    "format_fixed_width",
    "format_tabular",
    "numbered",
    "read_fixed_width",
    "tex_escape",
]

SECONDS_PER_YEAR = 365.25 * 86400.0


@dataclass(frozen=True)
class Column:
    """One table column: text header, LaTeX header and number format."""

    name: str
    tex: str
    fmt: str
    #: Show the sign (+/-) of the value in LaTeX as math.
    signed: bool = False


NEUTRINO_COLUMNS = (
    Column("dt[s]", r"$\Delta t$ [s]", "{:+.2f}", signed=True),
    Column("RA[deg]", "RA [deg]", "{:.3f}"),
    Column("Dec[deg]", "Dec [deg]", "{:+.3f}", signed=True),
    Column("E[TeV]", "$E$ [TeV]", "{:.3f}"),
    Column("Sigma[deg]", r"$\sigma$ [deg]", "{:.3f}"),
)
COINC_COLUMNS = (
    *NEUTRINO_COLUMNS,
    Column("p_value", "$p$-value", "{:.3g}"),
    Column("odds_ratio", "odds ratio", "{:.3g}"),
)
#: The row number: neutrinos are numbered 1, 2, ... in list order, as on the plots.
NUMBER_COLUMN = Column("No", "No.", "{:d}")


def numbered(
    columns: Sequence[Column], rows: Sequence[Sequence[float]]
) -> tuple[tuple[Column, ...], list[tuple[float, ...]]]:
    """``columns`` and ``rows`` with the row number (1, 2, ...) in front, so that a
    reader matches a table row to the neutrino of that number on the plots.

    Examples
    --------
    >>> cols, rows = numbered(NEUTRINO_COLUMNS[:1], [(-3.0,), (4.0,)])
    >>> print(format_fixed_width(cols, rows), end="")
    No  dt[s]
     1  -3.00
     2  +4.00
    """
    return (NUMBER_COLUMN, *columns), [(i, *row) for i, row in enumerate(rows, 1)]


# --- generic formatting -----------------------------------------------------------------


def format_fixed_width(
    columns: Sequence[Column], rows: Sequence[Sequence[float]], comments: Sequence[str] = ()
) -> str:
    """``#`` comment lines, a header line and right-aligned rows, columns 2 spaces apart.

    Examples
    --------
    >>> print(format_fixed_width(NEUTRINO_COLUMNS[:2], [(1.5, 10.0)], ["hi"]), end="")
    # hi
    dt[s]  RA[deg]
    +1.50   10.000
    """
    cells = [[c.fmt.format(v) for c, v in zip(columns, row, strict=True)] for row in rows]
    widths = [max([len(c.name)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [f"# {c}" for c in comments]
    lines.append("  ".join(c.name.rjust(w) for c, w in zip(columns, widths, strict=True)))
    lines += ["  ".join(s.rjust(w) for s, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines) + "\n"


def read_fixed_width(text: str) -> tuple[list[str], list[tuple[float, ...]]]:
    """Column names and rows of a table written by :func:`format_fixed_width`.

    Examples
    --------
    >>> read_fixed_width("# c\\na  b\\n1.5  -2\\n")
    (['a', 'b'], [(1.5, -2.0)])
    """
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError("no header line: not a table written by format_fixed_width")
    names = lines[0].split()
    rows = [tuple(float(x) for x in ln.split()) for ln in lines[1:]]
    for i, row in enumerate(rows):
        if len(row) != len(names):
            raise ValueError(f"row {i} has {len(row)} values for {len(names)} columns")
    return names, rows


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: Any) -> str:
    r"""``text`` with LaTeX's special characters escaped.

    Examples
    --------
    >>> print(tex_escape("a_b & 5%"))
    a\_b \& 5\%
    """
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in str(text))


def _tex_cell(column: Column, value: float) -> str:
    text = column.fmt.format(value)
    if "e" in text.lower() and math.isfinite(value):
        mantissa, exponent = text.lower().split("e")
        text = rf"{mantissa} \times 10^{{{int(exponent)}}}"
        return f"${text}$"
    return f"${text}$" if column.signed else text


def format_tabular(
    columns: Sequence[Column], rows: Sequence[Sequence[float]], comments: Sequence[str] = ()
) -> str:
    r"""A LaTeX ``tabular`` (no float, no preamble): header, one line per row.

    Examples
    --------
    >>> print(format_tabular(NEUTRINO_COLUMNS[:2], [(-1.0, 2.0)]), end="")
    \begin{tabular}{rr}
    \hline
    $\Delta t$ [s] & RA [deg] \\
    \hline
    $-1.00$ & 2.000 \\
    \hline
    \end{tabular}
    """
    lines = [f"% {tex_escape(c)}" for c in comments]
    lines += [
        rf"\begin{{tabular}}{{{'r' * len(columns)}}}",
        r"\hline",
        " & ".join(c.tex for c in columns) + r" \\",
        r"\hline",
    ]
    for row in rows:
        lines.append(
            " & ".join(_tex_cell(c, v) for c, v in zip(columns, row, strict=True)) + r" \\"
        )
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# --- neutrino tables ----------------------------------------------------------------------


def _neutrino_rows(neutrinos: NeutrinoList, dt) -> list[tuple[float, ...]]:
    return [
        (float(dt[i]), float(neutrinos.ra[i]), float(neutrinos.dec[i]),
         float(neutrinos.energy[i]) / 1000.0, float(neutrinos.sigma[i]))
        for i in range(len(neutrinos))
    ]  # fmt: skip


def _dt(neutrinos: NeutrinoList, t0_mjd: float | None):
    import numpy as np

    return np.zeros(len(neutrinos)) if t0_mjd is None else neutrinos.dt_seconds(t0_mjd)


def _list_comments(eventid: str, neutrinos: NeutrinoList, what: str) -> list[str]:
    from llama.science.constants import R90_PER_SIGMA

    return [
        f"IceCube neutrinos for {eventid}, from {IceCubeNeutrinoList.FILENAME}",
        f"dt: arrival time relative to {what}",
        "RA, Dec: equatorial J2000 [deg]; E: reconstructed energy [TeV]; "
        f"Sigma: 1-sigma angular error [deg] (90% radius r90 = {R90_PER_SIGMA} Sigma)",
        f"{len(neutrinos)} neutrino(s); list complete: {'yes' if neutrinos.complete else 'no'}",
    ]


class _NeutrinoTable(FileHandler, abstract=True):
    """Reads the neutrino list and the dt reference time."""

    def _load(self) -> tuple[NeutrinoList, list[tuple[float, ...]], list[str]]:
        neutrinos = read_neutrino_list(self.event)
        t0, what = reference_time(self.event, neutrinos=neutrinos)
        rows = _neutrino_rows(neutrinos, _dt(neutrinos, t0))
        return neutrinos, rows, _list_comments(self.event.eventid, neutrinos, what)


class IceCubeNeutrinoListTxt(_NeutrinoTable):
    """Fixed-width table of the neutrino list: No dt[s] RA[deg] Dec[deg] E[TeV] Sigma[deg]."""

    FILENAME = "icecube_neutrino_list.txt"
    DEPENDENCIES = (IceCubeNeutrinoList,)

    def generate(self, out: Path) -> None:
        _, rows, comments = self._load()
        out.write_text(format_fixed_width(*numbered(NEUTRINO_COLUMNS, rows), comments))


class IceCubeNeutrinoListTex(_NeutrinoTable):
    """The neutrino table as a LaTeX tabular."""

    FILENAME = "icecube_neutrino_list.tex"
    DEPENDENCIES = (IceCubeNeutrinoList,)

    def generate(self, out: Path) -> None:
        _, rows, comments = self._load()
        out.write_text(format_tabular(*numbered(NEUTRINO_COLUMNS, rows), comments))


# --- significance -------------------------------------------------------------------------


def describe_pvalue_method(combined: dict[str, Any]) -> str:
    """How the combined p-value was obtained, in words, from the significance file.

    Examples
    --------
    >>> describe_pvalue_method({"odds_ratio": 1.0, "p_value": 0.5, "n_trials": 10000})
    '10000 on-the-fly background trials'
    >>> describe_pvalue_method({"method": "table", "background_table": "bns_HL.npz"})
    'table; background table bns_HL.npz'
    """
    parts = []
    rest = {k: v for k, v in combined.items() if k not in ("odds_ratio", "p_value")}
    for key in ("method", "p_value_method"):
        if rest.get(key):
            parts.append(str(rest.pop(key)))
    for key in ("n_trials", "trials", "ntrials"):
        if isinstance(rest.get(key), (int, float)):
            parts.append(f"{int(rest.pop(key))} on-the-fly background trials")
    for key in ("background_table", "table"):
        if rest.get(key):
            parts.append(f"background table {rest.pop(key)}")
    parts += [f"{k} = {v}" for k, v in rest.items() if isinstance(v, (str, int, float, bool))]
    return "; ".join(parts) or "not stated in the significance file"


@dataclass
class _Significance:
    """The parts of significance_lvc-i3.json the tables use."""

    per_neutrino: list[dict[str, Any]]
    combined: dict[str, Any]
    skymap_info: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> _Significance:
        data = json.loads(path.read_text())
        try:
            outputs = data["outputs"]
            per = list(outputs["neutrino_gw_triggers"])
            combined = dict(outputs["neutrino_gw_combined"])
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{path.name}: needs outputs.neutrino_gw_triggers and "
                "outputs.neutrino_gw_combined (see docs/science.md, 'Output')"
            ) from exc
        info = (data.get("inputs") or {}).get("skymap_info") or {}
        return cls(per, combined, info if isinstance(info, dict) else {})

    def check_matches(self, neutrinos: NeutrinoList) -> None:
        if len(self.per_neutrino) != len(neutrinos):
            raise ValueError(
                f"{CoincSignificanceI3Lvc.FILENAME} has {len(self.per_neutrino)} neutrinos "
                f"but {IceCubeNeutrinoList.FILENAME} has {len(neutrinos)}; regenerate the "
                "significance from the current list"
            )

    def column(self, key: str) -> list[float]:
        return [_as_float(t.get(key)) for t in self.per_neutrino]


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _coinc_table(event, neutrinos: NeutrinoList, sig: _Significance):
    """Rows (with p-value and odds ratio) and comments of the coincidence table."""
    from llama.science import times

    sig.check_matches(neutrinos)
    iso = sig.skymap_info.get("event_time_iso")
    if iso:
        t0, what = times.iso_to_mjd(iso), f"GW event time {iso} UTC (significance inputs)"
    else:
        t0, what = reference_time(event, neutrinos=neutrinos)
    rows = [
        (*row, p, o)
        for row, p, o in zip(
            _neutrino_rows(neutrinos, _dt(neutrinos, t0)),
            sig.column("p_value"),
            sig.column("odds_ratio"),
            strict=True,
        )
    ]
    comments = _list_comments(event.eventid, neutrinos, what)
    comments.append("p_value, odds_ratio: per neutrino, from " + CoincSignificanceI3Lvc.FILENAME)
    comments.append(_combined_line(sig.combined))
    return rows, comments


def _combined_line(combined: dict[str, Any]) -> str:
    odds = _as_float(combined.get("odds_ratio"))
    p = _as_float(combined.get("p_value"))
    return f"combined: odds ratio {odds:.3g}, p-value {p:.3g} ({describe_pvalue_method(combined)})"


class IceCubeNeutrinoListCoincTxt(FileHandler):
    """The neutrino table plus per-neutrino p-value and odds ratio, for GCN circulars."""

    FILENAME = "icecube_neutrino_list_coinc.txt"
    DEPENDENCIES = (IceCubeNeutrinoList, CoincSignificanceI3Lvc)

    def generate(self, out: Path) -> None:
        neutrinos = read_neutrino_list(self.event)
        sig = _Significance.read(self.dep_path(CoincSignificanceI3Lvc))
        rows, comments = _coinc_table(self.event, neutrinos, sig)
        out.write_text(format_fixed_width(*numbered(COINC_COLUMNS, rows), comments))


# --- summaries ----------------------------------------------------------------------------


def _far_text(far: Any) -> str:
    far = _as_float(far)
    if not math.isfinite(far) or far <= 0:
        return "unknown"
    return f"{far:.3g} Hz (1 per {1.0 / (far * SECONDS_PER_YEAR):.3g} yr)"


def _instruments(info: dict[str, Any]) -> str:
    inst = info.get("instruments")
    if isinstance(inst, (list, tuple)):
        return ", ".join(str(i) for i in inst) or "unknown"
    return str(inst) if inst else "unknown"


def summary_facts(eventid: str, info: dict[str, Any], combined: dict[str, Any]):
    """(label, value) pairs shown at the top of both summaries (plain text)."""
    return [
        ("GraceID", str(info.get("graceid") or eventid)),
        ("Event time (UTC)", str(info.get("event_time_iso", "unknown"))),
        ("False-alarm rate", _far_text(info.get("far"))),
        ("Pipeline", str(info.get("pipeline", "unknown"))),
        ("Instruments", _instruments(info)),
        ("Alert type", str(info.get("alert_type", "unknown"))),
        ("Combined odds ratio", f"{_as_float(combined.get('odds_ratio')):.3g}"),
        ("Combined p-value", f"{_as_float(combined.get('p_value')):.3g}"),
        ("p-value obtained from", describe_pvalue_method(combined)),
    ]


class _Summary(FileHandler, abstract=True):
    """Reads everything both summaries show."""

    def _load(self):

        info = self.read_json(SkymapInfo)
        neutrinos = read_neutrino_list(self.event)
        sig = _Significance.read(self.dep_path(CoincSignificanceI3Lvc))
        if not sig.skymap_info:
            sig.skymap_info = info
        rows, comments = _coinc_table(self.event, neutrinos, sig)
        facts = summary_facts(self.event.eventid, info, sig.combined)
        return facts, rows, comments


class CoincSummaryI3LvcTex(_Summary):
    """Standalone LaTeX summary of the GW x IceCube coincidence."""

    FILENAME = "summary_lvc-i3.tex"
    DEPENDENCIES = (CoincSignificanceI3Lvc, CoincScatterI3LvcPng, SkymapInfo, IceCubeNeutrinoList)

    def generate(self, out: Path) -> None:
        facts, rows, comments = self._load()
        out.write_text(summary_tex(self.event.eventid, facts, rows, comments))


def summary_tex(eventid: str, facts, rows, comments: Sequence[str]) -> str:
    """The LaTeX document of the summary (compiles with pdflatex; needs graphicx)."""
    fact_lines = "\n".join(rf"{tex_escape(k)} & {tex_escape(v)} \\" for k, v in facts)
    table = (
        format_tabular(*numbered(COINC_COLUMNS, rows)) if rows else "No neutrinos in the window.\n"
    )
    notes = "\n".join(rf"\item {tex_escape(c)}" for c in comments[1:])
    return rf"""\documentclass[11pt]{{article}}
\usepackage[margin=2cm]{{geometry}}
\usepackage{{graphicx}}
\title{{LLAMA: GW $\times$ IceCube neutrino coincidence for {tex_escape(eventid)}}}
\date{{}}
\begin{{document}}
\maketitle
\section*{{Gravitational-wave event and result}}
\begin{{tabular}}{{ll}}
{fact_lines}
\end{{tabular}}
\section*{{Neutrinos}}
\begin{{center}}
{table}\end{{center}}
\begin{{itemize}}
{notes}
\end{{itemize}}
\section*{{Sky map}}
\begin{{center}}
\includegraphics[width=\textwidth]{{{CoincScatterI3LvcPng.FILENAME}}}
\end{{center}}
\end{{document}}
"""


class CoincSummaryI3LvcPdf(_Summary):
    """PDF summary (drawn with matplotlib: text, the neutrino table, the scatter plot)."""

    FILENAME = "summary_lvc-i3.pdf"
    DEPENDENCIES = (CoincSignificanceI3Lvc, CoincScatterI3LvcPng, SkymapInfo, IceCubeNeutrinoList)

    def generate(self, out: Path) -> None:
        from llama.science import plotting

        facts, rows, comments = self._load()
        fig = summary_figure(  # a figure of its own: no lock needed between threads
            self.event.eventid, facts, rows, comments, self.dep_path(CoincScatterI3LvcPng)
        )
        plotting.save_figure(fig, out, "pdf")


def summary_figure(eventid: str, facts, rows, comments: Sequence[str], png: Path):
    """The one-page summary (A4, like a circular): see :mod:`llama.science.summarypage`."""
    from llama import __version__
    from llama.science.summarypage import summary_page

    return summary_page(
        eventid, facts, rows, comments, png,
        more_rows_in=IceCubeNeutrinoListCoincTxt.FILENAME,
        footer=f"Made by llama {__version__} from {CoincSignificanceI3Lvc.FILENAME}; "
        "all times UTC.",
    )  # fmt: skip
