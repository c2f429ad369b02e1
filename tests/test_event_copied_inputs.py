"""Inputs llama.storage.get copied into events (--get): a copy of a local file whose
checksum an earlier copy of the same file gave (the same device, inode, size and
mtime_ns throughout) is not hashed again while it is as it was made."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from llama import event as event_module
from llama import storage
from llama.event import Event


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(event_module, "_COPIED", {})
    # the files here count as large (only copies over WRITTEN_BYTES_MAX are recorded)
    monkeypatch.setattr(event_module, "WRITTEN_BYTES_MAX", 10)


@pytest.fixture
def hashed(monkeypatch):
    """The data files hashed (read through _hash_file)."""
    seen: list[str] = []
    hash_file = event_module._hash_file

    def counted(path):
        seen.append(os.path.basename(path))
        return hash_file(path)

    monkeypatch.setattr(event_module, "_hash_file", counted)
    return seen


def _copy(source: Path, ev: Event, name: str = "lvc_skymap.fits") -> None:
    copied = storage.get(source, ev.path(name))
    assert copied is not None
    ev.note_copy(name, copied)


def _later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_copies_of_one_file_are_hashed_once(tmp_path, hashed):
    source = tmp_path / "map.fits"
    source.write_bytes(b"SIMPLE" * 1000)
    want = hashlib.sha256(source.read_bytes()).hexdigest()
    events = [Event(tmp_path / f"S{k}") for k in range(3)]
    for ev in events:
        _copy(source, ev)
    assert [ev.sha256("lvc_skymap.fits") for ev in events] == [want] * 3
    assert hashed == ["lvc_skymap.fits"]
    late = Event(tmp_path / "S9")  # copied after the checksum was taken
    _copy(source, late)
    assert late.sha256("lvc_skymap.fits") == want and len(hashed) == 1
    assert late.read_bytes("lvc_skymap.fits") == source.read_bytes()


def test_a_copy_changed_since_it_was_made_is_hashed(tmp_path, hashed):
    source = tmp_path / "map.fits"
    source.write_bytes(b"a" * 100)
    first, second = Event(tmp_path / "S1"), Event(tmp_path / "S2")
    _copy(source, first)
    assert first.sha256("lvc_skymap.fits") == hashlib.sha256(b"a" * 100).hexdigest()
    _copy(source, second)
    changed = second.path("lvc_skymap.fits")
    changed.write_bytes(b"b" * 100)  # same size
    _later(changed)
    assert second.sha256("lvc_skymap.fits") == hashlib.sha256(b"b" * 100).hexdigest()
    assert len(hashed) == 2


def test_a_first_copy_changed_before_its_checksum_records_nothing(tmp_path, hashed):
    source = tmp_path / "map.fits"
    source.write_bytes(b"a" * 100)
    first, second = Event(tmp_path / "S1"), Event(tmp_path / "S2")
    _copy(source, first)
    _copy(source, second)
    first.path("lvc_skymap.fits").write_bytes(b"c" * 100)
    _later(first.path("lvc_skymap.fits"))
    assert first.sha256("lvc_skymap.fits") == hashlib.sha256(b"c" * 100).hexdigest()
    assert second.sha256("lvc_skymap.fits") == hashlib.sha256(b"a" * 100).hexdigest()
    assert len(hashed) == 2


def test_a_source_changed_since_is_a_new_source(tmp_path, hashed):
    source = tmp_path / "map.fits"
    source.write_bytes(b"a" * 100)
    first, second = Event(tmp_path / "S1"), Event(tmp_path / "S2")
    _copy(source, first)
    first.sha256("lvc_skymap.fits")
    source.write_bytes(b"d" * 100)  # in place: same inode and size
    _later(source)
    _copy(source, second)
    assert second.sha256("lvc_skymap.fits") == hashlib.sha256(b"d" * 100).hexdigest()
    assert len(hashed) == 2


def test_a_source_changed_during_the_copy_gives_no_stamp(tmp_path, monkeypatch):
    source = tmp_path / "map.fits"
    source.write_bytes(b"a" * 100)
    copy_fd = storage._copy_fd

    def meddling(src, out):
        copy_fd(src, out)
        with open(source, "ab") as f:
            f.write(b"more")

    monkeypatch.setattr(storage, "_copy_fd", meddling)
    assert storage.get(source, tmp_path / "ev" / "copy.fits") is None
    assert (tmp_path / "ev" / "copy.fits").read_bytes() == b"a" * 100


def test_the_record_is_bounded_and_keeps_the_sources_used_last(tmp_path, hashed, monkeypatch):
    monkeypatch.setattr(event_module, "_COPIED_MAX", 4)
    sources = []
    for k in range(12):
        sources.append(tmp_path / f"{k}.fits")
        sources[-1].write_bytes(b"x" * (100 + k))
        ev = Event(tmp_path / f"S{k}")
        _copy(sources[-1], ev)
        ev.sha256("lvc_skymap.fits")
        if k >= 1:  # the first source again each time: kept as used last
            again = Event(tmp_path / f"A{k}")
            _copy(sources[0], again)
            again.sha256("lvc_skymap.fits")
        assert len(event_module._COPIED) <= 4
    assert hashed.count("lvc_skymap.fits") == 12


def test_small_copies_are_not_recorded(tmp_path, hashed, monkeypatch):
    monkeypatch.setattr(event_module, "WRITTEN_BYTES_MAX", 64)
    source = tmp_path / "list.json"
    source.write_bytes(b'{"triggers": []}')
    for k in range(2):
        ev = Event(tmp_path / f"S{k}")
        _copy(source, ev, "icecube_neutrino_list.json")
        ev.sha256("icecube_neutrino_list.json")
    assert event_module._COPIED == {} and len(hashed) == 2
