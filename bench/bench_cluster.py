"""Where a realistic event's CPU goes on our local Dask cluster, against a forked worker.

Runs the same realistic events (bench_realistic.py's inputs: BAYESTAR maps x
IceCube-like lists, ``+f CoincSignificanceI3Lvc``) through the pools of
`llama.batch.schedulers` in this one process, the pools alternated round by round:
``processes`` (our own forked workers) and ``distributed`` (our local cluster), each
with ``--jobs`` workers, events fed as the batch runner feeds them (a window of two
per worker, the next submitted as each one finishes). After ``--warm`` events per
worker (kernels loaded, caches filled), the CPU of every thread of every process is
read (``/proc``, through psutil) before and after the measured events, and reported
per event: in the workers (the thread that runs the events and the others: Dask's
event loop, heartbeats, monitors) and in this driver process (Dask's scheduler and
nannies, the client). Also the start: seconds from the pool's creation to its first
event's end, and its driver and worker CPU.

Run ``python bench/bench_cluster.py --help`` for the options; the load is printed
before and after (2 cores shared: compare CPU per event, and ratios of one run).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


def thread_times() -> dict[int, dict[int, float]]:
    """CPU seconds (user + system) of each thread of this process and its descendants:
    ``{pid: {tid: seconds}}``; under the key ``-pid``, the process's system seconds
    and minor page faults."""
    import psutil

    me = psutil.Process()
    out = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            out[p.pid] = {t.id: t.user_time + t.system_time for t in p.threads()}
            with open(f"/proc/{p.pid}/stat") as f:
                minflt = int(f.read().rsplit(")", 1)[1].split()[7])
            out[-p.pid] = {0: p.cpu_times().system, 1: minflt}
        except (psutil.Error, OSError):
            continue
    return out


def split_cpu(before, after, driver: int, workers: set[int]) -> dict[str, float]:
    """CPU between two `thread_times`: the driver's, the workers' busiest thread
    (each worker's event thread), the workers' other threads, anything else."""
    parts = {"driver": 0.0, "event thread": 0.0, "worker other": 0.0, "other": 0.0}
    parts["driver main"] = 0.0
    parts["worker system"] = parts["worker faults"] = 0.0
    for pid in workers:
        if -pid in after:
            was = before.get(-pid, {0: 0.0, 1: 0})
            parts["worker system"] += after[-pid][0] - was[0]
            parts["worker faults"] += (after[-pid][1] - was[1]) / 1e3  # per event: x 1e3 / n
    for pid, threads in after.items():
        if pid < 0:
            continue
        was = before.get(pid, {})
        spent = {tid: t - was.get(tid, 0.0) for tid, t in threads.items()}
        total = sum(spent.values())
        if pid == driver:  # its main thread: the batch's loop; the others: Dask's
            parts["driver"] += total
            parts["driver main"] += spent.get(driver, 0.0)
        elif pid in workers:
            busiest = max(spent.values(), default=0.0)
            parts["event thread"] += busiest
            parts["worker other"] += total - busiest
        else:
            parts["other"] += total
    return parts


def worker_pids(pool) -> set[int]:
    """The process ids of a pool's workers."""
    if getattr(pool, "client", None) is not None:
        return set(pool.client.run(os.getpid).values())
    procs = getattr(getattr(pool, "pool", None), "_processes", None) or {}
    return set(procs)


#: Dask settings tried over `llama.batch.cluster.LOCAL_CLUSTER_CONFIG` by a pool
#: named ``distributed+NAME`` (NAME: a key here, or several joined by ``+``).
VARIANTS = {
    "nomemory": {
        f"distributed.worker.memory.{k}": False for k in ("target", "spill", "pause", "terminate")
    },  # fmt: skip
    "nosteal": {"distributed.scheduler.work-stealing": False},
    "noamm": {"distributed.scheduler.active-memory-manager.start": False},
}


def run_pool(name: str, jobs: int, config_jobs, warm: int) -> dict[str, float]:
    """Feed ``config_jobs`` through a fresh pool ``name``; the CPU split per event of all
    but the first ``warm`` per worker, and the start."""
    from llama.batch import cluster

    base, *variants = name.split("+")
    ours = cluster.LOCAL_CLUSTER_CONFIG
    cluster.LOCAL_CLUSTER_CONFIG = {**ours}
    for v in variants:
        cluster.LOCAL_CLUSTER_CONFIG.update(VARIANTS[v])
    try:
        return _run_pool(base, jobs, config_jobs, warm)
    finally:
        cluster.LOCAL_CLUSTER_CONFIG = ours


#: ``{REV: module}``: `llama.batch.schedulers` as of git revision REV (``--against``).
AGAINST: dict[str, Any] = {}

#: The modules of the pools as of a revision, each loaded after those it imports.
POOL_MODULES = ("pools", "cluster", "schedulers")


def schedulers_of(rev: str):
    """`llama.batch.schedulers` of git revision ``rev`` (of the repository holding this
    script, or ``$BENCH_REPO``), loaded beside this tree's with the pool modules it
    imports as of ``rev`` (`POOL_MODULES`; a revision before the split has the one
    module; `bench/revisions.py`): its pools run here in the same process (the workers'
    side is this tree's)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from revisions import module_at, module_name, source_at

    if rev in AGAINST:
        return AGAINST[rev]
    loaded: dict[str, str] = {}  # llama.batch.NAME -> the name it is loaded under
    for name in POOL_MODULES:
        path = f"llama/batch/{name}.py"
        if source_at(rev, path) is None:  # not in that revision
            continue
        alias = module_name(f"{name}_", rev)
        module_at(rev, path, alias, replace=dict(loaded))
        loaded[f"llama.batch.{name}"] = alias
    AGAINST[rev] = sys.modules[module_name("schedulers_", rev)]
    for alias in loaded.values():  # not importable by the workers: pickled by value
        del sys.modules[alias]
    return AGAINST[rev]


def _run_pool(name: str, jobs: int, config_jobs, warm: int) -> dict[str, float]:
    from llama.batch.runner import run_event
    from llama.batch.schedulers import make_pool

    name, _, rev = name.partition("@")
    if rev:
        make_pool = schedulers_of(rev).make_pool

    t0 = time.perf_counter()
    cpu0 = thread_times()
    pool = make_pool(name, jobs, run_event)
    todo = list(config_jobs)
    n_warm = warm * jobs
    window = 2 * jobs
    done = 0
    first_end = None
    mark = None
    try:
        while todo or pool.in_flight:
            while todo and pool.in_flight < window and (done + pool.in_flight < n_warm or mark):
                pool.submit(todo.pop(0))
            finished = pool.next_finished(timeout=60)
            if finished is None:
                raise SystemExit(f"{name}: no event finished in 60 s")
            job, outcome = finished
            if isinstance(outcome, BaseException) or outcome.state != "done":
                raise SystemExit(f"{name}: event {job.index}: {outcome}")
            done += 1
            if first_end is None:
                first_end = time.perf_counter() - t0
                start_cpu = thread_times()
            if done == n_warm and mark is None:  # the warm-up ends: nothing in flight
                pids = worker_pids(pool)
                mark = thread_times()
                mark_t = time.perf_counter()
        end = thread_times()
        end_t = time.perf_counter()
    finally:
        pool.close()
    n = done - n_warm
    me = os.getpid()
    per = {k: 1e3 * v / n for k, v in split_cpu(mark, end, me, pids).items()}
    per["total"] = sum(per[k] for k in ("driver", "event thread", "worker other", "other"))
    start = split_cpu(cpu0, start_cpu, me, pids)
    per["events/s"] = n / (end_t - mark_t)
    per["first event's end s"] = first_end
    per["start CPU s"] = sum(
        v for k, v in start.items() if k in ("driver", "event thread", "worker other", "other")
    )
    return per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60, help="measured events per run (60)")
    parser.add_argument("--warm", type=int, default=4, help="warm-up events per worker (4)")
    parser.add_argument("--jobs", type=int, default=1, help="workers of each pool (1)")
    parser.add_argument("--trials", type=int, default=20, help="LLAMA_N_TRIALS (20)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds (2)")
    parser.add_argument("--pools", default="processes,distributed",
                        help="pools, in turn: processes, distributed, distributed+VARIANT "
                        "(VARIANTS), NAME@REV (the pool of llama.batch.schedulers as of git "
                        "revision REV)")  # fmt: skip
    parser.add_argument("--maps", type=Path, default=Path("/work/shared/data/bayestar"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ["LLAMA_N_TRIALS"] = str(args.trials)
    import bench_realistic as realistic

    from llama.batch.runner import make_job, run_batch

    print(f"before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    pools = args.pools.split(",")
    rows: dict[str, list[dict[str, float]]] = {p: [] for p in pools}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        n = args.events + args.warm * args.jobs
        vectors = realistic.write_realistic_inputs(work / "src", n, args.maps, 8)
        warm = realistic.realistic_config(work / "src", args.maps, work / "warm", "synchronous", 1)
        run_batch(vectors[:2], warm, progress=False)  # Numba's cache filled, untimed
        for r in range(args.repeat):
            for name in pools if r % 2 == 0 else pools[::-1]:
                root = work / f"{name}-{r}"
                base = name.split("+")[0].split("@")[0]
                config = realistic.realistic_config(work / "src", args.maps, root, base, args.jobs)
                jobs = [make_job(i, v, config) for i, v in enumerate(vectors)]
                res = run_pool(name, args.jobs, jobs, args.warm)
                rows[name].append(res)
                print(f"round {r} {name:12s} " + ", ".join(
                    f"{k} {v:.2f}" if k.endswith((" s", "/s")) else f"{k} {v:.0f}" if "faults" in k
                    else f"{k} {v:.1f} ms"
                    for k, v in res.items()), flush=True)  # fmt: skip
    print(f"after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    a = pools[0]
    for b in pools[1:]:
        for r, (x, y) in enumerate(zip(rows[a], rows[b], strict=True)):
            print(f"round {r}: CPU per event {b} / {a}: {y['total'] / x['total']:.2f}x "
                  f"({y['total'] - x['total']:+.1f} ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
