"""Where events run: pools of ``--jobs`` workers fed one whole event per task.

One level of parallelism per scheduler: ``--jobs N`` runs N events at once on N
workers (threads, processes or Dask workers) and every Numba kernel inside an event
runs on its worker's thread alone, so a run uses N cores and never N x (Numba's
threads). ``synchronous`` runs one event at a time in the calling thread (one core,
whatever ``--jobs`` says). Numba's thread count is set per thread, once it is
loaded; so that the handler that first loads it is single-threaded too, worker
processes are started with ``NUMBA_NUM_THREADS=1``, and a run on threads (or
synchronous) in a process that has not loaded Numba yet sets ``NUMBA_NUM_THREADS=1``
while it lasts: import numba before the run to keep its default for later use.

``auto`` (the default of ``llama batch``; `choose_scheduler`) is threads for
``--jobs 1`` and short runs, processes otherwise. Worker processes, ours and our local
cluster's, are forked from one fork server that has imported the engine once
(`worker_context`, `llama.batch.worker_preload`), so they start in milliseconds.

Each pool takes events one at a time (`EventPool.submit`) and hands back finished
ones in the order they finish (`EventPool.next_finished`), so the driver keeps a
bounded window of events in flight and submits the next as each one ends: no event
waits for a slower one that happened to be submitted with it. On our own local
cluster (``distributed``) each event is a call to the `EventRunner` of the worker with
the fewest events in flight, straight from the client to that worker; on a running
scheduler (``tcp://...``, a cluster shared with others or watched on its dashboard)
each event is a Dask task, which the scheduler places and may move. Either way an
event whose worker dies (killed, out of memory) runs again on a live worker, up to
Dask's ``distributed.scheduler.allowed-failures`` times (3) before it fails.

Examples
--------
>>> pool = make_pool("synchronous", jobs=4, task=len)
>>> pool.slots
1
>>> pool.submit("abc")
>>> pool.next_finished(timeout=0)
('abc', 3)
>>> pool.close()
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from llama.batch.worker_processes import (
    CLUSTER_PRELOAD,
    KERNEL_THREAD_VARIABLES,
    LogForwarding,
    driver_environ,
    restore_environment,
    worker_context,
    worker_process_init,
)

__all__ = [
    "AUTO_MIN_EVENTS_PER_JOB",
    "KERNEL_THREAD_VARIABLES",
    "LOCAL_CLUSTER_CONFIG",
    "EventPool",
    "WorkerLost",
    "choose_scheduler",
    "local_cluster",
    "make_pool",
    "single_threaded_kernels",
    "start_workers_early",
    "worker_context",
]


SCHEDULERS = ("auto", "threads", "processes", "synchronous", "distributed")

#: ``auto`` runs on threads when a run has fewer events than this per job: too few
#: to pay for worker processes (the fork server's imports, each worker's kernels).
AUTO_MIN_EVENTS_PER_JOB = 10

#: Dask settings of our own local cluster (``--scheduler distributed``) over
#: distributed's defaults; a cluster reached by its address keeps its own. Figures:
#: bench/README.md, "Realistic events end to end".
#:
#: * The nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off
#:   glibc's adaptive mmap threshold: every array over 128 kB became a fresh mmap,
#:   page-faulted in and unmapped again, and a realistic event cost 175 ms of worker
#:   CPU against 108 ms without (system time 2.4 s against 0.7 s over 30 events). Our
#:   workers hold one event at a time: glibc's default suits them.
#: * The statistical profiler (a stack sample every 10 ms) and the event-loop and
#:   system monitors (every 20 ms and 0.5 s) feed a dashboard our cluster does not
#:   have; at their defaults an idle 2-worker cluster used 39-48 ms of CPU per second
#:   in the driver (scheduler, nannies) and 31 ms/s in each worker, 13 and 6-7 ms/s so.
#: * The memory monitors of each worker and its nanny read the worker's memory every
#:   100 ms (psutil), for a limit that an event reaches in no less than seconds; and
#:   the scheduler and each worker serve HTTP routes (metrics, health) that nothing
#:   reads here. Every 1 s, no routes: a trivial task cost the driver 8.0-8.4 ms and
#:   the workers 5.2-6.0 ms of CPU, 4.7-7.1 and 3.9-5.1 ms so (2 workers, 300 tasks,
#:   3 alternated pairs in one process, load 8.5-9).
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
}

_local = threading.local()


def single_threaded_kernels() -> None:
    """Make the Numba kernels called from this thread run on this thread alone.

    Numba's thread count is a per-thread setting, so each worker thread sets its
    own. Numba is never imported here: a pipeline without kernels does not pay for
    it, and once a handler has imported it the next call (before the next handler)
    takes effect. Cheap after the first call in a thread.

    Examples
    --------
    >>> single_threaded_kernels()  # doctest: +SKIP
    """
    if getattr(_local, "limited", False):
        return
    numba = sys.modules.get("numba")
    set_threads = getattr(numba, "set_num_threads", None)
    if set_threads is None:  # not imported yet (or still being imported by another thread)
        return
    _local.previous = numba.get_num_threads()
    set_threads(1)
    _local.limited = True


def restore_kernel_threads() -> None:
    """Give this thread back the Numba thread count it had before the run.

    For the calling thread of a ``synchronous`` run (a notebook's own thread, say).
    """
    if getattr(_local, "limited", False):
        sys.modules["numba"].set_num_threads(_local.previous)
        _local.limited = False


def _one_thread_numba_if_loaded_later() -> dict[str, str | None]:
    """Size Numba's pool at 1 thread should it first be loaded in this process now.

    `single_threaded_kernels` can only act once Numba is loaded, and the handler that
    loads it would run its kernels on every core. Returns the previous values of the
    variables changed, for `restore_environment`; nothing changes once Numba is
    loaded (its pool is sized already; the per-thread setting does the work).
    """
    if "numba" in sys.modules:
        return {}
    previous = {"NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS")}
    os.environ["NUMBA_NUM_THREADS"] = "1"
    return previous


def _one_thread_per_kernel_here() -> str | None:
    """Run in each worker process of a running cluster: kernels loaded later there
    are sized at one thread (`KERNEL_THREAD_VARIABLES`), as in our own workers.
    Returns the worker's ``MALLOC_TRIM_THRESHOLD_`` (see `LOCAL_CLUSTER_CONFIG`)."""
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = "1"
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


class EventPool:
    """Runs ``task(job)`` for each submitted job and reports them as they finish.

    Parameters
    ----------
    task
        A module-level function (picklable by reference), one whole event per call.
    slots
        Events that run at once: the cores this pool uses.
    """

    def __init__(self, task: Callable[[Any], Any], slots: int) -> None:
        self.task, self.slots = task, slots
        # (job, future) as each future finishes; futures call back from their own threads
        self.finished: queue.Queue = queue.Queue()
        self.running = 0

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet handed back by `next_finished`."""
        return self.running

    def submit(self, job: Any) -> None:
        self.running += 1
        future = self._submit(job)
        future.add_done_callback(lambda f: self.finished.put((job, f)))

    def next_finished(self, timeout: float | None) -> tuple[Any, Any] | None:
        """The next finished ``(job, result)``; None when none finished within ``timeout``.

        ``result`` is the task's return value, or the exception that kept it from
        returning one (a worker that died, say) for the caller to turn into that
        event's failure. KeyboardInterrupt is raised, not returned.
        """
        got = self._next(timeout)
        return None if got is None else _result(*got)

    def _next(self, timeout: float | None) -> tuple[Any, Any] | None:
        """The next finished ``(job, future)``, no longer counted as running; None when
        none finished within ``timeout``."""
        try:
            job, future = self.finished.get(timeout=timeout)
        except queue.Empty:
            return None
        self.running -= 1
        self._forget(job, future)
        return job, future

    def _submit(self, job: Any):
        raise NotImplementedError

    def _forget(self, job: Any, future: Any) -> None:
        pass

    def close(self, interrupted: bool = False) -> None:
        """Let the workers go; after Ctrl-C without waiting for their running tasks."""


class _Synchronous(EventPool):
    """Each event runs when submitted, in the calling thread."""

    def __init__(self, task: Callable[[Any], Any]) -> None:
        super().__init__(task, 1)
        self.done: deque = deque()
        self.environ = _one_thread_numba_if_loaded_later()

    def submit(self, job: Any) -> None:
        self.done.append((job, self.task(job)))  # KeyboardInterrupt goes straight up

    @property
    def in_flight(self) -> int:
        return len(self.done)

    def next_finished(self, timeout: float | None) -> tuple[Any, Any] | None:
        return self.done.popleft() if self.done else None

    def close(self, interrupted: bool = False) -> None:
        restore_kernel_threads()
        restore_environment(self.environ)


class _Executor(EventPool):
    """A `concurrent.futures` pool of ``slots`` threads or processes, made on first use."""

    def __init__(self, task: Callable[[Any], Any], slots: int, processes: bool) -> None:
        super().__init__(task, slots)
        self.processes = processes
        self.pool = None
        self.logs: LogForwarding | None = None  # the workers' log records, processes only
        self.environ = {} if processes else _one_thread_numba_if_loaded_later()

    def _make(self):
        if not self.processes:
            from concurrent.futures import ThreadPoolExecutor

            return ThreadPoolExecutor(self.slots, thread_name_prefix="llama-event")
        context = _process_pool_context()  # first: it imports while this process goes on
        from concurrent.futures import ProcessPoolExecutor
        from functools import partial

        if self.logs is None:
            self.logs = LogForwarding(context)
        level = logging.getLogger("llama").getEffectiveLevel()
        records = (self.logs.queue, level)
        # worker_process_init reseeds NumPy as Dask's initializer would: no Dask here
        init = partial(worker_process_init, driver_environ(), os.getpid(), records)
        return ProcessPoolExecutor(self.slots, mp_context=context, initializer=init)

    def _submit(self, job: Any):
        from concurrent.futures import BrokenExecutor

        if self.pool is None:
            self.pool = self._make()
        try:
            return self.pool.submit(self.task, job)
        except BrokenExecutor:
            # a worker process died (killed, out of memory): the events it held have
            # failed already; the rest of the batch gets a fresh pool
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._make()
            return self.pool.submit(self.task, job)

    def close(self, interrupted: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
        if self.logs is not None:
            self.logs.stop()
        restore_environment(self.environ)


def _process_pool_context():
    """The fork server's context for a pool of worker processes (`worker_context`)."""
    # what Dask does for its own pool: hashing consistent across the workers (set
    # before the fork server starts: it is the workers' interpreter)
    if os.environ.get("PYTHONHASHSEED") in (None, "0"):
        os.environ["PYTHONHASHSEED"] = "6640"
    return worker_context()


def start_workers_early(name: str, jobs: int, total: int | None = None) -> str:
    """Start, now, the fork server that the run's worker processes will fork from.

    For a run whose events will run in worker processes (``name`` is ``processes``,
    ``distributed``, or ``auto`` choosing processes: `choose_scheduler`) the fork
    server starts importing the engine (`llama.batch.worker_preload`, ~1 s) while
    the caller goes on with its own set-up, instead of at the run's first event;
    `make_pool` later forks the workers from it. The modules the pool itself needs
    in this process (concurrent.futures') are imported here meanwhile.
    Returns what ``name`` means for this run, like `choose_scheduler`. Other
    schedulers start nothing.

    Examples
    --------
    >>> start_workers_early("threads", 2, 200)
    'threads'
    >>> start_workers_early("auto", 2, 200)  # doctest: +SKIP
    'processes'
    """
    chosen = choose_scheduler(name, jobs, total)
    if chosen == "processes":
        _process_pool_context()
        # what the pool imports at its first event, imported now while the server
        # imports: this thread has nothing else to do until the workers are forked,
        # and a thread the caller starts next imports none of it at the same time
        import concurrent.futures.process  # noqa: F401
    elif chosen == "distributed":
        worker_context(CLUSTER_PRELOAD)
        import distributed  # noqa: F401
    return chosen


def local_cluster(workers: int, dashboard_address: str | None = None):
    """A `distributed.LocalCluster` of ``workers`` processes of one thread each, its
    kernels on one thread, with `LOCAL_CLUSTER_CONFIG`; with a dashboard (``":0"``:
    any free port), only its allocator setting, since the profiler and the monitors
    feed the dashboard (`llama.sweep`).

    A nanny sets its pre-spawn variables in *this* process's environment before it
    starts a worker (the child inherits them); they are put back as they were once
    the workers are up, so that a later pool or subprocess of this process does not
    inherit them.

    Examples
    --------
    >>> cluster = local_cluster(2)  # doctest: +SKIP
    >>> cluster.close()  # doctest: +SKIP
    """
    # the workers are forked from our fork server, distributed imported there too:
    # started first, it imports while this process imports distributed and starts
    # the scheduler
    forked = worker_context(CLUSTER_PRELOAD).get_start_method() == "forkserver"
    import dask
    from distributed import LocalCluster

    key = "distributed.nanny.pre-spawn-environ"
    spawn_env = dask.config.get(key, default={}) or {}
    before = {name: os.environ.get(name) for name in [*spawn_env, "PYTHONHASHSEED"]}
    config = LOCAL_CLUSTER_CONFIG
    if dashboard_address is not None:
        config = {k: v for k, v in config.items() if k.startswith(key)}
    # a forked worker has the server's environment, so the nannies give it the
    # driver's as it is now (variables removed since the server started stay set)
    method = {"distributed.worker.multiprocessing-method": "forkserver"} if forked else {}
    env = driver_environ() if forked else {}
    env.update(dict.fromkeys(KERNEL_THREAD_VARIABLES, "1"))
    try:
        # the nannies hand this configuration to their workers as they are made
        with dask.config.set({**config, **method}):
            return LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=dashboard_address,
                env=env,
            )
    finally:
        restore_environment(before)


class _Settled:
    """A result already fetched, or the exception that took its place, with the
    ``result()`` of a future (`EventPool.next_finished`), the runner it came from, and
    how many times the event has been lost with its worker (this call's loss included)."""

    def __init__(self, value: Any, runner: _Runner, lost: int = 0, dead: bool = False) -> None:
        self.value, self.runner, self.lost = value, runner, lost
        self.dead = dead  # this call failed with its worker (``value`` says how)

    def result(self) -> Any:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


class _Raised:
    """An exception that the task itself raised on the worker: told apart, in the
    driver, from the OSError of a call whose worker died."""

    def __init__(self, err: BaseException) -> None:
        self.err = err


class WorkerLost(RuntimeError):
    """An event that was not re-run after its worker was lost: it had been lost with
    its worker more than the allowed times, or its worker could not be reached and
    was not known to be dead (re-run, it might have run twice at once)."""


class EventRunner:
    """Runs a pool's task for each event sent to it: a Dask actor, one per worker of our
    own local cluster (`_Distributed`).

    A call on an actor goes from the client to its worker and back, one message each
    way; an event as a Dask task took some ten messages between client, scheduler and
    worker (the graph, the task, its end, the result fetched through the scheduler,
    its release), each handled in Python: 9-13 ms of CPU per realistic event in the
    driver (scheduler, client) and 8.5-12 ms in the worker beside the event's own,
    against 4-6 and 6-8.5 ms as a call (bench/bench_cluster.py, 1 and 2 workers, load
    5-8). A worker that dies loses the events sent to it; the pool sends each again
    to a live runner, as Dask retries a task elsewhere (`_Distributed.next_finished`);
    the nanny restarts the worker and it gets a runner of its own again.

    Parameters
    ----------
    task
        The pool's task, one whole event per call.
    record
        A file (on this machine: the cluster is ours) where the runner notes the number
        of the call it runs and whether it has returned, for the driver to read once
        the worker has died: the event it was running is the one to blame
        (`_running_call`). Two ``pwrite`` calls per event, microseconds.
    """

    def __init__(self, task: Callable[[Any], Any], record: str | None = None) -> None:
        self.task = task
        self.record = None if record is None else os.open(record, os.O_WRONLY | os.O_CREAT)

    def run(self, job: Any, number: int = 0) -> Any:
        self._note(number, b"running")
        try:
            return self.task(job)
        except Exception as err:  # the task's own: an OSError here is no lost worker
            return _Raised(err)
        finally:
            self._note(number, b"done")

    def _note(self, number: int, state: bytes) -> None:
        if self.record is not None:  # one line, always the same length: no truncation
            os.pwrite(self.record, b"%20d %-7s\n" % (number, state), 0)


def _running_call(record: str) -> int | None:
    """The number of the call that a dead runner was running (`EventRunner`), 0 if
    none (it died between events), None if its record cannot be read."""
    try:
        with open(record, "rb") as file:
            number, state = file.read().split()
        return int(number) if state == b"running" else 0
    except (OSError, ValueError):
        return None


class _Runner:
    """The driver's side of one `EventRunner`: its actor, the future that keeps it
    alive, and the events sent to it and not yet handed back."""

    def __init__(self, future, record: str) -> None:
        self.future, self.actor, self.in_flight, self.lost = future, None, 0, False
        self.record = record  # where its EventRunner notes the call it runs
        # the calls sent, numbered from 1, and those not back yet
        self.sent, self.open = 0, set()
        self.running_when_lost: int | None = None

    @property
    def usable(self) -> bool:
        """Not known to be lost. A runner's future is ``finished`` while its actor
        lives; once its worker is gone it is lost (and calling it raises)."""
        return not self.lost and self.future.status == "finished"


class _Distributed(EventPool):
    """Events on a local cluster of ``jobs`` worker processes, each worker's through its
    `EventRunner`, or as Dask futures on a running scheduler (``tcp://HOST:PORT``); the
    cluster starts on first use."""

    def __init__(self, task: Callable[[Any], Any], jobs: int, address: str | None) -> None:
        super().__init__(task, jobs)
        self.address, self.client, self.cluster = address, None, None
        self.futures: dict[int, Any] = {}  # a future nobody holds is cancelled by Dask
        self.runners: list[_Runner] | None = None  # our own cluster's
        self.look = 0.0  # when to look again for workers without a runner
        self.allowed_failures = 3  # re-runs of an event lost with its worker: _connect
        self.records: str | None = None  # the folder of the runners' records
        if address is not None:
            self._connect()  # a remote cluster decides the slots: its worker threads

    def _connect(self) -> None:
        if self.address is None:
            worker_context(CLUSTER_PRELOAD)  # imports while distributed is imported here
        from distributed import Client

        if self.address is None:
            # our own cluster's start and stop are ours to report: without this,
            # distributed prints ~30 INFO lines of its scheduler and nannies per run
            for name in ["distributed", *logging.root.manager.loggerDict]:
                if name == "distributed" or name.startswith("distributed."):
                    logging.getLogger(name).setLevel(logging.WARNING)
            import dask

            self.allowed_failures = dask.config.get("distributed.scheduler.allowed-failures", 3)
            self.records = tempfile.mkdtemp(prefix="llama-runners-")
            self.cluster = local_cluster(self.slots)
            self.client = Client(self.cluster)
            self.runners = []
            self._start_runners()
        else:
            self.client = Client(self.address)
            self.slots = max(1, sum(self.client.nthreads().values()))
            trims = [v for v in self.client.run(_one_thread_per_kernel_here).values() if v]
            if trims:
                logging.getLogger("llama.batch").warning(
                    "%d of the workers of %s run with MALLOC_TRIM_THRESHOLD_=%s (distributed's "
                    "default for its nannies), which turns off glibc's adaptive mmap "
                    "threshold: realistic events took ~1.6x the CPU so. Set "
                    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ to null in "
                    "the Dask configuration where the nannies start (llama's own "
                    "--scheduler distributed does)",
                    len(trims),
                    self.address,
                    trims[0],
                )
        logging.getLogger("llama.batch").info(
            "Dask distributed scheduler at %s (%d worker threads)",
            self.client.scheduler.address,
            self.slots,
        )

    def _start_runners(self) -> None:
        """An `EventRunner` on each worker that has none (all, at the start; a worker
        restarted by its nanny after it died, later)."""
        import uuid

        self.client.wait_for_workers(1)
        held = self.client.who_has([r.future for r in self.runners]) if self.runners else {}
        placed = {worker for workers in held.values() for worker in workers}
        new = []
        for worker in self.client.nthreads():  # every worker (scheduler_info lists a few)
            if worker in placed:
                continue
            key = f"event-runner-{uuid.uuid4().hex[:8]}"
            record = os.path.join(self.records, key)
            # preferred there, moved by the scheduler should that worker die meanwhile
            future = self.client.submit(EventRunner, self.task, record, actor=True, key=key,
                                        workers=[worker], allow_other_workers=True)  # fmt: skip
            new.append(_Runner(future, record))
        for runner in new:
            try:
                runner.actor = runner.future.result()
            except Exception:  # its worker died as it started: looked for again later
                continue
            self.runners.append(runner)

    def submit(self, job: Any) -> None:
        if self.client is None:
            self._connect()
        if self.runners is None:  # a running scheduler: events as tasks
            super().submit(job)
            return
        self._send(job, 0)

    def _send(self, job: Any, lost: int) -> None:
        """Call the runner with the fewest events in flight on ``job``, lost ``lost``
        times before."""
        while True:
            if not all(r.usable for r in self.runners):
                self.runners = [r for r in self.runners if r.usable]
            # a worker that died is restarted by its nanny (a second or two): a runner
            # is started there once it is back; at most one look a second meanwhile
            if not self.runners or (
                len(self.runners) < self.slots and time.monotonic() >= self.look
            ):
                self._start_runners()
                self.look = time.monotonic() + 1.0
                continue
            runner = min(self.runners, key=lambda r: r.in_flight)
            try:
                run = runner.actor.run  # raises once the client has seen its worker go
            except RuntimeError:
                runner.lost = True
                continue
            break
        runner.in_flight += 1  # and less in _forget: both in the calling thread
        self.running += 1
        runner.sent += 1
        runner.open.add(runner.sent)
        call = run(job, runner.sent)  # sent from the client's event loop
        self.client.loop.add_callback(self._collect, job, runner, call, lost, runner.sent)

    async def _collect(self, job: Any, runner: _Runner, call, lost: int = 0, number: int = 0):
        """In the client's event loop: the call's result, handed to `next_finished`.

        ``lost`` counts the times the event was lost while it ran; ``number`` is the
        call's on its runner. Of the calls that a dead worker loses, only the one it
        was running (its record says which) counts one more: the others had not
        started, or had returned and their results were lost on the way."""
        dead = False
        try:
            value = await call
        except OSError as err:  # its worker died, or could not be reached
            if runner.running_when_lost is None:  # the first of its calls to fail
                running = _running_call(runner.record)
                # no record: the oldest call not back (the worker runs them in turn)
                if running is None:
                    running = min(runner.open, default=number)
                runner.running_when_lost = running
            runner.lost = dead = True
            value, lost = err, lost + (number == runner.running_when_lost)
        except BaseException as err:  # a problem of the call itself (pickling, say)
            value = err
        runner.open.discard(number)
        if isinstance(value, _Raised):
            value = value.err
        self.finished.put((job, _Settled(value, runner, lost, dead)))

    def next_finished(self, timeout: float | None) -> tuple[Any, Any] | None:
        """The next finished ``(job, result)`` (`EventPool.next_finished`). On our own
        cluster an event lost with its worker is sent again to a live runner, as Dask
        retries a task whose worker died, once the scheduler has seen that worker
        go (so that no event runs twice at once); it is handed back as a `WorkerLost`
        only once lost more than ``distributed.scheduler.allowed-failures`` times.
        A loss counts against the event that its worker was running when it died
        (`EventRunner`), not against those queued behind it there, nor one sent to a
        worker that had died already: they are sent again as they were. (Dask counts
        every task on the worker.)
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            got = self._next(left)
            if got is None:
                return None
            job, settled = got
            if not isinstance(settled, _Settled) or not settled.dead:
                return _result(job, settled)
            lost = self._retry(job, settled)
            if lost is not None:
                return job, lost

    def _retry(self, job: Any, settled: _Settled) -> WorkerLost | None:
        """Send ``job`` again after its worker was lost, or the failure to hand back."""
        address = settled.runner.actor._address
        if not self._gone(address):
            return WorkerLost(
                f"its worker {address} could not be reached ({settled.value}) but is still "
                "listed by the scheduler: not re-run, lest it run twice at once; run the "
                "same command again to re-run it"
            )
        if settled.lost > self.allowed_failures:
            return WorkerLost(
                f"lost with its worker {settled.lost} times (the worker process died "
                "while running it: killed, out of memory?); not re-run more than "
                f"distributed.scheduler.allowed-failures={self.allowed_failures} times. "
                "Run the same command again to re-run it (events done are kept), or set "
                "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES higher"
            )
        log = logging.getLogger("llama.batch")
        name = getattr(getattr(job, "directory", None), "name", job)
        log.warning("event %s: its worker %s was lost; sent again (lost running %d times, "
                    "%d allowed)", name, address, settled.lost, self.allowed_failures)  # fmt: skip
        self._send(job, settled.lost)
        return None

    def _gone(self, address: str, wait_s: float = 30.0) -> bool:
        """Whether the scheduler has dropped the worker at ``address`` (it has, by the
        time a call to a dead worker fails, but for a moment), waiting up to ``wait_s``
        seconds. Every runner whose worker is gone is marked lost on the way."""
        end = time.monotonic() + wait_s
        while True:
            workers = self.client.nthreads()
            for runner in self.runners or ():
                if runner.actor._address not in workers:
                    runner.lost = True
            if address not in workers:
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)

    def _submit(self, job: Any):
        import uuid

        key = f"event-{job.index}-{uuid.uuid4().hex[:8]}"
        future = self.client.submit(self.task, job, key=key, pure=False)
        self.futures[id(job)] = future
        return future

    def _forget(self, job: Any, future: Any) -> None:
        if isinstance(future, _Settled):
            future.runner.in_flight -= 1
        else:
            self.futures.pop(id(job), None)

    def close(self, interrupted: bool = False) -> None:
        if self.client is not None:
            if interrupted:
                self.client.cancel(list(self.futures.values()))
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.records is not None:
            shutil.rmtree(self.records, ignore_errors=True)


def _result(job: Any, future: Any) -> tuple[Any, Any]:
    """``(job, result)``, or ``(job, exception)`` that kept it from returning one;
    KeyboardInterrupt is raised."""
    try:
        return job, future.result()
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # CancelledError is a BaseException in 3.8+
        return job, err


def choose_scheduler(name: str, jobs: int, total: int | None = None) -> str:
    """The scheduler that ``name`` means for a run of ``jobs`` jobs and ``total`` events
    (None: endless or not known): ``auto`` is threads for ``jobs == 1`` or fewer than
    `AUTO_MIN_EVENTS_PER_JOB` events per job, processes otherwise; other names stand.

    Why: one thread is the cheapest way to use one core (no worker to start, no event
    pickled; ``--jobs 1`` keeps to one core either way). Two threads share one
    interpreter lock, and the Python of an event (FITS, JSON, the handlers) held it:
    on the realistic bench events ``--jobs 2`` on threads reached 1.46x ``--jobs 1``
    at 175% CPU, on processes 1.94x once started (1.77x over 200 events with spawned
    workers) at 192% (bench/README.md, "Realistic events end to end"). Worker
    processes start from a fork server (`worker_context`) in about the time the
    first event on a thread spends importing the same modules, so they pay for
    themselves within a few events per worker.

    Examples
    --------
    >>> choose_scheduler("auto", 1, 200), choose_scheduler("auto", 2, 200)
    ('threads', 'processes')
    >>> choose_scheduler("auto", 2, 5), choose_scheduler("auto", 2, None)
    ('threads', 'processes')
    >>> choose_scheduler("distributed", 2, 5)
    'distributed'
    """
    if name != "auto":
        return name
    if jobs <= 1 or (total is not None and total < AUTO_MIN_EVENTS_PER_JOB * jobs):
        return "threads"
    return "processes"


def make_pool(
    name: str, jobs: int, task: Callable[[Any], Any], total: int | None = None
) -> EventPool:
    """The pool for scheduler ``name``: threads, processes, synchronous, distributed
    (a local cluster of ``jobs`` worker processes), ``tcp://HOST:PORT``, or auto
    (`choose_scheduler`, given the run's ``total`` events).

    Raises
    ------
    ValueError
        An unknown scheduler name, with the names allowed.

    Examples
    --------
    >>> make_pool("threads", 2, task=len).slots
    2
    >>> make_pool("gpu", 2, task=len)
    Traceback (most recent call last):
    ...
    ValueError: unknown scheduler 'gpu'; use auto, threads, processes, synchronous, distributed (a local cluster) or a scheduler address tcp://HOST:PORT
    """
    if name == "auto":
        name = choose_scheduler(name, jobs, total)
        logging.getLogger("llama.batch").info(
            "scheduler auto: %s (--jobs %d, %s events)",
            name, jobs, "endless" if total is None else total,
        )  # fmt: skip
    if name == "synchronous":
        return _Synchronous(task)
    if name in ("threads", "processes"):
        return _Executor(task, jobs, processes=name == "processes")
    if name == "distributed":
        return _Distributed(task, jobs, None)
    if "://" in name:
        return _Distributed(task, jobs, name)
    raise ValueError(
        f"unknown scheduler {name!r}; use auto, threads, processes, synchronous, "
        "distributed (a local cluster) or a scheduler address tcp://HOST:PORT"
    )
