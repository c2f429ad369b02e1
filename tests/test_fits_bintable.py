"""The sky maps' fast FITS path (llama.science.fits_bintable) against astropy.io.fits:
the same header values and columns on every BAYESTAR map and on flat healpy maps, the
same SkyMap through read_sky_map either way, and None (astropy's path) for whatever
it does not read exactly as astropy would."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from llama.science import fits_bintable
from llama.science.fits_bintable import read_bintable
from llama.science.skymap import SkyMap, SkyMapError, read_sky_map, write_sky_map

HERE = Path(__file__).parent / "data" / "bayestar"
SHARED = Path("/work/shared/data/bayestar")  # the full set where this machine has it
MAPS = sorted(HERE.glob("*.fits")) + sorted(SHARED.glob("*.fits"))


def astropy_table(data: bytes):
    """(header, names, columns) of the first binary table with columns, by astropy."""
    with fits.open(io.BytesIO(data), memmap=False) as hdul:
        hdul.verify("silentfix")
        hdu = next(h for h in hdul if isinstance(h, fits.BinTableHDU) and len(h.columns))
        fields = [np.array(hdu.data.field(i)).ravel() for i in range(len(hdu.columns))]
        return hdu.header, list(hdu.columns.names), fields


def assert_like_astropy(data: bytes):
    table = read_bintable(data)
    assert table is not None, "the fast path declined a plain table"
    header, names, fields = astropy_table(data)
    assert table.names == names
    for ours, theirs in zip(table.fields, fields, strict=True):
        assert ours.dtype.kind == theirs.dtype.kind and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
    keys = {k for k in header if k not in ("", "COMMENT", "HISTORY")}
    assert set(table.header) == keys
    for key in keys:
        assert type(table.header[key]) is type(header[key]), key
        assert table.header[key] == header[key], key


def read_both(path, monkeypatch) -> tuple[SkyMap, SkyMap]:
    """read_sky_map by the fast path, and by astropy's (the fast path made to decline)."""
    fast = read_sky_map(path)
    with monkeypatch.context() as m:
        m.setattr(fits_bintable, "read_bintable", lambda data: None)
        slow = read_sky_map(path)
    return fast, slow


def assert_same_map(a: SkyMap, b: SkyMap):
    assert a.nside == b.nside and a.meta == b.meta
    for name in ("uniq", "probdensity", "distmu", "distsigma", "distnorm"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)  # bit for bit: same bytes, same arithmetic


@pytest.mark.parametrize("path", MAPS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_bayestar_maps_read_as_astropy_reads_them(path, monkeypatch):
    assert_like_astropy(path.read_bytes())
    fast, slow = read_both(path, monkeypatch)
    assert fast.is_moc and fast.meta["ordering"] == "NUNIQ" and fast.has_distance
    assert_same_map(fast, slow)


def test_every_shared_map_is_covered():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not on this machine (the 4 maps of tests/data are)")
    assert len(list(SHARED.glob("*.fits"))) >= 16


@pytest.mark.parametrize("nest", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".fits", ".fits.gz"])
def test_flat_healpy_maps(tmp_path, nest, dtype, suffix, monkeypatch):
    """healpy's layout: 1024-element vector cells (TFORM 1024E / 1024D), RING or NESTED."""
    nside = 32
    rng = np.random.default_rng(3)
    prob = rng.random(12 * nside * nside)
    prob /= prob.sum()
    plain = tmp_path / "plain.fits"
    hp.write_map(plain, [prob.astype(dtype), rng.uniform(50, 90, prob.size).astype(dtype)],
                 nest=nest, column_names=["PROB", "DISTMU"], dtype=[dtype, dtype])  # fmt: skip
    assert_like_astropy(plain.read_bytes())
    path = tmp_path / f"flat{suffix}"
    data = plain.read_bytes()
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    fast, slow = read_both(path, monkeypatch)
    assert not fast.is_moc and fast.nside == nside and not fast.has_distance  # 1 of 3 layers
    assert fast.meta["ordering"] == ("NESTED" if nest else "RING")
    assert_same_map(fast, slow)


def test_llama_written_maps_with_all_metadata(tmp_path, monkeypatch):
    m = SkyMap(
        probdensity=np.linspace(1, 2, 12) / np.linspace(1, 2, 12).sum() * 12 / (4 * np.pi),
        nside=1,
        meta={"objid": "S190425z", "gps_time": 1240215503.25, "instruments": ["H1", "L1"],
              "distmean": 155.5, "diststd": 45.25, "creator": "it's BAYESTAR",
              "origin": "LIGO/Virgo/KAGRA", "url": "https://example.org/S190425z"},
    )  # fmt: skip
    write_sky_map(tmp_path / "m.fits", m)
    assert_like_astropy((tmp_path / "m.fits").read_bytes())
    fast, slow = read_both(tmp_path / "m.fits", monkeypatch)
    assert fast.meta["creator"] == "it's BAYESTAR" and fast.meta["diststd"] == 45.25
    assert_same_map(fast, slow)


def _table(columns, cards=(), primary=None) -> bytes:
    hdu = fits.BinTableHDU.from_columns(columns)
    for card in cards:
        hdu.header.append(card)
    buf = io.BytesIO()
    fits.HDUList([primary or fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


def test_every_numeric_column_type_and_repeat():
    rng = np.random.default_rng(5)
    n = 37
    columns = [
        fits.Column(name="b", format="B", array=rng.integers(0, 255, n, dtype=np.uint8)),
        fits.Column(name="i", format="3I", array=rng.integers(-9999, 9999, (n, 3), dtype=np.int16)),
        fits.Column(name="j", format="J", array=rng.integers(-2**31, 2**31 - 1, n, dtype=np.int32)),
        fits.Column(name="k", format="2K", array=rng.integers(-2**62, 2**62, (n, 2))),
        fits.Column(name="e", format="E", array=rng.normal(size=n).astype(np.float32)),
        fits.Column(name="d", format="5D", array=rng.normal(size=(n, 5))),
    ]  # fmt: skip
    assert_like_astropy(_table(columns))


def test_header_values_typed_as_astropy_types_them():
    cards = [
        ("S1", "it's"), ("S2", "  leading kept"), ("S3", ""), ("L1", True), ("L2", False),
        ("I1", -42), ("I2", 12345678901234), ("F1", 1.5e-300), ("F2", -0.0), ("F3", 3.0),
    ]  # fmt: skip
    data = _table([fits.Column(name="X", format="D", array=np.ones(3))], cards)
    # hand-written value forms astropy accepts: D exponents, a bare point, a + sign
    raw = data.replace(b"F3      =                  3.0", b"F3      =              1.25D+2")
    raw = raw.replace(b"I1      =                  -42", b"I1      =                  +42")
    assert raw != data
    assert_like_astropy(raw)
    table = read_bintable(raw)
    assert table.header["F3"] == 125.0 and table.header["I1"] == 42 and table.header["S1"] == "it's"


def test_repeated_keyword_gives_the_first_as_astropy_does():
    data = _table([fits.Column(name="X", format="D", array=np.ones(3))], [("DUP", 1), ("DUP", 2)])
    assert read_bintable(data).header["DUP"] == 1
    assert_like_astropy(data)


def test_image_before_the_table_is_skipped():
    image = fits.PrimaryHDU(np.arange(7 * 11, dtype=np.int16).reshape(7, 11))
    data = _table([fits.Column(name="X", format="K", array=np.arange(5))], primary=image)
    assert_like_astropy(data)


@pytest.mark.parametrize(
    "case",
    [
        "scaled",
        "unsigned",
        "string",
        "logical",
        "heap",
        "continue",
        "truncated",
        "not fits",
        "lower",
    ],
)
def test_declines_what_it_would_not_read_as_astropy(case):
    x = np.arange(6, dtype=np.float64)
    col = [fits.Column(name="X", format="D", array=x)]
    data = {
        "scaled": lambda: _table(col, [("TSCAL1", 2.0)]),
        "unsigned": lambda: _table([fits.Column(name="U", format="K", array=x.astype(int))], [("TZERO1", 2**63)]),
        "string": lambda: _table([fits.Column(name="S", format="4A", array=np.array(["ab"] * 6))]),
        "logical": lambda: _table([fits.Column(name="L", format="L", array=np.ones(6, bool))]),
        "heap": lambda: _table([fits.Column(name="V", format="PD()", array=np.array([x[:2]] * 6, dtype=object))]),
        "continue": lambda: _table(col, [("REFERENC", "https://example.org/" + "x" * 100)]),
        "truncated": lambda: _table(col)[:-2880],
        "not fits": lambda: b"this is not a sky map\n" * 200,
        "lower": lambda: _table(col).replace(b"TTYPE1  =", b"ttype1  ="),
    }[case]()  # fmt: skip
    assert read_bintable(data) is None


def test_declined_long_url_still_read_through_astropy(tmp_path):
    url = "https://gracedb.example.org/superevents/S190425z/files/" + "x" * 90
    m = SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1, meta={"url": url})
    write_sky_map(tmp_path / "m.fits", m)
    assert read_bintable((tmp_path / "m.fits").read_bytes()) is None  # a CONTINUE card
    assert read_sky_map(tmp_path / "m.fits").meta["url"] == url


def test_broken_files_give_one_clear_message(tmp_path):
    data = MAPS[0].read_bytes()
    (tmp_path / "cut.fits").write_bytes(data[: len(data) // 2])
    with pytest.raises(SkyMapError, match="cut.fits"):
        read_sky_map(tmp_path / "cut.fits")
    (tmp_path / "bad.fits.gz").write_bytes(gzip.compress(data)[:1000])
    with pytest.raises(SkyMapError, match="bad.fits.gz: not a readable FITS file"):
        read_sky_map(tmp_path / "bad.fits.gz")


def test_cards_read_before_give_the_same_header(monkeypatch):
    """Cards kept from earlier files (fits_bintable._CARDS) read as when read afresh:
    every map with an empty store, with the others' cards in it, and with a store
    so small that it is emptied while a header is read; a bytearray too."""
    datas = [p.read_bytes() for p in MAPS]
    fits_bintable._CARDS.clear()
    fresh = []
    for data in datas:
        fits_bintable._CARDS.clear()
        fresh.append(read_bintable(data))
    for limit in (3, fits_bintable._CARDS_KEPT):
        monkeypatch.setattr(fits_bintable, "_CARDS_KEPT", limit)
        for _ in range(2):
            for data, first in zip(datas, fresh, strict=True):
                for given in (data, bytearray(data)):
                    table = read_bintable(given)
                    assert table.header == first.header and table.names == first.names
                    assert all(type(v) is type(first.header[k]) for k, v in table.header.items())
                    for ours, theirs in zip(table.fields, first.fields, strict=True):
                        np.testing.assert_array_equal(ours, theirs)
        assert len(fits_bintable._CARDS) <= limit


def test_a_kept_card_still_declines_where_it_did():
    """A card that made the reader decline (here a CONTINUE card) declines again when
    it comes from the store, and a header cut before its END is still no header."""
    data = MAPS[0].read_bytes()
    end = data.index(b"END" + b" " * 77, 2880)
    card = b"CONTINUE  'more'".ljust(80)
    broken = data[:end] + card + data[end + 80 :]
    assert read_bintable(broken) is None
    assert read_bintable(broken) is None  # the card is kept now
    assert read_bintable(data[:end]) is None
    assert read_bintable(data) is not None
