"""Recorded kernels loaded without Numba's registries (`cache_loads_only`), in the fork
server and before a run on threads (`kernels_for_threads`).

Each check runs in a fresh Python process (as a fork server and a ``llama batch``
process are), with a cache folder of the test's own (``XDG_CACHE_HOME``) and Numba's
real cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llama.batch.worker_kernels import RUN_VARIABLE


def _no_kind() -> dict[str, str]:
    """This process's environment less a kind of run (`RUN_VARIABLE`)."""
    return {k: v for k, v in os.environ.items() if k != RUN_VARIABLE}


_RECORD = """
from kernels.healpix import npix_of
from llama.batch.worker_kernels import record_used
assert npix_of(3) == 12 * 4**3
record_used()
"""

# counts the target's registry loads: what a full refresh does, and the cost avoided
_COUNT_REGISTRY_LOADS = """
import json, sys, threading
import llvmlite.binding as llvm
from numba.core.registry import cpu_target
context = cpu_target.target_context
calls = []
load = context.load_additional_registries
def counted():
    calls.append(1)
    return load()
context.load_additional_registries = counted
callbacks = list(llvm.ffi.lib._lock._cblist)
"""

_LOAD_THEN_COMPILE = (
    _COUNT_REGISTRY_LOADS
    + """
from kernels.healpix import npix_of
from llama.batch.worker_kernels import load_recorded
loaded = load_recorded()
seen = {"loaded": loaded, "held": len(npix_of.overloads), "registry_loads": len(calls),
        "misses": sum(npix_of.stats.cache_misses.values()),
        "callbacks_back": list(llvm.ffi.lib._lock._cblist) == callbacks,
        "refresh_back": "refresh" not in vars(context)
                        and "refresh" not in vars(context.typing_context),
        "value": npix_of(5), "threads": threading.active_count()}
import numba, numpy as np
@numba.njit
def fresh(a):  # compiled here: needs the registries (np.sum, np.sort)
    return np.sum(np.sort(a)[:2])
seen["fresh"] = float(fresh(np.array([3.0, 1.0, 2.0])))
seen["registry_loads_after"] = len(calls)
print(json.dumps(seen))
"""
)


def _python(code: str, cache: Path, *args: str, **env: str) -> str:
    env = {**_no_kind(), "XDG_CACHE_HOME": str(cache), "NUMBA_NUM_THREADS": "1", **env}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_recorded_kernels_load_without_the_registries_and_a_later_compile_has_them(tmp_path):
    _python(_RECORD, tmp_path)
    seen = json.loads(_python(_LOAD_THEN_COMPILE, tmp_path))
    assert seen["loaded"] >= 1 and seen["held"] == 1 and seen["misses"] == 0
    assert seen["registry_loads"] == 0  # the load itself never loaded them
    assert seen["value"] == 12 * 4**5 and seen["threads"] == 1
    # Numba as it was: its lock's callbacks and refresh methods back in place
    assert seen["callbacks_back"] and seen["refresh_back"]
    # a compile afterwards refreshes the target itself, and compiles right
    assert seen["fresh"] == 3.0 and seen["registry_loads_after"] >= 1


_REFUSED = (
    _COUNT_REGISTRY_LOADS
    + """
import numba, numpy as np
from llama.batch.worker_kernels import CompileRefused, cache_loads_only
@numba.njit
def f(a):
    return np.sum(a) + 1.0
try:
    with cache_loads_only():
        f(np.ones(3))
except CompileRefused:
    refused = True
else:
    refused = False
print(json.dumps({"refused": refused, "registry_loads": len(calls),
                  "after": float(f(np.ones(3))), "held": len(f.overloads)}))
"""
)


def test_a_compile_within_cache_loads_only_is_refused_then_runs_after_it(tmp_path):
    seen = json.loads(_python(_REFUSED, tmp_path))
    assert seen["refused"]
    assert seen["after"] == 4.0 and seen["held"] == 1  # compiled, with the registries


_THREADS = """
import json, os, sys
from llama.batch import worker_processes
from llama.batch.worker_kernels import RUN_VARIABLE, kernels_file, recorded_kernels
os.environ[RUN_VARIABLE] = "Coinc,Map"  # the kind the record holds kernels for
previous = worker_processes.kernels_for_threads()
from kernels.healpix import npix_of, nside_of  # noqa
seen = {"previous": previous, "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
        "held_before_call": len(npix_of.overloads)}
import numba
seen["config_threads"] = numba.config.NUMBA_NUM_THREADS
worker_processes.restore_environment(previous)
seen["restored"] = os.environ.get("NUMBA_NUM_THREADS")
assert nside_of(3) == 8  # a kernel the record does not hold: loaded by the event
worker_processes.after_event()  # the first event on the run's threads: recorded
seen["recorded"] = recorded_kernels("Coinc,Map")
seen["kinds"] = list(json.loads(kernels_file().read_text()))
print(json.dumps(seen))
"""


def _threads_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in _no_kind().items() if k != "NUMBA_NUM_THREADS"}
    return {**env, "XDG_CACHE_HOME": str(tmp_path)}


def test_a_run_on_threads_loads_the_recorded_kernels_first_and_records_new_ones(tmp_path):
    _python(_RECORD, tmp_path, **{RUN_VARIABLE: "Coinc,Map"})
    done = subprocess.run([sys.executable, "-c", _THREADS], capture_output=True, text=True,
                          env=_threads_env(tmp_path), timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["held_before_call"] == 1  # loaded before the run, from the record
    # Numba imported with one thread per kernel, as the thread pool would; put back
    assert seen["previous"] == {"NUMBA_NUM_THREADS": None}
    assert seen["numba_threads"] == "1" and seen["config_threads"] == 1
    assert seen["restored"] is None
    recorded = seen["recorded"]
    assert "kernels.healpix:npix_of:(int64,)" in recorded
    assert any(name.startswith("kernels.healpix:nside_of:") for name in recorded)
    assert seen["kinds"] == ["Coinc,Map"]  # recorded under the run's kind alone


_OTHER_KINDS = """
import json, os, sys
from llama.batch import worker_processes
from llama.batch.worker_kernels import RUN_VARIABLE, kernels_file
before = kernels_file().read_text()
seen = {}
for kind in (None, "Map"):  # no kind, and a kind not recorded: nothing loaded first
    os.environ.pop(RUN_VARIABLE, None)
    if kind:
        os.environ[RUN_VARIABLE] = kind
    seen.setdefault("previous", []).append(worker_processes.kernels_for_threads())
    seen.setdefault("numba", []).append("numba" in sys.modules)
    worker_processes.after_event()  # an event that loaded no kernel: nothing recorded
    seen.setdefault("unchanged", []).append(kernels_file().read_text() == before)
os.environ[RUN_VARIABLE] = "Map,Other"
worker_processes.kernels_for_threads()
from kernels.healpix import npix_of
assert npix_of(3) == 12 * 4**3  # its first event loads a kernel: its kind recorded
worker_processes.after_event()
seen["after_kernels"] = json.loads(kernels_file().read_text())
print(json.dumps(seen))
"""


def test_a_kind_without_kernels_imports_no_numba_and_one_with_them_is_recorded(tmp_path):
    (tmp_path / "llama").mkdir()
    record = tmp_path / "llama" / "worker-kernels-by-run-1.json"
    record.write_text(json.dumps({"Coinc,Map": ["kernels.healpix:npix_of:(int64,)"]}))
    done = subprocess.run([sys.executable, "-c", _OTHER_KINDS], capture_output=True,
                          text=True, env=_threads_env(tmp_path), timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["previous"] == [{}, {}] and seen["numba"] == [False, False]
    assert seen["unchanged"] == [True, True]
    assert seen["after_kernels"] == {
        "Coinc,Map": ["kernels.healpix:npix_of:(int64,)"],
        "Map,Other": ["kernels.healpix:npix_of:(int64,)"],
    }
