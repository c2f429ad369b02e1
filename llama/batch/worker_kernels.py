"""The Numba kernels forked workers load, loaded once by the fork server instead.

A worker forked from the fork server (`llama.batch.worker_processes`) loaded its
kernels from Numba's cache at its first event: ~17 kernels, 0.24 s of the 0.42 s of
CPU that a realistic first event took against ~0.07 s for the next ones, paid by each
worker. Now a worker records, after its first event, which kernels it holds
(`record_used`), and the fork server of later runs loads those same cache entries
(`load_recorded`) before it forks: every worker starts with them, and the load is
paid once per run. A run whose events run on the threads of ``llama batch``'s own
process does the same before its first event
(`llama.batch.worker_processes.kernels_for_threads`).

The record is one JSON object in ``$XDG_CACHE_HOME/llama`` (`kernels_file`): the
kind of a run -> the kernels its processes held, each as
``module:function:signature``. ``llama batch`` names its run's kind
by its handlers and analysis options (`RUN_VARIABLE`, which the fork server, the
workers and a run on threads inherit); a run of no kind (`run_batch` called
directly) is recorded under ``""``. It answers three questions:

- which kernels a run loads before its events: its kind's (`load_recorded`), so a
  kind not recorded yet loads none (a process records what it holds, loaded kernels
  included, so what a run loads beyond its needs would be recorded as its own); a
  run of no kind loads the union of all kinds (on a developer's machine the union
  was 97 names, 61 still in the cache, where the realistic bench's pipeline uses
  28: ~0.3 s more CPU before the first event, or before the fork server's first
  fork);
- whether a run on threads uses kernels at all (`uses_kernels`: its kind has some),
  so that a pipeline without any (``-f SkymapInfo``) never imports Numba;
- what the machine's runs used, all kinds together.

It keeps the `MAX_RUNS` kinds recorded last, and is written atomically, only when a
process holds a kernel its kind lacks. An unreadable file, or one of another format,
reads as empty (and is replaced at the next record); a home that cannot be written
leaves each run to load its kernels in its events. Earlier versions' records
(``worker-kernels-2.json``: every kernel any process loaded; ``thread-pipelines-1.json``:
the pipelines whose first event on threads loaded kernels) are neither read nor
written: this one answers what they did, and they are left to the versions that
write them.

Only the kernels the events call are recorded: a kernel compiled because another
one being compiled calls it is part of that one's cache entry, and is never loaded
on its own by a worker that finds its caller in the cache (`watch_compiles`).

Only what Numba's cache holds for this machine and this source is loaded: a kernel
edited since, or an entry of another CPU, no longer matches its index key and is
left to the worker (loaded or compiled there, as before). Kernels compiled
``parallel=True`` are never loaded here: loading one starts Numba's thread pool, and
a process with threads must not fork. Anything that goes wrong is swallowed: the
workers then load their kernels themselves.

The recorded kernels are loaded without Numba's registries (`cache_loads_only`):
Numba refreshes its CPU target before every cache load, and the first refresh in a
process imports and installs every typing and lowering registry it has (0.3-0.5 s
of CPU), which only a compile uses; a cached kernel's machine code needs Numba's
runtime and C helpers alone. A compile later in the process (a kernel missing from
the cache) refreshes the target itself, as before.

Examples
--------
>>> from llama.batch.worker_kernels import kernels_file
>>> kernels_file().name
'worker-kernels-by-run-1.json'
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "MAX_RUNS",
    "RUN_VARIABLE",
    "CompileRefused",
    "cache_loads_only",
    "kernels_file",
    "load_recorded",
    "record_used",
    "recorded_kernels",
    "run_kind",
    "used_kernels",
    "uses_kernels",
    "watch_compiles",
]

#: Packages whose modules hold the kernels of the events.
_PACKAGES = ("kernels", "llama")


def kernels_file() -> Path:
    """Where the kernels used are recorded: one JSON object, a run's kind
    (`RUN_VARIABLE`; ``""`` for a run of no kind) -> a list of kernel names.

    The name is the one 24c3a02 gave the per-kind record it kept beside two others,
    in the same format: the kinds it recorded load as before.
    """
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "llama" / "worker-kernels-by-run-1.json"


#: The kind of the run this process serves (its handlers and analysis options, one
#: line of text), set in the environment by ``llama batch`` for the run: the fork
#: server and the workers inherit it, so each records and loads that kind's kernels.
RUN_VARIABLE = "LLAMA_KERNELS_RUN"

#: Kinds of runs kept in `kernels_file`: the ones recorded last.
MAX_RUNS = 32


def run_kind() -> str | None:
    """The kind of run this process serves (`RUN_VARIABLE`), or None."""
    return os.environ.get(RUN_VARIABLE) or None


def _runs() -> dict[str, list[str]]:
    """`kernels_file`'s kinds, in the order recorded (the last one last); empty where
    the file is missing, unreadable or of another format."""
    try:
        known = json.loads(kernels_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict):
        return {}
    return {str(k): [str(n) for n in v] for k, v in known.items() if isinstance(v, list)}


def recorded_kernels(kind: str | None = None) -> list[str]:
    """The kernels recorded for runs of ``kind`` (none for a kind not recorded), or
    for ``kind=None`` those of all kinds together; sorted.

    Examples
    --------
    >>> recorded_kernels("no such kind of run")
    []
    """
    runs = _runs()
    if kind is not None:
        return sorted(runs.get(kind, ()))
    return sorted({name for names in runs.values() for name in names})


def uses_kernels() -> bool:
    """Whether this run's kind (`run_kind`) loaded kernels in an earlier run: then
    `llama.batch.worker_processes.kernels_for_threads` loads them before its run on
    threads. False for a run of no kind: ``llama batch`` always names its run, and
    anything else on threads loads its kernels in its events.
    """
    kind = run_kind()
    return kind is not None and bool(_runs().get(kind))


def _dispatchers():
    """The Numba dispatchers of the imported modules of `_PACKAGES`."""
    from numba.core.dispatcher import Dispatcher

    seen = set()
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in _PACKAGES:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and id(obj) not in seen:
                seen.add(id(obj))
                yield obj


def _serial(dispatcher) -> bool:
    return not dispatcher.targetoptions.get("parallel")


def _cached(dispatcher) -> bool:
    """Whether ``dispatcher`` keeps its overloads in Numba's cache (``cache=True``).

    A kernel without (an ``inline="always"`` helper that Python also calls, say:
    ``kernels.overlap.traversal.new_heap``) has a ``NullCache``, with no index to
    load from: recorded, it made `load_recorded` raise, and so load nothing, in
    every run since (the fork server's and threads' kernels then loaded at the
    first event, with the registries: ~0.75 s of CPU on its critical path).
    """
    return hasattr(dispatcher._cache, "_cache_file")


def _held() -> set[str]:
    """``module:function:signature`` of every kernel this process holds (not the
    ``parallel=True`` ones)."""
    if "numba" not in sys.modules:
        return set()
    return {
        f"{d.py_func.__module__}:{d.py_func.__qualname__}:{sig}"
        for d in _dispatchers()
        if _serial(d) and _cached(d)
        for sig in list(d.overloads)
    }


#: Kernels of `_held` that this process got only as callees of a kernel it compiled.
_callees: set[str] = set()
_watching = False


def watch_compiles() -> None:
    """From now on, tell the kernels this process compiles or loads only because a
    kernel being compiled calls them apart from those its own code calls.

    A kernel compiled afresh (a cache miss: its source edited, say) compiles or loads
    each kernel it calls, which then holds an overload of its own; a worker that finds
    the caller in the cache never needs those, since the caller's entry holds their
    code. Numba announces each compile (its ``numba:compile`` event, never sent for a
    cache hit); what appears during the outermost one, other than the compiled
    kernel's own overloads, is a callee. Called once per worker process, before its
    first event; Numba must be imported already.
    """
    global _watching
    if _watching:
        return
    from numba.core import event

    class _Callees(event.Listener):
        depth, before, own = 0, frozenset(), ""

        def on_start(self, ev) -> None:
            if self.depth == 0:
                self.before = frozenset(_held())
                py_func = ev.data["dispatcher"].py_func
                self.own = f"{py_func.__module__}:{py_func.__qualname__}:"
            self.depth += 1

        def on_end(self, ev) -> None:
            self.depth -= 1
            if self.depth == 0:
                _callees.update(k for k in _held() - self.before if not k.startswith(self.own))

    event.register("numba:compile", _Callees())
    _watching = True


def used_kernels() -> set[str]:
    """``module:function:signature`` of every kernel this process holds (not the
    ``parallel=True`` ones), less those it got only as callees (`watch_compiles`)."""
    return _held() - _callees


def record_used() -> None:
    """Add the kernels this process holds to its run's kind (`run_kind`; ``""`` for
    none) in `kernels_file`, now the kind recorded last (written atomically, only
    when something is new; two workers writing at once may each keep only their
    own: the next run adds the rest)."""
    used = used_kernels()
    if not used:
        return
    from llama.storage import atomic_write_bytes

    kind = run_kind() or ""
    runs = _runs()
    if used <= set(runs.get(kind, ())):
        return
    runs[kind] = sorted(used.union(runs.pop(kind, ())))  # now the last one
    kept = dict(list(runs.items())[-MAX_RUNS:])
    try:
        path = kernels_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(kept, indent=0).encode())
    except OSError:  # a read-only home: the workers load their kernels themselves
        pass


class CompileRefused(RuntimeError):
    """A compile started within `cache_loads_only` (a cache entry that did not load)."""


@contextmanager
def cache_loads_only() -> Iterator[None]:
    """Within: kernels load from Numba's cache without Numba's registries; none compiles.

    Numba's cache load (``load_overload``) refreshes the CPU target first, and the
    first refresh in a process imports and installs every typing and lowering
    registry of Numba (``numba.np.arraymath``, ``linalg``, ... 0.3-0.5 s of CPU): what
    a compile needs, not a cached kernel, whose machine code links only to Numba's
    runtime (NRT) and C helpers. So the runtime is started here (its symbols and
    atomic functions), the hash secrets' symbols set (``numba.cpython.hashing``,
    which the refresh would import), and the target's refresh is a no-op while the
    block runs. A compile within the block (an entry that fails to load) raises
    `CompileRefused` at its start, before any work: it would otherwise run without
    the registries. All under Numba's compiler lock, so that no other thread
    compiles meanwhile; after the block, the first compile or cache load refreshes
    as before.

    In a process of one thread (the fork server), the LLVM lock's callbacks (a
    Numba event per LLVM call, ~8,500 for 28 kernels, listened to only by a
    compile's timers) are also left out within the block: ~0.08 s of CPU.
    """
    import llvmlite.binding as llvm
    import numba.cpython.hashing  # noqa: F401  (its symbols: what a refresh would add)
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target
    from numba.core.runtime import rtsys

    context = cpu_target.target_context
    with global_compiler_lock:
        rtsys.initialize(context)
        lock = getattr(getattr(llvm.ffi, "lib", None), "_lock", None)
        callbacks = getattr(lock, "_cblist", None)
        muted = list(callbacks) if threading.active_count() == 1 and callbacks else []
        for pair in muted:
            lock.unregister(*pair)
        # instance attributes shadow the methods: a cache load refreshes the target
        # (now nothing), a compile refreshes the typing context first (now refused)
        context.refresh = _no_refresh
        context.typing_context.refresh = _refuse_compile
        try:
            yield
        finally:
            del context.refresh
            del context.typing_context.refresh
            for pair in muted:
                lock.register(*pair)


def _no_refresh() -> None:
    """Numba's target refresh, left out by `cache_loads_only`."""


def _refuse_compile() -> None:
    raise CompileRefused("no compile within cache_loads_only")


def load_recorded() -> int:
    """Load the kernels recorded for this run's kind (`recorded_kernels` of
    `run_kind`: the union of all kinds for a run of no kind) from Numba's cache; how
    many were loaded.

    Each recorded signature is loaded only from an entry of the kernel's cache index
    that matches this machine and this source, so nothing is ever compiled here; and
    without Numba's registries (`cache_loads_only`).
    """
    import importlib

    from numba.core.dispatcher import Dispatcher
    from numba.core.registry import cpu_target

    names = recorded_kernels(run_kind())
    wanted: dict[tuple[str, str], set[str]] = {}
    for name in names:
        module, _, rest = str(name).partition(":")
        function, _, signature = rest.partition(":")
        if module.partition(".")[0] not in _PACKAGES:  # only this project's modules
            continue
        wanted.setdefault((module, function), set()).add(signature)
    codegen = cpu_target.target_context.codegen()
    found = []
    for (module, function), signatures in wanted.items():
        try:
            dispatcher = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError):  # renamed or removed since
            continue
        if not isinstance(dispatcher, Dispatcher) or not _serial(dispatcher):
            continue
        if not _cached(dispatcher):  # nothing to load: compiled where it is used
            continue
        cache = dispatcher._cache
        try:
            index = cache._cache_file._load_index()  # {} once the source changed
            found.extend(
                (dispatcher, key[0])
                for key in index
                if str(key[0]) in signatures and key == cache._index_key(key[0], codegen)
            )
        except Exception:  # an internal of Numba's cache: this kernel left to the events
            continue
    if not found:
        return 0
    loaded = 0
    with cache_loads_only():
        for dispatcher, sig in found:
            try:
                dispatcher.compile(sig)  # a cache hit: the entry matches
            except CompileRefused:  # it did not load: left to the events
                continue
            loaded += 1
    return loaded
