"""The Numba kernels forked workers load, loaded once by the fork server instead.

A worker forked from the fork server (`llama.batch.worker_processes`) loaded its
kernels from Numba's cache at its first event: ~17 kernels, 0.24 s of the 0.42 s of
CPU that a realistic first event took against ~0.07 s for the next ones, paid by each
worker. Now a worker records, after its first event, which kernels it holds
(`record_used`, in ``$XDG_CACHE_HOME/llama/worker-kernels.json``), and the fork
server of later runs loads those same cache entries (`load_recorded`) before it
forks: every worker starts with them, and the load is paid once per run.

Only what Numba's cache holds for this machine and this source is loaded: a kernel
edited since, or an entry of another CPU, no longer matches its index key and is
left to the worker (loaded or compiled there, as before). Kernels compiled
``parallel=True`` are never loaded here: loading one starts Numba's thread pool, and
a process with threads must not fork. Anything that goes wrong is swallowed: the
workers then load their kernels themselves.

Examples
--------
>>> from llama.batch.worker_kernels import kernels_file
>>> kernels_file().name
'worker-kernels.json'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["kernels_file", "load_recorded", "record_used", "used_kernels"]

#: Packages whose modules hold the kernels of the events.
_PACKAGES = ("kernels", "llama")


def kernels_file() -> Path:
    """Where the kernels used by workers are recorded (one JSON list of names)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "llama" / "worker-kernels.json"


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


def used_kernels() -> set[str]:
    """``module:function:signature`` of every kernel this process holds (not the
    ``parallel=True`` ones)."""
    if "numba" not in sys.modules:
        return set()
    return {
        f"{d.py_func.__module__}:{d.py_func.__qualname__}:{sig}"
        for d in _dispatchers()
        if _serial(d)
        for sig in list(d.overloads)
    }


def record_used() -> None:
    """Add the kernels this process holds to `kernels_file` (written atomically, only
    when something is new; two workers writing at once may each keep only their own:
    the next run adds the rest)."""
    used = used_kernels()
    if not used:
        return
    path = kernels_file()
    try:
        known = set(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        known = set()
    if used <= known:
        return
    from llama.storage import atomic_write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(sorted(known | used), indent=0).encode())
    except OSError:  # a read-only home: the workers load their kernels themselves
        pass


def load_recorded() -> int:
    """Load the kernels of `kernels_file` from Numba's cache; how many were loaded.

    Each recorded signature is loaded only from an entry of the kernel's cache index
    that matches this machine and this source, so nothing is ever compiled here.
    """
    import importlib

    from numba.core.dispatcher import Dispatcher
    from numba.core.registry import cpu_target

    try:
        names = json.loads(kernels_file().read_text())
    except (OSError, ValueError):
        return 0
    wanted: dict[tuple[str, str], set[str]] = {}
    for name in names if isinstance(names, list) else []:
        module, _, rest = str(name).partition(":")
        function, _, signature = rest.partition(":")
        if module.partition(".")[0] not in _PACKAGES:  # only this project's modules
            continue
        wanted.setdefault((module, function), set()).add(signature)
    codegen = cpu_target.target_context.codegen()
    loaded = 0
    for (module, function), signatures in wanted.items():
        try:
            dispatcher = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError):  # renamed or removed since
            continue
        if not isinstance(dispatcher, Dispatcher) or not _serial(dispatcher):
            continue
        cache = dispatcher._cache
        for key in cache._cache_file._load_index():  # {} once the source changed
            sig = key[0]
            if str(sig) in signatures and key == cache._index_key(sig, codegen):
                dispatcher.compile(sig)  # a cache hit: the entry matches
                loaded += 1
    return loaded
