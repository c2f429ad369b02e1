"""Benchmark of the review pipeline end to end: CPU per event, and where it goes.

Claim measured (issue 10, item 5): ``llama batch @llama/examples/review.args``
(LLAMA2_REVIEW_PIPELINE, 14 handlers) at >= 5 events/s with ``--jobs 2`` on 2 cores,
i.e. <= ~0.4 s of CPU per event in total.

Workload: the example events of ``llama/examples`` (8 GW maps) crossed with the first
``k`` neutrino lists of ``neutrinos.txt``, a Cartesian sweep (no repeated draws, so
every event is computed), through ``llama batch`` as a user runs it (a subprocess,
``-D`` so that a checkout with local changes runs), each run into a fresh directory.

Two runs with ``--scheduler synchronous``, a small one (``--small`` lists, 8 events
each) and a large one (``--large`` lists): the CPU of the whole command
(``getrusage`` of the child: user + system, start-up, imports, the results file
written at the end included). The steady cost of an event is the difference of the
two divided by the difference of their event counts; what is left of the small run is
the fixed cost of a run (start-up, first-use loading, the results write). Each
handler records the CPU time of its thread in its rider (``cpu_time_s``; on a busy
machine its ``wall_time_s`` is stretched by the other processes); their sum per event
over the large run, subtracted from the command's CPU per event, is the engine's
share (event directories, ``--get`` copies, riders, locks, records, progress,
results), with one-off costs (imports, caches filled on first use) falling on the
handlers that pay them. Per handler the mean and the median are printed: the
median leaves out the first event's one-off costs and the spread between events (the
significance of a wide map costs several times that of a compact one), so a sum of
medians under-counts the handlers and makes the engine look expensive. The engine's
steady cost is best read as the difference of the two runs' CPU minus the difference
of their handlers' CPU, per added event (printed last).

With ``--jobs N`` (N > 1) a third run, the large sweep with ``--jobs N`` and the CLI's
default scheduler (``auto``: worker processes for ``--jobs 2`` and >= 10 events per
job, a thread otherwise), gives events/s as a user would see them, with the CPU the
command's children report (worker processes forked from a fork server count once
they are reaped).

With ``--against REV`` the same runs are made, interleaved, on the source tree of git
revision REV (``bench/revisions.py``: kept with its Numba cache for the next run; or
the source tree in directory REV), both trees' Numba caches filled first by their own
``llama warm`` (outside the clock); each tree's steady CPU per event and the ratio
REV / this tree are printed last.

Analysis options: those ``llama/examples/review.args`` gives with ``--analysis``
(sequential p-values, ``trial_stop_after=20``), unless ``--analysis`` names others;
``--analysis`` with nothing after it runs O3's analysis (all 2,000 trials).

Run: ``python bench/bench_review.py [--small 1] [--large 3] [--jobs 2]
[--analysis [NAME=VALUE ...]] [--against REV]``. Prints a
table; writes only temporary directories. Exit status 1 when the steady CPU per event
exceeds the goal.

Examples
--------
``python bench/bench_review.py --small 1 --large 2 --jobs 0``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from revisions import environment, tree_at, warm_cache  # noqa: E402

EXAMPLES = ROOT / "llama" / "examples"
#: Goal: 5 events/s on 2 busy cores = 0.4 s of CPU per event.
GOAL_CPU_PER_EVENT_S = 0.4


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def review_analysis() -> list[str]:
    """The ``--analysis`` entries of ``llama/examples/review.args``."""
    lines = (EXAMPLES / "review.args").read_text().splitlines()
    if "--analysis" not in lines:
        return []
    out = []
    for line in lines[lines.index("--analysis") + 1 :]:
        if line.startswith(("-", "+")):
            break
        out.append(line)
    return out


def run_review(
    workdir: Path,
    n_lists: int,
    scheduler: str | None,
    jobs: int,
    analysis: list[str],
    tree: Path = ROOT,
) -> dict:
    """One ``llama batch`` of the review pipeline over 8 maps x ``n_lists`` lists, run
    on the code of source tree ``tree`` (this tree's example events in any case)."""
    workdir.mkdir(parents=True)
    lists = (EXAMPLES / "neutrinos.txt").read_text().split()[:n_lists]
    (workdir / "neutrinos.txt").write_text("\n".join(lists) + "\n")
    argv = [
        sys.executable, "-m", "llama.cli.batch", "-D",
        f"graceid={EXAMPLES / 'graceids.txt'}", f"neutrinos={workdir / 'neutrinos.txt'}",
        "-p", "LLAMA2_REVIEW_PIPELINE", "--flags", "ONLINE=false",
        "--get",
        f"skymap_info.json={EXAMPLES}/events/{{graceid}}/skymap_info.json",
        f"lvc_skymap.fits={EXAMPLES}/events/{{graceid}}/lvc_skymap.fits",
        f"icecube_neutrino_list.json={EXAMPLES}/neutrinos/{{neutrinos}}.json",
        "--eventdir", f"{workdir}/ev/{{graceid}}-{{neutrinos}}",
        *(["--scheduler", scheduler] if scheduler else []), "--jobs", str(jobs),
        *(["--analysis", *analysis] if analysis else []),
    ]  # fmt: skip
    cpu0, wall0 = _children_cpu(), time.perf_counter()
    env = None if tree == ROOT else environment(tree)
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"llama batch failed ({done.returncode}):\n{done.stderr[-3000:]}")
    walls: dict[str, list[float]] = defaultdict(list)
    for rider in (workdir / "ev").glob("*/.*.meta.json"):
        meta = json.loads(rider.read_text())
        spent = meta.get("cpu_time_s", meta.get("wall_time_s"))
        if spent is not None:
            walls[rider.name[1 : -len(".meta.json")]].append(spent)
    events = 8 * n_lists
    return {"events": events, "cpu": cpu, "wall": wall, "walls": walls}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=1, help="neutrino lists, small run")
    ap.add_argument("--large", type=int, default=3, help="neutrino lists, large run")
    ap.add_argument("--jobs", type=int, default=2, help="--jobs of the third run (0: none)")
    ap.add_argument("--analysis", nargs="*", default=None, metavar="NAME=VALUE",
                    help="analysis options (default: review.args's; none given: O3's)")  # fmt: skip
    ap.add_argument("--against", metavar="REV",
                    help="also run git revision REV (or the source tree in directory REV)")  # fmt: skip
    args = ap.parse_args(argv)
    if not 0 < args.small < args.large <= 24:
        ap.error("need 0 < --small < --large <= 24")
    analysis = review_analysis() if args.analysis is None else args.analysis
    print(f"load average {os.getloadavg()[0]:.2f} (CPU cores: {os.cpu_count()}); "
          f"analysis options: {' '.join(analysis) or 'none (O3: all 2,000 trials)'}")  # fmt: skip
    trees = {"this tree": ROOT}
    if args.against:
        trees[args.against] = tree_at(args.against)
        for tree in trees.values():  # their Numba caches full: neither run compiles
            warm_cache(tree, jobs=2)
    runs: dict[str, dict[str, dict]] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (size, n_lists) in enumerate((("small", args.small), ("large", args.large))):
            # the trees take turns, which goes first alternating: both see the same load
            for t, name in enumerate(list(trees)[:: 1 if k % 2 == 0 else -1]):
                where = Path(tmp) / f"{size}-{t}"
                runs[name][size] = run_review(where, n_lists, "synchronous", 1, analysis, trees[name])  # fmt: skip
        small, large = runs["this tree"]["small"], runs["this tree"]["large"]
        threaded = None
        if args.jobs > 1:
            threaded = run_review(Path(tmp) / "jobs", args.large, None, args.jobs, analysis)
    d_events = large["events"] - small["events"]
    steady = (large["cpu"] - small["cpu"]) / d_events
    fixed = small["cpu"] - steady * small["events"]
    n = large["events"]
    print(f"\nCPU per run: {small['events']} events {small['cpu']:.2f} s, "
          f"{n} events {large['cpu']:.2f} s (synchronous, whole command)")  # fmt: skip
    print(f"steady CPU per event {steady:.3f} s; fixed cost per run {fixed:.2f} s "
          f"(start-up, first use, results write)")  # fmt: skip
    print(f"\nhandlers over the {n}-event run (CPU of their threads, from the riders):")
    total_mean = total_median = 0.0
    for name, values in sorted(large["walls"].items(), key=lambda kv: -sum(kv[1])):
        mean, median = statistics.fmean(values), statistics.median(values)
        total_mean += sum(values) / n
        total_median += median
        print(f"  {name:34s} mean {mean * 1e3:8.1f} ms  median {median * 1e3:8.1f} ms")
    engine = large["cpu"] / n - total_mean
    print(f"  {'sum per event':34s} mean {total_mean * 1e3:8.1f} ms  "
          f"median {total_median * 1e3:8.1f} ms")  # fmt: skip
    print(f"command CPU per event {large['cpu'] / n * 1e3:.1f} ms = handlers "
          f"{total_mean * 1e3:.1f} ms + outside them {engine * 1e3:.1f} ms "
          f"(of which the run's fixed cost {fixed / n * 1e3:.1f} ms)")  # fmt: skip
    # the same difference for the handlers alone: what an added event costs outside them
    handler_cpu = [sum(map(sum, r["walls"].values())) for r in (small, large)]
    steady_handlers = (handler_cpu[1] - handler_cpu[0]) / d_events
    print(f"per added event: {steady * 1e3:.1f} ms = handlers {steady_handlers * 1e3:.1f} ms"
          f" + outside them {(steady - steady_handlers) * 1e3:.1f} ms")  # fmt: skip
    if threaded is not None:
        rate = threaded["events"] / threaded["wall"]
        busy = threaded["cpu"] / threaded["wall"]
        handlers = sum(map(sum, threaded["walls"].values())) / threaded["events"]
        print(f"\n--jobs {args.jobs} (default scheduler), {threaded['events']} events: "
              f"{rate:.2f} events/s; handlers' CPU per event {handlers * 1e3:.0f} ms "
              f"(riders); the command's own CPU {busy * 100:.0f}% of wall time (worker "
              f"processes forked from a fork server are not counted there)")  # fmt: skip
    if args.against:
        theirs = runs[args.against]
        their_steady = (theirs["large"]["cpu"] - theirs["small"]["cpu"]) / d_events
        their_large = theirs["large"]["cpu"] / n
        print(f"\n{args.against} / this tree: steady CPU per event {their_steady:.3f} / "
              f"{steady:.3f} s = {their_steady / steady:.2f}x; CPU per event of the "
              f"{n}-event run {their_large:.3f} / {large['cpu'] / n:.3f} s = "
              f"{their_large / (large['cpu'] / n):.2f}x (load {os.getloadavg()[0]:.2f})")  # fmt: skip
    print(f"\ngoal <= {GOAL_CPU_PER_EVENT_S} s CPU per event (steady): "
          f"{'met' if steady <= GOAL_CPU_PER_EVENT_S else 'missed'}")  # fmt: skip
    return 0 if steady <= GOAL_CPU_PER_EVENT_S else 1


if __name__ == "__main__":
    sys.exit(main())
