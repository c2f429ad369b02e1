"""Right ascension labelled in hours (``ra_unit="hours"`` / ``LLAMA_PLOT_RA_UNIT``).

Each label is checked against the projection itself: a zoom label's RA, read back
from its text, is the RA of the frame's edge at the label's position (inverse
projection), and an all-sky label sits where the forward projection puts its RA on the
equator. Texts keep clear of each other in both units.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.text import Text
from test_plot_output import EXAMPLES, example

from llama.science import plotting
from llama.science.skyfigure import ScatterTemplate, ra_text
from llama.science.skyproj import Mollweide


def drawn(name: str, unit: str) -> ScatterTemplate:
    """A template holding the drawing of example event ``name`` with RA in ``unit``."""
    skymap, nl, dt, title = example(name)
    template = ScatterTemplate(True, False, unit)
    template.draw(skymap, nl, dt, (), title, "note")
    return template


def parse_ra(text: str) -> float | None:
    """RA [deg] of a label "135°" or "9ʰ20ᵐ30ˢ" (None for any other text)."""
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)°", text):
        return float(m.group(1))
    if m := re.fullmatch(r"(\d+)ʰ(?:(\d+)ᵐ(?:(\d+)ˢ)?)?", text):
        h, mi, s = (int(g or 0) for g in m.groups())
        return 15.0 * h + 0.25 * mi + s / 240.0
    return None


@pytest.mark.parametrize("name", sorted(p.name for p in (EXAMPLES / "events").iterdir())[:4])
@pytest.mark.parametrize("unit", ["deg", "hours"])
def test_zoom_labels_name_the_ra_of_the_frame_edge_under_them(name: str, unit: str) -> None:
    template = drawn(name, unit)
    zoom_ax, reach = template.zoom_ax, template.zoom_panel.reach
    zea = template.zoom_panel.projection
    labels = [t for t in zoom_ax.texts if parse_ra(t.get_text()) is not None]
    assert len(labels) >= 2
    for t in labels:
        x, y = t.get_position()
        assert y == pytest.approx(-reach * 1.015)
        ra_edge, _ = zea.inverse(np.array([x]), np.array([-reach]))
        gap = (parse_ra(t.get_text()) - ra_edge[0] + 180.0) % 360.0 - 180.0
        # rounded to the label's precision: 1 s of time is 1/240 deg
        assert abs(gap) < 1e-3, (t.get_text(), ra_edge[0])
        if unit == "hours":
            assert "ʰ" in t.get_text() and "°" not in t.get_text()


@pytest.mark.parametrize("unit", ["deg", "hours"])
def test_allsky_labels_sit_on_the_equator_at_their_ra(unit: str) -> None:
    ax = drawn("S190425a", unit).allsky.ax
    marks = {t.get_text(): t.get_position() for t in ax.texts if parse_ra(t.get_text()) is not None}
    expected = [ra_text(r, unit) for r in range(0, 360, 60)]
    assert sorted(marks) == sorted(expected)
    moll = Mollweide()
    for text, (x, y) in marks.items():
        fx, fy = moll.forward(parse_ra(text), 0.0)
        assert x == pytest.approx(float(fx), abs=1e-9) and y == pytest.approx(float(fy) - 0.03)
    caption = [t.get_text() for t in ax.texts if t.get_text().startswith("Right ascension")]
    assert caption and ("[h]" in caption[0]) == (unit == "hours")


@pytest.mark.parametrize("name", ["S190425d", "S190425g"])
def test_hours_texts_do_not_overlap_and_stay_inside(name: str) -> None:
    skymap, nl, dt, title = example(name)
    fig = plotting.draw_scatter(skymap, nl, dt, (), title, "note", fresh=True, ra_unit="hours")
    boxes = [b for b in plotting.text_boxes(fig) if b.width > 0]
    width, height = fig.bbox.width, fig.bbox.height
    assert all(0 <= b.x0 and b.x1 <= width and 0 <= b.y0 and b.y1 <= height for b in boxes)
    clashes = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    assert not clashes


def test_the_environment_variable_chooses_the_unit(monkeypatch) -> None:
    skymap, nl, dt, title = example("S190425a")
    monkeypatch.setenv(plotting.RA_UNIT_VARIABLE, "hours")
    key_hours = plotting.drawing_key(skymap, nl, dt, (), title, "n")
    fig = plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True)
    texts = {t.get_text() for t in fig.findobj(Text)}
    assert "8ʰ" in texts and "120°" not in texts
    monkeypatch.delenv(plotting.RA_UNIT_VARIABLE)
    assert plotting.drawing_key(skymap, nl, dt, (), title, "n") != key_hours  # redrawn
    fig = plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True)
    assert "120°" in {t.get_text() for t in fig.findobj(Text)}
    monkeypatch.setenv(plotting.RA_UNIT_VARIABLE, "hms")
    with pytest.raises(ValueError, match="LLAMA_PLOT_RA_UNIT='hms'.*deg or hours"):
        plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True)


def test_ra_text_rounds_and_wraps() -> None:
    assert ra_text(359.99999, "hours", 15.0) == "0ʰ"
    assert ra_text(7.5, "hours", 0.125) == "0ʰ30ᵐ00ˢ"
    assert ra_text(361.0, "deg") == "1°"
    assert parse_ra(ra_text(123.456, "hours", 0.125)) == pytest.approx(123.456, abs=1 / 240)
