"""File handlers: the unit of computation of LLAMA, and the registry that names them.

A file handler is a class with a ``FILENAME``, its ``DEPENDENCIES`` (other handler
classes: the edges of the DAG) and a ``generate`` step that reads the dependency files
and writes its own. Handlers without dependencies are *inputs*: made by hand, by an
alert listener, or in batch runs by ``--get``.

Examples
--------
>>> from llama.handler import FileHandler, HandlerRegistry
>>> demo = HandlerRegistry()
>>> class Hello(FileHandler, registry=demo):
...     FILENAME = "hello.txt"
>>> class Shout(FileHandler, registry=demo):
...     FILENAME = "shout.txt"
...     DEPENDENCIES = (Hello,)
...     def generate(self, out):
...         out.write_text(self.read_text(Hello).upper())
>>> demo.check()
>>> sorted(demo)
['Hello', 'Shout']
"""

from __future__ import annotations

import enum
import hashlib
import json
import json.encoder
import os
import threading
from collections.abc import Iterable
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from llama.event import Event

__all__ = [
    "REGISTRY",
    "DagError",
    "FileHandler",
    "HandlerRegistry",
    "Status",
    "ancestors",
    "topological_order",
]


class Status(enum.StrEnum):
    """State of one handler's file in one event."""

    EXISTS = "EXISTS"
    OBSOLETE = "OBSOLETE"
    VETOED = "VETOED"
    FAILED = "FAILED"
    READY = "READY"
    WAITING = "WAITING"
    NOT_APPLICABLE = "NOT APPLICABLE"

    def __str__(self) -> str:
        return self.value


class DagError(TypeError):
    """The handler graph has a cycle, an unknown dependency or a clash of file names."""


class HandlerRegistry(dict):
    """Handler class name -> class, with checks on the graph they form."""

    def register(self, cls: type[FileHandler]) -> None:
        """Add ``cls`` under its class name (names must be unique)."""
        other = self.get(cls.__name__)
        if other is not None and other is not cls:
            raise DagError(f"two handlers named {cls.__name__}: {other} and {cls}")
        self[cls.__name__] = cls

    def check(self) -> None:
        """Raise `DagError` on unknown dependencies, duplicate files or cycles."""
        owners: dict[str, str] = {}
        for name, cls in self.items():
            for filename in cls.filenames():
                if filename in owners:
                    raise DagError(f"{name} and {owners[filename]} both write {filename}")
                owners[filename] = name
            for dep in cls.DEPENDENCIES:
                if self.get(dep.__name__) is not dep:
                    raise DagError(f"{name} depends on {dep.__name__}, which is not registered")
        topological_order(self.values())

    def resolve(self, names: Iterable[str]) -> list[type[FileHandler]]:
        """Classes for ``names``; an unknown name lists the valid choices."""
        unknown = [n for n in names if n not in self]
        if unknown:
            raise KeyError(
                f"unknown file handler(s): {', '.join(unknown)}; "
                f"valid choices are: {', '.join(sorted(self))}"
            )
        return [self[n] for n in names]


#: The global registry of handler classes (filled by importing ``llama.handlers``).
REGISTRY = HandlerRegistry()


class FileHandler:
    """Base class of all file handlers.

    Subclasses set ``FILENAME`` and ``DEPENDENCIES`` and implement `generate`. Keyword
    ``registry=`` in the class statement picks a registry other than `REGISTRY`
    (tests use their own); ``abstract=True`` registers nothing.
    """

    #: Name of the file this handler makes, inside the event directory.
    FILENAME: ClassVar[str] = ""
    #: Handler classes whose files are read by `generate`.
    DEPENDENCIES: ClassVar[tuple[type[FileHandler], ...]] = ()
    #: Further files written by the same `generate` call (e.g. a PDF beside a PNG).
    ALSO_WRITES: ClassVar[tuple[str, ...]] = ()
    #: Whether generating contacts an outside service (vetoed when ONLINE=false).
    CONTACTS_SERVICE: ClassVar[bool] = False
    #: Seconds after which a generate call counts as failed (None: no limit); see
    #: `time_limit`.
    TIMEOUT_S: ClassVar[float | None] = None
    #: Extra attempts after a failure (with exponential backoff).
    RETRIES: ClassVar[int] = 0
    #: Analysis options (`llama.config.ANALYSIS_OPTIONS` names) that shape the file:
    #: recorded beside it, and a file made under other values counts as obsolete.
    SETTINGS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(
        cls, registry: HandlerRegistry | None = None, abstract: bool = False, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        if not cls.FILENAME or "/" in cls.FILENAME or cls.FILENAME.startswith("."):
            raise DagError(f"{cls.__name__}.FILENAME must be a plain, visible file name")
        (REGISTRY if registry is None else registry).register(cls)

    def __init__(self, event: Event) -> None:
        self.event = event
        #: Temporary paths of `ALSO_WRITES` files, set while `generate` runs.
        self.extra_outputs: dict[str, Path] = {}

    # -- description -------------------------------------------------------------------
    @classmethod
    def filenames(cls) -> tuple[str, ...]:
        """``FILENAME`` followed by ``ALSO_WRITES``."""
        return (cls.FILENAME, *cls.ALSO_WRITES)

    @classmethod
    def settings(cls) -> dict[str, str]:
        """The current values of `SETTINGS` (`llama.config.analysis_fingerprint`)."""
        if not cls.SETTINGS:
            return {}
        from llama.config import analysis_fingerprints

        return analysis_fingerprints(cls.SETTINGS)

    @classmethod
    def is_input(cls) -> bool:
        """Inputs have no dependencies: they are supplied, never generated here."""
        return not cls.DEPENDENCIES

    @classmethod
    def veto_reason(cls, event: Event) -> str | None:
        """Why this handler does not apply to ``event`` now, or None.

        The base rules: the VETOED flag, a retraction notice, and ONLINE=false for
        handlers that contact a service. Subclasses add their own and call super().
        """
        flags = event.flags
        if flags.is_true("VETOED"):
            return "event flag VETOED=true"
        if cls.CONTACTS_SERVICE and not flags.is_true("ONLINE"):
            return "ONLINE=false and this handler contacts an outside service"
        if event.is_retracted() and cls.FILENAME != "lvc_retraction.xml":
            return "the GW alert was retracted"
        return None

    @classmethod
    def time_limit(cls, event: Event) -> float | None:
        """`TIMEOUT_S` for generating in ``event`` now. A limited call runs on a
        watchdog thread (`llama.event`), ~0.06 ms of CPU per hand-over: a handler
        whose generate only contacts a service sometimes returns None when it will not."""
        return cls.TIMEOUT_S

    @classmethod
    def record(cls, event: Event) -> dict[str, Any]:
        """Scalar results of this handler's file for the batch results Dataset."""
        return {}

    # -- work --------------------------------------------------------------------------
    def generate(self, out: Path) -> None:
        """Write this handler's file to ``out`` (a temporary path; renamed on success)."""
        raise NotImplementedError(
            f"{type(self).__name__} is an input: supply {self.FILENAME} with --get or by hand"
        )

    # helpers for subclasses
    def dep_path(self, dep: type[FileHandler]) -> Path:
        """Path of a dependency's file in this event."""
        return self.event.path(dep.FILENAME)

    def read_text(self, dep: type[FileHandler]) -> str:
        return self.dep_path(dep).read_text()

    def read_json(self, dep: type[FileHandler]) -> Any:
        """A dependency's JSON file; a damaged one fails with a message naming it.
        Its bytes through `Event.read_bytes`: those its handler wrote, where the file is
        unchanged since, are not read again."""
        data = self.event.read_bytes(dep.FILENAME)
        try:
            return json.loads(data)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{dep.FILENAME} is not valid JSON ({err.msg} at line {err.lineno}, "
                f"column {err.colno}): correct or remove the file"
            ) from None


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON (handlers use it for their ``out`` path), laid out by
    `indented_json`: the top level and containers of containers indented, each
    container of plain values (a trigger, a list of numbers) on one line."""
    # one string, one write; its ASCII bytes through the descriptor: open()'s text and
    # buffer layers cost ~20 us a file, more than writing a small one
    text = (indented_json(obj) + "\n").encode()
    data = memoryview(text)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        while data:  # a regular file takes it in one write but for a full disk
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    note_written(path, text)


#: Containers nested deeper than this are written on one line (a circular one is
#: then refused by the C encoder, as json.dumps refuses it).
_INDENT_LEVELS = 16
_NESTED = (dict, list, tuple)
#: exact types that are never containers (the common values: one set lookup each)
_PLAIN = frozenset((str, float, int, bool, type(None)))
_encode_str = json.encoder.encode_basestring_ascii  # json.dumps' own (C), ASCII output


def _holds_containers(values: Iterable[Any]) -> bool:
    # NumPy arrays count as the lists they are written as
    return any(
        type(v) not in _PLAIN and (isinstance(v, _NESTED) or getattr(v, "ndim", 0) > 0)
        for v in values
    )


def indented_json(obj: Any) -> str:
    """``obj`` as JSON text, indented where that helps a reader: a non-empty dict or
    list at the top level, or one holding another dict or list (or a NumPy array), is
    laid out as ``json.dumps(obj, indent=2)`` lays it out (a member a line, two spaces
    a level); any other value, a dict or list of plain values included, is
    ``json.dumps(value)``: one line, ``", "`` and ``": "`` between members.

    Why: json.dumps with an indent runs the pure-Python encoder, ~1.6x the time of
    this on the files of a realistic event (its significance file's ~24 triggers,
    options and constants are one-line dicts here, each one call of the C encoder).
    Most of what is left is float repr (~250 floats a significance file).

    The values are json.dumps' own (the same encoders: floats by float.__repr__, NaN
    and Infinity allowed, ASCII strings), so they read back exactly as before; the
    text depends only on ``obj``, so the same command writes the same bytes run to
    run. A top-level dict of plain values (p_astro, distances) is json.dumps(indent=2)'s
    very text. NumPy scalars and arrays are written as their ``tolist()``. A dict
    with a key that is not a string is written on one line (json.dumps converts such
    keys), as is anything nested deeper than 16 levels.

    Examples
    --------
    >>> print(indented_json({"outputs": {"rows": [{"a": 1.5, "b": None}, {"a": 2}],
    ...                      "n": 2, "names": ["x", "y"]}, "empty": {}}))
    {
      "outputs": {
        "rows": [
          {"a": 1.5, "b": null},
          {"a": 2}
        ],
        "n": 2,
        "names": ["x", "y"]
      },
      "empty": {}
    }
    >>> print(indented_json({"BBH": 0.97, "Terrestrial": 0.03}))
    {
      "BBH": 0.97,
      "Terrestrial": 0.03
    }
    """
    # one C encoder per file for its one-line parts: a fresh one, so that its markers
    # catch a circular container as json.dumps' do
    if c_make_encoder is None:  # an interpreter without the C encoder
        one_line = json.JSONEncoder(default=_json_default).encode
    else:
        encoder = c_make_encoder(
            {}, _json_default, _encode_str, None, ": ", ", ", False, False, True
        )

        def one_line(value: Any) -> str:
            if type(value) is str:
                return _encode_str(value)
            return "".join(encoder(value, 0))

    def text(obj: Any, level: int) -> str:
        if level < _INDENT_LEVELS:
            if isinstance(obj, dict):
                if (
                    obj
                    and (level == 0 or _holds_containers(obj.values()))
                    and all(type(k) is str for k in obj)
                ):
                    pad = "\n" + "  " * (level + 1)
                    return (
                        "{"
                        + ",".join(
                            f"{pad}{_encode_str(k)}: {text(v, level + 1)}" for k, v in obj.items()
                        )
                        + "\n"
                        + "  " * level
                        + "}"
                    )
            elif isinstance(obj, (list, tuple)):
                if obj and (level == 0 or _holds_containers(obj)):
                    pad = "\n" + "  " * (level + 1)
                    return (
                        "["
                        + ",".join(f"{pad}{text(v, level + 1)}" for v in obj)
                        + "\n"
                        + "  " * level
                        + "]"
                    )
            elif type(obj) not in _PLAIN and getattr(obj, "ndim", 0) > 0:
                return text(obj.tolist(), level)
        return one_line(obj)

    return text(obj, 0)


#: sha256 of files just written whole by a handler (path -> (size, hex digest, the
#: bytes of a small file or None)), taken by the event for the file's metadata
#: (`written_record`) instead of reading it back.
_WRITTEN: dict[str, tuple[int, str, bytes | None]] = {}
_WRITTEN_LOCK = threading.Lock()
#: Entries kept at most: one is left behind only where generate failed after a write.
_WRITTEN_MAX = 64
#: Files up to this size keep their bytes in the record too: the event keeps them for
#: the readers that follow (its dependants, the batch record; `Event.read_bytes`).
WRITTEN_BYTES_MAX = 64 << 10


def note_written(path: str | os.PathLike, data: bytes, sha256: str | None = None) -> None:
    """Record that ``path`` (a handler's output) now holds exactly ``data`` (whose
    sha256 ``sha256`` is, when the caller has it already).

    The event then takes the file's checksum from these bytes instead of reading the
    file back (`llama.event.Event.generate`): a sky map's HDF5 copy is ~0.8 MB, which
    its handler holds after writing it (`llama.science.skymap.write_hdf5`). Call it
    only after the last write to ``path``; a size that differs from the file's at the
    check falls back to reading the file.

    Examples
    --------
    >>> note_written("/tmp/x.json", b"{}")
    >>> written_record("/tmp/x.json", 2) == (hashlib.sha256(b"{}").hexdigest(), b"{}")
    True
    >>> written_record("/tmp/x.json", 2) is None  # taken once
    True
    """
    small = data if len(data) <= WRITTEN_BYTES_MAX else None
    entry = (len(data), sha256 or hashlib.sha256(data).hexdigest(), small)
    with _WRITTEN_LOCK:
        while len(_WRITTEN) >= _WRITTEN_MAX:
            del _WRITTEN[next(iter(_WRITTEN))]
        _WRITTEN[os.fspath(path)] = entry


def written_record(path: str | os.PathLike, size: int) -> tuple[str, bytes | None] | None:
    """(sha256, the bytes where the file is small, else None) as `note_written`
    recorded them for ``path`` (removed from the record) when its size is ``size``,
    else None."""
    with _WRITTEN_LOCK:
        entry = _WRITTEN.pop(os.fspath(path), None)
    return entry[1:] if entry is not None and entry[0] == size else None


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, without importing numpy here
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def ancestors(classes: Iterable[type[FileHandler]]) -> set[type[FileHandler]]:
    """Every handler that ``classes`` depend on, directly or not (excluding themselves)."""
    seen: set[type[FileHandler]] = set()
    stack = [dep for cls in classes for dep in cls.DEPENDENCIES]
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.add(cls)
            stack.extend(cls.DEPENDENCIES)
    return seen


def topological_order(classes: Iterable[type[FileHandler]]) -> list[type[FileHandler]]:
    """Order ``classes`` so that each comes after its dependencies (stable by name).

    Raises
    ------
    DagError
        If the dependencies form a cycle.
    """
    pending = sorted(set(classes), key=lambda c: c.__name__)
    chosen = set(pending)
    order: list[type[FileHandler]] = []
    state: dict[type, int] = {}  # 1: visiting, 2: done

    def visit(cls: type[FileHandler], path: tuple[str, ...]) -> None:
        mark = state.get(cls)
        if mark == 2:
            return
        if mark == 1:
            raise DagError("dependency cycle: " + " -> ".join((*path, cls.__name__)))
        state[cls] = 1
        for dep in cls.DEPENDENCIES:
            if dep in chosen:
                visit(dep, (*path, cls.__name__))
        state[cls] = 2
        order.append(cls)

    for cls in pending:
        visit(cls, ())
    return order
