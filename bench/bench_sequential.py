"""Benchmark of sequential trials (``LLAMA_TRIAL_STOP_AFTER``) against all trials.

Claim measured (issue 10 item 5, issue 8): with h = 20 a background event's
significance costs far less CPU than with the fixed 2,000 trials, because it draws
~h (1 + ln(2000 / h)) = 112 trials instead of 2,000 (docs/science.md, "Stopping
early").

Two sets of events, each timed with the option off and on, interleaved event by event
in this one process (so the load of the machine falls on both alike), CPU time of this
process (``time.process_time``) with one Numba thread:

* ``bayestar``: BAYESTAR maps (``/work/shared/data/bayestar``, else the 4 copies in
  ``tests/data/bayestar``) with background lists from ``llama.science.sim``: the
  significance as a campaign runs it (``EventModel`` built from the map, the observed
  statistic, ``trial_pvalues`` with the default kind and 2,000 trials).
* ``examples``: the README's example events (``llama/examples``: each GW event with
  background lists ``bg-*``), the whole ``CoincSignificanceI3Lvc.significance()`` of
  the handler, reading its inputs from the event directory.

Prints per set: CPU per event off and on, the ratio, mean trials drawn, and the mean
|p_on - p_off| (the stopped p-value's spread, ~p sqrt((1 - p) / h)).

Run: ``python bench/bench_sequential.py [--h 20] [--lists 2] [--examples 16]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from numba import set_num_threads  # noqa: E402

from llama.science.odds import EventModel  # noqa: E402
from llama.science.pvalue import DEFAULT_N_TRIALS, trial_pvalues  # noqa: E402
from llama.science.sim import simulate_background_neutrinos  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402
from llama.science.times import mjd_to_gps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "bayestar"
LOCAL = ROOT / "tests" / "data" / "bayestar"
EXAMPLES = ROOT / "llama" / "examples"


def cpu(f, *args, **kwargs):
    t0 = time.process_time()
    out = f(*args, **kwargs)
    return out, time.process_time() - t0


def both(significance, h: int, on_first: int, *args):
    """(result off, CPU off, result on, CPU on); which runs first alternates with
    ``on_first``, so neither setting always finds the caches the other left warm."""
    if on_first:
        on, t_on = cpu(significance, *args, h)
        off, t_off = cpu(significance, *args, None)
    else:
        off, t_off = cpu(significance, *args, None)
        on, t_on = cpu(significance, *args, h)
    return off, t_off, on, t_on


def bayestar_rows(h: int, n_lists: int, seed: int, kind: str = "background", maps: str = ""):
    """(cpu off, cpu on, drawn, p off, p on) per BAYESTAR event x background list."""
    directory = SHARED if (SHARED / "events.json").exists() else LOCAL
    info = json.loads((directory / "events.json").read_text())
    rng = np.random.default_rng(seed)
    rows = []

    def significance(name, nl, i, stop_after):
        e = info[name]
        mjd = float(e["mjd_obs"])
        model = EventModel(
            read_sky_map(directory / f"{name}.fits"), float(e["network_snr"]),
            float(e["distmean_mpc"]), e["population"], t_gw_mjd=mjd,
        )  # fmt: skip
        obs = model.evaluate(nl, float(mjd_to_gps(mjd)))
        return trial_pvalues(model, obs, DEFAULT_N_TRIALS, kind, seed=i, stop_after=stop_after)

    names = sorted(n for n in info if (directory / f"{n}.fits").exists())
    names = [n for n in names if not maps or n in maps.split(",")]
    nl0 = simulate_background_neutrinos(np.random.default_rng(0), float(info[names[0]]["mjd_obs"]))  # fmt: skip
    significance(names[0], nl0, 0, None)  # warm-up: kernels compiled, files cached
    significance(names[0], nl0, 0, h)
    i = 0
    for name in names:
        for _ in range(n_lists):
            nl = simulate_background_neutrinos(rng, float(info[name]["mjd_obs"]))
            off, t_off, on, t_on = both(significance, h, i % 2, name, nl, i)
            rows.append((t_off, t_on, on.method["n_trials_drawn"], off.p_value, on.p_value))
            i += 1
    return rows


def example_rows(h: int, n_events: int, seed: int, workdir: Path):
    """The same for the handler on the README's example events."""
    from llama.event import Event
    from llama.handler import Status
    from llama.handlers.coinc import CoincSignificanceI3Lvc
    from llama.pipeline import select_pipeline

    graceids = (EXAMPLES / "graceids.txt").read_text().split()
    lists = [n for n in (EXAMPLES / "neutrinos.txt").read_text().split() if n.startswith("bg-")]  # fmt: skip
    rng = np.random.default_rng(seed)
    upstream = [
        c for c in select_pipeline(with_ancestors=["CoincSignificanceI3Lvc"])
        if c is not CoincSignificanceI3Lvc
    ]  # fmt: skip
    events = []
    for k in range(n_events + 1):  # the first is the warm-up
        g, n = graceids[k % len(graceids)], lists[int(rng.integers(len(lists)))]
        ev = Event(workdir / f"{g}-{n}-{k}", flags={"ONLINE": "false"})
        for fname in ("skymap_info.json", "lvc_skymap.fits"):
            shutil.copy(EXAMPLES / "events" / g / fname, ev.path(fname))
        shutil.copy(EXAMPLES / "neutrinos" / f"{n}.json", ev.path("icecube_neutrino_list.json"))
        for _ in range(3):  # the upstream files, outside the clock
            for handler in upstream:
                if ev.status(handler) is Status.READY:
                    ev.generate(handler)
        events.append(ev)

    def significance(ev, stop_after):
        if stop_after is None:
            os.environ.pop("LLAMA_TRIAL_STOP_AFTER", None)
        else:
            os.environ["LLAMA_TRIAL_STOP_AFTER"] = str(stop_after)
        return CoincSignificanceI3Lvc(ev).significance()["outputs"]["neutrino_gw_combined"]

    significance(events[0], None)
    significance(events[0], h)
    rows = []
    for k, ev in enumerate(events[1:]):
        off, t_off, on, t_on = both(significance, h, k % 2, ev)
        rows.append((t_off, t_on, on["n_trials_drawn"], off["p_value"], on["p_value"]))
    os.environ.pop("LLAMA_TRIAL_STOP_AFTER", None)
    return rows


#: Goals: CPU of the significance with h = 20 at most half of all trials', and at most a
#: fifth of the 2,000 trials drawn on average (background events: ~112 expected).
GOALS = {"cpu_ratio": 0.5, "drawn": DEFAULT_N_TRIALS / 5}


def report(label: str, rows, h: int) -> list[tuple[str, float, float]]:
    """Print one set's line; return its (figure, measured, goal) rows."""
    a = np.asarray(rows, dtype=float)
    off, on = a[:, 0].mean(), a[:, 1].mean()
    print(
        f"{label:20s} {len(rows):4d} events  CPU/event off {1e3 * off:7.1f} ms  "
        f"h={h} {1e3 * on:7.1f} ms  ratio on/off {on / off:.3f}  "
        f"trials drawn mean {a[:, 2].mean():.0f} (max {a[:, 2].max():.0f})  "
        f"mean |p_on - p_off| {np.mean(np.abs(a[:, 4] - a[:, 3])):.3f}"
    )
    return [
        (f"{label}: CPU per event, h={h} / all trials", on / off, GOALS["cpu_ratio"]),
        (f"{label}: mean trials drawn", float(a[:, 2].mean()), GOALS["drawn"]),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--h", type=int, default=20, help="LLAMA_TRIAL_STOP_AFTER")
    ap.add_argument("--lists", type=int, default=2, help="background lists per BAYESTAR map")
    ap.add_argument("--examples", type=int, default=16, help="README example events")
    ap.add_argument("--seed", type=int, default=1991)
    ap.add_argument("--kind", default="background", help="trial kind of the BAYESTAR set")
    ap.add_argument("--maps", default="", help="BAYESTAR maps, e.g. bns-1,bbh-2 (all)")
    args = ap.parse_args(argv)
    set_num_threads(1)
    os.environ.pop("LLAMA_TRIAL_STOP_AFTER", None)
    os.environ.pop("LLAMA_N_TRIALS", None)
    print(f"load {os.getloadavg()[0]:.1f}; 1 Numba thread; {DEFAULT_N_TRIALS} trials at most")
    rows = bayestar_rows(args.h, args.lists, args.seed, args.kind, args.maps)
    ratios = report(f"bayestar {args.kind}", rows, args.h)
    with tempfile.TemporaryDirectory() as tmp:
        rows = example_rows(args.h, args.examples, args.seed, Path(tmp))
        ratios += report("examples", rows, args.h)
    print(f"load {os.getloadavg()[0]:.1f} at the end\n\nratio")
    missed = False
    for figure, measured, goal in ratios:
        ok = measured <= goal
        missed |= not ok
        print(f"  {figure:55s} {measured:9.3f}  goal <= {goal:g}  {'PASS' if ok else 'MISS'}")
    return int(missed)


if __name__ == "__main__":
    sys.exit(main())
