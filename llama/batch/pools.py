"""Pools of workers on this machine, fed one whole event per task: ``synchronous``
(the calling thread), ``threads`` and ``processes`` (`concurrent.futures`).

Each pool takes events one at a time (`EventPool.submit`) and hands back finished
ones in the order they finish (`EventPool.next_finished`). Every Numba kernel inside
an event runs on its worker's thread alone (`single_threaded_kernels`), so that
``--jobs N`` uses N cores and never N x (Numba's threads). Worker processes are
forked from the fork server (`llama.batch.worker_processes.worker_context`). Which
pool a run gets: `llama.batch.schedulers`; our own local Dask cluster's pool:
`llama.batch.cluster`.

Examples
--------
>>> pool = _Executor(len, 2, processes=False)
>>> pool.submit("abcd")
>>> pool.next_finished(timeout=10)
('abcd', 4)
>>> pool.close()
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from llama.batch.worker_processes import (
    LogForwarding,
    driver_environ,
    restore_environment,
    worker_context,
    worker_process_init,
)

__all__ = ["EventPool", "restore_kernel_threads", "single_threaded_kernels"]

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


def _result(job: Any, future: Any) -> tuple[Any, Any]:
    """``(job, result)``, or ``(job, exception)`` that kept it from returning one;
    KeyboardInterrupt is raised."""
    try:
        return job, future.result()
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # CancelledError is a BaseException in 3.8+
        return job, err
