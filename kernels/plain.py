"""The plain Python of a kernel, for tables computed when a module is imported.

A jitted kernel's ``py_func`` still calls the other kernels it uses as compiled
functions, so evaluating it at import would compile them (or load them from Numba's
cache) in every process that imports the module, used or not. :func:`plain_python`
swaps those for their plain Python too, so importing compiles nothing and kernels
compile on first use only (tests/test_kernels_compile.py).
"""

from __future__ import annotations

import types
from collections.abc import Callable

__all__ = ["plain_python"]


def plain_python(kernel) -> Callable:
    """``kernel``'s Python function, calling the plain Python of every kernel it uses.

    Examples
    --------
    >>> from kernels.healpix import max_pixrad
    >>> round(plain_python(max_pixrad)(0), 6)  # [rad], as healpy.max_pixrad(1)
    0.841069
    """
    f = getattr(kernel, "py_func", kernel)
    env = dict(f.__globals__)
    for name in f.__code__.co_names:
        if hasattr(env.get(name), "py_func"):
            env[name] = plain_python(env[name])
    return types.FunctionType(f.__code__, env, f.__name__, f.__defaults__, f.__closure__)
