"""Checks of ``llama batch``'s options made before any event runs.

A log file, results file or upload place that cannot be written used to be found
after every event had run (or as a traceback); each check here turns it into one
message naming the option, the path and the fix, before the first download.

Examples
--------
>>> import tempfile, os
>>> check_writable(os.path.join(tempfile.mkdtemp(), "sub", "r.nc"), "--results")
>>> check_seed(2**64)
Traceback (most recent call last):
...
llama.batch.preflight.PreflightError: --seed 18446744073709551616 is out of range: give an integer from 0 to 2**64 - 1
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "PreflightError",
    "check_no_nul",
    "check_put_destinations",
    "check_seed",
    "check_writable",
]

# numpy's SeedSequence takes any non-negative integer, but the seed is stored as an
# unsigned 64-bit attribute of the results file and printed for repeating the run
SEED_LIMIT = 2**64


class PreflightError(ValueError):
    """An option that cannot work, found before any event ran."""


def check_no_nul(options: Mapping[str, object]) -> None:
    """Refuse option values holding a NUL character (possible from an ``@args`` file).

    Every path function of the system stops at NUL; Python reported it as
    "embedded null byte" from deep inside, naming no option.

    Examples
    --------
    >>> check_no_nul({"eventdir": "ev/{graceid}", "get": {"a.json": "src/a.json"}})
    >>> check_no_nul({"logfile": "x" + chr(0) + ".log"})
    Traceback (most recent call last):
    ...
    llama.batch.preflight.PreflightError: option --logfile holds a NUL character ('x\\x00.log'): remove it (from the @args file?)
    """
    for name, value in options.items():
        texts = [value] if isinstance(value, str) else []
        if isinstance(value, Mapping):
            texts = [f"{k}={v}" for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            texts = [v for v in value if isinstance(v, str)]
        for text in texts:
            if "\x00" in text:
                raise PreflightError(
                    f"option --{name.replace('_', '-')} holds a NUL character ({text!r}): "
                    "remove it (from the @args file?)"
                )


def check_seed(seed: int | None) -> None:
    """Refuse a ``--seed`` that cannot be stored with the results.

    Examples
    --------
    >>> check_seed(1)
    >>> check_seed(None)
    """
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise PreflightError(f"--seed {seed} is out of range: give an integer from 0 to 2**64 - 1")


def check_put_destinations(put: Mapping[str, str]) -> None:
    """Refuse ``--put`` to HTTP(S): the reference page says uploads there are unsupported.

    Examples
    --------
    >>> check_put_destinations({"a.json": "s3://bucket/{graceid}/a.json"})
    >>> check_put_destinations({"a.json": "https://host/{graceid}/a.json"})
    Traceback (most recent call last):
    ...
    llama.batch.preflight.PreflightError: --put a.json=https://...: uploads to HTTP(S) are not supported; put to a local path or an s3:// URL instead
    """
    for name, dest in put.items():
        scheme = dest.split("://", 1)[0].lower() if "://" in dest else ""
        if scheme in ("http", "https"):
            raise PreflightError(
                f"--put {name}={scheme}://...: uploads to HTTP(S) are not supported; "
                "put to a local path or an s3:// URL instead"
            )


def check_writable(path: str | os.PathLike[str], option: str) -> None:
    """Make sure a local output file of the run can be created, before the run.

    Creates the missing parent folders (the run would make them anyway) and a
    probe file beside `path`, removed at once. URLs (``s3://...``) are left to
    the upload itself, which says what went wrong.

    Parameters
    ----------
    path
        The file the run will write.
    option
        The option that named it, for the message (``-l``, ``--results``).

    Raises
    ------
    PreflightError
        The folder cannot be made, or a file cannot be created in it.
    """
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        return
    target = Path(text.removeprefix("file://")).expanduser()
    folder = target.parent
    probe = folder / f".{target.name[:200]}.probe-{uuid.uuid4().hex[:12]}"
    try:
        is_dir = target.is_dir()
        if not is_dir:
            folder.mkdir(parents=True, exist_ok=True)
            probe.touch()
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise PreflightError(
            f"{option} {_short(target)} cannot be written ({reason}): choose a path in a "
            "folder you can write to"
        ) from None
    if is_dir and target.suffix != ".zarr":  # a zarr store is a folder
        raise PreflightError(f"{option} {_short(target)} is a directory: name a file in it")
    probe.unlink(missing_ok=True)


def _short(path: Path, limit: int = 200) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[:100]}...{text[-60:]} ({len(text)} characters)"
