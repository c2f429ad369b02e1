"""Bounded waits, Ctrl-C and concurrent runs of ``llama batch`` (issue 9, items 5 and 6).

Real parts only: a loopback server that accepts and never answers, the HTTP server of
``conftest`` failing a few times, a moto S3 server stopped for a few seconds, real
``llama batch`` processes started together, a lock holder killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import sigint_as_in_a_terminal
from llama import storage
from llama.cli import batch

LLAMA = [sys.executable, "-m", "llama.cli", "batch", "-D"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server on loopback that accepts connections and never answers; yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # kept open, never read or answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


@pytest.fixture
def short_waits(monkeypatch) -> None:
    """Half-second timeouts and a one-second retry budget (the configured default path)."""
    monkeypatch.setenv("LLAMA_CONNECT_TIMEOUT_S", "0.5")
    monkeypatch.setenv("LLAMA_READ_TIMEOUT_S", "0.5")
    monkeypatch.setenv("LLAMA_RETRY_BUDGET_S", "1")
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    old = storage.set_retry_policy(None)  # the policy from the configuration
    yield
    storage.set_retry_policy(old)


def _in_thread(func, limit_s: float):
    """Run ``func`` in a thread; its result or exception, or a failure after ``limit_s``.

    Without the bound a regression would hang the test for the old 20 minutes.
    """
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as err:  # handed back to the test
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"still waiting after {limit_s} s"
    return box, time.monotonic() - start


# -- waits ---------------------------------------------------------------------------
def test_silent_server_fails_within_the_configured_timeouts(silent_server, short_waits):
    box, seconds = _in_thread(lambda: storage.read_bytes(f"{silent_server}/S1.json"), 10)
    err = box.get("error")
    assert isinstance(err, storage.StorageError), box
    # one 0.5 s read, a pause, one more read: the budget (1 s) starts no third one
    assert seconds < 4
    assert "gave up after" in str(err) and "LLAMA_READ_TIMEOUT_S" in str(err)


def test_failures_then_answer_are_ridden_out_within_the_budget(http_server, monkeypatch):
    base_url, directory = http_server
    (directory / "x.txt").write_text("ok")
    http_server.fail("/x.txt", times=2, status=503)
    monkeypatch.setenv("LLAMA_RETRY_BUDGET_S", "5")
    old = storage.set_retry_policy(None)
    try:
        box, seconds = _in_thread(lambda: storage.read_text(f"{base_url}/x.txt"), 10)
    finally:
        storage.set_retry_policy(old)
    assert box.get("value") == "ok", box
    assert http_server.requests.count(("GET", "/x.txt")) == 3
    assert seconds < 5  # backoff 0.5 s then 1 s at most


def test_retry_budget_bounds_the_retries(http_server, monkeypatch):
    base_url, directory = http_server
    (directory / "x.txt").write_text("ok")
    http_server.fail("/x.txt", times=100, status=503)
    monkeypatch.setenv("LLAMA_RETRY_BUDGET_S", "0")
    old = storage.set_retry_policy(None)
    try:
        with pytest.raises(storage.StorageError, match="gave up after 1 try in"):
            storage.read_text(f"{base_url}/x.txt")
    finally:
        storage.set_retry_policy(old)
    assert len(http_server.requests) == 1


def test_s3_outage_shorter_than_the_budget_is_ridden_out(monkeypatch, tmp_path):
    """A 4 s outage: longer than the old fixed retries (at most 3.5 s of sleeping)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as probe:  # a free port, which the restarted server reuses
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "NO_PROXY": "127.0.0.1",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "LLAMA_RETRY_BUDGET_S": "15",
        "LLAMA_CONNECT_TIMEOUT_S": "1",
    }.items():
        monkeypatch.setenv(var, value)  # fmt: skip
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    storage.clear_cache()
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="outage")
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket="outage", Key="k", Body=b"v")
    server.stop()  # the outage starts; moto keeps its data in this process
    restarted = []

    def come_back() -> None:
        time.sleep(4)
        again = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        again.start()
        restarted.append(again)

    threading.Thread(target=come_back, daemon=True).start()
    old = storage.set_retry_policy(None)
    try:
        box, seconds = _in_thread(lambda: storage.read_bytes("s3://outage/k"), 30)
    finally:
        storage.set_retry_policy(old)
        storage.clear_cache()
        time.sleep(0.1 if restarted else 4.5)
        for s in restarted:
            s.stop()
    assert box.get("value") == b"v", box
    assert seconds >= 4


def test_bad_wait_setting_is_one_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLAMA_READ_TIMEOUT_S", "forever")
    code = batch.main(["-D", "-l", "/dev/null", "-f", "SkymapInfo", "--flags",
                       "--eventdir", str(tmp_path / "ev")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "LLAMA_READ_TIMEOUT_S='forever' is not a number of seconds; set e.g. 60" in err
    assert not (tmp_path / "ev").exists()


def test_help_documents_the_waits_and_locks(capsys):
    with pytest.raises(SystemExit):
        batch.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("LLAMA_CONNECT_TIMEOUT_S (default 10)", "LLAMA_READ_TIMEOUT_S (60)",
                 "LLAMA_RETRY_BUDGET_S (60)", "LLAMA_BATCH_LOCK_WAIT_S (10)",
                 "in use by PID n (host h)", "Ctrl-C stops the run"):  # fmt: skip
        assert text in out, text


# -- Ctrl-C --------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler, presses", [("threads", 1), ("threads", 2),
                                                ("processes", 1)])  # fmt: skip
def test_ctrl_c_stops_a_run_blocked_on_a_silent_server(silent_server, tmp_path, scheduler,
                                                       presses):  # fmt: skip
    ids = tmp_path / "ids.txt"
    ids.write_text("S1\nS2\n")
    env = {**os.environ, "LLAMA_READ_TIMEOUT_S": "120", "NO_PROXY": "127.0.0.1"}
    cmd = [*LLAMA, "-l", str(tmp_path / "log"), f"graceid={ids}", "-f", "SkymapInfo", "--flags",
           "--get", f"skymap_info.json={silent_server}/{{graceid}}.json", "--jobs", "2",
           "--scheduler", scheduler, "--eventdir", str(tmp_path / "ev" / "{graceid}")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=sigint_as_in_a_terminal)  # fmt: skip
    deadline = time.monotonic() + 30  # until both events wait on the server
    while time.monotonic() < deadline and len(list((tmp_path / "ev").glob("*/FLAGS.json"))) < 2:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    if presses == 2:
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert time.monotonic() - start < 2.5
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted" in err
    if presses == 1:  # the summary says the run is unfinished, not just "0 events: ..."
        assert "0 events: 0 done" in out and "interrupted: run the same command again" in out


# -- concurrent runs -----------------------------------------------------------------
def test_two_runs_at_once_on_the_same_events(tmp_path):
    from llama.results import read_results

    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"S{i}" for i in range(30)))
    cmd = [*LLAMA, "-l", "/dev/null", f"graceid={ids}", "-f", "SkymapInfo", "--flags",
           "--jobs", "2", "--eventdir", str(tmp_path / "ev" / "{graceid}")]  # fmt: skip
    # a run locks the events of its window as it submits them, before its worker
    # processes have started: at load 6-7 the other run waited more than the default
    # 10 s for one of them and skipped it (exit 1). What is asserted here is that
    # the two runs share the events, not how long a wait may last (that is
    # test_event_in_use_is_waited_for_then_skipped_with_its_holder's)
    env = {**os.environ, "LLAMA_BATCH_LOCK_WAIT_S": "100"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "Error" not in err, err
    done = sum(int(out.split(": ")[1].split(" done")[0]) for out, _ in results)
    assert done == 30  # every event computed exactly once, by one run or the other
    ds = read_results(tmp_path / "ev" / "llama_batch_results.nc")
    assert sorted(ds.directory.values) == sorted(str(tmp_path / "ev" / f"S{i}") for i in range(30))
    assert set(ds.state.values) <= {"done", "up to date"}
    assert not list((tmp_path / "ev").glob(".*.tmp"))


_HOLD = """
import sys, time
from llama.batch.locks import EventLock
assert EventLock(sys.argv[1]).acquire() is None
print("locked", flush=True)
time.sleep(60)
"""


def _holder(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(directory)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _run_one(tmp_path, capsys) -> tuple[int, str, str]:
    (tmp_path / "ids.txt").write_text("S1\nS2\n")
    code = batch.main(["-D", "-l", "/dev/null", f"graceid={tmp_path / 'ids.txt'}", "-f",
                       "SkymapInfo", "--flags", "--eventdir", str(tmp_path / "ev" / "{graceid}")])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def test_event_in_use_is_waited_for_then_skipped_with_its_holder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLAMA_BATCH_LOCK_WAIT_S", "0.5")
    holder = _holder(tmp_path / "ev" / "S1")
    try:
        start = time.monotonic()
        code, out, err = _run_one(tmp_path, capsys)
        assert time.monotonic() - start < 10
    finally:
        holder.kill()
        holder.wait()
    assert code == 1 and "1 done" in out and "1 skipped" in out
    assert f"event {tmp_path / 'ev' / 'S1'} in use by PID {holder.pid} (host " in err
    assert ": skipped; run the same command again once that run is over" in err
    assert not (tmp_path / "ev" / "S1" / "skymap_info.json").exists()


def test_lock_of_a_killed_run_does_not_block_the_next(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLAMA_BATCH_LOCK_WAIT_S", "0")
    holder = _holder(tmp_path / "ev" / "S1")
    os.kill(holder.pid, signal.SIGKILL)  # kill -9: no chance to clean up
    holder.wait()
    assert (tmp_path / "ev" / "S1" / ".llama-batch.lock").exists()
    code, out, err = _run_one(tmp_path, capsys)
    assert code == 0 and "2 done" in out, err
    assert "in use" not in err


def test_results_of_a_run_that_finished_meanwhile_are_merged(tmp_path):
    from llama.batch.runner import EventOutcome
    from llama.results import read_results, write_results

    path = tmp_path / "results.nc"
    write_results([EventOutcome(0, "S0", "/old/S0", {}, "done")], path)
    started = time.time()  # this run starts: the file above is a previous run's
    time.sleep(0.01)
    other = [EventOutcome(0, "S1", "/ev/S1", {"graceid": "S1"}, "done", records={"x": 1.5}),
             EventOutcome(1, "S2", "/ev/S2", {"graceid": "S2"}, "done")]  # fmt: skip
    write_results(other, path, merge_since=started)  # the other run finishes first
    mine = [EventOutcome(0, "S1", "/ev/S1", {"graceid": "S1"}, "skipped", error="in use"),
            EventOutcome(2, "S3", "/ev/S3", {"graceid": "S3"}, "done")]  # fmt: skip
    write_results(mine, path, merge_since=started)
    ds = read_results(path)
    rows = dict(zip(ds.directory.values, ds.state.values, strict=True))
    assert rows == {"/ev/S1": "done", "/ev/S2": "done", "/ev/S3": "done"}
    assert float(ds.x[list(ds.directory.values).index("/ev/S1")]) == 1.5
