"""Run events through the handler DAG on a pool of workers: scheduling, progress, summary.

Data flows one way: parameter vectors -> `EventJob` (paths rendered from templates)
-> one task per event (`run_event`: prepare, each handler in dependency order,
finish) on the pool of `llama.batch.schedulers` -> files in the event directory +
one `EventOutcome` record per event.

Whole events are the unit of work, not handlers: a task per handler cost 0.4-2 ms of
scheduler overhead each (ARCHITECTURE.md), more than most handlers take. A bounded
window of events is in flight; the next is submitted as each one finishes.

An event whose files are all up to date (same inputs, same pipeline, same puts) is
recognised in the driver by a stat-and-checksum pass and never becomes a task, so
re-running a finished or interrupted batch only does the missing work.

Examples
--------
>>> import tempfile
>>> from llama.batch.runner import BatchConfig, run_batch
>>> from llama.pipeline import select_pipeline
>>> root = tempfile.mkdtemp()
>>> config = BatchConfig(pipeline=select_pipeline(exact=["SkymapInfo"]),
...                      eventdir=root + "/{graceid}", flags={})
>>> summary = run_batch([{"graceid": "S1"}, {"graceid": "S2"}], config, progress=False)
>>> summary.counts["done"], summary.ok
(2, True)
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama.batch import template
from llama.event import Event, HandlerFailed, sha256_file, write_rider
from llama.handler import FileHandler, Status
from llama.pipeline import Pipeline

__all__ = [
    "JOBS_PER_CPU",
    "MAX_IN_FLIGHT",
    "BatchConfig",
    "BatchSummary",
    "EventJob",
    "EventOutcome",
    "automatic_window",
    "check_jobs",
    "max_jobs",
    "run_batch",
    "run_event",
]

log = logging.getLogger("llama.batch")

#: Rider in each event directory recording the last batch run that finished it.
BATCH_RIDER = ".batch.json"
#: Handler states that mean "nothing left to do" for that handler.
_SETTLED = {Status.EXISTS, Status.VETOED, Status.NOT_APPLICABLE, Status.WAITING}
#: Most events in flight at once, whatever --jobs says: each pending event holds its
#: job (vector, rendered paths, a copy of the environment), and 20,000 jobs used to
#: queue 160,000 tasks (3 GB) before any work began.
MAX_IN_FLIGHT = 1024
#: Events in flight per worker: one running, one queued behind it so that a worker
#: never idles while the driver records the outcome it just handed back.
IN_FLIGHT_PER_SLOT = 2
#: Most --jobs per CPU: beyond this, threads or processes only wait on one another.
JOBS_PER_CPU = 64


def automatic_window(pool) -> int:
    """The events a run keeps in flight on ``pool`` when not told: `IN_FLIGHT_PER_SLOT`
    per worker, or the pool's own ``in_flight_per_slot`` where it asks more (a pool
    that routes events to a queue per worker), at most `MAX_IN_FLIGHT`."""
    per_slot = getattr(pool, "in_flight_per_slot", None) or IN_FLIGHT_PER_SLOT
    return min(per_slot * pool.slots, MAX_IN_FLIGHT)


def max_jobs() -> int:
    """The largest ``--jobs`` accepted on this machine: `JOBS_PER_CPU` per CPU."""
    return JOBS_PER_CPU * (os.cpu_count() or 1)


def check_jobs(jobs: int) -> None:
    """Refuse a number of jobs below 1 or above `max_jobs`, naming the limit and the fix.

    Raises
    ------
    ValueError
        With one message saying what is allowed and what to give instead.

    Examples
    --------
    >>> check_jobs(1)
    >>> check_jobs(0)
    Traceback (most recent call last):
    ...
    ValueError: --jobs 0: at least 1 job is needed; give --jobs 1 or more
    """
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: at least 1 job is needed; give --jobs 1 or more")
    limit = max_jobs()
    if jobs > limit:
        cpus = os.cpu_count() or 1
        raise ValueError(
            f"--jobs {jobs} is more than {JOBS_PER_CPU} per CPU ({limit} for the {cpus} "
            f"CPU(s) of this machine): each job is a thread or process of its own, and so many "
            f"only wait on one another; give --jobs {limit} or less (events beyond --jobs wait "
            "their turn, they are not dropped)"
        )


@dataclass
class BatchConfig:
    """Everything about a batch run except the parameter vectors.

    Parameters mirror the options of ``llama batch``; templates are rendered per
    event by `llama.batch.template.render` with the vector, then the environment.
    """

    pipeline: Pipeline
    get: Mapping[str, str] = field(default_factory=dict)  # event file -> source URL template
    put: Mapping[str, str] = field(default_factory=dict)  # event file -> destination template
    format: Iterable[str] = ()  # event files whose contents are templates
    errdump: Iterable[str] = ()  # destination templates for failed events
    eventdir: str | None = None  # event directory template; None: temporary
    flags: Mapping[str, str] | None = None  # None: keep existing / defaults for new events
    public: bool = False
    jobs: int = max(1, os.cpu_count() or 1)
    scheduler: str = "threads"  # auto | threads | processes | synchronous | distributed | tcp://...
    version: str = ""
    err_alert: bool = False
    environ: Mapping[str, str] | None = None  # None: os.environ
    # events in flight at once (the window); 0: automatic, IN_FLIGHT_PER_SLOT per worker
    # (a pool's in_flight_per_slot where it asks more), at most MAX_IN_FLIGHT
    chunk_events: int = 0
    # values may hold "/" or ".." and so name other directories (--allow-path-values)
    allow_path_values: bool = False
    # seconds an event in use by another run is waited for before it is skipped;
    # None: LLAMA_BATCH_LOCK_WAIT_S (llama.config.network_option)
    lock_wait_s: float | None = None

    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ


@dataclass
class EventJob:
    """One event of the batch, with every template already rendered."""

    index: int
    vector: dict[str, str]
    directory: Path
    temporary: bool
    get: dict[str, str]
    put: dict[str, str]
    format: tuple[str, ...]
    errdump: tuple[str, ...]
    flags: Mapping[str, str] | None
    public: bool
    version: str
    handlers: tuple[type[FileHandler], ...]
    explicit: frozenset
    err_alert: bool
    environ: dict[str, str]

    def event(self) -> Event:
        """The event, shared by this job's tasks while they run in one process.

        Sharing keeps the flags read once and the checksum memo (each handler's
        output hash, recorded as it is written, is its dependants' input hash)
        instead of a fresh `Event` per task. Never pickled: a task sent to another
        process builds its own, as before.
        """
        event = self.__dict__.get("_event")
        if event is None:
            event = self.__dict__["_event"] = Event(self.directory)
        return event

    @property
    def affinity(self) -> str | None:
        """The source of this event's largest ``--get`` file: events with the same one
        (a sky map over many neutrino lists) run on one worker process where a pool
        routes them (`llama.batch.pools.Affinity`), which keeps the map and its
        products. Asked in the driver before the event runs; nothing is read.

        A local source counts by its size (``os.stat``, links followed) and is named
        by its real path (links to one file are one key); with no local source, the
        first URL as given (its size is not known without asking its server); None
        without ``--get`` files. Among local files the largest is the sky map in
        any pipeline that fetches one: a neutrino list or a JSON trigger is a few kB.
        """
        if "_affinity" not in self.__dict__:
            self.__dict__["_affinity"] = _affinity_key(self.get.values())
        return self.__dict__["_affinity"]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_event", None)
        state.pop("_affinity", None)  # the driver's: a worker has no use for it
        return state


def _affinity_key(sources: Iterable[str]) -> str | None:
    """`EventJob.affinity` of an event's ``--get`` sources.

    Examples
    --------
    >>> d = tempfile.mkdtemp()
    >>> for name, size in [("map.fits", 1000), ("list.json", 10)]:
    ...     _ = open(os.path.join(d, name), "wb").write(bytes(size))
    >>> os.symlink(os.path.join(d, "map.fits"), os.path.join(d, "link.fits"))
    >>> _affinity_key([d + "/list.json", d + "/link.fits"]) == os.path.realpath(d + "/map.fits")
    True
    >>> _affinity_key(["https://example.org/a.fits", "s3://b/c.fits"])
    'https://example.org/a.fits'
    >>> _affinity_key([d + "/missing.fits"]) is None
    True
    """
    from llama import storage

    best, largest, url = None, -1, None
    for source in sources:
        if not storage.is_local(source):
            url = source if url is None else url
            continue
        path = storage.filesystem_path(source)
        try:
            info = os.stat(path)
        except OSError:  # missing: the event's own failure to report, not the router's
            continue
        if info.st_size > largest and stat.S_ISREG(info.st_mode):
            best, largest = path, info.st_size
    if best is None:
        return url
    real = _REAL_PATHS.get(best)
    if real is None:
        if len(_REAL_PATHS) >= 4096:  # a bound for endless sweeps
            _REAL_PATHS.clear()
        real = _REAL_PATHS[best] = os.path.realpath(best)
    return real


#: Local sources' real paths, for `_affinity_key` (realpath ~66 us, stat ~5 us). A link
#: moved to another file during a run keeps its old key: events would go to another
#: worker than best, nothing worse (the key only picks a worker).
_REAL_PATHS: dict[str, str] = {}


@dataclass
class EventOutcome:
    """What happened to one event; the record that becomes a row of the results."""

    index: int
    eventid: str
    directory: str
    vector: dict[str, str]
    state: str  # done | up to date | vetoed | failed | skipped (in use by another run)
    statuses: dict[str, str] = field(default_factory=dict)
    error: str = ""
    records: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class BatchSummary:
    """Counts and timing of a whole batch run."""

    counts: Counter = field(default_factory=Counter)
    outcomes: list[EventOutcome] = field(default_factory=list)
    seconds: float = 0.0
    seed: int | None = None
    interrupted: bool = False
    #: handler name -> events where that handler, named with -f/+f, was left waiting
    waiting: Counter = field(default_factory=Counter)
    #: handler name -> the input files it waits for that nothing in the run supplies
    waiting_for: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no event failed or was skipped (in use by another run)."""
        return self.counts["failed"] == 0 and self.counts["skipped"] == 0 and not self.interrupted

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        """The one-line summary printed at the end of a run."""
        rate = self.total / self.seconds if self.seconds else 0.0
        states = ["done", "up to date", "vetoed", "failed"]
        if self.counts["skipped"]:  # only when it happened: the usual line stays short
            states.append("skipped")
        parts = ", ".join(f"{self.counts[k]} {k}" for k in states)
        line = f"{self.total} events: {parts} in {self.seconds:.1f} s ({rate:.1f} events/s)"
        if self.interrupted:  # the counts are the events that finished before it
            line += "; interrupted: run the same command again to finish the rest"
        return line

    def notes(self) -> list[str]:
        """Lines saying which handlers named with -f/+f were not made, and why.

        A handler waits when an input file is absent; in a batch that usually means
        an input nobody supplies (e.g. ``lvalert.json`` of the sub-threshold
        significance), and its events would otherwise count as done in silence.
        """
        lines = []
        for name, n in sorted(self.waiting.items()):
            files = self.waiting_for[name]
            fix = f"--get {files[0]}=URL" if len(files) == 1 else "--get FILE=URL for each"
            lines.append(
                f"note: {name} was not made in {n} event{'s' * (n != 1)}: it waits for "
                f"{', '.join(files)}, an input file that no handler makes; give it with {fix}"
            )
        return lines


# -- jobs ------------------------------------------------------------------------------
def make_job(
    index: int,
    vector: Mapping[str, str],
    config: BatchConfig,
    environ: dict[str, str] | None = None,
) -> EventJob:
    """Render every template of ``config`` for one parameter vector.

    ``environ``: the run's snapshot of ``config.env()``, shared (read-only) by every
    job of the run; None takes a fresh one. Copying ``os.environ`` decodes every
    variable, and once per event it was a quarter of an up-to-date re-run.
    """
    env = dict(config.env()) if environ is None else environ
    vector = dict(vector)
    mode = "path" if config.allow_path_values else "name"

    def render(tmpl: str) -> str:
        return template.render(tmpl, vector, env, mode=mode)

    if config.eventdir:
        directory = Path(os.path.expanduser(render(config.eventdir).rstrip("/")))
        temporary = False
    else:
        eventid = vector.get("graceid") or f"event-{index:06d}"
        directory = Path(tempfile.mkdtemp(prefix="llama-batch-")) / _plain_name(eventid)
        temporary = True
    return EventJob(
        index=index,
        vector=vector,
        directory=directory,
        temporary=temporary,
        get={dest: render(src) for dest, src in config.get.items()},
        put={src: render(dest) for src, dest in config.put.items()},
        format=tuple(config.format),
        errdump=tuple(render(d) for d in config.errdump),
        flags=config.flags,
        public=config.public,
        version=config.version,
        handlers=config.pipeline.handlers,
        explicit=config.pipeline.explicit,
        err_alert=config.err_alert,
        environ=env,
    )


def _plain_name(text: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text).strip(".")
    return name or "event"


# -- the per-event task (run by a worker) -----------------------------------------------
def run_event(job: EventJob) -> EventOutcome:
    """Bring one event up to date, start to end, in the calling worker.

    Prepare the directory, run each handler of the pipeline in dependency order (a
    handler whose input failed is left unmade, independent branches still run),
    then finish (puts, error dumps, records). Numba kernels called by the handlers
    run on this worker's thread alone (`llama.batch.schedulers`): the workers are
    the one level of parallelism.

    Never raises except KeyboardInterrupt: every problem becomes this event's failure.

    Examples
    --------
    >>> import tempfile
    >>> from llama.pipeline import select_pipeline
    >>> config = BatchConfig(pipeline=select_pipeline(exact=["SkymapInfo"]),
    ...                      eventdir=tempfile.mkdtemp() + "/{graceid}", flags={})
    >>> run_event(make_job(0, {"graceid": "S1"}, config)).state
    'done'
    """
    from llama.batch.schedulers import single_threaded_kernels
    from llama.batch.worker_processes import after_event

    prepared = prepare_event(job)
    statuses: dict[type[FileHandler], str] = {}
    for handler in job.handlers:  # topological order: dependencies first
        single_threaded_kernels()  # once Numba is loaded (by a handler), before each
        deps = [statuses[d] for d in handler.DEPENDENCIES if d in statuses]
        statuses[handler] = run_handler(job, handler, prepared, *deps)
    outcome = finish_event(job, prepared, *statuses.values())
    after_event()  # a worker process records its kernels after its first event
    return outcome


# -- the steps of an event -------------------------------------------------------------
def prepare_event(job: EventJob) -> str:
    """Create the event directory, set flags, fetch ``--get`` files, apply ``--format``.

    Returns "" on success or the traceback text of the failure. Files already in the
    event are never overwritten by ``--get`` (PIPELINE.md: supplied files are inputs).
    """
    from llama import storage

    try:
        event = job.event()
        event.remove_leftovers()  # a killed run's temporary files (the lock is ours)
        if job.flags is not None:
            event.write_flags(job.flags)
        elif not (job.directory / "FLAGS.json").exists():
            event.write_flags({})
        # read the flags now: a damaged FLAGS.json fails the event once, here, rather
        # than once per handler when each one asks whether it is vetoed
        _ = event.flags
        for dest, url in job.get.items():
            target = storage.safe_join(job.directory, dest)
            if target.exists():
                continue
            if dest in job.format:
                text = _format_text(storage.read_text(url), job, dest)
                _atomic_text(target, text)
            else:
                copied = storage.get(url, target)
                if copied is not None and target.parent == job.directory:
                    # its checksum from an earlier copy of the same file, if one was
                    # hashed (a batch's events share their sky maps): not hashed again
                    event.note_copy(target.name, copied)
        for name in job.format:
            if name not in job.get:  # a file already in the event
                target = storage.safe_join(job.directory, name)
                _atomic_text(target, _format_text(target.read_text(), job, name))
        return ""
    except Exception as err:  # one bad event never stops the batch
        return _failure_text(err)


def _format_text(text: str, job: EventJob, name: str) -> str:
    # --format files are contents, not paths: any value may go in (mode "text")
    try:
        return template.render(text, job.vector, job.environ, mode="text")
    except template.CredentialFieldError as err:
        # the message names the field; the user also needs to know which file asked
        raise template.CredentialFieldError(f"--format {name}: {err}") from None


def _reason(err: BaseException) -> str:
    """One line saying why an event failed, without the traceback."""
    from llama import storage
    from llama.event import EventError

    if isinstance(err, (EventError, HandlerFailed)):
        text = str(err)
    else:
        text = f"{type(err).__name__}: {err}"
    return storage.redact(" ".join(text.split()))


def _failure_text(err: BaseException) -> str:
    """The record of a failure: its one-line reason, a blank line, the traceback.

    Redacted (`llama.storage.redact`): it goes to ERRDUMP.log and to alerts.
    """
    from llama import storage

    return storage.redact(f"{_reason(err)}\n\n{traceback.format_exc()}")


def _atomic_text(path: Path, text: str) -> None:
    from llama.event import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def run_handler(job: EventJob, handler: type[FileHandler], prepared: str, *deps: str) -> str:
    """Bring one handler's file up to date; return its final status (a string).

    ``prepared`` is `prepare_event`'s result and ``deps`` the statuses of the
    dependencies in this pipeline: a failed one leaves this handler unmade.
    """
    if prepared:
        return Status.FAILED.value + ": event preparation failed"
    if any(d.startswith(Status.FAILED.value) for d in deps):
        return Status.WAITING.value + ": an input failed"
    try:
        return _bring_up_to_date(job, handler)
    except Exception as err:  # one handler's failure is this event's, never the batch's
        # (its .failed.json rider was redacted as it was written: llama.event)
        log.warning("%s: %s", job.directory.name, _reason(err))
        return f"{Status.FAILED.value}: {_reason(err)}"


def _bring_up_to_date(job: EventJob, handler: type[FileHandler]) -> str:
    event = job.event()
    status = event.status(handler)
    if status in (Status.READY, Status.OBSOLETE, Status.FAILED):
        if status is Status.FAILED and event.missing_inputs(handler):
            return Status.WAITING.value
        event.generate(handler, job.version)
        return Status.EXISTS.value
    if status is Status.WAITING and handler in job.explicit:
        missing = ", ".join(event.missing_inputs(handler))
        return (
            f"{Status.FAILED.value}: missing inputs {missing} "
            "(-f makes no ancestors; use +f to make them, or --get them)"
        )
    return status.value


def finish_event(job: EventJob, prepared: str, *statuses: str) -> EventOutcome:
    """Upload ``--put`` files, dump failures, collect records, remove temporary dirs.

    Never raises (KeyboardInterrupt aside): this is the last step of the event, and
    anything unexpected becomes this event's failure.
    """
    try:
        return _finish_event(job, prepared, *statuses)
    except Exception as err:
        outcome = EventOutcome(
            index=job.index,
            eventid=job.directory.name,
            directory=str(job.directory),
            vector=job.vector,
            state="failed",
            error=_reason(err),
        )
        try:
            _report_failure(job, _failure_text(err), outcome)
        except Exception as again:  # reporting is best effort; the count is what matters
            log.error("event %s failed: %s (reporting it failed too: %s)",
                      outcome.eventid, outcome.error, _reason(again))  # fmt: skip
        if job.temporary:
            shutil.rmtree(job.directory.parent, ignore_errors=True)
        return outcome


def _finish_event(job: EventJob, prepared: str, *statuses: str) -> EventOutcome:
    from llama import storage

    names = [h.__name__ for h in job.handlers]
    by_name = dict(zip(names, statuses, strict=True))
    outcome = EventOutcome(
        index=job.index,
        eventid=job.directory.name,
        directory=str(job.directory),
        vector=job.vector,
        state="done",
        statuses={k: v.split(":")[0] for k, v in by_name.items()},
    )
    errors = [f"{k}: {v}" for k, v in by_name.items() if v.startswith(Status.FAILED.value)]
    trace = prepared
    try:
        if not prepared:
            outcome.records = _collect_records(job, job.event())
            if not errors:  # the rider marks the event finished: only after success
                _write_rider(job, _do_puts(job, storage), outcome.records)
    except Exception as err:
        trace = _failure_text(err)
    if trace or errors:
        outcome.state = "failed"
        # a failure text starts with its one-line reason (`_failure_text`)
        outcome.error = trace.strip().splitlines()[0] if trace else "; ".join(errors)
        _report_failure(job, trace or "\n".join(errors + _failed_tracebacks(job)), outcome)
    elif statuses and all(s == Status.VETOED.value for s in statuses):
        outcome.state = "vetoed"
    if job.temporary:
        shutil.rmtree(job.directory.parent, ignore_errors=True)
    return outcome


def _do_puts(job: EventJob, storage) -> dict[str, list[str]]:
    done = {}
    for src, dest in job.put.items():
        path = storage.safe_join(job.directory, src)
        if not path.exists():
            raise FileNotFoundError(
                f"--put {src}: the event has no {src} (was its handler in the pipeline?)"
            )
        storage.put(path, dest, public=job.public)
        done[src] = [dest, sha256_file(path)]
    return done


def _collect_records(job: EventJob, event: Event | None = None) -> dict[str, Any]:
    event = Event(job.directory) if event is None else event
    records: dict[str, Any] = {}
    for handler in job.handlers:
        if event.has(handler.FILENAME):
            try:
                records.update(handler.record(event))
            except Exception as err:  # a record is a summary: never fail the event for it
                log.debug("%s: no record from %s: %s", event.eventid, handler.__name__, err)
    return records


def _write_rider(job: EventJob, puts: dict[str, list[str]], records: dict[str, Any]) -> None:
    """Mark the event finished: what it ran, what it uploaded, and its records.

    The records are kept with the size and mtime of each file they were read from, so
    that a re-run finding the event up to date takes them from here instead of
    reading and parsing every file again (1.5 ms per event for skymap_info.json alone,
    most of an up-to-date re-run).
    """
    rider: dict[str, Any] = {
        "vector": job.vector,
        "pipeline": [h.__name__ for h in job.handlers],
        "puts": puts,
        "version": job.version,
    }
    plain = _plain_records(records)
    if plain is not None:
        rider["records"] = plain
        rider["stamps"] = _stamps(job)
    write_rider(f"{job.directory}/{BATCH_RIDER}", rider)


def _plain_records(records: dict[str, Any]) -> dict[str, Any] | None:
    """``records`` with NumPy scalars as Python ones; None if a value is neither a scalar
    nor a dict of lists of numbers (the per-neutrino columns of the significance)."""
    plain = {}
    for key, value in records.items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item() if getattr(value, "ndim", 0) == 0 else None
            if value is None:
                return None
        if isinstance(value, dict):
            if not all(
                isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)
                for v in value.values()
            ):
                return None
        elif not (value is None or isinstance(value, (str, int, float, bool))):
            return None
        plain[key] = value
    return plain


def _stamps(job: EventJob) -> dict[str, list[int]]:
    """Size and mtime (ns) of each handler's file present in the event."""
    stamps = {}
    for handler in job.handlers:
        try:
            st = os.stat(f"{job.directory}/{handler.FILENAME}")
        except OSError:
            continue
        stamps[handler.FILENAME] = [st.st_size, st.st_mtime_ns]
    return stamps


def _kept_records(job: EventJob, rider: dict[str, Any]) -> dict[str, Any] | None:
    """The records kept in the rider, if every file they came from is unchanged."""
    records, stamps = rider.get("records"), rider.get("stamps")
    if not isinstance(records, dict) or not isinstance(stamps, dict):
        return None
    return records if _stamps(job) == stamps else None


def _failed_tracebacks(job: EventJob) -> list[str]:
    import json

    from llama import storage

    event = Event(job.directory)
    texts = []
    for h in job.handlers:
        p = event.failed_path(h.FILENAME)
        try:
            texts.append(storage.redact(json.loads(p.read_text()).get("traceback", "")))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, AttributeError) as err:
            # a damaged rider only loses detail for the dump; the failure is reported anyway
            texts.append(f"(unreadable {p.name}: {type(err).__name__}: {err})")
    return texts


def _report_failure(job: EventJob, text: str, outcome: EventOutcome) -> None:
    from llama import storage

    # the text goes to dumps and alerts: no credential in it, wherever it came from
    text = storage.redact(text)
    log.error("event %s failed: %s", outcome.eventid, outcome.error)
    log.debug("event %s traceback:\n%s", outcome.eventid, text)
    if job.errdump:
        from llama.batch import errdump

        # job.errdump is already rendered: a second rendering would read a value such
        # as "{HOME}" as a field of its own
        places = errdump.dump_event(
            job.directory, list(job.errdump), text, job.vector, job.public, rendered=True
        )
        log.info("event %s dumped to %s", outcome.eventid, ", ".join(map(str, places)))
    if job.err_alert:
        from llama.batch.alerts import alert_maintainers

        try:
            alert_maintainers(outcome.eventid, text, job.vector)
        except Exception as err:  # an alert that fails must not hide the event's failure
            log.error("alert for event %s failed: %s", outcome.eventid, _reason(err))


# -- the driver ------------------------------------------------------------------------
def up_to_date(job: EventJob) -> bool:
    """Whether ``job``'s event needs no work: a stat-and-checksum pass, no task.

    True when a previous batch finished this event with the same vector and pipeline,
    every ``--get`` file is present, no handler has work left, and every ``--put``
    file is unchanged since it was uploaded.
    """
    return _settled_statuses(job) is not None


def _settled_statuses(job: EventJob) -> tuple[Event, dict[str, str], dict] | None:
    """`up_to_date`, returning the event, its handlers' statuses and the batch rider
    when it holds."""
    import json

    directory = str(job.directory)  # string paths: Path objects cost more than the stats
    try:
        with open(f"{directory}/{BATCH_RIDER}", "rb") as f:
            previous = json.loads(f.read())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if previous.get("vector") != job.vector or previous.get("pipeline") != [
        h.__name__ for h in job.handlers
    ]:
        return None
    if any(not os.path.exists(f"{directory}/{name}") for name in job.get):
        return None
    event = Event(job.directory)
    statuses = {}
    for handler in job.handlers:
        status = event.status(handler)
        if status not in _SETTLED or (status is Status.WAITING and handler in job.explicit):
            return None
        statuses[handler.__name__] = status.value
    for src, dest in job.put.items():
        if previous.get("puts", {}).get(src) != [dest, event.sha256(src)]:
            return None
    return event, statuses, previous


def _quick_settled(job: EventJob) -> tuple[Event, dict[str, str], dict] | None:
    """`_settled_statuses`, None when it cannot tell (the event then runs as a task).

    The pass is only a shortcut: an event directory it cannot read (a file in the
    way, a name too long, a damaged FLAGS.json) goes to its task, which turns the
    same problem into this event's failure instead of stopping the batch.
    """
    try:
        return _settled_statuses(job)
    except Exception as err:
        log.debug("%s: up-to-date check failed: %s", job.directory.name, _reason(err))
        return None


class _Progress:
    """A progress bar on a terminal, plain log lines every 10 s otherwise."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        import sys

        self.total, self.count, self.failed = total, 0, 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="event", dynamic_ncols=True)
        self.enabled = enabled

    def update(self, outcome: EventOutcome) -> None:
        self.count += 1
        self.failed += outcome.state == "failed"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(failed=self.failed)
        elif self.enabled and time.monotonic() - self.last > 10:
            self.last = time.monotonic()
            rate = self.count / (self.last - self.start)
            of = f"/{self.total}" if self.total is not None else ""
            log.info("%d%s events (%.1f/s), %d failed", self.count, of, rate, self.failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batch(
    vectors: Iterable[Mapping[str, str]],
    config: BatchConfig,
    total: int | None = None,
    progress: bool = True,
    keep_outcomes: bool = True,
    on_outcome: Callable[[EventOutcome], None] | None = None,
) -> BatchSummary:
    """Run every parameter vector as one event through ``config.pipeline``.

    Parameters
    ----------
    vectors
        Parameter vectors (dicts name -> value); may be endless.
    config
        The run's settings.
    total
        Number of vectors if known (for the progress bar).
    progress
        Show progress (a bar on a terminal, log lines otherwise).
    keep_outcomes
        Keep every `EventOutcome` in the summary (turn off for endless runs so memory
        stays bounded).
    on_outcome
        Called with each `EventOutcome` as its event finishes (in the driver, one call
        at a time), e.g. to write results incrementally or drive a notebook display.

    Returns
    -------
    BatchSummary
        Counts per state, outcomes, time taken. One failing event never stops the run.

    Raises
    ------
    ValueError
        ``config.jobs`` is below 1 or above `max_jobs` (see `check_jobs`).

    Notes
    -----
    Parallelism: one level, the events. ``config.jobs`` events run at once, one per
    worker (threads, processes or Dask worker processes), and every Numba kernel
    inside an event runs on its worker's thread alone, so ``--jobs N`` uses N cores
    and never N times Numba's own threads. ``synchronous`` runs one event at a time
    in the calling thread: one core, whatever ``config.jobs`` says. Threads share
    the interpreter: only kernels compiled ``nogil=True`` run side by side there;
    ``processes`` and ``distributed`` have no such limit.

    A sliding window: at most ``config.chunk_events`` events (automatic: two per
    worker, three where each worker has a queue of its own, processes and
    distributed; never more than `MAX_IN_FLIGHT`) are in flight, and the next is
    submitted as each one finishes, so a slow event holds back no other; outcomes
    are recorded in the order events finish. Processes and distributed send the
    events of one sky map to one worker (`EventJob.affinity`), which keeps the map
    and its products, while no worker idles (`llama.batch.pools.Affinity`). Two vectors naming the same event directory never
    run at once: the later waits for the earlier to finish (and is then usually up
    to date).

    Each event directory is locked (`llama.batch.locks`) from its up-to-date check to
    its outcome. An event that another run holds waits, while the rest of the batch
    goes on, up to ``config.lock_wait_s`` seconds for the lock to be free (it is then
    usually up to date); past that it is counted as "skipped" and `BatchSummary.ok`
    is False.
    """
    from llama.batch.schedulers import make_pool

    start = time.monotonic()
    summary = BatchSummary()
    check_jobs(config.jobs)
    pool = make_pool(config.scheduler, config.jobs, run_event, total=total)
    bar = _Progress(total, progress)
    window = min(config.chunk_events or automatic_window(pool), MAX_IN_FLIGHT)
    environ = dict(config.env())  # one snapshot for the whole run
    jobs = (make_job(i, v, config, environ) for i, v in enumerate(vectors))
    if config.lock_wait_s is None:
        from llama.config import network_option

        held = _HeldLocks(network_option("lock_wait_s"))
    else:
        held = _HeldLocks(config.lock_wait_s)

    # handlers named with -f/+f that need an input file no handler makes and no --get
    # fetches: when one is left waiting, the run says so at its end (BatchSummary.notes)
    for handler in config.pipeline.requested:
        files = [d.FILENAME for d in handler.DEPENDENCIES if d.is_input() and d.FILENAME not in config.get]  # fmt: skip
        if files:
            summary.waiting_for[handler.__name__] = files

    def record(outcome: EventOutcome) -> None:
        summary.counts[outcome.state] += 1
        for name in summary.waiting_for:
            if outcome.statuses.get(name) == Status.WAITING.value:
                summary.waiting[name] += 1
        if keep_outcomes:
            summary.outcomes.append(outcome)
        bar.update(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        held.release(outcome.index)

    try:
        _Window(jobs, pool, held, record, window).run()
    except KeyboardInterrupt:
        summary.interrupted = True
        log.warning("interrupted: run the same command again to resume")
    finally:
        held.release_all()
        bar.close()
        pool.close(interrupted=summary.interrupted)
    summary.outcomes.sort(key=lambda o: o.index)
    summary.seconds = time.monotonic() - start
    return summary


class _Window:
    """The driver loop: keep up to ``size`` events in flight, record each as it ends.

    Every job drawn is locked, checked for being up to date (recorded at once, no
    task) or submitted; a job whose directory is in flight already is deferred until
    that one finishes, and at most ``size`` are deferred before drawing stops, so
    memory stays bounded on endless sweeps. Events in use by another run wait in
    `_HeldLocks` and are tried again every `RETRY_S` seconds.
    """

    RETRY_S = 0.1

    def __init__(self, jobs: Iterator[EventJob], pool, held: _HeldLocks, record, size: int):
        self.jobs, self.pool, self.held, self.record = jobs, pool, held, record
        self.size = max(1, size)
        self.running: dict[Path, EventJob] = {}  # event directory -> its job in flight
        self.deferred: deque[EventJob] = deque()  # same directory as one in flight
        self.ready: deque[EventJob] = deque()  # waited for; now locked by this run
        self.exhausted = False

    def run(self) -> None:
        pool, held = self.pool, self.held
        next_retry = 0.0
        while True:
            while pool.in_flight < self.size:
                picked = self._pick()
                if picked is None:
                    break
                self._start(*picked)
            if pool.in_flight:
                finished = pool.next_finished(timeout=self.RETRY_S if held.waiting else 1.0)
                if finished is not None:
                    self._finished(*finished)
            elif held.waiting:  # only events in use elsewhere are left: wait for them
                time.sleep(self.RETRY_S)
            elif self.exhausted and not self.deferred and not self.ready:
                return
            if held.waiting and time.monotonic() >= next_retry:
                self.ready.extend(held.retry(self.record))
                next_retry = time.monotonic() + self.RETRY_S

    def _pick(self) -> tuple[EventJob, bool] | None:
        """The next job to start and whether this run holds its lock already."""
        if self.ready:
            return self.ready.popleft(), True
        for k, job in enumerate(self.deferred):
            if job.directory not in self.running:
                del self.deferred[k]
                return job, False
        while not self.exhausted and len(self.deferred) < self.size:
            job = next(self.jobs, None)
            if job is None:
                self.exhausted = True
            elif job.directory in self.running:
                self.deferred.append(job)
            else:
                return job, False
        return None

    def _start(self, job: EventJob, locked: bool) -> None:
        if not locked and not self.held.take([job]):
            return  # in use by another run: it waits in self.held
        settled = None if job.temporary else _quick_settled(job)
        if settled is not None:
            self.record(_settled_outcome(job, *settled))
            return
        self.running[job.directory] = job
        self.pool.submit(job)

    def _finished(self, job: EventJob, result: EventOutcome | BaseException) -> None:
        self.running.pop(job.directory, None)
        if isinstance(result, BaseException):  # the worker died or the task was lost
            result = _lost_outcome(job, result)
        self.record(result)


#: Exceptions a pool hands back for an event whose worker went away (by name: the
#: cluster's and distributed's classes are not imported where no cluster runs).
_WORKER_LOST = (
    "WorkerLost",
    "BrokenProcessPool",
    "BrokenExecutor",
    "KilledWorker",
    "CommClosedError",
)


def _lost_outcome(job: EventJob, err: BaseException) -> EventOutcome:
    """The failure of an event whose task never returned: its worker was lost (died,
    or could not be reached), or the pool failed to run the task."""
    reason = _reason(err).removeprefix("WorkerLost: ")  # its message says how, in words
    if any(c.__name__ in _WORKER_LOST for c in type(err).__mro__):
        error = f"its worker was lost: {reason}"
    else:
        error = f"its task failed in the pool: {reason}"
    outcome = EventOutcome(
        index=job.index,
        eventid=job.directory.name,
        directory=str(job.directory),
        vector=job.vector,
        state="failed",
        error=error,
    )
    log.error("event %s failed: %s", outcome.eventid, outcome.error)
    return outcome


class _HeldLocks:
    """The event locks this run holds, and the events it waits for (in use elsewhere).

    An event that another run is using (`llama.batch.locks`) is put aside while the
    batch goes on, tried again every `_Window.RETRY_S` seconds, and skipped (state
    "skipped", one warning naming the holder) once it has waited ``wait_s`` seconds.
    """

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.locks: dict[int, Any] = {}
        self.waiting: list[tuple[EventJob, float]] = []  # job, deadline

    def _try(self, job: EventJob) -> str | None:
        from llama.batch.locks import EventLock

        lock = EventLock(job.directory)
        try:
            holder = lock.acquire()
        except OSError as err:
            # a problem of the directory itself (a file in the way, a name too long):
            # its task turns the same problem into this event's failure
            log.debug("%s: not locked: %s", job.directory.name, _reason(err))
            return None
        if holder is None:
            self.locks[job.index] = lock
        return holder

    def take(self, group: list[EventJob]) -> list[EventJob]:
        """Lock each job's event; return those locked, set the others aside."""
        ready = []
        for job in group:
            holder = None if job.temporary else self._try(job)
            if holder is None:
                ready.append(job)
                continue
            # INFO: two runs sharing a sweep meet on every event, and each only waits
            log.info(
                "event %s in use by %s: waiting (up to %g s, LLAMA_BATCH_LOCK_WAIT_S) "
                "while other events run",
                job.directory, holder, self.wait_s,
            )  # fmt: skip
            self.waiting.append((job, time.monotonic() + self.wait_s))
        return ready

    def retry(self, record) -> list[EventJob]:
        """The waiting jobs whose lock is free now; those out of time are skipped."""
        ready, still = [], []
        for job, deadline in self.waiting:
            now_holder = self._try(job)
            if now_holder is None:
                ready.append(job)
            elif time.monotonic() >= deadline:
                log.warning(
                    "event %s in use by %s: skipped; run the same command again once "
                    "that run is over",
                    job.directory, now_holder,
                )  # fmt: skip
                record(_skipped_outcome(job, now_holder))
            else:
                still.append((job, deadline))
        self.waiting = still
        return ready

    def release(self, index: int) -> None:
        lock = self.locks.pop(index, None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for index in list(self.locks):
            self.release(index)


def _skipped_outcome(job: EventJob, holder: str) -> EventOutcome:
    return EventOutcome(
        index=job.index,
        eventid=job.directory.name,
        directory=str(job.directory),
        vector=job.vector,
        state="skipped",
        error=f"in use by {holder}",
    )


def _settled_outcome(
    job: EventJob, event: Event, statuses: dict[str, str], rider: dict
) -> EventOutcome:
    # the statuses are those of the up-to-date pass that just ran: not computed twice;
    # the records those of the finished run, when no file changed since
    vetoed = statuses and all(s == Status.VETOED.value for s in statuses.values())
    records = _kept_records(job, rider)
    if records is None:
        records = _collect_records(job, event)
    return EventOutcome(
        index=job.index,
        eventid=job.directory.name,
        directory=str(job.directory),
        vector=job.vector,
        state="vetoed" if vetoed else "up to date",
        statuses=statuses,
        records=records,
    )
