"""What each analysis option changes, measured on the README's example data.

Every pairing of an example sky map (``llama/examples/events``) with an example
neutrino list (``llama/examples/neutrinos``) is evaluated with the default model (O3's
statistic) and with each improvement of :data:`llama.science.odds.OPTIONS` switched on
alone. An event's inputs are read as the handlers read them: SNR and p_astro from
``skymap_info.json`` (population by :func:`llama.handlers.coinc.population`, p_terr
for ``null = full``), r̄ from the map's DISTMEAN header or distance layers
(``LvcDistancesJson``), the GW time from ``event_time_iso``; zenith from the list,
azimuth from the detector frame (as ``EventModel.evaluate``).

Per option it prints:

* ``changed``: fraction of pairings whose event odds differ from the default by more
  than 1% (a move to or from 0 or +inf counts as a change; 0 → 0 does not);
* ratio option/default: median, 10%/90% quantiles, minimum and maximum over pairings
  where both odds are finite and non-zero;
* ``0→>0`` / ``>0→0`` and ``inf→`` / ``→inf``: pairings moving across odds 0 or +inf;
* with ``--trials`` scramble trials per pairing (same seed for every option, so the
  trials are common random numbers): median Δp = p(option) − p(default), median |Δp|,
  the fraction with |Δp| > 0.01, and the median p of the matched injections
  (``inj-<graceid>`` on its own map).

Trials are evaluated exactly by default (``--method exact``), for every variant alike:
the fast path (the handler's default) applies to some options and not to others, and
where it does, below the screen's floor, its p-values differ from the exact ones, which
would be counted as the option's effect. The last row, ``default, fast trials``, is
the default statistic with the fast path: how far that moves p-values on the examples.

Run: ``python bench/bench_options.py [--trials 200] [--subset N] [--seed 1]
[--method exact|fast]``. Prints a table; writes nothing. The figures in README.md ("The
analysis") are from the default run (all 192 pairings, 200 trials: 5-8 min on a
loaded 2-core VM).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llama.handlers.coinc import population  # noqa: E402
from llama.science.neutrinos import NeutrinoList  # noqa: E402
from llama.science.odds import OPTIONS, EventModel  # noqa: E402
from llama.science.pvalue import trial_pvalues  # noqa: E402
from llama.science.skymap import read_sky_map  # noqa: E402
from llama.science.times import gps_to_mjd, iso_to_gps  # noqa: E402

EXAMPLES = ROOT / "llama" / "examples"
#: The variants: the default, then each improvement on its own (name, value).
VARIANTS = [("default", None)] + [(name, values[1]) for name, values in OPTIONS.items()]
#: Not an option: the default statistic with its trials on the other path (fast, the
#: handler's default, when the options are compared on exact trials; or exact).
OTHER_PATH = ("trials", "other path")


def load_events() -> list[dict]:
    """The example GW events with the inputs the handlers would read."""
    events = []
    for graceid in (EXAMPLES / "graceids.txt").read_text().split():
        folder = EXAMPLES / "events" / graceid
        info = json.loads((folder / "skymap_info.json").read_text())
        skymap = read_sky_map(folder / info["skymap_filename"])
        t_gw = float(iso_to_gps(info["event_time_iso"]))
        events.append(
            {
                "graceid": graceid,
                "skymap": skymap,
                "rho": float(info["snr"]),
                "rbar": skymap.distance_moments()[0],
                "population": population(info["p_astro"]),
                "p_terrestrial": float(info["p_astro"].get("Terrestrial", 0.0)),
                "t_gw": t_gw,
            }
        )
    return events


def load_lists() -> list[tuple[str, NeutrinoList]]:
    names = (EXAMPLES / "neutrinos.txt").read_text().split()
    return [(name, NeutrinoList.read(EXAMPLES / "neutrinos" / f"{name}.json")) for name in names]


def evaluate(events, lists, pairings, n_trials: int, seed: int, method: str = "exact"):
    """odds[variant] and p[variant], arrays over the pairings.

    Every variant's trials are evaluated by ``method``, so that the differences in p
    come from the option alone: the fast path applies to some options and not to
    others (``distance="marginal"`` is always exact), and below the screen's floor its
    p-values differ from the exact ones. The default statistic's p-values on the other
    path are kept as :data:`OTHER_PATH`.
    """
    odds = {v: np.empty(len(pairings)) for v in (*VARIANTS, OTHER_PATH)}
    pval = {v: np.full(len(pairings), np.nan) for v in (*VARIANTS, OTHER_PATH)}
    other = "fast" if method == "exact" else "exact"
    doublets = np.zeros(len(pairings), dtype=int)  # neutrinos with a pair term (default)
    by_event: dict[int, list[int]] = {}
    for k, (e, _) in enumerate(pairings):
        by_event.setdefault(e, []).append(k)
    for e, ks in by_event.items():
        ev = events[e]
        for variant in VARIANTS:
            name, value = variant
            model = EventModel(
                ev["skymap"],
                ev["rho"],
                ev["rbar"],
                ev["population"],
                t_gw_mjd=float(gps_to_mjd(ev["t_gw"])),
                p_terrestrial=ev["p_terrestrial"],
                **({} if name == "default" else {name: value}),
            )
            for k in ks:
                observed = model.evaluate(lists[pairings[k][1]][1], ev["t_gw"])
                odds[variant][k] = observed.odds
                if name == "default":
                    doublets[k] = int(np.count_nonzero(observed.p_h_s2))
                if n_trials:
                    # One seed per pairing, shared by every variant: the differences in p
                    # come from the statistic, not from different trials.
                    trials = trial_pvalues(
                        model, observed, n_trials, "scramble", seed + k, method=method
                    )
                    pval[variant][k] = trials.p_value
                    if name == "default":
                        odds[OTHER_PATH][k] = observed.odds
                        pval[OTHER_PATH][k] = trial_pvalues(
                            model, observed, n_trials, "scramble", seed + k, method=other
                        ).p_value
    return odds, pval, doublets


def _quantiles(x: np.ndarray, qs=(0.5, 0.1, 0.9)) -> list[float]:
    return [float(np.quantile(x, q)) for q in qs] if x.size else [math.nan] * len(qs)


def summarise(odds, pval, matched: np.ndarray, other: str = "fast") -> list[dict]:
    base = odds[VARIANTS[0]]
    rows = []
    for variant in (*VARIANTS, OTHER_PATH):
        o = odds[variant]
        both_zero = (o == 0) & (base == 0)
        both_inf = np.isinf(o) & np.isinf(base)
        finite = np.isfinite(o) & np.isfinite(base) & (o > 0) & (base > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(finite, o / np.where(finite, base, 1.0), np.nan)
        changed = ~(both_zero | both_inf) & ~(finite & (np.abs(ratio - 1.0) <= 0.01))
        dp = pval[variant] - pval[VARIANTS[0]]
        med, q10, q90 = _quantiles(ratio[finite])
        rows.append(
            {
                "option": "default"
                if variant[1] is None
                else f"default, {other} trials"
                if variant == OTHER_PATH
                else f"{variant[0]}={variant[1]}",  # fmt: skip
                "changed": float(changed.mean()),
                "ratio_median": med,
                "ratio_q10": q10,
                "ratio_q90": q90,
                "ratio_min": float(ratio[finite].min()) if finite.any() else math.nan,
                "ratio_max": float(ratio[finite].max()) if finite.any() else math.nan,
                "n_ratio": int(finite.sum()),
                "zero_to_pos": int(((base == 0) & (o > 0)).sum()),
                "pos_to_zero": int(((base > 0) & (o == 0)).sum()),
                "to_inf": int((np.isfinite(base) & np.isinf(o)).sum()),
                "from_inf": int((np.isinf(base) & np.isfinite(o)).sum()),
                "n_inf": int(np.isinf(o).sum()),
                "n_zero": int((o == 0).sum()),
                "dp_median": float(np.nanmedian(dp)) if np.isfinite(dp).any() else math.nan,
                "p_moved": float(np.mean(np.abs(dp[np.isfinite(dp)]) > 0.01))
                if np.isfinite(dp).any()
                else math.nan,  # fmt: skip
                "absdp_median": float(np.nanmedian(np.abs(dp)))
                if np.isfinite(dp).any()
                else math.nan,  # fmt: skip
                "p_inj_median": float(np.nanmedian(pval[variant][matched]))
                if matched.any()
                else math.nan,  # fmt: skip
            }
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200, help="scramble trials per pairing (0: none)")
    ap.add_argument("--subset", type=int, default=0, help="seeded subset of pairings (0: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--method", choices=("exact", "fast"), default="exact", help="trial path of every variant (exact: an option's effect alone); the default statistic on the other path is the last row")  # fmt: skip
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    events, lists = load_events(), load_lists()
    pairings = [(e, n) for e in range(len(events)) for n in range(len(lists))]
    if args.subset and args.subset < len(pairings):
        pick = np.random.default_rng(args.seed).choice(len(pairings), args.subset, replace=False)
        pairings = [pairings[k] for k in sorted(pick)]
    # The injected list of event g is a signal only on g's own map.
    matched = np.array([lists[n][0] == f"inj-{events[e]['graceid']}" for e, n in pairings])
    odds, pval, doublets = evaluate(events, lists, pairings, args.trials, args.seed, args.method)
    other = "fast" if args.method == "exact" else "exact"
    rows = summarise(odds, pval, matched, other)

    print(f"{len(events)} maps x {len(lists)} lists: {len(pairings)} pairings "
          f"({int(matched.sum())} matched injections), {args.trials} scramble trials each "
          f"({args.method} path; last row: the default on the {other} path)")  # fmt: skip
    zen = np.concatenate([np.asarray(nu.zenith, dtype=float) for _, nu in lists])
    print(f"  pairings with a doublet term (default): {int((doublets > 0).sum())}; "
          f"example neutrinos within 10 deg of a pole: {int(np.sum((zen < 10) | (zen > 170)))}"
          f" of {zen.size}")  # fmt: skip
    for ev in events:
        print(f"  {ev['graceid']}: rho {ev['rho']:.2f}, rbar {ev['rbar']:.0f} Mpc, "
              f"{ev['population']}, p_terr {ev['p_terrestrial']:.2f}")  # fmt: skip
    head = (f"{'option':<24}{'changed':>8}{'ratio med [10%,90%]':>30}{'min..max':>18}{'n':>5}"
            f"{'0→>0':>6}{'>0→0':>6}{'→inf':>6}{'inf→':>6}{'#0':>5}{'#inf':>5}"
            f"{'med Δp':>9}{'med|Δp|':>9}{'|Δp|>.01':>9}{'p inj':>8}")  # fmt: skip
    print(head)
    for r in rows:
        ratio = f"{r['ratio_median']:.3g} [{r['ratio_q10']:.3g}, {r['ratio_q90']:.3g}]"
        span = f"{r['ratio_min']:.3g}..{r['ratio_max']:.3g}"
        print(f"{r['option']:<24}{r['changed']:>8.1%}{ratio:>30}{span:>18}{r['n_ratio']:>5}"
              f"{r['zero_to_pos']:>6}{r['pos_to_zero']:>6}{r['to_inf']:>6}{r['from_inf']:>6}"
              f"{r['n_zero']:>5}{r['n_inf']:>5}"
              f"{r['dp_median']:>9.4f}{r['absdp_median']:>9.4f}{r['p_moved']:>9.1%}"
              f"{r['p_inj_median']:>8.4f}")  # fmt: skip
    print(f"wall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
