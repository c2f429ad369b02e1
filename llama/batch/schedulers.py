"""Where events run: the pool of ``--jobs`` workers that a scheduler name means.

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
waits for a slower one that happened to be submitted with it. The pools on this
machine (synchronous, threads, processes) are in `llama.batch.pools`; our own local
Dask cluster (``distributed``) and a running scheduler (``tcp://...``) in
`llama.batch.cluster`, where an event whose worker dies runs again on a live worker.

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
from collections.abc import Callable
from typing import Any

from llama.batch.cluster import LOCAL_CLUSTER_CONFIG, WorkerLost, _Distributed, local_cluster
from llama.batch.pools import (
    EventPool,
    _Executor,
    _process_pool_context,
    _Synchronous,
    single_threaded_kernels,
)
from llama.batch.worker_processes import CLUSTER_PRELOAD, KERNEL_THREAD_VARIABLES, worker_context

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
    if name == "distributed" or "://" in name:
        return _Distributed(task, jobs, None if name == "distributed" else name)
    raise ValueError(
        f"unknown scheduler {name!r}; use auto, threads, processes, synchronous, "
        "distributed (a local cluster) or a scheduler address tcp://HOST:PORT"
    )
