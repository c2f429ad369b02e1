"""The event directory: statuses, atomic generation, metadata riders, locks, vetoes."""

from __future__ import annotations

import json
import os

import pytest
from toy_handlers import AfterFragile, Double, Fragile, Online, Seed, Square

from llama.event import Event, HandlerFailed
from llama.handler import Status


@pytest.fixture
def event(tmp_path):
    ev = Event(tmp_path / "S190425z")
    ev.path("seed.json").write_text(json.dumps({"value": 3}))
    return ev


def test_statuses_follow_the_dag(event):
    assert event.status(Seed) is Status.EXISTS  # supplied from outside: no metadata
    assert event.status(Double) is Status.READY
    assert event.status(Square) is Status.WAITING
    event.generate(Double)
    assert event.status(Square) is Status.READY
    event.generate(Square)
    assert json.loads(event.path("square.json").read_text()) == {"value": 36}
    assert event.status(Square) is Status.EXISTS


def test_input_without_file_is_not_applicable(tmp_path):
    assert Event(tmp_path / "e").status(Seed) is Status.NOT_APPLICABLE


def test_metadata_rider_records_checksums_and_flags(event):
    event.generate(Double, version="9.9.9")
    meta = json.loads(event.meta_path("double.json").read_text())
    from llama.event import sha256_file

    assert meta["sha256"] == sha256_file(event.path("double.json"))
    assert meta["inputs"] == {"seed.json": sha256_file(event.path("seed.json"))}
    assert meta["version"] == "9.9.9"
    assert meta["flags"]["ROLE"] == "test"
    assert meta["generated"].endswith("+00:00") and meta["wall_time_s"] >= 0


def test_changed_input_makes_descendants_obsolete(event):
    event.generate(Double)
    event.generate(Square)
    event.path("seed.json").write_text(json.dumps({"value": 4}))
    fresh = Event(event.directory)  # a new run: no memo
    assert fresh.status(Double) is Status.OBSOLETE
    assert fresh.status(Square) is Status.EXISTS  # its own input did not change yet
    fresh.generate(Double)
    assert fresh.status(Square) is Status.OBSOLETE
    fresh.generate(Square)
    assert json.loads(fresh.path("square.json").read_text()) == {"value": 64}


def test_lock_freezes_a_file(event):
    event.generate(Double)
    event.lock_path("double.json").touch()
    event.path("seed.json").write_text(json.dumps({"value": 5}))
    assert Event(event.directory).status(Double) is Status.EXISTS


def test_failure_leaves_nothing_under_the_real_name(event):
    event.path("fail.txt").touch()
    assert event.status(Fragile) is Status.READY  # seen without a failure record...
    with pytest.raises(HandlerFailed, match="fragile failed as asked"):
        event.generate(Fragile)  # ...which the failure then writes
    assert not event.path("fragile.json").exists()
    assert not [p for p in os.listdir(event.directory) if ".tmp-" in p]
    assert event.status(Fragile) is Status.FAILED
    rider = json.loads(event.failed_path("fragile.json").read_text())
    assert "RuntimeError" in rider["traceback"]
    event.path("fail.txt").unlink()
    event.generate(Fragile)  # a later success clears the failure
    assert event.status(Fragile) is Status.EXISTS
    assert not event.failed_path("fragile.json").exists()
    assert event.status(AfterFragile) is Status.READY


def test_failure_record_never_holds_a_credential(event):
    # written blanked at once: no moment where the token sits on disk
    event.path("fail.txt").write_text("at https://ann:hunter2@host/api/?token=XYZ123")
    with pytest.raises(HandlerFailed) as info:
        event.generate(Fragile)
    rider = event.failed_path("fragile.json").read_text()
    for secret in ("hunter2", "XYZ123"):
        assert secret not in rider and secret not in str(info.value)
    assert "https://***@host/api/?token=***" in rider


def test_kill_between_metadata_and_rename_is_obsolete_not_external(event):
    event.generate(Double)
    # simulate a regeneration killed after the new rider was written, before rename
    meta = json.loads(event.meta_path("double.json").read_text())
    meta.update(sha256="0" * 64, size=1, mtime_ns=1)
    event.meta_path("double.json").write_text(json.dumps(meta))
    assert Event(event.directory).status(Double) is Status.OBSOLETE


def test_a_rider_cut_off_by_a_kill_makes_its_file_obsolete(event):
    # riders are written atomically, but a rider cut off by anything else (a full
    # disk, a copy interrupted by hand) must never pass for a valid one
    event.generate(Double)
    rider = event.meta_path("double.json").read_bytes()
    assert rider.count(b"\n") == 1 and rider.endswith(b"}\n")
    for cut in (0, 1, len(rider) // 2, len(rider) - 2):
        event.meta_path("double.json").write_bytes(rider[:cut])
        assert Event(event.directory).status(Double) is Status.OBSOLETE, cut
    event.meta_path("double.json").write_bytes(rider)
    assert Event(event.directory).status(Double) is Status.EXISTS
    # regenerated atomically: a new rider file replaces the old, no temporaries left
    inode = os.stat(event.meta_path("double.json")).st_ino
    event.path("seed.json").write_text(json.dumps({"value": 4}))
    event.generate(Double)
    assert os.stat(event.meta_path("double.json")).st_ino != inode
    assert json.loads(event.path("double.json").read_text())["value"] == 8
    assert not [n for n in os.listdir(event.directory) if ".tmp-" in n]


def test_vetoes(event):
    event.write_flags({"ONLINE": "false"})
    assert event.status(Online) is Status.VETOED
    assert event.status(Double) is Status.READY
    event.write_flags({"VETOED": "true"})
    assert event.status(Double) is Status.VETOED
    event.write_flags({"VETOED": "false", "ONLINE": "true"})
    event.path("lvc_retraction.xml").write_text("<retraction/>")
    assert event.status(Double) is Status.VETOED


def test_flags_are_validated_and_persisted(tmp_path):
    from llama.flags import FlagError

    ev = Event(tmp_path / "e", flags={"ROLE": "observation"})
    assert json.loads((ev.directory / "FLAGS.json").read_text())["ROLE"] == "observation"
    with pytest.raises(FlagError, match="choose one of: true, false"):
        ev.write_flags({"ONLINE": "maybe"})
    assert Event(tmp_path / "e").flags["ROLE"] == "observation"


def test_plain_names_only(event):
    with pytest.raises(ValueError, match="plain file name"):
        event.path("../escape.json")


def test_files_produced_together_timeouts_and_retries(tmp_path):
    import time

    from llama.handler import FileHandler, HandlerRegistry, write_json

    reg = HandlerRegistry()
    calls = {"flaky": 0}

    class Pair(FileHandler, registry=reg):
        FILENAME = "plot.png"
        ALSO_WRITES = ("plot.pdf",)

        def generate(self, out):
            out.write_bytes(b"png")
            self.extra_outputs["plot.pdf"].write_bytes(b"pdf")

    class Slow(FileHandler, registry=reg):
        FILENAME = "slow.json"
        TIMEOUT_S = 0.2

        def generate(self, out):
            time.sleep(1.0)
            write_json(out, {})

    class Flaky(FileHandler, registry=reg):
        FILENAME = "flaky.json"
        RETRIES = 2

        def generate(self, out):
            calls["flaky"] += 1
            if calls["flaky"] < 3:
                raise ConnectionError("try again")
            write_json(out, {"attempt": calls["flaky"]})

    ev = Event(tmp_path / "e")
    ev.generate(Pair)
    assert ev.path("plot.pdf").read_bytes() == b"pdf"
    assert ev.read_meta("plot.pdf")["sha256"] and ev.status(Pair) is Status.EXISTS
    ev.path("plot.pdf").unlink()
    assert ev.status(Pair) is not Status.EXISTS  # one of the pair missing: remake both
    with pytest.raises(HandlerFailed, match="did not finish within 0.2 s"):
        ev.generate(Slow)
    time.sleep(1.2)  # the abandoned attempt finishes late: it must not land or linger
    assert not ev.path("slow.json").exists()
    assert not [p for p in os.listdir(ev.directory) if ".tmp-" in p]
    ev.generate(Flaky)
    assert json.loads(ev.path("flaky.json").read_text()) == {"attempt": 3}


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    from llama.event import atomic_write_bytes

    target = tmp_path / "x.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "text, not bytes")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_temporaries_of_a_killed_write_are_cleared_by_remove_leftovers(tmp_path, monkeypatch):
    from llama.event import atomic_write_bytes

    event = Event(tmp_path / "S1")

    names = []

    def killed(src, dst):  # the process dies between writing and renaming
        names.append(os.path.basename(src))
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(event.path("a.json"), b"{}")
    monkeypatch.undo()
    # the writer cleans up after itself on the way out; a kill -9 could not, so make
    # the file it would have left and check that the next preparation removes it
    leftover = event.directory / names[0]
    leftover.write_bytes(b"{")
    assert event.remove_leftovers() == [leftover.name]
    assert not any(event.directory.iterdir())


@pytest.mark.parametrize("timeout_s", [None, 30.0], ids=["same thread", "timeout thread"])
def test_rider_records_cpu_apart_from_wall_time(tmp_path, timeout_s):
    """``cpu_time_s`` is the CPU of the thread that ran generate: a handler that sleeps
    has wall time and next to no CPU; one that computes has CPU close to its wall time
    (on a busy machine, less). Both with and without a TIMEOUT_S thread."""
    import time

    from llama.handler import FileHandler, HandlerRegistry, write_json

    reg = HandlerRegistry()

    class Sleeper(FileHandler, registry=reg):
        FILENAME = "sleeper.json"
        TIMEOUT_S = timeout_s

        def generate(self, out):
            time.sleep(0.3)
            write_json(out, {})

    class Worker(FileHandler, registry=reg):
        FILENAME = "worker.json"
        TIMEOUT_S = timeout_s

        def generate(self, out):
            start, total = time.thread_time(), 0
            while time.thread_time() - start < 0.2:  # 0.2 s of this thread's CPU
                total += sum(range(1000))
            write_json(out, {"total": total})

    ev = Event(tmp_path / "e")
    ev.generate(Sleeper)
    ev.generate(Worker)
    sleeper, worker = ev.read_meta("sleeper.json"), ev.read_meta("worker.json")
    assert sleeper["wall_time_s"] >= 0.3 and sleeper["cpu_time_s"] < 0.1
    assert 0.2 <= worker["cpu_time_s"] <= worker["wall_time_s"] + 0.01


def _watchdog_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "llama-watchdog"]


def _wait_for(condition, seconds: float = 10.0) -> bool:
    import time

    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_timed_handlers_share_a_watchdog_thread_until_one_overruns(tmp_path):
    """Handlers with a TIMEOUT_S run on one kept thread per calling thread (not one new
    thread each); a call that overruns keeps its thread busy, so the next call gets a
    new one, and the overrun thread ends once its late call returns. A calling thread
    that ends takes its watchdog with it."""
    import threading
    import time

    from llama.handler import FileHandler, HandlerRegistry, write_json

    reg = HandlerRegistry()
    ran_on: list[int] = []

    class Quick(FileHandler, registry=reg):
        FILENAME = "quick.json"
        TIMEOUT_S = 30.0

        def generate(self, out):
            ran_on.append(threading.get_ident())
            write_json(out, {})

    class Late(FileHandler, registry=reg):
        FILENAME = "late.json"
        TIMEOUT_S = 0.2

        def generate(self, out):
            ran_on.append(threading.get_ident())
            time.sleep(0.8)
            write_json(out, {})

    ev = Event(tmp_path / "e")
    before = len(_watchdog_threads())
    for _ in range(3):
        ev.path("quick.json").unlink(missing_ok=True)
        ev.generate(Quick)
    assert len(set(ran_on)) == 1 and ran_on[0] != threading.get_ident()
    assert len(_watchdog_threads()) <= before + 1
    with pytest.raises(HandlerFailed, match="did not finish within 0.2 s"):
        ev.generate(Late)
    assert ran_on[-1] == ran_on[0]
    ev.path("quick.json").unlink()
    ev.generate(Quick)
    assert ran_on[-1] != ran_on[0]  # a fresh watchdog: the old one still sleeps
    overran = next(t for t in _watchdog_threads() if t.ident == ran_on[0])
    overran.join(5.0)
    assert not overran.is_alive() and not ev.path("late.json").exists()

    caller = threading.Thread(target=lambda: Event(tmp_path / "f").generate(Quick))
    caller.start()
    caller.join()
    theirs = ran_on[-1]
    assert _wait_for(lambda: all(t.ident != theirs for t in _watchdog_threads()))


def test_a_forked_child_gets_its_own_watchdog(tmp_path):
    """A process forked after its parent ran a timed handler inherits the parent's
    watchdog holder but not its thread: the child's timed handlers must still run (not
    wait out their TIMEOUT_S on a queue nobody reads)."""
    import multiprocessing

    from llama.handler import FileHandler, HandlerRegistry, write_json

    reg = HandlerRegistry()

    class Timed(FileHandler, registry=reg):
        FILENAME = "timed.json"
        TIMEOUT_S = 20.0

        def generate(self, out):
            write_json(out, {"pid": os.getpid()})

    Event(tmp_path / "parent").generate(Timed)

    def child() -> None:
        try:
            Event(tmp_path / "child").generate(Timed)
        except HandlerFailed:
            os._exit(3)
        os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(15.0)
    assert proc.exitcode == 0
    made = json.loads((tmp_path / "child" / "timed.json").read_text())
    assert made["pid"] == proc.pid
