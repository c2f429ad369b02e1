"""Worker processes: started from a fork server, kept in step with their driver.

The worker processes of ``--scheduler processes`` and of our own local Dask cluster
are forked from one fork server (`worker_context`) that has imported the engine once
(`llama.batch.worker_preload`). Each worker (`worker_process_init`) takes the driver's
environment as it is when the pool starts, runs its kernels on one thread, leaves
Ctrl-C to the driver, sends its log records to the driver's loggers
(`LogForwarding`) and ends within a second of the driver's end. The pools themselves
are in `llama.batch.pools` (processes) and `llama.batch.cluster` (a local Dask cluster).

Examples
--------
>>> from llama.batch.worker_processes import driver_environ
>>> "MALLOC_TRIM_THRESHOLD_" in driver_environ()
False
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

__all__ = [
    "CLUSTER_PRELOAD",
    "KERNEL_THREAD_VARIABLES",
    "NOT_FORKED",
    "WORKER_PRELOAD",
    "LogForwarding",
    "after_event",
    "driver_environ",
    "keep_freed_memory",
    "kernels_for_threads",
    "restore_environment",
    "worker_context",
    "worker_process_init",
]

#: Environment variables that size the thread pools of Numba and of the numerical
#: libraries; set to 1 in worker processes, before those libraries are loaded there.
KERNEL_THREAD_VARIABLES = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


#: glibc's malloc settings for a process that runs events (`keep_freed_memory`):
#: memory freed at the top of the heap is given back to the system only beyond this
#: (``M_TRIM_THRESHOLD``; glibc's default: 128 kB, then twice the mmap threshold)...
FREED_MEMORY_KEPT = 256 << 20
#: ... and blocks up to this size come from the heap rather than from a mmap of
#: their own (``M_MMAP_THRESHOLD``; glibc's default: 128 kB, rising with the largest
#: block freed, to at most this).
LARGEST_HEAP_BLOCK = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters, malloc.h


def keep_freed_memory() -> bool:
    """Keep the memory an event frees for the next event, instead of giving it back to
    the system and faulting it in again (glibc only; elsewhere nothing changes).

    With glibc's default (adaptive) thresholds a realistic event freed and then
    page-faulted ~12 MB again (~3,200 page faults): 20-35 ms of system time of its
    60-90 ms of CPU; so set (`FREED_MEMORY_KEPT`, `LARGEST_HEAP_BLOCK`), ~5 page
    faults and 51-57 ms (one process per setting, each alternating its main thread
    and a second thread; bench/README.md, "Realistic events end to end"). A process so set holds, at most, the memory of its largest event
    plus `FREED_MEMORY_KEPT`. Called where events run: the fork server, whose
    workers inherit the setting, and the ``llama batch`` process (``--jobs 1``'s
    thread). Returns whether the settings were made.

    Examples
    --------
    >>> keep_freed_memory()  # doctest: +SKIP
    True
    """
    import ctypes

    try:  # glibc names itself here; other C libraries (musl, macOS, Windows) do not
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = mallopt(_M_TRIM_THRESHOLD, FREED_MEMORY_KEPT)
    heap = mallopt(_M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK)
    return bool(trim and heap)


def restore_environment(previous: dict[str, str | None]) -> None:
    """Put back the variables of ``previous`` (None: unset) as they were."""
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _driver_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's: the pid was reused
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):  # no /proc (not Linux): the signal test is all
        return False


def _end_with_the_driver(pid: int, every_s: float = 1.0) -> None:
    """End this worker process once the driver ``pid`` has ended.

    A pool's workers wait for their next event on a queue whose writing end they
    hold themselves, so a driver killed with SIGKILL (or out of memory) left them
    waiting for ever, ~170 MB each, and with them the fork server, which waits for
    its children. A daemon thread looks once a second.
    """

    def watch() -> None:
        while not _driver_gone(pid):
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="llama-driver-watch", daemon=True).start()


class LogForwarding:
    """The log records of worker processes, handled in the driver as its own.

    A worker's ``llama`` loggers put each record on a queue; a thread of the driver
    hands it to the driver's logger of the same name, so the events' warnings and
    failures reach the console and the ``-l`` log file, formatted and redacted as
    on threads (without this they went to the worker's stderr, unformatted, and
    never to the log file).
    """

    def __init__(self, context) -> None:
        self.queue = context.Queue()
        self.thread = threading.Thread(target=self._run, name="llama-worker-logs", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                record = self.queue.get()
            except (EOFError, OSError):  # the queue closed under us at exit
                return
            if record is None:
                return
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)

    def stop(self) -> None:
        """Hand over what is queued, then end the thread."""
        self.queue.put(None)
        self.thread.join(timeout=5)


def _forward_logs(records, level: int) -> None:
    """In a worker: the ``llama`` loggers' records from ``level`` up go on ``records``
    (`LogForwarding`); ``level`` is the driver's, so none is pickled for nothing."""
    from logging.handlers import QueueHandler

    root = logging.getLogger("llama")
    root.handlers[:] = [QueueHandler(records)]
    root.setLevel(level)
    root.propagate = False


def worker_process_init(
    environ: dict[str, str] | None = None, driver: int | None = None, records=None
) -> None:
    """Initializer of worker processes: the driver's environment, one thread per
    kernel, Ctrl-C to the driver, an end with the driver's, log records to it.

    A worker forked from the fork server (`worker_context`) starts with the server's
    environment, which is the driver's as it was when the server started; ``environ``
    is the driver's as it is now (what a spawned worker would inherit), so that an
    option set in between (``LLAMA_N_TRIALS``, say) reaches the events. ``driver``:
    the driver's process id (`_end_with_the_driver`). ``records``: the queue of
    `LogForwarding` and the driver's level of the ``llama`` logger. NumPy's global
    random state, where NumPy is loaded, is seeded afresh in each worker.
    """
    import signal

    if driver is not None:
        _end_with_the_driver(driver)
    if records is not None:
        _forward_logs(*records)
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    # before Numba, NumPy's BLAS or OpenMP are loaded in this process (when a fork
    # server preloaded Numba, its pool was sized at 1 there, by the same variables)
    for name in KERNEL_THREAD_VARIABLES:
        os.environ[name] = "1"
    # Ctrl-C is the driver's to handle: workers that got it too printed tracebacks
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # each worker forked from the fork server holds a copy of NumPy's global random
    # state: give each its own, as Dask's initializer (`initialize_worker_process`,
    # which the pool imports Dask for: ~0.12 s in each worker) does
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    if "numba" in sys.modules:  # the fork server's preload imported it
        try:  # so that only the kernels its events call are recorded
            from llama.batch.worker_kernels import watch_compiles

            watch_compiles()
        except Exception as err:  # an internal of Numba: callees recorded too
            logging.getLogger("llama.batch").debug("compiles not watched: %s", err)
    global _kernels_to_record
    _kernels_to_record = True


#: In a worker process (or a process whose events run on its threads:
#: `kernels_for_threads`) until its first event has ended: then the kernels it loaded
#: are recorded for later runs of its kind (`llama.batch.worker_kernels`).
_kernels_to_record = False


def after_event() -> None:
    """Called after each event in every worker: after the first one in a worker
    process (or on the threads of a `kernels_for_threads` run), record the kernels
    it loaded for its run's kind (`llama.batch.worker_kernels.record_used`)."""
    global _kernels_to_record
    if not _kernels_to_record:
        return
    _kernels_to_record = False
    try:
        from llama.batch.worker_kernels import record_used

        record_used()
    except Exception as err:  # a later run's workers load their kernels themselves
        logging.getLogger("llama.batch").debug("kernels used not recorded: %s", err)


def kernels_for_threads() -> dict[str, str | None]:
    """Before a run whose events run on this process's threads (``llama batch
    --jobs 1``): load the kernels earlier runs of its kind recorded, now, and record
    after the first event those it loaded in addition (`after_event`), as worker
    processes do.

    Only for a kind of run (`llama.batch.worker_kernels.RUN_VARIABLE`) that loaded
    kernels before (`llama.batch.worker_kernels.uses_kernels`): a pipeline without
    kernels (``-f SkymapInfo``) never imports Numba. Another kind's run loads its
    kernels in its events, as before, and is recorded after its first event if that
    loaded any.

    They load from Numba's cache without Numba's typing and lowering registries
    (`llama.batch.worker_kernels.cache_loads_only`), which the first event's first
    kernel otherwise loaded on its thread (0.3-0.5 s of the first event's CPU) and
    which only a compile uses. Numba is imported here with one thread per kernel, as
    the thread pool would import it (`llama.batch.pools`); returns the variables so
    set, to put back with `restore_environment` once the run has ended (Numba
    refuses another thread count once its threads run). Anything that goes wrong
    is logged at debug level: the events then load their kernels as before.
    """
    global _kernels_to_record
    _kernels_to_record = True
    try:
        from llama.batch.worker_kernels import uses_kernels

        if not uses_kernels():
            return {}
    except Exception as err:  # nothing loaded before the run, as before
        logging.getLogger("llama.batch").debug("kernels not loaded before the run: %s", err)
        return {}
    previous: dict[str, str | None] = {}
    if "numba" not in sys.modules:
        previous = {"NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS")}
        os.environ["NUMBA_NUM_THREADS"] = "1"
    try:
        from llama.batch.worker_kernels import load_recorded, watch_compiles

        load_recorded()
        watch_compiles()
    except Exception as err:  # an internal of Numba: the events load them themselves
        logging.getLogger("llama.batch").debug("kernels not loaded before the run: %s", err)
    return previous


#: What the fork server imports before it forks a worker (`worker_context`).
WORKER_PRELOAD = ("llama.batch.worker_preload",)

#: Set in the fork server's environment alone: the preload ends that process by
#: ``os._exit`` at its exit (`llama.batch.worker_preload`), never a process that
#: merely imports the module (a test's, say).
FORK_SERVER_VARIABLE = "LLAMA_FORK_SERVER"

#: Variables the fork server, and so every worker, starts without, whatever the
#: driver's environment holds: glibc reads ``MALLOC_TRIM_THRESHOLD_`` once, as a
#: process starts, and distributed's nannies write theirs (65536) into the driver's
#: environment (see `LOCAL_CLUSTER_CONFIG` for what it cost).
NOT_FORKED = ("MALLOC_TRIM_THRESHOLD_",)
#: The same for the workers of our local Dask cluster.
CLUSTER_PRELOAD = (*WORKER_PRELOAD, "distributed")
_fork_server_lock = threading.Lock()


def driver_environ() -> dict[str, str]:
    """The driver's environment as a worker forked from the fork server gets it."""
    return {k: v for k, v in os.environ.items() if k not in NOT_FORKED}


def worker_context(preload: tuple[str, ...] = WORKER_PRELOAD):
    """The multiprocessing context that starts our worker processes: a fork server.

    The fork server is one clean process, started here (once per driver process, in
    the background: this returns at once) with one thread per kernel in its
    environment; it imports ``preload`` (`llama.batch.worker_preload`: the engine,
    the handlers, Numba, the FITS reader) and then forks each worker from itself.
    A worker so starts with all of that imported, in a few milliseconds, where a
    spawned one took ~1 s of CPU to import it; and two workers share one import
    instead of paying it twice (bench/README.md, "Realistic events end to end").
    Forking the driver itself (the ``fork`` method) would be as fast but is unsafe:
    the driver has threads (the pool's, the progress bar's, fsspec's), and a child
    forked while one of them holds a lock can hang; the fork server has none.

    The server lives as long as the driver, and a second run in the same process (a
    notebook's) forks from the same server: its workers start at once, but with the
    modules as the server imported them, so source edited since reaches the workers
    only in a new process (restart the kernel). Where a platform has no fork server
    (Windows), Dask's context (spawn) is used.

    Examples
    --------
    >>> worker_context().get_start_method()  # doctest: +SKIP
    'forkserver'
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        from dask.multiprocessing import get_context

        return get_context()
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    with _fork_server_lock:
        forkserver.set_forkserver_preload(list(preload))  # used if it starts now
        server_only = [*KERNEL_THREAD_VARIABLES, *NOT_FORKED, FORK_SERVER_VARIABLE]
        before = {name: os.environ.get(name) for name in server_only}
        os.environ.update(dict.fromkeys(KERNEL_THREAD_VARIABLES, "1"))
        os.environ[FORK_SERVER_VARIABLE] = "1"
        for name in NOT_FORKED:
            os.environ.pop(name, None)
        try:  # a no-op when it runs already (a second run in a notebook, say)
            forkserver.ensure_running()
        finally:
            restore_environment(before)
    return context
