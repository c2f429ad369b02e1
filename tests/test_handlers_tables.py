"""Neutrino tables and coincidence summaries run through Event.generate."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_handlers_plots import NEUTRINOS, PER_NEUTRINO, make_event

from llama.event import Event
from llama.handlers import plots, tables


@pytest.fixture(scope="module")
def event(tmp_path_factory) -> Event:
    return make_event(tmp_path_factory.mktemp("tables"))


def _expected(rows=NEUTRINOS) -> np.ndarray:
    return np.array([[r["dt"], r["ra"], r["dec"], r["energy"] / 1e3, r["sigma"]] for r in rows])


def _balanced(tex: str) -> bool:
    depth = 0
    for m in re.finditer(r"(?<!\\)[{}]", tex):
        depth += 1 if m.group() == "{" else -1
        if depth < 0:
            return False
    return depth == 0


def _tabular_rows(tex: str) -> list[str]:
    """Data rows of the tabular(s): lines ending in \\\\ after the header line."""
    body = tex.split(r"\begin{tabular}{r", 1)[1].split(r"\end{tabular}", 1)[0]
    lines = [ln for ln in body.splitlines() if ln.rstrip().endswith(r"\\")]
    return lines[1:]  # the first is the header


def test_txt_round_trip(event: Event) -> None:
    event.generate(tables.IceCubeNeutrinoListTxt)
    text = event.path(tables.IceCubeNeutrinoListTxt.FILENAME).read_text()
    names, rows = tables.read_fixed_width(text)
    assert names == ["No", "dt[s]", "RA[deg]", "Dec[deg]", "E[TeV]", "Sigma[deg]"]
    got = np.array(rows)
    assert got[:, 0].tolist() == list(range(1, len(NEUTRINOS) + 1))  # as the plots number them
    np.testing.assert_allclose(got[:, 1:], _expected(), atol=6e-3)
    assert "relative to GW event time 2019-04-25T08:18:05" in text
    # fixed width: every table line has the same length, numbers right-aligned
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert len({len(ln) for ln in lines}) == 1


def test_tex_table(event: Event) -> None:
    event.generate(tables.IceCubeNeutrinoListTex)
    tex = event.path(tables.IceCubeNeutrinoListTex.FILENAME).read_text()
    assert _balanced(tex)
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    rows = _tabular_rows(tex)
    assert len(rows) == len(NEUTRINOS)
    cells = [c.strip().strip("$") for c in rows[0].rstrip(" \\").split("&")]
    assert [float(c) for c in cells] == pytest.approx([1, *_expected()[0]], abs=6e-3)
    assert all(len(r.split("&")) == 6 for r in rows)


def test_coinc_txt_has_p_values(event: Event) -> None:
    event.generate(tables.IceCubeNeutrinoListCoincTxt)
    text = event.path(tables.IceCubeNeutrinoListCoincTxt.FILENAME).read_text()
    names, rows = tables.read_fixed_width(text)
    assert names[-2:] == ["p_value", "odds_ratio"]
    got = np.array(rows)
    assert names[0] == "No" and got[:, 0].tolist() == list(range(1, len(NEUTRINOS) + 1))
    np.testing.assert_allclose(got[:, 1:6], _expected(), atol=6e-3)
    np.testing.assert_allclose(got[:, 6], [p["p_value"] for p in PER_NEUTRINO], rtol=1e-2)
    np.testing.assert_allclose(got[:, 7], [p["odds_ratio"] for p in PER_NEUTRINO], rtol=1e-2)
    assert "combined: odds ratio 0.423, p-value 0.0061" in text
    assert "10000 on-the-fly background trials" in text


def test_coinc_txt_rejects_mismatched_significance(tmp_path: Path) -> None:
    import json

    from test_handlers_plots import significance

    event = make_event(tmp_path)
    event.path("significance_lvc-i3.json").write_text(json.dumps(significance(NEUTRINOS[:2])))
    with pytest.raises(Exception, match="regenerate the significance"):
        event.generate(tables.IceCubeNeutrinoListCoincTxt)


def test_summary_tex(event: Event) -> None:
    event.generate(plots.CoincScatterI3LvcPng)
    event.generate(tables.CoincSummaryI3LvcTex)
    tex = event.path(tables.CoincSummaryI3LvcTex.FILENAME).read_text()
    assert _balanced(tex)
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert r"\includegraphics[width=\textwidth]{scatterplot_lvc-i3.png}" in tex
    for needle in ("S190425z", "GSTLAL", "L1, V1", "4.5e-13 Hz", "0.0061", "0.423", "10000"):
        assert needle in tex
    assert len(_tabular_rows(tex.split(r"\section*{Neutrinos}")[1])) == len(NEUTRINOS)
    assert tex.count(r"\begin{") == tex.count(r"\end{")


def test_summary_pdf(event: Event) -> None:
    event.generate(plots.CoincScatterI3LvcPng)
    event.generate(tables.CoincSummaryI3LvcPdf)
    data = event.path(tables.CoincSummaryI3LvcPdf.FILENAME).read_bytes()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    assert b"/Image" in data or b"/XObject" in data  # the scatter plot is embedded
    meta = event.read_meta(tables.CoincSummaryI3LvcPdf.FILENAME)
    assert "scatterplot_lvc-i3.png" in meta["inputs"]


def test_empty_list_gives_empty_tables(tmp_path: Path) -> None:
    event = make_event(tmp_path, rows=[])
    for handler in (
        tables.IceCubeNeutrinoListTxt,
        tables.IceCubeNeutrinoListTex,
        tables.IceCubeNeutrinoListCoincTxt,
        plots.CoincScatterI3LvcPng,
        tables.CoincSummaryI3LvcTex,
        tables.CoincSummaryI3LvcPdf,
    ):
        event.generate(handler)
    names, rows = tables.read_fixed_width(event.path("icecube_neutrino_list.txt").read_text())
    assert len(names) == 6 and rows == []
    names, rows = tables.read_fixed_width(event.path("icecube_neutrino_list_coinc.txt").read_text())
    assert len(names) == 8 and rows == []
    tex = event.path("icecube_neutrino_list.tex").read_text()
    assert _balanced(tex) and _tabular_rows(tex) == []
    summary = event.path("summary_lvc-i3.tex").read_text()
    assert _balanced(summary) and "No neutrinos in the window" in summary
    assert event.path("summary_lvc-i3.pdf").read_bytes()[:4] == b"%PDF"


def test_without_skymap_info_dt_is_relative_to_first_neutrino(tmp_path: Path) -> None:
    event = make_event(tmp_path, with_info=False)
    event.generate(tables.IceCubeNeutrinoListTxt)
    text = event.path("icecube_neutrino_list.txt").read_text()
    _, rows = tables.read_fixed_width(text)
    dt = np.array(rows)[:, 1]
    np.testing.assert_allclose(dt, [r["dt"] - NEUTRINOS[0]["dt"] for r in NEUTRINOS], atol=6e-3)
    assert "first neutrino" in text


def test_tex_escape_in_summary() -> None:
    facts = [("Pipeline", "spiir_test & 50%")]
    tex = tables.summary_tex("S1_x", facts, [], ["c0", "dt ~ #1"])
    assert r"spiir\_test \& 50\%" in tex and r"S1\_x" in tex and r"\#1" in tex
    assert _balanced(tex)


def test_number_formats_in_tex() -> None:
    rows = [(-5.0, 1.0, -2.0, 3.0, 0.5, 1.2e-5, 7.0e4)]
    tex = tables.format_tabular(tables.COINC_COLUMNS, rows)
    assert r"$1.2 \times 10^{-5}$" in tex and r"$7 \times 10^{4}$" in tex
    assert "$-5.00$" in tex and "$-2.000$" in tex
    assert _balanced(tex)


def test_blinded_flag_scrambles_ra_in_tables(tmp_path: Path) -> None:
    """Under BLINDED_NEUTRINOS=true a supplied unblinded list never shows its true RA."""
    event = make_event(tmp_path)
    event.write_flags({"BLINDED_NEUTRINOS": "true"})
    event.generate(tables.IceCubeNeutrinoListTxt)
    _, rows = tables.read_fixed_width(event.path("icecube_neutrino_list.txt").read_text())
    got = np.array(rows)
    np.testing.assert_allclose(got[:, 3], _expected()[:, 2], atol=6e-3)  # Dec kept
    assert not np.allclose(got[:, 2], _expected()[:, 1], atol=6e-3)  # RA scrambled
