"""Calibration below the cut: background-only p-values on compact BAYESTAR maps.

On maps of a few deg^2 most background lists have no neutrino near the map, so their
statistic lies below the cut of the fast trials (``RESOLVED_FLOORS`` floors of the
kernel's resolution, docs/science.md "On-the-fly trials"), where lists are ranked by
stand-ins instead of the exact statistic: for scrambles the looked-up O_1 + D below
the cut and max(O, cut) above; for background lists s/2 (bound below the cut), c/2 +
min(s, c)/2 (bound reaches the cut, O below it) and O. The p-value stays calibrated
only if the observed list is ranked by the same deterministic function as every
trial. This bench measures it where it matters most.

Per map (default bns-0 and bns-1, 2 and 4 deg^2), ``--events`` background-only
events, each with ``--trials`` trials of both kinds (``background``, the default, and
``scramble``), the default O3 model and ``--method`` (fast by default). Observed lists
come from

- ``sim``: :func:`llama.science.sim.simulate_background_neutrinos` (an independent
  generator, as in bench_calibration.py), and
- ``sampler``: the background trials' own sampler (``pvalue._background_draws``), so
  the observed list and the background trials are exactly exchangeable: any excess
  of P(p <= a) over a is then the code's, not the generator's.

Reported: P(p <= a) for a in {0.01, 0.05, 0.1, 0.5} with binomial 1-sigma errors and
the excess over a in sigma, per map and pooled; the KS p-value against Uniform(0, 1);
the observed lists' tiers (below the cut / the middle tier / at or above it) and the
trials' share below the cut. Exit status 1 when a pooled P(p <= a) is more than 2.5
sigma above a (a in {0.05, 0.1, 0.5}).

Run: ``python bench/bench_calibration_cut.py [MAPS_DIR] [--maps bns-0,bns-1]
[--events 400] [--trials 200] [--observed sim,sampler] [--kinds background,scramble]
[--method fast|exact] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from numba import set_num_threads  # noqa: E402
from scipy import stats  # noqa: E402

import llama.science.pvalue as P  # noqa: E402
from llama.science.background import load_background_sample  # noqa: E402
from llama.science.neutrinos import NeutrinoList  # noqa: E402
from llama.science.odds import EventModel  # noqa: E402
from llama.science.signal_tables import load_signal_tables  # noqa: E402
from llama.science.sim import simulate_background_neutrinos  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402
from llama.science.times import mjd_to_gps  # noqa: E402

DEFAULT_MAPS = Path("/work/shared/data/bayestar")
LEVELS = (0.01, 0.05, 0.1, 0.5)
GOAL_LEVELS = (0.05, 0.1, 0.5)
MAX_SIGMA = 2.5
SECONDS_PER_DAY = 86400.0
TIERS = ("below", "middle", "above")


def excess(k: int, n: int, a: float) -> tuple[float, float, float]:
    """(fraction, its binomial error, (fraction - a) in sigma of Binomial(n, a))."""
    f = k / n
    err = math.sqrt(max(f * (1 - f), 1.0 / n) / n)
    return f, err, (f - a) / math.sqrt(a * (1 - a) / n)


class Spy:
    """Keeps what ``pvalue.trial_model`` built last (for its cut)."""

    def __init__(self) -> None:
        self.last = None
        self._orig = P.trial_model

    def __call__(self, *args, **kwargs):
        out = self._orig(*args, **kwargs)
        self.last = out[0]
        return out


def observed_list(source, rng, draws, mjd) -> NeutrinoList:
    """One observed background list from ``source`` ("sim" or "sampler")."""
    if source == "sim":
        return simulate_background_neutrinos(rng, mjd)
    (ra, dec, sig, en, dt, zen, _), _ = draws(rng, 1)
    order = np.argsort(dt, kind="stable")
    return NeutrinoList(
        mjd=(mjd + dt / SECONDS_PER_DAY)[order], ra=ra[order], dec=dec[order],
        sigma=sig[order], energy=en[order], zenith=zen[order], complete=True,
    )  # fmt: skip


def tier(kind: str, h: float, cut: float) -> str:
    """The observed list's tier from its ranked statistic h and the cut."""
    if h >= cut:
        return "above"
    if kind == "background" and h >= 0.5 * cut:
        return "middle"
    return "below"


def run_map(name, skymap, info, args, tables, background, seed, spy):
    mjd = float(info["mjd_obs"])
    t_gw = float(mjd_to_gps(mjd))
    model = EventModel(
        skymap, float(info["network_snr"]), float(info["distmean_mpc"]), info["population"],
        t_gw_mjd=mjd, signal_tables=tables, background=background,
    )  # fmt: skip
    draws = P._background_draws(background)
    out = {}
    for si, source in enumerate(args.observed):
        rng = np.random.default_rng([*seed, si])
        rec = {k: {"p": [], "tier": [], "trials_below": []} for k in args.kinds}
        for _ in range(args.events):
            nl = observed_list(source, rng, draws, mjd)
            obs = model.evaluate(nl, t_gw)
            trial_seed = int(rng.integers(2**31))
            for kind in args.kinds:
                res = P.trial_pvalues(model, obs, args.trials, kind=kind, seed=trial_seed, method=args.method)  # fmt: skip
                r = rec[kind]
                r["p"].append(res.p_value)
                cut = getattr(spy.last, "cut", None)
                if cut is None or res.trial_bounds is None:  # exact: no tiers
                    continue
                r["tier"].append(tier(kind, float(res.method["odds_ranked"]), cut))
                r["trials_below"].append(float(np.mean(res.trial_bounds[:, 1] < cut)))
        out[source] = rec
    return out


def report(label, p, tiers, trials_below, failed=None, key=None):
    p = np.asarray(p)
    cells = [label, str(p.size)]
    for a in LEVELS:
        f, e, z = excess(int(np.sum(p <= a)), p.size, a)
        cells.append(f"{f:.3f}±{e:.3f} ({z:+.1f}σ)")
        if failed is not None and a in GOAL_LEVELS and z > MAX_SIGMA:
            failed.append(f"{key}: P(p <= {a}) = {f:.3f} ({z:+.1f} sigma)")
    cells.append(f"{stats.kstest(p, 'uniform').pvalue:.2g}")
    if tiers:
        t = np.asarray(tiers)
        cells.append("/".join(f"{np.mean(t == x):.2f}" for x in TIERS))
        cells.append(f"{np.mean(trials_below):.2f}")
    else:
        cells += ["-", "-"]
    print(" | ".join(cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("maps_dir", nargs="?", type=Path, default=DEFAULT_MAPS)
    ap.add_argument("--maps", default="bns-0,bns-1", help="comma-separated map names (bns-0,bns-1)")  # fmt: skip
    ap.add_argument("--events", type=int, default=400, help="background-only events per map and source (400)")  # fmt: skip
    ap.add_argument("--trials", type=int, default=200, help="trials per p-value (200)")
    ap.add_argument("--observed", default="sim,sampler", help="where observed lists come from: sim, sampler (both)")  # fmt: skip
    ap.add_argument("--kinds", default="background,scramble")
    ap.add_argument("--method", choices=("fast", "exact"), default="fast")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    args.observed = [s for s in args.observed.split(",") if s]
    args.kinds = [s for s in args.kinds.split(",") if s]
    if set(args.observed) - {"sim", "sampler"} or set(args.kinds) - {"background", "scramble"}:
        raise SystemExit("--observed takes sim, sampler; --kinds background, scramble")
    set_num_threads(1)
    spy = Spy()
    P.trial_model = spy
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    tables, background = load_signal_tables(), load_background_sample()
    with open(args.maps_dir / "events.json") as f:
        events = json.load(f)
    names = [s for s in args.maps.split(",") if s]
    results = {}
    for index, name in enumerate(names):
        tm = time.perf_counter()
        skymap = read_sky_map(args.maps_dir / f"{name}.fits")
        results[name] = run_map(name, skymap, events[name], args, tables, background, [args.seed, index], spy)  # fmt: skip
        print(f"  {name}: {time.perf_counter() - tm:.1f} s", file=sys.stderr, flush=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"Maps {', '.join(names)} from {args.maps_dir}; {args.events} background-only events per map and source; {args.trials} trials ({args.method}); seed {args.seed}")  # fmt: skip
    print(f"Wall {wall:.0f} s, CPU {cpu:.0f} s, 1 thread; load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end\n")  # fmt: skip
    head = ["observed / trials / map", "N"] + [f"P(p<={a})" for a in LEVELS]
    head += ["KS p", "obs tiers below/middle/above", "trials below cut"]
    print(" | ".join(head))
    failed = []
    for source in args.observed:
        for kind in args.kinds:
            pooled = {"p": [], "tier": [], "trials_below": []}
            for name in names:
                r = results[name][source][kind]
                report(f"{source} / {kind} / {name}", r["p"], r["tier"], r["trials_below"])
                for k in pooled:
                    pooled[k].extend(r[k])
            report(f"**{source} / {kind} / pooled**", pooled["p"], pooled["tier"], pooled["trials_below"], failed, f"{source}/{kind}")  # fmt: skip
    print("\n" + ("calibrated: no pooled P(p <= a) more than 2.5 sigma above a" if not failed else "MISCALIBRATED: " + "; ".join(failed)))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
