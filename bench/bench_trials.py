"""Benchmark of on-the-fly trials on realistic events: fast against exact, same process.

Claims measured (issue 8, items 1-2), one thread (one core):

* scramble trials decided by bounds from RA lookup tables
  (``llama.science.fast_trials.ScrambleTrials``): >= 100,000 trials/s per core,
  counts (hence p-values) identical to the exact statistic's above the cut;
* background-kind trials (new Poisson lists over the whole sky) decided by bounds
  (``llama.science.background_trials.BackgroundTrials``): >= 20,000 trials/s per core,
  counts identical to the exact statistic's above the cut (the screened statistic,
  ``screened_model``, it replaced is timed beside it).

Events: BAYESTAR maps (``/work/shared/data/bayestar``, else the 4 copies in
``tests/data/bayestar``) with the SNR, distance, time and population of their
``events.json``, each with IceCube-like lists from ``llama.science.sim`` (Poisson(6.4)
in 1,000 s, sigma log-uniform 0.2-3 deg, whole sky, energies by hemisphere).

Per event and kind, on the same trial lists: the exact ``EventModel.evaluate_batch``
and the fast evaluator; the per-event set-up (the RA tables; the screen), the rate of
the trials themselves, and end to end ``trial_pvalues`` at the default 2,000 trials
(set-up included) for both methods. Scrambles: the rate of the p-value path
(``ScrambleTrials.decide_batch``: bounds, refined where they hold an observed value)
and of the bounds from lookups alone (``bounds``), the decided trials checked against
the exact statistic at every observed value above the cut (``wrong``, must be 0), and
the resolved trials whose exact statistic lies outside their bounds (``bad``, must be
0). Accuracy of the background's fast statistic: the largest |O_fast - O_exact| / O_exact over trials
above 100x the floor, and the number of trials outside 1% + floor (must be 0).

Scrambles also give the CPU of ``decide_batch`` (one Numba thread: trials per CPU
second are per core, whatever the machine's load; wall and CPU each the best of 3
runs) and where it goes, from a further
run with its steps wrapped (``cpu:`` lines): bounds from lookups, the exact kernel on
single neutrinos, the pair kernel's looks at doublets, whole lists, and the trials
holding an observed value after the lookups' bounds and after the pyramid's pair
bounds.

Run: ``python bench/bench_trials.py [--maps bns-1,bbh-2,...] [--events 2] [--trials 20000]
[--kinds scramble,background] [--per-event N] [--only bbh-6,bbh-3]`` (``--only``: the
same events as the whole run gets, for those maps only).
Prints a table and a final ratio table; exits 1 when a goal is missed.

``--per-event N`` (background lists) adds what the significance of an event costs, as
``bench_realistic.py`` draws its events (event k: map k mod the maps of
``events.json``, sorted; list seed 8 + k): CPU of ``trial_pvalues`` at the default
2,000 trials (fresh pyramid, set-up included) and of its ``decide_batch``, per map and
the mean over the N events (the issue's 50 events/s on 2 cores is 40 ms of CPU per
event in all). ``--held K`` (with ``--per-event``) adds, for the first K of those events
with observed values above the cut, the trials whose bounds hold one (each needs a
kernel look) and how many trial x observed-value pairs bounds within a factor f of
every neutrino's exact O_i would still hold (what tighter bounds would buy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from numba import set_num_threads  # noqa: E402

from kernels import odds as KO  # noqa: E402
from llama.science.background_trials import _BOUNDS, BackgroundTrials  # noqa: E402
from llama.science.fast_trials import (  # noqa: E402
    SCREEN_FLOOR,
    ScrambleTrials,
    screened_model,
)
from llama.science.odds import EventModel  # noqa: E402
from llama.science.pvalue import (  # noqa: E402
    DEFAULT_N_TRIALS,
    _background_draws,
    _sample_terms,
    scramble_sampler,
    trial_pvalues,
)
from llama.science.sim import simulate_background_neutrinos  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402
from llama.science.times import mjd_to_gps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "bayestar"
LOCAL = ROOT / "tests" / "data" / "bayestar"
GOALS = {"scramble": 100_000.0, "background": 20_000.0}
#: Timings of a scramble decide_batch per case, the best kept (wall and CPU apart).
SCRAMBLE_REPEATS = 3


def load_event(directory: Path, name: str):
    info = json.loads((directory / "events.json").read_text())[name]
    skymap = read_sky_map(directory / f"{name}.fits")
    mjd = float(info["mjd_obs"])
    model = EventModel(
        skymap, float(info["network_snr"]), float(info["distmean_mpc"]), info["population"],
        t_gw_mjd=mjd,
    )  # fmt: skip
    return model, mjd


def observed_event(directory: Path, name: str, k: int):
    """The benches' realistic event k on map ``name``: (model, its observed statistic) of
    the IceCube-like list drawn with seed 8 + k (bench_looks, bench_look_replay and
    bench_realistic use the same events)."""
    model, mjd = load_event(directory, name)
    nl = simulate_background_neutrinos(np.random.default_rng(8 + k), mjd)
    return model, model.evaluate(nl, float(mjd_to_gps(mjd)))


def accuracy(fast, exact, floor):
    """(largest relative error above 100x floor, trials outside 1% + floor)."""
    fin = np.isfinite(exact)
    err = np.abs(fast - exact)
    bad = int(np.sum(~(err[fin] <= 1e-2 * exact[fin] + floor[fin]))) + int(
        np.sum(np.isinf(fast) != np.isinf(exact))
    )
    above = fin & (exact > 100 * floor)
    worst = float(np.max(err[above] / exact[above])) if above.any() else 0.0
    return worst, bad, int(above.sum())


def timed(f, *args, **kwargs):
    t0 = time.perf_counter()
    out = f(*args, **kwargs)
    return out, time.perf_counter() - t0


def scramble_case(model, mjd, nl, n_trials, seed):
    """Scrambles of ``nl``: the exact statistic, the bounds from lookups alone
    (``ScrambleTrials.bounds``, ``stat/s``) and the p-value path (``decide_batch``:
    bounds, refined where they hold an observed value) on the same trials; counts above
    each resolved observed value compared (``wrong``), and the resolved trials whose
    ranked statistic (exact, at least the cut) lies outside their bounds counted
    (``bad``)."""
    obs = model.evaluate(nl, float(mjd_to_gps(mjd)))
    zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
    lists = (obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen)
    n = lists[0].size
    st, setup = timed(ScrambleTrials, model, *lists)
    trials = scramble_sampler(*lists)(np.random.default_rng(seed), n_trials)
    fixed = model.background_terms(zen, lists[3])
    m_exact = min(n_trials, 2000)
    bg = type(fixed)(*(np.tile(a, m_exact) for a in fixed))
    exact, t_exact = timed(model.evaluate_batch, *(a[: n * m_exact] for a in trials[:6]), trials[6][: m_exact + 1], background_terms=bg)  # fmt: skip
    bounds, t_bounds = timed(st.bounds, trials[0])
    t_event, t_nu = st.thresholds(obs.ra, obs.odds, obs.odds_ratio)
    thresholds = np.append(t_nu, t_event)
    t_decided = cpu = np.inf
    for _ in range(SCRAMBLE_REPEATS):  # the best of a few: the machine is shared
        cpu0 = time.process_time()  # one Numba thread: the process's CPU is the core's
        decided, wall = timed(st.decide_batch, thresholds, trials[0])
        cpu = min(cpu, time.process_time() - cpu0)
        t_decided = min(t_decided, wall)
    parts = scramble_parts(st, thresholds, trials[0])
    r = bounds.resolved[:m_exact]
    e = exact.odds
    h = np.maximum(e, st.cut)  # what a resolved trial ranks by
    bad = int(np.sum(r & ~((bounds.lo[:m_exact] <= h) & (h <= bounds.hi[:m_exact]))))
    with np.errstate(divide="ignore", invalid="ignore"):  # the bounds' relative half-width
        width = 0.5 * (bounds.hi[:m_exact] - bounds.lo[:m_exact])[r] / h[r]
    # the decided counts against the exact ones, at every observed value above the cut
    lo, hi = decided.lo[:m_exact], decided.hi[:m_exact]
    exact_t = thresholds[(thresholds >= st.exact_above()) & np.isin(thresholds, np.append(obs.odds_ratio, obs.odds))]  # fmt: skip
    wrong = sum(int(np.sum((lo > t) != (e > t)) + np.sum((hi < t) != (e < t))) for t in exact_t)  # fmt: skip
    return {
        "n": n,
        "setup_s": setup,
        "nodes": st.n_nodes,
        "exact_rate": m_exact / t_exact,
        "stat_rate": n_trials / t_bounds,
        "fast_rate": n_trials / t_decided,
        "cpu_rate": n_trials / cpu,
        "parts": parts,
        "refined": decided.n_refined,
        "n_exact_t": exact_t.size,
        "event_exact": bool(t_event == obs.odds and t_event >= st.exact_above()),
        "wrong": wrong,
        "worst": float(np.median(width[np.isfinite(width)])) if r.any() else 0.0,
        "bad": bad,
        "above": int(r.sum()),
    }


def scramble_parts(st, thresholds, ra_deg) -> dict:
    """Where a scramble ``decide_batch`` spends its CPU, from a second run with its
    steps wrapped: bounds from lookups (``_bounds``), trials holding an observed value
    after them (``held``) and after the pyramid's pair bounds (``held_pairs``), the
    exact kernel on single neutrinos (entries, CPU), the pair kernel's looks at doublet
    terms (calls, CPU) and whole lists evaluated (CPU)."""
    out = dict.fromkeys(("bounds", "singles", "pairs", "whole", "all"), 0.0)
    out.update(entries=0, pair_calls=0, held=0, held_pairs=0)
    model = st.model

    def wrap(obj, name, key, count=None):
        f = getattr(obj, name)

        def inner(*a, **k):
            t0 = time.process_time()
            res = f(*a, **k)
            out[key] += time.process_time() - t0
            if count:
                out[count] += np.size(a[0]) if count == "entries" else 1
            return res

        setattr(obj, name, inner)

    def holding(lo, hi):
        t = np.sort(thresholds[~np.isnan(thresholds)])
        return int(np.sum((np.searchsorted(t, hi, side="right") > np.searchsorted(t, lo, side="left")) & (lo < hi)))  # fmt: skip

    tighten = st._tighten_pairs

    def counted(ra, trials, lo, hi, *a):
        out["held"] += trials.size
        res = tighten(ra, trials, lo, hi, *a)
        out["held_pairs"] += holding(lo[trials], hi[trials])
        return res

    wrap(st, "_bounds", "bounds")
    wrap(model, "signal_overlap", "singles", "entries")
    wrap(st, "_pair_parts", "pairs", "pair_calls")
    wrap(st, "_exact", "whole")
    st._tighten_pairs = counted
    try:
        t0 = time.process_time()
        st.decide_batch(thresholds, ra_deg)
        out["all"] = time.process_time() - t0
    finally:
        for obj, name in ((st, "_bounds"), (model, "signal_overlap"), (st, "_pair_parts"), (st, "_exact"), (st, "_tighten_pairs")):  # fmt: skip
            del obj.__dict__[name]
    return out


def background_case(model, mjd, nl, n_trials, seed):
    """Background lists: the exact statistic, the screened statistic (``stat/s``) and
    the p-value path (``BackgroundTrials.decide_batch``: bounds, refined where they
    hold an observed value) on the same trials; counts above each observed value at
    or above the cut compared with the exact statistic's."""
    obs = model.evaluate(nl, float(mjd_to_gps(mjd)))
    zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
    draw = _background_draws(model.background)
    pool = _sample_terms(model, model.background)
    lists, pick = draw(np.random.default_rng(seed), n_trials)
    bg = type(pool)(*(a[pick] for a in pool))
    _BOUNDS.pop(model, None)  # a fresh pyramid: its build is timed with the set-up
    bt, setup = timed(BackgroundTrials, model, obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen, obs.azimuth)  # fmt: skip
    t_event, t_nu = bt.thresholds(obs.ra, obs.odds, obs.odds_ratio)
    thresholds = np.append(t_nu, t_event)
    decided, t_decided = timed(bt.decide_batch, thresholds, *lists, background_terms=bg, sample_index=pick)  # fmt: skip
    m_exact = min(n_trials, 2000)
    k = lists[6][m_exact]
    sub_bg = type(bg)(*(a[:k] for a in bg))
    exact, t_exact = timed(model.evaluate_batch, *(a[:k] for a in lists[:6]), lists[6][: m_exact + 1], background_terms=sub_bg)  # fmt: skip
    fast_model = screened_model(model)  # the screened statistic, on the exact's trials
    fast, t_fast = timed(fast_model.evaluate_batch, *(a[:k] for a in lists[:6]), lists[6][: m_exact + 1], background_terms=sub_bg)  # fmt: skip
    t = exact.terms
    s_floor = SCREEN_FLOOR * model.skymap.probdensity.max() * model.tables.dec_rows(t["energy_eval"]).max(axis=1)  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(t["signal_overlap"] > 0, t["p_h_s1"] / t["signal_overlap"], 0.0)
        floor_i = np.nan_to_num(unit * s_floor / (t["p_h_c"] + t["p_h_0"]))
    floor = KO.segment_sum(floor_i, lists[6][: m_exact + 1])
    worst, bad, above = accuracy(fast.odds[:m_exact], exact.odds, floor)
    lo, hi = decided.lo[:m_exact], decided.hi[:m_exact]
    exact_t = thresholds[(thresholds >= bt.cut) & np.isin(thresholds, np.append(obs.odds_ratio, obs.odds))]  # fmt: skip
    wrong = sum(int(np.sum((lo > t) != (exact.odds > t)) + np.sum((hi < t) != (exact.odds < t))) for t in exact_t)  # fmt: skip
    return {
        "n": obs.ra.size,
        "setup_s": setup,
        "exact_rate": m_exact / t_exact,
        "stat_rate": m_exact / t_fast,
        "fast_rate": n_trials / t_decided,
        "refined": decided.n_refined,
        "n_exact_t": exact_t.size,
        "event_exact": bool(t_event == obs.odds and t_event >= bt.cut),
        "wrong": wrong,
        "worst": worst,
        "bad": bad,
        "above": above,
    }


def baseline_kernels(rev: str):
    """The ``kernels`` package of git revision ``rev``, imported beside the working
    tree's as its own package (``--baseline``): what the background trials' bounds call
    (density_bounds, trial_screen) at that revision, and as its ``background_trials``
    attribute that revision's llama.science.background_trials on them, for timing
    against the working tree in one process. Kept by ``bench/revisions.py`` with its own
    Numba cache."""
    import importlib

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from revisions import module_at, module_name, package_at

    name = module_name("kernels_", rev)
    package = package_at(rev, "kernels", name)
    parts = ("density_bounds", "trial_screen")
    for part in parts:
        importlib.import_module(f"{name}.{part}")
    # that revision's background_trials too, on those kernels (the overlap kernels and
    # the rest of llama are the working tree's)
    package.background_trials = module_at(
        rev, "llama/science/background_trials.py", f"{name}_background_trials",
        {f"from kernels import {part} as": f"from {name} import {part} as" for part in parts},
    )  # fmt: skip
    return package


def per_event(directory: Path, n_events: int, baseline=None) -> dict[str, list[tuple]]:
    """(CPU of trial_pvalues at 2,000 background trials, of its decide_batch) [s] per
    event, by map; events as bench_realistic.py draws them (``--per-event``). With a
    ``baseline`` kernels package (:func:`baseline_kernels`), each event also with its
    revision's background trials (on its density_bounds and trial_screen), in turn with
    the working tree's (which first alternates), each on a freshly loaded model: then
    (CPU, decide_batch CPU, baseline CPU, its decide_batch, p-values identical)."""
    import llama.science.background_trials as BT

    names = sorted(json.loads((directory / "events.json").read_text()))
    names = [m for m in names if (directory / f"{m}.fits").exists()]
    spent = [0.0]
    ours = BT.BackgroundTrials
    theirs = None if baseline is None else baseline.background_trials.BackgroundTrials
    decide = {c: c.decide_batch for c in (ours, theirs) if c is not None}

    def timed(cls):
        def timed_decide(self, *args, **kwargs):
            t0 = time.process_time()
            try:
                return decide[cls](self, *args, **kwargs)
            finally:
                spent[0] += time.process_time() - t0

        return timed_decide

    def one(k, name, trials):
        BT.BackgroundTrials = trials  # what trial_model builds
        model, obs = observed_event(directory, name, k)
        spent[0] = 0.0
        t0 = time.process_time()
        res = trial_pvalues(model, obs, DEFAULT_N_TRIALS, seed=k)
        cpu = time.process_time() - t0
        if theirs is None:
            return cpu, spent[0], None
        # the p-values that must not move: the event's and each neutrino's whose
        # observed value is at or above the cut (below it the tiers may)
        zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
        cut = ours(model, obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen, obs.azimuth).cut  # fmt: skip
        above = np.asarray(obs.odds_ratio) >= cut
        fixed = (res.p_value if obs.odds >= cut else None, tuple(np.asarray(res.p_values_neutrino)[above]))  # fmt: skip
        return cpu, spent[0], (res.p_value, tuple(res.p_values_neutrino)), fixed, bool(obs.odds >= cut or above.any())  # fmt: skip

    out: dict[str, list[tuple]] = {}
    for cls in decide:
        cls.decide_batch = timed(cls)
    try:
        for k in range(n_events):
            name = names[k % len(names)]
            if theirs is None:
                out.setdefault(name, []).append(one(k, name, ours)[:2])
                continue
            if k == 0:  # compile / load both packages' kernels outside the clock
                one(k, name, ours)
                one(k, name, theirs)
            runs = {}
            # which goes first alternates per event and per round over the maps, so
            # that each map's events get both orders
            first = (k + k // len(names)) % 2 == 0
            for which in ("ours", "theirs") if first else ("theirs", "ours"):
                runs[which] = one(k, name, ours if which == "ours" else theirs)
            a, b = runs["ours"], runs["theirs"]
            out.setdefault(name, []).append((*a[:2], *b[:2], a[2] == b[2], a[3] == b[3], a[4]))  # fmt: skip
    finally:
        for cls, f in decide.items():
            cls.decide_batch = f
        BT.BackgroundTrials = ours
    return out


def scramble_line(r, n_trials) -> str:
    """The CPU split of a scramble case (:func:`scramble_parts`), per 1,000 trials."""
    p = r["parts"]
    k = 1e3 / n_trials
    rest = p["all"] - p["bounds"] - p["singles"] - p["pairs"]
    return (
        f"{'':7s} cpu: {r['cpu_rate']:9.0f} trials/s; per 1,000 trials {p['all'] * 1e3 * k:5.1f} ms = "
        f"bounds {p['bounds'] * 1e3 * k:4.1f} + kernel on {p['entries'] * k:4.1f} singles "
        f"{p['singles'] * 1e3 * k:4.1f} + {p['pair_calls']} pair looks {p['pairs'] * 1e3 * k:4.1f} "
        f"+ other {rest * 1e3 * k:4.1f} (whole lists {p['whole'] * 1e3 * k:.1f}); held "
        f"{p['held']} ({100 * p['held'] / n_trials:.1f}%), {p['held_pairs']} after the pyramid's pair bounds"
    )


def held_by_bound_width(directory: Path, n_events: int, k_show: int, factors) -> list:
    """(event, map, values above the cut, trials held by today's bounds, pairs held
    with every exact O_i widened by each factor) for the first ``k_show`` events with
    values above the cut (``--held``)."""
    names = sorted(json.loads((directory / "events.json").read_text()))
    names = [m for m in names if (directory / f"{m}.fits").exists()]
    rows = []
    for k in range(n_events):
        if len(rows) >= k_show:
            break
        name = names[k % len(names)]
        model, obs = observed_event(directory, name, k)
        zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
        bt = BackgroundTrials(model, obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen, obs.azimuth)  # fmt: skip
        t_event, t_nu = bt.thresholds(obs.ra, obs.odds, obs.odds_ratio)
        t = np.unique(np.append(t_nu, t_event))
        t = t[t >= bt.cut]
        if t.size == 0:
            continue
        pool = _sample_terms(model, model.background)
        lists, pick = _background_draws(model.background)(np.random.default_rng(k), DEFAULT_N_TRIALS)  # fmt: skip
        bg = type(pool)(*(a[pick] for a in pool))
        free = bt.decide_batch([], *lists, background_terms=bg, sample_index=pick)
        held = sum((free.lo <= x) & (x <= free.hi) & (free.lo < free.hi) for x in t)
        o_i = model.evaluate_batch(*lists, background_terms=bg).odds_i
        pairs = []
        for f in factors:
            lo, hi = KO.segment_sum(o_i / f, lists[6]), KO.segment_sum(o_i * f, lists[6])
            pairs.append(sum(int(np.sum((lo <= x) & (x <= hi))) for x in t))
        rows.append((k, name, t.size, int(np.sum(held > 0)), pairs))
    return rows


def end_to_end(model, mjd, nl, kind, seed):
    """trial_pvalues at the default trial count, exact then fast (set-up included)."""
    obs = model.evaluate(nl, float(mjd_to_gps(mjd)))
    out = {}
    for method in ("exact", "fast"):
        res, dt = timed(trial_pvalues, model, obs, DEFAULT_N_TRIALS, kind=kind, seed=seed, method=method)  # fmt: skip
        out[method] = (DEFAULT_N_TRIALS / dt, res.p_value, res.p_values_neutrino)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--maps", default="bns-0,bns-1,bns-7,bbh-2,bbh-6,bbh-3")
    ap.add_argument("--events", type=int, default=2, help="neutrino lists per map")
    ap.add_argument("--trials", type=int, default=20000, help="fast trials timed per case")
    ap.add_argument("--seed", type=int, default=2019)
    ap.add_argument("--kinds", default="scramble,background", help="trial kinds to run")
    ap.add_argument("--only", default="", metavar="MAPS",
                    help="run only these of --maps; the lists of the others are still "
                    "drawn, so each event is the one the whole run gets")  # fmt: skip
    ap.add_argument(
        "--per-event",
        type=int,
        default=0,
        metavar="N",
        help="background: CPU per event at 2,000 trials over N events as "
        "bench_realistic.py draws them (0: skip)",
    )
    ap.add_argument("--baseline", default="", metavar="REV",
                    help="with --per-event: also time each event with the background "
                    "trials of git revision REV (llama/science/background_trials.py on its "
                    "kernels/density_bounds, trial_screen), in turn with the working "
                    "tree's, same process")  # fmt: skip
    ap.add_argument("--held", type=int, default=0, metavar="K",
                    help="with --per-event: trials held by the bounds, and by bounds within "
                    "a factor f of the exact O_i, on the first K events above the cut")  # fmt: skip
    args = ap.parse_args(argv)
    set_num_threads(1)
    kinds = [k for k in ("scramble", "background") if k in args.kinds.split(",")]
    directory = SHARED if (SHARED / "events.json").exists() else LOCAL
    names = [m for m in args.maps.split(",") if (directory / f"{m}.fits").exists()]
    print(f"maps from {directory}: {', '.join(names)}; load {os.getloadavg()[0]:.1f}; 1 thread")
    rng = np.random.default_rng(args.seed)
    rows = {"scramble": [], "background": []}
    e2e = {"scramble": [], "background": []}
    # warm-up: compile / load every kernel once, outside the clock
    model, mjd = load_event(directory, names[0])
    nl = simulate_background_neutrinos(np.random.default_rng(0), mjd)
    for kind in kinds:
        (scramble_case if kind == "scramble" else background_case)(model, mjd, nl, 200, 0)
    if "scramble" in kinds:  # every refinement step once (pair kernel, singles, exact)
        obs = model.evaluate(nl, float(mjd_to_gps(mjd)))
        zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
        lists = (obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen)
        st = ScrambleTrials(model, *lists)
        ra = scramble_sampler(*lists)(np.random.default_rng(0), 200)[0]
        st.decide_batch(st.bounds(ra).point, ra)
    print(
        "fast/s: the p-value path (bounds, refined where they hold an observed value: "
        "ScrambleTrials / BackgroundTrials.decide_batch). stat/s: the fast statistic it "
        "replaced (background: the screen), whose error 'worst rel' and 'bad' give; "
        "scrambles: the bounds from lookups alone, 'worst rel' their median relative "
        "half-width and 'bad' the resolved trials whose exact statistic lies outside them. refined: trials given the exact statistic. "
        "wrong: decided trials on the other side of an exact observed value than their "
        "exact statistic (of n_t values above the cut)."
    )
    hdr = f"{'map':7s} {'kind':10s} {'n':>2s} {'setup ms':>8s} {'exact/s':>8s} {'fast/s':>9s} {'ratio':>6s} {'stat/s':>8s} {'refined':>7s} {'wrong/n_t':>9s} {'worst rel':>9s} {'bad':>3s} {'>100 fl':>7s} {'e2e exact/s':>11s} {'e2e fast/s':>10s} {'p exact/fast':>13s}"  # fmt: skip
    print(hdr)
    only = set(args.only.split(",")) - {""}
    for name in names:
        if only and name not in only:  # draw its lists all the same (the same events after)
            mjd = float(json.loads((directory / "events.json").read_text())[name]["mjd_obs"])
            for _ in range(args.events):
                simulate_background_neutrinos(rng, mjd)
                rng.integers(2**31)
            continue
        model, mjd = load_event(directory, name)
        for _ in range(args.events):
            nl = simulate_background_neutrinos(rng, mjd)
            seed = int(rng.integers(2**31))
            for kind in kinds:
                if kind == "scramble":
                    r = dict(scramble_case(model, mjd, nl, args.trials, seed), map=name)
                else:
                    r = dict(background_case(model, mjd, nl, args.trials, seed), map=name)
                e = end_to_end(model, mjd, nl, kind, seed)
                rows[kind].append(r)
                e2e[kind].append(e)
                n = r.get("n", len(nl))
                extra = (
                    f"{r['stat_rate']:8.0f} {r['refined']:7d} {r['wrong']:4d}/{r['n_exact_t']:<4d}"
                )
                print(
                    f"{name:7s} {kind:10s} {n:2d} {r['setup_s'] * 1e3:8.0f} {r['exact_rate']:8.0f} "
                    f"{r['fast_rate']:9.0f} {r['fast_rate'] / r['exact_rate']:6.1f} {extra} {r['worst']:9.2e} "
                    f"{r['bad']:3d} {r['above']:7d} {e['exact'][0]:11.0f} {e['fast'][0]:10.0f} "
                    f"{e['exact'][1]:6.3f}/{e['fast'][1]:.3f}",
                    flush=True,
                )
                if kind == "scramble":
                    print(scramble_line(r, args.trials), flush=True)
    if args.per_event and "background" in kinds:
        base = baseline_kernels(args.baseline) if args.baseline else None
        spent = per_event(SHARED if (SHARED / "events.json").exists() else LOCAL, args.per_event, base)  # fmt: skip
        print(f"\nbackground significance per event, {DEFAULT_N_TRIALS} trials, CPU (load {os.getloadavg()[0]:.1f})")  # fmt: skip
        head = f"{'map':7s} {'events':>6s} {'ms/event':>9s} {'decide ms':>9s} {'trials/s':>9s}"
        if base is not None:
            head += f" {'base ms':>8s} {'base dec':>8s} {'new/base':>8s} {'same p':>7s} {'above cut':>9s}"
        print(
            head + (f"   (base: background trials of {args.baseline})" if base is not None else "")
        )
        every = [t for v in spent.values() for t in v]

        def line(label, v):
            ms, dec = (1e3 * float(np.mean([t[j] for t in v])) for j in (0, 1))
            text = f"{label:7s} {len(v):6d} {ms:9.1f} {dec:9.1f} {DEFAULT_N_TRIALS / ms * 1e3:9.0f}"
            if base is not None:
                b_ms, b_dec = (1e3 * float(np.mean([t[j] for t in v])) for j in (2, 3))
                same = sum(bool(t[4]) for t in v)
                fixed = sum(bool(t[5]) for t in v if t[6])
                text += f" {b_ms:8.1f} {b_dec:8.1f} {ms / b_ms:8.2f} {same:3d}/{len(v):<3d} {fixed:3d}/{sum(bool(t[6]) for t in v):<3d}"
            print(text)

        for name, v in sorted(spent.items()):
            line(name, v)
        line("mean", every)
    if args.per_event and args.held and "background" in kinds:
        factors = (1.02, 1.05, 1.1, 1.3, 2.0, 5.0, 20.0)
        where = SHARED if (SHARED / "events.json").exists() else LOCAL
        print("\ntrials held by the bounds; trial x value pairs held by every O_i within f")
        print(f"{'event':>5s} {'map':7s} {'values':>6s} {'held':>5s} " + " ".join(f"{'f=' + str(f):>7s}" for f in factors))  # fmt: skip
        for k, name, n_t, held, pairs in held_by_bound_width(where, args.per_event, args.held, factors):  # fmt: skip
            print(f"{k:5d} {name:7s} {n_t:6d} {held:5d} " + " ".join(f"{p:7d}" for p in pairs))
    print("\nratio table (medians over events; rates per core, 1 thread)")
    print(f"{'figure':48s} {'measured':>12s} {'goal':>10s}  verdict")
    ok = True
    for kind in kinds:
        fast = np.median([r["fast_rate"] for r in rows[kind]])
        exact = np.median([r["exact_rate"] for r in rows[kind]])
        worst = max(r["worst"] for r in rows[kind])
        bad = sum(r["bad"] for r in rows[kind])
        setup = np.median([r["setup_s"] for r in rows[kind]]) * 1e3
        e_fast = np.median([e["fast"][0] for e in e2e[kind]])
        e_exact = np.median([e["exact"][0] for e in e2e[kind]])
        pass_rate = fast >= GOALS[kind]
        wrong = sum(r.get("wrong", 0) for r in rows[kind])
        ok &= bool(pass_rate) and bad == 0 and wrong == 0
        print(f"{kind + ' trials/s, fast':48s} {fast:12.0f} {GOALS[kind]:10.0f}  {'PASS' if pass_rate else 'MISS'}")  # fmt: skip
        if kind == "background":  # the goal holds on every event, wide maps included
            slow = min(rows[kind], key=lambda r: r["fast_rate"])
            slow_ok = slow["fast_rate"] >= GOALS[kind]
            ok &= bool(slow_ok)
            print(f"{'background trials/s, slowest event':48s} {slow['fast_rate']:12.0f} {GOALS[kind]:10.0f}  {'PASS' if slow_ok else 'MISS'} ({slow['map']}, {slow['n']} neutrinos)")  # fmt: skip
        if kind == "scramble":  # per core: CPU seconds of the one thread
            cpu = [r["cpu_rate"] for r in rows[kind]]
            slow = min(rows[kind], key=lambda r: r["cpu_rate"])
            ok &= bool(slow["cpu_rate"] >= GOALS[kind])
            print(f"{'scramble trials/s, fast, CPU (median, slowest)':48s} {np.median(cpu):12.0f} {GOALS[kind]:10.0f}  {'PASS' if slow['cpu_rate'] >= GOALS[kind] else 'MISS'} (slowest {slow['cpu_rate']:.0f}: {slow['map']}, {slow['n']} neutrinos)")  # fmt: skip
        print(f"{kind + ' fast / exact, same trials':48s} {fast / exact:11.1f}x")
        print(f"{kind + ' set-up per event [ms]':48s} {setup:12.0f}")
        print(f"{kind + ' end to end, 2,000 trials, fast / exact':48s} {e_fast / e_exact:11.1f}x ({e_fast:.0f} vs {e_exact:.0f} trials/s)")  # fmt: skip
        if kind == "scramble":  # bounds of the exact statistic, not a statistic of their own
            print(f"{'scramble bounds: largest median half-width':48s} {worst:12.2e}")
            print(f"{'scramble resolved trials outside their bounds':48s} {bad:12d} {0:10d}  {'PASS' if bad == 0 else 'MISS'}")  # fmt: skip
        else:
            print(f"{kind + ' worst relative error above 100x floor':48s} {worst:12.2e} {0.01:10.2f}  {'PASS' if worst <= 0.01 else 'MISS'}")  # fmt: skip
            print(f"{kind + ' trials outside 1% + floor':48s} {bad:12d} {0:10d}  {'PASS' if bad == 0 else 'MISS'}")  # fmt: skip
        stat = np.median([r["stat_rate"] for r in rows[kind]])
        refined = sum(r["refined"] for r in rows[kind])
        n_t = sum(r["n_exact_t"] for r in rows[kind])
        what = "bounds alone trials/s (RA lookup)" if kind == "scramble" else "fast statistic trials/s (screen)"  # fmt: skip
        print(f"{kind + ' ' + what:48s} {stat:12.0f}")
        print(f"{kind + ' trials refined to the exact statistic':48s} {refined:12d} of {len(rows[kind]) * args.trials}")  # fmt: skip
        print(f"{kind + ' decided counts wrong (exact values)':48s} {wrong:12d} {0:10d}  {'PASS' if wrong == 0 else 'MISS'} ({n_t} observed values above the cut)")  # fmt: skip
        cut = [r["event_exact"] for r in rows[kind]]
        same = sum(int(e["exact"][1] == e["fast"][1]) for e, c in zip(e2e[kind], cut, strict=True) if c)  # fmt: skip
        print(f"{kind + ' event p identical to exact, above the cut':48s} {same:9d}/{sum(cut):<2d} ({len(cut) - sum(cut)} events below it)")  # fmt: skip
        ok &= same == sum(cut)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
