"""Sequential (Besag & Clifford 1991) p-values of the on-the-fly trials.

Validity is checked by simulation on a statistic whose null distribution is known (an
atom at 0 plus an exponential tail, so ties are exercised), the counting against a
one-trial-at-a-time brute force, and ``trial_pvalues`` on BAYESTAR maps with
background lists for its cost (trials drawn) and its agreement with a recount.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from llama.science.odds import EventModel
from llama.science.pvalue import (
    _TIE_STREAM,
    _significance,
    run_trials,
    trial_model,
    trial_pvalues,
)
from llama.science.sequential import SequentialCount, expected_trials
from llama.science.sim import simulate_background_neutrinos
from llama.science.skymap import read_sky_map
from llama.science.times import mjd_to_gps

BAYESTAR = Path(__file__).resolve().parent / "data" / "bayestar"


def _null_statistic(rng, size):
    """Known null: 0 with probability 0.6 (the atom of lists far from the map), else
    Exponential(1)."""
    return np.where(rng.uniform(size=size) < 0.6, 0.0, rng.exponential(size=size))


def _brute_force(x, u, w, h, n_max, lo, hi, v):
    """The sequential p-values trial by trial, from the definitions (one value)."""
    count = count_up = stop = stop_up = n_greater = n_equal = 0
    for j in range(len(lo)):
        greater = lo[j] > x
        equal = lo[j] == x and hi[j] == x
        if stop == 0:
            n_greater += greater
            n_equal += equal
        count += greater or (equal and v[j] < u)
        count_up += greater or equal
        if stop == 0 and count >= h:
            stop = j + 1
        if stop_up == 0 and count_up >= h:
            stop_up = j + 1
        if stop and stop_up:
            break
    assert stop or len(lo) == n_max  # a value that does not stop waits for all n
    p = h / stop if stop else (count + w) / (n_max + 1)
    p_up = h / stop_up if stop_up else (count_up + 1) / (n_max + 1)
    return p, p_up, n_greater, n_equal, stop


def _run(count, lo, hi, first):
    """Feed ``count`` chunks of 2h-then-doubling sizes, as trial_pvalues does."""
    done, size = 0, first
    while done < lo.size:
        m = min(size, lo.size - done)
        if count.add(lo[done : done + m], hi[done : done + m]):
            break
        done, size = done + m, 2 * size


@pytest.mark.parametrize("h", [1, 3, 20])
def test_counts_match_one_trial_at_a_time(h):
    """Ties, bounds that hold no observed value, and NaN, against the brute force."""
    rng = np.random.default_rng(h)
    n_max = 150
    point = np.round(rng.exponential(size=n_max), 1)  # many ties on a 0.1 grid
    point[rng.uniform(size=n_max) < 0.3] = 0.0
    x = np.array([0.0, 0.1, 0.5, 1.3, 4.0, np.nan])
    # half the trials known only by bounds that hold no threshold: [point, next tenth)
    lo, hi = point.copy(), point.copy()
    fuzzy = (rng.uniform(size=n_max) < 0.5) & ~np.isin(np.round(point + 0.05, 2), x)
    hi[fuzzy] = point[fuzzy] + 0.05
    u, w = rng.uniform(size=x.size), rng.uniform(size=x.size)
    count = SequentialCount(x, u, w, h, n_max, np.random.default_rng(7))
    _run(count, lo, hi, 2 * h)
    v = np.random.default_rng(7).uniform(size=count.drawn)  # the same stream of V's
    r = count.p_values()
    for k in range(x.size - 1):
        p, p_up, ng, ne, stop = _brute_force(x[k], u[k], w[k], h, n_max, lo[: count.drawn], hi[: count.drawn], v)  # fmt: skip
        assert r["p"][k] == pytest.approx(p, rel=1e-12)
        assert r["p_upper"][k] == pytest.approx(p_up, rel=1e-12)
        assert (r["n_greater"][k], r["n_equal"][k], count.stopped_at[k]) == (ng, ne, stop)
        assert r["p_upper"][k] >= r["p"][k]
    assert np.isnan(r["p"][-1]) and np.isnan(r["p_upper"][-1])
    # it stops only once every value has stopped, or at the maximum
    assert count.drawn == n_max or np.all(count.stopped_at[:-1] > 0)


def test_stopped_p_is_h_over_trials_drawn():
    """p = h / L at the trial L where the h-th trial reaches the value; else the
    fixed-n formula (K + W) / (n + 1)."""
    trials = np.array([0.1, 0.9, 0.2, 0.7, 0.3, 0.8, 0.0])  # reach 0.5 at trials 2, 4, 6
    for h, expected in ((1, 1 / 2), (2, 2 / 4), (3, 3 / 6)):
        count = SequentialCount([0.5], [0.3], [0.4], h, 7, np.random.default_rng(0))
        assert count.add(trials)
        assert count.p_values()["p"][0] == pytest.approx(expected)
    count = SequentialCount([0.5], [0.3], [0.4], 4, 7, np.random.default_rng(0))
    assert not count.add(trials)  # 3 < h reached it in all n = 7 trials
    assert count.p_values()["p"][0] == pytest.approx((3 + 0.4) / 8)
    assert count.p_values()["p_upper"][0] == pytest.approx((3 + 1) / 8)


@pytest.mark.parametrize(("h", "n_max"), [(20, 2000), (5, 199)])
def test_validity_by_simulation(h, n_max):
    """P(p <= a) = a within noise under the null (exactly a at a = h / L and below
    h / (n + 1); never above), ties included; and far fewer trials than n_max."""
    rng = np.random.default_rng(1991 + h)
    runs, per_run = 300, 40  # independent trial streams; observed values per stream
    alphas = np.array([0.01, 0.05, 0.1, 0.5])
    frac = np.empty((runs, alphas.size))
    drawn = np.empty(runs)
    stop_one = []
    for r in range(runs):
        observed = _null_statistic(rng, per_run)
        trials = _null_statistic(rng, n_max)
        u, w = rng.uniform(size=per_run), rng.uniform(size=per_run)
        count = SequentialCount(observed, u, w, h, n_max, np.random.default_rng(rng.integers(2**63)))  # fmt: skip
        _run(count, trials, trials, 2 * h)
        p = count.p_values()["p"]
        frac[r] = np.mean(p[:, None] <= alphas[None, :], axis=0)
        drawn[r] = count.drawn
        one = SequentialCount(observed[:1], u[:1], w[:1], h, n_max, np.random.default_rng(r))
        _run(one, trials, trials, 2 * h)
        stop_one.append(one.drawn)
    mean = frac.mean(axis=0)
    se = frac.std(axis=0, ddof=1) / np.sqrt(runs)
    # Besag & Clifford: exact where a = h / L for an integer L, or a < h / (n + 1)
    assert np.all(np.abs(mean - alphas) <= 4 * se + 1e-3), (mean, se)
    # one background value: mean trials drawn near h (1 + ln(n / h)), x the chunk overshoot
    assert np.mean(stop_one) < 2.0 * expected_trials(h, n_max)
    assert np.mean(stop_one) < 0.25 * n_max


def _bayestar_events(n_lists: int, names=None):
    info = json.loads((BAYESTAR / "events.json").read_text())
    rng = np.random.default_rng(2026)
    for name in names or sorted(info):
        e = info[name]
        mjd = float(e["mjd_obs"])
        model = EventModel(
            read_sky_map(BAYESTAR / f"{name}.fits"), float(e["network_snr"]),
            float(e["distmean_mpc"]), e["population"], t_gw_mjd=mjd,
        )  # fmt: skip
        for _ in range(n_lists):
            nl = simulate_background_neutrinos(rng, mjd)
            yield name, model, model.evaluate(nl, float(mjd_to_gps(mjd)))


def _recount(result, observed_odds, observed_odds_i, seed, h, n_max):
    """The event's and neutrinos' p-values recounted from the trials the result kept,
    with the tie stream's draws in their documented order."""
    rng = np.random.default_rng([seed, _TIE_STREAM])
    u_event, u_nu = rng.uniform(), rng.uniform(size=np.size(observed_odds_i))
    w_event, w_nu = rng.uniform(), rng.uniform(size=np.size(observed_odds_i))
    bounds = result.trial_bounds
    lo = result.trial_odds if bounds is None else bounds[:, 0]
    hi = result.trial_odds if bounds is None else bounds[:, 1]
    v = rng.uniform(size=lo.size)
    event = _brute_force(observed_odds, u_event, w_event, h, n_max, lo, hi, v)
    nus = [
        _brute_force(o, u, w, h, n_max, lo, hi, v)
        for o, u, w in zip(observed_odds_i, u_nu, w_nu, strict=True)
    ]
    return event, nus


@pytest.mark.parametrize("kind", ["background", "scramble"])
def test_background_events_draw_few_trials(kind):
    """BAYESTAR maps x background lists: far fewer than 2,000 trials, and every p-value
    the one a recount of the kept trials gives."""
    h, n_max = 20, 2000
    drawn = []
    # scrambles build per-event ring tables (seconds on the wider maps): two maps only
    names = ("bbh-2", "bns-1") if kind == "scramble" else None
    for i, (name, model, obs) in enumerate(_bayestar_events(2, names)):
        res = trial_pvalues(model, obs, n_trials=n_max, kind=kind, seed=i, stop_after=h)
        m = res.method
        assert m["stop_after"] == h and m["n_trials"] == n_max
        assert m["n_trials_drawn"] == res.trial_odds.size <= n_max
        odds = m.get("odds_ranked", obs.odds)
        odds_i = obs.odds_ratio
        if res.trial_bounds is not None or m.get("fast_path") == "screen":
            # the p-values rank the statistic the trials use: ask the evaluator again
            # sized, as trial_pvalues sizes it, for the trials a background event draws
            hint = math.ceil(expected_trials(h, n_max))
            evaluator, _ = trial_model(model, "fast", kind, _lists(obs), hint)
            if hasattr(evaluator, "thresholds"):
                odds, odds_i = evaluator.thresholds(obs.ra, obs.odds, obs.odds_ratio)
            else:
                from llama.science.pvalue import _ranked_statistic

                odds, odds_i = _ranked_statistic(evaluator, obs)
        event, nus = _recount(res, odds, odds_i, i, h, n_max)
        assert res.p_value == pytest.approx(event[0], rel=1e-12), name
        assert m["p_value_upper"] == pytest.approx(event[1], rel=1e-12)
        assert m["n_trials_used"] == (event[4] or m["n_trials_drawn"])
        for p, p_up, brute in zip(res.p_values_neutrino, m["p_values_neutrino_upper"], nus, strict=True):  # fmt: skip
            assert p == pytest.approx(brute[0], rel=1e-12)
            assert p_up == pytest.approx(brute[1], rel=1e-12)
        drawn.append(m["n_trials_drawn"])
    # a background event draws ~h (1 + ln(n / h)) = 112 on average, up to 2x in chunks
    assert np.mean(drawn) < 500, drawn


def _lists(obs):
    zen = np.where(np.isfinite(obs.zenith), obs.zenith, 90.0 + obs.dec)
    return (obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, zen)


def test_off_is_the_fixed_n_p_value():
    """stop_after=None: every trial drawn, p-values those of the fixed-n formula on the
    same trials (recomputed here from run_trials and the tie convention)."""
    name, model, obs = next(_bayestar_events(1))
    res = trial_pvalues(model, obs, n_trials=400, seed=11)
    assert "stop_after" not in res.method and "n_trials_drawn" not in res.method
    # background lists are decided by bounds against the observed list's thresholds
    evaluator, applied = trial_model(model, "fast", "background", (*_lists(obs), obs.azimuth))
    odds, odds_i = evaluator.thresholds(obs.ra, obs.odds, obs.odds_ratio)
    batches, _ = run_trials(model, model.background, None, 400, "background", 11, evaluator=evaluator, thresholds=np.append(odds_i, odds))  # fmt: skip
    trial_odds = np.concatenate([b.point for b in batches])
    np.testing.assert_array_equal(res.trial_odds, trial_odds)
    bounds = tuple(np.concatenate([getattr(b, k) for b in batches]) for k in ("lo", "hi"))
    p, p_nu, tie = _significance(bounds, odds, odds_i, 11)
    assert res.p_value == p and np.array_equal(res.p_values_neutrino, p_nu)
    assert res.method["p_value_upper"] == tie["p_value_upper"]


def test_bad_stop_after_is_one_clear_error():
    with pytest.raises(ValueError, match="stop_after must be an integer >= 1"):
        SequentialCount([1.0], [0.5], [0.5], 0, 10, np.random.default_rng(0))


def test_trial_pvalues_uniform_under_the_null():
    """End to end: observed lists drawn from the trials' own null (background lists on
    a map covering a quarter of the sky, the exact statistic) give P(p <= a) = a within
    binomial noise at h = 20, with few trials drawn."""
    from types import SimpleNamespace

    from llama.science.pvalue import background_sampler
    from llama.science.skymap import SkyMap

    density = np.zeros(12)
    density[:3] = 1.0 / (3 * 4 * np.pi / 12)  # 3 of 12 NSIDE-1 pixels, normalised
    model = EventModel(SkyMap(probdensity=density, nside=1), 12.0, 150.0)
    sampler = background_sampler(model.background)
    n_events = 150
    p, drawn = np.empty(n_events), np.empty(n_events)
    for i in range(n_events):
        lists = sampler(np.random.default_rng([i, 2026]), 1)
        b = model.evaluate_batch(*lists)
        observed = SimpleNamespace(odds=float(b.odds[0]), odds_ratio=b.odds_i)
        r = trial_pvalues(model, observed, 2000, seed=i, sampler=sampler, method="exact", stop_after=20)  # fmt: skip
        p[i], drawn[i] = r.p_value, r.method["n_trials_drawn"]
    for a in (0.01, 0.05, 0.1, 0.5):
        se = np.sqrt(a * (1 - a) / n_events)
        assert abs(np.mean(p <= a) - a) <= 4 * se + 1 / n_events, (a, np.mean(p <= a))
    assert np.mean(drawn) < 500
