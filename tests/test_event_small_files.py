"""An event's small files (its JSON) read through Event.read_bytes: the bytes a handler
wrote, or the event last read, while the file's size and mtime_ns are unchanged (the
checksums' trust); a file changed since is read again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llama import event as event_module
from llama import handler as handler_module
from llama.event import Event
from llama.handler import FileHandler, HandlerRegistry, write_json

REG = HandlerRegistry()


class Seed(FileHandler, registry=REG):
    FILENAME = "seed.json"


class Doubled(FileHandler, registry=REG):
    FILENAME = "doubled.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        write_json(out, {"value": 2 * self.read_json(Seed)["value"]})


class Quadrupled(FileHandler, registry=REG):
    FILENAME = "quadrupled.json"
    DEPENDENCIES = (Doubled,)

    def generate(self, out: Path) -> None:
        write_json(out, {"value": 2 * self.read_json(Doubled)["value"]})


class Plain(FileHandler, registry=REG):
    """Writes without recording its bytes: read from the file."""

    FILENAME = "plain.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        out.write_text('{"value": 5}')


@pytest.fixture
def opens(monkeypatch):
    """The data files the event opens (not its hidden riders)."""
    seen: list[str] = []

    def counted(path, *args, **kwargs):
        if not os.path.basename(path).startswith("."):
            seen.append(os.path.basename(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(event_module, "open", counted, raising=False)
    return seen


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_written_json_is_not_read_back(tmp_path, opens):
    ev = Event(tmp_path / "S1")
    ev.path("seed.json").write_text('{"value": 21}')
    ev.generate(Doubled)
    ev.generate(Quadrupled)
    assert json.loads(ev.read_bytes("quadrupled.json")) == {"value": 84}
    assert json.loads(ev.read_bytes("doubled.json")) == {"value": 42}
    assert json.loads(ev.read_bytes("seed.json")) == {"value": 21}
    # the input's bytes as its checksum read them, the outputs' as written: no opening
    assert opens == []


def test_a_file_changed_since_is_read_again(tmp_path, opens):
    ev = Event(tmp_path / "S2")
    ev.path("seed.json").write_text('{"value": 21}')
    ev.generate(Doubled)
    path = ev.path("doubled.json")
    text = path.read_text()
    path.write_text(text.replace("42", "43"))  # same size, maybe the same mtime_ns
    _bump_mtime(path)
    assert json.loads(ev.read_bytes("doubled.json")) == {"value": 43}
    path.write_text('{"value": 1000}')  # another size
    assert json.loads(ev.read_bytes("doubled.json")) == {"value": 1000}
    assert json.loads(ev.read_bytes("doubled.json")) == {"value": 1000}  # kept again
    assert opens.count("doubled.json") == 2


def test_an_input_changed_since_is_read_again(tmp_path, opens):
    from llama.handlers.gw import read_skymap_info

    ev = Event(tmp_path / "S3")
    info = {"graceid": "S3", "event_time_iso": "2019-04-25T08:18:05", "far": 1e-9}
    path = ev.path("skymap_info.json")
    path.write_text(json.dumps(info))
    assert read_skymap_info(ev)["far"] == 1e-9
    assert read_skymap_info(ev)["far"] == 1e-9
    assert opens == ["skymap_info.json"]
    path.write_text(json.dumps({**info, "far": 2e-9}))
    _bump_mtime(path)
    assert read_skymap_info(ev)["far"] == 2e-9
    assert opens == ["skymap_info.json"] * 2


def test_a_regenerated_file_not_recorded_is_read(tmp_path, opens):
    ev = Event(tmp_path / "S4")
    ev.path("seed.json").write_text('{"value": 21}')
    ev.generate(Plain)
    assert json.loads(ev.read_bytes("plain.json")) == {"value": 5}
    assert opens.count("plain.json") == 1


def test_large_files_are_not_kept(tmp_path, opens, monkeypatch):
    monkeypatch.setattr(event_module, "WRITTEN_BYTES_MAX", 8)
    monkeypatch.setattr(handler_module, "WRITTEN_BYTES_MAX", 8)
    ev = Event(tmp_path / "S5")
    ev.path("seed.json").write_text('{"value": 21}')
    ev.generate(Doubled)
    for _ in range(2):
        assert json.loads(ev.read_bytes("doubled.json")) == {"value": 42}
        assert json.loads(ev.read_bytes("seed.json")) == {"value": 21}
    # generate took the seed's bytes from its checksum; these reads open each file
    assert opens.count("doubled.json") == 2 and opens.count("seed.json") == 2
    assert all(known[3] is None for known in ev._known.values())  # no bytes kept


def test_a_missing_file_raises(tmp_path):
    ev = Event(tmp_path / "S6")
    with pytest.raises(FileNotFoundError):
        ev.read_bytes("seed.json")
