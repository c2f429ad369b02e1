"""``llama batch`` with worker processes, as a user runs it: a command of its own.

With ``--jobs 2`` the run's fork server starts before the driver's own set-up, and
a thread of the driver makes the results writer ready while the workers run the
events (`llama.cli.batch._start_early`). These tests run the real command in a
process of its own (so nothing is imported beforehand), with real worker processes,
and check what a user sees: the results file, a killed run resumed, Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sigint_as_in_a_terminal
from llama.results import read_results


def _command(tmp_path: Path, ids: Path, name: str, jobs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "llama.cli", "batch", f"graceid={ids}", "-f", "SkymapInfo",
            "--flags", "--eventdir", str(tmp_path / name / "{graceid}"), "--jobs", str(jobs),
            "-D", "-v", "warning", "-l", str(tmp_path / f"{name}.log"), *extra]  # fmt: skip


def _ids(tmp_path: Path, n: int) -> Path:
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"S{i:04d}" for i in range(n)) + "\n")
    return ids


def _env(tmp_path: Path) -> dict[str, str]:
    # a temporary folder of the test's own: the warm-up's file must not be left there
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp_path / "tmp")}


def _table(path: Path) -> dict[str, tuple]:
    ds = read_results(path)
    columns = [name for name in ds.data_vars if name not in ("directory",)]
    return {
        str(ds.eventid.values[i]): tuple(str(ds[c].values[i]) for c in sorted(columns))
        for i in range(ds.sizes["event"])
    }


def test_two_workers_write_the_results_file_a_thread_writes(tmp_path):
    # --jobs 2 (auto: worker processes) warms the netCDF writer in a thread of the
    # driver while the events run; the file must be the one --jobs 1 writes without
    ids = _ids(tmp_path, 24)
    env = _env(tmp_path)
    for name, jobs in (("two", 2), ("one", 1)):
        done = subprocess.run(_command(tmp_path, ids, name, jobs), env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "24 events: 24 done" in done.stdout
    two = _table(tmp_path / "two" / "llama_batch_results.nc")
    one = _table(tmp_path / "one" / "llama_batch_results.nc")
    assert len(two) == 24 and two == one
    assert set(read_results(tmp_path / "two" / "llama_batch_results.nc").state.values) == {"done"}
    log = (tmp_path / "two.log").read_text()
    assert "scheduler auto: processes" in log
    warmed, written = log.find("results writer warmed"), log.find("results of 24 events")
    assert 0 <= warmed < written, log  # ready before the last event, not after
    assert "results writer warmed" not in (tmp_path / "one.log").read_text()  # one core
    assert list((tmp_path / "tmp").iterdir()) == []  # the warm-up's file is removed


def _wait_for(predicate, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)


def _finished(folder: Path) -> int:
    return len(list(folder.glob("*/.batch.json")))


def test_a_killed_two_worker_run_is_finished_by_the_same_command(tmp_path):
    ids = _ids(tmp_path, 400)
    command = _command(tmp_path, ids, "ev", 2)
    proc = subprocess.Popen(command, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(lambda: _finished(tmp_path / "ev") >= 30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    killed_at = _finished(tmp_path / "ev")
    assert 30 <= killed_at < 400, "the run ended before it was killed: give it more events"
    done = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ds = read_results(tmp_path / "ev" / "llama_batch_results.nc")
    states = list(ds.state.values)
    assert len(states) == 400 and set(states) <= {"done", "up to date"}
    # the events finished before the kill are not made again
    assert states.count("up to date") >= killed_at - 2  # (those written as it died)


def test_ctrl_c_ends_a_two_worker_run_and_its_workers(tmp_path):
    psutil = pytest.importorskip("psutil")
    ids = _ids(tmp_path, 2000)
    proc = subprocess.Popen(_command(tmp_path, ids, "ev", 2), env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_in_a_terminal)  # fmt: skip
    try:
        _wait_for(lambda: _finished(tmp_path / "ev") >= 30)
        tree = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:  # never outlive the test
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: run the same command again to resume" in err
    assert len(tree) >= 3, [p.cmdline() for p in tree]  # the fork server and 2 workers
    gone, alive = psutil.wait_procs(tree, timeout=10)
    for p in alive:
        p.kill()
    assert not alive, [p.cmdline() for p in alive]
