"""The package version and the release check behind ``-D/--dev-mode``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["__version__", "release_problem"]


def _metadata_version(name: str) -> str | None:
    """The ``Version`` of distribution ``name`` as `importlib.metadata` finds it (the
    first ``NAME-*.dist-info`` or ``NAME-*.egg-info`` folder along ``sys.path``), read
    here without importing `importlib.metadata` (~45-85 ms of CPU: it imports the
    ``email`` package, which nothing else of a ``llama batch`` driver on worker
    processes needs, before it starts its fork server). None where the answer is not
    that plain (two candidates in one folder, a zip, no ``Version`` line): then
    `importlib.metadata` answers.

    Examples
    --------
    >>> from importlib import metadata
    >>> _metadata_version("llama") in (None, metadata.version("llama"))
    True
    >>> _metadata_version("no-such-distribution") is None
    True
    """
    wanted = re.sub(r"[-_.]+", "_", name).lower()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except (OSError, TypeError):  # a zip or a missing folder: importlib's to read
            continue
        found = [
            n
            for n in names
            if n.endswith((".dist-info", ".egg-info"))
            and re.sub(r"[-_.]+", "_", n.rpartition(".")[0].partition("-")[0]).lower() == wanted
        ]
        if not found:
            continue
        if len(found) > 1:
            return None
        folder = os.path.join(entry or ".", found[0])
        inside = "METADATA" if found[0].endswith(".dist-info") else "PKG-INFO"
        try:
            with open(os.path.join(folder, inside), encoding="utf-8") as f:
                for line in f:
                    if not line.strip():  # the end of the headers
                        break
                    if line.startswith("Version:"):
                        return line.partition(":")[2].strip()
        except OSError:
            pass
        return None
    return None


def _version() -> str:
    found = _metadata_version("llama")
    if found is not None:
        return found
    from importlib import metadata

    try:
        return metadata.version("llama")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


__version__ = _version()

_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


def release_problem(version: str = __version__, source: Path | None = None) -> str | None:
    """Why this build is not a clean release, or None.

    A build is a release when its version is plain semantic versioning (X.Y.Z) and,
    if it runs from a git checkout, no tracked source file has local changes.

    Examples
    --------
    >>> release_problem("1.2.3", source=Path("/nonexistent"))
    >>> release_problem("1.2.3.dev4", source=Path("/nonexistent"))
    "version '1.2.3.dev4' is not a release (expected X.Y.Z)"
    """
    if not _SEMVER.match(version):
        return f"version {version!r} is not a release (expected X.Y.Z)"
    source = source if source is not None else Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "llama", "kernels"],
            cwd=source, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if changed:
        n = len(changed.splitlines())
        return f"the source in {source} has local changes ({n} files; see git status)"
    return None
