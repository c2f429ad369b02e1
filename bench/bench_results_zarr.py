"""Results written as events finish: the zarr store's cost per event.

The claim (issue 10, item 2): writing each finished event into the zarr results store
(`llama.results_zarr.ZarrResults`, at most one flush a second) costs at most 1 ms of the
driver's time per event, amortised, so that it never slows a batch whose events take
milliseconds; and it costs at most 3x the netCDF file written once at the end.

Workload
--------
N finished events of a Cartesian sweep (``graceid`` x ``neutrinos``, N = 40 x N/40),
each with a ``significance_lvc-i3.json`` of 7 neutrinos (all 17 per-neutrino fields) and
12 per-event records, written to a temporary directory before the clock starts. The
outcomes are handed to the writer back to back, as fast as a batch could finish them,
so every write carries many events. ``--flush 0`` asks for a write after every event:
the writer then spaces its writes by four times the time the last one took
(`llama.results_zarr.MAX_WRITE_SHARE`), and that bound is what it measures.

Measured in one process after a warm-up round (imports), ``--repeat`` times, medians
printed:

* ``netcdf at end``: `llama.results.write_results` of all N outcomes (reads every
  significance file, builds the Dataset, writes it atomically), as ``--results x.nc``;
* ``zarr as they finish``: a fresh `ZarrResults` store, each outcome passed to it as
  ``run_batch`` would (``on_outcome``), then ``close``; with ``--flush`` seconds between
  flushes (default 1.0; the clock runs, so a slow machine flushes more often).

Run::

    python bench/bench_results_zarr.py            # 4000 events
    python bench/bench_results_zarr.py --events 400 --flush 0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_outcomes(root: Path, n: int):
    """N finished events with significance files, and the layout of their sweep."""
    from llama.batch.runner import EventOutcome
    from llama.results import SweepLayout
    from llama.results_schema import NEUTRINO_FIELDS, SIGNIFICANCE_FILE

    rng = np.random.default_rng(1)
    graceids = [f"S{i:04d}" for i in range(40)]
    lists = [f"bg-{j:04d}" for j in range(max(1, n // 40))]
    layout = SweepLayout({"graceid": graceids, "neutrinos": lists})
    outcomes = []
    for index in range(len(graceids) * len(lists)):
        g, nu = graceids[index // len(lists)], lists[index % len(lists)]
        directory = root / f"{g}-{nu}"
        directory.mkdir(parents=True)
        triggers = [{name: float(rng.random()) for name in NEUTRINO_FIELDS} for _ in range(7)]
        (directory / SIGNIFICANCE_FILE).write_text(
            json.dumps({"outputs": {"neutrino_gw_triggers": triggers}})
        )
        records = {f"value_{k}": float(rng.random()) for k in range(10)}
        records.update(population="bns", instruments="H1,L1,V1")
        outcomes.append(EventOutcome(index, directory.name, str(directory),
                                     {"graceid": g, "neutrinos": nu}, "done", records=records))  # fmt: skip
    return outcomes, layout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=4000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--flush", type=float, default=1.0, help="seconds between flushes")
    args = p.parse_args(argv)

    from llama.results import write_results
    from llama.results_zarr import ZarrResults

    root = Path(tempfile.mkdtemp(prefix="bench-results-"))
    try:
        outcomes, layout = make_outcomes(root / "events", args.events)
        n = len(outcomes)
        timings: dict[str, list[tuple[float, float]]] = {
            "netcdf at end": [],
            "zarr as they finish": [],
        }
        # a warm-up round: imports (xarray, zarr, h5netcdf) are not charged to either
        write_results(outcomes[:40], root / "warm.nc", layout=layout)
        warm = ZarrResults(root / "warm.zarr", layout, flush_s=args.flush)
        for outcome in outcomes[:40]:
            warm(outcome)
        warm.close()
        for r in range(args.repeat):
            wall, cpu = time.perf_counter(), _cpu()
            write_results(outcomes, root / f"r{r}.nc", layout=layout)
            timings["netcdf at end"].append((time.perf_counter() - wall, _cpu() - cpu))
            wall, cpu = time.perf_counter(), _cpu()
            store = ZarrResults(root / f"r{r}.zarr", layout, flush_s=args.flush)
            for outcome in outcomes:
                store(outcome)
            store.close()
            timings["zarr as they finish"].append((time.perf_counter() - wall, _cpu() - cpu))
        print(f"{n} events, 7 neutrinos each; flush every {args.flush} s; load {os.getloadavg()}")
        medians = {}
        for name, rounds in timings.items():
            w, c = (float(np.median([t[i] for t in rounds])) for i in (0, 1))
            medians[name] = w
            print(f"{name:22s} wall {w:7.3f} s  cpu {c:7.3f} s  {1e3 * w / n:6.3f} ms/event")
        per_event = 1e3 * medians["zarr as they finish"] / n
        ratio = medians["zarr as they finish"] / medians["netcdf at end"]
        checks = [("zarr ms per event", per_event, 1.0), ("zarr / netcdf", ratio, 3.0)]
        print("\nratio")
        ok = True
        for name, value, goal in checks:
            verdict = "PASS" if value <= goal else "MISS"
            ok &= verdict == "PASS"
            print(f"  {name:20s} {value:8.3f}  goal <= {goal:<5}  {verdict}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
