"""The package version and the release check behind ``-D/--dev-mode``."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["__version__", "release_problem"]


#: The release, in one place: the packaging reads it from here (pyproject.toml's
#: ``dynamic`` version), so the installed metadata says the same, and a command knows
#: its version without looking the distribution up (``importlib.metadata`` imports the
#: ``email`` package: ~45-85 ms of CPU before the fork server starts).
__version__ = "0.1.0"

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
    import subprocess  # here: only a git checkout asks git

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
