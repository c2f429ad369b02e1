"""The event's HDF5 copy of the sky map is read under its checksum (LvcSkymapHdf5.read):
a map kept in this process is taken without opening the file while the file's size and
mtime_ns are those of its checksum (the event's up-to-date trust), and read again as
soon as either changes."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from llama.event import Event
from llama.handlers import gw
from llama.science import skymap as skymap_module
from llama.science.skymap import SkyMap, write_hdf5


def _map(value: float = 1.0) -> SkyMap:
    density = np.full(12, value / (4 * np.pi))
    return SkyMap(probdensity=density, nside=1, meta={"distmean": 40.0, "diststd": 9.0})


@pytest.fixture
def no_h5py_open(monkeypatch):
    """Fails any opening of an HDF5 copy while set; ``.off()`` lets them through."""
    real = skymap_module._open_hdf5
    state = {"on": True, "opened": 0}

    def guarded(where):
        state["opened"] += 1
        if state["on"]:
            raise AssertionError(f"{where} opened")
        return real(where)

    monkeypatch.setattr(skymap_module, "_open_hdf5", guarded)
    return state


def _event_with_copy(tmp_path, m: SkyMap) -> Event:
    ev = Event(tmp_path / "S1")
    write_hdf5(ev.path(gw.LvcSkymapHdf5.FILENAME), m)
    return ev


def test_a_copy_written_here_is_not_read_again(tmp_path, no_h5py_open):
    ev = _event_with_copy(tmp_path, _map())
    first = gw.LvcSkymapHdf5.read(ev)
    assert np.array_equal(first.probdensity, _map().probdensity)
    assert gw.LvcSkymapHdf5.read_meta(ev) == {"distmean": 40.0, "diststd": 9.0}
    first.probdensity[:] = 0.0  # a caller's change stays its own
    assert gw.LvcSkymapHdf5.read(ev).probdensity.min() > 0
    assert no_h5py_open["opened"] == 0


def test_a_copy_changed_in_place_is_read_again(tmp_path, no_h5py_open):
    """Same name and size, a new mtime_ns: the new bytes, not the kept map."""
    ev = _event_with_copy(tmp_path, _map())
    path = ev.path(gw.LvcSkymapHdf5.FILENAME)
    gw.LvcSkymapHdf5.read(ev)
    st = path.stat()
    with h5py.File(path, "a") as f:
        f["layers"][0, 5] = 42.0
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert path.stat().st_size == st.st_size
    no_h5py_open["on"] = False
    assert gw.LvcSkymapHdf5.read(ev).probdensity[5] == 42.0
    assert no_h5py_open["opened"] == 1
    assert gw.LvcSkymapHdf5.read(ev).probdensity[5] == 42.0  # kept under its new checksum
    assert gw.LvcSkymapHdf5.read_meta(ev) == {"distmean": 40.0, "diststd": 9.0}
    assert no_h5py_open["opened"] == 1
    with h5py.File(path, "a") as f:  # another size
        f.attrs["meta"] = json.dumps({"distmean": 301.0, "diststd": 2.0})
    assert gw.LvcSkymapHdf5.read_meta(ev) == {"distmean": 301.0, "diststd": 2.0}
    assert gw.LvcSkymapHdf5.read(ev).meta == {"distmean": 301.0, "diststd": 2.0}


def test_a_copy_replaced_by_another_file_is_read_again(tmp_path, no_h5py_open):
    """A file renamed over the copy (another size or time stamp): the new map."""
    ev = _event_with_copy(tmp_path, _map())
    path = ev.path(gw.LvcSkymapHdf5.FILENAME)
    gw.LvcSkymapHdf5.read(ev)
    other = SkyMap(probdensity=np.full(48, 1 / (4 * np.pi)), nside=2, meta={})
    skymap_module._KEPT.clear()  # as in a fresh process: the other map is not kept
    skymap_module.write_hdf5(tmp_path / "other.hdf5", other)
    skymap_module._KEPT.clear()
    os.replace(tmp_path / "other.hdf5", path)
    no_h5py_open["on"] = False
    assert gw.LvcSkymapHdf5.read(ev).nside == 2
    assert gw.LvcSkymapHdf5.read_meta(ev) == {}


def test_the_distances_handler_reads_the_kept_copy(tmp_path, no_h5py_open):
    ev = _event_with_copy(tmp_path, _map())
    gw.LvcDistancesJson(ev).generate(tmp_path / "d.json")
    assert json.loads((tmp_path / "d.json").read_text())["distmean"] == 40.0
    assert no_h5py_open["opened"] == 0


def test_a_missing_copy_is_named(tmp_path):
    ev = Event(tmp_path / "S2")
    with pytest.raises(skymap_module.SkyMapError, match="no such file"):
        gw.LvcSkymapHdf5.read(ev)
