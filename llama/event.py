"""The event directory: data files, metadata riders, flags, locks, atomic generation.

One directory per event, named by the event id. Beside each data file ``F`` live
hidden riders:

``.F.meta.json``
    sha256 and stat of ``F``, sha256 of each input it was made from, the package
    version, generation time (UTC, ISO), wall time and the flags in force.
``.F.lock``
    freezes ``F``: never regenerated.
``.F.failed.json``
    the traceback of the last failed attempt (removed on success).

A file is *up to date* when it exists and the checksums of its inputs match those in
its metadata; it is *obsolete* when an input changed. A file with no metadata was put
here from outside: it is an input of this event and up to date.

Examples
--------
>>> import tempfile
>>> from llama.event import Event
>>> ev = Event(tempfile.mkdtemp() + "/S190425z")
>>> ev.eventid
'S190425z'
>>> ev.flags["ROLE"]
'test'
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import queue
import re
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llama.flags import DEFAULT_FLAGS, FlagPreset, validate_flags
from llama.handler import WRITTEN_BYTES_MAX, FileHandler, Status, written_record
from llama.storage import atomic_write_bytes  # event files and riders are written with it

__all__ = [
    "Event",
    "EventError",
    "HandlerFailed",
    "atomic_write_bytes",
    "atomic_write_json",
    "sha256_file",
    "write_rider",
]

FLAGS_FILENAME = "FLAGS.json"
_UNREAD = object()  # "the caller has not read the metadata rider"


class HandlerFailed(RuntimeError):
    """A handler's generate step raised; the original error is the ``__cause__``."""


class EventError(RuntimeError):
    """The event directory cannot be used; the message names the path and the fix.

    Raised for a file where the directory should be, a name longer than the file
    system allows, or a damaged ``FLAGS.json``: problems of one event, which a
    batch reports as that event's failure.
    """


def _short(path: os.PathLike | str, limit: int = 120) -> str:
    # an over-long name is the very problem being reported: show its two ends only
    text = os.fspath(path)
    return text if len(text) <= limit else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def _directory_error(directory: Path, err: OSError) -> EventError:
    """A clear `EventError` for an OSError raised while creating `directory`."""
    where = _short(directory)
    if err.errno == errno.ENAMETOOLONG:
        longest = max((len(os.fsencode(part)) for part in directory.parts), default=0)
        return EventError(
            f"event directory {where}: a name is too long for the file system "
            f"({longest} bytes; the usual limit is 255 per name, 4096 per path): "
            "use shorter parameter values or a shorter --eventdir template"
        )
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        # name the file in the way: the directory itself, or one above it
        for place in (directory, *directory.parents):
            if place.exists() and not place.is_dir():
                what = (
                    f"event directory {where} is a file"
                    if place == directory
                    else f"event directory {where} cannot be created: {_short(place)} is a file"
                )
                return EventError(
                    f"{what}, not a directory: move the file away or choose another --eventdir"
                )
    return EventError(
        f"event directory {where} cannot be created: {err.strerror or err}: check its "
        "permissions and free space, or choose another --eventdir"
    )


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's contents."""
    return _hash_file(path)[0]


def _hash_file(path: str | os.PathLike) -> tuple[str, bytes | None]:
    """(hex sha256, the file's bytes where the first read took them all, else None)."""
    h = hashlib.sha256()
    # os.read on a raw descriptor: open() would add a stat, an isatty ioctl and a seek
    # per file, and every generated file is hashed once. Blocks of 1 MiB: a larger
    # first read (to keep larger files whole) cost a small file 4x, a map 2x (malloc)
    fd = os.open(path, os.O_RDONLY)
    try:
        whole = os.read(fd, 1 << 20)
        h.update(whole)
        while block := os.read(fd, 1 << 20):
            whole = None
            h.update(block)
    finally:
        os.close(fd)
    return h.hexdigest(), whole


#: The bytes of the large files (over `llama.handler.WRITTEN_BYTES_MAX`) the last
#: checksums read, path -> (size, mtime_ns, bytes): a handler reading its input next
#: takes them (`Event.read_bytes`) instead of reading the file again (a sky map: ~0.8 MB
#: hashed, then parsed). A few entries, each taken once, process-wide (an `Event` may
#: live as long as its batch: it keeps only its small files' bytes).
_HASHED: dict[str, tuple[int, int, bytes]] = {}
_HASHED_MAX = 4
_HASHED_LOCK = threading.Lock()


#: sha256 of local files that `llama.storage.get` copied into events, by the source's
#: identity (`llama.storage.CopyStamp.source`): a batch copies each sky map into many
#: events (``--get``), and hashing a ~0.8 MB copy was ~1 ms of each. Filled from the
#: checksum of a copy still as made (`Event.note_copy`); process-wide, the 64 sources
#: used last.
_COPIED: dict[tuple[int, int, int, int], str] = {}
_COPIED_MAX = 64


# temporary names (.F.tmp-*) of _tmp_name and storage.atomic_write_bytes, and (.F.*.part)
# of llama.storage downloads (see Event.remove_leftovers)
_LEFTOVER = re.compile(r"^\..+\.(tmp-[0-9a-f]{12}.*|[0-9a-f]{12}\.part)$", re.DOTALL)


def _tmp_name(path: Path, suffix: str = "") -> Path:
    # same directory (so os.replace is atomic), hidden, unique, and keeping the real
    # suffix so writers that infer the format from it (matplotlib, astropy) still work
    # 12 random hex digits (`_LEFTOVER`); os.urandom is ~20x cheaper than a uuid4 object
    return path.with_name(f".{path.name}.tmp-{os.urandom(6).hex()}{suffix}")


def atomic_write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically.

    ``indent=None`` writes one compact line, for the hidden riders that only programs
    read: Python's JSON encoder runs in C only without an indent, ~10x faster.
    """
    if indent is None:
        text = json.dumps(obj, separators=(",", ":"))
    else:
        text = json.dumps(obj, indent=indent)
    atomic_write_bytes(path, (text + "\n").encode())


def write_rider(path: str | os.PathLike[str], obj: Any) -> None:
    """Write a hidden rider (metadata, batch record) atomically, as one compact JSON line.

    Through :func:`atomic_write_bytes` like every other file of an event: a kill
    leaves the previous rider or the new one, never a mix. Readers still take an
    unreadable rider (cut off by something else, or empty) as "no valid record": the
    file it describes counts as obsolete and is made again, the event as not finished.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), ".x.meta.json")
    >>> write_rider(path, {"sha256": "ab", "size": 2})
    >>> open(path).read()
    '{"sha256":"ab","size":2}\\n'
    """
    atomic_write_bytes(path, (json.dumps(obj, separators=(",", ":")) + "\n").encode())


def _plain(filename: str) -> str:
    if not filename or "/" in filename or filename in (".", ".."):
        raise ValueError(f"not a plain file name inside the event: {filename!r}")
    return filename


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Event:
    """One event directory.

    Parameters
    ----------
    directory
        The event directory; its name is the event id. Created when missing.
    flags
        Flags to write to ``FLAGS.json`` (merged over the existing ones, or over the
        defaults for a new event). None keeps what is there.
    """

    def __init__(self, directory: str | os.PathLike, flags: Mapping[str, str] | None = None):
        self.directory = Path(directory).expanduser()
        self._dir = os.fspath(self.directory)
        if not os.path.isdir(self._dir):  # one stat when it exists (re-runs): no mkdir
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise _directory_error(self.directory, err) from err
        # what the event knows of its files while their size and mtime_ns are those
        # it had then (the checksums' trust): filename -> (size, mtime_ns, sha256 or
        # None, the bytes of a small file or None). The checksum memo, and the bytes a
        # handler wrote, a checksum read or `read_bytes` read, for the readers that follow
        self._known: dict[str, tuple[int, int, str | None, bytes | None]] = {}
        # copies llama.storage.get made, not hashed yet: filename -> its CopyStamp
        self._copies: dict[str, Any] = {}
        # files whose status was just read with no .F.failed.json beside them: their
        # generation need not try to remove one (a system call per handler)
        self._no_failure_record: set[str] = set()
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._flags: FlagPreset | None = None
        if flags is not None:
            self.write_flags(flags)

    def __repr__(self) -> str:
        return f"Event({str(self.directory)!r})"

    @property
    def eventid(self) -> str:
        return self.directory.name

    # -- paths -------------------------------------------------------------------------
    def path(self, filename: str) -> Path:
        """Path of a data file of this event (``filename`` is a plain name)."""
        # memoised: a handler's file is asked for ~3 times per event, and joining a
        # Path costs more than the stat that usually follows
        path = self._paths.get(filename)
        if path is None:
            path = self._paths[filename] = self.directory / _plain(filename)
        return path

    def has(self, filename: str) -> bool:
        """Whether the data file ``filename`` is in the event (one stat)."""
        return os.path.exists(self._file(filename))

    def _file(self, filename: str) -> str:
        # path() as a string: the status and checksum passes stat many files, and
        # building Path objects cost more than the stat calls themselves
        return f"{self._dir}/{_plain(filename)}"

    def meta_path(self, filename: str) -> Path:
        return self.directory / f".{filename}.meta.json"

    def lock_path(self, filename: str) -> Path:
        return self.directory / f".{filename}.lock"

    def failed_path(self, filename: str) -> Path:
        return self.directory / f".{filename}.failed.json"

    # -- flags -------------------------------------------------------------------------
    @property
    def flags(self) -> FlagPreset:
        """The event's flags (``FLAGS.json``; the defaults when there is none)."""
        if self._flags is None:
            p = self.directory / FLAGS_FILENAME
            self._flags = self._read_flags(p) if p.exists() else FlagPreset(DEFAULT_FLAGS)
        return self._flags

    @staticmethod
    def _read_flags(path: Path) -> FlagPreset:
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            return validate_flags(data)
        except (OSError, ValueError) as err:  # FlagError and JSONDecodeError are ValueErrors
            raise EventError(
                f"{_short(path)} is damaged ({err}): fix it, or delete it to get the default "
                "flags (or the --flags given)"
            ) from err

    def write_flags(self, flags: Mapping[str, str]) -> None:
        """Merge ``flags`` over the current ones and write ``FLAGS.json`` atomically."""
        merged = validate_flags({**self.flags, **flags})
        atomic_write_json(self.directory / FLAGS_FILENAME, dict(merged))
        self._flags = merged

    def remove_leftovers(self) -> list[str]:
        """Delete the temporary files a killed run left in this directory.

        The names are those of `_tmp_name` (``.F.tmp-<12 hex>...``) and of
        `llama.storage` downloads (``.F.<12 hex>.part``); a kill between writing and
        renaming leaves them, and nothing ever reads them. Call it only while holding
        the event (the batch runner's lock), since a running writer owns its own.

        Returns
        -------
        list of str
            The names removed.
        """
        removed = []
        try:
            names = os.listdir(self._dir)
        except OSError:
            return removed
        for name in names:
            if _LEFTOVER.match(name):
                try:
                    os.unlink(f"{self._dir}/{name}")
                    removed.append(name)
                except (FileNotFoundError, IsADirectoryError, PermissionError):
                    pass
        return removed

    def is_retracted(self) -> bool:
        """Whether a retraction notice was received for this event."""
        return os.path.exists(f"{self._dir}/lvc_retraction.xml")

    # -- checksums ---------------------------------------------------------------------
    def sha256(self, filename: str) -> str | None:
        """sha256 of a data file, or None if it does not exist.

        Cheap on re-runs: a file whose size and mtime match its own metadata is not
        read again, and results are memoised per (size, mtime); a small file whose
        bytes the event holds at that (size, mtime) is hashed from them.
        """
        return self._sha256(filename, _UNREAD)

    def _sha256(self, filename: str, meta: Any) -> str | None:
        # ``meta``: the rider already read by the caller, or _UNREAD
        try:
            st = os.stat(self._file(filename))
        except FileNotFoundError:
            return None
        key = (st.st_size, st.st_mtime_ns)
        known = self._known.get(filename)
        small = None
        if known is not None and known[:2] == key:
            if known[2] is not None:
                return known[2]
            small = known[3]  # read by read_bytes, not hashed yet
        if meta is _UNREAD:
            meta = self.read_meta(filename)
        if meta and (meta.get("size"), meta.get("mtime_ns")) == key:
            digest = meta["sha256"]
        elif small is not None:
            digest = hashlib.sha256(small).hexdigest()
        elif (copied := self._copied_digest(filename, key)) is not None:
            digest = copied
        else:
            path = self._file(filename)
            digest, data = _hash_file(path)
            copy = self._copies.pop(filename, None)
            if copy is not None and copy.made == key:  # the bytes of its source, as copied
                with _HASHED_LOCK:
                    while len(_COPIED) >= _COPIED_MAX:
                        del _COPIED[next(iter(_COPIED))]
                    _COPIED[copy.source] = digest
            if data is not None and len(data) == st.st_size:
                if len(data) <= WRITTEN_BYTES_MAX:
                    small = data
                else:
                    with _HASHED_LOCK:
                        while len(_HASHED) >= _HASHED_MAX:
                            del _HASHED[next(iter(_HASHED))]
                        _HASHED[path] = (*key, data)
        self._known[filename] = (*key, digest, small)
        return digest

    def note_copy(self, filename: str, copy: Any) -> None:
        """Record that data file ``filename`` was just made by `llama.storage.get` as a
        copy of a local file (``copy``: its `llama.storage.CopyStamp`). Where a copy of
        the same source (the same device, inode, size and mtime_ns throughout) was
        hashed in this process, its checksum is this one's while the file is still at
        the size and mtime_ns it was made with (the checksums' trust); else the first
        checksum taken records it for the copies that follow. Small files (up to
        `llama.handler.WRITTEN_BYTES_MAX`) are not recorded: hashing one costs less."""
        if copy.made[0] > WRITTEN_BYTES_MAX:
            self._copies[filename] = copy

    def _copied_digest(self, filename: str, key: tuple[int, int]) -> str | None:
        copy = self._copies.get(filename)
        if copy is None or copy.made != key:
            return None
        with _HASHED_LOCK:  # the most recently used last: the first to go is the oldest
            digest = _COPIED.pop(copy.source, None)
            if digest is not None:
                _COPIED[copy.source] = digest
        return digest

    def read_bytes(self, filename: str) -> bytes:
        """The bytes of data file ``filename``, not read again where the file's size and
        mtime_ns are still those it had when they were last taken (the checksums'
        trust): a small file's (up to `llama.handler.WRITTEN_BYTES_MAX`) as its handler
        wrote them, its checksum or this event last read them, kept for the event's life (an
        event's JSON files are read by several handlers and its batch record), or a
        larger one's as its checksum just read them (taken once).

        Raises FileNotFoundError for a missing file, as a read does.
        """
        path = self._file(filename)
        st = os.stat(path)
        key = (st.st_size, st.st_mtime_ns)
        known = self._known.get(filename)
        if known is not None and known[:2] == key and known[3] is not None:
            return known[3]
        with _HASHED_LOCK:
            kept = _HASHED.pop(path, None)
        if kept is not None and kept[:2] == key:
            data = kept[2]
        else:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())  # the key of the bytes read, not of the stat
                key = (st.st_size, st.st_mtime_ns)
                data = f.read()
        if len(data) <= WRITTEN_BYTES_MAX and len(data) == key[0]:
            # the checksum stays where it is of these very bytes (the same key)
            digest = known[2] if known is not None and known[:2] == key else None
            self._known[filename] = (*key, digest, data)
        return data

    def read_meta(self, filename: str) -> dict[str, Any] | None:
        """The metadata rider of ``filename`` (None if it was supplied from outside)."""
        try:
            with open(f"{self._dir}/.{filename}.meta.json", "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return {}  # a damaged rider: treat the file as obsolete

    # -- status ------------------------------------------------------------------------
    def status(self, handler: type[FileHandler]) -> Status:
        """The state of ``handler``'s file in this event."""
        if handler.veto_reason(self) is not None:
            return Status.VETOED
        exists = os.path.exists
        if all(exists(self._file(f)) for f in handler.filenames()):
            return self._existing_status(handler)
        if exists(f"{self._dir}/.{handler.FILENAME}.failed.json"):
            return Status.FAILED
        self._no_failure_record.add(handler.FILENAME)
        if handler.is_input():
            return Status.NOT_APPLICABLE
        if all(exists(self._file(d.FILENAME)) for d in handler.DEPENDENCIES):
            return Status.READY
        return Status.WAITING

    def _existing_status(self, handler: type[FileHandler]) -> Status:
        name = handler.FILENAME
        if os.path.exists(f"{self._dir}/.{name}.lock"):
            return Status.EXISTS
        meta = self.read_meta(name)
        if meta is None:
            return Status.EXISTS  # supplied from outside: an input of this event
        recorded = meta.get("inputs")
        if not isinstance(recorded, dict) or self._sha256(name, meta) != meta.get("sha256"):
            return Status.OBSOLETE  # damaged rider, or a run killed mid-rename
        for dep in handler.DEPENDENCIES:
            current = self.sha256(dep.FILENAME)
            if current is not None and current != recorded.get(dep.FILENAME):
                return Status.OBSOLETE
        # made under other analysis options (riders from before settings were
        # recorded have none: they are kept)
        settings = meta.get("settings")
        if handler.SETTINGS and settings is not None and settings != handler.settings():
            return Status.OBSOLETE
        return Status.EXISTS

    def missing_inputs(self, handler: type[FileHandler]) -> list[str]:
        """Dependency files of ``handler`` that are not in the event."""
        return [d.FILENAME for d in handler.DEPENDENCIES if not self.has(d.FILENAME)]

    # -- generation --------------------------------------------------------------------
    def generate(self, handler: type[FileHandler], version: str = "") -> None:
        """Run ``handler``'s generate step atomically and write its metadata.

        Inputs are hashed first; outputs go to temporary names in this directory and
        are renamed into place only on success, each just after its metadata (so a
        kill in between leaves an obsolete file, never one that looks supplied from
        outside). On failure nothing
        under a real name changes and ``.F.failed.json`` records the traceback.

        Raises
        ------
        HandlerFailed
            When generate raised (after ``RETRIES`` extra attempts) or timed out.
        """
        attempts = handler.RETRIES + 1
        for attempt in range(attempts):
            try:
                self._generate_once(handler, version)
                return
            except Exception as err:
                if attempt + 1 < attempts:
                    time.sleep(min(0.5 * 2**attempt, 30.0))
                    continue
                from llama.storage import redact

                self._no_failure_record.discard(handler.FILENAME)
                # blanked before the first write: an exception may quote a URL's token
                atomic_write_json(
                    self.failed_path(handler.FILENAME),
                    {
                        "handler": handler.__name__,
                        "time": _utc_now(),
                        "attempts": attempts,
                        "traceback": redact(traceback.format_exc()),
                    },
                )
                raise HandlerFailed(redact(f"{handler.__name__} failed: {err}")) from err

    def _generate_once(self, handler: type[FileHandler], version: str) -> None:
        inputs = {d.FILENAME: self.sha256(d.FILENAME) for d in handler.DEPENDENCIES}
        settings = handler.settings()  # before generate reads them, like the inputs
        finals = [self.path(f) for f in handler.filenames()]
        tmps = [_tmp_name(p, p.suffix) for p in finals]
        instance = handler(self)
        instance.extra_outputs = dict(zip(handler.ALSO_WRITES, tmps[1:], strict=True))
        start = time.perf_counter()
        renamed = False
        try:
            cpu = _call_with_timeout(
                instance.generate, tmps[0], handler.time_limit(self), handler.__name__
            )
            stats = []
            for tmp in tmps:  # one stat each, kept for the metadata
                try:
                    stats.append(os.stat(tmp))
                except FileNotFoundError:
                    raise RuntimeError(f"{handler.__name__}.generate wrote no {tmp.name}") from None
            wall = time.perf_counter() - start
            for tmp, final, st in zip(tmps, finals, stats, strict=True):
                # metadata describing the new file goes first: if we are killed before
                # the rename, the old file no longer matches it and counts as obsolete,
                # so a generated file can never pass for one supplied from outside
                self._write_meta(final.name, tmp, inputs, version, wall, st, cpu, settings)
                os.replace(tmp, final)
            renamed = True
        finally:
            if not renamed:
                for tmp in tmps:
                    tmp.unlink(missing_ok=True)
        if handler.FILENAME in self._no_failure_record:
            self._no_failure_record.discard(handler.FILENAME)
            return  # status() found no failure record, and only generate writes one
        try:  # the record of an earlier failure, if any (unlink: one call, no stat first)
            os.unlink(f"{self._dir}/.{handler.FILENAME}.failed.json")
        except FileNotFoundError:
            pass

    def _write_meta(
        self,
        filename: str,
        tmp: Path,
        inputs: dict,
        version: str,
        wall: float,
        st=None,
        cpu: float | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        st = os.stat(tmp) if st is None else st  # os.replace keeps size and mtime
        # the bytes generate wrote, where it recorded them (llama.handler.note_written:
        # JSON files, the sky map's copy), else the file read back
        written = written_record(tmp, st.st_size)
        digest = written[0] if written is not None else sha256_file(tmp)
        # its bytes kept for its readers where the handler recorded them (small files)
        small = written[1] if written is not None else None
        self._known[filename] = (st.st_size, st.st_mtime_ns, digest, small)
        write_rider(
            f"{self._dir}/.{filename}.meta.json",
            {
                "sha256": digest,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "inputs": inputs,
                "version": version,
                "generated": _utc_now(),
                "wall_time_s": round(wall, 6),
                # CPU of the thread that ran generate (a busy machine stretches the
                # wall time, not this; kernels' own worker threads are not counted)
                "cpu_time_s": None if cpu is None else round(cpu, 6),
                "flags": dict(self.flags),
                **({"settings": settings} if settings else {}),
            },
        )


def _call_with_timeout(func, arg, timeout_s: float | None, name: str) -> float:
    """``func(arg)``, given up after ``timeout_s``; returns the CPU time [s] of the
    thread that ran it."""
    if timeout_s is None:
        cpu = time.thread_time()
        func(arg)
        return time.thread_time() - cpu
    # a thread cannot be killed: on timeout we stop waiting and the caller discards
    # the temporary output, so a late finish never lands under the real name
    box: dict[str, BaseException] = {}
    spent: list[float] = []
    abandoned = threading.Event()
    done = threading.Event()
    # Numba's thread count is a per-thread setting and a new thread starts at Numba's
    # default (every core): carry the caller's over, so that a worker limited to one
    # thread (llama.batch.schedulers) does not run this handler's kernels on all cores
    numba = sys.modules.get("numba")
    kernel_threads = numba.get_num_threads() if hasattr(numba, "get_num_threads") else None

    def target() -> None:
        try:
            if kernel_threads is not None:
                numba.set_num_threads(kernel_threads)
            cpu = time.thread_time()
            func(arg)
            spent.append(time.thread_time() - cpu)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller
            box["error"] = err
        finally:
            if abandoned.is_set():  # a late finish: remove what it wrote
                Path(arg).unlink(missing_ok=True)
            done.set()

    watchdog = getattr(_WATCHDOGS, "current", None)
    # a forked child inherits the caller's holder but not its thread: make its own
    if watchdog is None or watchdog.pid != os.getpid():
        watchdog = _WATCHDOGS.current = _Watchdog()
    watchdog.jobs.put(target)
    if not done.wait(timeout_s):
        abandoned.set()
        _WATCHDOGS.current = None  # busy with the late call: the next gets a new one
        raise TimeoutError(f"{name} did not finish within {timeout_s} s")
    if "error" in box:
        raise box["error"]
    return spent[0]


class _Watchdog:
    """A daemon thread that runs the generate steps of handlers with a time limit, kept
    for the next one: starting a thread per call cost ~0.27 ms of CPU (~0.9 ms of wall
    time on a busy machine), handing a call to a waiting thread ~0.1 ms.

    One per calling thread (`_WATCHDOGS`: Dask's threads run handlers side by side)
    and process (a forked child has none of its parent's threads). The thread holds
    only the queue: when the calling thread ends, or gives up on a call
    that overran, the holder is collected and the thread ends after its current call
    (a daemon thread, so a call that never returns does not hold up the exit).
    """

    __slots__ = ("jobs", "pid", "__weakref__")

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.pid = os.getpid()
        threading.Thread(
            target=_serve, args=(self.jobs,), daemon=True, name="llama-watchdog"
        ).start()
        weakref.finalize(self, self.jobs.put, None)


def _serve(jobs: queue.SimpleQueue) -> None:
    while (job := jobs.get()) is not None:
        job()
        del job  # drop the finished call's frame (its handler, its arrays) now


_WATCHDOGS = threading.local()
