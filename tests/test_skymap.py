"""Sky-map I/O: flat RING/NESTED and multi-order FITS, gz, HDF5, errors, distances."""

from __future__ import annotations

import gzip
import hashlib
import json

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from llama.science import skymap as skymap_module
from llama.science.skymap import (
    SkyMap,
    SkyMapError,
    conditional_distance_pdf,
    moments_to_parameters,
    parameters_to_moments,
    read_hdf5,
    read_hdf5_meta,
    read_sky_map,
    uniq_to_order_ipix,
    write_hdf5,
    write_sky_map,
)


def flat_map(nside=8, seed=0, distance=True) -> SkyMap:
    rng = np.random.default_rng(seed)
    npix = 12 * nside * nside
    prob = rng.random(npix)
    prob /= prob.sum()
    kw = {}
    if distance:
        mu, sigma, norm = moments_to_parameters(
            rng.uniform(100, 500, npix), rng.uniform(20, 80, npix)
        )
        kw = {"distmu": mu, "distsigma": sigma, "distnorm": norm}
    return SkyMap(
        probdensity=prob / hp.nside2pixarea(nside),
        nside=nside,
        meta={"objid": "S190425z", "gps_time": 1240215503.0, "instruments": ["H1", "L1"]},
        **kw,
    )


def moc_map(distance=True) -> SkyMap:
    """Order-1 sky with one order-1 pixel split into order-3 children."""
    uniq = [4 * 4 + i for i in range(1, 48)]
    uniq += [4 * 4**3 + i for i in range(16)]  # children of order-1 pixel 0
    uniq = np.array(uniq, dtype=np.int64)
    order, _ = uniq_to_order_ipix(uniq)
    area = 4 * np.pi / (12 * 4.0**order)
    prob = np.linspace(1, 2, len(uniq))
    prob /= prob.sum()
    kw = {}
    if distance:
        mu, sigma, norm = moments_to_parameters(np.full(len(uniq), 300.0), 60.0)
        kw = {"distmu": mu, "distsigma": sigma, "distnorm": norm}
    return SkyMap(probdensity=prob / area, uniq=uniq, meta={"distmean": 300.0}, **kw)


def write_flat_fits(path, m: SkyMap, nest: bool, columns=("PROB",), distance=True):
    """A flat map in the healpy / ligo.skymap convention (per-pixel PROB)."""
    values = {"PROB": m.probability()}
    if distance and m.has_distance:
        values.update(DISTMU=m.distmu, DISTSIGMA=m.distsigma, DISTNORM=m.distnorm)
    if not nest:
        nest_of_ring = hp.ring2nest(m.nside, np.arange(len(m)))
        values = {k: v[nest_of_ring] for k, v in values.items()}
    cols = [fits.Column(name=k, format="D", array=v) for k, v in values.items()]
    if columns != ("PROB",):
        cols = [fits.Column(name=c, format="D", array=values["PROB"]) for c in columns]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["PIXTYPE"] = "HEALPIX"
    hdu.header["ORDERING"] = "NESTED" if nest else "RING"
    hdu.header["NSIDE"] = m.nside
    hdu.header["OBJECT"] = "S190425z"
    hdu.header["DISTMEAN"] = 123.0
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def assert_same(a: SkyMap, b: SkyMap):
    a, b = a.to_moc(), b.to_moc()
    np.testing.assert_array_equal(a.uniq, b.uniq)
    np.testing.assert_allclose(a.probdensity, b.probdensity, rtol=1e-12)
    for name in ("distmu", "distsigma", "distnorm"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=1e-12)


@pytest.mark.parametrize("nest", [True, False])
@pytest.mark.parametrize("distance", [True, False])
@pytest.mark.parametrize("suffix", [".fits", ".fits.gz"])
def test_flat_fits_reads_as_nested(tmp_path, nest, distance, suffix):
    m = flat_map(distance=distance)
    path = tmp_path / f"flat{suffix}"
    write_flat_fits(tmp_path / "plain.fits", m, nest=nest, distance=distance)
    data = (tmp_path / "plain.fits").read_bytes()
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    r = read_sky_map(path)
    assert not r.is_moc and r.nside == m.nside
    assert r.meta["ordering"] == ("NESTED" if nest else "RING")
    assert r.meta["objid"] == "S190425z" and r.meta["distmean"] == 123.0
    assert r.has_distance == distance
    assert_same(r, m)


@pytest.mark.parametrize("distance", [True, False])
@pytest.mark.parametrize("suffix", [".fits", ".fits.gz"])
def test_moc_round_trip(tmp_path, distance, suffix):
    m = moc_map(distance)
    path = tmp_path / f"moc{suffix}"
    write_sky_map(path, m)
    if suffix.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    r = read_sky_map(path)
    assert r.is_moc and r.max_order == 3 and len(r) == len(m)
    assert r.meta["distmean"] == 300.0 and r.meta["ordering"] == "NUNIQ"
    assert_same(r, m)


def test_flat_written_as_moc_round_trip(tmp_path):
    m = flat_map()
    write_sky_map(tmp_path / "m.fits", m)
    r = read_sky_map(tmp_path / "m.fits")
    assert r.is_moc
    assert_same(r, m)
    assert r.meta["instruments"] == ["H1", "L1"]
    assert abs(r.meta["gps_time"] - 1240215503.0) < 1e-5


def test_read_from_file_object(tmp_path):
    write_sky_map(tmp_path / "m.fits.gz", moc_map())
    with open(tmp_path / "m.fits.gz", "rb") as f:
        assert_same(read_sky_map(f), moc_map())


@pytest.mark.parametrize("make", [flat_map, moc_map])
def test_hdf5_round_trip(tmp_path, make):
    m = make()
    write_hdf5(tmp_path / "m.hdf5", m)
    r = read_hdf5(tmp_path / "m.hdf5")
    assert r.is_moc == m.is_moc
    assert_same(r, m)
    assert r.meta == m.meta


def test_hdf5_layout_version_2(tmp_path):
    import h5py

    m = moc_map()
    write_hdf5(tmp_path / "m.hdf5", m)
    with h5py.File(tmp_path / "m.hdf5", "r") as f:
        assert f.attrs["format"] == "llama-skymap" and f.attrs["version"] == 2
        assert sorted(f) == ["layers", "uniq"] and f["layers"].shape == (4, len(m))
        np.testing.assert_array_equal(f["layers"][3], m.distnorm)
        assert json.loads(f.attrs["meta"]) == m.meta
    flat = flat_map(distance=False)
    write_hdf5(tmp_path / "f.hdf5", flat)
    with h5py.File(tmp_path / "f.hdf5", "r") as f:
        assert sorted(f) == ["layers"] and f["layers"].shape == (1, len(flat))
        assert f.attrs["nside"] == flat.nside
    assert read_hdf5_meta(tmp_path / "f.hdf5") == flat.meta
    assert_same(read_hdf5(tmp_path / "f.hdf5"), flat)


def _write_hdf5_high_level(path, m: SkyMap) -> None:
    """Version 2 written with h5py's File, attrs and create_dataset: the reference that
    write_hdf5's low-level calls must match byte for byte."""
    import h5py

    names = ("probdensity", "distmu", "distsigma", "distnorm")[: 4 if m.has_distance else 1]
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "llama-skymap"
        f.attrs["version"] = 2
        f.attrs["meta"] = json.dumps(m.meta)
        if m.is_moc:
            f.create_dataset("uniq", data=m.uniq)
        else:
            f.attrs["nside"] = m.nside
        f.create_dataset("layers", data=np.array([getattr(m, n) for n in names]))


@pytest.mark.parametrize(
    "make",
    [
        moc_map,
        lambda: moc_map(distance=False),
        flat_map,
        lambda: flat_map(distance=False),
        lambda: SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1, meta={}),
        lambda: SkyMap(
            probdensity=np.full(12, 1 / (4 * np.pi)), nside=1, meta={"objid": "S\u00e9", "n": [1]}
        ),
    ],
)
def test_hdf5_bytes_are_h5py_high_level_ones(tmp_path, make):
    """write_hdf5 (h5py's low-level calls) writes the very file h5py's File would: the
    event's lvc_skymap.hdf5 and its checksum did not change with the faster writer."""
    m = make()
    write_hdf5(tmp_path / "low.hdf5", m)
    _write_hdf5_high_level(tmp_path / "high.hdf5", m)
    assert (tmp_path / "low.hdf5").read_bytes() == (tmp_path / "high.hdf5").read_bytes()
    assert_same(read_hdf5(tmp_path / "low.hdf5"), m)


def test_hdf5_writes_one_after_another_are_each_h5py_high_level_file(tmp_path):
    """The property lists and types write_hdf5 keeps between writes carry nothing from
    one map to the next: multi-order and flat maps, with and without distance layers,
    written in turn, are each the file h5py's File writes for it alone."""
    makes = [moc_map, flat_map, lambda: moc_map(distance=False), lambda: flat_map(distance=False)]
    for k, make in enumerate(makes * 2):
        m = make()
        write_hdf5(tmp_path / f"low{k}.hdf5", m)
        _write_hdf5_high_level(tmp_path / f"high{k}.hdf5", m)
        assert (tmp_path / f"low{k}.hdf5").read_bytes() == (tmp_path / f"high{k}.hdf5").read_bytes()


@pytest.mark.parametrize("make", [moc_map, flat_map])
def test_hdf5_written_in_place_is_the_same_file(tmp_path, make):
    """atomic=False (a handler's temporary output) writes the same bytes straight to
    the path, with no temporary file of its own, and keeps the copy as a write does."""
    write_hdf5(tmp_path / "a.hdf5", make())
    (tmp_path / "b").mkdir()
    written = write_hdf5(tmp_path / "b" / "m.hdf5", make(), atomic=False)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["m.hdf5"]
    data = (tmp_path / "b" / "m.hdf5").read_bytes()
    assert data == (tmp_path / "a.hdf5").read_bytes() == written.data
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    assert skymap_module._KEPT.find(written.sha256) is not None


@pytest.mark.parametrize("atomic", [True, False])
def test_hdf5_failed_write_leaves_nothing(tmp_path, monkeypatch, atomic):
    """A write that fails half-way removes its temporary file and leaves no map; in
    place (atomic=False), the half-written file is removed."""

    def broken(root, *args):
        raise OSError("disk full")

    monkeypatch.setattr(skymap_module, "_fill_hdf5_root", broken)
    with pytest.raises(OSError, match="disk full"):
        write_hdf5(tmp_path / "m.hdf5", flat_map(), atomic=atomic)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="disk full"):
        write_hdf5(tmp_path / "m.hdf5", moc_map(), atomic=atomic)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make", [flat_map, moc_map])
def test_hdf5_version_1_still_reads(tmp_path, make):
    """Copies written before version 2 (event directories made by an older llama)."""
    import h5py

    m = make()
    with h5py.File(tmp_path / "v1.hdf5", "w") as f:
        f.attrs.update({"format": "llama-skymap", "version": 1, "moc": m.is_moc})
        if m.is_moc:
            f["uniq"] = m.uniq
        else:
            f.attrs.update({"nside": m.nside, "nest": True})
        for name in ("probdensity", "distmu", "distsigma", "distnorm"):
            f[name] = getattr(m, name)
        g = f.create_group("meta")
        for key, value in m.meta.items():
            g.attrs[key] = json.dumps(value)
    r = read_hdf5(tmp_path / "v1.hdf5")
    assert_same(r, m)
    assert r.meta == m.meta == read_hdf5_meta(tmp_path / "v1.hdf5")


def _same_bits(a: SkyMap, b: SkyMap) -> None:
    """Every array of the two maps has the same dtype, shape and bytes."""
    for name in ("probdensity", "uniq", "distmu", "distsigma", "distnorm"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes()), name
    assert (a.nside, a.meta) == (b.nside, b.meta)


@pytest.mark.parametrize(
    "make", [moc_map, lambda: moc_map(distance=False), flat_map, lambda: flat_map(distance=False)]
)
def test_hdf5_kept_copy_is_what_h5py_reads(tmp_path, make):
    """The copy kept by write_hdf5 (and by a read given the file's checksum) gives the
    map that h5py reads from the file, bit for bit, under any name the file is renamed
    to."""
    m = make()
    m.probdensity[3] = -0.0  # signs and odd values survive both ways
    write_hdf5(tmp_path / "tmp.hdf5", m)
    (tmp_path / "tmp.hdf5").rename(tmp_path / "m.hdf5")
    sha = hashlib.sha256((tmp_path / "m.hdf5").read_bytes()).hexdigest()
    assert skymap_module._KEPT.find(sha) is not None
    kept = read_hdf5(tmp_path / "m.hdf5", sha256=sha)
    kept_meta = read_hdf5_meta(tmp_path / "m.hdf5", sha256=sha)
    skymap_module._KEPT.clear()
    assert read_hdf5_meta(tmp_path / "m.hdf5", sha256=sha) == kept_meta == m.meta
    fresh = read_hdf5(tmp_path / "m.hdf5")
    _same_bits(kept, fresh)
    assert skymap_module._KEPT.find(sha) is None  # no checksum given: nothing kept
    _same_bits(read_hdf5(tmp_path / "m.hdf5", sha256=sha), fresh)
    assert skymap_module._KEPT.find(sha) is not None  # a read under a checksum keeps it
    _same_bits(read_hdf5(tmp_path / "m.hdf5", sha256=sha), fresh)


def test_hdf5_kept_copy_is_not_shared(tmp_path):
    """A caller changing its map in place changes neither the next read nor the map
    written."""
    m, first_uniq = moc_map(), moc_map().uniq[0]
    sha = write_hdf5(tmp_path / "m.hdf5", m).sha256
    m.uniq[0] = 7
    first = read_hdf5(tmp_path / "m.hdf5", sha256=sha)
    assert first.uniq[0] == first_uniq
    first.probdensity[:] = 0.0
    first.uniq[:] = 4
    first.meta["objid"] = "changed"
    again = read_hdf5(tmp_path / "m.hdf5", sha256=sha)
    assert again.uniq[0] == first_uniq and again.probdensity.min() > 0
    assert "objid" not in again.meta
    assert "objid" not in read_hdf5_meta(tmp_path / "m.hdf5", sha256=sha)


def test_hdf5_changed_in_place_at_once_is_read_again(tmp_path):
    """A file rewritten in place straight after write_hdf5 (same name, same size, very
    likely the same time stamp) is read from its new bytes, not from the kept copy."""
    import h5py

    m = moc_map()
    write_hdf5(tmp_path / "m.hdf5", m)
    size = (tmp_path / "m.hdf5").stat().st_size
    with h5py.File(tmp_path / "m.hdf5", "a") as f:
        f["layers"][0, 5] = 42.0
    assert (tmp_path / "m.hdf5").stat().st_size == size
    assert read_hdf5(tmp_path / "m.hdf5").probdensity[5] == 42.0
    with h5py.File(tmp_path / "m.hdf5", "a") as f:
        f.attrs["meta"] = json.dumps({"distmean": 301.0})
    assert read_hdf5_meta(tmp_path / "m.hdf5") == {"distmean": 301.0}
    assert read_hdf5(tmp_path / "m.hdf5").meta == {"distmean": 301.0}


def test_hdf5_large_files_are_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(skymap_module, "_KEPT_MAX_BYTES", 1000)
    skymap_module._KEPT.clear()
    write_hdf5(tmp_path / "m.hdf5", moc_map())
    assert skymap_module._KEPT.entries == []
    _same_bits(read_hdf5(tmp_path / "m.hdf5", sha256="ab" * 32), moc_map())
    assert skymap_module._KEPT.entries == []


def test_hdf5_from_a_newer_llama(tmp_path):
    import h5py

    write_hdf5(tmp_path / "m.hdf5", moc_map())
    with h5py.File(tmp_path / "m.hdf5", "a") as f:
        f.attrs["version"] = 3
    with pytest.raises(SkyMapError, match="version 3, this llama reads 1 and 2; regenerate"):
        read_hdf5(tmp_path / "m.hdf5")


def test_pixel_area_is_four_pi_over_the_pixel_count_exactly():
    uniq = np.array([4 * 4**o + i for o in range(30) for i in (0, 7)])
    m = SkyMap(probdensity=np.ones(len(uniq)), uniq=uniq)
    area = m.pixel_area()
    assert area.dtype == np.float64
    np.testing.assert_array_equal(area, 4 * np.pi / (12 * 4.0 ** m.orders.astype(float)))
    assert moc_map().pixel_area().sum() == pytest.approx(4 * np.pi, rel=1e-15)
    assert flat_map(nside=4).pixel_area()[0] == 4 * np.pi / 192


def test_uniq_to_order_ipix_matches_integer_bit_lengths():
    """Every order 0..29, each with its first and last pixel (the last ones of orders
    >= 25 lie above 2**53, where a float rounds) and random pixels, against Python's
    exact int.bit_length."""
    rng = np.random.default_rng(11)
    orders = np.r_[np.arange(30), np.arange(30), rng.integers(0, 30, 5000)]
    last = [12 * 4**o - 1 for o in range(30)]
    ipix = [0] * 30 + last + [int(rng.integers(0, 12 * 4**o)) for o in orders[60:]]
    uniq = np.array([4 * 4**o + p for o, p in zip(orders.tolist(), ipix, strict=True)])
    expect_order = np.array([(int(u).bit_length() - 3) // 2 for u in uniq])
    order, pix = uniq_to_order_ipix(uniq)
    np.testing.assert_array_equal(order, orders)
    np.testing.assert_array_equal(order, expect_order)
    np.testing.assert_array_equal(pix, ipix)
    assert uniq_to_order_ipix(np.int64(4 * 4**29 + last[29])) == (29, last[29])
    with pytest.raises(SkyMapError, match="UNIQ column is corrupt"):
        uniq_to_order_ipix(np.array([4, 3]))


def test_unsorted_uniq_is_sorted_by_nested_range():
    m = moc_map()
    idx = np.random.default_rng(1).permutation(len(m))
    shuffled = SkyMap(
        probdensity=m.probdensity[idx], uniq=m.uniq[idx], distmu=m.distmu[idx],
        distsigma=m.distsigma[idx], distnorm=m.distnorm[idx],
    )  # fmt: skip
    assert_same(shuffled, m)


def test_flatten_conserves_probability_and_distance():
    m = moc_map()
    for nside in (1, 2, 8, 16):
        f = m.flatten(nside)
        assert f.nside == nside
        assert f.probability().sum() == pytest.approx(1.0)
        assert f.distance_moments()[0] == pytest.approx(300.0)
    # Flattening to the finest order and back loses nothing.
    f = m.flatten(8)
    assert f.area90() == pytest.approx(m.area90(), rel=0.05)


def test_area90_uniform_and_concentrated():
    m = SkyMap(probdensity=np.full(12 * 16**2, 1 / (4 * np.pi)), nside=16)
    assert m.area90() == pytest.approx(0.9 * 41252.96, rel=0.01)


def test_distance_moments_from_layers_when_header_lacks_them():
    m = flat_map()
    m.meta.pop("distmean", None)
    mean, std = m.distance_moments()
    assert 100 < mean < 500 and std > 0
    with pytest.raises(SkyMapError, match="DISTMEAN"):
        flat_map(distance=False).distance_moments()


# --- errors ---------------------------------------------------------------------------


def test_not_fits(tmp_path):
    p = tmp_path / "junk.fits"
    p.write_text("this is not a sky map\n" * 100)
    with pytest.raises(SkyMapError, match="junk.fits.*not a readable FITS"):
        read_sky_map(p)


def test_truncated_fits(tmp_path):
    write_sky_map(tmp_path / "m.fits", flat_map())
    data = (tmp_path / "m.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(data[: len(data) // 2])
    with pytest.raises(SkyMapError, match="cut.fits"):
        read_sky_map(tmp_path / "cut.fits")


def test_missing_file(tmp_path):
    with pytest.raises(SkyMapError, match="no such file"):
        read_sky_map(tmp_path / "nope.fits")


def test_missing_prob_column(tmp_path):
    write_flat_fits(tmp_path / "m.fits", flat_map(), nest=True, columns=("TEMPERATURE",))
    with pytest.raises(SkyMapError, match="no PROBDENSITY or PROB column.*TEMPERATURE"):
        read_sky_map(tmp_path / "m.fits")


def _write_raw_moc(path, prob, ordering="NUNIQ"):
    uniq = np.arange(4, 16, dtype=np.int64)
    hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="UNIQ", format="K", array=uniq),
            fits.Column(name="PROBDENSITY", format="D", array=prob),
        ]
    )
    hdu.header["ORDERING"] = ordering
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def test_nan_probability(tmp_path):
    prob = np.full(12, 1 / (4 * np.pi))
    prob[3] = np.nan
    _write_raw_moc(tmp_path / "m.fits", prob)
    with pytest.raises(SkyMapError, match="NaN.*row 3"):
        read_sky_map(tmp_path / "m.fits")


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_probability(tmp_path, bad):
    prob = np.full(12, 1 / (4 * np.pi))
    prob[7] = bad
    _write_raw_moc(tmp_path / "m.fits", prob)
    with pytest.raises(SkyMapError, match="1 pixel.*NaN or infinite.*row 7"):
        read_sky_map(tmp_path / "m.fits")


@pytest.mark.parametrize("zeros", [(-1e-20, -0.0), (0.0, -0.0)])
def test_round_off_negatives_and_negative_zeros_become_positive_zeros(tmp_path, zeros):
    """Tiny negatives (round-off) and -0.0 are read as +0.0, the others renormalised;
    also with -0.0 the smallest value and no negative at all."""
    prob = np.full(12, 12 / 10 / (4 * np.pi))  # the 10 other pixels hold it all
    prob[2], prob[9] = zeros
    _write_raw_moc(tmp_path / "m.fits", prob)
    density = read_sky_map(tmp_path / "m.fits").probdensity
    assert density[2] == 0.0 and density[9] == 0.0
    assert not np.signbit(density).any()
    kept = np.delete(np.arange(12), [2, 9])
    np.testing.assert_allclose(density[kept], 12 / 10 / (4 * np.pi), rtol=1e-14)


def test_a_positive_map_is_only_renormalised(tmp_path):
    prob = np.linspace(1.0, 2.0, 12) / (1.5 * 4 * np.pi)  # mean 1 / (4 pi)
    _write_raw_moc(tmp_path / "m.fits", prob)
    total = sum(float(p) * np.pi / 3 for p in prob)  # order-0 pixels: pi / 3 sr each
    np.testing.assert_allclose(read_sky_map(tmp_path / "m.fits").probdensity, prob / total, rtol=1e-14)  # fmt: skip


def test_negative_probability(tmp_path):
    prob = np.full(12, 1 / (4 * np.pi))
    prob[5] = -0.01
    _write_raw_moc(tmp_path / "m.fits", prob)
    with pytest.raises(SkyMapError, match="negative.*row 5"):
        read_sky_map(tmp_path / "m.fits")


def test_total_probability(tmp_path):
    _write_raw_moc(tmp_path / "small.fits", np.full(12, 1.01 / (4 * np.pi)))
    assert read_sky_map(tmp_path / "small.fits").probability().sum() == pytest.approx(1.0)
    _write_raw_moc(tmp_path / "far.fits", np.full(12, 0.5 / (4 * np.pi)))
    with pytest.raises(SkyMapError, match="total probability is 0.5"):
        read_sky_map(tmp_path / "far.fits")


def test_unknown_ordering(tmp_path):
    _write_raw_moc(tmp_path / "m.fits", np.full(12, 1 / (4 * np.pi)), ordering="SPIRAL")
    with pytest.raises(SkyMapError, match="unknown pixel ORDERING 'SPIRAL'"):
        read_sky_map(tmp_path / "m.fits")


def test_bad_hdf5(tmp_path):
    (tmp_path / "x.hdf5").write_text("no")
    with pytest.raises(SkyMapError, match="not an HDF5"):
        read_hdf5(tmp_path / "x.hdf5")


# --- distance ansatz ----------------------------------------------------------------------


def test_conditional_distance_pdf_normalised_with_requested_moments():
    from scipy.integrate import quad

    mu, sigma, norm = moments_to_parameters(400.0, 120.0)
    r = np.linspace(0, 3000, 300001)
    pdf = conditional_distance_pdf(r, mu, sigma, norm)
    assert quad(conditional_distance_pdf, 0, np.inf, args=(mu, sigma, norm))[0] == pytest.approx(
        1.0, rel=1e-6
    )
    mean = np.trapezoid(r * pdf, r)
    std = np.sqrt(np.trapezoid(r**2 * pdf, r) - mean**2)
    assert mean == pytest.approx(400.0, rel=1e-5) and std == pytest.approx(120.0, rel=1e-5)


def test_moments_parameters_match_ligo_skymap():
    distance = pytest.importorskip("ligo.skymap.distance")
    rng = np.random.default_rng(3)
    mean = rng.uniform(5, 3000, 200)
    std = mean * rng.uniform(0.05, 0.55, 200)
    ours = moments_to_parameters(mean, std)
    theirs = distance.moments_to_parameters(mean, std)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    mu = rng.uniform(-500, 3000, 200)
    sigma = rng.uniform(10, 800, 200)
    for a, b in zip(
        parameters_to_moments(mu, sigma), distance.parameters_to_moments(mu, sigma), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # Impossible moments (mean/std below sqrt 3) map to (inf, 1, 0) as in ligo.skymap.
    assert moments_to_parameters(10.0, 10.0) == (np.inf, 1.0, 0.0)


# --- interoperability with ligo.skymap ---------------------------------------------------


def test_ligo_skymap_moc_reads_in_llama(tmp_path):
    lfits = pytest.importorskip("ligo.skymap.io.fits")
    from astropy.table import Table

    m = moc_map()
    table = Table(
        {"UNIQ": m.uniq, "PROBDENSITY": m.probdensity, "DISTMU": m.distmu,
         "DISTSIGMA": m.distsigma, "DISTNORM": m.distnorm}
    )  # fmt: skip
    lfits.write_sky_map(
        str(tmp_path / "theirs.fits.gz"), table, objid="S190425z", gps_time=1240215503.0,
        instruments={"L1", "V1"}, distmean=300.0, diststd=60.0,
    )  # fmt: skip
    r = read_sky_map(tmp_path / "theirs.fits.gz")
    assert_same(r, m)
    assert r.meta["instruments"] == ["L1", "V1"] and r.meta["objid"] == "S190425z"
    assert r.meta["gps_time"] == pytest.approx(1240215503.0)
    assert r.distance_moments() == (300.0, 60.0)


def test_ligo_skymap_flat_reads_in_llama(tmp_path):
    lfits = pytest.importorskip("ligo.skymap.io.fits")
    m = flat_map()
    ring = hp.ring2nest(m.nside, np.arange(len(m)))
    layers = [m.probability()[ring], m.distmu[ring], m.distsigma[ring], m.distnorm[ring]]
    lfits.write_sky_map(str(tmp_path / "theirs.fits"), layers, nest=False)
    assert_same(read_sky_map(tmp_path / "theirs.fits"), m)


def test_llama_map_reads_in_ligo_skymap(tmp_path):
    lfits = pytest.importorskip("ligo.skymap.io.fits")
    m = moc_map()
    m.meta.update(objid="S190425z", gps_time=1240215503.0, instruments=["H1", "L1"], diststd=60.0)
    write_sky_map(tmp_path / "ours.fits.gz", m)
    t = lfits.read_sky_map(str(tmp_path / "ours.fits.gz"), moc=True)
    np.testing.assert_array_equal(np.asarray(t["UNIQ"]), m.uniq)
    for name in ("PROBDENSITY", "DISTMU", "DISTSIGMA", "DISTNORM"):
        np.testing.assert_allclose(np.asarray(t[name]), getattr(m, name.lower()))
    assert t.meta["objid"] == "S190425z" and t.meta["instruments"] == {"H1", "L1"}
    assert t.meta["distmean"] == 300.0 and t.meta["diststd"] == 60.0
    # ligo.skymap's rasteriser sees the same probability at the finest order.
    prob, _ = lfits.read_sky_map(str(tmp_path / "ours.fits.gz"), nest=True)
    assert prob.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(prob, m.flatten(8).probability(), atol=1e-12)


def test_rows_split_once_stay_each_rows_order_and_pixel():
    """orders, order_ipix and pixel_area of a multi-order map are each row's own
    (order, pixel) from its NUNIQ index, by integer arithmetic: for rows given sorted
    (the split made by the sort check is kept) and unsorted, after a caller writes to
    what it was given, and after ``uniq`` is set to other rows."""
    rng = np.random.default_rng(4)
    # a valid MOC: order 2 everywhere, some pixels split to order 4
    uniq = []
    for ipix in range(12 * 4**2):
        if rng.random() < 0.3:
            uniq += [4 * 4**4 + 16 * ipix + k for k in range(16)]
        else:
            uniq.append(4 * 4**2 + ipix)
    uniq = np.array(uniq, dtype=np.int64)

    def by_hand(u):
        order = np.array([(int(x).bit_length() - 3) // 2 for x in u])
        return order, u - 4 * 4**order

    for rows in (uniq, np.sort(uniq)):  # the nested order, then by NUNIQ (sorted on making)
        m = SkyMap(probdensity=np.ones(rows.size), uniq=rows.copy())
        order, ipix = by_hand(m.uniq)
        got = m.order_ipix()
        assert [a.tolist() for a in got] == [order.tolist(), ipix.tolist()]
        assert all(a.dtype == np.int64 and a.flags.c_contiguous for a in got)
        got[0][:] = -1  # the caller's to keep: the map's answer does not change
        got[1][:] = -1
        assert m.orders.tolist() == order.tolist()
        m.orders[:] = 0
        assert m.order_ipix()[1].tolist() == ipix.tolist()
        assert m.pixel_area().tolist() == (4 * np.pi / (12 * 4.0**order)).tolist()
        m.uniq = m.uniq[::-1].copy()  # other rows: split again
        assert m.orders.tolist() == order[::-1].tolist()
