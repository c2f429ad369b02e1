"""SciPy's BLAS table for Numba without the rest of ``scipy.linalg``.

The first time a process compiles or loads a kernel, Numba's CPU target imports
``numba.np.arraymath``, which checks for BLAS by importing ``scipy.linalg.cython_blas``;
that import runs ``scipy.linalg``'s ``__init__`` first (its solvers and decompositions
and SciPy's array-API layer, ~0.25-0.3 s of CPU), though Numba only reads the BLAS
function table of that one extension module. Loaded beforehand under its own name, it
is the module Numba's import then finds, and every process that runs kernels (a run's
driver, its fork server, each Dask worker) reaches its first kernel that much sooner.

Nothing is done when ``scipy.linalg`` is imported already or the extension is not where
SciPy keeps it, and any failure leaves Numba's own import to happen as before. A later
``import scipy.linalg`` imports the package as usual; it finds this module in
``sys.modules`` and gets it as its attribute ``cython_blas`` (`_AttachBlas`: the import
system sets a package's attribute for a submodule only when it loads the submodule).

Examples
--------
>>> import sys
>>> from kernels.lean_blas import BLAS_MODULE, load_blas_alone
>>> _ = load_blas_alone()  # False when already loaded, one way or the other
>>> BLAS_MODULE in sys.modules or "scipy.linalg" not in sys.modules
True
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

__all__ = ["BLAS_MODULE", "load_blas_alone"]

#: The module Numba imports for BLAS (numba.np.linalg.ensure_blas).
BLAS_MODULE = "scipy.linalg.cython_blas"


def load_blas_alone() -> bool:
    """Load `BLAS_MODULE` without its package's ``__init__``; whether it was loaded here."""
    if BLAS_MODULE in sys.modules or "scipy.linalg" in sys.modules:
        return False
    try:
        import scipy  # the top-level package alone is light (Numba imports it too)

        folder = os.path.join(scipy.__path__[0], "linalg")
        paths = [os.path.join(folder, "cython_blas" + s) for s in importlib.machinery.EXTENSION_SUFFIXES]  # fmt: skip
        path = next((p for p in paths if os.path.isfile(p)), None)
        if path is None:
            return False
        spec = importlib.util.spec_from_file_location(BLAS_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[BLAS_MODULE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[BLAS_MODULE]
            raise
        sys.meta_path.insert(0, _AttachBlas())
        return True
    except Exception:  # an unusual SciPy: Numba imports the module itself
        return False


class _AttachBlas(importlib.abc.MetaPathFinder):
    """At the import of ``scipy.linalg`` (once), its own spec, whose loader then sets
    the package's ``cython_blas`` to the module `load_blas_alone` loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != "scipy.linalg":
            return None
        sys.meta_path.remove(self)  # once; and the search below finds the real spec
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            exec_package = spec.loader.exec_module

            def exec_and_attach(module) -> None:
                exec_package(module)
                if BLAS_MODULE in sys.modules:
                    module.cython_blas = sys.modules[BLAS_MODULE]

            spec.loader.exec_module = exec_and_attach  # this spec's own loader object
        return spec
