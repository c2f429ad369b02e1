"""Kernels recorded by worker processes and loaded by the next fork server.

Each check runs in a fresh Python process (as a fork server and a worker are), with
a cache folder of the test's own (``XDG_CACHE_HOME``) and Numba's real cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llama.batch.worker_kernels import RUN_VARIABLE

_RECORD_FILE = "worker-kernels-by-run-1.json"

_USE_AND_RECORD = """
from kernels.healpix import npix_of
from llama.batch.worker_kernels import record_used
assert npix_of(3) == 12 * 4**3
record_used()
"""

_LOAD = """
import json, threading
from numba.core.registry import cpu_target
cpu_target.target_context.refresh()
from kernels.healpix import npix_of
from llama.batch.worker_kernels import load_recorded
loaded = load_recorded()
held = len(npix_of.overloads)  # before any call
hits = sum(npix_of.stats.cache_hits.values())
misses = sum(npix_of.stats.cache_misses.values())
import numba.np.ufunc.parallel as pool
print(json.dumps({"loaded": loaded, "held": held, "hits": hits, "misses": misses,
                  "threads": threading.active_count(), "pool": bool(pool._is_initialized),
                  "value": npix_of(5), "after": len(npix_of.overloads)}))
"""


def _python(code: str, cache: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != RUN_VARIABLE}  # a run of no kind
    env.update({"XDG_CACHE_HOME": str(cache), "NUMBA_NUM_THREADS": "1"})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_kernel_recorded_by_one_process_is_loaded_from_the_cache_by_the_next(tmp_path):
    _python(_USE_AND_RECORD, tmp_path)
    recorded = json.loads((tmp_path / "llama" / _RECORD_FILE).read_text())
    assert recorded == {"": ["kernels.healpix:npix_of:(int64,)"]}  # a run of no kind
    seen = json.loads(_python(_LOAD, tmp_path))
    assert seen["loaded"] >= 1 and seen["held"] == 1  # there before the first call
    assert seen["hits"] >= 1 and seen["misses"] == 0  # from the cache, nothing compiled
    assert seen["value"] == 12 * 4**5 and seen["after"] == 1
    # a fork server must stay one thread: no kernel started Numba's thread pool
    assert seen["threads"] == 1 and not seen["pool"]


def test_nothing_recorded_or_unknown_names_load_nothing(tmp_path):
    assert json.loads(_python(_LOAD, tmp_path))["loaded"] == 0  # no file yet
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / _RECORD_FILE).write_text(json.dumps({"": [
        "kernels.healpix:no_such_kernel:(int64,)", "no.such.module:f:(int64,)",
        "kernels.healpix:npix_of:(float32,)",  # a signature the cache does not hold
        "this:f:(int64,)",  # not this project's: never imported (it would print)
    ]}))  # fmt: skip
    out = _python(_LOAD, tmp_path)
    assert "Beautiful is better" not in out
    seen = json.loads(out)
    assert seen["loaded"] == 0 and seen["held"] == 0 and seen["misses"] == 0


_WORKER = """
from llama.batch.worker_processes import after_event, worker_process_init
from llama.batch.worker_kernels import kernels_file
after_event()  # not a worker process: nothing recorded
assert not kernels_file().exists()
worker_process_init()
from kernels.healpix import npix_of
npix_of(2)
after_event()  # a worker's first event: its kernels recorded
assert "kernels.healpix:npix_of:(int64,)" in kernels_file().read_text()
kernels_file().unlink()
after_event()  # only after the first one
assert not kernels_file().exists()
"""


def test_a_worker_process_records_its_kernels_after_its_first_event(tmp_path):
    _python(_WORKER, tmp_path)


_CALLEES = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numba
from llama.batch import worker_kernels
from llama.batch.worker_processes import after_event, worker_process_init
worker_kernels._PACKAGES = (*worker_kernels._PACKAGES, "kernels_for_test")
worker_process_init()  # a worker: Numba imported (by the fork server), compiles watched
import kernels_for_test as k
assert k.twice(2.0) == 4.0  # called by the event itself
assert k.outer(3) == 7  # compiles inner as its callee
after_event()
print(json.dumps(worker_kernels.recorded_kernels()))
"""

# cached, as the project's kernels are: a kernel without a cache is never recorded
# (tests/test_worker_kernels_uncached.py)
_KERNELS_FOR_TEST = """
from numba import njit

@njit(cache=True)
def inner(x):
    return 2 * x

@njit(cache=True)
def outer(x):
    return inner(x) + 1

@njit(cache=True)
def twice(x):
    return inner(x)
"""


def test_a_worker_records_the_kernels_it_calls_not_their_callees(tmp_path):
    (tmp_path / "kernels_for_test.py").write_text(_KERNELS_FOR_TEST)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _CALLEES, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    recorded = [name for name in json.loads(done.stdout) if "kernels_for_test" in name]
    # twice compiled inner(float64) too, and outer inner(int64): neither was called
    assert recorded == ["kernels_for_test:outer:(int64,)", "kernels_for_test:twice:(float64,)"]
