"""The batch runner: Dask graphs per event, failures, resume, schedulers, results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from toy_handlers import TOY

from llama.batch.runner import BatchConfig, make_job, run_batch
from llama.pipeline import select_pipeline

HERE = Path(__file__).parent


def _seed_files(root: Path, values: list[int]) -> None:
    for v in values:
        (root / f"seed-{v}.json").write_text(json.dumps({"value": v}))


def _config(tmp_path: Path, handlers=("Square",), **kw) -> BatchConfig:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    _seed_files(src, range(10))
    return BatchConfig(
        pipeline=select_pipeline(with_ancestors=list(handlers), registry=TOY),
        get={"seed.json": str(src / "seed-{v}.json")},
        eventdir=str(tmp_path / "events" / "E{v}"),
        flags={},
        jobs=2,
        **kw,
    )


def test_events_run_through_the_dag(tmp_path):
    summary = run_batch([{"v": str(v)} for v in range(4)], _config(tmp_path), progress=False)
    assert summary.ok and summary.counts["done"] == 4
    for v in range(4):
        square = json.loads((tmp_path / "events" / f"E{v}" / "square.json").read_text())
        assert square == {"value": (2 * v) ** 2}
    assert [o.records["double"] for o in summary.outcomes] == [0, 2, 4, 6]


def test_rerun_skips_finished_events_and_redoes_obsolete_ones(tmp_path):
    config = _config(tmp_path)
    vectors = [{"v": str(v)} for v in range(3)]
    run_batch(vectors, config, progress=False)
    square = tmp_path / "events" / "E1" / "square.json"
    before = square.stat().st_mtime_ns
    again = run_batch(vectors, config, progress=False)
    assert again.counts["up to date"] == 3 and square.stat().st_mtime_ns == before
    # an input changed by hand: its descendants are regenerated, nothing else
    (tmp_path / "events" / "E1" / "seed.json").write_text(json.dumps({"value": 5}))
    third = run_batch(vectors, config, progress=False)
    assert third.counts["done"] == 1 and third.counts["up to date"] == 2
    assert json.loads(square.read_text()) == {"value": 100}


def test_a_failing_event_does_not_stop_the_batch(tmp_path):
    config = _config(tmp_path, handlers=("AfterFragile", "Square"))
    config.errdump = [str(tmp_path / "dumps")]
    bad = tmp_path / "events" / "E1"
    bad.mkdir(parents=True)
    (bad / "fail.txt").touch()
    summary = run_batch([{"v": str(v)} for v in range(3)], config, progress=False)
    assert summary.counts == {"done": 2, "failed": 1}
    assert not summary.ok
    failed = summary.outcomes[1]
    assert failed.statuses["Fragile"] == "FAILED" and failed.statuses["AfterFragile"] == "WAITING"
    assert failed.statuses["Square"] == "EXISTS"  # independent branch still made
    assert not (bad / "fragile.json").exists() and not (bad / "after_fragile.json").exists()
    dump = tmp_path / "dumps" / "E1"
    assert (dump / "seed.json").exists()
    log = (dump / "ERRDUMP.log").read_text()
    assert "fragile failed as asked" in log and "'v': '1'" in log.replace('"', "'")
    # fixed by hand, the same command finishes the event
    (bad / "fail.txt").unlink()
    again = run_batch([{"v": str(v)} for v in range(3)], config, progress=False)
    assert again.ok and again.counts == {"done": 1, "up to date": 2}
    assert (bad / "after_fragile.json").exists()


def test_exact_selection_fails_on_missing_inputs(tmp_path):
    config = _config(tmp_path)
    config.pipeline = select_pipeline(exact=["Square"], registry=TOY)
    summary = run_batch([{"v": "1"}], config, progress=False)
    assert summary.counts["failed"] == 1
    assert "missing inputs double.json" in summary.outcomes[0].error


def test_temporary_event_dirs_are_removed_after_put(tmp_path):
    config = _config(tmp_path)
    config.eventdir = None
    config.put = {"square.json": str(tmp_path / "out" / "{v}" / "square.json")}
    summary = run_batch([{"v": "2"}, {"v": "3"}], config, progress=False)
    assert summary.ok
    assert json.loads((tmp_path / "out" / "3" / "square.json").read_text()) == {"value": 36}
    assert not any(Path(o.directory).exists() for o in summary.outcomes)


def test_duplicate_event_dirs_never_run_at_once(tmp_path):
    config = _config(tmp_path)
    config.chunk_events = 4
    summary = run_batch([{"v": "1"}] * 6, config, progress=False)
    assert summary.counts == {"done": 1, "up to date": 5}


@pytest.mark.parametrize("scheduler", ["synchronous", "processes"])
def test_other_local_schedulers(tmp_path, scheduler):
    config = _config(tmp_path, scheduler=scheduler)
    summary = run_batch([{"v": str(v)} for v in range(3)], config, progress=False)
    assert summary.ok and summary.counts["done"] == 3


def test_distributed_cluster_with_worker_processes(tmp_path):
    pytest.importorskip("distributed")
    config = _config(tmp_path, scheduler="distributed")
    summary = run_batch([{"v": str(v)} for v in range(5)], config, progress=False)
    assert summary.ok and summary.counts["done"] == 5
    meta = json.loads((tmp_path / "events" / "E4" / ".square.json.meta.json").read_text())
    assert meta["inputs"]


def test_unknown_scheduler_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown scheduler 'gpu'"):
        run_batch([{"v": "1"}], _config(tmp_path, scheduler="gpu"), progress=False)


def test_templates_are_rendered_per_event(tmp_path):
    job = make_job(7, {"v": "3"}, _config(tmp_path))
    assert job.directory == tmp_path / "events" / "E3"
    assert job.get["seed.json"].endswith("seed-3.json")


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from toy_handlers import TOY
    from llama.batch.runner import BatchConfig, run_batch
    from llama.pipeline import select_pipeline
    config = BatchConfig(
        pipeline=select_pipeline(with_ancestors=["Square"], registry=TOY),
        get={{"seed.json": {src!r} + "/seed-{{v}}.json"}},
        eventdir={root!r} + "/E{{v}}", flags={{}}, jobs=2, chunk_events=2,
    )
    s = run_batch([{{"v": str(v)}} for v in range(10)], config, progress=False)
    print(dict(s.counts))
    """
)


def _parses(path) -> bool:
    try:
        json.loads(path.read_bytes())
    except ValueError:
        return False
    return True


def test_killed_run_resumes_without_redoing_finished_events(tmp_path):
    src, root = tmp_path / "src", tmp_path / "events"
    src.mkdir()
    _seed_files(src, range(10))
    script = KILL_SCRIPT.format(here=str(HERE), src=str(src), root=str(root))
    env = {**os.environ, "TOY_DELAY_S": "0.15"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some, not all, events are finished
        if len(list(root.glob("*/.batch.json"))) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # riders are written atomically; one that did not parse (it cannot, but readers
    # must not trust it) would leave its event unfinished, and the re-run takes it
    finished = {p.parent.name: p.parent.joinpath("square.json").stat().st_mtime_ns
                for p in root.glob("*/.batch.json") if _parses(p)}  # fmt: skip
    assert 2 <= len(finished) < 10
    for path in root.rglob("*"):  # nothing half-written under a real name
        if path.suffix == ".json" and not path.name.startswith("."):
            json.loads(path.read_text())
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    counts = eval(out.stdout.strip().splitlines()[-1])
    assert counts.get("up to date", 0) >= len(finished) and "failed" not in counts
    assert sum(counts.values()) == 10
    for name, mtime in finished.items():
        assert (root / name / "square.json").stat().st_mtime_ns == mtime
    for v in range(10):
        assert json.loads((root / f"E{v}" / "square.json").read_text()) == {"value": 4 * v * v}


def test_events_in_flight_are_bounded_whatever_jobs_says(tmp_path, monkeypatch):
    """Many jobs must not queue many events: at most MAX_IN_FLIGHT wait at once."""
    from llama.batch import runner

    monkeypatch.setattr(runner, "MAX_IN_FLIGHT", 6)
    n = 30
    config = _config(tmp_path)
    config.jobs = min(64, runner.max_jobs())  # 8 events per job would have been 512
    _seed_files(tmp_path / "src", range(n))
    events = tmp_path / "events"
    waiting = []

    def vectors():
        for v in range(n):
            finished = sum(1 for _ in events.glob("E*/.batch.json")) if events.exists() else 0
            waiting.append(v - finished)  # events drawn but not finished yet
            yield {"v": str(v)}

    summary = run_batch(vectors(), config, progress=False)
    assert summary.ok and summary.counts["done"] == n
    assert max(waiting) <= 6, waiting


def test_an_up_to_date_rerun_takes_the_records_of_the_run_that_finished_it(tmp_path, monkeypatch):
    from llama.batch import runner

    src = tmp_path / "src"
    src.mkdir()
    info = json.loads((HERE.parent / "llama/examples/events/S190425a/skymap_info.json").read_text())
    for g in range(3):
        (src / f"S{g}.json").write_text(json.dumps({**info, "graceid": f"S{g}"}))
    config = BatchConfig(
        pipeline=select_pipeline(exact=["SkymapInfo"]),
        get={"skymap_info.json": str(src / "S{g}.json")},
        eventdir=str(tmp_path / "ev" / "S{g}"),
        flags={},
        jobs=1,
    )
    vectors = [{"g": str(g)} for g in range(3)]
    first = run_batch(vectors, config, progress=False)
    assert first.counts["done"] == 3 and first.outcomes[1].records["graceid"] == "S1"

    def unread(job, event=None):
        raise AssertionError(f"{job.directory.name}: records read again")

    with monkeypatch.context() as patch:
        patch.setattr(runner, "_collect_records", unread)
        again = run_batch(vectors, config, progress=False)
    assert again.counts["up to date"] == 3
    assert [o.records for o in again.outcomes] == [o.records for o in first.outcomes]

    # an input edited in place is still up to date (it has no rider), but its records
    # are read again: its size and mtime no longer match those kept
    edited = tmp_path / "ev" / "S1" / "skymap_info.json"
    edited.write_text(json.dumps({**info, "graceid": "S1", "far": 2.5e-10}))
    third = run_batch(vectors, config, progress=False)
    assert third.counts["up to date"] == 3
    assert third.outcomes[1].records["far"] == 2.5e-10
    assert third.outcomes[0].records == first.outcomes[0].records


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        ("broken", "its worker was lost: BrokenProcessPool: A process in the pool died"),
        ("lost", "its worker was lost: lost with its worker 4 times"),
        ("other", "its task failed in the pool: PicklingError: cannot pickle 'x'"),
    ],
)
def test_an_event_whose_task_never_returned_says_why(tmp_path, err, expected):
    """A failure handed back by the pool instead of an outcome: a lost worker is named
    as such (the cluster's WorkerLost message without its class name), anything else
    as the pool's failure, not as a lost worker."""
    import pickle
    from concurrent.futures.process import BrokenProcessPool

    from llama.batch.cluster import WorkerLost
    from llama.batch.runner import EventJob, _lost_outcome

    errors = {
        "broken": BrokenProcessPool("A process in the pool died"),
        "lost": WorkerLost("lost with its worker 4 times"),
        "other": pickle.PicklingError("cannot pickle 'x'"),
    }
    job = EventJob(
        index=3, vector={"v": "3"}, directory=tmp_path / "E3", temporary=False, get={},
        put={}, format=(), errdump=(), flags=None, public=False, version="", handlers=(),
        explicit=frozenset(), err_alert=False, environ={},
    )  # fmt: skip
    outcome = _lost_outcome(job, errors[err])
    assert outcome.state == "failed" and outcome.eventid == "E3"
    assert outcome.error == expected
