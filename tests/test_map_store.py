"""The process's store of sky maps and their products (llama.science.skymap._KEPT,
kept_product): products of a map are served for that map only (two maps, a changed
file, a map changed in place), the store keeps to its byte bound and evicts the least
recently used first, and the statistic and p-values are the same bit for bit with the
store and without it on BAYESTAR maps."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest

import llama.science.skymap as S
from llama.science.background_trials import SkyBounds
from llama.science.fast_trials import TrialScreen
from llama.science.odds import EventModel
from llama.science.pvalue import trial_pvalues
from llama.science.sim import simulate_background_neutrinos, simulate_signal_neutrino
from llama.science.skymap import SkyMap, kept_product, read_hdf5, read_sky_map, write_hdf5
from llama.science.times import mjd_to_gps

DATA = Path(__file__).parent / "data" / "bayestar"


@pytest.fixture(autouse=True)
def fresh_store(monkeypatch):
    """Each test its own store (the process's, emptied, with its default bound)."""
    monkeypatch.setattr(S._KEPT, "max_bytes", S.MAP_STORE_BYTES)
    S._KEPT.clear()
    yield
    S._KEPT.clear()


def moc(seed: int, rows: int = 48) -> SkyMap:
    """A small multi-order map: the 48 pixels of order 1 (or fewer, by rows), random
    densities normalised."""
    rng = np.random.default_rng(seed)
    uniq = 16 + np.arange(rows)
    dens = rng.uniform(0.1, 1.0, rows)
    dens /= (dens * (4 * np.pi / 48)).sum()
    return SkyMap(probdensity=dens, uniq=uniq, meta={"objid": f"S{seed}"})


def stored(tmp_path, m: SkyMap, name="m.hdf5"):
    """(path, sha256) of ``m``'s HDF5 copy, written (and so kept)."""
    written = write_hdf5(tmp_path / name, m)
    return tmp_path / name, written.sha256


def peak(m: SkyMap) -> np.ndarray:
    return np.array([m.probdensity.max()])


def kept(m: SkyMap, key, build):
    """kept_product asked for twice: a product is kept from its second request on."""
    kept_product(m, key, build)
    return kept_product(m, key, build)


def test_products_of_two_maps_are_their_own(tmp_path):
    (pa, sa), (pb, sb) = stored(tmp_path, moc(1), "a.hdf5"), stored(tmp_path, moc(2), "b.hdf5")
    a, b = read_hdf5(pa, sha256=sa), read_hdf5(pb, sha256=sb)
    ka, kb = kept(a, "peak", peak), kept(b, "peak", peak)
    assert ka[0] == a.probdensity.max() and kb[0] == b.probdensity.max() and ka[0] != kb[0]
    # a second read of each map (a later event) is served its own map's product
    assert kept_product(read_hdf5(pa, sha256=sa), "peak", peak) is ka
    assert kept_product(read_hdf5(pb, sha256=sb), "peak", peak) is kb
    # a map's own key for each product
    assert kept(a, "other", lambda m: "x") == "x"


def test_a_product_is_kept_when_asked_for_again(tmp_path):
    """A map met once keeps no products (memory for maps that never come back), a
    map met again keeps them; the requests are remembered after the map is evicted."""
    path, sha = stored(tmp_path, moc(1))
    first = kept_product(read_hdf5(path, sha256=sha), "peak", peak)
    assert S._KEPT._entries[sha].products == {}
    held = S._KEPT.held
    second = kept_product(read_hdf5(path, sha256=sha), "peak", peak)
    assert second is not first and np.array_equal(second, first)
    assert kept_product(read_hdf5(path, sha256=sha), "peak", peak) is second
    assert S._KEPT.held == held + second.nbytes
    S._KEPT._entries.clear()  # evicted, not cleared: the request is remembered
    S._KEPT.held = 0
    path, sha = stored(tmp_path, moc(1))
    third = kept_product(read_hdf5(path, sha256=sha), "peak", peak)
    assert kept_product(read_hdf5(path, sha256=sha), "peak", peak) is third


def test_a_changed_file_is_another_map(tmp_path):
    path, sha = stored(tmp_path, moc(1))
    first = kept(read_hdf5(path, sha256=sha), "peak", peak)
    changed = moc(1)
    changed.probdensity[5] *= 2.0  # its peak or not, another map
    changed.probdensity[0] = 100.0
    path2, sha2 = stored(tmp_path, changed)  # the same name, new bytes, new checksum
    assert path2 == path and sha2 != sha
    again = read_hdf5(path, sha256=sha2)
    assert kept(again, "peak", peak)[0] == 100.0 != first[0]


def test_a_map_changed_by_its_caller_is_not_served_the_kept_products(tmp_path):
    path, sha = stored(tmp_path, moc(1))
    m = read_hdf5(path, sha256=sha)
    kept_peak = kept(m, "peak", peak)
    m.probdensity[m.probdensity.argmax()] = 50.0  # in place
    mine = kept(m, "peak", peak)
    assert mine[0] == 50.0 and kept_peak[0] < 50.0
    assert kept_product(read_hdf5(path, sha256=sha), "peak", peak) is kept_peak  # the file's
    for change in (
        lambda m: setattr(m, "uniq", m.uniq.copy()),  # the same pixels: served
        lambda m: m.probdensity.__setitem__(0, -0.0 if m.probdensity[0] == 0 else 0.0),
        lambda m: setattr(m, "distmu", np.ones(len(m))),  # not read by the products
        lambda m: m.uniq.__setitem__(0, 4),
        lambda m: setattr(m, "probdensity", m.probdensity[:-1]),
    ):
        m = read_hdf5(path, sha256=sha)
        change(m)
        same = m.probdensity.tobytes() == read_hdf5(path).probdensity.tobytes()
        same = same and m.uniq[0] == 16
        assert (kept_product(m, "peak", peak) is kept_peak) == same


def test_products_hold_no_array_a_caller_is_given(tmp_path):
    """Built from the store's own map: a product holding the map's density is not
    changed by a caller writing into its map."""
    path, sha = stored(tmp_path, moc(1))
    m = read_hdf5(path, sha256=sha)
    held = kept(m, "density", lambda m: m.probdensity)
    assert held is not m.probdensity and not np.shares_memory(held, m.probdensity)
    before = held.copy()
    m.probdensity[:] = 1.0
    np.testing.assert_array_equal(held, before)


def test_maps_not_from_the_store_keep_nothing(tmp_path):
    m = moc(1)
    assert kept_product(m, "peak", peak) is not kept_product(m, "peak", peak)
    path, sha = stored(tmp_path, moc(1))
    unkept = read_hdf5(path)  # no checksum: not from the store
    assert kept_product(unkept, "peak", peak) is not kept_product(unkept, "peak", peak)


def test_the_byte_bound_and_the_eviction_order(tmp_path):
    maps = [moc(k) for k in range(4)]
    files = [stored(tmp_path, m, f"{k}.hdf5") for k, m in enumerate(maps)]
    one = S._KEPT._entries[files[0][1]].nbytes  # a parsed map's bytes (all the same size)
    product = np.zeros(50)  # 400 bytes, about half a map
    assert product.nbytes < one < 2 * product.nbytes
    S._KEPT.clear()
    S._KEPT.max_bytes = 3 * one + product.nbytes
    for path, sha in files[:3]:
        read_hdf5(path, sha256=sha)
    assert [sha for sha, _ in S._KEPT.entries] == [f[1] for f in files[:3]]
    read_hdf5(files[0][0], sha256=files[0][1])  # used again: now the most recent
    assert [sha for sha, _ in S._KEPT.entries] == [files[k][1] for k in (1, 2, 0)]
    # a product on map 2 fits; one more on map 0 does not fit beside map 1: 1 goes
    m2 = read_hdf5(files[2][0], sha256=files[2][1])
    kept(m2, "p", lambda m: product.copy())
    assert [sha for sha, _ in S._KEPT.entries] == [files[k][1] for k in (1, 0, 2)]
    m0 = read_hdf5(files[0][0], sha256=files[0][1])
    kept(m0, "p", lambda m: product.copy())
    assert [sha for sha, _ in S._KEPT.entries] == [files[k][1] for k in (2, 0)]
    assert S._KEPT.held == sum(S._KEPT._entries[s].nbytes for s, _ in S._KEPT.entries)
    assert S._KEPT.held <= S._KEPT.max_bytes
    # map 3 pushes out the least recent (2), then its product out the next (0)
    m3 = read_hdf5(files[3][0], sha256=files[3][1])
    assert [sha for sha, _ in S._KEPT.entries] == [files[k][1] for k in (0, 3)]
    kept(m3, "p", lambda m: np.zeros(100))
    assert [sha for sha, _ in S._KEPT.entries] == [files[3][1]]
    # an evicted map's later products are built, not kept; a product larger than the
    # bound is not kept
    assert kept_product(m2, "q", lambda m: [1]) is not kept_product(m2, "q", lambda m: [1])
    big = np.zeros(S._KEPT.max_bytes // 8 + 1)
    assert kept(m3, "big", lambda m: big) is big
    assert "big" not in S._KEPT._entries[files[3][1]].products
    assert S._KEPT.held <= S._KEPT.max_bytes


def test_a_store_of_size_0_keeps_nothing(tmp_path):
    S._KEPT.max_bytes = 0
    path, sha = stored(tmp_path, moc(1))
    assert S._KEPT.entries == [] and S._KEPT.held == 0
    m = read_hdf5(path, sha256=sha)
    assert kept(m, "peak", peak) is not kept(m, "peak", peak)
    assert S._KEPT.entries == [] and S._KEPT.held == 0


def test_threads_share_one_product(tmp_path):
    path, sha = stored(tmp_path, moc(1))
    got, barrier = [], threading.Barrier(8)

    def build(m):
        return np.array([m.probdensity.sum()])

    def work():
        m = read_hdf5(path, sha256=sha)
        barrier.wait()
        got.append(kept(m, "sum", build))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept_sum = kept_product(read_hdf5(path, sha256=sha), "sum", build)
    assert len(got) == 8 and all(np.array_equal(g, kept_sum) for g in got)
    assert S._KEPT._entries[sha].products["sum"] is kept_sum
    assert S._KEPT.held == S._KEPT._entries[sha].nbytes


def _bayestar(tmp_path, name, store: bool):
    """``name``'s model on its map as an event reads it (its HDF5 copy under its
    checksum), with the store on or disabled."""
    S._KEPT.max_bytes = S.MAP_STORE_BYTES if store else 0
    info = json.loads((DATA / "events.json").read_text())[name]
    written = write_hdf5(tmp_path / f"{name}.hdf5", read_sky_map(DATA / f"{name}.fits"))
    assert written.sha256 == hashlib.sha256((tmp_path / f"{name}.hdf5").read_bytes()).hexdigest()  # fmt: skip
    skymap = read_hdf5(tmp_path / f"{name}.hdf5", sha256=written.sha256)
    rho, rbar = float(info["network_snr"]), float(info["distmean_mpc"])
    return EventModel(skymap, rho, rbar, info["population"], t_gw_mjd=float(info["mjd_obs"]))


def _same_arrays(a, b):
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray):
            assert (x.dtype, x.shape, x.tobytes()) == (y.dtype, y.shape, y.tobytes())
        else:
            assert x == y


@pytest.mark.parametrize("name, seed", [("bbh-2", 3), ("bns-9", 1)])
def test_bayestar_results_are_the_same_with_the_store(tmp_path, name, seed):
    """Odds and p-values (event and neutrinos) bit for bit with the store (a first
    event that builds the products, a second that keeps them, a third served them)
    and without it; the products themselves byte for byte."""
    results, products = [], []
    for store in (False, True, True, True):
        model = _bayestar(tmp_path, name, store)
        rng = np.random.default_rng(seed)
        nl = simulate_background_neutrinos(rng, model.t_gw_mjd)
        nl = nl.concatenate(simulate_signal_neutrino(rng, model.skymap, model.t_gw_mjd))
        obs = model.evaluate(nl, float(mjd_to_gps(model.t_gw_mjd)))
        trials = trial_pvalues(model, obs, 300, seed=seed)
        results.append((obs.odds, obs.odds_ratio.tobytes(), trials.p_value, trials.p_values_neutrino.tobytes(), json.dumps(trials.method, sort_keys=True, default=str)))  # fmt: skip
        sky = SkyBounds.for_model(model)
        products.append((model.prepared_map(), sky, TrialScreen.for_model(model)))
    assert results[0] == results[1] == results[2] == results[3]
    _same_arrays(products[0][0], products[2][0])
    assert products[2][0] is not products[1][0]  # asked for once, then kept
    assert products[3][0] is products[2][0] and products[3][1] is products[2][1]
    assert products[3][2] is products[2][2]
    for a, b in ((products[0][1], products[2][1]), (products[0][2], products[2][2])):
        for key, value in vars(a).items():
            other = vars(b)[key]
            if isinstance(value, (list, tuple)):
                _same_arrays(value, other)
            else:
                _same_arrays([value], [other])


def test_hdf5_copy_of_a_fits_file_seen_before_is_its_bytes(tmp_path, monkeypatch):
    """hdf5_copy writes what write_hdf5(read_sky_map) writes, bit for bit; a FITS file
    of a checksum seen before is neither parsed nor written through h5py; another
    checksum, or a copy no longer kept, is parsed again."""
    fits = DATA / "bbh-2.fits"
    fits_sha = hashlib.sha256(fits.read_bytes()).hexdigest()
    plain = write_hdf5(tmp_path / "plain.hdf5", read_sky_map(fits))
    S._KEPT.clear()
    first = S.hdf5_copy(tmp_path / "a.hdf5", fits, fits_sha, atomic=False)
    assert first == plain and (tmp_path / "a.hdf5").read_bytes() == plain.data
    map_bytes = S._held_bytes(S._KEPT._entries[plain.sha256].parsed)
    assert S._KEPT.held == map_bytes  # met once: its bytes not kept
    S.hdf5_copy(tmp_path / "a.hdf5", fits, fits_sha, atomic=False)  # met again: kept
    assert S._KEPT.held == S._KEPT._entries[plain.sha256].nbytes == map_bytes + len(plain.data)
    parsed = []
    monkeypatch.setattr(S, "read_sky_map", lambda f: parsed.append(f) or read_sky_map(f))
    again = S.hdf5_copy(tmp_path / "b.hdf5", "not read", fits_sha)
    assert again == plain and (tmp_path / "b.hdf5").read_bytes() == plain.data and not parsed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.hdf5", "b.hdf5", "plain.hdf5"]
    # the map read back under the copy's checksum is the store's, with its products
    m = read_hdf5(tmp_path / "b.hdf5", sha256=again.sha256)
    assert m._kept is S._KEPT._entries[plain.sha256]
    # another checksum: parsed
    assert S.hdf5_copy(tmp_path / "c.hdf5", fits, "0" * 64) == plain and len(parsed) == 1
    # no checksum: parsed, not noted
    assert S.hdf5_copy(tmp_path / "d.hdf5", fits, None) == plain and len(parsed) == 2
    # evicted: parsed again
    S._KEPT._entries.clear()
    S._KEPT.held = 0
    assert S.hdf5_copy(tmp_path / "e.hdf5", fits, fits_sha) == plain and len(parsed) == 3
    # a store too small for the bytes keeps the map but not them
    S._KEPT._entries.clear()
    S._KEPT.held = 0
    S._KEPT.max_bytes = map_bytes + len(plain.data) - 1
    S.hdf5_copy(tmp_path / "f.hdf5", fits, fits_sha)
    assert S._KEPT._entries[plain.sha256].data is None
    assert S.hdf5_copy(tmp_path / "g.hdf5", fits, fits_sha) == plain and len(parsed) == 5
    assert (tmp_path / "g.hdf5").read_bytes() == plain.data


def test_maps_met_once_are_four_at_most(tmp_path):
    """Of the maps holding nothing but their copy (met once), the 4 most recent are
    kept, whatever the byte bound; a map with products stays."""
    files = [stored(tmp_path, moc(k), f"{k}.hdf5") for k in range(7)]
    assert [sha for sha, _ in S._KEPT.entries] == [sha for _, sha in files[3:]]
    m = read_hdf5(*files[3][:1], sha256=files[3][1])
    kept(m, "peak", peak)
    stored(tmp_path, moc(7), "7.hdf5")
    stored(tmp_path, moc(8), "8.hdf5")
    shas = [sha for sha, _ in S._KEPT.entries]
    assert files[3][1] in shas and len(shas) == 5
    assert S._KEPT.held == sum(S._KEPT._entries[s].nbytes for s in shas)
