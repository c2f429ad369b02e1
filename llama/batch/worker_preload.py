"""What a worker process would otherwise import at its first event, imported once.

The worker processes of ``--scheduler processes`` (and of our own local Dask cluster)
are forked from one *fork server* (`llama.batch.worker_processes`): a clean,
single-threaded process started once per run, which imports this module before it
forks any worker. Every worker then starts with the batch engine, the handler
catalogue, Numba and its CPU target, the FITS reader and the statistic's modules
already imported, instead of importing them itself (~1 s of CPU each: interpreter,
``llama``, Numba 0.3-0.4 s, its CPU target's registries; bench/README.md, "Realistic
events end to end"). Importing `kernels` loads the one SciPy BLAS module Numba's
registries read, not ``scipy.linalg`` (`kernels.lean_blas`: 0.25 s less here). An event imports no
astropy (`llama.science.times`, `llama.science.detector_frame`), so neither does this.

Nothing is compiled here. The kernels that earlier runs' workers loaded from
Numba's cache at their first event are loaded here from the same entries
(`llama.batch.worker_kernels`), so every worker inherits them; on a first run, or for
a kernel edited since, each worker loads them itself. They load without Numba's
typing and lowering registries (`llama.batch.worker_kernels.cache_loads_only`); only
when none was recorded are the registries loaded here, for the workers' own loads.
Another first-use cost of every event is paid here, once: the leap-second table
brought up to date (at the first UTC -> GPS conversion, `llama.science.times`), the
Earth-orientation arrays (`llama.science.detector_frame`) and h5py's import.

A fork server that fails to import this module still forks workers (Python skips an
ImportError there), and anything else that goes wrong is swallowed below: a worker
then imports what it needs at its first event, as a spawned one does.

Examples
--------
>>> import llama.batch.worker_preload as preload
>>> "llama.batch.runner" in preload.MODULES
True
"""

from __future__ import annotations

import importlib

__all__ = [
    "DEFERRED",
    "DETECTOR_FRAME_PROBE",
    "LEAP_SECOND_PROBE",
    "MODULES",
    "defer_imports",
    "preload",
]

#: Modules a realistic event imports in a fresh worker, in the order they load best.
MODULES = (
    "llama.batch.runner",
    "llama.handlers",  # the handler catalogue: every handler's module
    "numba",
    "h5py",  # the sky map's HDF5 copy (LvcSkymapHdf5)
    "kernels",  # before Numba's registries are loaded (kernels.lean_blas)
    "llama.science.skymap",
    "llama.science.fits_bintable",  # the FITS reader of LVK multi-order maps
    "llama.science.times",
    "llama.science.detector_frame",
    "llama.science.odds",
    "llama.science.pvalue",
    "llama.science.fast_trials",
    "llama.science.background_trials",
    "kernels.overlap",
    "kernels.trials",
    "kernels.trial_screen",
    # imported by an event's first calls (single_threaded_kernels, the significance
    # handler's table lookup, the neutrino list): each worker compiled their sources
    # again at its first event (PYTHONDONTWRITEBYTECODE), ~40 ms of its CPU
    "llama.batch.schedulers",
    "llama.science.background_table",
    "llama.science.neutrinos",
)

#: NumPy submodules that NumPy imports only when first named (its ``__getattr__``),
#: and that SciPy's vendored array_api_compat names all of at its import (``from numpy
#: import *`` and ``dir(numpy)``, via ``scipy.linalg``), though no event uses them:
#: ~60 ms of CPU for numpy.f2py, ~40 ms for numpy.testing (and unittest), in the fork
#: server's ~1.1-1.4 s. `defer_imports` makes them lazy modules instead.
DEFERRED = ("numpy.f2py", "numpy.testing")

#: A UTC time converted once, so that the leap-second table is brought up to date here.
LEAP_SECOND_PROBE = "2019-04-25T08:18:05"
#: A direction (RA, Dec [deg]) and time (MJD) turned into IceCube's zenith/azimuth
#: once, so that the Earth-orientation arrays and the site are read here.
DETECTOR_FRAME_PROBE = (10.0, 20.0, 58598.3)


def defer_imports(names: tuple[str, ...] = DEFERRED) -> list[str]:
    """Make ``names`` (submodules of imported packages) lazy: each is registered, and
    set on its package, as a module that runs its code at its first attribute access
    (`importlib.util.LazyLoader`), so that naming it imports nothing; using it imports
    it as before. Names already imported, or not found, are left as they are; returns
    the names deferred.

    For a single-threaded process (the fork server): before Python 3.12 a lazy
    module's first use from two threads at once is not safe.

    Examples
    --------
    >>> import sys
    >>> "json.tool" in sys.modules or defer_imports(("json.tool", "no_such_package.x"))
    ['json.tool']
    >>> import json.tool
    >>> callable(json.tool.main)  # its first use runs it
    True
    """
    import importlib.util
    import sys

    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        package, _, child = name.rpartition(".")
        try:
            parent = importlib.import_module(package)
            spec = importlib.util.find_spec(name)
        except Exception:  # not installed, or not importable: the import fails later
            continue
        if spec is None or spec.loader is None:
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(parent, child, module)  # as an import does; numpy's __getattr__ not reached
        deferred.append(name)
    return deferred


def preload() -> list[str]:
    """Import `MODULES` and Numba's CPU target registries; the modules that failed.

    Kernels run on one thread in every worker (one level of parallelism), so the fork
    server imports Numba with ``NUMBA_NUM_THREADS=1`` (set by whoever starts it).
    """
    import atexit
    import os

    from llama.batch.worker_processes import FORK_SERVER_VARIABLE, keep_freed_memory

    failed = []
    if os.environ.pop(FORK_SERVER_VARIABLE, None) == "1":
        # the server ends when the driver does; tearing down an interpreter holding
        # the whole engine took seconds, while it still held the command's stderr open
        # (a caller reading it waited). Its workers end by os._exit already.
        atexit.register(os._exit, 0)

    if not keep_freed_memory():  # inherited by every worker forked from here
        failed.append("malloc settings")
    try:
        defer_imports()  # before scipy.linalg names them
    except Exception:  # they are imported as before
        failed.append("deferred imports")
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a missing optional part: the worker imports it at need
            failed.append(name)
    loaded = 0
    try:
        # the kernels earlier runs' workers loaded at their first event, from the
        # same cache entries (`llama.batch.worker_kernels`): loaded once, here, and
        # without Numba's registries, which only a compile uses (0.3-0.5 s less)
        from llama.batch.worker_kernels import load_recorded

        loaded = load_recorded()
    except Exception:  # each worker loads its kernels at its first event
        failed.append("kernels")
    if not loaded:
        try:
            # none recorded yet (a first run): the first kernel a worker loads from
            # the cache fills Numba's CPU target with its registries
            # (numba.np.arraymath, ... 0.3-0.5 s), once per process: here, once
            from numba.core.registry import cpu_target

            cpu_target.target_context.refresh()
        except Exception:  # an internal of Numba: without it the first event does it
            failed.append("numba cpu target")
    try:
        # every event converts its UTC times to GPS: the first conversion in a process
        # brings ERFA's leap-second table up to date
        from llama.science.times import iso_to_gps

        iso_to_gps(LEAP_SECOND_PROBE)
    except Exception:  # the first event reads the table itself
        failed.append("leap seconds")
    try:
        # every event turns its neutrinos into the detector's frame: the first time in
        # a process reads the Earth-orientation arrays (a file) and their package's
        # metadata, ~9 ms
        from llama.science.detector_frame import zenith_azimuth

        ra, dec, mjd = DETECTOR_FRAME_PROBE
        zenith_azimuth([ra], [dec], mjd)
    except Exception:  # the first event reads them itself
        failed.append("detector frame")
    return failed


preload()  # this module is imported for its effect, by the fork server
