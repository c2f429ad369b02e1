"""A kernel without Numba's cache (``cache=False``) among the recorded ones.

Such a kernel (an ``inline="always"`` helper that Python code also calls, say) holds
overloads like any other but has no cache index to load from. Recorded, it made
`load_recorded` raise, and so load none of the others, in every later run. Each
check runs in a fresh Python process, with a cache folder of the test's own and a
kernels module of its own, in Numba's real cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llama.batch.worker_kernels import RUN_VARIABLE

_RECORD_FILE = "worker-kernels-by-run-1.json"

_KERNELS_FOR_TEST = """
from numba import njit

@njit(cache=True)
def cached(x):
    return x + 1

@njit(cache=False)
def uncached(x):
    return x + 2
"""

_RECORD = """
import sys
sys.path.insert(0, sys.argv[1])
import numba
from llama.batch import worker_kernels
worker_kernels._PACKAGES = (*worker_kernels._PACKAGES, "uncached_kernels_for_test")
import uncached_kernels_for_test as k
assert k.cached(1) == 2 and k.uncached(1) == 3
worker_kernels.record_used()
"""

_LOAD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numba
from llama.batch import worker_kernels
worker_kernels._PACKAGES = (*worker_kernels._PACKAGES, "uncached_kernels_for_test")
import uncached_kernels_for_test as k
loaded = worker_kernels.load_recorded()
print(json.dumps({"loaded": loaded, "cached": len(k.cached.overloads),
                  "uncached": len(k.uncached.overloads), "value": k.cached(4)}))
"""


def _python(code: str, folder: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != RUN_VARIABLE}  # a run of no kind
    env.update({"XDG_CACHE_HOME": str(folder), "NUMBA_NUM_THREADS": "1"})
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_kernel_without_a_cache_is_not_recorded(tmp_path):
    (tmp_path / "uncached_kernels_for_test.py").write_text(_KERNELS_FOR_TEST)
    _python(_RECORD, tmp_path)
    recorded = json.loads((tmp_path / "llama" / _RECORD_FILE).read_text())
    assert recorded == {"": ["uncached_kernels_for_test:cached:(int64,)"]}


def test_a_recorded_kernel_without_a_cache_leaves_the_others_loaded(tmp_path):
    (tmp_path / "uncached_kernels_for_test.py").write_text(_KERNELS_FOR_TEST)
    _python(_RECORD, tmp_path)  # fills Numba's cache with cached(int64)
    # a record written before kernels without a cache were left out
    (tmp_path / "llama" / _RECORD_FILE).write_text(json.dumps({"": [
        "uncached_kernels_for_test:cached:(int64,)",
        "uncached_kernels_for_test:uncached:(int64,)",
    ]}))  # fmt: skip
    seen = json.loads(_python(_LOAD, tmp_path))
    assert seen["loaded"] == 1 and seen["cached"] == 1  # there before the first call
    assert seen["uncached"] == 0 and seen["value"] == 5
