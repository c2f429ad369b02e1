"""Parallel runs: a sliding window with no barrier, one level of parallelism.

The cluster tests use a real ``distributed.LocalCluster`` of 2 worker processes,
reached by its address as ``--scheduler tcp://...`` would; the handlers below are
imported by the workers from this module.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from llama.batch.runner import BatchConfig, run_batch
from llama.handler import FileHandler, HandlerRegistry, write_json
from llama.pipeline import select_pipeline

PARALLEL = HandlerRegistry()
#: Seconds that event 0 is held at most, waiting for the driver to have the other
#: events back (`Slow`): past it, event 0 ends anyway and the test fails.
HOLD_S = 60.0
#: The file, beside the event directories, whose existence releases event 0.
RELEASE = "release-event-0"


class Seed(FileHandler, registry=PARALLEL):
    FILENAME = "seed.json"


class Slow(FileHandler, registry=PARALLEL):
    """Event 0 (seed value 0) is held until the file `RELEASE` appears beside the event
    directories (the test writes it once the driver has the other events back) or
    `HOLD_S` has passed; the others end at once. Held on a condition, not for a fixed
    time: on a loaded machine the other events took longer than a fixed sleep."""

    FILENAME = "slow.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        value = self.read_json(Seed)["value"]
        released = None
        if value == 0:
            release = self.event.directory.parent / RELEASE
            deadline = time.monotonic() + HOLD_S
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            released = release.exists()
        write_json(out, {"value": value, "pid": os.getpid(), "released": released})


class KernelThreads(FileHandler, registry=PARALLEL):
    """Records how many threads a Numba kernel called here would use."""

    FILENAME = "kernel_threads.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        import numba

        write_json(out, {"threads": numba.get_num_threads(), "pid": os.getpid()})


class KernelThreadsTimed(KernelThreads, registry=PARALLEL):
    """The same, in a handler with a time limit: its generate runs in a thread of its own."""

    FILENAME = "kernel_threads_timed.json"
    TIMEOUT_S = 60.0


class WorkerEnviron(FileHandler, registry=PARALLEL):
    """Records the allocator setting its worker process was started with, and whether
    its Dask worker (if any) samples stacks for a profile."""

    FILENAME = "worker_environ.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        import dask

        trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        profile = dask.config.get("distributed.worker.profile.enabled", None)
        monitor = dask.config.get("distributed.worker.memory.monitor-interval", None)
        routes = dask.config.get("distributed.worker.http.routes", None)
        write_json(out, {"MALLOC_TRIM_THRESHOLD_": trim, "profile": profile, "pid": os.getpid(),
                         "monitor": monitor, "routes": routes})  # fmt: skip


def _attempts(events: Path, value: int, what: str = "start") -> list[int]:
    """The processes that started (or ended) the event of seed ``value``, in order
    (`DiesOnOne`)."""
    path = events / f"attempts-{value}"
    lines = path.read_text().splitlines() if path.exists() else []
    return [int(line.split()[1]) for line in lines if line.startswith(what)]


class DiesOnOne(FileHandler, registry=PARALLEL):
    """Ends its Dask worker process at once for the seed value 1, every time (a worker
    killed in the middle of an event, by the kernel's OOM killer say); every event
    records each process that started it beside the event directories (`_attempts`)."""

    FILENAME = "dies_on_one.json"
    DEPENDENCIES = (Seed,)
    #: the attempts of event 1 that end their worker (all but those past this many)
    DEADLY_ATTEMPTS = 10**6

    def generate(self, out: Path) -> None:
        value = self.read_json(Seed)["value"]
        events = self.event.directory.parent
        before = len(_attempts(events, value))
        with open(events / f"attempts-{value}", "a") as log:
            log.write(f"start {os.getpid()}\n")
        if value == 1 and before < self.DEADLY_ATTEMPTS:
            from distributed import get_worker

            get_worker()  # raises ValueError outside a Dask worker: never the test's process
            os._exit(1)
        write_json(out, {"value": value, "pid": os.getpid()})
        with open(events / f"attempts-{value}", "a") as log:
            log.write(f"end {os.getpid()}\n")


class DiesOnceOnOne(DiesOnOne, registry=PARALLEL):
    """The same, but event 1 ends its worker on its first attempt only."""

    FILENAME = "dies_once_on_one.json"
    DEADLY_ATTEMPTS = 1


PARALLEL.check()


def _config(tmp_path: Path, n: int, handler: str, **kw) -> BatchConfig:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for v in range(n):
        (src / f"seed-{v}.json").write_text(json.dumps({"value": v}))
    return BatchConfig(
        pipeline=select_pipeline(with_ancestors=[handler], registry=PARALLEL),
        get={"seed.json": str(src / "seed-{v}.json")},
        eventdir=str(tmp_path / "events" / "E{v}"),
        flags={},
        **kw,
    )


def _finish_order(tmp_path: Path, n: int, release_after: int, **kw) -> list[int]:
    """The order in which the driver got the events back, event 0 held (`Slow`) until
    the driver has ``release_after`` of the others back. With a barrier anywhere
    (chunks of events, say) the driver could not get them while event 0 is held:
    event 0 would end at `HOLD_S` instead, and is asserted not to have."""
    order: list[int] = []
    config = _config(tmp_path, n, "Slow", **kw)

    def back(outcome) -> None:
        order.append(int(outcome.vector["v"]))
        if len(order) == release_after and 0 not in order:
            (tmp_path / "events" / RELEASE).touch()

    summary = run_batch([{"v": str(v)} for v in range(n)], config, progress=False, on_outcome=back)
    assert summary.ok and summary.counts["done"] == n, summary.line()
    assert sorted(order) == list(range(n))
    held = json.loads((tmp_path / "events" / "E0" / Slow.FILENAME).read_text())
    assert held["released"], f"event 0 held the others back: {order}"
    return order


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


def test_a_slow_event_holds_back_no_other_on_a_cluster(tmp_path, cluster):
    # 40 events: with the old chunks of 16, events 16-39 waited for event 0's chunk
    n = 40
    # the other worker runs them all while event 0 is held; one event may have been
    # queued on event 0's worker before the scheduler saw it was busy
    order = _finish_order(tmp_path, n, n - 2, jobs=2, scheduler=cluster.scheduler_address)
    assert order.index(0) >= n - 2, order


def test_a_slow_event_holds_back_no_other_on_local_threads(tmp_path):
    n = 40
    order = _finish_order(tmp_path, n, n - 1, jobs=2, scheduler="threads")
    assert order[-1] == 0, order


def test_events_in_flight_never_exceed_the_window(tmp_path, cluster):
    n, window = 30, 3
    config = _config(tmp_path, n, "Seed", jobs=2, scheduler=cluster.scheduler_address)
    config.chunk_events = window
    events = tmp_path / "events"
    drawn_not_finished = []

    def vectors():
        for v in range(n):
            finished = sum(1 for _ in events.glob("E*/.batch.json")) if events.exists() else 0
            drawn_not_finished.append(v - finished)
            yield {"v": str(v)}

    summary = run_batch(vectors(), config, progress=False)
    assert summary.ok and summary.counts["done"] == n
    assert max(drawn_not_finished) <= window, drawn_not_finished


def test_duplicate_directories_never_run_at_once_on_a_cluster(tmp_path, cluster):
    config = _config(tmp_path, 3, "Slow", jobs=2, scheduler=cluster.scheduler_address)
    vectors = [{"v": "1"}, {"v": "2"}, {"v": "1"}, {"v": "1"}, {"v": "2"}]
    summary = run_batch(vectors, config, progress=False)
    assert summary.counts == {"done": 2, "up to date": 3}, summary.line()


@pytest.mark.parametrize("handler", [KernelThreads, KernelThreadsTimed])
@pytest.mark.parametrize("scheduler", ["threads", "processes", "synchronous"])
def test_kernels_run_single_threaded_inside_each_event(tmp_path, scheduler, handler):
    numba = pytest.importorskip("numba")  # loaded before the run, as the kernels load it
    before = numba.get_num_threads()
    config = _config(tmp_path, 4, handler.__name__, jobs=2, scheduler=scheduler)
    summary = run_batch([{"v": str(v)} for v in range(4)], config, progress=False)
    assert summary.ok
    for v in range(4):
        seen = json.loads((tmp_path / "events" / f"E{v}" / handler.FILENAME).read_text())
        assert seen["threads"] == 1, (scheduler, seen)
    # the calling thread (a notebook's, say) gets its own setting back
    assert numba.get_num_threads() == before


def test_kernels_run_single_threaded_on_a_cluster(tmp_path, cluster):
    config = _config(tmp_path, 4, "KernelThreads", jobs=2, scheduler=cluster.scheduler_address)
    summary = run_batch([{"v": str(v)} for v in range(4)], config, progress=False)
    assert summary.ok
    for v in range(4):
        seen = json.loads((tmp_path / "events" / f"E{v}" / "kernel_threads.json").read_text())
        assert seen["threads"] == 1, seen


def test_an_up_to_date_rerun_starts_no_workers(tmp_path, monkeypatch):
    from llama.batch import pools

    config = _config(tmp_path, 3, "Seed", jobs=2, scheduler="processes")
    vectors = [{"v": str(v)} for v in range(3)]
    assert run_batch(vectors, config, progress=False).counts["done"] == 3
    made = []
    real = pools._Executor._make
    monkeypatch.setattr(pools._Executor, "_make", lambda self: made.append(1) or real(self))
    again = run_batch(vectors, config, progress=False)
    assert again.counts["up to date"] == 3 and not made


def test_our_local_cluster_keeps_the_default_allocator_no_profiler_and_our_environ(
    tmp_path, monkeypatch
):
    # distributed's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536 (and put
    # their pre-spawn variables in the driver's environment to do it): a realistic
    # event then cost ~60% more CPU in page faults. Our own cluster drops it.
    pytest.importorskip("distributed")
    names = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED")
    for name in names:
        monkeypatch.delenv(name, raising=False)  # an earlier cluster may have set them
    config = _config(tmp_path, 2, "WorkerEnviron", jobs=1, scheduler="distributed")
    summary = run_batch([{"v": "0"}, {"v": "1"}], config, progress=False)
    assert summary.ok and summary.counts["done"] == 2, summary.line()
    for v in range(2):
        seen = json.loads((tmp_path / "events" / f"E{v}" / "worker_environ.json").read_text())
        assert seen["pid"] != os.getpid()  # it ran in a worker process
        assert seen["MALLOC_TRIM_THRESHOLD_"] is None, seen
        assert seen["profile"] is False, seen  # no dashboard to show it
        assert seen["monitor"] == "1s" and seen["routes"] == [], seen  # nor to read these
    for name in names:
        assert name not in os.environ, name


def test_a_cluster_whose_workers_trim_malloc_is_named_with_the_fix(tmp_path, cluster, caplog):
    # the module's cluster is made with distributed's defaults, as a user's would be
    config = _config(tmp_path, 1, "Seed", jobs=2, scheduler=cluster.scheduler_address)
    with caplog.at_level("WARNING", logger="llama.batch"):
        assert run_batch([{"v": "0"}], config, progress=False).ok
    (warning,) = [r.getMessage() for r in caplog.records if "MALLOC_TRIM" in r.getMessage()]
    assert cluster.scheduler_address in warning
    assert "pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ to null" in warning


def test_our_local_cluster_runs_each_event_as_a_call_to_its_workers_runner(tmp_path):
    pytest.importorskip("distributed")
    from llama.batch.cluster import _Distributed

    calls = []
    real = _Distributed._collect

    async def collect(self, job, runner, call, *more):
        calls.append(runner)
        await real(self, job, runner, call, *more)

    config = _config(tmp_path, 6, "Seed", jobs=2, scheduler="distributed")
    try:
        _Distributed._collect = collect
        summary = run_batch([{"v": str(v)} for v in range(6)], config, progress=False)
    finally:
        _Distributed._collect = real
    assert summary.ok and summary.counts["done"] == 6, summary.line()
    # every event went to one of the 2 workers' runners, and both had some
    assert len(calls) == 6 and len({id(r) for r in calls}) == 2


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """Whether process ``pid`` has ended: no such process, or a zombie its parent has
    not reaped yet (under load a nanny reaps its dead worker late), waiting up to
    ``wait_s`` seconds for it to end."""
    end = time.monotonic() + wait_s
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # Linux: the state letter follows the command's closing parenthesis
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            state = ""
        if state == "Z":
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.1)


def _never_twice_at_once(events: Path, n: int) -> None:
    """Each event's attempts (`DiesOnOne`) follow one another: each one but the last
    ended before the next began, or ran in a worker process that died. (An event whose
    result was on its way back when its worker died may have run to its end twice.)"""
    for v in range(n):
        lines = (events / f"attempts-{v}").read_text().splitlines()
        starts = [k for k, line in enumerate(lines) if line.startswith("start")]
        assert lines[-1].startswith("end") or v == 1, (v, lines)
        for k, following in zip(starts, starts[1:], strict=False):
            pid = lines[k].split()[1]
            ended = f"end {pid}" in lines[k + 1 : following]
            assert ended or _gone(int(pid)), (v, lines)


def test_an_event_whose_worker_dies_runs_again_on_a_live_worker(tmp_path):
    # event 1 ends its worker the first time (killed, out of memory); it is sent again
    # to a live runner, as Dask retries a task, and is done; an event queued behind
    # it on that worker had not started, and is sent again too
    pytest.importorskip("distributed")
    n = 10
    config = _config(tmp_path, n, "DiesOnceOnOne", jobs=2, scheduler="distributed")
    summary = run_batch([{"v": str(v)} for v in range(n)], config, progress=False)
    assert summary.ok and summary.counts["done"] == n, summary.line()
    events = tmp_path / "events"
    first, again = _attempts(events, 1)  # started twice: in the worker that died, then not
    assert _gone(first) and again != first
    done = json.loads((events / "E1" / DiesOnceOnOne.FILENAME).read_text())
    assert done["pid"] == again
    _never_twice_at_once(events, n)


def test_an_event_that_kills_every_worker_fails_after_the_allowed_retries(tmp_path):
    # event 1 ends every worker it is sent to: it runs 1 + allowed-failures times (3,
    # Dask's default), each in a worker process of its own, then fails with a message
    # naming the cause and how to run it again; the others are done
    pytest.importorskip("distributed")
    import dask

    allowed = dask.config.get("distributed.scheduler.allowed-failures")
    n = 10
    config = _config(tmp_path, n, "DiesOnOne", jobs=2, scheduler="distributed")
    summary = run_batch([{"v": str(v)} for v in range(n)], config, progress=False)
    failed = {int(o.vector["v"]): o.error for o in summary.outcomes if o.state == "failed"}
    assert list(failed) == [1] and summary.counts["done"] == n - 1, summary.line()
    assert "worker was lost" in failed[1], failed
    assert f"lost with its worker {allowed + 1} times" in failed[1], failed
    assert "allowed-failures" in failed[1] and "Run the same command again" in failed[1]
    pids = _attempts(tmp_path / "events", 1)
    assert len(pids) == allowed + 1 and len(set(pids)) == len(pids), pids
    assert all(_gone(pid) for pid in pids), pids
    _never_twice_at_once(tmp_path / "events", n)


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_our_local_cluster_keeps_both_workers_busy_whatever_the_jobs(tmp_path):
    # the pool counts each runner's events in flight from what comes back, not from
    # the job (here one and the same object for every event)
    pytest.importorskip("distributed")
    from llama.batch.schedulers import make_pool

    pool = make_pool("distributed", 2, _pid_after)
    try:
        job, todo, pids = 0.1, 12, []
        while todo or pool.in_flight:
            while todo and pool.in_flight < 4:
                pool.submit(job)
                todo -= 1
            pids.append(pool.next_finished(timeout=60)[1])
        assert all(isinstance(pid, int) for pid in pids), pids
        assert len(set(pids[-6:])) == 2, pids
        assert [r.in_flight for r in pool.runners] == [0, 0]
    finally:
        pool.close()


def test_a_worker_killed_while_idle_costs_the_next_events_nothing(tmp_path):
    # both workers killed between events (SIGKILL, as the OOM killer does): the next
    # events, sent to their runners before the driver knows, are sent again to the
    # runners of the restarted workers and counted as lost by none (allowed 0 here)
    pytest.importorskip("distributed")
    import signal

    import dask

    from llama.batch.schedulers import make_pool

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        pool = make_pool("distributed", 2, _pid_after)
        try:
            for _ in range(2):
                pool.submit(0.0)
            first = [pool.next_finished(timeout=60)[1] for _ in range(2)]
            killed = set(pool.client.run(os.getpid).values())
            assert set(first) <= killed and len(killed) == 2, (first, killed)
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            for _ in range(4):
                pool.submit(0.05)
            after = [pool.next_finished(timeout=60) for _ in range(4)]
        finally:
            pool.close()
    pids = [result for _, result in after]
    assert all(isinstance(pid, int) and pid not in killed for pid in pids), pids
