"""Realistic events end to end: BAYESTAR maps x IceCube-like lists through the batch engine.

The claims (issue 8, items 3, 4 and 6; bench/README.md, "Realistic events end to
end"): ``--jobs 2`` runs at least 1.8x the events/s of ``--jobs 1`` with at least 190%
CPU, ``--jobs 1`` keeps to one core, and a local Dask cluster of 2 worker processes
runs at least 1.8x the events/s of 1 worker. A run named ``distributed-stock`` is a
local cluster with distributed's own settings in place of
`llama.batch.cluster.LOCAL_CLUSTER_CONFIG`: the ratio of its CPU per event to the
cluster's with ours is what those settings save.

Workload
--------
* ``realistic``: each event pairs one BAYESTAR multi-order map of
  ``/work/shared/data/bayestar`` (simulated BNS and BBH, up to NSIDE 2048; its network
  SNR, distance, instruments and time from ``events.json``) with its own IceCube-like
  background list (`llama.science.sim.simulate_background_neutrinos`: Poisson(6.4) in
  t_gw +- 500 s, sigma log-uniform 0.2-3 deg, RA uniform, horizon-peaked sin(dec),
  energies as SCIENCE.md says), fetched with ``get`` as ``llama batch --get`` would, and
  runs ``+f CoincSignificanceI3Lvc`` (the significance and its ancestors, no plots)
  with ``ONLINE=false``. ``LLAMA_N_TRIALS`` is set small (``--trials``, default 20):
  this bench measures the engine, not the trials (bench_event.py does).
* ``synthetic``: the chain of 5 trivial JSON handlers of bench_batch.py (no kernels,
  pure Python: threads share one interpreter lock, so only processes can scale it).

Each (case, scheduler, jobs) runs ``--repeat`` times, from this one process, on a fresh
event root each time, the runs interleaved round by round; the best round of each
(most events/s: other work on the machine only ever slows a run) is kept, and the
ratios compare runs of the same invocation. With ``--via cli`` (the default) each run
is a ``llama batch`` command, timed from its start to its exit as a user times it
(interpreter, imports, the fork server and workers, the first event's kernel loads,
the results file); ``--via api`` calls ``run_batch`` in this process after a warm-up,
so the engine alone is timed. CPU% is the CPU time of this process and every process
it started (the command, its fork server and workers, cluster nannies; sampled with
psutil every 0.2 s) over the wall time; 100% is one core busy. Events/s are given over
the whole run and "steady" (from the moment the first ``2 x jobs`` events are back to
the last; with ``--via cli``, from when each event directory was last written).
``auto`` is the default scheduler of ``llama batch`` (threads for ``--jobs 1``,
processes for ``--jobs 2`` on these runs). Every run of the realistic case must give
each event the same odds and p-values (the event's and its neutrinos') as the case's
first run, whatever its scheduler or source tree: a row says whether they did, and a
run that did not is named (the exit status is then 1).

Run ``python bench/bench_realistic.py --help`` for the options; ``uptime`` is printed
before and after, since other work on the machine shares its cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BAYESTAR = Path("/work/shared/data/bayestar")
#: p_astro of the simulated events: the population they were simulated from.
P_ASTRO = {
    "bns": {"BNS": 0.97, "NSBH": 0.0, "BBH": 0.0, "MassGap": 0.0, "Terrestrial": 0.03},
    "bbh": {"BNS": 0.0, "NSBH": 0.0, "BBH": 0.97, "MassGap": 0.0, "Terrestrial": 0.03},
}
#: (scheduler, jobs) runs of each case, in order; the ratios pair them.
RUNS = (
    ("auto", 1),
    ("auto", 2),
    ("threads", 1),
    ("threads", 2),
    ("processes", 1),
    ("processes", 2),
    ("distributed", 1),
    ("distributed", 2),
    ("distributed-stock", 1),
)
#: A run of this name is a local cluster with distributed's own settings (the
#: nannies' MALLOC_TRIM_THRESHOLD_, the worker profiler, 20 ms ticks) instead of
#: `llama.batch.cluster.LOCAL_CLUSTER_CONFIG`: the CPU those settings cost.
STOCK = "distributed-stock"


# -- inputs ----------------------------------------------------------------------------
def write_realistic_inputs(src: Path, n: int, maps: Path, seed: int) -> list[dict[str, str]]:
    """Write per-map skymap_info.json and one background list per event; the vectors.

    Event ``k`` uses map ``k mod (number of maps)`` and a list drawn with seed
    ``seed + k`` at that map's time.
    """
    import numpy as np

    from llama.science.sim import simulate_background_neutrinos

    with open(maps / "events.json") as f:
        catalogue = json.load(f)
    names = sorted(name for name in catalogue if (maps / f"{name}.fits").exists())
    if not names:
        raise SystemExit(f"no BAYESTAR maps of {maps / 'events.json'} found in {maps}")
    for name in names:
        info = catalogue[name]
        d = src / "maps" / name
        d.mkdir(parents=True, exist_ok=True)
        skymap_info = {
            "graceid": "S" + name.replace("-", ""),
            "event_time_iso": info["date_obs"],
            "notice_time_iso": info["date_obs"],
            "far": 1e-9,
            "pipeline": "GSTLAL",
            "instruments": info["instruments"].split(","),
            "skymap_filename": "lvc_skymap.fits",
            "alert_type": "Preliminary",
            "snr": float(info["network_snr"]),
            "p_astro": P_ASTRO[info["population"]],
        }
        (d / "skymap_info.json").write_text(json.dumps(skymap_info, indent=1) + "\n")
    (src / "nu").mkdir(parents=True, exist_ok=True)
    vectors = []
    for k in range(n):
        name = names[k % len(names)]
        rng = np.random.default_rng(seed + k)
        nl = simulate_background_neutrinos(rng, float(catalogue[name]["mjd_obs"]))
        nl.write(src / "nu" / f"nu-{k:04d}.json")
        vectors.append({"map": name, "nu": f"nu-{k:04d}"})
    return vectors


def realistic_config(src: Path, maps: Path, root: Path, scheduler: str, jobs: int):
    from llama.batch.runner import BatchConfig
    from llama.pipeline import select_pipeline

    return BatchConfig(
        pipeline=select_pipeline(with_ancestors=["CoincSignificanceI3Lvc"]),
        get={
            "skymap_info.json": str(src / "maps" / "{map}" / "skymap_info.json"),
            "lvc_skymap.fits": str(maps / "{map}.fits"),
            "icecube_neutrino_list.json": str(src / "nu" / "{nu}.json"),
        },
        eventdir=str(root / "{map}-{nu}"),
        flags={"ONLINE": "false"},
        jobs=jobs,
        scheduler=scheduler,
        environ={},
    )


def write_cli_sources(src: Path, maps: Path, vectors: list[dict[str, str]]) -> Path:
    """One folder per event holding links to its three inputs, and the file of their
    names: ``llama batch`` sweeps a Cartesian product, and each event here pairs one
    map with its own list. Returns the params file."""
    names = []
    for v in vectors:
        name = f"{v['map']}-{v['nu']}"
        d = src / "events" / name
        d.mkdir(parents=True, exist_ok=True)
        for filename, target in (
            ("skymap_info.json", src / "maps" / v["map"] / "skymap_info.json"),
            ("lvc_skymap.fits", maps / f"{v['map']}.fits"),
            ("icecube_neutrino_list.json", src / "nu" / f"{v['nu']}.json"),
        ):
            if not (d / filename).exists():
                (d / filename).symlink_to(target.resolve())
        names.append(name)
    params = src / "events.txt"
    params.write_text("\n".join(names) + "\n")
    return params


def cli_command(src: Path, params: Path, root: Path, scheduler: str, jobs: int) -> list[str]:
    """The ``llama batch`` command of one run, as a user would type it."""
    files = ("skymap_info.json", "lvc_skymap.fits", "icecube_neutrino_list.json")
    return [
        sys.executable, "-m", "llama.cli", "batch", f"event={params}",
        "--get", *(f"{f}={src / 'events' / '{event}' / f}" for f in files),
        "--eventdir", str(root / "{event}"), "+f", "CoincSignificanceI3Lvc",
        "--flags", "ONLINE=false", "--jobs", str(jobs), "--scheduler", scheduler,
        "--results", str(root / "results.nc"), "-D", "-v", "none",
        "-l", str(root.parent / f"{root.name}.log"),
    ]  # fmt: skip


def measure_cli(
    command: list[str], root: Path, n: int, jobs: int, code: Path | None = None
) -> dict[str, float]:
    """Time one ``llama batch`` process from its start to its exit, as ``time`` would.

    The CPU is its process tree's (`TreeCPU`: the fork server and workers included);
    the steady rate comes from when each event directory was last written. ``code``:
    the source tree to run (`baseline_tree`), None for this one.
    """
    env = None
    if code is not None:  # its llama and kernels first on the path, run from there
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cpu = TreeCPU()
    t0 = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=code)
    wall = time.time() - t0
    cpu_s = cpu.stop()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}\nexit {done.returncode}: {done.stderr[-2000:]}")
    ends = sorted(max(f.stat().st_mtime for f in d.iterdir()) for d in root.iterdir() if d.is_dir())
    if len(ends) != n:
        raise SystemExit(f"{len(ends)} event directories in {root}, {n} expected")
    warm = min(2 * jobs, n - 2)
    steady = (n - 1 - warm) / (ends[-1] - ends[warm]) if ends[-1] > ends[warm] else float("nan")
    # where the time went: start to the first event's end, the events, last event to exit
    steady_cpu = 100 * cpu.between(ends[warm], ends[-1]) if ends[-1] > ends[warm] else float("nan")
    return {"wall": wall, "rate": n / wall, "steady": steady, "cpu": 100 * cpu_s / wall,
            "cpu_ms": 1e3 * cpu_s / n, "steady_cpu": steady_cpu, "first": ends[0] - t0,
            "after": t0 + wall - ends[-1]}  # fmt: skip


def significance_of(root: Path) -> dict[str, str]:
    """Each event directory's significance (the event's odds, p-value and upper p-value,
    and each neutrino's): what every run of the same events must give alike, whatever
    the scheduler or the source tree (its speed changes must not change the science)."""
    out = {}
    for path in sorted(root.glob("*/significance_lvc-i3.json")):
        res = json.loads(path.read_text())["outputs"]
        c = res["neutrino_gw_combined"]
        # as JSON text, so that a NaN equals itself
        out[path.parent.name] = json.dumps([
            c["odds_ratio"], c["p_value"], c["p_value_upper"], c["p_values_neutrino_upper"],
            [(t["odds_ratio"], t["p_value"]) for t in res["neutrino_gw_triggers"]],
        ])  # fmt: skip
    return out


def baseline_tree(rev: str) -> Path:
    """The source tree of git revision ``rev`` (kept by ``bench/revisions.py`` with its
    Numba cache for the next run), or the directory ``rev``, for ``--baseline``: its
    commands run beside this tree's, interleaved, in one process."""
    sys.path.insert(0, str(Path(__file__).parent))
    from revisions import tree_at

    return tree_at(rev)


def synthetic_config(src: Path, root: Path, scheduler: str, jobs: int):
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_batch

    args = argparse.Namespace(jobs=jobs, scheduler=scheduler, chunk=0)
    return bench_batch.llama_config(src, root, args)


# -- measuring -------------------------------------------------------------------------
class TreeCPU:
    """CPU seconds of this process and all its descendants, sampled in a thread.

    psutil reads each process's user + system time; a worker that ends between two
    samples loses at most one sampling interval of its time.
    """

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.psutil, self.interval = psutil, interval
        self.me = psutil.Process()
        self.start = self._sample()
        self.last: dict[int, float] = dict(self.start)
        self.history: list[tuple[float, float]] = [(time.time(), 0.0)]  # (when, CPU so far)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> dict[int, float]:
        out = {}
        for p in [self.me, *self.me.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except self.psutil.Error:
                continue
            out[p.pid] = t.user + t.system
        return out

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.last.update(self._sample())
            self.history.append((time.time(), self._total()))

    def _total(self) -> float:
        return sum(t - self.start.get(pid, 0.0) for pid, t in self.last.items())

    def between(self, t0: float, t1: float) -> float:
        """Cores busy on average from ``t0`` to ``t1`` (`time.time` stamps), from the
        samples (interpolated): the steady CPU of a run, its start and end left out."""
        import numpy as np

        when, cpu = np.array(self.history).T
        return float(np.interp(t1, when, cpu) - np.interp(t0, when, cpu)) / (t1 - t0)

    def stop(self) -> float:
        self.stop_event.set()
        self.thread.join()
        self.last.update(self._sample())
        self.history.append((time.time(), self._total()))
        return self._total()


def measure(vectors, config, jobs: int, stock: bool = False) -> dict[str, float]:
    from llama.batch import cluster

    ours = cluster.LOCAL_CLUSTER_CONFIG
    if stock:  # distributed's defaults, this run only (local_cluster reads it there)
        cluster.LOCAL_CLUSTER_CONFIG = {}
    try:
        return _measure(vectors, config, jobs)
    finally:
        cluster.LOCAL_CLUSTER_CONFIG = ours


def _measure(vectors, config, jobs: int) -> dict[str, float]:
    from llama.batch.runner import run_batch

    back: list[float] = []
    cpu = TreeCPU()
    t0 = time.perf_counter()
    summary = run_batch(
        vectors, config, total=len(vectors), progress=False,
        on_outcome=lambda o: back.append(time.perf_counter()),
    )  # fmt: skip
    wall = time.perf_counter() - t0
    cpu_s = cpu.stop()
    n = len(vectors)
    if not summary.ok or summary.counts["done"] != n:
        raise SystemExit(f"{config.scheduler} --jobs {jobs}: {summary.line()}")
    warm = min(2 * jobs, n - 2)
    steady = (n - 1 - warm) / (back[-1] - back[warm]) if back[-1] > back[warm] else float("nan")
    return {"wall": wall, "rate": n / wall, "steady": steady, "cpu": 100 * cpu_s / wall,
            "cpu_ms": 1e3 * cpu_s / n}  # fmt: skip


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "(uptime not available)"


def ratio_rows(case: str, res: dict, n: int) -> list[tuple[str, str, str, str]]:
    def r(a, b, key="rate"):
        return res[a][key] / res[b][key]

    rows = []
    a1, a2 = ("auto", 1), ("auto", 2)
    if a1 in res and a2 in res:  # the default scheduler: what a user gets
        x = r(a2, a1)
        rows.append((f"{case}: default (auto) --jobs 2 / --jobs 1", f"{x:.2f}x", ">= 1.8x",
                     "PASS" if x >= 1.8 else "MISS"))  # fmt: skip
        rows.append((f"{case}:   same, steady", f"{r(a2, a1, 'steady'):.2f}x", "", ""))
        rows.append((f"{case}: default --jobs 2 CPU", f"{res[a2]['cpu']:.0f}%", ">= 190%",
                     "PASS" if res[a2]["cpu"] >= 190 else "MISS"))  # fmt: skip
        if "steady_cpu" in res[a2]:  # while the events run, the start and end left out
            rows.append((f"{case}:   same, steady", f"{res[a2]['steady_cpu']:.0f}%", "", ""))
        rows.append((f"{case}: default --jobs 1 CPU", f"{res[a1]['cpu']:.0f}%", "<= 110%",
                     "PASS" if res[a1]["cpu"] <= 110 else "MISS"))  # fmt: skip
    t1, t2 = ("threads", 1), ("threads", 2)
    p1, p2 = ("processes", 1), ("processes", 2)
    d1, d2 = ("distributed", 1), ("distributed", 2)
    if t1 in res and t2 in res:
        x = r(t2, t1)
        rows.append((f"{case}: threads --jobs 2 / --jobs 1", f"{x:.2f}x", ">= 1.8x",
                     "PASS" if x >= 1.8 else "MISS"))  # fmt: skip
        rows.append((f"{case}: threads --jobs 2 CPU", f"{res[t2]['cpu']:.0f}%", ">= 190%",
                     "PASS" if res[t2]["cpu"] >= 190 else "MISS"))  # fmt: skip
        rows.append((f"{case}: threads --jobs 1 CPU", f"{res[t1]['cpu']:.0f}%", "<= 110%",
                     "PASS" if res[t1]["cpu"] <= 110 else "MISS"))  # fmt: skip
    if p1 in res and p2 in res:
        x = r(p2, p1)
        rows.append((f"{case}: processes --jobs 2 / --jobs 1", f"{x:.2f}x", ">= 1.8x",
                     "PASS" if x >= 1.8 else "MISS"))  # fmt: skip
        rows.append((f"{case}:   same, steady", f"{r(p2, p1, 'steady'):.2f}x", "", ""))
        rows.append((f"{case}: processes --jobs 2 CPU", f"{res[p2]['cpu']:.0f}%", ">= 190%",
                     "PASS" if res[p2]["cpu"] >= 190 else "MISS"))  # fmt: skip
    if t2 in res and p2 in res:
        rows.append((f"{case}: threads / processes, --jobs 2", f"{r(t2, p2):.2f}x", "", ""))
    if p2 in res and t1 in res:  # auto's --jobs 2 against threads' --jobs 1
        rows.append((f"{case}: processes --jobs 2 / threads --jobs 1", f"{r(p2, t1):.2f}x",
                     "", ""))  # fmt: skip
    for key in res:  # CPU per event (process tree): what a run costs, whatever the load
        rows.append((f"{case}: CPU per event, {key[0]} --jobs {key[1]}",
                     f"{res[key]['cpu_ms']:.1f} ms", "", ""))  # fmt: skip
    if d1 in res and d2 in res:
        x = r(d2, d1)
        rows.append((f"{case}: 2 cluster workers / 1 ({n} events)", f"{x:.2f}x", ">= 1.8x",
                     "PASS" if x >= 1.8 else "MISS"))  # fmt: skip
        rows.append((f"{case}:   same, steady", f"{r(d2, d1, 'steady'):.2f}x", "", ""))
    s1 = (STOCK, 1)
    if d1 in res and s1 in res:  # what our cluster settings save, whatever the load
        rows.append((f"{case}: cluster CPU per event, stock / ours",
                     f"{r(s1, d1, 'cpu_ms'):.2f}x", "", ""))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200, help="events per run (200)")
    parser.add_argument("--synthetic-events", type=int, default=500,
                        help="events per run of the synthetic case (500)")  # fmt: skip
    parser.add_argument("--trials", type=int, default=20,
                        help="LLAMA_N_TRIALS for the realistic case (20: the engine, not the "
                        "trials, is measured)")  # fmt: skip
    parser.add_argument("--cases", default="realistic,synthetic",
                        help="comma-separated: realistic, synthetic (both)")  # fmt: skip
    parser.add_argument("--runs", default=",".join(f"{s}:{j}" for s, j in RUNS),
                        help="comma-separated SCHEDULER:JOBS runs (default: %(default)s)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all the runs, interleaved; the best round of each "
                        "run is kept (1)")  # fmt: skip
    parser.add_argument("--maps", type=Path, default=BAYESTAR, help="BAYESTAR maps directory")
    parser.add_argument("--seed", type=int, default=8, help="seed of the neutrino lists (8)")
    parser.add_argument("--tmp", help="parent of the temporary work directory")
    parser.add_argument("--via", choices=("cli", "api"), default="cli",
                        help="cli (default): each run a 'llama batch' process, timed from its "
                        "start to its exit as a user times it (interpreter, imports, worker "
                        "start, results file); api: run_batch in this process after a "
                        "warm-up, the engine alone (needed for distributed-stock and the "
                        "synthetic case)")  # fmt: skip
    parser.add_argument("--baseline", metavar="REV",
                        help="with --via cli: also run each command with the llama and kernels "
                        "of git revision REV, or of the source tree in directory REV "
                        "(interleaved with this tree's, same process), named REV:SCHEDULER; "
                        "its Numba cache is filled by an untimed run first")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:  # distributed sets its loggers to INFO when imported: import it, then quiet it
        import distributed  # noqa: F401

        logging.getLogger("distributed").setLevel(logging.WARNING)
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("distributed."):
                logging.getLogger(name).setLevel(logging.WARNING)
    except ImportError:
        pass
    os.environ["LLAMA_N_TRIALS"] = str(args.trials)  # inherited by worker processes
    runs = [(s, int(j)) for s, j in (r.split(":") for r in args.runs.split(","))]
    cases = args.cases.split(",")
    if args.via == "cli":  # a command cannot reach this process's settings or registry
        runs = [(s, j) for s, j in runs if s != STOCK]
        cases = [c for c in cases if c != "synthetic"]

    if args.baseline and args.via != "cli":
        raise SystemExit("--baseline needs --via cli: each run is then a command of its own")
    print(f"before: {uptime()}", flush=True)
    import numba  # loaded before the runs, as a notebook would: they must not change it

    results: dict[str, dict] = {}
    counts: dict[str, int] = {}
    reference: dict[str, dict] = {}  # each case's first run's significances
    differ: list[str] = []  # the runs whose significances were not the first's
    with tempfile.TemporaryDirectory(prefix="bench-realistic-", dir=args.tmp) as tmp:
        work = Path(tmp)
        baseline = baseline_tree(args.baseline) if args.baseline else None
        trees = [("", None)] + ([(f"{args.baseline}:", baseline)] if baseline else [])
        for case in cases:
            src = work / case / "src"
            if case == "realistic":
                vectors = write_realistic_inputs(src, args.events, args.maps, args.seed)
                params = write_cli_sources(src, args.maps, vectors)
                # warm-up (untimed): Numba's cache loaded, the tables read in this process
                from llama.batch.runner import run_batch

                warm = realistic_config(src, args.maps, work / case / "warm", "synchronous", 1)
                run_batch(vectors[:2], warm, progress=False)
                if baseline is not None:  # its own Numba cache, filled untimed
                    few = src / "events-warm.txt"
                    few.write_text("".join(params.read_text().splitlines(True)[:2]))
                    command = cli_command(src, few, work / case / "warm-base", "auto", 1)
                    env = {**os.environ, "PYTHONPATH": str(baseline)}
                    subprocess.run(command, cwd=baseline, env=env, capture_output=True, check=True)
            elif case == "synthetic":
                sys.path.insert(0, str(Path(__file__).parent))
                import bench_batch

                n = args.synthetic_events
                bench_batch.write_sources(src, n)
                vectors = [{"i": str(i)} for i in range(n)]
            else:
                raise SystemExit(f"unknown case {case!r}: give realistic or synthetic")
            counts[case] = len(vectors)
            results[case] = {}
            plan = [(t, code, s, j) for s, j in runs for t, code in trees]
            for r in range(args.repeat):  # the runs interleaved, so load drifts hit all
                for tree, code, scheduler, jobs in plan:
                    root = work / case / f"{scheduler}-{jobs}"
                    engine = "distributed" if scheduler == STOCK else scheduler
                    if args.via == "cli":
                        command = cli_command(src, params, root, scheduler, jobs)
                        res = measure_cli(command, root, len(vectors), jobs, code)
                        scheduler = tree + scheduler  # the baseline's runs: REV:SCHEDULER
                    elif case == "realistic":
                        config = realistic_config(src, args.maps, root, engine, jobs)
                        res = measure(vectors, config, jobs, stock=scheduler == STOCK)
                    else:
                        config = synthetic_config(src, root, engine, jobs)
                        res = measure(vectors, config, jobs, stock=scheduler == STOCK)
                    best = results[case].get((scheduler, jobs))
                    if best is None or res["rate"] > best["rate"]:  # the least disturbed
                        results[case][(scheduler, jobs)] = res
                    timeline = ""
                    if "first" in res:  # a command: its fixed parts and its steady CPU
                        timeline = (f"; first event's end {res['first']:.1f} s, last event "
                                    f"to exit {res['after']:.1f} s, steady CPU "
                                    f"{res['steady_cpu']:.0f}%")  # fmt: skip
                    print(f"{case:9s} round {r + 1} {scheduler:17s} --jobs {jobs}: "
                          f"{len(vectors)} events in {res['wall']:.1f} s, {res['rate']:.2f} "
                          f"events/s (steady {res['steady']:.2f}), CPU {res['cpu']:.0f}%, "
                          f"{res['cpu_ms']:.1f} ms CPU per event{timeline}",
                          flush=True)  # fmt: skip
                    science = significance_of(root)
                    first = reference.setdefault(case, science)
                    if science != first:
                        differ.append(f"{case} round {r + 1} {scheduler} --jobs {jobs}")
                    shutil.rmtree(root)
    print(f"after: {uptime()}")
    print(f"python {sys.version.split()[0]}, numba {numba.__version__} "
          f"({numba.config.THREADING_LAYER} layer), {os.cpu_count()} CPUs, "
          f"LLAMA_N_TRIALS={args.trials}")  # fmt: skip
    rows = []
    for case in cases:
        # an auto run is also the run of the scheduler it chose (threads --jobs 1, ...),
        # so that --runs need not time the same run twice
        from llama.batch.schedulers import choose_scheduler

        for (scheduler, jobs), res in list(results[case].items()):
            if scheduler == "auto":
                chosen = (choose_scheduler("auto", jobs, counts[case]), jobs)
                results[case].setdefault(chosen, res)
        ours = {k: v for k, v in results[case].items() if ":" not in k[0]}
        rows += ratio_rows(case, ours, counts[case])
        if args.baseline:  # the same figures for the baseline, and each run against it
            prefix = f"{args.baseline}:"
            base = {(k[0][len(prefix) :], k[1]): v for k, v in results[case].items() if ":" in k[0]}
            rows += ratio_rows(f"{case} ({args.baseline})", base, counts[case])
            for key, res in ours.items():
                if key in base:
                    rows.append((f"{case}: {key[0]} --jobs {key[1]}, this tree / baseline",
                                 f"{res['rate'] / base[key]['rate']:.2f}x", "", ""))  # fmt: skip
    for case in cases:
        if reference.get(case):  # the synthetic case writes none
            same = not any(run.startswith(f"{case} ") for run in differ)
            rows.append((f"{case}: same odds and p-values in every run", str(same), "same",
                         "PASS" if same else "MISS"))  # fmt: skip
    for run in differ:
        print(f"significances differ from the first run's: {run}")
    print("ratio")
    print(f"  {'figure':46s} {'measured':>10s} {'goal':>9s}  result")
    for name, value, goal, result in rows:
        print(f"  {name:46s} {value:>10s} {goal:>9s}  {result}")
    return 1 if any(r[3] == "MISS" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
