"""The background trials' per-map set-up, the working tree against a git revision, in one process.

What every event pays before its trials, besides the kernel looks: the map's min/max
pyramid (``kernels.density_bounds.minmax_pyramid``, the whole of ``SkyBounds.for_model``
but 0.4 ms), the map's density under each trial neutrino (``SkyBounds.density``, through
``kernels.trial_screen.density_at_table``, 2,000 trials' ~12,800 neutrinos), the cut
(``BackgroundTrials._cut``) and the exact kernel's tree of the map
(``kernels.overlap.tree.prepare_moc_arrays``, what ``prepare_map`` runs: one per event,
in ``EventModel.prepared_map``). Each is run with the working tree's code and with
``--against REV``'s (its ``kernels`` package, loaded beside as a package of its own
by ``bench/revisions.py``; its ``llama/science/background_trials.py`` for the cut), which goes
first alternating, CPU per call; printed: the medians, the median of the per-pair ratios
(pairs run back to back share the machine's load) and whether both gave the same numbers.

Run: ``python bench/bench_sky_setup.py --against HEAD~1 [--maps bbh-6,bns-9] [--pairs 20]
[--calls prepare,density] [--cold]``. Exits 1 if any result differs. ``--cold`` writes 64
MiB before each call (not timed), so that each finds the caches holding other work, as
in a run of events, where the set-up runs once per event between the trials' kernels.

The two kernels packages share this process without the one-process bias that
bench/README.md describes for ``kernels.overlap``: these kernels take plain arrays and
numbers, no tuple (the same code on both sides read 0.94-1.06 for the pyramid, 10
pairs, load 1.3-1.9; the sub-millisecond density and cut calls move more).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from numba import set_num_threads  # noqa: E402

from kernels import density_bounds as KB  # noqa: E402
from kernels import trial_screen as KS  # noqa: E402
from kernels.overlap import tree as KT  # noqa: E402
from llama.science import background_trials as BT  # noqa: E402
from llama.science.odds import EventModel  # noqa: E402
from llama.science.pvalue import _background_draws  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from revisions import module_at, package_at  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "bayestar"
LOCAL = ROOT / "tests" / "data" / "bayestar"


def at_revision(rev: str):
    """(density_bounds, trial_screen, background_trials, overlap.tree) of git revision ``rev``: its
    ``kernels`` package loaded as ``kernels_base`` (kept by ``bench/revisions.py``, its
    own Numba cache), its background_trials as a module on the working tree's llama."""
    package_at(rev, "kernels", "kernels_base")
    db = importlib.import_module("kernels_base.density_bounds")
    ts = importlib.import_module("kernels_base.trial_screen")
    bt = module_at(rev, "llama/science/background_trials.py", "background_trials_base")
    tree = importlib.import_module("kernels_base.overlap.tree")
    return db, ts, bt, tree


def alternate(new, old, pairs: int, cold: np.ndarray | None = None) -> tuple[float, float, float]:  # fmt: skip
    """(median CPU new, old [s], median of the per-pair ratios new/old); ``cold``: an
    array written before each call."""
    t_new, t_old = [], []
    for k in range(pairs):
        for f, acc in ((new, t_new), (old, t_old)) if k % 2 == 0 else ((old, t_old), (new, t_new)):  # fmt: skip
            if cold is not None:
                cold += 1.0
            t0 = time.process_time()
            f()
            acc.append(time.process_time() - t0)
    t_new, t_old = np.array(t_new), np.array(t_old)
    return float(np.median(t_new)), float(np.median(t_old)), float(np.median(t_new / t_old))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--maps", default="bbh-0,bbh-3,bbh-6,bbh-10,bns-5,bns-9")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--calls", default="pyramid,density,cut,prepare", help="which calls")
    parser.add_argument("--cold", action="store_true", help="evict the caches before each call")
    args = parser.parse_args(argv)
    set_num_threads(1)
    directory = SHARED if (SHARED / "events.json").exists() else LOCAL
    events = json.loads((directory / "events.json").read_text())
    db, ts, bt, tree = at_revision(args.against)
    cold = np.zeros(8 << 20) if args.cold else None
    print(f"the per-map set-up of the background trials, this tree (new) against {args.against} (old); CPU per call, {args.pairs} pairs; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'map':8}{'call':12}{'old ms':>8}{'new ms':>8}{'new/old':>9}  same")
    differs = False
    for name in args.maps.split(","):
        info = events[name]
        skymap = read_sky_map(directory / f"{name}.fits")
        model = EventModel(skymap, float(info["network_snr"]), float(info["distmean_mpc"]), info["population"], t_gw_mjd=float(info["mjd_obs"]))  # fmt: skip
        density = np.ascontiguousarray(skymap.probdensity, dtype=np.float64)
        order, ipix = skymap.order_ipix()
        rows = BT.GRID_ROWS
        sb = BT.SkyBounds(skymap)
        (ra, dec, *_), _ = _background_draws(model.background)(np.random.default_rng(1), 2000)
        ra, dec = np.radians(ra), np.radians(dec)
        # each side's own table (kernels.trial_screen.density_table), its dtype included
        tables = [(sb._start, sb._stop, sb._density, sb._max_order, m.density_table(sb._start, sb._stop, sb._max_order, sb._table_order), sb._table_order, ra, dec) for m in (KS, ts)]  # fmt: skip
        observed = ([10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
        new_bt, old_bt = (
            BT.BackgroundTrials(model, *observed),
            bt.BackgroundTrials(model, *observed),
        )
        pyr = (order, ipix, density, rows)
        moc = (np.ascontiguousarray(skymap.uniq, dtype=np.int64), density, np.ones_like(density))
        calls = {
            "pyramid": (partial(KB.minmax_pyramid, *pyr), partial(db.minmax_pyramid, *pyr)),
            "density": (
                partial(KS.density_at_table, *tables[0]),
                partial(ts.density_at_table, *tables[1]),
            ),  # fmt: skip
            "cut": (new_bt._cut, old_bt._cut),
            "prepare": (
                partial(KT.prepare_moc_arrays, *moc),
                partial(tree.prepare_moc_arrays, *moc),
            ),
        }
        for call, (new, old) in calls.items():
            if call not in args.calls.split(","):
                continue
            a, b = new(), old()
            a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
            same = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
            differs |= not same
            t_new, t_old, ratio = alternate(new, old, args.pairs, cold)
            print(f"{name:8}{call:12}{t_old * 1e3:8.3f}{t_new * 1e3:8.3f}{ratio:9.2f}  {same}")
    print(f"load {os.getloadavg()[0]:.1f}")
    return 1 if differs else 0


if __name__ == "__main__":
    raise SystemExit(main())
