"""Another git revision of this repository, loaded beside the working tree by a bench.

The benches time this tree against an older revision (``--against REV``,
``--baseline REV``), either in one process (an older module or package imported under
another name beside this tree's) or in a process of its own run on that revision's
source tree. This module gives both, one way:

* :func:`commit_of` and :func:`source_at`: a revision's commit and one file's text;
* :func:`tree_at`: a revision's files (all, or some folders) in a directory, or the
  working tree's files copied as they are now (``rev=None``), or a directory given by
  hand (a tree with some files reverted, say);
* :func:`module_at` and :func:`package_at`: a revision's module or package imported
  under a name of the bench's choice (:func:`module_name` makes one from a revision;
  :func:`load_module` imports a file already on disk);
* :func:`environment` and :func:`warm_cache`: the environment a command on such a tree
  runs with, and that tree's Numba cache filled by its own ``llama warm``.

Trees and modules are kept under :data:`KEPT` (``$TMPDIR/llama-bench-revisions``), one
directory per commit and what was asked for, written once (unpacked beside it, then
renamed into place, so a bench started at the same time never sees half a tree) and
reused by later runs: Numba's cache lies in ``__pycache__`` beside each kernel module,
keyed on the file's path and time stamp, so a revision's kernels compile once, not once
per run. Delete the folder to free the space.

Examples
--------
>>> from revisions import module_at  # doctest: +SKIP
>>> then = module_at("HEAD~5", "llama/batch/schedulers.py", "schedulers_then")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

#: The repository holding this script (or ``$BENCH_REPO``).
REPO = Path(os.environ.get("BENCH_REPO") or Path(__file__).resolve().parents[1])
#: Where trees and modules of other revisions are kept between runs.
KEPT = Path(tempfile.gettempdir()) / "llama-bench-revisions"


class RevisionError(LookupError):
    """git cannot give the revision, or the revision has no such path."""


def _git(args: Sequence[str], repo: Path) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    except OSError as err:  # no git at all
        raise RevisionError(f"git {' '.join(args)}: {err}") from err
    if done.returncode != 0:
        raise RevisionError(f"git {' '.join(args)}: {done.stderr.decode().strip()}")
    return done.stdout


def commit_of(rev: str, repo: Path = REPO) -> str:
    """The full hash of the commit that ``rev`` names (a hash, ``HEAD~5``, a branch).

    Raises
    ------
    RevisionError
        When ``repo`` has no such revision (or git is missing).
    """
    return _git(["rev-parse", "--verify", f"{rev}^{{commit}}"], repo).decode().strip()


def source_at(rev: str, path: str, repo: Path = REPO) -> str | None:
    """The text of file ``path`` (relative to the repository's root) at revision ``rev``,
    or None when that revision has no such file.

    Raises
    ------
    RevisionError
        When ``rev`` itself is unknown.
    """
    commit = commit_of(rev, repo)
    try:
        return _git(["show", f"{commit}:{path}"], repo).decode()
    except RevisionError:
        return None


def _label(paths: Sequence[str]) -> str:
    """A folder name for a set of paths: readable when short, hashed when not."""
    if not paths:
        return "all"
    text = "+".join(p.strip("/").replace("/", "_") for p in sorted(paths))
    if len(text) <= 60:
        return text
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _write_once(final: Path, fill) -> Path:
    """``final``, made by ``fill(directory)`` unless already there; filled beside it and
    renamed into place, so another process never sees it half written."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        fill(part)
        part.chmod(0o755)  # mkdtemp's 0700: readable by the others' benches too
        os.rename(part, final)
    except OSError:
        if not final.is_dir():  # not another process's tree finished first
            raise
    finally:
        if part.exists():
            shutil.rmtree(part)
    return final


def _working_files(paths: Sequence[str], repo: Path) -> list[str]:
    """The working tree's files under ``paths``: tracked, or new and not ignored."""
    out = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths], repo)  # fmt: skip
    return sorted({f for f in out.decode().split("\0") if f and (repo / f).is_file()})


def tree_at(rev: str | None, paths: Sequence[str] = (), repo: Path = REPO) -> Path:
    """A directory holding the files of revision ``rev``: the whole tree, or only
    ``paths`` (folders or files, relative to the root) at the same places below it.

    Parameters
    ----------
    rev
        A git revision (its files from ``git archive``); None, the working tree's files
        as they are now, tracked or new (copied, so that they load as another tree's
        do: with a Numba cache of their own); or an existing directory, returned as it
        is (a tree made by hand, its cache already filled, say).
    paths
        The folders or files wanted; none, the whole tree.
    repo
        The repository.

    Returns
    -------
    Path
        The tree's root, kept under :data:`KEPT` (one per commit, or per content of the
        working tree's files, and ``paths``) and reused by later calls: leave it as it
        is (its ``__pycache__`` folders excepted).

    Raises
    ------
    RevisionError
        When ``rev`` is unknown or has none of ``paths``.
    """
    if rev is not None and Path(rev).is_dir():
        return Path(rev).resolve()
    label = _label(paths)
    if rev is None:
        files = _working_files(paths, repo)
        if not files:
            raise RevisionError(f"the working tree has no files under {list(paths)}")
        digest = hashlib.sha1()
        for name in files:
            digest.update(name.encode() + b"\0" + (repo / name).read_bytes() + b"\0")

        def fill(part: Path) -> None:
            for name in files:
                (part / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / name, part / name)  # time stamps kept

        return _write_once(KEPT / f"tree-{digest.hexdigest()[:12]}-{label}", fill)
    commit = commit_of(rev, repo)
    final = KEPT / f"{commit[:12]}-{label}"
    if final.is_dir():
        return final
    archive = _git(["archive", commit, *paths], repo)

    def unpack(part: Path) -> None:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(part, filter="data")  # time stamps: the commit's

    return _write_once(final, unpack)


def module_name(prefix: str, rev: str) -> str:
    """A module name for ``prefix`` at revision ``rev``: ``module_name("plotting_",
    "HEAD~5")`` is ``"plotting_HEAD_5"`` (what is not a letter, digit or ``_`` becomes
    ``_``), for a module loaded beside this tree's."""
    return prefix + re.sub(r"\W", "_", rev)


def load_module(name: str, path: Path) -> ModuleType:
    """Import the file ``path`` as the module ``name``, or, when ``path`` is a folder,
    that folder as the package ``name`` (its modules then import as ``name.module``).

    The module is registered in ``sys.modules`` (dataclasses and the package's relative
    imports look it up there), in place of any module of that name. A dotted name puts
    it inside a package already imported: ``kernels.overlap_then``'s ``from ..healpix
    import`` reaches the working tree's ``kernels.healpix``.
    """
    path = Path(path)
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def module_at(
    rev: str,
    path: str,
    name: str,
    replace: Mapping[str, str] | None = None,
    repo: Path = REPO,
) -> ModuleType:
    """The module ``path`` (say ``llama/batch/schedulers.py``) of revision ``rev``,
    imported as ``name`` beside the working tree's modules.

    Its own imports are the working tree's, unless ``replace`` rewrites them: each key
    found in its text is replaced by its value before it loads (``{"from kernels import
    density_bounds": "from kernels_then import density_bounds"}``, say). The text is kept
    under :data:`KEPT` and rewritten only when it changes, so its Numba cache stays valid.

    Raises
    ------
    RevisionError
        When ``rev`` is unknown or has no file ``path``.
    """
    text = source_at(rev, path, repo)
    if text is None:
        raise RevisionError(f"{rev} has no {path}")
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    where = KEPT / f"{commit_of(rev, repo)[:12]}-modules" / f"{name.replace('.', '_')}.py"
    if not where.is_file() or where.read_text() != text:
        where.parent.mkdir(parents=True, exist_ok=True)
        part = where.with_name(f".{where.name}.{os.getpid()}")
        part.write_text(text)
        os.replace(part, where)
    return load_module(name, where)


_CACHES = shutil.ignore_patterns("__pycache__")


def package_at(rev: str | None, path: str, name: str, repo: Path = REPO) -> ModuleType:
    """The package folder ``path`` (say ``kernels`` or ``kernels/overlap``) of revision
    ``rev`` (None: the working tree's, copied) imported as the package ``name``.

    Its modules import as ``name.module`` (``importlib.import_module``), each with its own
    Numba cache; their relative imports stay inside it, or, above it, reach the package
    that a dotted ``name`` sits in (see :func:`load_module`); absolute imports are the
    working tree's.

    Raises
    ------
    RevisionError
        When ``rev`` is unknown or has no such folder.
    """
    tree = tree_at(rev, [path], repo)
    if not (tree / path / "__init__.py").is_file():
        raise RevisionError(f"{rev or 'the working tree'}: {path} is not a package")
    # one copy per name it is loaded as: Numba's cache entries name the module they were
    # compiled in, and an entry written for ``kernels_HEAD`` failed to load as
    # ``kernels_base`` (ModuleNotFoundError) when two benches shared one tree
    own = _write_once(tree.with_name(f"{tree.name}-as-{name}"),
                      lambda part: shutil.copytree(tree / path, part / path, ignore=_CACHES))  # fmt: skip
    return load_module(name, own / path)


def environment(tree: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a command run on ``tree``'s code: ``PYTHONPATH``
    the tree (its ``llama`` and ``kernels`` imported before any installed ones), and
    ``extra`` (``NUMBA_NUM_THREADS="1"``, say)."""
    return {**os.environ, "PYTHONPATH": str(tree), **extra}


def warm_cache(tree: Path, jobs: int = 1) -> bool:
    """Fill the Numba cache of ``tree``'s kernels with its own ``llama warm`` (run in
    ``tree``, ``jobs`` worker processes); quick once the cache is full. Returns False,
    doing nothing, when that revision has no ``llama warm`` (its first events then
    compile what they use: run some untimed).

    Raises
    ------
    RuntimeError
        When ``llama warm`` fails.
    """
    if not (Path(tree) / "llama" / "cli" / "warm.py").is_file():
        return False
    cmd = [sys.executable, "-m", "llama.cli", "warm", "--jobs", str(jobs)]
    done = subprocess.run(cmd, cwd=tree, env=environment(tree), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"llama warm in {tree} failed:\n{done.stderr[-3000:]}")
    return True
