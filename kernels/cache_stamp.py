"""One source stamp for every cached kernel of a package: any edit in it recompiles them all.

Numba keeps a ``cache=True`` function's compiled code under a stamp of the one file it
is defined in. A kernel that calls a helper from another file (``traversal.py``
calling ``psf.py``, nearly everything calling ``healpix.py``) is compiled with the
helper inlined into its machine code, yet its cache entry stays "fresh" when only the
helper's file changes: the next process loads the old helper from the cache and the
numbers are silently those of the old code. A clean clone (CI) never sees it; a
developer's tree and the benches do.

:func:`install` makes the stamp of every cached function defined in a package's
directory one digest of all the package's ``.py`` files (their paths and contents), so
an edit anywhere in the package leaves all its cache entries stale: each kernel
recompiles at its next use (``llama warm`` refills the cache). The cache stays where
Numba puts it (the ``__pycache__`` beside each file, or ``NUMBA_CACHE_DIR``), under the
same file names: only the stamp in each index changes.

Numba has no public hook for this. The stamp comes from the "locator" Numba picks for
a function (``numba.core.caching``: ``CacheImpl._locator_classes``, each class's
``from_function`` and ``get_source_stamp``); :func:`install` puts a locator first in
that list that claims the package's functions, lets Numba's own classes pick the cache
folder and file names as before, and answers the stamp itself. Where those internals
are not there (another Numba version), or ``NUMBA_CACHE_LOCATOR_CLASSES`` overrides
the list, it logs why at debug level and leaves Numba's behaviour as it is.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Package directories (resolved) whose functions get the package stamp -> its digest,
#: computed once per process at the first function that needs it.
_PACKAGES: dict[str, bytes | None] = {}


def package_digest(root: str | os.PathLike) -> bytes:
    """SHA-256 of every ``.py`` file under ``root``: relative paths and contents, sorted.

    Contents rather than modification times (the installed Numba's per-file stamps
    are contents too): a checkout or a copy of the same sources (``bench/revisions``) keeps
    its cache, and an edit that keeps the size within the file system's time
    resolution is still seen. Compiled-code folders (``__pycache__``) are not sources.

    Parameters
    ----------
    root : str or os.PathLike
        The package directory.

    Returns
    -------
    bytes
        The 32-byte digest.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = Path(d, "a.py").write_text("x = 1\\n")
    ...     before = package_digest(d)
    ...     _ = Path(d, "a.py").write_text("x = 2\\n")
    ...     before != package_digest(d)
    True
    """
    root = Path(root)
    files = sorted(
        (path.relative_to(root).as_posix(), path)
        for path in root.rglob("*.py")
        if "__pycache__" not in path.relative_to(root).parts
    )
    digest = hashlib.sha256()
    for name, path in files:
        content = path.read_bytes()
        # lengths first, so that no two different trees hash the same bytes
        digest.update(b"%d:%s:%d:" % (len(name.encode()), name.encode(), len(content)))
        digest.update(content)
    return digest.digest()


def _package_of(py_file: str) -> str | None:
    """The registered package directory that holds ``py_file``, if any."""
    return _package_of_folder(os.path.dirname(py_file))


@functools.cache
def _package_of_folder(folder: str) -> str | None:
    # resolved once per folder (a package's functions sit in a handful of them)
    path = os.path.join(os.path.realpath(folder), "")
    for root in _PACKAGES:
        if path.startswith(os.path.join(root, "")):
            return root
    return None


def _stamp(root: str) -> tuple[str, bytes]:
    """The source stamp of every cached function in package ``root``."""
    if _PACKAGES[root] is None:
        _PACKAGES[root] = package_digest(root)
    # tagged, so that it never equals a stamp Numba writes for a single file
    return ("package sources sha256", _PACKAGES[root])


def _locator_class(caching):
    """A Numba cache locator that stamps registered packages' functions as a whole.

    Built on the installed Numba's ``_CacheLocator``; it wraps the locator Numba's own
    classes would have chosen for the function (cache folder, writable check, file-name
    disambiguator unchanged) and answers only :meth:`get_source_stamp`.
    """

    class PackageStampLocator(caching._CacheLocator):
        _package_stamp = True  # the others of its kind are skipped when picking one

        def __init__(self, inner, root):
            self._inner = inner
            self._root = root
            self._py_file = inner._py_file  # Numba's warnings name the file through it

        def ensure_cache_path(self):
            self._inner.ensure_cache_path()

        def get_cache_path(self):
            return self._inner.get_cache_path()

        def get_source_stamp(self):
            return _stamp(self._root)

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

        @classmethod
        def from_function(cls, py_func, py_file):
            root = _package_of(py_file)
            if root is None:
                return None
            for other in _impl_class(caching)._locator_classes:
                if getattr(other, "_package_stamp", False):
                    continue
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    if not hasattr(inner, "_py_file"):
                        return None  # not a file-backed locator: Numba's own stamp
                    return cls(inner, root)
            return None

    return PackageStampLocator


def _impl_class(caching):
    """Numba's cache implementation base class (``_CacheImpl`` in older versions)."""
    return getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)


def install(package_dir: str | os.PathLike) -> bool:
    """Stamp the cache entries of every function defined under ``package_dir`` as one.

    Call it before the package's first ``cache=True`` function is defined: Numba reads
    the stamp when the decorator runs. Calling it again (another package, the same one)
    is harmless.

    Parameters
    ----------
    package_dir : str or os.PathLike
        The package's directory (``Path(__file__).parent`` in its ``__init__``).

    Returns
    -------
    bool
        True if installed; False where Numba's internals are not the ones this relies
        on or ``NUMBA_CACHE_LOCATOR_CLASSES`` is set (then Numba's per-file stamps stay,
        and a debug message says why).
    """
    try:
        from numba.core import caching, config
    except ImportError as exc:  # pragma: no cover - numba is a dependency
        log.debug("kernel cache stamps: Numba's caching module not found (%s)", exc)
        return False
    impl = _impl_class(caching)
    locators = getattr(impl, "_locator_classes", None)
    if not isinstance(locators, list) or not hasattr(caching, "_CacheLocator"):
        log.debug(
            "kernel cache stamps: this Numba has no CacheImpl._locator_classes; per-file stamps stay"
        )
        return False
    if getattr(config, "CACHE_LOCATOR_CLASSES", None):
        log.debug("kernel cache stamps: NUMBA_CACHE_LOCATOR_CLASSES is set; per-file stamps stay")
        return False
    _PACKAGES.setdefault(os.path.realpath(package_dir), None)
    _package_of_folder.cache_clear()  # a folder may belong to the new package
    # one locator of this module's kind in Numba's list, whatever the number of packages
    if not any(
        getattr(cls, "_package_stamp", False) and cls.__module__ == __name__ for cls in locators
    ):
        locators.insert(0, _locator_class(caching))
    return True
