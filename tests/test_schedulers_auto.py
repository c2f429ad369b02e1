"""The default scheduler (``auto``) and worker processes forked from a fork server.

``auto`` runs ``--jobs 1`` and short runs on threads in the driver, longer runs with
``--jobs 2`` or more on worker processes; those are forked from one fork server that
imported the engine before the first event (`llama.batch.worker_preload`), and they
see the driver's environment as it is when the run starts, not as it was when the
server started. All runs are real: worker processes, a real LocalCluster.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from llama.batch import schedulers
from llama.batch.runner import BatchConfig, run_batch
from llama.handler import FileHandler, HandlerRegistry, write_json
from llama.pipeline import select_pipeline

AUTO = HandlerRegistry()


class Seed(FileHandler, registry=AUTO):
    FILENAME = "seed.json"


class WhereItRan(FileHandler, registry=AUTO):
    """Records the process it ran in, its parent, what that process had imported
    before this event's own handlers, and one variable of its environment."""

    FILENAME = "where.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        import numba

        write_json(
            out,
            {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "preloaded": "llama.batch.worker_preload" in sys.modules,
                "fits": "llama.science.fits_bintable" in sys.modules,
                "h5py": "h5py" in sys.modules,
                "leap_seconds": _leap_seconds_read(),
                "option": os.environ.get("LLAMA_TEST_AUTO_OPTION"),
                "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                "threads": numba.get_num_threads(),
                "faults": faults_reusing_freed_memory(),
            },
        )


def faults_reusing_freed_memory(blocks: int = 24, size: int = 1 << 20) -> int:
    """Page faults taken filling ``blocks`` arrays of ``size`` bytes again right after
    the same were filled and freed: a realistic event's pattern, whose freed memory
    glibc's default thresholds give back to the system (~6,000 faults here), and
    `keep_freed_memory` keeps (none)."""
    import resource

    import numpy as np

    for _ in range(2):
        held = [np.ones(size // 8) for _ in range(blocks)]
        del held
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    held = [np.ones(size // 8) for _ in range(blocks)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del held
    return faults


def _leap_seconds_read() -> bool:
    """Whether this process has brought the leap-second table up to date (at its first
    UTC conversion, `llama.science.times`), without doing it."""
    times = sys.modules.get("llama.science.times")
    return times is not None and times._leap_seconds_current.cache_info().currsize == 1


class Sleepy(FileHandler, registry=AUTO):
    """Takes a minute: its events are still running when the driver is killed."""

    FILENAME = "sleepy.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        import time

        time.sleep(60)
        write_json(out, {})


AUTO.check()


def _run(tmp_path: Path, n: int, jobs: int, scheduler: str = "auto", name: str = "run"):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for v in range(n):
        (src / f"seed-{v}.json").write_text(json.dumps({"value": v}))
    config = BatchConfig(
        pipeline=select_pipeline(with_ancestors=["WhereItRan"], registry=AUTO),
        get={"seed.json": str(src / "seed-{v}.json")},
        eventdir=str(tmp_path / name / "E{v}"),
        flags={},
        jobs=jobs,
        scheduler=scheduler,
    )
    vectors = [{"v": str(v)} for v in range(n)]
    summary = run_batch(vectors, config, total=n, progress=False)
    assert summary.ok and summary.counts["done"] == n, summary.line()
    return [json.loads((tmp_path / name / f"E{v}" / "where.json").read_text()) for v in range(n)]


@pytest.mark.parametrize(
    ("jobs", "total", "expected"),
    [
        (1, 10_000, "threads"),  # one core: a thread costs the least
        (1, None, "threads"),
        (2, 19, "threads"),  # fewer than 10 events per job: not worth a worker's start
        (2, 20, "processes"),
        (2, None, "processes"),  # endless
        (4, 39, "threads"),
        (4, 40, "processes"),
    ],
)
def test_auto_chooses_threads_for_one_job_or_few_events_per_job(jobs, total, expected):
    assert schedulers.AUTO_MIN_EVENTS_PER_JOB == 10  # the rule the help text states
    assert schedulers.choose_scheduler("auto", jobs, total) == expected


@pytest.mark.parametrize(
    "name", ["threads", "processes", "synchronous", "distributed", "tcp://h:1"]
)
def test_a_named_scheduler_is_kept(name):
    assert schedulers.choose_scheduler(name, 2, 1000) == name


def test_auto_with_one_job_runs_in_the_driver(tmp_path):
    seen = _run(tmp_path, 12, jobs=1)
    assert {s["pid"] for s in seen} == {os.getpid()}


def test_auto_with_a_short_run_stays_in_the_driver(tmp_path):
    seen = _run(tmp_path, 5, jobs=2)
    assert {s["pid"] for s in seen} == {os.getpid()}


def test_auto_with_two_jobs_forks_two_preloaded_workers(tmp_path, monkeypatch):
    # a first run starts the fork server (if no earlier test did) ...
    _run(tmp_path, 20, jobs=2, name="first")
    # ... then a variable set now must still reach the workers forked from it
    monkeypatch.setenv("LLAMA_TEST_AUTO_OPTION", "set-after-the-server-started")
    seen = _run(tmp_path, 20, jobs=2, name="second")
    pids = {s["pid"] for s in seen}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    for s in seen:
        assert s["ppid"] != os.getpid()  # a child of the fork server, not of the driver
        assert s["preloaded"] and s["fits"]  # imported before the first event
        # first-use costs of every realistic event, paid once in the fork server
        assert s["h5py"] and s["leap_seconds"]
        assert s["option"] == "set-after-the-server-started"
        assert s["threads"] == 1  # one level of parallelism: the kernels on one thread
        assert s["faults"] < 100  # memory freed by an event kept for the next


def test_workers_start_without_the_allocator_setting_the_driver_picked_up(tmp_path, monkeypatch):
    # distributed's nannies write MALLOC_TRIM_THRESHOLD_ into the driver's environment
    # (glibc reads it once, as a process starts, and it cost ~1.6x CPU per event): the
    # fork server starts without it and the workers' environment leaves it out too
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setenv("LLAMA_TEST_AUTO_OPTION", "kept")
    seen = _run(tmp_path, 20, jobs=2, scheduler="processes")
    for s in seen:
        assert s["pid"] != os.getpid()
        assert s["trim"] is None and s["option"] == "kept"
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # the driver's is its own


def test_our_local_cluster_forks_its_workers_from_the_fork_server(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("LLAMA_TEST_AUTO_OPTION", "seen-by-the-cluster")
    seen = _run(tmp_path, 4, jobs=2, scheduler="distributed")
    for s in seen:
        assert s["pid"] != os.getpid()
        assert s["preloaded"]
        assert s["option"] == "seen-by-the-cluster"
        assert s["threads"] == 1
        assert s["faults"] < 100


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc settings")
def test_keep_freed_memory_keeps_an_events_freed_memory_for_the_next():
    # in fresh processes: glibc's default gives the freed blocks back and faults them
    # in again; once kept, filling them again takes no page fault
    import platform
    import subprocess

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    code = (
        "import sys; from test_schedulers_auto import faults_reusing_freed_memory as f; "
        "from llama.batch.worker_processes import keep_freed_memory as k; "
        "kept = k() if sys.argv[1] == 'kept' else False; print(kept, f())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    seen = {}
    for how in ("default", "kept"):
        done = subprocess.run([sys.executable, "-c", code, how], capture_output=True,
                              text=True, env=env, timeout=120, check=True)  # fmt: skip
        made, faults = done.stdout.split()
        seen[how] = (made, int(faults))
    assert seen["kept"][0] == "True" and seen["kept"][1] < 100
    assert seen["default"][1] > 24 * 256 / 2  # most of the 24 MB faulted in again


def test_the_command_line_default_is_auto():
    from llama.cli.batch import parser

    args = parser().parse_args(["--eventdir", "x"])
    assert args.scheduler == "auto"
    assert "auto (the default" in parser().format_help().replace("\n", " ").replace("  ", " ")


_KILLED_DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_schedulers_auto import AUTO
from llama.batch.runner import BatchConfig, run_batch
from llama.pipeline import select_pipeline
tmp = Path(sys.argv[2])
(tmp / "src").mkdir()
for v in range(4):
    (tmp / "src" / f"seed-{v}.json").write_text(json.dumps({"value": v}))
config = BatchConfig(pipeline=select_pipeline(with_ancestors=["Sleepy"], registry=AUTO),
                     get={"seed.json": str(tmp / "src" / "seed-{v}.json")},
                     eventdir=str(tmp / "ev" / "E{v}"), flags={}, jobs=2,
                     scheduler="processes")
run_batch([{"v": str(v)} for v in range(4)], config, progress=False)
"""


def test_workers_end_soon_after_their_driver_is_killed(tmp_path):
    # SIGKILL gives the driver no chance to stop its pool: the workers, blocked on
    # their queue, used to wait for ever (and the fork server with them)
    import signal
    import subprocess
    import time

    psutil = pytest.importorskip("psutil")
    here = str(Path(__file__).parent)
    driver = subprocess.Popen([sys.executable, "-c", _KILLED_DRIVER, here, str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both events started in their workers
            if len(list((tmp_path / "ev").glob("E*/seed.json"))) >= 2:
                break
            time.sleep(0.1)
        tree = psutil.Process(driver.pid).children(recursive=True)
        workers = [p for p in tree if "forkserver" in " ".join(p.cmdline())]
        assert len(workers) >= 3, [p.cmdline() for p in tree]  # the server, 2 workers
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    for p in alive:
        p.kill()
    assert not alive, [p.pid for p in alive]


def test_a_workers_log_records_reach_the_drivers_loggers(tmp_path, caplog):
    # an event's failure is logged in the worker that ran it: the record must reach the
    # driver's handlers (console, -l log file) as it does from a thread
    src = tmp_path / "src"
    src.mkdir()
    config = BatchConfig(
        pipeline=select_pipeline(with_ancestors=["WhereItRan"], registry=AUTO),
        get={"seed.json": str(src / "missing-{v}.json")},  # no such file: every event fails
        eventdir=str(tmp_path / "ev" / "E{v}"),
        flags={},
        jobs=2,
        scheduler="processes",
    )
    with caplog.at_level("DEBUG", logger="llama"):
        summary = run_batch([{"v": str(v)} for v in range(3)], config, progress=False)
    assert summary.counts["failed"] == 3, summary.line()
    failed = [r for r in caplog.records if r.levelname == "ERROR" and "failed" in r.getMessage()]
    assert sorted(r.getMessage().split()[1] for r in failed) == ["E0", "E1", "E2"]
    assert all(r.process != os.getpid() for r in failed)  # logged in the workers
    tracebacks = [r for r in caplog.records if "traceback" in r.getMessage()]
    assert len(tracebacks) == 3 and all(r.levelname == "DEBUG" for r in tracebacks)
