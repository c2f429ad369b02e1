"""The fork server's preload leaves numpy.f2py and numpy.testing unimported (SciPy's
array_api_compat names them at import, no event uses them), and they still work when
used (llama.batch.worker_preload.defer_imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_CHECK = """
import json, sys
import llama.batch.worker_preload as preload  # runs the preload, as the fork server does
loaded = sorted(m for m in ("numpy.f2py.crackfortran", "unittest", "numpy.testing._private")
                if m in sys.modules)
import numpy, numpy.testing
numpy.testing.assert_equal(numpy.arange(3), [0, 1, 2])  # used: imported then
from numpy.testing import assert_allclose
import scipy._lib.array_api_compat.numpy as xp
print(json.dumps({"loaded": loaded, "works": "numpy.testing._private" in sys.modules,
                  "f2py": hasattr(numpy.f2py, "run_main"), "same": xp.testing is numpy.testing,
                  "import": assert_allclose.__module__}))
"""


def test_preload_defers_numpy_submodules_that_still_work_when_used():
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {
        "loaded": [],
        "works": True,
        "f2py": True,
        "same": True,
        "import": "numpy.testing._private.utils",
    }


def test_defer_imports_skips_imported_and_missing_names():
    code = (
        "import sys, json; from llama.batch.worker_preload import defer_imports; "
        "import json.decoder; "
        "print(defer_imports(('json.decoder', 'no_such_pkg_here.x', 'json.tool')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.replace("'", '"')) == ["json.tool"]
