"""Background significances with the doublet terms' pair looks aimed at each trial's
thresholds, against the exact pair looks they replace, in one process: a proposal for
``BackgroundTrials._refine`` measured before it is made.

``_refine`` (llama/science/background_trials.py) settles a trial whose doublet bounds
are its widest part with the exact ``pair_terms``: every pair of the trial through the
exact pair kernel (on the hard maps ~20% of a significance's CPU). Here that step is
replaced, by patching the method's source in this process, with pair looks aimed as
the single neutrinos' looks are (``kernels.overlap.pairs.pair_targets_serial``): each
live pair's bands are the S_ij at which its trial would still hold a threshold (the
trial's other parts at their bounds, as ``_aims`` does for a single), with the floor
and the kernels' margins of ``_look``; a look that stops gives bounds of the exact
kernel's S_ij, one that runs to the end gives it bit for bit; a trial whose looks did
not all run to the end gets the exact ``pair_terms`` when its doublets are again its
widest part. The values of the doublet terms come from ``EventModel.pair_terms`` with
the looks' S_ij (its own arithmetic: exact where the look was).

Events: ``bench_looks.py``'s (event k: map k mod the sorted maps, list seed 8 + k,
trial seed k; by default the 6 hard maps), each through ``trial_pvalues`` at 2,000
background trials with the method as committed and patched, in turn (the order
alternating per event); both compiled outside the clock. Per event: CPU of each,
whether the p-values (event and per neutrino) are identical; in all: the looks, how
many stopped at their aims, the trials that still needed the exact terms.

Run: ``python bench/bench_aimed_pairs.py [--events 48] [--narrow 0.1]
[--maps bbh-0,...]``. Exits 1 if a p-value differs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import llama.science.background_trials as BT  # noqa: E402
from kernels import odds as KO  # noqa: E402
from kernels.overlap.common import RES  # noqa: E402
from kernels.overlap.pairs import pair_targets_serial  # noqa: E402
from kernels.overlap.records import Accuracy, Heap, Neutrinos, SignalRows  # noqa: E402
from llama.science import constants as C  # noqa: E402
from llama.science.odds import EventModel  # noqa: E402
from llama.science.pvalue import trial_pvalues  # noqa: E402
from llama.science.signal_tables import SINDEC_EDGES  # noqa: E402
from llama.science.sim import simulate_background_neutrinos  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402
from llama.science.times import mjd_to_gps  # noqa: E402

BAYESTAR = Path("/work/shared/data/bayestar")
HARD = "bbh-0,bbh-10,bbh-3,bbh-6,bns-5,bns-9"
STATS = {"looks": 0, "stopped": 0, "exact_trials": 0}


def pair_looks(model, args, offsets, band_lo, band_hi, narrow):
    """(S_ij, half width) of aimed looks at the live pairs ``pair_terms`` handed its
    overlap (``args``: radians, energies, first and second members)."""
    ra, dec, sig, e1, e2, first, second = args
    acc = Accuracy(int(model.psf_kind), float(model.overlap_rtol), RES / math.sqrt(2.0))
    nu1 = Neutrinos(*(np.ascontiguousarray(a[first], dtype=np.float64) for a in (ra, dec, sig)))  # fmt: skip
    nu2 = Neutrinos(*(np.ascontiguousarray(a[second], dtype=np.float64) for a in (ra, dec, sig)))  # fmt: skip
    edges = np.ascontiguousarray(SINDEC_EDGES, dtype=np.float64)
    sig1 = SignalRows(np.ascontiguousarray(model.tables.dec_rows(e1)), edges)
    sig2 = SignalRows(np.ascontiguousarray(model.tables.dec_rows(e2)), edges)
    n = first.size
    out = (np.empty(n), np.empty(n), np.empty(n, np.int64))
    size, i = 1 << 12, 0
    while i < n:  # a heap too small: again from there with a larger one
        heap = Heap(np.empty((size, 3), np.int64), np.empty((size, 5)))
        i = pair_targets_serial(model.prepared_map(), nu1, nu2, sig1, sig2, acc, heap, offsets, band_lo, band_hi, BT.MIDPOINT_ALLOWANCE, narrow, i, n, *out)  # fmt: skip
        size *= 2
    return out[0], out[1]


def aimed_doublets(self, which, sub, idx, lists, az, bg, den, pair_lo, pair_hi, pair_open, pair_level, trial_bounds, trials, thresholds, mid, narrow):  # fmt: skip
    """The doublet step of ``_refine`` for trials ``which``: aimed looks the first time,
    the exact ``pair_terms`` the next."""
    m, r = self.model, self.model.overlap_rtol
    ra, dec, sig, energy, dt, zen = lists
    for group, aim in ((which[pair_level[which] != 0], False), (which[pair_level[which] == 0], True)):  # fmt: skip
        if group.size == 0:
            continue
        nus, off = BT._segments(sub, group)
        k = idx[nus]
        sub_bg = type(bg)(*(a[k] for a in bg))
        call = (ra[k], dec[k], sig[k], energy[k], dt[k], zen[k], az[k], sub_bg, off)
        seen = {}

        def unit(*a, seen=seen):  # pair_terms' overlap: (ra, dec, sig, e_i, e_j, i, j, key)
            seen["args"] = a[:7]
            return np.ones(a[5].size)

        first_k, coef = m.pair_terms(*call, overlap=unit) if aim else m.pair_terms(*call)
        lo_v = hi_v = coef
        done = np.ones(group.size, bool)
        if not aim:
            STATS["exact_trials"] += group.size
        elif "args" in seen:
            args = seen["args"]
            pl = args[5]
            g = k[pl]
            # the live pairs, as pair_terms found them: their value per unit S_ij
            pi, pj = KO.find_pairs(np.radians(az[k]), np.radians(zen[k]), np.radians(sig[k]), off, C.PAIR_SEPARATION_SIGMAS, KO.PAIR_O3_FLAT)  # fmt: skip
            live = np.flatnonzero(KO.pair_time_overlap(dt[k], pi, pj, C.EMISSION_HALF_WINDOW_S) > 0)  # fmt: skip
            c = coef[live] / den[g]
            list_of = np.repeat(np.arange(group.size), np.diff(off))
            tpos = group[list_of[pl]]
            o_lo, o_hi = trial_bounds(idx, sub)
            rest_lo, rest_hi = o_lo[tpos] - pair_lo[g], o_hi[tpos] - pair_hi[g]
            t = np.asarray(thresholds, dtype=np.float64)[None, :]
            with np.errstate(invalid="ignore", divide="ignore"):
                big = np.where(t >= self.cut, t, np.where(t >= mid[trials[tpos]][:, None], self.cut, np.nan))  # fmt: skip
                held = (big >= o_lo[tpos][:, None]) & (big <= o_hi[tpos][:, None])
                ok = (c > 0) & np.isfinite(c)
                cc = np.where(ok, c, 1.0)[:, None]
                lo_s = (big - rest_hi[:, None]) * (1.0 - BT._KERNEL_MARGIN * r) / cc
                hi_s = (big - rest_lo[:, None]) * (1.0 + BT._KERNEL_MARGIN * r) / cc
            held &= ok[:, None] & np.isfinite(lo_s) & np.isfinite(hi_s)
            every = ~ok
            boff = BT.offsets_from_counts(held.sum(axis=1) + every)
            blo, bhi = np.empty(boff[-1]), np.empty(boff[-1])
            row, col = np.nonzero(held)
            at = boff[row] + (np.cumsum(held, axis=1)[row, col] - 1)
            blo[at], bhi[at] = lo_s[row, col], hi_s[row, col]
            blo[boff[:-1][every]], bhi[boff[:-1][every]] = -np.inf, np.inf
            # the floor of _parts' pair bounds
            peak_g = np.minimum(BT._psf_at(0.0, args[2][pl], m.psf_kind), BT._psf_at(0.0, args[2][args[6]], m.psf_kind))  # fmt: skip
            amax = m.tables.dec_rows(args[3]).max(axis=1) * m.tables.dec_rows(args[4]).max(axis=1)
            floor = BT._KERNEL_FLOOR * self.sky.peak * peak_g * amax
            f = np.repeat(floor, np.diff(boff))
            w, half = pair_looks(m, args, boff, blo - f, bhi + f, narrow)
            exact = half < 0.0
            STATS["looks"] += pl.size
            STATS["stopped"] += int((~exact).sum())
            s_lo = np.where(exact, w, BT._below(np.maximum(w - half, 0.0) - floor, r))
            s_hi = np.where(exact, w, (np.maximum(w + half, 0.0) + floor) / (1.0 - BT._KERNEL_MARGIN * r))  # fmt: skip
            lo_v = m.pair_terms(*call, overlap=lambda *a, s=s_lo: s)[1]
            hi_v = m.pair_terms(*call, overlap=lambda *a, s=s_hi: s)[1]
            open_ = np.zeros(group.size, bool)
            np.logical_or.at(open_, list_of[pl], ~exact)
            done = ~open_
        share_lo, share_hi = lo_v / den[k][first_k], hi_v / den[k][first_k]
        pair_lo[k] = pair_hi[k] = 0.0
        np.add.at(pair_lo, k[first_k], share_lo * (1.0 - BT._HAIR))
        np.add.at(pair_hi, k[first_k], share_hi * (1.0 + BT._HAIR))
        pair_open[group[done]] = False
        pair_level[group] = 1


def patched_refine(narrow: float):
    """``BackgroundTrials._refine`` with its doublet step replaced by :func:`aimed_doublets`."""
    src = textwrap.dedent(inspect.getsource(BT.BackgroundTrials._refine))
    a, b = src.find("        if doublets.any():"), src.find("        at = np.unique(")
    opened = "pair_open = np.bincount(seg, weights=pair_hi[idx], minlength=trials.size) > 0\n"
    if a < 0 or b < 0 or "pair_open[which] = False" not in src[a:b] or opened not in src:
        raise SystemExit("BackgroundTrials._refine changed: this bench's patch no longer applies")  # fmt: skip
    src = (
        src[:a]
        + "        if doublets.any():\n"
        + "            aimed_doublets(self, np.flatnonzero(doublets), sub, idx, lists, az, bg, den, pair_lo, pair_hi, pair_open, pair_level, trial_bounds, trials, thresholds, mid, NARROW)\n"
        + src[b:]
    ).replace(opened, opened + "    pair_level = np.zeros(trials.size, dtype=np.int64)\n")
    ns = dict(vars(BT), aimed_doublets=aimed_doublets, NARROW=float(narrow))
    exec(compile(src, "<aimed _refine>", "exec"), ns)
    return ns["_refine"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=48, help="events drawn (k = 0 .. N - 1)")
    ap.add_argument("--maps", default=HARD, help="time only the events on these maps")
    ap.add_argument("--narrow", type=float, default=0.1, help="pair looks' narrow criterion")
    args = ap.parse_args(argv)
    print("before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    committed, aimed = BT.BackgroundTrials._refine, patched_refine(args.narrow)
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
    runs = (("committed", committed), ("aimed", aimed))
    for k, _, m, nl, t_gw in events[: len(maps)]:  # compiled outside the clock
        for _, f in runs:
            BT.BackgroundTrials._refine = f
            trial_pvalues(m, m.evaluate(nl, t_gw), 2000, seed=k)
    STATS.update(dict.fromkeys(STATS, 0))
    cpu = dict.fromkeys(("committed", "aimed"), 0.0)
    all_same = True
    print("  k map      committed ms  aimed ms  same p")
    try:
        for n, (k, name, m, nl, t_gw) in enumerate(events):
            res = {}
            for label, f in runs if n % 2 == 0 else runs[::-1]:
                BT.BackgroundTrials._refine = f
                obs = m.evaluate(nl, t_gw)
                t0 = time.process_time()
                r = trial_pvalues(m, obs, 2000, seed=k)
                res[label] = (time.process_time() - t0, r.p_value, np.asarray(r.p_values_neutrino))
                cpu[label] += res[label][0]
            (c, pc, qc), (a, pa, qa) = res["committed"], res["aimed"]
            same = pc == pa and np.array_equal(qc, qa, equal_nan=True)
            all_same &= same
            print(f"{k:3d} {name:8s} {1e3 * c:12.1f} {1e3 * a:9.1f}  {same}")
    finally:
        BT.BackgroundTrials._refine = committed
    n = len(events)
    print("after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"{n} events, 2,000 background trials, CPU ms per event: committed {1e3 * cpu['committed'] / n:.1f}, aimed pair looks (narrow {args.narrow}) {1e3 * cpu['aimed'] / n:.1f}, ratio {cpu['committed'] / cpu['aimed']:.3f}; p-values identical: {all_same}")  # fmt: skip
    print(f"pair looks {STATS['looks']}, stopped at their aims {STATS['stopped']}, trials that still needed the exact doublet terms {STATS['exact_trials']}")  # fmt: skip
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
