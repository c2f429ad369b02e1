"""Batch engine: N events through a chain of 5 trivial JSON handlers.

The claim (bench/README.md, "Batch engine"): the runner's overhead per handler task,
against plain ``dask.delayed`` calls of the same functions in the same process, is at
most 1 ms; a re-run when everything is up to date is at least 10x faster than the
first run.

Workload
--------
A private registry of 6 handlers: ``Input`` (``h0.json``, an input: supplied with
``get`` from a local directory whose files are written before the clock starts) and 5
generated handlers ``Step1 -> Step2 -> ... -> Step5`` (``h1.json`` .. ``h5.json``),
each reading its one dependency and writing a small JSON file. The runner makes
1 prepare + 6 handler + 1 finish = 8 Dask tasks per event.

Measured, in one process, ``--repeat`` times (fresh temporary directories each time),
medians printed:

* ``plain loop``: the same 5 step functions called in a Python loop (no Dask); the
  work itself.
* ``plain dask``: the same graph shape with plain ``dask.delayed`` calls of the same
  functions (prepare copies the input, an input task, 5 step tasks, a finish task;
  final names written directly, no metadata, no atomicity), the same chunks of
  events per ``dask.compute`` call, the same scheduler and number of workers.
* ``llama first``: ``run_batch`` on a fresh event root.
* ``llama re-run``: ``run_batch`` again on the same root: every event up to date.

Overhead per handler task = (llama first - plain dask) / (events x 5): everything the
runner adds (prepare, the input's status check, metadata riders, atomic renames,
finish, the up-to-date pass) is charged to the 5 generated handlers, so this is the
pessimistic figure; the per-Dask-task figure (/ 8 tasks) is printed beside it.

Run ``python bench/bench_batch.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dask

from llama.batch.runner import BatchConfig, run_batch
from llama.handler import FileHandler, HandlerRegistry
from llama.pipeline import select_pipeline

N_STEPS = 5
TASKS_PER_EVENT = 1 + 1 + N_STEPS + 1  # prepare, input, steps, finish

BENCH = HandlerRegistry()
VARIANTS = ("plain loop", "plain dask", "llama first", "llama re-run")


# -- the work: the same functions for every variant ------------------------------------
def step(k: int, src: Path, out: Path) -> None:
    """Step ``k``: read the previous JSON, write a small JSON (a trivial handler)."""
    with open(src) as f:
        value = json.load(f)["value"]
    with open(out, "w") as f:
        json.dump({"step": k, "value": value + k}, f)
        f.write("\n")


class Input(FileHandler, registry=BENCH):
    FILENAME = "h0.json"


def _step_handler(k: int, dep: type[FileHandler]) -> type[FileHandler]:
    def generate(self, out: Path) -> None:
        step(k, self.dep_path(dep), out)

    return type(
        f"Step{k}",
        (FileHandler,),
        {"FILENAME": f"h{k}.json", "DEPENDENCIES": (dep,), "generate": generate},
        registry=BENCH,
    )


_prev: type[FileHandler] = Input
for _k in range(1, N_STEPS + 1):
    _prev = globals()[f"Step{_k}"] = _step_handler(_k, _prev)
LAST = _prev
BENCH.check()


def write_sources(src: Path, n: int) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (src / f"in-{i}.json").write_text(json.dumps({"value": i}) + "\n")


# -- baselines -------------------------------------------------------------------------
def plain_loop(src: Path, root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"E{i}"
        d.mkdir(parents=True)
        shutil.copyfile(src / f"in-{i}.json", d / "h0.json")
        for k in range(1, N_STEPS + 1):
            step(k, d / f"h{k - 1}.json", d / f"h{k}.json")


def _b_prepare(src: str, d: str) -> str:
    Path(d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, Path(d) / "h0.json")
    return ""


def _b_input(d: str, prepared: str) -> str:
    return "EXISTS"


def _b_step(k: int, d: str, prepared: str, dep: str) -> str:
    p = Path(d)
    step(k, p / f"h{k - 1}.json", p / f"h{k}.json")
    return "EXISTS"


def _b_finish(d: str, prepared: str, *statuses: str) -> tuple[str, tuple[str, ...]]:
    return d, statuses


def plain_dask(src: Path, root: Path, n: int, chunk: int, scheduler: str, jobs: int) -> None:
    """Same shape as the runner's graphs: prepare -> input -> 5 steps -> finish."""
    for lo in range(0, n, chunk):
        graphs = []
        for i in range(lo, min(n, lo + chunk)):
            d, tag = str(root / f"E{i}"), f"{i}-E{i}"
            prepared = dask.delayed(_b_prepare, pure=False)(
                str(src / f"in-{i}.json"), d, dask_key_name=f"prepare-{tag}"
            )
            prev = dask.delayed(_b_input, pure=False)(d, prepared, dask_key_name=f"Input-{tag}")
            results = [prev]
            for k in range(1, N_STEPS + 1):
                prev = dask.delayed(_b_step, pure=False)(
                    k, d, prepared, prev, dask_key_name=f"Step{k}-{tag}"
                )
                results.append(prev)
            graphs.append(
                dask.delayed(_b_finish, pure=False)(
                    d, prepared, *results, dask_key_name=f"finish-{tag}"
                )
            )
        dask.compute(*graphs, scheduler=scheduler, num_workers=jobs)


# -- ours ------------------------------------------------------------------------------
def llama_config(src: Path, root: Path, args) -> BatchConfig:
    return BatchConfig(
        pipeline=select_pipeline(with_ancestors=[LAST.__name__], registry=BENCH),
        get={"h0.json": str(src / "in-{i}.json")},
        eventdir=str(root / "E{i}"),
        flags={},
        jobs=args.jobs,
        scheduler=args.scheduler,
        chunk_events=args.chunk,
        environ={},
    )


def check_outputs(root: Path, n: int) -> None:
    want = sum(range(1, N_STEPS + 1))
    for i in (0, n // 2, n - 1):
        got = json.loads((root / f"E{i}" / f"h{N_STEPS}.json").read_text())["value"]
        assert got == i + want, (i, got)


#: CPU seconds (user + system, all threads of this process) of the last `timed` call:
#: steadier than wall time when other work shares the machine.
CPU: dict[str, float] = {}


def timed(func, *a, **kw) -> tuple[float, object]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = func(*a, **kw)
    CPU["last"] = time.process_time() - c0
    return time.perf_counter() - t0, out


def one_round(args, work: Path, r: int) -> dict[str, float]:
    n = args.events
    src = work / "src"
    config_chunk = args.chunk or max(16, 8 * args.jobs)  # the runner's automatic size
    out: dict[str, float] = {}

    root = work / f"loop-{r}"
    out["plain loop"], _ = timed(plain_loop, src, root, n)
    out["plain loop cpu"] = CPU["last"]
    check_outputs(root, n)

    root = work / f"dask-{r}"
    out["plain dask"], _ = timed(plain_dask, src, root, n, config_chunk, args.scheduler, args.jobs)
    out["plain dask cpu"] = CPU["last"]
    check_outputs(root, n)

    root = work / f"llama-{r}"
    config = llama_config(src, root, args)
    vectors = [{"i": str(i)} for i in range(n)]
    out["llama first"], s1 = timed(run_batch, vectors, config, total=n, progress=False)
    out["llama first cpu"] = CPU["last"]
    assert s1.ok and s1.counts["done"] == n, s1.line()
    check_outputs(root, n)
    out["llama re-run"], s2 = timed(run_batch, vectors, config, total=n, progress=False)
    out["llama re-run cpu"] = CPU["last"]
    assert s2.ok and s2.counts["up to date"] == n, s2.line()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="events per run (1000)")
    parser.add_argument("--jobs", type=int, default=2, help="Dask workers (2)")
    parser.add_argument("--scheduler", default="threads", help="threads | processes | synchronous")
    parser.add_argument("--chunk", type=int, default=0,
                        help="events per dask.compute call (0: the runner's automatic size)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed (3)")
    parser.add_argument("--profile", metavar="FILE",
                        help="write a cProfile of one extra 'llama first' + re-run to FILE")  # fmt: skip
    parser.add_argument("--tmp", help="parent of the temporary work directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    n, steps = args.events, args.events * N_STEPS
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-", dir=args.tmp) as tmp:
        work = Path(tmp)
        write_sources(work / "src", n)
        for r in range(args.repeat):
            rounds.append(one_round(args, work, r))
            print(f"round {r + 1}: " + ", ".join(
                f"{k} {rounds[-1][k]:.2f} s (cpu {rounds[-1][k + ' cpu']:.2f})" for k in VARIANTS
            ), flush=True)  # fmt: skip
            for sub in work.iterdir():  # keep the disk small between rounds
                if sub.name != "src":
                    shutil.rmtree(sub)
        if args.profile:
            import cProfile

            root = work / "profiled"
            config = llama_config(work / "src", root, args)
            vectors = [{"i": str(i)} for i in range(n)]
            prof = cProfile.Profile()
            prof.enable()
            run_batch(vectors, config, total=n, progress=False)
            run_batch(vectors, config, total=n, progress=False)
            prof.disable()
            prof.dump_stats(args.profile)
            print(f"profile written to {args.profile}")

    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    tasks = n * TASKS_PER_EVENT
    ours_task = med["llama first"] / steps * 1e3
    plain_task = med["plain dask"] / steps * 1e3
    overhead = ours_task - plain_task
    per_dask_task = (med["llama first"] - med["plain dask"]) / tasks * 1e3
    speedup = med["llama first"] / med["llama re-run"]
    overhead_cpu = (med["llama first cpu"] - med["plain dask cpu"]) / steps * 1e3
    speedup_cpu = med["llama first cpu"] / med["llama re-run cpu"]

    print()
    print(f"{n} events x {N_STEPS} generated handlers (+ input, prepare, finish = "
          f"{TASKS_PER_EVENT} Dask tasks/event), scheduler={args.scheduler}, "
          f"jobs={args.jobs}, {len(rounds)} rounds, medians; "
          f"python {sys.version.split()[0]}, dask {dask.__version__}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"  {'':16s} {'wall s':>8s} {'cpu s':>8s} {'ms/handler task':>16s}")
    for k in VARIANTS:
        per = f"{med[k] / steps * 1e3:.3f}" if k != "llama re-run" else ""
        print(f"  {k:16s} {med[k]:8.2f} {med[k + ' cpu']:8.2f} {per:>16s}")
    print()
    rows = [
        ("events/s, first run", f"{n / med['llama first']:.1f}", "(reported)", ""),
        ("overhead per handler task (ms)", f"{overhead:.3f}", "<= 1",
         "PASS" if overhead <= 1 else "MISS"),
        ("  same, per Dask task (ms)", f"{per_dask_task:.3f}", "", ""),
        ("  same, in CPU time (ms)", f"{overhead_cpu:.3f}", "", ""),
        ("llama / plain dask time", f"{med['llama first'] / med['plain dask']:.2f}x", "", ""),
        ("first run / re-run", f"{speedup:.1f}x", ">= 10x", "PASS" if speedup >= 10 else "MISS"),
        ("  same, in CPU time", f"{speedup_cpu:.1f}x", "", ""),
    ]  # fmt: skip
    print("ratio")
    print(f"  {'figure':34s} {'measured':>10s} {'goal':>10s}  result")
    for name, value, goal, result in rows:
        print(f"  {name:34s} {value:>10s} {goal:>10s}  {result}")
    return 0 if overhead <= 1 and speedup >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
