"""Benchmark of the scatter plot: one drawing saved as PNG and PDF.

Claim measured (issue 10, item 5): drawing an event's scatter figure and saving it as
PNG and PDF takes <= 0.3 s on one core, so that the review pipeline (which makes that
pair per event) can reach >= 5 events/s with ``--jobs 2`` on 2 cores.

Workload: the eight example events of ``llama/examples`` (multi-order maps up to order
8, 27 to 2,692 deg²), each with its injected neutrino list (5 to 12 neutrinos), drawn
in turn, round after round, in one thread. Timed per event: ``draw_scatter`` followed
by ``save_figure`` to PNG and to PDF (in memory, so disk speed does not count), wall
and CPU time (``time.process_time``, this process only).

Baseline, in the same process: the plotting module as it was before the rewrite
(commit ``52e499d``, read with ``git show`` and imported under another name), doing
the same work (draw, PNG, PDF) on the same events. When git or that commit is not
available the baseline is skipped and only the absolute figures are printed.

Run: ``python bench/bench_plots.py [--rounds 5] [--no-baseline]``. Prints a table;
writes nothing. Exit status 1 when the median pair exceeds the goal.

Examples
--------
``python bench/bench_plots.py --rounds 3``
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llama.science import plotting, times  # noqa: E402
from llama.science.neutrinos import NeutrinoList  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402

#: Goal for one drawing saved as PNG and PDF, on one core [s].
GOAL_PAIR_S = 0.3
#: The plotting module before the rewrite, the baseline.
BASELINE_COMMIT = "52e499d"
EXAMPLES = ROOT / "llama" / "examples"


def load_events() -> list[tuple[str, object, NeutrinoList, object]]:
    """(graceid, sky map, injected neutrino list, dt [s]) of each example event."""
    out = []
    for d in sorted((EXAMPLES / "events").iterdir()):
        skymap = read_sky_map(d / "lvc_skymap.fits")
        info = json.loads((d / "skymap_info.json").read_text())
        nl = NeutrinoList.read(EXAMPLES / "neutrinos" / f"inj-{d.name}.json")
        out.append((d.name, skymap, nl, nl.dt_seconds(times.iso_to_mjd(info["event_time_iso"]))))
    return out


def load_baseline():
    """The old plotting module, or None when git cannot give it."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE_COMMIT}:llama/science/plotting.py"],
            cwd=ROOT, capture_output=True, check=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "plotting_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("plotting_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def time_pairs(module, events, rounds: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of draw + PNG + PDF, per event and round."""
    wall, cpu = [], []
    for _ in range(rounds):
        for graceid, skymap, nl, dt in events:
            w0, c0 = time.perf_counter(), time.process_time()
            with plotting.DRAW_LOCK:
                fig = module.draw_scatter(skymap, nl, dt, (), f"{graceid}: bench", "note")
                module.save_figure(fig, io.BytesIO(), "png")
                module.save_figure(fig, io.BytesIO(), "pdf")
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the 8 events")
    parser.add_argument("--no-baseline", action="store_true", help="skip the old module")
    args = parser.parse_args(argv)

    events = load_events()
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average); {len(events)} events")
    time_pairs(plotting, events[:2], 1)  # warm-up: imports, font cache, templates
    new_wall, new_cpu = time_pairs(plotting, events, args.rounds)
    rows = [("new", new_wall, new_cpu)]
    baseline = None if args.no_baseline else load_baseline()
    if baseline is not None:
        time_pairs(baseline, events[:2], 1)
        old_wall, old_cpu = time_pairs(baseline, events, args.rounds)
        rows.append((f"before ({BASELINE_COMMIT})", old_wall, old_cpu))
    print(f"{'module':<18} {'wall median [s]':>16} {'CPU median [s]':>15} {'max wall':>9}")
    for name, wall, cpu in rows:
        print(
            f"{name:<18} {statistics.median(wall):>16.3f} {statistics.median(cpu):>15.3f}"
            f" {max(wall):>9.3f}"
        )
    pair = statistics.median(new_cpu)
    verdict = "PASS" if pair <= GOAL_PAIR_S else "MISS"
    print("\nratio")
    print(f"draw + PNG + PDF, CPU median: {pair:.3f} s (goal <= {GOAL_PAIR_S} s) {verdict}")
    if baseline is not None:
        print(
            f"before / new, CPU: {statistics.median(rows[1][2]) / pair:.2f}x;"
            f" wall: {statistics.median(rows[1][1]) / statistics.median(new_wall):.2f}x"
        )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
