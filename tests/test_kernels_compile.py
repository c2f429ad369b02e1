"""How the kernels are compiled: every kernel releases the GIL (Dask's threads run while
one computes), concurrent calls from threads give the serial numbers, and each kernel
compiles one specialisation whatever array flavours the callers pass."""

from __future__ import annotations

import importlib
import math
import pkgutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import kernels.overlap

# the kernel modules of this package
MODULES = [
    "kernels.healpix",
    "kernels.odds",
    "kernels.background",
    "kernels.trials",
    "kernels.trial_screen",
    "kernels.density_bounds",
    "kernels.ra_lookup",
] + [f"kernels.overlap.{m.name}" for m in pkgutil.iter_modules(kernels.overlap.__path__)]
DEG = math.pi / 180.0


def dispatchers():
    """(module name, function name, dispatcher) of every jitted function defined in
    :data:`MODULES` (imports of another module's kernels counted there only)."""
    out = []
    for name in MODULES:
        mod = importlib.import_module(name)
        for attr, v in vars(mod).items():
            if isinstance(v, CPUDispatcher) and v.py_func.__module__ == name:
                out.append((name, attr, v))
    return out


def test_every_kernel_releases_the_gil():
    """``nogil=True`` everywhere (functions Numba inlines into their callers are never
    compiled on their own and take their callers' setting)."""
    found = dispatchers()
    assert len(found) > 60  # the scan sees the kernels
    held = [
        f"{m}.{a}"
        for m, a, d in found
        if not d.targetoptions.get("nogil") and d.targetoptions.get("inline") != "always"
    ]
    assert held == [], f"kernels compiled without nogil=True: {held}"


def test_concurrent_calls_from_threads_give_the_serial_numbers():
    """Four threads evaluating neutrinos on one prepared map at once (the kernels run
    truly concurrently without the GIL, each on its own heap) give the numbers of the
    same calls made one after another."""
    from kernels.overlap import prepare_map, psf_overlap_prepared, psf_pair_overlap_prepared

    rng = np.random.default_rng(11)
    uniq = 4 * 4**3 + np.arange(768)
    rho = rng.uniform(0.5, 1.5, 768)
    rho /= np.sum(rho) * (4 * np.pi / 768)
    pm = prepare_map(uniq, rho)
    edges = np.array([-1.0, 0.0, 1.0])
    calls = []
    for _ in range(16):
        n = 6  # below the parallel kernels' threshold: the serial kernels
        ra = rng.uniform(0, 2 * np.pi, n)
        dec = np.arcsin(rng.uniform(-1, 1, n))
        sig = rng.uniform(0.5, 5.0, n) * DEG
        calls.append((ra, dec, sig, rng.uniform(1, 2, (n, 2))))

    def one(c):
        ra, dec, sig, rw = c
        ov = psf_overlap_prepared(pm, ra, dec, sig, rw, edges)
        pr = psf_pair_overlap_prepared(pm, ra[:3], dec[:3], sig[:3], rw[:3], ra[3:], dec[3:], sig[3:], rw[3:], edges)  # fmt: skip
        return np.concatenate([*ov, *pr])

    serial = [one(c) for c in calls]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(one, calls))
    for s, t in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(s, t)


@pytest.mark.parametrize("flavour", ["list", "float32", "strided", "readonly", "int"])
def test_one_specialisation_whatever_the_arrays(flavour):
    """Lists, float32, strided, read-only or integer inputs are converted before the
    kernels see them: each overlap kernel keeps a single compiled signature."""
    from kernels.overlap import prepare_map, psf_overlap_prepared, psf_pair_overlap_prepared

    uniq = 4 + np.arange(12)
    rho = np.full(12, 1 / (4 * np.pi))
    base = np.array([[1.0, 0.2, 0.02], [2.0, -0.3, 0.05], [3.0, 0.1, 0.03]])
    ra, dec, sig = base.T.copy()
    rows = np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 1.0]])
    edges = np.array([-1.0, 0.0, 1.0])
    if flavour == "list":
        ra, dec, sig, rows, edges = ra.tolist(), dec.tolist(), sig.tolist(), rows.tolist(), edges.tolist()  # fmt: skip
    elif flavour == "float32":
        ra, dec, sig, rows = (a.astype(np.float32) for a in (ra, dec, sig, rows))
    elif flavour == "strided":
        ra, dec, sig = base[:, 0], base[:, 1], base[:, 2]
        rows = np.asfortranarray(rows)
    elif flavour == "readonly":
        for a in (ra, dec, sig, rows, edges, rho):
            a.flags.writeable = False
    elif flavour == "int":
        rows = rows.astype(np.int64)
        rho = np.full(12, 1, np.int64)
    pm = prepare_map(uniq, rho)
    psf_overlap_prepared(pm, ra, dec, sig, rows, edges)
    psf_pair_overlap_prepared(pm, ra, dec, sig, rows, ra, dec, sig, rows, edges)
    # the entry points the Python side calls (helpers may serve several array types,
    # and are not compiled at all when their callers load from the cache)
    entry = [
        (m, a, d.signatures)
        for m, a, d in dispatchers()
        if m.startswith("kernels.overlap") and not d.targetoptions.get("no_cpython_wrapper")
    ]
    assert {a for _, a, _ in entry} >= {"overlap_serial", "pair_serial", "prepare_moc_arrays"}
    many = [(m, a, sigs) for m, a, sigs in entry if len(sigs) > 1]
    assert many == [], f"kernels compiled more than once: {many}"


def test_importing_compiles_nothing(tmp_path):
    """Kernels compile on first use, each on its own: importing the kernel modules
    and the science modules that call them compiles nothing and writes nothing to
    the cache (a fresh interpreter, on an empty ``NUMBA_CACHE_DIR``), and a first call
    compiles only the kernel called and what it calls."""
    import os
    import subprocess
    import sys

    code = """
import importlib, pkgutil, sys
import numpy as np
import kernels, kernels.overlap
from numba.core.registry import CPUDispatcher
for m in pkgutil.iter_modules(kernels.__path__):
    importlib.import_module("kernels." + m.name)
for m in pkgutil.iter_modules(kernels.overlap.__path__):
    importlib.import_module("kernels.overlap." + m.name)
for m in ("odds", "background", "pvalue", "fast_trials", "subthreshold"):
    importlib.import_module("llama.science." + m)
def compiled():
    return sorted(
        f"{name}.{attr}"
        for name, mod in list(sys.modules.items()) if name.startswith("kernels")
        for attr, v in vars(mod).items()
        if isinstance(v, CPUDispatcher) and v.py_func.__module__ == name and v.signatures
    )
print(len([1 for name in sys.modules if name.startswith("kernels.")]), compiled())
from kernels.odds import time_overlap
time_overlap(np.array([0.0, 100.0]), 500.0)
print(compiled())
"""
    cache = tmp_path / "cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    n_modules, at_import = first.split(" ", 1)
    assert int(n_modules) >= 10 and at_import == "[]"
    assert second == "['kernels.odds.time_overlap']"
    assert [p.name for p in cache.rglob("*.nb*") if "time_overlap" not in p.name] == []
