"""Error dumps: copy a failed event directory to every ``--errdump`` place.

When an event fails with an unhandled exception, the batch runner calls
`dump_event`; each destination (a template, local or ``s3://``) receives
``<dest>/<event_dir_name>/`` with everything in the event directory except its git
history, plus ``ERRDUMP.log`` (UTC time, parameter vector, traceback). A dump that
fails somewhere is logged and the other destinations are still tried: a dump must
never hide the original error.

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> os.makedirs(os.path.join(d, "S1"))
>>> with open(os.path.join(d, "S1", "skymap_info.json"), "w") as f:
...     _ = f.write("{}")
>>> places = dump_event(os.path.join(d, "S1"), [os.path.join(d, "dumps-{run}")],
...                     "Traceback ...", {"run": "7"}, environ={})
>>> sorted(os.listdir(places[0]))
['ERRDUMP.log', 'skymap_info.json']
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from llama import storage
from llama.batch import template

__all__ = ["ERRDUMP_LOG", "dump_event", "dump_name", "errdump_log_text"]

log = logging.getLogger(__name__)

#: Name of the log file added to every dump.
ERRDUMP_LOG = "ERRDUMP.log"

# git history is not copied (see the --errdump reference), nor the lock of a batch run
# (it says who was running the event, not what went wrong)
_EXCLUDE = (".git", ".llama-batch.lock")
# longest folder name a dump may use: file systems allow 255 bytes per name
_MAX_NAME = 255


def dump_name(event_dir: str | os.PathLike[str]) -> str:
    """The folder name of an event's dump: its directory name, shortened if too long.

    An event whose directory name is too long for the file system is still dumped,
    under the name's start and a hash of the whole name (unique, and the same each
    time).

    Examples
    --------
    >>> dump_name("/ev/S190425z")
    'S190425z'
    >>> name = dump_name("/ev/" + "S" * 300)
    >>> len(name), name[:3], name == dump_name("/ev/" + "S" * 300)
    (217, 'SSS', True)
    """
    name = Path(event_dir).name
    if len(os.fsencode(name)) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    # cut by bytes, dropping a character split at the cut, so the result always fits
    start = os.fsencode(name)[:200].decode("utf-8", "ignore")
    return f"{start}-{digest}"


def errdump_log_text(
    event_dir: str | os.PathLike[str],
    traceback_text: str,
    vector: Mapping[str, str],
    now: datetime | None = None,
) -> str:
    """The text of ``ERRDUMP.log``.

    Examples
    --------
    >>> t = errdump_log_text("/ev/S1", "Traceback: boom", {"graceid": "S1"},
    ...                      now=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    >>> print(t)
    LLAMA error dump
    time (UTC): 2024-01-02T03:04:05+00:00
    event directory: /ev/S1
    parameter vector: {"graceid": "S1"}
    <BLANKLINE>
    Traceback: boom
    <BLANKLINE>
    """
    now = now or datetime.now(UTC)
    return (
        "LLAMA error dump\n"
        f"time (UTC): {now.astimezone(UTC).isoformat(timespec='seconds')}\n"
        f"event directory: {os.fspath(event_dir)}\n"
        f"parameter vector: {json.dumps(dict(vector), sort_keys=True)}\n"
        "\n"
        f"{traceback_text.rstrip()}\n"
    )


def dump_event(
    event_dir: str | os.PathLike[str],
    destinations: Sequence[str],
    traceback_text: str,
    vector: Mapping[str, str],
    public: bool = False,
    environ: Mapping[str, str] | None = None,
    rendered: bool = False,
) -> list[str]:
    """Copy `event_dir` and an ``ERRDUMP.log`` into ``<dest>/<event_dir_name>/``.

    Parameters
    ----------
    event_dir : str or path-like
        The failed event's directory; ``.git`` inside it is skipped.
    destinations : sequence of str
        ``--errdump`` templates, rendered with `vector` then `environ`
        (`llama.batch.template.render`); local paths or ``s3://`` URLs.
    traceback_text : str
        The formatted traceback of the failure.
    vector : mapping of str to str
        The event's parameter vector.
    public : bool
        S3 uploads readable by anyone (``--public``).
    environ : mapping, optional
        Fallback for template fields; None means ``os.environ``.
    rendered : bool
        `destinations` are already rendered (the batch runner renders them with the
        rest of the event's templates): used as they are, never rendered again, so
        braces that came from a value stay literal.

    Returns
    -------
    list of str
        The dump directories written, one per destination that worked.

    Notes
    -----
    Never raises for a destination that fails (bad template, unreachable store,
    read-only location): the failure is logged and the next destination is tried.
    ``ERRDUMP.log`` is written last, so its presence marks a complete dump. Its
    text is redacted (`llama.storage.redact`).
    """
    event_dir = Path(event_dir)
    env = os.environ if environ is None else environ
    # whoever reads a dump must not learn a credential from it (tokens in URLs)
    text = storage.redact(errdump_log_text(event_dir, traceback_text, vector))
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="llama-errdump-") as tmp:
        # staged outside the event directory, which must stay as the failure left it
        log_file = os.path.join(tmp, ERRDUMP_LOG)
        with open(log_file, "w", encoding="utf-8") as f:
            f.write(text)
        for dest_template in destinations:
            place = _dump_one(event_dir, dest_template, log_file, vector, env, public, rendered)
            if place is not None:
                written.append(place)
    return written


def _is_dir(path: Path) -> bool:
    # Path.is_dir raises for a name too long; such an event still gets its ERRDUMP.log
    try:
        return path.is_dir()
    except OSError:
        return False


def _dump_one(
    event_dir: Path,
    dest_template: str,
    log_file: str,
    vector: Mapping[str, str],
    environ: Mapping[str, str],
    public: bool,
    rendered: bool = False,
) -> str | None:
    """Dump to one destination; log and return None on any failure."""
    try:
        dest = dest_template if rendered else template.render(dest_template, vector, environ)
        place = storage.join(dest, dump_name(event_dir))
        if _is_dir(event_dir):
            storage.put_tree(event_dir, place, public, exclude=_EXCLUDE)
        else:
            log.warning("event directory %s is missing; dumping only %s", event_dir, ERRDUMP_LOG)
        storage.put(log_file, storage.join(place, ERRDUMP_LOG), public)
    except Exception as exc:  # noqa: BLE001 - one bad destination must not stop the others
        log.error(
            "error dump of %s to %s failed: %s: %s",
            event_dir,
            storage.redact(dest_template),
            type(exc).__name__,
            storage.redact(str(exc)),
        )
        return None
    log.info("dumped failed event %s to %s", event_dir.name, storage.redact(place))
    return place
