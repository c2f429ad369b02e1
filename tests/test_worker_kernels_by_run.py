"""Kernels recorded and loaded per kind of run (``LLAMA_KERNELS_RUN``).

Each check runs in fresh Python processes, with a cache folder of the test's own
(``XDG_CACHE_HOME``) and Numba's real cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llama.batch.worker_kernels import RUN_VARIABLE

_RECORD = """
import sys
from kernels.healpix import npix_of, nside_of
from llama.batch.worker_kernels import record_used
assert npix_of(3) == 12 * 4**3
if sys.argv[1:] == ["both"]:
    assert nside_of(3) == 8
record_used()
"""

_LOAD = """
import json
from kernels.healpix import npix_of, nside_of
from llama.batch.worker_kernels import load_recorded
loaded = load_recorded()
print(json.dumps({"loaded": loaded, "npix_of": len(npix_of.overloads),
                  "nside_of": len(nside_of.overloads)}))
"""


def _python(code: str, cache: Path, kind: str | None, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != RUN_VARIABLE}
    env.update({"XDG_CACHE_HOME": str(cache), "NUMBA_NUM_THREADS": "1"})
    if kind is not None:
        env[RUN_VARIABLE] = kind
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_run_loads_the_kernels_of_its_kind_alone(tmp_path):
    _python(_RECORD, tmp_path, "A")  # kind A: npix_of
    _python(_RECORD, tmp_path, "B", "both")  # kind B: npix_of and nside_of
    runs = json.loads((tmp_path / "llama" / "worker-kernels-by-run-1.json").read_text())
    assert runs["A"] == ["kernels.healpix:npix_of:(int64,)"]
    assert sorted(runs["B"]) == [
        "kernels.healpix:npix_of:(int64,)",
        "kernels.healpix:nside_of:(int64,)",
    ]
    # the one list holds both, as before
    every = json.loads((tmp_path / "llama" / "worker-kernels-2.json").read_text())
    assert set(every) == set(runs["B"])

    seen = json.loads(_python(_LOAD, tmp_path, "A"))
    assert seen == {"loaded": 1, "npix_of": 1, "nside_of": 0}  # not B's nside_of
    seen = json.loads(_python(_LOAD, tmp_path, "B"))
    assert seen == {"loaded": 2, "npix_of": 1, "nside_of": 1}
    # a kind not recorded yet loads nothing: what it loaded would be recorded as its own
    seen = json.loads(_python(_LOAD, tmp_path, "C"))
    assert seen == {"loaded": 0, "npix_of": 0, "nside_of": 0}
    # a run of no kind (run_batch called directly) loads the one list
    seen = json.loads(_python(_LOAD, tmp_path, None))
    assert seen == {"loaded": 2, "npix_of": 1, "nside_of": 1}


def test_a_kind_recorded_again_keeps_what_it_had(tmp_path):
    _python(_RECORD, tmp_path, "A", "both")
    _python(_RECORD, tmp_path, "A")  # a later run of A whose first event used less
    runs = json.loads((tmp_path / "llama" / "worker-kernels-by-run-1.json").read_text())
    assert len(runs["A"]) == 2
