"""Run events through the handler DAG on Dask: scheduling, progress, summary.

Data flows one way: parameter vectors -> `EventJob` (paths rendered from templates)
-> one dask.delayed graph per event (prepare -> one task per handler, edges from
DEPENDENCIES -> finish) -> files in the event directory + one `EventOutcome` record
per event.

An event whose files are all up to date (same inputs, same pipeline, same puts) is
recognised in the driver by a stat-and-checksum pass and never becomes Dask tasks,
so re-running a finished or interrupted batch only does the missing work.

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
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama.batch import template
from llama.event import Event, HandlerFailed, atomic_write_json, sha256_file
from llama.handler import FileHandler, Status
from llama.pipeline import Pipeline

__all__ = [
    "JOBS_PER_CPU",
    "MAX_IN_FLIGHT",
    "BatchConfig",
    "BatchSummary",
    "EventJob",
    "EventOutcome",
    "check_jobs",
    "max_jobs",
    "run_batch",
]

log = logging.getLogger("llama.batch")

#: Rider in each event directory recording the last batch run that finished it.
BATCH_RIDER = ".batch.json"
#: Handler states that mean "nothing left to do" for that handler.
_SETTLED = {Status.EXISTS, Status.VETOED, Status.NOT_APPLICABLE, Status.WAITING}
#: Most events handed to Dask at once, whatever --jobs says: each pending event holds
#: its job (vector, rendered paths, a copy of the environment) and its task graph,
#: and 20,000 jobs used to queue 160,000 of them (3 GB) before any work began.
MAX_IN_FLIGHT = 1024
#: Most --jobs per CPU: beyond this, threads or processes only wait on one another.
JOBS_PER_CPU = 64


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
    scheduler: str = "threads"  # threads | processes | synchronous | distributed | tcp://...
    version: str = ""
    err_alert: bool = False
    environ: Mapping[str, str] | None = None  # None: os.environ
    chunk_events: int = 0  # events handed to Dask at once; 0: automatic (<= MAX_IN_FLIGHT)
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

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_event", None)
        return state


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
        return f"{self.total} events: {parts} in {self.seconds:.1f} s ({rate:.1f} events/s)"


# -- jobs ------------------------------------------------------------------------------
def make_job(index: int, vector: Mapping[str, str], config: BatchConfig) -> EventJob:
    """Render every template of ``config`` for one parameter vector."""
    env = config.env()
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
        environ=dict(env),
    )


def _plain_name(text: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text).strip(".")
    return name or "event"


# -- the per-event task functions (run by Dask workers) --------------------------------
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
                storage.get(url, target)
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
    except Exception as err:  # a Dask task that raises would stop the whole batch
        try:
            _redact_failed_rider(job, handler)
        except Exception as again:  # the failure itself is what must be reported
            log.debug("%s: could not redact the failure record: %s", job.directory.name, again)
        log.warning("%s: %s", job.directory.name, _reason(err))
        return f"{Status.FAILED.value}: {_reason(err)}"


def _redact_failed_rider(job: EventJob, handler: type[FileHandler]) -> None:
    """Rewrite the handler's ``.F.failed.json`` with credentials blanked.

    The rider holds the traceback text of the failure, whose exception message may
    quote a URL with its token (a server echoing the request, say); it stays in the
    event directory and is copied into error dumps.
    """
    import json

    from llama import storage

    path = job.event().failed_path(handler.FILENAME)
    try:
        rider = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no rider (the failure came before generate) or unreadable
        return
    if not isinstance(rider, dict):
        return
    # redact the decoded strings, not the JSON text, whose escapes could hide a secret
    clean = {k: storage.redact(v) if isinstance(v, str) else v for k, v in rider.items()}
    if clean != rider:
        atomic_write_json(path, clean)


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

    Never raises: this is the last task of the event's graph, and an exception from
    a Dask task would stop every other event of the batch. Anything unexpected
    becomes this event's failure.
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
                _write_rider(job, _do_puts(job, storage))
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
        if event.path(handler.FILENAME).exists():
            try:
                records.update(handler.record(event))
            except Exception as err:  # a record is a summary: never fail the event for it
                log.debug("%s: no record from %s: %s", event.eventid, handler.__name__, err)
    return records


def _write_rider(job: EventJob, puts: dict[str, list[str]]) -> None:
    atomic_write_json(
        job.directory / BATCH_RIDER,
        {
            "vector": job.vector,
            "pipeline": [h.__name__ for h in job.handlers],
            "puts": puts,
            "version": job.version,
        },
    )


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
    """Whether ``job``'s event needs no work: a stat-and-checksum pass, no Dask.

    True when a previous batch finished this event with the same vector and pipeline,
    every ``--get`` file is present, no handler has work left, and every ``--put``
    file is unchanged since it was uploaded.
    """
    return _settled_statuses(job) is not None


def _settled_statuses(job: EventJob) -> tuple[Event, dict[str, str]] | None:
    """`up_to_date`, returning the event and its handlers' statuses when it holds."""
    import json

    rider = job.directory / BATCH_RIDER
    try:
        with open(rider, "rb") as f:
            previous = json.loads(f.read())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if previous.get("vector") != job.vector or previous.get("pipeline") != [
        h.__name__ for h in job.handlers
    ]:
        return None
    if any(not (job.directory / name).exists() for name in job.get):
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
    return event, statuses


def _quick_settled(job: EventJob) -> tuple[Event, dict[str, str]] | None:
    """`_settled_statuses`, None when it cannot tell (the event then runs as a graph).

    The pass is only a shortcut: an event directory it cannot read (a file in the
    way, a name too long, a damaged FLAGS.json) goes to its graph, whose tasks turn
    the same problem into this event's failure instead of stopping the batch.
    """
    try:
        return _settled_statuses(job)
    except Exception as err:
        log.debug("%s: up-to-date check failed: %s", job.directory.name, _reason(err))
        return None


def event_graph(job: EventJob):
    """The Dask graph of one event: prepare -> handlers -> finish, as a Delayed.

    The graph is written out directly (a plain dict of task tuples) rather than built
    with ``dask.delayed`` calls: those walk every argument looking for collections,
    and the job (a dataclass holding the environment, the vector and the templates)
    was walked once per task, which cost more than running a trivial handler.
    Arguments are the job (unhashable, so never mistaken for a key), handler classes
    and the keys of the tasks each one depends on.
    """
    from dask.delayed import Delayed

    tag = f"{job.index}-{job.directory.name}"
    prepared = f"prepare-{tag}"
    dsk: dict[str, tuple] = {prepared: (prepare_event, job)}
    keys: dict[type[FileHandler], str] = {}
    for handler in job.handlers:  # topological order: dependencies first
        key = f"{handler.__name__}-{tag}"
        deps = [keys[d] for d in handler.DEPENDENCIES if d in keys]
        dsk[key] = (run_handler, job, handler, prepared, *deps)
        keys[handler] = key
    finish = f"finish-{tag}"
    dsk[finish] = (finish_event, job, prepared, *keys.values())
    return Delayed(finish, dsk)


def _chunks(jobs: Iterator[EventJob], size: int) -> Iterator[list[EventJob]]:
    """Groups of jobs with distinct directories (a duplicate waits for a later group)."""
    deferred: list[EventJob] = []
    exhausted = False
    while not exhausted or deferred:
        chunk, dirs, carry = [], set(), []
        for job in deferred:
            (carry if job.directory in dirs or len(chunk) >= size else chunk).append(job)
            dirs.add(job.directory)
        deferred = carry
        while len(chunk) < size and not exhausted:
            job = next(jobs, None)
            if job is None:
                exhausted = True
            elif job.directory in dirs:
                deferred.append(job)
            else:
                chunk.append(job)
                dirs.add(job.directory)
        if chunk:
            yield chunk


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


def _ignore_sigint() -> None:
    """Initializer of worker processes: SIGINT (Ctrl-C) goes to the driver only."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Scheduler:
    """Runs lists of delayed objects on the chosen Dask scheduler."""

    def __init__(self, name: str, jobs: int) -> None:
        self.name, self.jobs, self.client, self.cluster = name, jobs, None, None
        self.pool = None  # the worker processes of scheduler "processes" (made on first use)
        if name == "distributed" or "://" in name:
            from distributed import Client, LocalCluster

            if name == "distributed":
                self.cluster = LocalCluster(
                    n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None
                )
                self.client = Client(self.cluster)
            else:
                self.client = Client(name)
            log.info("Dask distributed scheduler at %s", self.client.scheduler.address)
        elif name not in ("threads", "processes", "synchronous"):
            raise ValueError(
                f"unknown scheduler {name!r}; use threads, processes, synchronous, "
                "distributed (a local cluster) or a scheduler address tcp://HOST:PORT"
            )

    def run(self, graphs: list, on_result) -> None:
        if self.client is not None:
            from distributed import as_completed

            futures = self.client.compute(graphs)
            for future in as_completed(futures):
                on_result(future.result())
            return
        import dask
        from dask.callbacks import Callback

        # report each event as its finish task completes, not when the whole chunk does,
        # so progress and outcomes flow while the chunk's slower events still run
        def posttask(key, result, dsk, state, worker_id):
            if isinstance(key, str) and key.startswith("finish-"):
                on_result(result)

        extra = {}
        if self.name == "processes":
            extra["pool"] = self._process_pool()
        with Callback(posttask=posttask):
            dask.compute(*graphs, scheduler=self.name, num_workers=self.jobs, **extra)

    def _process_pool(self):
        """One pool of worker processes for the whole run, made as Dask makes its own.

        Dask shuts the pool it makes down at the end of each compute, waiting for the
        running tasks: after Ctrl-C that was minutes behind a server that never
        answers. With a pool of ours, `close` decides whether to wait.
        """
        if self.pool is None:
            from concurrent.futures import ProcessPoolExecutor
            from functools import partial

            from dask.multiprocessing import get_context, initialize_worker_process

            # what Dask does for its own pool: hashing consistent across the workers
            if os.environ.get("PYTHONHASHSEED") in (None, "0"):
                os.environ["PYTHONHASHSEED"] = "6640"
            # Ctrl-C is the driver's to handle: workers that got it too printed tracebacks
            init = partial(initialize_worker_process, user_initializer=_ignore_sigint)
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=get_context(), initializer=init)
        return self.pool

    def close(self, interrupted: bool = False) -> None:
        """Let the workers go; after Ctrl-C without waiting for their running tasks."""
        if self.pool is not None:
            self.pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


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
    Events reach Dask in groups of at most `MAX_IN_FLIGHT` (8 per job, at least 16),
    so memory stays bounded however large ``config.jobs`` or the sweep is.

    Each event directory is locked (`llama.batch.locks`) from its up-to-date check to
    its outcome. An event that another run holds waits, while the rest of the batch
    goes on, up to ``config.lock_wait_s`` seconds for the lock to be free (it is then
    usually up to date); past that it is counted as "skipped" and `BatchSummary.ok`
    is False.
    """
    start = time.monotonic()
    summary = BatchSummary()
    bar = _Progress(total, progress)
    check_jobs(config.jobs)
    # enough events to keep every job busy, never more than MAX_IN_FLIGHT at once
    chunk = config.chunk_events or min(max(16, 8 * config.jobs), MAX_IN_FLIGHT)
    jobs = (make_job(i, v, config) for i, v in enumerate(vectors))
    scheduler = _Scheduler(config.scheduler, config.jobs)
    lock = threading.Lock()
    if config.lock_wait_s is None:
        from llama.config import network_option

        held = _HeldLocks(network_option("lock_wait_s"))
    else:
        held = _HeldLocks(config.lock_wait_s)

    def record(outcome: EventOutcome) -> None:
        with lock:
            summary.counts[outcome.state] += 1
            if keep_outcomes:
                summary.outcomes.append(outcome)
            bar.update(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        held.release(outcome.index)

    def run(group: list[EventJob]) -> None:
        graphs = []
        for job in group:
            settled = None if job.temporary else _quick_settled(job)
            if settled is not None:
                record(_settled_outcome(job, *settled))
            else:
                graphs.append(event_graph(job))
        if graphs:
            scheduler.run(graphs, record)
        held.release_all()  # an outcome that never came must not keep its event locked

    def run_waiting() -> None:
        for group in _chunks(iter(held.retry(record)), chunk):
            run(group)

    try:
        for group in _chunks(jobs, chunk):
            run(held.take(group))
            run_waiting()
        while held.waiting:  # the end: events in use get what is left of their wait
            time.sleep(0.1)
            run_waiting()
    except KeyboardInterrupt:
        summary.interrupted = True
        log.warning("interrupted: run the same command again to resume")
    finally:
        held.release_all()
        bar.close()
        scheduler.close(interrupted=summary.interrupted)
    summary.outcomes.sort(key=lambda o: o.index)
    summary.seconds = time.monotonic() - start
    return summary


class _HeldLocks:
    """The event locks this run holds, and the events it waits for (in use elsewhere).

    An event that another run is using (`llama.batch.locks`) is put aside while the
    batch goes on, tried again after each group of events, and skipped (state
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
            # its graph turns the same problem into this event's failure
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


def _settled_outcome(job: EventJob, event: Event, statuses: dict[str, str]) -> EventOutcome:
    # the statuses are those of the up-to-date pass that just ran: not computed twice
    vetoed = statuses and all(s == Status.VETOED.value for s in statuses.values())
    return EventOutcome(
        index=job.index,
        eventid=job.directory.name,
        directory=str(job.directory),
        vector=job.vector,
        state="vetoed" if vetoed else "up to date",
        statuses=statuses,
        records=_collect_records(job, event),
    )
