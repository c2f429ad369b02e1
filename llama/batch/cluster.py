"""Our own local Dask cluster (``--scheduler distributed``), or a running scheduler
(``tcp://HOST:PORT``), as a pool of ``--jobs`` workers fed one whole event per task.

On our own cluster (`local_cluster`: worker processes forked from the fork server,
`LOCAL_CLUSTER_CONFIG`) each event is a call to the `EventRunner` of one worker,
straight from the client to that worker; on a running
scheduler (a cluster shared with others or watched on its dashboard) each event is a
Dask task, which the scheduler places and may move. Either way the events of one sky
map go to one worker while the load stays balanced (`llama.batch.pools.Affinity`;
on a running scheduler as the task's preferred worker, ``allow_other_workers``), as
each worker keeps the maps it met and their products. An event whose worker
dies (killed, out of memory) runs again on a live worker, up to Dask's
``distributed.scheduler.allowed-failures`` times (3) before it fails (`WorkerLost`).

``distributed`` is imported only when a cluster starts or is reached.

Examples
--------
>>> pool = _Distributed(len, 2, None)  # doctest: +SKIP
>>> pool.submit("abc")  # doctest: +SKIP
>>> pool.next_finished(timeout=60)  # doctest: +SKIP
('abc', 3)
>>> pool.close()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from llama.batch.pools import ROUTED_IN_FLIGHT_PER_SLOT, Affinity, EventPool, _result, affinity_key
from llama.batch.worker_processes import (
    CLUSTER_PRELOAD,
    KERNEL_THREAD_VARIABLES,
    driver_environ,
    restore_environment,
    worker_context,
)

__all__ = ["LOCAL_CLUSTER_CONFIG", "EventRunner", "WorkerLost", "local_cluster"]

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


def _one_thread_per_kernel_here() -> str | None:
    """Run in each worker process of a running cluster: kernels loaded later there
    are sized at one thread (`KERNEL_THREAD_VARIABLES`), as in our own workers.
    Returns the worker's ``MALLOC_TRIM_THRESHOLD_`` (see `LOCAL_CLUSTER_CONFIG`)."""
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = "1"
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


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
    if forked:
        _keep_our_fork_server_preload()
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


def _keep_our_fork_server_preload() -> None:
    """Keep distributed from setting the fork server's preload: ours runs already.

    A nanny's first worker makes distributed import, in this process and while the
    cluster's event loop waits, every package it would have a fork server preload
    (pandas among them: ``local_cluster(2)`` took 0.60-0.68 s of this process's CPU,
    0.10-0.14 s without), for a list that only a server started later would read,
    replacing ours (`CLUSTER_PRELOAD`) should our server have to start again. A
    private flag of ``distributed.utils``; where a release has none, nothing changes.
    """
    import distributed.utils

    if hasattr(distributed.utils, "_forkserver_preload_set"):
        distributed.utils._forkserver_preload_set = True


def _stop_heartbeats(client) -> None:
    """Stop the heartbeats of our own cluster's workers before it closes.

    The scheduler retires the workers as the cluster closes; a worker whose heartbeat
    was then on its way found the connection closed and logged an ERROR with its
    traceback on the command's stderr (1 close in 6 on 2 workers, load 9). Nothing
    waits on a heartbeat here: the worker is closed next.
    """
    try:
        client.run(_stop_heartbeat)
    except Exception:  # a worker gone already: the cluster's close deals with it
        pass


def _stop_heartbeat(dask_worker) -> None:
    """Run in a worker (`_stop_heartbeats`)."""
    dask_worker.periodic_callbacks["heartbeat"].stop()


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


def _free_slot(runner: _Runner) -> int:
    """A runner's free slot (1) or the events queued behind its running one (below 0)."""
    return 1 - runner.in_flight


class _Distributed(EventPool):
    """Events on a local cluster of ``jobs`` worker processes, each worker's through its
    `EventRunner`, or as Dask futures on a running scheduler (``tcp://HOST:PORT``); the
    cluster starts on first use."""

    in_flight_per_slot = ROUTED_IN_FLIGHT_PER_SLOT  # a queue per worker: see there

    #: Seconds between looks at a running scheduler's workers (for `Affinity`): one
    #: call to the scheduler; a worker that joined meanwhile gets no event until then.
    WORKERS_LOOK_S = 2.0

    def __init__(self, task: Callable[[Any], Any], jobs: int, address: str | None) -> None:
        super().__init__(task, jobs)
        self.address, self.client, self.cluster = address, None, None
        self.futures: dict[int, Any] = {}  # a future nobody holds is cancelled by Dask
        self.route = Affinity()
        # a running scheduler's workers (address -> threads), looked at every
        # WORKERS_LOOK_S; the events sent to each (by this pool) and where each went
        self.threads: dict[str, int] = {}
        self.sent_to: dict[str, int] = {}
        self.placed: dict[int, str] = {}
        self.look_workers = 0.0
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
            # each event's call goes to its worker and back; through the scheduler
            # (distributed's default) it took two more messages, handled in this
            # process, and a worker's death was logged as the scheduler's ERROR
            self.client = Client(self.cluster, direct_to_workers=True)
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
        """Call a runner on ``job``, lost ``lost`` times before: its map's runner, or the
        one with the fewest events in flight (`Affinity`)."""
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
            runner = self.route.pick(affinity_key(job), self.runners, _free_slot)
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
        now = time.monotonic()
        if now >= self.look_workers:
            self.threads = self.client.nthreads()
            self.look_workers = now + self.WORKERS_LOOK_S
        if not self.threads:  # none yet: the scheduler places it when one comes
            future = self.client.submit(self.task, job, key=key, pure=False)
        else:
            sent, threads = self.sent_to, self.threads
            worker = self.route.pick(
                affinity_key(job), list(threads), lambda w: threads[w] - sent.get(w, 0)
            )
            # preferred, not required: the scheduler may still move it (to a worker
            # that has nothing to do, or when that one dies)
            future = self.client.submit(self.task, job, key=key, pure=False,
                                        workers=[worker], allow_other_workers=True)  # fmt: skip
            sent[worker] = sent.get(worker, 0) + 1
            self.placed[id(job)] = worker
        self.futures[id(job)] = future
        return future

    def _forget(self, job: Any, future: Any) -> None:
        if isinstance(future, _Settled):
            future.runner.in_flight -= 1
        else:
            self.futures.pop(id(job), None)
            worker = self.placed.pop(id(job), None)
            if worker is not None:
                self.sent_to[worker] -= 1

    def close(self, interrupted: bool = False) -> None:
        if self.client is not None:
            if interrupted:
                self.client.cancel(list(self.futures.values()))
            elif self.cluster is not None:
                _stop_heartbeats(self.client)
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.records is not None:
            shutil.rmtree(self.records, ignore_errors=True)
