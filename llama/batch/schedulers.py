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

Each pool takes events one at a time (`EventPool.submit`) and hands back finished
ones in the order they finish (`EventPool.next_finished`), so the driver keeps a
bounded window of events in flight and submits the next as each one ends: no event
waits for a slower one that happened to be submitted with it.

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

import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = [
    "KERNEL_THREAD_VARIABLES",
    "LOCAL_CLUSTER_CONFIG",
    "EventPool",
    "local_cluster",
    "make_pool",
    "single_threaded_kernels",
]

#: Environment variables that size the thread pools of Numba and of the numerical
#: libraries; set to 1 in worker processes, before those libraries are loaded there.
KERNEL_THREAD_VARIABLES = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)

SCHEDULERS = ("threads", "processes", "synchronous", "distributed")

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
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
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
    variables changed, for `_restore_environment`; nothing changes once Numba is
    loaded (its pool is sized already; the per-thread setting does the work).
    """
    if "numba" in sys.modules:
        return {}
    previous = {"NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS")}
    os.environ["NUMBA_NUM_THREADS"] = "1"
    return previous


def _restore_environment(previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _one_thread_per_kernel_here() -> str | None:
    """Run in each worker process of a running cluster: kernels loaded later there
    are sized at one thread (`KERNEL_THREAD_VARIABLES`), as in our own workers.
    Returns the worker's ``MALLOC_TRIM_THRESHOLD_`` (see `LOCAL_CLUSTER_CONFIG`)."""
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = "1"
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def _worker_process_init() -> None:
    """Initializer of worker processes: one thread per kernel, Ctrl-C to the driver."""
    import signal

    # before Numba, NumPy's BLAS or OpenMP are loaded in this process
    for name in KERNEL_THREAD_VARIABLES:
        os.environ[name] = "1"
    # Ctrl-C is the driver's to handle: workers that got it too printed tracebacks
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
        try:
            job, future = self.finished.get(timeout=timeout)
        except queue.Empty:
            return None
        self.running -= 1
        self._forget(job)
        try:
            return job, future.result()
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # CancelledError is a BaseException in 3.8+
            return job, err

    def _submit(self, job: Any):
        raise NotImplementedError

    def _forget(self, job: Any) -> None:
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
        _restore_environment(self.environ)


class _Executor(EventPool):
    """A `concurrent.futures` pool of ``slots`` threads or processes, made on first use."""

    def __init__(self, task: Callable[[Any], Any], slots: int, processes: bool) -> None:
        super().__init__(task, slots)
        self.processes = processes
        self.pool = None
        self.environ = {} if processes else _one_thread_numba_if_loaded_later()

    def _make(self):
        if not self.processes:
            from concurrent.futures import ThreadPoolExecutor

            return ThreadPoolExecutor(self.slots, thread_name_prefix="llama-event")
        from concurrent.futures import ProcessPoolExecutor
        from functools import partial

        from dask.multiprocessing import get_context, initialize_worker_process

        # what Dask does for its own pool: hashing consistent across the workers
        if os.environ.get("PYTHONHASHSEED") in (None, "0"):
            os.environ["PYTHONHASHSEED"] = "6640"
        init = partial(initialize_worker_process, user_initializer=_worker_process_init)
        return ProcessPoolExecutor(self.slots, mp_context=get_context(), initializer=init)

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
        _restore_environment(self.environ)


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
    import dask
    from distributed import LocalCluster

    key = "distributed.nanny.pre-spawn-environ"
    spawn_env = dask.config.get(key, default={}) or {}
    before = {name: os.environ.get(name) for name in [*spawn_env, "PYTHONHASHSEED"]}
    config = LOCAL_CLUSTER_CONFIG
    if dashboard_address is not None:
        config = {k: v for k, v in config.items() if k.startswith(key)}
    try:
        # the nannies hand this configuration to their workers as they are made
        with dask.config.set(config):
            return LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=dashboard_address,
                env=dict.fromkeys(KERNEL_THREAD_VARIABLES, "1"),
            )
    finally:
        _restore_environment(before)


class _Distributed(EventPool):
    """Events as Dask futures on a local cluster of ``jobs`` worker processes or a
    running scheduler (``tcp://HOST:PORT``); the cluster starts on first use."""

    def __init__(self, task: Callable[[Any], Any], jobs: int, address: str | None) -> None:
        super().__init__(task, jobs)
        self.address, self.client, self.cluster = address, None, None
        self.futures: dict[int, Any] = {}  # a future nobody holds is cancelled by Dask
        if address is not None:
            self._connect()  # a remote cluster decides the slots: its worker threads

    def _connect(self) -> None:
        import logging

        from distributed import Client

        if self.address is None:
            # our own cluster's start and stop are ours to report: without this,
            # distributed prints ~30 INFO lines of its scheduler and nannies per run
            for name in ["distributed", *logging.root.manager.loggerDict]:
                if name == "distributed" or name.startswith("distributed."):
                    logging.getLogger(name).setLevel(logging.WARNING)
            self.cluster = local_cluster(self.slots)
            self.client = Client(self.cluster)
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

    def _submit(self, job: Any):
        import uuid

        if self.client is None:
            self._connect()
        key = f"event-{job.index}-{uuid.uuid4().hex[:8]}"
        future = self.client.submit(self.task, job, key=key, pure=False)
        self.futures[id(job)] = future
        return future

    def _forget(self, job: Any) -> None:
        self.futures.pop(id(job), None)

    def close(self, interrupted: bool = False) -> None:
        if self.client is not None:
            if interrupted:
                self.client.cancel(list(self.futures.values()))
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_pool(name: str, jobs: int, task: Callable[[Any], Any]) -> EventPool:
    """The pool for scheduler ``name``: threads, processes, synchronous, distributed
    (a local cluster of ``jobs`` worker processes) or ``tcp://HOST:PORT``.

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
    ValueError: unknown scheduler 'gpu'; use threads, processes, synchronous, distributed (a local cluster) or a scheduler address tcp://HOST:PORT
    """
    if name == "synchronous":
        return _Synchronous(task)
    if name in ("threads", "processes"):
        return _Executor(task, jobs, processes=name == "processes")
    if name == "distributed":
        return _Distributed(task, jobs, None)
    if "://" in name:
        return _Distributed(task, jobs, name)
    raise ValueError(
        f"unknown scheduler {name!r}; use threads, processes, synchronous, "
        "distributed (a local cluster) or a scheduler address tcp://HOST:PORT"
    )
