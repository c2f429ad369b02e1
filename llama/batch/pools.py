"""Pools of workers on this machine, fed one whole event per task: ``synchronous``
(the calling thread), ``threads`` and ``processes`` (`concurrent.futures`).

Each pool takes events one at a time (`EventPool.submit`) and hands back finished
ones in the order they finish (`EventPool.next_finished`). A pool of processes
sends the events of one sky map to one worker (`Affinity`): each process keeps the
maps it met and their products (`llama.science.skymap`). Every Numba kernel inside
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
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any, TypeVar

from llama.batch.worker_processes import (
    LogForwarding,
    driver_environ,
    restore_environment,
    worker_context,
    worker_process_init,
)

__all__ = [
    "Affinity",
    "EventPool",
    "affinity_key",
    "restore_kernel_threads",
    "single_threaded_kernels",
]

_local = threading.local()
_W = TypeVar("_W")

#: Events in flight per worker of a pool that routes them (`Affinity`): one running
#: and two queued behind it on that worker. The runner's window is two per worker
#: otherwise; with a queue per worker, an event held for its map's worker could
#: leave another worker with nothing queued, idle until the driver handed it the
#: next event (simulated, 2 workers, 16 maps in turn: 1.5% idle at two per worker,
#: 0.9% at three over 200 events; 0.9% and 0.2% over 1,000).
ROUTED_IN_FLIGHT_PER_SLOT = 3


def affinity_key(job: Any) -> Hashable | None:
    """The job's affinity key (an `EventJob`'s ``affinity``: its sky map's source), or
    None for a job without one (any other task: no routing)."""
    return getattr(job, "affinity", None)


class Affinity:
    """Sends the events of one key (a sky map's source) to the worker that ran it,
    while the load stays balanced.

    Each worker process keeps the maps it met and what it built from them
    (`llama.science.skymap`, ~7.8 MiB per map, 256 MiB per process): a map met again
    costs less. Sent to whichever worker is free, every worker builds every map's
    products, and with more maps than a worker keeps they are never met again. Here
    a key's worker (its owner: the worker its first event went to) gets its events
    as long as that leaves no worker idle: the owner if it has a free slot; else the
    least loaded worker if that one has a free slot (it would idle); else the owner
    if it is within one event of the least loaded; else the least loaded (the
    owner stays the owner). A new key, or one whose owner is gone, goes to the least
    loaded worker (the first such in the order given), which becomes its owner.

    Keys are remembered for the `MAX_KEYS` used last. A pick is a dict look-up and a
    pass over the workers.

    Examples
    --------
    >>> route = Affinity()
    >>> loads = {"a": 0, "b": 0}
    >>> def free(w):
    ...     return 1 - loads[w]  # one slot each
    >>> for key in ["m1", "m2", "m1", "m2"]:
    ...     w = route.pick(key, ["a", "b"], free)
    ...     loads[w] += 1
    ...     print(key, w)
    m1 a
    m2 b
    m1 a
    m2 b
    >>> loads["a"] += 2  # a is now two events behind b: m1 goes to b
    >>> route.pick("m1", ["a", "b"], free)
    'b'
    """

    MAX_KEYS = 8192  # ~2 MiB of keys; a worker keeps ~32 maps (256 MiB)

    def __init__(self) -> None:
        self.owner: OrderedDict[Hashable, Any] = OrderedDict()

    def pick(self, key: Hashable | None, workers: Sequence[_W], free: Callable[[_W], int]) -> _W:
        """The worker of ``workers`` (not empty) for an event of ``key`` (None: no key,
        the least loaded); ``free(worker)``: its slots less its events in flight (0: all
        its slots busy, below 0: events queued there)."""
        least, most = workers[0], free(workers[0])
        for worker in workers[1:]:
            f = free(worker)
            if f > most:
                least, most = worker, f
        if key is None:
            return least
        owner = self.owner.get(key)
        if owner is not None and owner in workers:
            self.owner.move_to_end(key)
            f = free(owner)
            if f > 0 or (most <= 0 and f >= most - 1):
                return owner
            return least
        self.owner[key] = least
        self.owner.move_to_end(key)
        if len(self.owner) > self.MAX_KEYS:
            self.owner.popitem(last=False)
        return least


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

    #: Events in flight per slot that this pool asks of the runner's window (None: the
    #: runner's own, `llama.batch.runner.IN_FLIGHT_PER_SLOT`).
    in_flight_per_slot: int | None = None

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
    """A `concurrent.futures` pool of ``slots`` threads or processes, made on first use.

    Threads: one `ThreadPoolExecutor`, its queue shared (the threads share one store of
    maps: nothing to route). Processes: one single-process `ProcessPoolExecutor` per
    slot, each made at its first event, and each event sent to the one that `Affinity`
    picks for its key (`affinity_key`): a shared queue would hand it to whichever
    worker is free. A worker that dies fails the events it held (as one shared pool
    did, but not the other workers'); its slot gets a fresh process at its next event.
    """

    #: Events handed to a worker process's executor at most: the one running and one
    #: queued behind it, so that the process never waits for the driver. The executor
    #: takes them for good (its process reads them from a pipe); those routed beyond
    #: wait in the driver, where one can still go to another worker that runs out
    #: (`_even_out`): the last events of a run do not queue behind one worker.
    COMMITTED = 2

    def __init__(self, task: Callable[[Any], Any], slots: int, processes: bool) -> None:
        super().__init__(task, slots)
        self.processes = processes
        self.pool = None  # threads
        self.workers: list[Any] = [None] * slots  # processes: one executor per slot
        self.loads = [0] * slots  # processes: events in flight per slot
        self.placed: dict[int, int] = {}  # id(future) -> its slot, until handed back
        # each slot's events not handed to its executor yet, (job, future) oldest first
        self.waiting: list[deque] = [deque() for _ in range(slots)]
        self.route = Affinity()
        if processes:
            self.in_flight_per_slot = ROUTED_IN_FLIGHT_PER_SLOT
        self.logs: LogForwarding | None = None  # the workers' log records, processes only
        self.environ = {} if processes else _one_thread_numba_if_loaded_later()

    def _make(self):
        """A thread pool of ``slots`` threads, or one worker process's executor."""
        if not self.processes:
            from concurrent.futures import ThreadPoolExecutor

            return ThreadPoolExecutor(self.slots, thread_name_prefix="llama-event")
        context = _process_pool_context()  # first: it imports while this process goes on
        from concurrent.futures import ProcessPoolExecutor

        if self.logs is None:
            self.logs = LogForwarding(context)
        level = logging.getLogger("llama").getEffectiveLevel()
        records = (self.logs.queue, level)
        # worker_process_init reseeds NumPy as Dask's initializer would: no Dask here
        init = partial(worker_process_init, driver_environ(), os.getpid(), records)
        return ProcessPoolExecutor(1, mp_context=context, initializer=init)

    def _submit(self, job: Any):
        if not self.processes:
            if self.pool is None:
                self.pool = self._make()
            return self.pool.submit(self.task, job)
        from concurrent.futures import Future

        loads = self.loads
        slot = self.route.pick(affinity_key(job), range(self.slots), lambda w: 1 - loads[w])
        future: Future = Future()  # handed back; settled by the executor's future
        loads[slot] += 1
        self.placed[id(future)] = slot
        self.waiting[slot].append((job, future))
        self._feed(slot)
        return future

    def _feed(self, slot: int) -> None:
        """Hand the events waiting for ``slot`` to its process's executor, up to
        `COMMITTED` events there."""
        waiting = self.waiting[slot]
        while waiting and self.loads[slot] - len(waiting) < self.COMMITTED:
            job, future = waiting.popleft()
            self._send(slot, job).add_done_callback(partial(_settle, future))

    def _send(self, slot: int, job: Any):
        """``job`` to the executor of ``slot``'s worker process; the executor's future."""
        from concurrent.futures import BrokenExecutor

        if self.workers[slot] is None:
            self.workers[slot] = self._make()
        try:
            return self.workers[slot].submit(self.task, job)
        except BrokenExecutor:
            # its worker process died (killed, out of memory): the events it held
            # have failed already; its slot gets a fresh process
            self.workers[slot].shutdown(wait=False, cancel_futures=True)
            self.workers[slot] = self._make()
            return self.workers[slot].submit(self.task, job)

    def next_finished(self, timeout: float | None) -> tuple[Any, Any] | None:
        if self.processes:
            self._even_out()
        return super().next_finished(timeout)

    def _even_out(self) -> None:
        """Give a worker about to run out the newest event waiting for another.

        Called as the driver waits (`next_finished`): it has sent every event it could
        just now, so a worker with fewer than `COMMITTED` events and none waiting
        would idle (the last events of a run, mostly), while events wait in the
        driver for another worker.
        """
        loads, waiting = self.loads, self.waiting
        for slot in range(self.slots):
            if waiting[slot] or loads[slot] >= self.COMMITTED:
                continue
            donor = max(range(self.slots), key=lambda w: len(waiting[w]))
            if not waiting[donor]:
                return
            job, future = waiting[donor].pop()
            loads[donor] -= 1
            loads[slot] += 1
            self.placed[id(future)] = slot
            waiting[slot].append((job, future))
            self._feed(slot)

    def _forget(self, job: Any, future: Any) -> None:
        slot = self.placed.pop(id(future), None)
        if slot is not None:
            self.loads[slot] -= 1
            self._feed(slot)

    def close(self, interrupted: bool = False) -> None:
        pools = [p for p in [self.pool, *self.workers] if p is not None]
        if interrupted or len(pools) == 1:
            for pool in pools:
                pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
        else:
            # every worker's shutdown in its own thread: they end side by side (one
            # after the other, 32 workers' exits added up)
            stopping = [threading.Thread(target=pool.shutdown) for pool in pools]
            for thread in stopping:
                thread.start()
            for thread in stopping:
                thread.join()
        if self.logs is not None:
            self.logs.stop()
        restore_environment(self.environ)


def _settle(future: Any, done: Any) -> None:
    """Give ``future`` (the pool's) the outcome of ``done`` (an executor's), in the
    executor's thread as ``done`` finishes."""
    if done.cancelled():
        future.cancel()
    elif done.exception() is not None:
        future.set_exception(done.exception())
    else:
        future.set_result(done.result())


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
