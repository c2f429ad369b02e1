"""Event._known: one per-event store of what the event knows of each file while its
size and mtime_ns are unchanged (its sha256, a small file's bytes), serving both
Event.sha256 and Event.read_bytes; a file changed since is read and hashed again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from llama import event as event_module
from llama.event import Event


@pytest.fixture
def reads(monkeypatch):
    """The data files opened for reading by the event (open and os.open)."""
    seen: list[str] = []

    def counted(path, *args, **kwargs):
        seen.append(os.path.basename(path))
        return open(path, *args, **kwargs)

    os_open = os.open

    def counted_os_open(path, flags, *args, **kwargs):
        if not flags & (os.O_WRONLY | os.O_RDWR):
            seen.append(os.path.basename(path))
        return os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(event_module, "open", counted, raising=False)
    monkeypatch.setattr(event_module.os, "open", counted_os_open)
    return seen


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_small_file_read_is_hashed_from_its_bytes(tmp_path, reads):
    ev = Event(tmp_path / "S1")
    ev.path("a.json").write_bytes(b'{"a": 1}')
    assert ev.read_bytes("a.json") == b'{"a": 1}'
    assert ev.sha256("a.json") == _sha(b'{"a": 1}')
    assert ev.read_bytes("a.json") == b'{"a": 1}'
    assert reads.count("a.json") == 1


def test_a_small_file_hashed_is_read_from_the_event_not_the_process(tmp_path, reads):
    ev = Event(tmp_path / "S2")
    path = ev.path("a.json")
    path.write_bytes(b'{"a": 2}')
    assert ev.sha256("a.json") == _sha(b'{"a": 2}')
    assert str(path) not in event_module._HASHED  # kept by this event, not process-wide
    assert Event(tmp_path / "S2").read_bytes("a.json") == b'{"a": 2}'  # another event reads
    assert ev.read_bytes("a.json") == b'{"a": 2}'
    assert reads.count("a.json") == 2


def test_a_file_changed_since_is_read_and_hashed_again(tmp_path, reads):
    ev = Event(tmp_path / "S3")
    path = ev.path("a.json")
    path.write_bytes(b'{"a": 3}')
    assert ev.read_bytes("a.json") == b'{"a": 3}'
    assert ev.sha256("a.json") == _sha(b'{"a": 3}')
    path.write_bytes(b'{"a": 4}')  # same size
    _touch_later(path)
    assert ev.sha256("a.json") == _sha(b'{"a": 4}')  # hashed from the file
    assert ev.read_bytes("a.json") == b'{"a": 4}'
    path.write_bytes(b'{"a": 50}')  # another size
    assert ev.read_bytes("a.json") == b'{"a": 50}'
    assert ev.sha256("a.json") == _sha(b'{"a": 50}')
    assert reads.count("a.json") == 3  # read, hashed, read; each new content once


def test_a_checksum_is_not_taken_for_other_bytes(tmp_path):
    """read_bytes of a changed file keeps its bytes without the old checksum."""
    ev = Event(tmp_path / "S4")
    path = ev.path("a.json")
    path.write_bytes(b'{"a": 5}')
    assert ev.sha256("a.json") == _sha(b'{"a": 5}')
    path.write_bytes(b'{"a": 6}')
    _touch_later(path)
    assert ev.read_bytes("a.json") == b'{"a": 6}'
    assert ev.sha256("a.json") == _sha(b'{"a": 6}')
