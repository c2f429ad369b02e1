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
so almost every save asks for the same subset and reuses its bytes. The subset a PDF
embeds depends only on the glyphs of that figure (never on what was saved before), so
the same figure gives the same bytes in every process. It costs ~40 KB per scatter
plot PDF (148 KB against 107 KB with exact subsets), the unused base glyphs. Outside :func:`cached_subsets`, and in any other thread, matplotlib subsets as
it always does.

This hooks ``matplotlib.backends._backend_pdf_ps.get_glyphs_subset``, a private
function (as of matplotlib 3.11); when a matplotlib release changes it, the hook stands
aside and PDFs are still right, only slower (:func:`hook_installed` says which).

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

__all__ = ["BASE_TEXT", "SHARED_RC", "cached_subsets", "hook_installed", "shared_rc"]

#: Characters every cached subset holds (so most figures need no other subset).
BASE_TEXT = "".join(chr(c) for c in range(32, 127)) + "°±×÷²³µσΔ…–—−'’“”⁰¹⁴⁵⁶⁷⁸⁹⁻ʰᵐˢ"
#: Font subsets kept (one per font and glyph set; a figure uses three or four fonts).
MAX_CACHED = 64
#: rcParams while our figures are drawn and saved: TrueType fonts in PDFs; glyphs
#: without hinting (no visible difference at this size, ~17% less of a PNG's cost).
#: Set for the drawing as well as the save, since hinting changes the measured size
#: of texts, on which the layout of labels depends.
SHARED_RC = {"pdf.fonttype": 42, "text.hinting": "no_hinting"}

_lock = threading.Lock()
_local = threading.local()
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
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth


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
    if not getattr(_local, "depth", 0):
        return _original(fontfile, glyphs)
    from matplotlib.backends import _backend_pdf_ps as pdf_ps

    path, face = str(fontfile), int(getattr(fontfile, "face_index", 0) or 0)
    wanted = frozenset(int(g) for g in glyphs)
    with _lock:
        key = (path, face, wanted | _base_glyphs(path, face))
        entry = _subsets.get(key)
    if entry is None:
        with _original(fontfile, set(key[2])) as result:
            data = io.BytesIO()
            result.font.save(data, reorderTables=False)
            entry = (data.getvalue(), dict(result.glyph_index_map))
        with _lock:
            if len(_subsets) >= MAX_CACHED:  # odd glyph sets: keep the memory bounded
                _subsets.pop(next(iter(_subsets)))
            _subsets.setdefault(key, entry)
    return pdf_ps.SubsetResults(_SubsetFont(entry[0]), dict(entry[1]))._as_cm()
