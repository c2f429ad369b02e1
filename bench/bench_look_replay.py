"""The overlap kernels' calls of real background significances, replayed on this tree's
kernels and on an older commit's in one process: what a kernel change costs per call.

The calls are recorded from ``trial_pvalues`` at the default 2,000 background trials
on the events of ``bench_looks.py`` (event k: map k mod the sorted maps, list seed
8 + k, trial seed k; default the 6 hard maps): every ``psf_overlap_targets``,
``psf_overlap_prepared``, ``psf_pair_overlap_targets`` and
``psf_pair_overlap_prepared`` with its arguments, and the maps prepared for them. Each
call is then run once untimed and ``--rounds`` times timed on each side: this
tree's ``kernels/overlap/`` and the one ``--against`` had, both loaded alike as
packages of their own (``bench_looks.kernels_at``: their own Numba caches) with their
own prepared maps, which side goes first alternating per call and per
round. Per kernel function: calls, CPU of each side (process_time, summed over the
rounds), the ratio then/now and the largest relative difference of their results
(0 where the kernels compute the same numbers). One Numba thread.

Run: ``python bench/bench_look_replay.py --against REV [--events 48] [--maps ...]
[--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
from numba import set_num_threads  # noqa: E402

import kernels.overlap as KO  # noqa: E402
from llama.science.pvalue import DEFAULT_N_TRIALS, trial_pvalues  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_looks import HARD, kernels_at  # noqa: E402
from bench_trials import LOCAL, SHARED, observed_event  # noqa: E402

CALLS = ("psf_overlap_targets", "psf_overlap_prepared", "psf_pair_overlap_targets", "psf_pair_overlap_prepared")  # fmt: skip
PREPARE = ("prepare_map", "prepare_map_flat")


def record(events: int, maps: set[str]):
    """(calls, maps prepared): the kernel calls of the events' significances, each
    (function name, args, kwargs), and per prepared map's id (function name, args)."""
    calls: list = []
    prepared: dict = {}
    originals = {name: getattr(KO, name) for name in CALLS + PREPARE}

    def recording(name):
        f = originals[name]

        def inner(*a, **k):
            out = f(*a, **k)
            if name in PREPARE:
                prepared[id(out)] = (name, a, k, out)
            else:
                calls.append((name, a, k))
            return out

        return inner

    where = SHARED if (SHARED / "events.json").exists() else LOCAL
    names = sorted(json.loads((where / "events.json").read_text()))
    names = [m for m in names if (where / f"{m}.fits").exists()]
    for name in originals:
        setattr(KO, name, recording(name))
    try:
        for k in range(events):
            name = names[k % len(names)]
            if name not in maps:
                continue
            model, obs = observed_event(where, name, k)
            trial_pvalues(model, obs, DEFAULT_N_TRIALS, seed=k)
    finally:
        for name, f in originals.items():
            setattr(KO, name, f)
    return calls, prepared


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="commit of the older kernels/overlap")
    ap.add_argument("--events", type=int, default=48, help="events drawn (k = 0 .. N - 1)")
    ap.add_argument("--maps", default=HARD, help="record only the events on these maps")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    set_num_threads(1)
    # both sides loaded alike (the tree's own kernels.overlap ran faster than either
    # copy: against the same code as "then", 1.07-1.5x per function, 1.13x in all)
    now = kernels_at(None, "kernels.overlap_now")
    then = kernels_at(args.against)
    calls, prepared = record(args.events, set(args.maps.split(",")))
    maps = {"now": {}, "then": {}}  # the maps prepared by each side's kernels
    for key, (name, a, k, _) in prepared.items():
        for which, mod in (("now", now), ("then", then)):
            maps[which][key] = getattr(mod, name)(*a, **k)
    cpu = {}
    diff = {}
    for r in range(-1, args.rounds):  # round -1 untimed: each side loads its compiled code
        for i, (name, a, k) in enumerate(calls):
            sides = tuple((w, m, (maps[w][id(a[0])], *a[1:])) for w, m in (("now", now), ("then", then)))  # fmt: skip
            outs = {}
            for which, mod, aa in sides if (i + r) % 2 else sides[::-1]:
                f = getattr(mod, name)
                t0 = time.process_time()
                outs[which] = f(*aa, **k)
                entry = cpu.setdefault(name, {"now": 0.0, "then": 0.0, "n": 0})
                if r >= 0:
                    entry[which] += time.process_time() - t0
            if r < 0:
                for x, y in zip(outs["now"], outs["then"], strict=True):
                    x, y = np.asarray(x, float), np.asarray(y, float)
                    d = np.abs(x - y) / np.maximum(np.abs(y), 1e-300)
                    diff[name] = max(diff.get(name, 0.0), float(d.max()) if d.size else 0.0)
    print(f"{len(calls)} calls recorded, {args.rounds} rounds each side, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'function':26s} {'calls':>6s} {'then ms':>9s} {'now ms':>9s} {'then/now':>8s} {'max rel diff':>12s}")  # fmt: skip
    tot = [0.0, 0.0]
    for name in CALLS:
        if name not in cpu:
            continue
        e = cpu[name]
        tot[0] += e["then"]
        tot[1] += e["now"]
        n = sum(c[0] == name for c in calls)
        print(f"{name:26s} {n:6d} {e['then'] * 1e3:9.1f} {e['now'] * 1e3:9.1f} {e['then'] / e['now']:7.3f}x {diff[name]:12.2e}")  # fmt: skip
    print(f"{'all':26s} {len(calls):6d} {tot[0] * 1e3:9.1f} {tot[1] * 1e3:9.1f} {tot[0] / tot[1]:7.3f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
