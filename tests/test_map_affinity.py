"""Events of one sky map go to one worker process (`llama.batch.pools.Affinity`), while
the load stays balanced: real worker processes (our process pool, our own local Dask
cluster, a running cluster reached by its address), the worker's pid in each result.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import defaultdict
from concurrent.futures import BrokenExecutor
from pathlib import Path

import pytest

from llama.batch.pools import Affinity, _Executor
from llama.batch.runner import BatchConfig, run_batch
from llama.handler import FileHandler, HandlerRegistry, write_json
from llama.pipeline import select_pipeline

AFFINITY = HandlerRegistry()


class Seed(FileHandler, registry=AFFINITY):
    FILENAME = "seed.json"


class WorkerPid(FileHandler, registry=AFFINITY):
    """Records the process it ran in, after 0.1 s (so that events overlap)."""

    FILENAME = "worker_pid.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        time.sleep(0.1)
        write_json(out, {"pid": os.getpid()})


AFFINITY.check()


class _Job:
    """A pool task's job: its affinity key, how long it takes, whether it kills its
    worker process."""

    def __init__(self, key: str, seconds: float = 0.1, dies: bool = False) -> None:
        self.affinity, self.seconds, self.dies = key, seconds, dies


def _pid_after(job: _Job) -> int:
    if job.dies:
        os._exit(1)
    time.sleep(job.seconds)
    return os.getpid()


def _run(pool, jobs: list[_Job], window: int) -> list[tuple[_Job, object]]:
    """Every job through ``pool`` with at most ``window`` in flight, as the runner
    does; ``(job, result)`` in the order they finished."""
    done, todo = [], list(jobs)
    while todo or pool.in_flight:
        while todo and pool.in_flight < window:
            pool.submit(todo.pop(0))
        got = pool.next_finished(timeout=60)
        assert got is not None, "no event finished within 60 s"
        done.append(got)
    return done


def _pids_by_key(done) -> dict[str, list[int]]:
    pids = defaultdict(list)
    for job, pid in done:
        assert isinstance(pid, int), pid
        pids[job.affinity].append(pid)
    return pids


@pytest.fixture
def processes():
    pool = _Executor(_pid_after, 2, processes=True)
    yield pool
    pool.close()


def _two_maps(n: int = 40) -> list[str]:
    """Keys of ``n`` events over two maps in a shuffled order (alternated, a pool that
    ignored the keys would put each map on one worker by chance)."""
    rng = random.Random(4)
    return ["a", "b"] + [rng.choice("ab") for _ in range(n - 2)]


def _share_on_one_worker(pids: dict) -> float:
    """The smallest share, over the keys, of a key's events run by its busiest worker."""
    return min(max(map(p.count, set(p))) / len(p) for p in pids.values())


def test_the_events_of_two_maps_run_on_one_worker_each(processes):
    # a key's events stay on its worker unless that one is two events behind the
    # other: simulated on these keys, 0.95 of each map's events on its worker at
    # worst; without the keys (the least loaded worker), 0.71 at best
    pids = _pids_by_key(_run(processes, [_Job(key) for key in _two_maps()], window=3 * 2))
    assert _share_on_one_worker(pids) >= 0.8, pids
    assert max(pids["a"], key=pids["a"].count) != max(pids["b"], key=pids["b"].count), pids


def test_the_events_of_one_map_still_keep_every_worker_busy(processes):
    pids = _pids_by_key(_run(processes, [_Job("a") for _ in range(16)], window=3 * 2))
    per_worker = sorted(pids["a"].count(pid) for pid in set(pids["a"]))
    assert len(per_worker) == 2 and per_worker[0] >= 5, per_worker


def test_a_worker_behind_hands_its_maps_events_to_a_free_one(processes):
    # map a's events take 30 times as long as map b's: a's worker falls behind and,
    # rather than b's worker idling, a's events spill over to it; b's stay on b's
    jobs = [_Job(key, seconds) for _ in range(8) for key, seconds in (("a", 0.3), ("b", 0.01))]
    pids = _pids_by_key(_run(processes, jobs, window=3 * 2))
    assert len(set(pids["b"])) == 1, pids
    assert len(set(pids["a"])) == 2, pids


def test_the_last_events_do_not_queue_behind_one_worker(processes):
    # six events of one map submitted at once: routed, four go to the map's worker
    # (the other is within one event of it) and two to the other; once no more
    # come, the one that has run out takes the one still waiting in the driver
    pids = _pids_by_key(_run(processes, [_Job("a", 0.3) for _ in range(6)], window=6))
    assert sorted(pids["a"].count(pid) for pid in set(pids["a"])) == [3, 3], pids


def test_a_worker_that_dies_fails_its_event_and_its_map_goes_on_in_a_fresh_one(processes):
    ((job, err),) = _run(processes, [_Job("a", dies=True)], window=6)
    assert isinstance(err, BrokenExecutor), err
    jobs = [_Job(key) for _ in range(4) for key in ("a", "b")]
    done = _run(processes, jobs, window=6)
    pids = _pids_by_key(done)
    assert len(pids["a"]) == len(pids["b"]) == 4  # every one ran (in a live process)
    assert processes.loads == [0, 0] and not processes.placed
    assert not any(processes.waiting)


def test_the_router_balances_without_keys_and_forgets_the_oldest_keys():
    route = Affinity()
    route.MAX_KEYS = 3
    loads = {"x": 2, "y": 0, "z": 1}
    assert route.pick(None, list(loads), lambda w: 1 - loads[w]) == "y"
    for key in "abcd":
        route.pick(key, list(loads), lambda w: 1 - loads[w])
    assert list(route.owner) == ["b", "c", "d"]
    # an owner no longer among the workers (it died): the key goes to the least loaded
    route.owner["b"] = "gone"
    assert route.pick("b", ["x", "z"], lambda w: 1 - loads[w]) == "z"
    assert route.owner["b"] == "z"


# -- through run_batch: each event's sky map a link to one of two map files ------------
#: The map of each event of `_campaign` (shuffled: `_two_maps`).
MAPS = [ord(key) - ord("a") for key in _two_maps(24)]


def _campaign(tmp_path: Path, scheduler: str, n: int = 24) -> tuple[BatchConfig, list[dict]]:
    """``n`` events over two maps, as bench_realistic lays them out: each event's folder
    holds a link to its map (100 kB) and its own small seed file."""
    src = tmp_path / "src"
    for m in range(2):
        (src / "maps").mkdir(parents=True, exist_ok=True)
        (src / "maps" / f"m{m}.fits").write_bytes(bytes([m]) * 100_000)
    vectors = []
    for v in range(n):
        d = src / "events" / f"e{v}"
        d.mkdir(parents=True)
        (d / "seed.json").write_text(json.dumps({"value": v}))
        (d / "lvc_skymap.fits").symlink_to(src / "maps" / f"m{MAPS[v]}.fits")
        vectors.append({"v": str(v)})
    config = BatchConfig(
        pipeline=select_pipeline(with_ancestors=["WorkerPid"], registry=AFFINITY),
        get={f: str(src / "events" / "e{v}" / f) for f in ("seed.json", "lvc_skymap.fits")},
        eventdir=str(tmp_path / "events" / "E{v}"),
        flags={},
        jobs=2,
        scheduler=scheduler,
    )
    return config, vectors


def _pids_by_map(tmp_path: Path, n: int = 24) -> dict[int, list[int]]:
    pids = defaultdict(list)
    for v in range(n):
        pid = json.loads((tmp_path / "events" / f"E{v}" / WorkerPid.FILENAME).read_text())["pid"]
        pids[MAPS[v]].append(pid)
    return pids


def _assert_one_worker_per_map(pids: dict[int, list[int]]) -> None:
    assert _share_on_one_worker(pids) >= 0.8, pids
    assert max(pids[0], key=pids[0].count) != max(pids[1], key=pids[1].count), pids


@pytest.mark.parametrize("scheduler", ["processes", "distributed"])
def test_a_campaigns_events_of_one_map_run_on_one_worker(tmp_path, scheduler):
    if scheduler == "distributed":
        pytest.importorskip("distributed")
    config, vectors = _campaign(tmp_path, scheduler)
    summary = run_batch(vectors, config, progress=False)
    assert summary.ok and summary.counts["done"] == 24, summary.line()
    pids = _pids_by_map(tmp_path)
    _assert_one_worker_per_map(pids)
    assert os.getpid() not in pids[0] + pids[1], pids


def test_a_running_clusters_events_of_one_map_go_to_one_worker(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        config, vectors = _campaign(tmp_path, cluster.scheduler_address)
        summary = run_batch(vectors, config, progress=False)
    assert summary.ok and summary.counts["done"] == 24, summary.line()
    _assert_one_worker_per_map(_pids_by_map(tmp_path))
