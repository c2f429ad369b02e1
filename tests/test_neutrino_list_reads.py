"""The event's neutrino list read through Event.read_bytes (llama.handlers.neutrino): the
bytes its checksum read, then those the event keeps, while the file's size and
mtime_ns are unchanged; a list changed since is read again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llama import event as event_module
from llama.event import Event
from llama.handlers.neutrino import IceCubeNeutrinoList, read_neutrino_list
from llama.science import neutrinos as neutrinos_module
from llama.science.neutrinos import NeutrinoListError

FILENAME = IceCubeNeutrinoList.FILENAME


def _list(ra: float) -> str:
    trigger = {"mjd": 58598.3, "ra": ra, "dec": -20.0, "sigma": 0.5, "energy": 2.5e4}
    return json.dumps({"triggers": [trigger, {**trigger, "ra": 10.0}], "complete": True})


@pytest.fixture
def opens(monkeypatch):
    """The data files opened for reading by the event and the list's reader."""
    seen: list[str] = []

    def counted(path, *args, **kwargs):
        seen.append(os.path.basename(path))
        return open(path, *args, **kwargs)

    for module in (event_module, neutrinos_module):
        monkeypatch.setattr(module, "open", counted, raising=False)
    os_open = os.open

    def counted_os_open(path, flags, *args, **kwargs):
        if not flags & (os.O_WRONLY | os.O_RDWR):
            seen.append(os.path.basename(path))
        return os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(event_module.os, "open", counted_os_open)
    return seen


def test_the_list_is_read_from_disk_once_for_its_checksum_readers_and_record(tmp_path, opens):
    ev = Event(tmp_path / "S1")
    ev.path(FILENAME).write_text(_list(120.0))
    ev.sha256(FILENAME)  # as the significance's input checksums take it
    assert opens.count(FILENAME) == 1
    assert list(read_neutrino_list(ev).ra) == [120.0, 10.0]
    assert IceCubeNeutrinoList.record(ev) == {
        "n_neutrinos": 2,
        "neutrinos_complete": True,
        "neutrinos_blinded": False,
    }
    assert list(read_neutrino_list(ev).ra) == [120.0, 10.0]
    assert opens.count(FILENAME) == 1


def test_a_list_changed_in_place_is_read_again(tmp_path, opens):
    ev = Event(tmp_path / "S1")
    path: Path = ev.path(FILENAME)
    path.write_text(_list(120.0))
    assert list(read_neutrino_list(ev).ra) == [120.0, 10.0]
    st = path.stat()
    path.write_text(_list(130.0))  # same size
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert list(read_neutrino_list(ev).ra) == [130.0, 10.0]
    path.write_text(_list(5.0))  # another size
    assert list(read_neutrino_list(ev).ra) == [5.0, 10.0]
    assert IceCubeNeutrinoList.record(ev)["n_neutrinos"] == 2
    assert opens.count(FILENAME) == 3


def test_a_missing_or_damaged_list_is_named(tmp_path):
    ev = Event(tmp_path / "S1")
    with pytest.raises(NeutrinoListError, match=f"{FILENAME}: no such file"):
        read_neutrino_list(ev)
    ev.path(FILENAME).write_text('{"triggers": [')
    with pytest.raises(NeutrinoListError, match=f"{FILENAME}: not valid JSON"):
        IceCubeNeutrinoList.record(ev)
    ev.path(FILENAME).write_bytes(b'{"triggers": [], "complete": "\xff"}')
    with pytest.raises(NeutrinoListError, match=f"{FILENAME}: not valid JSON"):
        read_neutrino_list(ev)
