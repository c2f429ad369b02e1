"""TrueType (Type 42) fonts in our PDFs without paying for a font subset per save.

Journals and arXiv ask for PDFs whose fonts are Type 1 or TrueType; matplotlib's
default (``pdf.fonttype: 3``) embeds Type 3 fonts, which some viewers render poorly
and some submission systems reject. With ``pdf.fonttype: 42`` matplotlib embeds each
font as TrueType, but it cuts a subset of the font with fontTools at every save, which
costs ~0.1 s per font (it decodes the font's layout tables each time): ~0.33 s per
scatter plot, more than the whole rest of the save (``bench/bench_plots.py``).

:func:`cached_subsets` makes that subset once per font and set of glyphs: while it is
active (in this thread), each subset holds a fixed base set of glyphs (printable ASCII
and the symbols our figures use, :data:`BASE_TEXT`) plus whatever else was asked for,
so almost every save asks for the same subset and reuses its bytes (kept on disk too,
under ``$XDG_CACHE_HOME/llama/pdf-font-subsets``, so that a new process, such as each
worker of a run, does not cut them again: its first PDF ~0.47 -> 0.12 s). The subset
a PDF embeds depends only on the glyphs of that figure (never on what was saved
before), so the same figure gives the same bytes in every process. It costs ~40 KB per
scatter plot PDF (148 KB against 107 KB with exact subsets), the unused base glyphs.
Outside :func:`cached_subsets`, and in any other thread, matplotlib subsets as it
always does.

This hooks ``matplotlib.backends._backend_pdf_ps.get_glyphs_subset``, a private
function (as of matplotlib 3.11); when a matplotlib release changes it, the hook stands
aside and PDFs are still right, only slower (:func:`hook_installed` says which).

:func:`cached_text` does the same for the texts themselves: a PDF save measures and
lays out every text again, glyph by glyph, which was ~60% of a scatter plot's PDF;
inside it, each text's size and glyph layout are kept per string, font and size, and
the PDF operators are written from them by the steps of matplotlib 3.11's
``RendererPdf.draw_text`` (the same bytes; with another matplotlib the hook stands
aside, :func:`text_hook_installed`). PDF 0.16 -> 0.09 s per scatter plot.
:func:`plain_image_rows` embeds images as unfiltered rows (:func:`png_rows`) instead of
through Pillow's PNG encoder, whose adaptive filters cost more than the compression.

Examples
--------
>>> import io
>>> from matplotlib.figure import Figure
>>> fig = Figure(figsize=(2, 1))
>>> _ = fig.text(0.1, 0.5, "Dec +30°")
>>> with cached_subsets():
...     with shared_rc():
...         fig.savefig(io.BytesIO(), format="pdf")
"""

from __future__ import annotations

import contextlib
import inspect
import io
import threading
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BASE_TEXT",
    "SHARED_RC",
    "ThreadSwitch",
    "cached_subsets",
    "cached_text",
    "hook_installed",
    "image_hook_installed",
    "plain_image_rows",
    "png_rows",
    "shared_rc",
    "text_hook_installed",
]

#: Characters every cached subset holds (so most figures need no other subset).
BASE_TEXT = "".join(chr(c) for c in range(32, 127)) + "°±×÷²³µσΔ…–—−'’“”⁰¹⁴⁵⁶⁷⁸⁹⁻ʰᵐˢ"
#: Font subsets kept (one per font and glyph set; a figure uses three or four fonts).
MAX_CACHED = 64
#: rcParams while our figures are drawn and saved: TrueType fonts in PDFs; glyphs
#: without hinting (no visible difference at this size, ~17% less of a PNG's cost).
#: Set for the drawing as well as the save, since hinting changes the measured size
#: of texts, on which the layout of labels depends. PDF streams (page, fonts) deflated
#: at zlib level 1 instead of 6: ~15 ms less per scatter plot for a file ~5% larger.
SHARED_RC = {"pdf.fonttype": 42, "text.hinting": "no_hinting", "pdf.compression": 1}


class ThreadSwitch:
    """On in a thread while it is inside one of the switch's ``with switch.on():``
    blocks (nested blocks count): how a hook installed in matplotlib for every thread
    knows whether to act in the thread calling it.

    Examples
    --------
    >>> switch = ThreadSwitch()
    >>> with switch.on():
    ...     inside = bool(switch)
    >>> inside, bool(switch)
    (True, False)
    """

    def __init__(self) -> None:
        self._depth = threading.local()

    @contextlib.contextmanager
    def on(self) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth

    def __bool__(self) -> bool:
        return bool(getattr(self._depth, "n", 0))


_lock = threading.Lock()
#: where this module's hooks act: cached_subsets, cached_text and plain_image_rows
_subsets_on, _text_on, _images_on = ThreadSwitch(), ThreadSwitch(), ThreadSwitch()
#: (font path, face index) -> glyph indices of BASE_TEXT in that font
_base: dict[tuple[str, int], frozenset[int]] = {}
#: (font path, face index, glyphs) -> (subset font bytes, glyph index map)
_subsets: dict[tuple[str, int, frozenset[int]], tuple[bytes, dict[int, int]]] = {}
_original: Any = None
_rc_users = 0
_rc_saved: dict[str, Any] = {}


def hook_installed() -> bool:
    """Whether matplotlib's font subsetting goes through the cache (installs it)."""
    return _install()


def _install() -> bool:
    global _original
    if _original is not None:
        return True
    try:
        from matplotlib.backends import _backend_pdf_ps as pdf_ps

        fn = pdf_ps.get_glyphs_subset
        if list(inspect.signature(fn).parameters) != ["fontfile", "glyphs"]:
            return False
        if not hasattr(pdf_ps.SubsetResults, "_as_cm"):  # the 3.11 interface
            return False
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    with _lock:
        if _original is None:
            _original = fn
            pdf_ps.get_glyphs_subset = _hooked_subset
    return True


@contextlib.contextmanager
def cached_subsets() -> Iterator[None]:
    """Within this block, this thread's PDF saves reuse cached font subsets."""
    _install()
    with _subsets_on.on():
        yield


@contextlib.contextmanager
def shared_rc() -> Iterator[None]:
    """:data:`SHARED_RC` set in matplotlib's rcParams while any thread is inside.

    rcParams are global: a ``matplotlib.rc_context`` per thread would let one thread
    restore the values another thread set, and leave them changed. Here the first
    thread in sets them and the last one out restores the values from before; every
    thread inside sees the same values. Re-entrant.
    """
    import matplotlib as mpl

    global _rc_users
    with _lock:
        if _rc_users == 0:
            _rc_saved.clear()
            _rc_saved.update({k: mpl.rcParams[k] for k in SHARED_RC})
            mpl.rcParams.update(SHARED_RC)
        _rc_users += 1
    try:
        yield
    finally:
        with _lock:
            _rc_users -= 1
            if _rc_users == 0:
                mpl.rcParams.update(_rc_saved)


def _base_glyphs(path: str, face: int) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    key = (path, face)
    if key not in _base:
        font = FT2Font(path, face_index=face)
        _base[key] = frozenset(g for g in (font.get_char_index(ord(c)) for c in BASE_TEXT) if g)
    return _base[key]


class _SubsetFont:
    """The part of a fontTools TTFont that matplotlib's PDF writer uses of a subset:
    saving it (here: writing the cached bytes) and closing it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def save(self, file, reorderTables: bool = True) -> None:  # noqa: N803 (fontTools')
        file.write(self.data)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _hooked_subset(fontfile, glyphs):
    if not _subsets_on:
        return _original(fontfile, glyphs)
    from matplotlib.backends import _backend_pdf_ps as pdf_ps

    path, face = str(fontfile), int(getattr(fontfile, "face_index", 0) or 0)
    wanted = frozenset(int(g) for g in glyphs)
    with _lock:
        key = (path, face, wanted | _base_glyphs(path, face))
        entry = _subsets.get(key)
    if entry is None:
        entry = _stored_subset(key)
    if entry is None:
        with _original(fontfile, set(key[2])) as result:
            data = io.BytesIO()
            result.font.save(data, reorderTables=False)
            entry = (data.getvalue(), dict(result.glyph_index_map))
        _store_subset(key, entry)
    if key not in _subsets:
        with _lock:
            if len(_subsets) >= MAX_CACHED:  # odd glyph sets: keep the memory bounded
                _subsets.pop(next(iter(_subsets)))
            _subsets.setdefault(key, entry)
    return pdf_ps.SubsetResults(_SubsetFont(entry[0]), dict(entry[1]))._as_cm()


# --- font subsets kept on disk for later processes ---------------------------------------
#
# Each process (each worker of a run) would otherwise cut its subsets again at its first
# PDF: ~0.33 s of CPU for a scatter plot's three fontTools subsets. They are kept under
# $XDG_CACHE_HOME/llama (~/.cache/llama) as the Earth-orientation arrays are, named by a
# digest of what makes them (the font file, its size and time, the glyphs, the
# matplotlib and fontTools versions), written atomically, and ignored when unreadable.


def _subset_path(key: tuple[str, int, frozenset[int]]) -> str | None:
    """Where the subset of ``key`` (font path, face index, glyphs) is kept, or None."""
    import hashlib
    import os

    import fontTools
    import matplotlib as mpl

    path, face, glyphs = key
    try:
        st = os.stat(path)
    except OSError:
        return None
    made_of = (mpl.__version__, fontTools.version, path, face, st.st_size, st.st_mtime_ns,
               sorted(glyphs))  # fmt: skip
    digest = hashlib.sha256(repr(made_of).encode()).hexdigest()[:24]
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(root, "llama", "pdf-font-subsets", f"{digest}.bin")


def _stored_subset(key) -> tuple[bytes, dict[int, int]] | None:
    """(font bytes, glyph index map) kept by :func:`_store_subset`, or None."""
    import json

    path = _subset_path(key)
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            blob = file.read()
        size = int.from_bytes(blob[:4], "big")
        index_map = {int(k): int(v) for k, v in json.loads(blob[4 : 4 + size]).items()}
        data = blob[4 + size :]
    except (OSError, ValueError, AttributeError):
        return None  # not kept yet, or damaged: cut again
    if not data or not set(key[2]) <= set(index_map):  # the map holds every glyph asked
        return None
    return data, index_map


def _store_subset(key, entry: tuple[bytes, dict[int, int]]) -> None:
    """Keep a subset for later processes (nothing kept where the cache is not writable)."""
    import json
    import os

    from llama.storage import atomic_write_bytes

    path = _subset_path(key)
    if path is None:
        return
    header = json.dumps({str(k): v for k, v in sorted(entry[1].items())}).encode()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_bytes(path, len(header).to_bytes(4, "big") + header + entry[0])
    except OSError:
        pass


# --- texts laid out once, not at every save ----------------------------------------------
#
# A PDF save makes a new renderer, so matplotlib measures every text again (its size
# cache is per renderer) and lays every text out glyph by glyph again (libraqm, then a
# FreeType load per glyph): ~60% of a scatter plot's PDF. Neither depends on anything
# but the string, the font and its size, so both are kept here across saves. What is
# written to the PDF is made by the same steps as matplotlib's ``draw_text`` (glyphs
# registered with the file's font tracker, the same operators), so the bytes are the
# same as without the cache (tests/test_plot_output.py compares them).

#: Texts whose layout and size are kept (entries are small; cleared when full).
MAX_TEXTS = 4096
#: rcParams that decide which font file a FontProperties resolves to.
_FONT_RC = ("font.family", "font.style", "font.variant", "font.weight", "font.stretch",
            "font.size", "font.serif", "font.sans-serif", "font.cursive",
            "font.fantasy", "font.monospace")  # fmt: skip

_original_text: dict[str, Any] = {}
#: text key -> glyphs as (face, char, glyph index, x, y, kern before)
_layouts: dict[tuple, tuple[tuple, ...]] = {}
#: text key -> (width, height, descent) [pt]
_sizes: dict[tuple, tuple[float, float, float]] = {}


class _Face(tuple):
    """The font file of a glyph (what the PDF writer's font tracker asks of a font)."""

    __slots__ = ()

    def __new__(cls, fname: str, face_index: int):
        return super().__new__(cls, (fname, face_index))

    @property
    def fname(self) -> str:
        return self[0]

    @property
    def face_index(self) -> int:
        return self[1]


def text_hook_installed() -> bool:
    """Whether PDF saves inside :func:`cached_text` reuse texts' layouts (installs it).

    False when this matplotlib's PDF writer is not the one the replay was written for
    (3.11's ``draw_text``); saves are then right, only slower."""
    return _install_text()


def _install_text() -> bool:
    if _original_text:
        return True
    try:
        import matplotlib as mpl
        from matplotlib import _text_helpers
        from matplotlib.backends import backend_pdf
        from matplotlib.backends._backend_pdf_ps import CharacterTracker

        draw = backend_pdf.RendererPdf.draw_text
        measure = backend_pdf.RendererPdf.get_text_width_height_descent
        if not mpl.__version__.startswith("3.11."):
            return False  # the replay below mirrors 3.11's draw_text
        params = list(inspect.signature(draw).parameters)
        if params != ["self", "gc", "x", "y", "s", "prop", "angle", "ismath", "mtext"]:
            return False
        if "features" not in inspect.signature(_text_helpers.layout).parameters:
            return False
        if not hasattr(CharacterTracker, "track_glyph"):
            return False
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    with _lock:
        if not _original_text:
            _original_text.update(draw=draw, measure=measure)
            backend_pdf.RendererPdf.draw_text = _hooked_draw_text
            backend_pdf.RendererPdf.get_text_width_height_descent = _hooked_measure
    return True


@contextlib.contextmanager
def cached_text() -> Iterator[None]:
    """Within this block, this thread's PDF saves reuse the size and glyph layout of
    texts laid out before (same string, font and size), instead of computing them at
    every save.

    Examples
    --------
    >>> import io
    >>> from matplotlib.figure import Figure
    >>> fig = Figure(figsize=(2, 1))
    >>> _ = fig.text(0.1, 0.5, "Δt [s]")
    >>> first, again = io.BytesIO(), io.BytesIO()
    >>> with shared_rc(), cached_text():
    ...     fig.savefig(first, format="pdf", metadata={"CreationDate": None})
    ...     fig.savefig(again, format="pdf", metadata={"CreationDate": None})
    >>> first.getvalue() == again.getvalue()
    True
    """
    _install_text()
    with _text_on.on():
        yield


def _text_key(s: str, prop, *extra) -> tuple:
    """What a text's size and layout depend on: the string, the font asked for, its
    size, and the rcParams that resolve the font's family to a file."""
    import matplotlib as mpl

    rc = tuple(tuple(v) if isinstance(v, list) else v for v in map(mpl.rcParams.get, _FONT_RC))
    asked = (tuple(prop.get_family()), prop.get_style(), prop.get_variant(), prop.get_weight(),
             prop.get_stretch(), prop.get_size_in_points(), prop.get_file(),
             mpl.rcParams["pdf.fonttype"])  # fmt: skip
    return (s, asked, rc, *extra)


def _remember(cache: dict, key: tuple, value):
    if len(cache) >= MAX_TEXTS:  # bounded memory: start again
        cache.clear()
    cache[key] = value
    return value


def _uncached(renderer, ismath) -> bool:
    import matplotlib as mpl

    return (not _text_on or bool(ismath)
            or mpl.rcParams["pdf.use14corefonts"])  # fmt: skip


def _hooked_measure(self, s, prop, ismath):
    if _uncached(self, ismath):
        return _original_text["measure"](self, s, prop, ismath)
    key = _text_key(s, prop)
    size = _sizes.get(key)
    if size is None:
        size = _remember(_sizes, key, _original_text["measure"](self, s, prop, ismath))
    return size


def _glyphs(renderer, s, prop, features, language) -> tuple[tuple, tuple[tuple, ...]]:
    """(key, glyphs) of a text: its cache key and its glyphs as matplotlib's layout
    gives them, kept per text."""
    from matplotlib import _text_helpers

    key = _text_key(s, prop, features, language)
    glyphs = _layouts.get(key)
    if glyphs is None:
        font = renderer._get_font_ttf(prop)
        glyphs = tuple(
            (_Face(g.ft_object.fname, g.ft_object.face_index), g.char, g.glyph_index,
             g.x, g.y, g.prev_kern)
            for g in _text_helpers.layout(s, font, features=features, language=language)
        )  # fmt: skip
        _remember(_layouts, key, glyphs)
    return key, glyphs


#: (text key, glyph codes, size, font type) -> the text's operators between BT and ET:
#: bytes, and (face, subset) where a font is selected (its name is the file's own)
_bodies: dict[tuple, tuple] = {}


def _text_body(renderer, glyphs, codes, fontsize: float, fonttype: int) -> tuple:
    """The operators matplotlib 3.11's ``draw_text`` writes between BT and ET for these
    glyphs and their (subset, char code) in the file, as bytes, with (face, subset)
    standing for each font selection."""
    import itertools

    from matplotlib.backends.backend_pdf import Op, _fill, pdfRepr

    pieces: list[Any] = []
    chunk: list[Any] = []  # [kern, char code, char code, ...] without zero kerns

    def emit(*data) -> None:
        line = _fill([pdfRepr(x) for x in data]) + b"\n"
        if pieces and isinstance(pieces[-1], bytes):
            pieces[-1] += line
        else:
            pieces.append(line)

    def flush() -> None:
        if chunk:
            emit([(-1000 * next(group) / fontsize) if kind is float
                  else renderer._encode_glyphs(group, fonttype)
                  for kind, group in itertools.groupby(chunk, type)],
                 Op.showkern)  # fmt: skip
            chunk.clear()

    previous = None
    start_x = 0
    for (face, _char, _glyph, gx, gy, kern), (subset, code) in zip(glyphs, codes, strict=True):
        if (face, subset) != previous:
            flush()
            pieces.append((face, subset))  # Op.selectfont with the file's name of the font
            emit(gx - start_x, 0 - 0, Op.textpos)  # _setup_textpos at angle 0
            previous = (face, subset)
            start_x = gx
        if gy:
            flush()
            emit(gy, Op.textrise)
        if kern:
            chunk.append(kern)
        chunk.append(code)
        if gy:
            flush()
            emit(0, Op.textrise)
    flush()
    return tuple(pieces)


def _hooked_draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
    """matplotlib 3.11's ``RendererPdf.draw_text`` for TrueType fonts, with the glyph
    layout taken from :func:`_glyphs` and the operators of a text already written
    (same glyphs, same codes in the file) from :func:`_text_body`'s cache: the same
    operators and the same font tracking."""
    if _uncached(self, ismath) or gc.get_url() is not None:
        return _original_text["draw"](self, gc, x, y, s, prop, angle, ismath, mtext)
    import math

    import matplotlib as mpl
    from matplotlib.backends.backend_pdf import Op
    from matplotlib.font_manager import FontPath

    self.check_gc(gc, gc._rgb)
    fontsize = prop.get_size_in_points()
    features = mtext.get_fontfeatures() if mtext is not None else None
    language = mtext.get_language() if mtext is not None else None
    key, glyphs = _glyphs(self, s, prop, features, language)
    fonttype = mpl.rcParams["pdf.fonttype"]
    file = self.file
    # the file's (subset, char code) of each glyph: the tracker's answer for a glyph it
    # has seen does not change, so it is asked once per glyph and file
    tracked = file.__dict__.setdefault("_llama_tracked_glyphs", {})
    track = file._character_tracker.track_glyph
    codes = []
    for face, char, glyph, *_ in glyphs:
        code = tracked.get((face, char, glyph))
        if code is None:
            code = tracked[face, char, glyph] = track(face, char, glyph)
        codes.append(code)
    body_key = (key, tuple(codes), fontsize, fonttype)
    body = _bodies.get(body_key)
    if body is None:
        body = _remember(_bodies, body_key, _text_body(self, glyphs, codes, fontsize, fonttype))
    output, write = file.output, file.write
    output(Op.gsave)
    a = math.radians(angle)
    output(math.cos(a), math.sin(a), -math.sin(a), math.cos(a), x, y, Op.concat_matrix)
    output(Op.begin_text)
    for piece in body:
        if isinstance(piece, bytes):
            write(piece)
        else:
            face, subset = piece
            output(file.fontName(FontPath(face.fname, face.face_index), subset), fontsize,
                   Op.selectfont)  # fmt: skip
    output(Op.end_text)
    output(Op.grestore)


# --- images deflated without Pillow's PNG filters ----------------------------------------
#
# matplotlib embeds a PDF image as the rows of a PNG made by Pillow at its default
# level (Predictor 10: each row starts with its PNG filter byte). Pillow's adaptive
# choice of a filter per row costs more than the compression; rows marked "None"
# (filter 0) and deflated at the PDF's level hold the same pixels, for ~12 ms less per
# scatter plot.

_original_png: dict[str, Any] = {}


def image_hook_installed() -> bool:
    """Whether PDF images saved inside :func:`plain_image_rows` are deflated here
    (installs it); False with a matplotlib whose PDF writer differs from 3.11's."""
    if _original_png:
        return True
    try:
        from matplotlib.backends.backend_pdf import PdfFile

        write = PdfFile._writePng
        if list(inspect.signature(write).parameters) != ["self", "img"]:
            return False
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    with _lock:
        if not _original_png:
            _original_png["write"] = write
            PdfFile._writePng = _hooked_write_png
    return True


def png_rows(img) -> tuple[bytes, int, bytes | None]:
    """(deflated rows, bit depth, palette) of a Pillow image in mode L, RGB or P, as
    matplotlib's ``PdfFile._writePng`` returns them: 8 bits per sample, every row led by
    PNG filter type 0, deflated at ``pdf.compression``'s level.

    Examples
    --------
    >>> import zlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> rows, bits, palette = png_rows(Image.fromarray(np.array([[1, 2], [3, 4]], np.uint8)))
    >>> zlib.decompress(rows), bits, palette
    (b'\\x00\\x01\\x02\\x00\\x03\\x04', 8, None)
    """
    import zlib

    import matplotlib as mpl
    import numpy as np

    pixels = np.asarray(img)
    rows = pixels.reshape(pixels.shape[0], -1)
    out = np.zeros((rows.shape[0], rows.shape[1] + 1), np.uint8)  # column 0: filter 0
    out[:, 1:] = rows
    palette = bytes(img.getpalette()) if img.mode == "P" else None
    level = int(mpl.rcParams["pdf.compression"]) or 1
    return zlib.compress(out.tobytes(), level), 8, palette


@contextlib.contextmanager
def plain_image_rows() -> Iterator[None]:
    """Within this block, this thread's PDF saves embed images through
    :func:`png_rows` instead of Pillow's PNG encoder."""
    image_hook_installed()
    with _images_on.on():
        yield


def _hooked_write_png(self, img):
    if not _images_on or img.mode not in ("L", "RGB", "P"):
        return _original_png["write"](self, img)
    return png_rows(img)
