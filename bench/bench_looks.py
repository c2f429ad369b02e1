"""Background significances, this tree's BackgroundTrials against an older one's, in one
process: where their kernel looks go.

The same events as ``bench_trials.py --per-event`` and ``bench_realistic.py`` (event
k: map k mod the sorted maps of ``events.json``, list seed 8 + k, trial seed k), each
through ``trial_pvalues`` at the default 2,000 background trials twice in turn: with
``llama/science/background_trials.py`` as commit ``--against`` had it (loaded from git
under another module name; the kernels are this tree's) and as the tree has it, which
goes first alternating per event and per round over the maps. Per event: CPU of each,
whether the p-values (the event's and each neutrino's) are identical, and for this
tree's the kernel looks' share (number of neutrino looks, the share that stopped at
their aims, their CPU), its pair looks (``psf_pair_overlap_targets``: number, stopped
at their aims, CPU) and the doublet terms' CPU (``pair_terms``, exact or with the
looks' S_ij). One Numba thread: CPU per event is per core, whatever the load (printed).

``--kernels REV``: the "then" side also runs the overlap kernels (``kernels/overlap/``)
as commit REV had them, loaded as the package ``kernels.overlap_then`` (its own Numba
cache, kept between runs under the temporary directory) and put in place of
``kernels.overlap`` for that side's calls, each side with its own prepared maps: with
``--against HEAD`` the cost of a kernel change alone. A loaded copy ran slower than the
tree's own package on the same code (1.17x on 16 events): for the kernels' ratio,
``bench_look_replay.py`` loads both sides alike.

Run: ``python bench/bench_looks.py [--against c98c948] [--kernels REV] [--events 48]
[--maps bbh-0,bbh-3,...]`` (the default maps: the 6 whose 2,000 trials took over
100 ms before the aimed looks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

# one Numba thread by set_num_threads(1) in main, not NUMBA_NUM_THREADS here: other
# benches and their tests import this module, and must keep their Numba configuration
from numba import set_num_threads  # noqa: E402

import kernels.overlap as KO  # noqa: E402
import llama.science.background_trials as tree_bt  # noqa: E402
from llama.science.odds import EventModel  # noqa: E402
from llama.science.pvalue import DEFAULT_N_TRIALS, trial_pvalues  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import revisions  # noqa: E402
from bench_trials import LOCAL, SHARED, observed_event  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HARD = "bbh-0,bbh-3,bbh-6,bbh-10,bns-5,bns-9"


def module_at(rev: str):
    """``llama/science/background_trials.py`` as commit ``rev`` had it, as a module."""
    return revisions.module_at(
        rev, "llama/science/background_trials.py", "llama.science.background_trials_then"
    )


def kernels_at(rev: str | None, name: str = "kernels.overlap_then"):
    """``kernels/overlap/`` as commit ``rev`` had it (None: as this tree has it), as the
    package ``name`` (its relative imports reach this tree's ``kernels``), kept by
    ``bench/revisions.py`` with its own Numba cache."""
    return revisions.package_at(rev, "kernels/overlap", name)


def counted(cls, name: str, tally: dict, key: str, count=None):
    """Wrap ``cls.name`` to add its CPU (and ``count(result)``) to ``tally[key]``."""
    f = getattr(cls, name)

    def inner(*a, **k):
        t0 = time.process_time()
        out = f(*a, **k)
        entry = tally.setdefault(key, [0.0, 0, 0])
        entry[0] += time.process_time() - t0
        if count is not None:
            n, m = count(out)
            entry[1] += n
            entry[2] += m
        return out

    setattr(cls, name, inner)
    return f


def significance(model, obs, seed: int):
    """(CPU [s], event p-value, per-neutrino p-values) of one significance."""
    t0 = time.process_time()
    r = trial_pvalues(model, obs, DEFAULT_N_TRIALS, seed=seed)
    return time.process_time() - t0, r.p_value, tuple(np.asarray(r.p_values_neutrino).tolist())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", default="c98c948", help="commit of the older BackgroundTrials")
    ap.add_argument("--kernels", default=None, help="commit of the then side's kernels/overlap")
    ap.add_argument("--events", type=int, default=48, help="events drawn (k = 0 .. N - 1)")
    ap.add_argument("--maps", default=HARD, help="time only the events on these maps")
    args = ap.parse_args(argv)
    set_num_threads(1)
    where = SHARED if (SHARED / "events.json").exists() else LOCAL
    names = sorted(json.loads((where / "events.json").read_text()))
    names = [m for m in names if (where / f"{m}.fits").exists()]
    maps = set(args.maps.split(","))
    then = module_at(args.against)
    kernels_then = kernels_at(args.kernels) if args.kernels else None
    now_cls = tree_bt.BackgroundTrials
    tally: dict = {}
    counted(now_cls, "_look", tally, "looks", lambda out: (out[2].size, int(np.sum(~out[2]))))
    counted(EventModel, "pair_terms", tally, "pairs")
    counted(KO, "psf_pair_overlap_targets", tally, "pair_looks", lambda out: (out[1].size, int(np.sum(out[1] >= 0.0))))  # fmt: skip
    rows = {}
    n = 0
    print(f"{'k':>3s} {'map':7s} {'then ms':>8s} {'now ms':>7s} {'same p':>6s} {'looks':>6s} {'aimed':>6s} {'looks ms':>8s} {'plooks':>6s} {'paimed':>6s} {'plook ms':>8s} {'pairs ms':>8s}")  # fmt: skip
    for k in range(args.events):
        name = names[k % len(names)]
        if name not in maps:
            continue
        model, obs = observed_event(where, name, k)
        out = {}
        runs = (("then", then.BackgroundTrials), ("now", now_cls))
        prepared = {"then": {}, "now": {}}  # each side's kernels prepare their own maps
        n += 1
        for which, cls in runs if (n + k // len(names)) % 2 else runs[::-1]:
            tree_bt.BackgroundTrials = cls  # what trial_pvalues imports
            if kernels_then is not None:
                sys.modules["kernels.overlap"] = kernels_then if which == "then" else KO
                model._prepared = prepared[which]
            try:
                trial_pvalues(model, obs, 20, seed=k)  # this model's set-up, both kinds
                tally.clear()
                out[which] = significance(model, obs, k)
                if which == "now":  # this tree's looks and doublet terms
                    now_tally = {key: list(v) for key, v in tally.items()}
            finally:
                tree_bt.BackgroundTrials = now_cls
                sys.modules["kernels.overlap"] = KO
        same = out["then"][1:] == out["now"][1:]
        looks = now_tally.get("looks", [0.0, 0, 0])
        pairs = now_tally.get("pairs", [0.0, 0, 0])
        plooks = now_tally.get("pair_looks", [0.0, 0, 0])
        rows.setdefault(name, []).append((out["then"][0], out["now"][0], same))
        print(
            f"{k:3d} {name:7s} {out['then'][0] * 1e3:8.1f} {out['now'][0] * 1e3:7.1f} {same!s:>6s} "
            f"{looks[1]:6d} {looks[2]:6d} {looks[0] * 1e3:8.1f} {plooks[1]:6d} {plooks[2]:6d} "
            f"{plooks[0] * 1e3:8.1f} {pairs[0] * 1e3:8.1f}",
            flush=True,
        )
    print(f"\nper map, {DEFAULT_N_TRIALS} background trials, CPU ms per event (load {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"{'map':7s} {'events':>6s} {'then':>7s} {'now':>7s} {'ratio':>6s} {'trials/s':>9s} same p")  # fmt: skip
    every = []
    for name, v in sorted(rows.items()):
        a, b = (1e3 * float(np.mean([x[j] for x in v])) for j in (0, 1))
        every += v
        print(f"{name:7s} {len(v):6d} {a:7.1f} {b:7.1f} {a / b:5.2f}x {DEFAULT_N_TRIALS / b * 1e3:9.0f} {all(x[2] for x in v)}")  # fmt: skip
    a, b = (1e3 * float(np.mean([x[j] for x in every])) for j in (0, 1))
    print(f"{'mean':7s} {len(every):6d} {a:7.1f} {b:7.1f} {a / b:5.2f}x {DEFAULT_N_TRIALS / b * 1e3:9.0f} {all(x[2] for x in every)}")  # fmt: skip
    return 0 if all(x[2] for x in every) else 1


if __name__ == "__main__":
    sys.exit(main())
