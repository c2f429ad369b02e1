"""A minimal reader of the first FITS binary table: the sky maps' fast path.

LVK and healpy sky maps are one BINTABLE of plain numeric columns (UNIQ ``K``,
PROBDENSITY ``D``, ...; healpy's flat maps ``1024E``-style vectors) after an empty
primary HDU. For those, astropy.io.fits spends ~6 ms per map building its HDU, header
and column objects; this reader takes the header cards and the columns straight from
the bytes (~0.3 ms). It reads only what it can read exactly as astropy would, and
answers None for anything else (scaled or null-flagged columns, heaps, strings, long
CONTINUE strings, card values it does not parse, a truncated file, ...), so the caller
falls back to astropy, which also writes the error messages for broken files.

The layout follows the FITS Standard 4.0 (sections 4, 7.3): 2880-byte blocks, 80-byte
cards ending at ``END``, big-endian table rows of ``NAXIS1`` bytes.

Examples
--------
>>> import io
>>> import numpy as np
>>> from astropy.io import fits
>>> hdu = fits.BinTableHDU.from_columns(
...     [fits.Column(name="UNIQ", format="K", array=np.arange(4, 16))])
>>> hdu.header["ORDERING"] = "NUNIQ"
>>> buf = io.BytesIO()
>>> fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
>>> table = read_bintable(buf.getvalue())
>>> table.names, table.header["ORDERING"], table.fields[0][:3].tolist()
(['UNIQ'], 'NUNIQ', [4, 5, 6])
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np

__all__ = ["BinTable", "read_bintable"]

BLOCK = 2880
CARD = 80
#: TFORM letter -> big-endian numpy type; other letters (L, X, A, C, M, P, Q) fall back.
_TYPES = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
#: Column keywords that change what astropy returns for a column: fall back.
_COLUMN_MODIFIERS = ("TSCAL", "TZERO", "TNULL", "TDIM")
_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}\Z")
_STRING = re.compile(r"'((?:[^']|'')*)'\s*(?:/.*)?\Z")
_INT = re.compile(r"([+-]?\d+)\s*(?:/.*)?\Z")
_FLOAT = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?)\s*(?:/.*)?\Z")
_BOOL = re.compile(r"([TF])\s*(?:/.*)?\Z")
_TFORM = re.compile(r"\s*(\d*)([A-Z])\s*\Z")


class BinTable(NamedTuple):
    """The first binary table of a FITS file.

    Attributes
    ----------
    header : dict
        The table HDU's keyword values (the first card of a repeated keyword, as
        ``astropy.io.fits.Header[key]``): str (trailing blanks dropped), int, float
        or bool. Commentary cards (COMMENT, HISTORY, blank) are left out.
    names : list of str
        TTYPEn of each column, trailing blanks dropped.
    fields : list of ndarray
        Each column's values, flattened row by row (big-endian, read-only views where
        a column is one value per row).
    """

    header: dict[str, Any]
    names: list[str]
    fields: list[np.ndarray]


def _value(text: str):
    """A card's value as astropy types it, or raise ValueError."""
    text = text.strip()
    m = _STRING.match(text)
    if m:
        return m.group(1).replace("''", "'").rstrip()
    m = _BOOL.match(text)
    if m:
        return m.group(1) == "T"
    m = _INT.match(text)
    if m:
        return int(m.group(1))
    m = _FLOAT.match(text)
    if m:
        return float(m.group(1).replace("D", "E").replace("d", "e"))
    raise ValueError(text)


def _header(data: bytes, start: int) -> tuple[dict[str, Any], int] | None:
    """(keyword values, offset of the data) of the header at ``start``, or None."""
    cards: dict[str, Any] = {}
    pos = start
    seen = _CARDS
    while pos + CARD <= len(data):
        card = bytes(data[pos : pos + CARD])  # a key even where data is a bytearray
        pos += CARD
        what = seen.get(card)
        if what is None:
            what = _card(card)
            if len(seen) >= _CARDS_KEPT:
                seen.clear()
            seen[card] = what
        if what is _SKIP:
            continue
        if what is _END:
            return cards, start + -(-(pos - start) // BLOCK) * BLOCK
        if what is _DECLINE:
            return None
        cards.setdefault(what[0], what[1])
    return None  # no END: truncated


#: What `_card` makes of a card: commentary (or a HIERARCH keyword), the END card,
#: or a card the reader cannot take as astropy would (the caller falls back).
_SKIP, _END, _DECLINE = object(), object(), object()
#: Cards already read (80 bytes -> what `_card` made of them), at most `_CARDS_KEPT`:
#: one pipeline's maps share most of their header cards (the column layout, the
#: origin, the creator), and reading a card cost ~1.7 us, looking it up ~0.1 us.
_CARDS: dict[bytes, Any] = {}
_CARDS_KEPT = 4096


def _card(card: bytes):
    """(keyword, value) of one 80-byte card, or `_SKIP`, `_END` or `_DECLINE`."""
    try:
        text = card.decode("ascii")
    except UnicodeDecodeError:
        return _DECLINE
    key = text[:8].rstrip()
    if key == "END":
        return _END
    if key == "CONTINUE":
        return _DECLINE  # a long string: astropy joins the pieces
    if text[8:10] != "= " or key == "HIERARCH":
        return _SKIP  # commentary; HIERARCH keywords are never looked up here
    if not _KEYWORD.match(key):
        return _DECLINE  # astropy's verify would fix it first
    try:
        return key, _value(text[10:])
    except ValueError:
        return _DECLINE


def _data_size(h: dict[str, Any]) -> int | None:
    """Bytes of an HDU's data (before padding), from BITPIX/NAXISn/PCOUNT/GCOUNT."""
    try:
        naxis = h["NAXIS"]
        if naxis == 0:
            return 0
        n = 1
        for k in range(1, naxis + 1):
            n *= h[f"NAXIS{k}"]
        return abs(h["BITPIX"]) // 8 * h.get("GCOUNT", 1) * (h.get("PCOUNT", 0) + n)
    except (KeyError, TypeError):
        return None


def _columns(h: dict[str, Any], data: bytes, start: int) -> BinTable | None:
    """The columns of a BINTABLE whose header is ``h`` and data start at ``start``."""
    if h.get("PCOUNT", 0) != 0 or h.get("GCOUNT", 1) != 1 or h.get("NAXIS") != 2:
        return None  # a heap (variable-length arrays) or an odd table
    width, nrows = h.get("NAXIS1"), h.get("NAXIS2")
    if not (isinstance(width, int) and isinstance(nrows, int)) or width < 0 or nrows < 0:
        return None
    if start + width * nrows > len(data):
        return None  # truncated: astropy says so
    if not isinstance(h["TFIELDS"], int):
        return None
    names, formats, offsets = [], [], []
    offset = 0
    for k in range(1, h["TFIELDS"] + 1):
        name, tform = h.get(f"TTYPE{k}"), h.get(f"TFORM{k}")
        if not isinstance(name, str) or not isinstance(tform, str):
            return None
        if any(f"{mod}{k}" in h for mod in _COLUMN_MODIFIERS):
            return None
        m = _TFORM.match(tform)
        if not m or m.group(2) not in _TYPES:
            return None
        repeat = int(m.group(1) or 1)
        if repeat < 1:
            return None
        dtype = np.dtype(_TYPES[m.group(2)])
        names.append(name)
        formats.append(dtype if repeat == 1 else (dtype, (repeat,)))
        offsets.append(offset)
        offset += repeat * dtype.itemsize
    if offset != width:
        return None
    row = np.dtype(
        {
            "names": [f"c{k}" for k in range(len(names))],
            "formats": formats,
            "offsets": offsets,
            "itemsize": width,
        }
    )
    rows = np.frombuffer(data, dtype=row, count=nrows, offset=start)
    fields = [rows[f"c{k}"].reshape(-1) for k in range(len(names))]
    return BinTable(h, names, fields)


def read_bintable(data: bytes) -> BinTable | None:
    """The first binary table with columns of an (uncompressed) FITS file, or None.

    None means "read it with astropy": the file is not FITS, has no such table, is
    truncated, or uses something this reader does not (see the module docstring).

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    BinTable or None
    """
    first = _header(data, 0)
    if first is None or first[0].get("SIMPLE") is not True or first[0].get("GROUPS"):
        return None
    h, start = first
    while True:
        size = _data_size(h)
        if size is None:
            return None
        if h.get("XTENSION") == "BINTABLE" and h.get("TFIELDS"):
            if h.get("ZIMAGE") is True:
                return None  # a tile-compressed image: astropy's CompImageHDU
            return _columns(h, data, start)
        start += -(-size // BLOCK) * BLOCK
        if start >= len(data):
            return None  # no binary table: astropy's path names the problem
        nxt = _header(data, start)
        if nxt is None or not isinstance(nxt[0].get("XTENSION"), str):
            return None
        h, start = nxt
