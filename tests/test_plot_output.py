"""What the saved scatter plots hold: TrueType fonts in the PDF, the same bytes
whatever was drawn before, and the same pictures when threads draw at the same time.

The events are the example events shipped in llama/examples (multi-order maps with
their injected neutrino lists), as in bench/bench_plots.py.
"""

from __future__ import annotations

import io
import json
import re
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from llama.science import pdffonts, plotting, times
from llama.science.neutrinos import NeutrinoList
from llama.science.skymap import read_sky_map

EXAMPLES = Path(__file__).resolve().parents[1] / "llama" / "examples"


def example(name: str):
    """(sky map, neutrino list, dt [s], title) of one example event."""
    d = EXAMPLES / "events" / name
    skymap = read_sky_map(d / "lvc_skymap.fits")
    info = json.loads((d / "skymap_info.json").read_text())
    nl = NeutrinoList.read(EXAMPLES / "neutrinos" / f"inj-{name}.json")
    return skymap, nl, nl.dt_seconds(times.iso_to_mjd(info["event_time_iso"])), f"{name}: test"


@pytest.fixture(scope="module")
def events():
    names = sorted(p.name for p in (EXAMPLES / "events").iterdir())[:3]
    return [example(n) for n in names]


def save(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    plotting.save_figure(fig, buf, fmt)
    return buf.getvalue()


def pdf_fonts(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """(font subtypes, embedded TrueType font programs) of a PDF written by matplotlib
    (object dictionaries are plain text there; streams are zlib-compressed)."""
    subtypes = re.findall(rb"/Subtype\s*/(Type3|Type1|TrueType|CIDFontType2|Type0)", data)
    programs = []
    for m in re.finditer(rb"/Length1 \d+[^>]*>>\s*stream\r?\n", data):
        start = m.end()
        end = data.index(b"endstream", start)
        programs.append(zlib.decompress(data[start:end]))
    return subtypes, programs


def test_pdf_fonts_are_truetype_and_hold_every_glyph_drawn(events) -> None:
    """No Type 3 font; each embedded TrueType subset maps every character the figure's
    texts use in that font (read back with fontTools from the PDF's bytes)."""
    from fontTools.ttLib import TTFont

    assert pdffonts.hook_installed()
    skymap, nl, dt, title = events[0]
    fig = plotting.draw_scatter(skymap, nl, dt, (), title + " ±Δσ°²", "note", fresh=True)
    data = save(fig, "pdf")
    subtypes, programs = pdf_fonts(data)
    assert b"Type3" not in subtypes and b"CIDFontType2" in subtypes
    assert len(programs) >= 2  # regular, bold, monospace at least
    used = set()
    from llama.science.skyfigure import _visible_texts

    for text in _visible_texts(fig):
        used |= set(text.get_text().replace("\n", ""))
    covered = set()
    for program in programs:
        font = TTFont(io.BytesIO(program))
        glyphs = font.getGlyphOrder()
        assert len(glyphs) < 400  # a subset, not the whole font (DejaVu Sans has 6,000)
        covered |= {chr(c) for c in font.getBestCmap() or {}}
    assert used - {" "} <= covered


def test_pdf_bytes_do_not_depend_on_what_was_saved_before(events) -> None:
    """The cached font subsets are a function of the figure alone: the same drawing
    saved first, after other events, and with the cache cleared gives the same bytes."""
    skymap, nl, dt, title = events[0]
    first = save(plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True), "pdf")
    for other in events[1:]:
        save(plotting.draw_scatter(*other[:3], (), other[3] + " ÅØ…", "n", fresh=True), "pdf")
    again = save(plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True), "pdf")
    pdffonts._subsets.clear()
    cleared = save(plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True), "pdf")
    assert first == again == cleared


def test_save_leaves_rcparams_as_they_were() -> None:
    import matplotlib as mpl
    from matplotlib.figure import Figure

    before = {k: mpl.rcParams[k] for k in pdffonts.SHARED_RC}
    fig = Figure(figsize=(2, 1))
    fig.text(0.1, 0.5, "x")
    save(fig, "pdf")
    save(fig, "png")
    assert {k: mpl.rcParams[k] for k in pdffonts.SHARED_RC} == before


def test_threads_draw_at_once_and_get_the_same_pictures(events) -> None:
    """Three threads draw and save different events at the same time, several rounds,
    with no lock: every PNG and PDF equals, byte for byte, the one drawn alone."""
    alone = []
    for skymap, nl, dt, title in events:
        fig = plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True)
        alone.append((save(fig, "png"), save(fig, "pdf")))
    results: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(events))

    def work(i: int) -> None:
        try:
            start.wait()
            for r in range(3):
                skymap, nl, dt, title = events[(i + r) % len(events)]
                fig = plotting.draw_scatter(skymap, nl, dt, (), title, "n")
                results[i, r] = (save(fig, "png"), save(fig, "pdf"))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (i, r), pair in results.items():
        assert pair == alone[(i + r) % len(events)], (i, r)


def test_png_is_opaque_and_the_sky_is_clipped_to_the_ellipse(events) -> None:
    """The images are drawn opaque (cheaper in a PDF), so the clip to the Mollweide
    ellipse is what keeps colour off the rest of the figure: the corners of the all-sky
    panel stay white."""
    from PIL import Image

    from llama.science import skyfigure

    skymap, nl, dt, title = events[0]
    fig = plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True)
    pixels = np.asarray(Image.open(io.BytesIO(save(fig, "png"))).convert("RGB"))
    left, bottom, width, height = (round(v * plotting.DPI) for v in skyfigure.ALLSKY_IN)
    top = pixels.shape[0] - bottom - height
    corner = pixels[top + 2 : top + 12, left + 2 : left + 12]
    assert (corner == 255).all()
    centre = pixels[top + height // 2 - 3 : top + height // 2 + 3, left + 40 : left + 60]
    assert (centre < 255).any()  # the map's colour inside the ellipse


def test_png_with_the_pre_rendered_layer_equals_a_full_draw(events) -> None:
    """The PNG whose unchanging parts are pre-rendered and blended over the event's
    drawing equals matplotlib's own full drawing of the figure to within rounding
    (two levels of 255 per channel, in under 0.1% of the pixels), with neutrinos and
    candidates."""
    from PIL import Image

    from llama.science.skyfigure import static_layer

    candidates = [plotting.Candidate(float(nl.ra[0]) + 1.0, float(nl.dec[0]), "ZTF19abc")
                  for _, nl, _, _ in events[:1]]  # fmt: skip
    for skymap, nl, dt, title in events:
        fig = plotting.draw_scatter(skymap, nl, dt, candidates, title, "n", fresh=True)
        assert static_layer(fig) is not None
        layered = np.asarray(Image.open(io.BytesIO(save(fig, "png"))).convert("RGB"))
        full = io.BytesIO()
        with pdffonts.shared_rc():
            fig.savefig(full, format="png", dpi=plotting.DPI)
        drawn = np.asarray(Image.open(full).convert("RGB"))
        assert layered.shape == drawn.shape
        diff = np.abs(layered.astype(int) - drawn.astype(int)).max(axis=-1)
        assert diff.max() <= 2 and (diff > 0).mean() < 1e-3
        # and the layer is not empty: without it the key and captions would be missing
        assert static_layer(fig).artists and len(static_layer(fig)._pixels[0]) > 5000


def test_pdf_with_texts_laid_out_once_equals_matplotlibs_own(events) -> None:
    """Texts whose size and glyph layout are kept across saves
    (:func:`pdffonts.cached_text`) give the same PDF bytes as matplotlib laying every
    text out again: on a first save (cache empty), on a save that reuses every text,
    and for a figure whose texts hold non-Latin-1 symbols, superscripts and a rotated
    caption."""
    assert pdffonts.text_hook_installed()  # else the comparison below tests nothing

    def pdf(fig, cached: bool) -> bytes:
        buf = io.BytesIO()
        meta = {"CreationDate": None, "Producer": None}
        with pdffonts.shared_rc(), pdffonts.cached_subsets():
            if cached:
                with pdffonts.cached_text():
                    fig.savefig(buf, format="pdf", dpi=plotting.PDF_IMAGE_DPI, metadata=meta)
            else:
                fig.savefig(buf, format="pdf", dpi=plotting.PDF_IMAGE_DPI, metadata=meta)
        return buf.getvalue()

    pdffonts._layouts.clear()
    pdffonts._sizes.clear()
    pdffonts._bodies.clear()
    for skymap, nl, dt, title in events:
        fig = plotting.draw_scatter(skymap, nl, dt, (), title + " Δσ°² ⁻³ ʰᵐˢ", "n", fresh=True)
        own = pdf(fig, cached=False)
        assert pdf(fig, cached=True) == own  # laid out now
        assert pdf(fig, cached=True) == own  # every text taken from the cache
    assert pdffonts._layouts and pdffonts._sizes and pdffonts._bodies


def test_png_texts_from_kept_glyphs_equal_matplotlibs_own(events) -> None:
    """Agg texts drawn from kept layouts and glyph bitmaps
    (:func:`glyphcache.cached_glyphs`) give the same pixels as matplotlib rendering
    every glyph: first with empty caches, then with every glyph taken from them, with
    rotated text (the zoom's Dec caption), symbols and a text at fractional offsets."""
    from PIL import Image

    from llama.science import glyphcache

    assert glyphcache.hook_installed()  # else the comparison below tests nothing

    def png(fig, cached: bool) -> np.ndarray:
        buf = io.BytesIO()
        with pdffonts.shared_rc():
            if cached:
                with glyphcache.cached_glyphs():
                    fig.savefig(buf, format="png", dpi=plotting.DPI)
            else:
                fig.savefig(buf, format="png", dpi=plotting.DPI)
        return np.asarray(Image.open(buf).convert("RGBA"))

    def pdf(fig, cached: bool) -> bytes:
        buf = io.BytesIO()
        meta = {"CreationDate": None, "Producer": None}
        with pdffonts.shared_rc():
            if cached:
                with glyphcache.cached_glyphs():
                    fig.savefig(buf, format="pdf", metadata=meta)
            else:
                fig.savefig(buf, format="pdf", metadata=meta)
        return buf.getvalue()

    glyphcache._outlines.clear()
    for skymap, nl, dt, title in events:
        fig = plotting.draw_scatter(skymap, nl, dt, (), title + " Δσ°² ⁻³", "n", fresh=True)
        fig.text(0.313, 0.0271, "1/64 px: Δt +12.5 s", fontsize=6.3, rotation=17)
        own = png(fig, cached=False)
        assert (png(fig, cached=True) == own).all()  # rendered now
        assert (png(fig, cached=True) == own).all()  # every glyph from the cache
        # the labels with a halo are outlines in both formats: kept outlines, same PDF
        assert pdf(fig, cached=True) == pdf(fig, cached=False)
    assert glyphcache._outlines  # the outlines were taken from the cache


def _decoded(rows: bytes, bits: int, palette: bytes | None, img) -> tuple:
    """Pixels (and palette) of PDF image rows, read back through a PNG file by Pillow."""
    import struct

    from PIL import Image

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    colour = {"L": 0, "RGB": 2, "P": 3}[img.mode]
    header = struct.pack(">IIBBBBB", img.width, img.height, bits, colour, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    if palette is not None:
        png += chunk(b"PLTE", palette)
    png += chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    back = Image.open(io.BytesIO(png))
    n = len(back.getcolors(256) or []) if img.mode == "P" else 0
    used = sorted({int(i) for i in np.unique(np.asarray(back))}) if img.mode == "P" else []
    pal = back.getpalette() if img.mode == "P" else None
    colours = [tuple(pal[3 * i : 3 * i + 3]) for i in used] if pal else []
    return np.asarray(back).tobytes(), colours, n


def test_pdf_images_hold_the_pixels_pillow_would_have_encoded(events, monkeypatch) -> None:
    """Every image of a scatter PDF (colour ramp, all-sky map, zoom), embedded through
    :func:`pdffonts.png_rows`, holds the same pixels and colours as the rows Pillow's
    encoder gives matplotlib (decoded both ways)."""
    assert pdffonts.image_hook_installed()
    seen = []
    real = pdffonts.png_rows

    def recording(img):
        seen.append(img.copy())
        return real(img)

    monkeypatch.setattr(pdffonts, "png_rows", recording)
    skymap, nl, dt, title = events[0]
    save(plotting.draw_scatter(skymap, nl, dt, (), title, "n", fresh=True), "pdf")
    assert len(seen) >= 3 and {img.mode for img in seen} & {"P", "RGB"}
    pillow = pdffonts._original_png["write"]
    for img in seen:
        assert _decoded(*real(img), img) == _decoded(*pillow(None, img), img)


def test_row_table_gives_the_rows_a_binary_search_gives(events, monkeypatch) -> None:
    """Directions looked up in a multi-order map through the table of every pixel (maps
    up to DENSE_MAX_ORDER) land in the same rows as through the binary search among the
    rows' pixel ranges: the example maps (the whole sky) and the same map with a third
    of its rows taken out (holes: -1), at the map's order and coarser and finer ones."""
    from llama.science.skymap import SkyMap

    rng = np.random.default_rng(5)
    skymap = events[0][0]
    keep = rng.random(len(skymap.uniq)) > 0.33
    holey = SkyMap(probdensity=skymap.probdensity[keep], uniq=skymap.uniq[keep])
    limit = plotting.DENSE_MAX_ORDER
    for m in (skymap, holey, *(e[0] for e in events[1:])):
        top = int(m.max_order)
        assert top <= limit  # the examples use the table: the comparison means something
        for order in (top - 2, top, top + 1):
            ipix = rng.integers(0, 12 << (2 * order), 20000)
            plotting._RANGES.clear()
            monkeypatch.setattr(plotting, "DENSE_MAX_ORDER", 12)
            dense = plotting._rows_of_nested(m, order, ipix)
            plotting._RANGES.clear()
            monkeypatch.setattr(plotting, "DENSE_MAX_ORDER", -1)
            search = plotting._rows_of_nested(m, order, ipix)
            assert (dense == search).all() and ((search == -1).any() == (m is holey))
    plotting._RANGES.clear()


def test_cached_orders_and_areas_are_the_maps_own(events) -> None:
    """The rows' orders, areas and probabilities kept per map (a drawing asks a dozen
    times) equal SkyMap's own, and a map with other rows gets its own."""
    from llama.science.skymap import SkyMap

    for skymap, *_ in events:
        for _ in range(2):  # computed, then from the cache
            orders, areas = plotting._orders_and_areas(skymap)
            assert (orders == skymap.orders).all() and (areas == skymap.pixel_area()).all()
            assert (plotting._probability(skymap) == skymap.probability()).all()
            assert plotting._max_order(skymap) == skymap.max_order
    skymap = events[0][0]
    coarse = SkyMap(probdensity=np.full(48, 1 / (4 * np.pi)), uniq=np.arange(16, 64))
    assert plotting._max_order(coarse) == 1 and plotting._max_order(skymap) == skymap.max_order


def test_font_subsets_kept_on_disk_serve_a_new_process(events, tmp_path, monkeypatch) -> None:
    """The font subsets a PDF cut are kept under $XDG_CACHE_HOME/llama; a process that
    has none in memory takes them from there without cutting any (same bytes); a
    damaged file is cut again (same bytes)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    skymap, nl, dt, title = events[0]
    fig = plotting.draw_scatter(skymap, nl, dt, (), title + " ∂ ∇", "n", fresh=True)  # new glyphs
    pdffonts._subsets.clear()
    first = save(fig, "pdf")
    kept = sorted((tmp_path / "llama" / "pdf-font-subsets").iterdir())
    assert len(kept) >= 2  # regular, bold, monospace at least

    def no_cutting(fontfile, glyphs):
        raise AssertionError("a subset was cut again instead of read from the disk")

    pdffonts._subsets.clear()  # as in a new process
    monkeypatch.setattr(pdffonts, "_original", no_cutting)
    assert save(fig, "pdf") == first
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for path in kept:
        path.write_bytes(b"\x00\x00\x00\x05{oops")  # damaged
    pdffonts._subsets.clear()
    assert save(fig, "pdf") == first
