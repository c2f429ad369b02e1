"""A generated file's checksum from the bytes its handler wrote (llama.handler.note_written),
not from reading the file back: the same sha256 in its metadata as a read gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llama import event as event_module
from llama.event import Event, sha256_file
from llama.handler import FileHandler, HandlerRegistry, note_written, write_json, written_record

REG = HandlerRegistry()


class Seed(FileHandler, registry=REG):
    FILENAME = "seed.json"


class Written(FileHandler, registry=REG):
    """Writes with write_json: its bytes are recorded."""

    FILENAME = "written.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        write_json(out, {"value": 2 * self.read_json(Seed)["value"], "text": "é"})


class Changed(FileHandler, registry=REG):
    """Records bytes, then changes the file (against the rule): the size differs, so
    the event reads the file."""

    FILENAME = "changed.txt"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        out.write_bytes(b"first")
        note_written(out, b"first")
        out.write_bytes(b"second, longer")


class Plain(FileHandler, registry=REG):
    """Records nothing: read back as before."""

    FILENAME = "plain.txt"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        out.write_text("plain")


def _event(tmp_path) -> Event:
    ev = Event(tmp_path / "S1")
    (ev.path("seed.json")).write_text('{"value": 3}')
    return ev


def _rider(ev: Event, name: str) -> dict:
    return json.loads((ev.directory / f".{name}.meta.json").read_text())


@pytest.mark.parametrize("handler", [Written, Changed, Plain])
def test_the_metadata_holds_the_files_own_sha256(tmp_path, handler):
    ev = _event(tmp_path)
    ev.generate(handler)
    path = ev.path(handler.FILENAME)
    assert _rider(ev, handler.FILENAME)["sha256"] == sha256_file(path)
    assert ev.status(handler) == "EXISTS"


def test_a_recorded_file_is_not_read_back(tmp_path, monkeypatch):
    ev = _event(tmp_path)
    assert ev.sha256("seed.json")  # the input hashed first (it has no metadata)
    read = []
    monkeypatch.setattr(event_module, "sha256_file", lambda p: read.append(p) or sha256_file(p))
    ev.generate(Written)
    assert read == []  # its input's checksum from the event's memo, its own recorded
    ev.generate(Plain)
    assert [Path(p).name.split(".tmp-")[0] for p in read] == [".plain.txt"]
    ev.generate(Changed)  # recorded, but not what the file holds: read
    assert len(read) == 2


def test_a_record_is_taken_once_and_only_at_its_size(tmp_path):
    path = tmp_path / "f.bin"
    note_written(path, b"abc")
    assert written_record(path, 4) is None  # another size: no digest (and taken)
    assert written_record(path, 3) is None
    note_written(str(path), b"abc")
    assert written_record(path, 3)[0] == sha256_file(_write(path, b"abc"))


def test_records_left_behind_are_bounded(tmp_path):
    from llama import handler

    for k in range(3 * handler._WRITTEN_MAX):
        note_written(tmp_path / f"{k}", b"x")
    assert len(handler._WRITTEN) <= handler._WRITTEN_MAX
    assert written_record(tmp_path / f"{3 * handler._WRITTEN_MAX - 1}", 1) is not None


def test_the_sky_maps_copy_gets_the_checksum_of_its_bytes(tmp_path):
    bayestar = Path("/work/shared/data/bayestar/bns-0.fits")
    if not bayestar.exists():
        pytest.skip("no BAYESTAR maps on this machine")
    from llama.handlers import gw

    ev = Event(tmp_path / "S2")
    ev.path("lvc_skymap.fits").write_bytes(bayestar.read_bytes())
    ev.generate(gw.LvcSkymapHdf5)
    hdf5 = ev.path("lvc_skymap.hdf5")
    assert _rider(ev, "lvc_skymap.hdf5")["sha256"] == sha256_file(hdf5)
    assert ev.status(gw.LvcSkymapHdf5) == "EXISTS"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_an_input_is_read_once_for_its_checksum_and_its_handler(tmp_path, monkeypatch):
    """Event.read_bytes gives the bytes the checksum read (the same object), once, and
    reads the file where it changed since or nothing was kept. (Files over
    WRITTEN_BYTES_MAX: the event keeps a small file's bytes itself, test_event_known_files.)"""
    monkeypatch.setattr(event_module, "WRITTEN_BYTES_MAX", 8)
    ev = _event(tmp_path)
    path = ev.path("seed.json")
    ev.sha256("seed.json")
    kept = event_module._HASHED[str(path)][2]
    assert ev.read_bytes("seed.json") is kept
    assert str(path) not in event_module._HASHED  # taken once
    assert ev.read_bytes("seed.json") == path.read_bytes()  # read from the file

    other = Event(tmp_path / "S3")
    other.path("seed.json").write_text('{"value": 3}')
    other.sha256("seed.json")
    other.path("seed.json").write_text('{"value": 44}')  # changed: size and mtime
    assert other.read_bytes("seed.json") == b'{"value": 44}'


def test_the_kept_bytes_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(event_module, "WRITTEN_BYTES_MAX", 8)
    for k in range(3 * event_module._HASHED_MAX):
        ev = Event(tmp_path / f"E{k}")
        ev.path("seed.json").write_text('{"value": 1}')
        ev.sha256("seed.json")
    assert len(event_module._HASHED) <= event_module._HASHED_MAX


def test_a_sky_map_copy_made_from_the_bytes_hashed_is_the_one_from_the_file(tmp_path):
    bayestar = Path("/work/shared/data/bayestar/bns-0.fits")
    if not bayestar.exists():
        pytest.skip("no BAYESTAR maps on this machine")
    from llama.handlers import gw
    from llama.science.skymap import read_hdf5, read_sky_map

    ev = Event(tmp_path / "S4")
    ev.path("lvc_skymap.fits").write_bytes(bayestar.read_bytes())
    ev.generate(gw.LvcSkymapHdf5)
    assert str(ev.path("lvc_skymap.fits")) not in event_module._HASHED  # taken
    got, want = read_hdf5(ev.path("lvc_skymap.hdf5")), read_sky_map(bayestar)
    for name in ("uniq", "probdensity", "distmu", "distsigma", "distnorm"):
        assert np.array_equal(getattr(got, name), getattr(want, name))
    assert got.meta == want.meta


def test_a_broken_input_is_still_named_in_the_error(tmp_path):
    from llama.event import HandlerFailed
    from llama.handlers import gw

    ev = Event(tmp_path / "S5")
    ev.path("lvc_skymap.fits").write_bytes(b"not a FITS file")
    with pytest.raises(HandlerFailed, match="lvc_skymap.fits"):
        ev.generate(gw.LvcSkymapHdf5)
