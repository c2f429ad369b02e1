"""Scramble trials of one realistic event with fine tables at two node tolerances, same
process, same trials: what tighter nodes cost in set-up and buy in the p-value path.

Events are drawn exactly as ``bench/bench_trials.py`` draws them (its maps, 2 lists
per map, seed 2019), so ``--map bbh-3 --event 0`` is its bbh-3 list of 11 neutrinos.
Per node tolerance: the tables' set-up (CPU), their kernel evaluations, the median
share of a looked-up S_i (``_s_bounds``), the trials whose bounds hold an observed
value, the exact kernel's entries in ``decide_batch`` and its CPU (one Numba thread,
timings alternated between the tolerances, the best of ``--repeats`` kept). The
decided trials of both are checked against each other (both are the exact method's
counts: every decided side must agree) and, on the first 2,000, against the exact
statistic at every observed value above the cut.

Run: ``python bench/bench_scrambles.py [--map bbh-3] [--event 0] [--trials 20000]
[--node-rtol 1e-3,1e-4] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_trials as BT  # noqa: E402
from numba import set_num_threads  # noqa: E402

from kernels import ra_lookup as KR  # noqa: E402
from llama.science.fast_trials import ScrambleTrials  # noqa: E402
from llama.science.pvalue import scramble_sampler  # noqa: E402
from llama.science.sim import simulate_background_neutrinos  # noqa: E402
from llama.science.times import mjd_to_gps  # noqa: E402

MAPS = "bns-0,bns-1,bns-7,bbh-2,bbh-6,bbh-3"


def draw_event(directory: Path, target: str, index: int, seed: int = 2019):
    """(model, mjd, neutrinos, trial seed) of bench_trials.py's event ``index`` of map
    ``target`` (the same generator, the same order of draws)."""
    rng = np.random.default_rng(seed)
    events = json.loads((directory / "events.json").read_text())
    for name in MAPS.split(","):
        mjd = float(events[name]["mjd_obs"])
        for k in range(2):
            nl = simulate_background_neutrinos(rng, mjd)
            trial_seed = int(rng.integers(2**31))
            if name == target and k == index:
                model, mjd = BT.load_event(directory, name)
                return model, mjd, nl, trial_seed
    raise SystemExit(f"no event {index} of map {target!r} among {MAPS}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--map", default="bbh-3")
    ap.add_argument("--event", type=int, default=0)
    ap.add_argument("--trials", type=int, default=20000)
    ap.add_argument("--node-rtol", default="1e-3,1e-4")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    set_num_threads(1)
    directory = BT.SHARED if (BT.SHARED / "events.json").exists() else BT.LOCAL
    model, mjd, nl, seed = draw_event(directory, args.map, args.event)
    obs = model.evaluate(nl, float(mjd_to_gps(mjd)))
    zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
    lists = (obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen)
    n = obs.ra.size
    trials = scramble_sampler(*lists)(np.random.default_rng(seed), args.trials)
    ra = trials[0]
    print(f"{args.map} event {args.event}: {n} neutrinos, {args.trials} trials; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    cases = {}
    for r in (float(x) for x in args.node_rtol.split(",")):
        c0 = time.process_time()
        st = ScrambleTrials(model, *lists, node_rtol=r)
        setup = time.process_time() - c0
        t_event, t_nu = st.thresholds(obs.ra, obs.odds, obs.odds_ratio)
        thr = np.append(t_nu, t_event)
        b = st.bounds(ra)
        t = np.sort(thr[~np.isnan(thr)])
        held = (np.searchsorted(t, b.hi, side="right") > np.searchsorted(t, b.lo, side="left")) & (b.lo < b.hi)  # fmt: skip
        _, share = KR.ring_lookup_shared(st.node_offsets, st.phi, *st._cubics, st._share, np.radians(ra))  # fmt: skip
        parts = BT.scramble_parts(st, thr, ra)
        cases[r] = dict(st=st, thr=thr, setup=setup, held=int(held.sum()), share=float(np.median(share)), parts=parts, cpu=[])  # fmt: skip
    for _ in range(args.repeats):  # alternated: the machine is shared
        for c in cases.values():
            c0 = time.process_time()
            c["decided"] = c["st"].decide_batch(c["thr"], ra)
            c["cpu"].append(time.process_time() - c0)
    # the exact statistic of the first trials, against both
    m_exact = min(args.trials, 2000)
    fixed = model.background_terms(zen, lists[3])
    bg = type(fixed)(*(np.tile(a, m_exact) for a in fixed))
    exact = model.evaluate_batch(*(a[: n * m_exact] for a in trials[:6]), trials[6][: m_exact + 1], background_terms=bg).odds  # fmt: skip
    print(f"{'node rtol':>9s} {'setup s':>8s} {'nodes':>6s} {'share':>8s} {'held':>5s} {'entries':>7s} {'kernel s':>8s} {'cpu s':>7s} {'trials/s':>9s} {'wrong':>5s}")  # fmt: skip
    first = None
    conflicts = 0
    for r, c in cases.items():
        st, d, p = c["st"], c["decided"], c["parts"]
        obs_t = c["thr"][(c["thr"] >= st.exact_above()) & np.isin(c["thr"], np.append(obs.odds_ratio, obs.odds))]  # fmt: skip
        lo, hi = d.lo[:m_exact], d.hi[:m_exact]
        wrong = sum(int(np.sum((lo > x) != (exact > x)) + np.sum((hi < x) != (exact < x))) for x in obs_t)  # fmt: skip
        cpu = min(c["cpu"])
        print(f"{r:9.0e} {c['setup']:8.2f} {st.n_nodes:6d} {c['share']:8.2e} {c['held']:5d} {p['entries']:7d} {p['singles']:8.3f} {cpu:7.3f} {args.trials / cpu:9.0f} {wrong:5d}")  # fmt: skip
        if first is None:
            first = (c["thr"], d)
        else:  # both decide each trial as the exact statistic does: never opposite sides
            a = first[1]
            conflicts += sum(int(np.sum(((a.lo > x) & (d.hi < x)) | ((a.hi < x) & (d.lo > x)))) for x in obs_t)  # fmt: skip
    print(f"trials decided on opposite sides by the two (all {args.trials}): {conflicts}; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    return 0 if conflicts == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
