"""overlap_bounds of the working tree against a git revision's, alternated in one process.

The background trials bound every trial neutrino's S_i with
``kernels.density_bounds.overlap_bounds`` (one disc far from the map, the nested discs
near it): a few per cent of an event's CPU on compact maps, a fifth to a third on wide
ones. This bench times that one call on what the trials give it (the 12,800 or so
neutrinos of 2,000 background lists drawn as ``trial_pvalues`` draws them, with their
``enough``), and on the same neutrinos all through the nested discs and all through
the single disc, with the working tree's kernel and ``--against REV``'s in turn (which
goes first alternating), CPU per call; it prints the medians and the median of the
per-pair ratios (pairs run back to back share the machine's load, which moves single
timings by 2x here), and whether both gave the same arrays bit for bit.

Run: ``python bench/bench_overlap_bounds.py --against HEAD~1 [--maps bbh-6,bns-9]
[--pairs 30]``. Exits 1 if any result differs.

Both copies of the kernel run in this one process, and that is fair here:
``overlap_bounds`` takes plain arrays and numbers, no tuple, so neither copy meets the
bias bench/README.md describes for ``kernels.overlap`` (Numba types a tuple by its
items, and a second copy's prepared map then went through Python ``typeof`` on every
call). Checked: the same code on both sides (``--against HEAD`` on a clean tree, 10
pairs, load 0.6) read 0.96-1.02 on every map and call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from numba import set_num_threads  # noqa: E402

from kernels import density_bounds as KB  # noqa: E402
from llama.science.background_trials import _ENOUGH, BackgroundTrials, SkyBounds  # noqa: E402
from llama.science.odds import EventModel  # noqa: E402
from llama.science.pvalue import _background_draws, _sample_terms  # noqa: E402
from llama.science.signal_tables import SINDEC_EDGES  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from revisions import module_at  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "bayestar"
LOCAL = ROOT / "tests" / "data" / "bayestar"


def kernel_at(rev: str):
    """``kernels/density_bounds.py`` of git revision ``rev`` as the module
    ``kernels.density_bounds_base`` (its relative imports from the working tree's
    kernels package; kept by ``bench/revisions.py`` with its own Numba cache)."""
    return module_at(rev, "kernels/density_bounds.py", "kernels.density_bounds_base")


def calls(directory: Path, name: str, seed: int):
    """(label, arguments of overlap_bounds) for one map's 2,000 background trials."""
    info = json.loads((directory / "events.json").read_text())[name]
    model = EventModel(
        read_sky_map(directory / f"{name}.fits"), float(info["network_snr"]),
        float(info["distmean_mpc"]), info["population"], t_gw_mjd=float(info["mjd_obs"]),
    )  # fmt: skip
    sky = SkyBounds(model.skymap)
    pool = _sample_terms(model, model.background)
    lists, pick = _background_draws(model.background)(np.random.default_rng(seed), 2000)
    bt = BackgroundTrials(model, [0.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    rows = np.ascontiguousarray(bt.pool_rows(model.background, pool)[pick])
    ra, dec, sigma = (np.radians(a) for a in lists[:3])
    unit, _ = bt._units(lists[4], lists[5], pool.density[pick])
    with np.errstate(divide="ignore", invalid="ignore"):
        used = np.nan_to_num(np.where(unit > 0, _ENOUGH * bt.cut / unit, np.inf), nan=0.0)
    for label, enough in (("as used", used), ("all nested", np.zeros(ra.size)), ("one disc", np.full(ra.size, np.inf))):  # fmt: skip
        yield label, (*sky._pyramid, sky.rows, sky.peak, ra, dec, sigma, rows, SINDEC_EDGES, model.psf_kind, enough)  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", required=True, metavar="REV")
    ap.add_argument("--maps", default="bbh-6,bns-9,bbh-10,bns-0")
    ap.add_argument("--pairs", type=int, default=30, help="old/new pairs per call")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    set_num_threads(1)
    base = kernel_at(args.against)
    directory = SHARED if (SHARED / "events.json").exists() else LOCAL
    print(f"overlap_bounds, this tree (new) against {args.against} (old); CPU per call, "
          f"{args.pairs} pairs; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'map':7s} {'call':10s} {'n':>6s} {'old ms':>7s} {'new ms':>7s} {'new/old':>8s} {'q25':>6s} {'q75':>6s}  same")  # fmt: skip
    ok = True
    for name in args.maps.split(","):
        if not (directory / f"{name}.fits").exists():
            continue
        for label, a in calls(directory, name, args.seed):
            same = all(np.array_equal(x, y) for x, y in zip(KB.overlap_bounds(*a), base.overlap_bounds(*a), strict=True))  # fmt: skip
            ok &= same
            t = {KB: [], base: []}
            ratio = []
            for k in range(args.pairs):
                for mod in (KB, base) if k % 2 == 0 else (base, KB):
                    t0 = time.process_time()
                    mod.overlap_bounds(*a)
                    t[mod].append(time.process_time() - t0)
                ratio.append(t[KB][-1] / t[base][-1])
            print(
                f"{name:7s} {label:10s} {a[7].size:6d} {np.median(t[base]) * 1e3:7.2f} "
                f"{np.median(t[KB]) * 1e3:7.2f} {np.median(ratio):8.3f} "
                f"{np.percentile(ratio, 25):6.3f} {np.percentile(ratio, 75):6.3f}  {same}",
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
