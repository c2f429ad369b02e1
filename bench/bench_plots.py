"""Benchmark of the scatter plot: one drawing saved as PNG and PDF.

Claim measured (issue 10, item 5): drawing an event's scatter figure and saving it as
PNG and PDF takes <= 0.2 s of CPU on one core (the first goal was 0.3 s; 0.2 s is the
plots' share of the ~0.4 s per event that lets the review pipeline, which makes that
pair per event, reach >= 5 events/s with ``--jobs 2`` on 2 cores).

Workload: the eight example maps of ``llama/examples`` (multi-order maps up to order
8, 27 to 2,692 deg²), each with a background neutrino list of the examples, drawn in
turn, round after round, in one thread. As in the review pipeline, every timed pair is
a pairing not drawn before (round r draws map i with list ``bg-((i + r) mod 16)``, so
up to 16 rounds) on a fresh copy of the map (new arrays, as a handler reads them), with
the handler's title and note: nothing is taken from a cache filled by an earlier
drawing of the same event, only what earlier events share (the layout, glyphs and
strings such as tick labels). The two warm-up pairs use the injected lists. Timed per
pair: ``draw_scatter`` followed by ``save_figure`` to PNG and to PDF (in memory, so
disk speed does not count), wall and CPU time (``time.process_time``, this process
only).

Baselines, in the same process, doing the same work (draw, PNG, PDF) on the same
events, rounds interleaved with the current code: the plotting code of earlier
commits, read from git and imported under other names by ``bench/revisions.py`` (``plotting.py`` and,
where the commit has it, ``skyfigure.py``; other modules are today's): ``52e499d``,
before the rewrite, and ``3536903``, the code before texts were laid out once per
string in PDFs and drawn from kept glyphs in PNGs (its ``save_figure`` does not use
those caches). When git or a commit is not available that baseline is skipped. The
CPU of the current code is also split into draw, PNG save and PDF save.

With ``--threads N``: pairs per second of wall time with N threads drawing at once
(no lock; each thread has its figures) against one thread, rounds interleaved.

Run: ``python bench/bench_plots.py [--rounds 5] [--baseline 52e499d 3536903]
[--threads 2]`` (``--baseline`` with no commit: none). Prints a table; writes nothing. Exit status 1
when the median pair exceeds the goal.

Examples
--------
``python bench/bench_plots.py --rounds 3``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llama.science import plotting, times  # noqa: E402
from llama.science.neutrinos import NeutrinoList  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from revisions import RevisionError, module_at, module_name, source_at  # noqa: E402

#: Goal for one drawing saved as PNG and PDF, on one core [s of CPU].
GOAL_PAIR_S = 0.2
#: Baselines: the plotting module before the rewrite; the code before this round.
BASELINE_COMMITS = ("52e499d", "3536903")
EXAMPLES = ROOT / "llama" / "examples"


def load_events(round_: int | None = None) -> list[tuple[str, object, NeutrinoList, object]]:
    """(graceid, sky map, neutrino list, dt [s]) of each example map: with its injected
    list, or in round ``round_`` map i with list ``bg-((i + round_) mod 16)``."""
    out = []
    for i, d in enumerate(sorted((EXAMPLES / "events").iterdir())):
        skymap = read_sky_map(d / "lvc_skymap.fits")
        info = json.loads((d / "skymap_info.json").read_text())
        name = f"inj-{d.name}" if round_ is None else f"bg-{(i + round_) % 16:02d}"
        nl = NeutrinoList.read(EXAMPLES / "neutrinos" / f"{name}.json")
        out.append((d.name, skymap, nl, nl.dt_seconds(times.iso_to_mjd(info["event_time_iso"]))))
    return out


def fresh(event):
    """The event with its own copy of the map's arrays (a handler reads the map anew, so
    no cache keyed on an earlier drawing's arrays applies)."""
    import dataclasses

    graceid, skymap, nl, dt = event
    copy = dataclasses.replace(
        skymap, probdensity=skymap.probdensity.copy(),
        uniq=None if skymap.uniq is None else skymap.uniq.copy(),
    )  # fmt: skip
    return graceid, copy, nl, dt


def load_baseline(commit: str):
    """The plotting module of ``commit`` (with that commit's skyfigure module, if it
    has one, in place of today's), or None when git cannot give it."""
    plotting_name, figure_name = module_name("plotting_", commit), module_name("skyfigure_", commit)
    try:
        has_figure = source_at(commit, "llama/science/skyfigure.py") is not None
        # each module's import of the other renamed, so the two load as a pair
        module = module_at(
            commit, "llama/science/plotting.py", plotting_name,
            {"llama.science.skyfigure": figure_name} if has_figure else None,
        )  # fmt: skip
        if has_figure:
            module_at(commit, "llama/science/skyfigure.py", figure_name,
                      {"llama.science.plotting": plotting_name})  # fmt: skip
    except RevisionError:
        return None
    return module


#: Title (after the GraceID) and note of the review pipeline's scatter plot.
TITLE = "IceCube neutrinos over the GW sky map"
NOTE = "Δt: neutrino arrival time relative to GW event time 2019-04-25T08:18:05 UTC"
#: CPU seconds of each stage of the current code's pairs: draw, PNG save, PDF save.
STAGES: dict[str, list[float]] = {"draw": [], "png": [], "pdf": []}


def time_pair(module, event, stages: dict[str, list[float]] | None = None):
    """Wall and CPU seconds of draw + PNG + PDF of one event (CPU of each stage
    appended to ``stages`` when given)."""
    graceid, skymap, nl, dt = event
    w0, c0 = time.perf_counter(), time.process_time()
    fig = module.draw_scatter(skymap, nl, dt, (), f"{graceid}: {TITLE}", NOTE)
    c1 = time.process_time()
    module.save_figure(fig, io.BytesIO(), "png")
    c2 = time.process_time()
    module.save_figure(fig, io.BytesIO(), "pdf")
    c3 = time.process_time()
    if stages is not None:
        for name, cpu in zip(("draw", "png", "pdf"), (c1 - c0, c2 - c1, c3 - c2), strict=True):
            stages[name].append(cpu)
    return time.perf_counter() - w0, c3 - c0


def pairs_per_second(events, n_threads: int, rounds: int) -> float:
    """Pairs per second of wall time with ``n_threads`` threads each drawing and saving
    every event ``rounds`` times (each thread on figures of its own)."""
    import threading

    def work() -> None:
        for _ in range(rounds):
            for event in events:
                time_pair(plotting, event)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n_threads * rounds * len(events) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the 8 events")
    parser.add_argument("--baseline", nargs="*", default=list(BASELINE_COMMITS),
                        metavar="COMMIT", help="commits to compare with (none: no baseline)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="also compare pairs/s of N threads drawing at once with 1")  # fmt: skip
    args = parser.parse_args(argv)

    events = load_events()
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average); {len(events)} events")
    modules = {"now": plotting}
    for commit in args.baseline:
        module = load_baseline(commit)
        if module is None:
            print(f"baseline {commit}: not available from git, skipped")
        else:
            modules[commit] = module
    for module in modules.values():  # warm-up: imports, font cache, templates
        for event in events[:2]:
            time_pair(module, event)
    times_of = {name: ([], []) for name in modules}
    for r in range(args.rounds):
        for event in load_events(r):  # pairings not drawn before
            for name, module in modules.items():  # interleaved: same load for all
                pair = fresh(event)
                wall, cpu = time_pair(module, pair, STAGES if name == "now" else None)
                times_of[name][0].append(wall)
                times_of[name][1].append(cpu)
    print(f"{'code':<10} {'wall median [s]':>16} {'CPU median [s]':>15} {'max wall':>9}")
    for name, (wall, cpu) in times_of.items():
        print(
            f"{name:<10} {statistics.median(wall):>16.3f} {statistics.median(cpu):>15.3f}"
            f" {max(wall):>9.3f}"
        )
    pair = statistics.median(times_of["now"][1])
    verdict = "PASS" if pair <= GOAL_PAIR_S else "MISS"
    split = ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in STAGES.items())
    print(f"now, CPU medians by stage [s]: {split}")
    print("\nratio")
    print(f"draw + PNG + PDF, CPU median: {pair:.3f} s (goal <= {GOAL_PAIR_S} s) {verdict}")
    for name, (wall, cpu) in times_of.items():
        if name != "now":
            print(
                f"{name} / now, CPU: {statistics.median(cpu) / pair:.2f}x;"
                f" wall: {statistics.median(wall) / statistics.median(times_of['now'][0]):.2f}x"
            )
    if args.threads > 1:
        one, many = [], []
        for _ in range(args.rounds):  # interleaved: the same load for both
            one.append(pairs_per_second(events, 1, 1))
            many.append(pairs_per_second(events, args.threads, 1))
        print(
            f"{args.threads} threads / 1 thread, pairs per second of wall time: "
            f"{statistics.median(many):.2f} / {statistics.median(one):.2f} = "
            f"{statistics.median(many) / statistics.median(one):.2f}x "
            f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})"
        )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
