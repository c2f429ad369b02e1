"""Texts of our PNGs drawn from glyph bitmaps kept across saves.

Matplotlib 3.11's Agg renderer draws a text glyph by glyph: it lays the string out
(libraqm), then for each glyph sets a FreeType transform, renders the glyph and
composites the bitmap. For a scatter plot that is ~40% of a PNG save, and almost all
of it is repeated from one event to the next: the same strings (tick and graticule
labels, neutrino numbers, the key) and the same glyphs at the same sub-pixel offsets
(the neutrino list is monospace at fixed places).

Inside :func:`cached_glyphs`, this thread's Agg texts keep, per string, font and size,
the glyph layout, and per glyph, size, angle and 1/64-pixel offset, the rendered
bitmap. A glyph moved by whole pixels is the same bitmap moved (FreeType translates
the outline by the transform's whole-pixel part before rasterising it), so the picture
is the same, pixel for pixel, as matplotlib's own drawing (tests/test_plot_output.py
compares them). Caches are per thread (FreeType faces are), bounded, and used only by
the threads inside the block.

Texts drawn as outlines (the numbers with a white halo, in PNGs and PDFs) keep their
outline per string and font the same way (``TextToPath.get_text_path``).

This replaces ``RendererAgg.draw_text`` (matplotlib 3.11, private font calls
``_layout``, ``_set_transform`` and ``_render_glyph``) and ``TextToPath.get_text_path``;
with another matplotlib, the hooks stand aside and PNGs are drawn as matplotlib draws
them (:func:`hook_installed` says which).

Examples
--------
>>> import io
>>> from matplotlib.figure import Figure
>>> fig = Figure(figsize=(2, 1), dpi=50)
>>> _ = fig.text(0.1, 0.5, "Δt +12 s")
>>> with cached_glyphs():
...     fig.savefig(io.BytesIO(), format="png")
"""

from __future__ import annotations

import contextlib
import inspect
import math
import threading
from collections.abc import Iterator
from typing import Any

from llama.science.pdffonts import ThreadSwitch

__all__ = ["MAX_ENTRIES", "cached_glyphs", "hook_installed"]

#: Layouts and glyph bitmaps kept per thread, each (cleared when full: a few MB).
MAX_ENTRIES = 20000

_lock = threading.Lock()
_local = threading.local()  # this thread's caches (_caches)
_glyphs_on = ThreadSwitch()  # where the hooks act: inside cached_glyphs
_original: dict[str, Any] = {}


def hook_installed() -> bool:
    """Whether Agg texts drawn inside :func:`cached_glyphs` use the caches (installs
    the hook)."""
    if _original:
        return True
    try:
        import matplotlib as mpl
        from matplotlib.backends import backend_agg
        from matplotlib.ft2font import FT2Font

        draw = backend_agg.RendererAgg.draw_text
        if not mpl.__version__.startswith("3.11."):
            return False  # the replay below mirrors 3.11's draw_text
        params = list(inspect.signature(draw).parameters)
        if params != ["self", "gc", "x", "y", "s", "prop", "angle", "ismath", "mtext"]:
            return False
        if not all(hasattr(FT2Font, f) for f in ("_layout", "_set_transform", "_render_glyph")):
            return False
        if not hasattr(backend_agg.RendererAgg, "_prepare_font"):
            return False
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    from matplotlib.textpath import TextToPath

    outline = TextToPath.get_text_path
    if "features" not in inspect.signature(outline).parameters:
        return False
    with _lock:
        if not _original:
            _original["draw"] = draw
            _original["outline"] = outline
            backend_agg.RendererAgg.draw_text = _hooked_draw_text
            TextToPath.get_text_path = _hooked_text_path
    return True


@contextlib.contextmanager
def cached_glyphs() -> Iterator[None]:
    """Within this block, this thread's Agg texts are drawn from kept layouts and
    glyph bitmaps."""
    hook_installed()
    with _glyphs_on.on():
        yield


def _caches() -> tuple[dict, dict, set]:
    """This thread's text layouts, glyph bitmaps, and glyphs without an outline."""
    if not hasattr(_local, "layouts"):
        _local.layouts, _local.bitmaps, _local.blank = {}, {}, set()
    return _local.layouts, _local.bitmaps, _local.blank


def _remember(cache: dict, key: tuple, value):
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    cache[key] = value
    return value


def _hooked_draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
    """matplotlib 3.11's ``RendererAgg.draw_text`` for plain text, with the layout and
    the glyph bitmaps taken from this thread's caches."""
    if not _glyphs_on or ismath:
        return _original["draw"](self, gc, x, y, s, prop, angle, ismath, mtext)
    import numpy as np
    from matplotlib.backends.backend_agg import get_hinting_flag
    from matplotlib.ft2font import RenderMode

    from llama.science.pdffonts import _text_key

    layouts, bitmaps, blank = _caches()
    flags = get_hinting_flag()
    features = mtext.get_fontfeatures() if mtext is not None else None
    language = mtext.get_language() if mtext is not None else None
    size = prop.get_size_in_points()
    key = _text_key(s, prop, self.dpi, flags, features, language)
    glyphs = layouts.get(key)
    if glyphs is None:
        font = self._prepare_font(prop)
        items = font._layout(s, flags=flags, features=features, language=language)
        glyphs = _remember(
            layouts, key, tuple((i.ft_object, i.glyph_index, i.x, i.y) for i in items)
        )
    antialiased = gc.get_antialiased()
    mode = RenderMode.NORMAL if antialiased else RenderMode.MONO
    cos = math.cos(math.radians(angle))
    sin = math.sin(math.radians(angle))
    matrix = None
    height = self.height
    draw_image = self._renderer.draw_text_image
    for font, glyph, dx, dy in glyphs:  # dy is upwards, y downwards
        # the glyph's origin in 1/64 pixel, FreeType's y upwards, as matplotlib puts it
        px = round(0x40 * (x + dx * cos - dy * sin))
        py = round(0x40 * (height - y + dx * sin + dy * cos))
        bkey = (font, size, self.dpi, glyph, angle, px & 63, py & 63, flags, antialiased)
        bitmap = bitmaps.get(bkey)
        if bitmap is None:
            if (font, glyph) in blank:
                continue  # no outline (a space): an empty bitmap at any offset
            if matrix is None:
                matrix = (0x10000 * np.array([[cos, -sin], [sin, cos]])).round().astype(int)
            font.set_size(size, self.dpi)
            font._set_transform(matrix, [px & 63, py & 63])
            rendered = font._render_glyph(glyph, flags, mode)
            buffer = np.array(rendered.buffer)
            if not antialiased:
                buffer *= 0xFF
            if buffer.size == 0:
                blank.add((font, glyph))
                continue
            bitmap = _remember(bitmaps, bkey, (buffer, rendered.left, rendered.top))
        buffer, left, top = bitmap
        # draw_text_image's y is downwards, at the bitmap's bottom side
        draw_image(buffer, left + (px >> 6), int(height) - (top + (py >> 6)) + buffer.shape[0],
                   0, gc)  # fmt: skip


#: text key -> (vertices, codes) of the text's outline in TextToPath's units
_outlines: dict[tuple, tuple] = {}


def _hooked_text_path(self, prop, s, ismath=False, *, features=None, language=None):
    """``TextToPath.get_text_path`` (the outlines of texts drawn as paths, such as the
    labels with a white halo), kept per string and font inside :func:`cached_glyphs`."""
    if not _glyphs_on or ismath:
        return _original["outline"](self, prop, s, ismath, features=features,
                                    language=language)  # fmt: skip
    import numpy as np

    from llama.science.pdffonts import _text_key

    key = _text_key(s, prop, features, language)
    hit = _outlines.get(key)
    if hit is None:
        verts, codes = _original["outline"](self, prop, s, False, features=features,
                                            language=language)  # fmt: skip
        hit = _remember(_outlines, key, (np.array(verts, float).reshape(-1, 2),
                                         np.array(codes, np.uint8)))  # fmt: skip
    return hit[0].copy(), hit[1].copy()
