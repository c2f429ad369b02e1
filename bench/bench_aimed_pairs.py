"""Background significances through the library's aimed pair looks
(``BackgroundTrials._pair_looks``: the doublet step of ``_refine``), at two settings of
their ``narrow`` criterion, in one process: a check that the path is taken, and the
measure of its one free setting.

Engineer P's A/B of this bench (99335f8: the committed exact doublet step against pair
looks aimed at each trial's thresholds, patched in; hard maps, 2,000 trials: 1.09-1.14x
CPU per event, p-values identical) is now the library's path; against a revision
before it, ``bench/bench_looks.py`` measures it. Here each event runs through
``trial_pvalues`` with ``background_trials.PAIR_NARROW`` at ``--narrow`` and at
``--against`` in turn (the order alternating per event; both compiled outside the
clock), counting the pair looks (``kernels.overlap.psf_pair_overlap_targets``), those
stopped at their aims and the calls of ``pair_terms`` without an overlap (a trial's
exact doublet terms, or a whole exact statistic). Without ``--against`` only ``--narrow`` runs.

Events: ``bench_looks.py``'s (event k: map k mod the sorted maps, list seed 8 + k,
trial seed k; by default the 6 hard maps), 2,000 background trials each.

Run: ``python bench/bench_aimed_pairs.py [--events 48] [--narrow 0.1] [--against 0]
[--maps bbh-0,...]``. Exits 1 if a p-value differs between the two settings or no
pair look was taken.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from numba import set_num_threads

import kernels.overlap as KO
import llama.science.background_trials as BT
from llama.science.odds import EventModel
from llama.science.pvalue import trial_pvalues
from llama.science.sim import simulate_background_neutrinos
from llama.science.skymap import read_sky_map
from llama.science.times import mjd_to_gps

BAYESTAR = Path("/work/shared/data/bayestar")
HARD = "bbh-0,bbh-10,bbh-3,bbh-6,bns-5,bns-9"
STATS = {"looks": 0, "stopped": 0, "exact_terms": 0}
_LOOK = KO.psf_pair_overlap_targets
_TERMS = EventModel.pair_terms


def counted_look(*a, **k):
    """The library's pair looks, counted."""
    w, half = _LOOK(*a, **k)
    STATS["looks"] += half.size
    STATS["stopped"] += int(np.sum(half >= 0.0))
    return w, half


def counted_terms(self, *a, **k):
    """``EventModel.pair_terms``, its calls without an overlap (exact terms) counted."""
    STATS["exact_terms"] += "overlap" not in k and len(a) < 10
    return _TERMS(self, *a, **k)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=48, help="events drawn (k = 0 .. N - 1)")
    ap.add_argument("--maps", default=HARD, help="time only the events on these maps")
    ap.add_argument(
        "--narrow", type=float, default=BT.PAIR_NARROW, help="pair looks' narrow criterion"
    )
    ap.add_argument(
        "--against", type=float, default=None, help="a second narrow criterion, alternated"
    )
    args = ap.parse_args(argv)
    # one Numba thread, set here rather than in os.environ at import: a process that
    # imports this module (a test) keeps its own thread count
    set_num_threads(1)
    print("before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    KO.psf_pair_overlap_targets, EventModel.pair_terms = counted_look, counted_terms
    cat = json.loads((BAYESTAR / "events.json").read_text())
    names = sorted(k for k in cat if (BAYESTAR / f"{k}.fits").exists())
    maps = set(args.maps.split(","))
    models, events = {}, []
    for k in range(args.events):
        name = names[k % len(names)]
        if name not in maps:
            continue
        info = cat[name]
        if name not in models:
            models[name] = EventModel(read_sky_map(BAYESTAR / f"{name}.fits"), float(info["network_snr"]), float(info["distmean_mpc"]), info["population"], t_gw_mjd=float(info["mjd_obs"]))  # fmt: skip
        nl = simulate_background_neutrinos(np.random.default_rng(8 + k), float(info["mjd_obs"]))
        events.append((k, name, models[name], nl, float(mjd_to_gps(float(info["mjd_obs"])))))
    runs = [(f"narrow {args.narrow:g}", args.narrow)]
    if args.against is not None:
        runs.append((f"narrow {args.against:g}", args.against))
    for k, _, m, nl, t_gw in events[: len(maps)]:  # compiled outside the clock
        for _, x in runs:
            BT.PAIR_NARROW = x
            trial_pvalues(m, m.evaluate(nl, t_gw), 2000, seed=k)
    STATS.update(dict.fromkeys(STATS, 0))
    cpu = dict.fromkeys((label for label, _ in runs), 0.0)
    all_same = True
    print("  k map     " + "".join(f"{label:>14s} ms" for label, _ in runs) + "  same p")
    for n, (k, name, m, nl, t_gw) in enumerate(events):
        res = {}
        for label, x in runs if n % 2 == 0 else runs[::-1]:
            BT.PAIR_NARROW = x
            obs = m.evaluate(nl, t_gw)
            t0 = time.process_time()
            r = trial_pvalues(m, obs, 2000, seed=k)
            res[label] = (time.process_time() - t0, r.p_value, np.asarray(r.p_values_neutrino))
            cpu[label] += res[label][0]
        base = res[runs[0][0]]
        same = all(v[1] == base[1] and np.array_equal(v[2], base[2], equal_nan=True) for v in res.values())  # fmt: skip
        all_same &= same
        print(f"{k:3d} {name:8s}" + "".join(f"{1e3 * res[label][0]:17.1f}" for label, _ in runs) + f"  {same}")  # fmt: skip
    n = max(len(events), 1)
    print("after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"{len(events)} events, 2,000 background trials, CPU ms per event: " + ", ".join(f"{label} {1e3 * t / n:.1f}" for label, t in cpu.items()) + f"; p-values identical: {all_same}")  # fmt: skip
    print(f"pair looks {STATS['looks']}, stopped at their aims {STATS['stopped']}, pair_terms without an overlap (a trial's exact doublet terms, or a whole exact statistic) {STATS['exact_terms']} times")  # fmt: skip
    return 0 if all_same and STATS["looks"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
