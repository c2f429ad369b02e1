"""kernels.lean_blas: Numba's BLAS module loaded without scipy.linalg's __init__,
checked in fresh interpreters (the module acts once per process)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import numpy as np
import kernels  # loads the BLAS module alone
from numba import njit
from numba.core.registry import cpu_target

cpu_target.target_context.refresh()  # what the first kernel of a process does
before = "scipy.linalg" in sys.modules


@njit(cache=False)
def dot(a, b):
    return np.dot(a, b)  # BLAS through scipy.linalg.cython_blas's table


a = np.arange(9.0).reshape(3, 3)
b = np.array([1.0, -2.0, 0.5])
ok = bool(np.allclose(dot(a, b), a @ b, rtol=0, atol=1e-12))
import scipy.linalg  # the package, imported later as usual

attached = scipy.linalg.cython_blas is sys.modules["scipy.linalg.cython_blas"]
solved = scipy.linalg.solve(np.diag([2.0, 4.0]), np.array([2.0, 8.0])).tolist()
print(json.dumps({"before": before, "dot": ok, "attached": attached, "solved": solved}))
"""


def _probe(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_numba_runs_blas_without_scipy_linalg_and_a_later_import_is_whole():
    got = _probe(_PROBE)
    assert got["before"] is False  # Numba's registries loaded, scipy.linalg not imported
    assert got["dot"] is True
    assert got["attached"] is True  # scipy.linalg.cython_blas as an attribute, as usual
    assert got["solved"] == [1.0, 2.0]


def test_nothing_done_once_scipy_linalg_is_imported():
    code = (
        "import json, sys, scipy.linalg\n"
        "from kernels.lean_blas import load_blas_alone\n"
        "print(json.dumps({'loaded': load_blas_alone(), "
        "'finders': sum(type(f).__name__ == '_AttachBlas' for f in sys.meta_path)}))\n"
    )
    assert _probe(code) == {"loaded": False, "finders": 0}
