"""Significance of the LLAMA statistic: on-the-fly trials and background tables.

Convention (both sources): out of N background statistics, K_> are greater than the
observed one and K_= equal to it. The p-value is randomised over the ties,

    p = (K_> + U (K_= + 1)) / (N + 1),   U ~ Uniform(0, 1) from a seeded generator,

which counts the observation as one of N + 1 exchangeable draws and breaks its ties
at random, so p is exactly Uniform(0, 1) under the null even when the statistic has
an atom (odds 0 is common: a list with no neutrino near a compact map has S_i = 0).
The conservative value U = 1, (1 + K_>=) / (1 + N) (O3's convention up to the "+1"),
is recorded as ``p_value_upper``: it piles up at 1 on ties and is not uniform. The
floor is 1 / (1 + N) for ``p_value_upper`` (about 5e-4 with the default 2000 trials).

Sources
-------
1. On-the-fly trials (:func:`trial_pvalues`): keep the GW map, redraw the neutrinos M
   times and evaluate all M lists in one batched call of
   :meth:`llama.science.odds.EventModel.evaluate_batch`. Two ways to redraw:
   ``"background"`` (the default: N ~ Poisson(R_ν,bg · 1000 s) per list, (zenith,
   energy) resampled jointly from the background sample, dec = zenith - 90, RA and dt
   uniform, σ log-uniform in [0.2°, 3°]; the null O3's background tables sampled) or
   ``"scramble"`` (keep times, declinations, errors, energies; RA uniform, as IceCube
   blinding does; it keeps a signal neutrino's energy in every trial and barely moves
   neutrinos near the poles, so it recovers fewer injections: 72-78% at p < 0.05 on
   the BAYESTAR maps against 84-85%, bench/README.md); or any ``sampler`` you pass.
   With ``stop_after=h`` the trials stop early, Besag & Clifford's sequential
   p-value (:mod:`llama.science.sequential`; ``LLAMA_TRIAL_STOP_AFTER``).
2. A background table (:mod:`llama.science.background_table`), O3's way: the sorted
   event statistics of a batch run over simulated GW maps x background neutrino lists,
   keyed by population, sensitivity and instruments.

Per-neutrino p-values (same convention): each O_i looked up in the same distribution
of event statistics as the event's O, as O3 did: the table's, or the trials' event
statistics (docs/science.md, "Significance").

Examples
--------
>>> float(pvalue_from_counts(0, 999))
0.001
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kernels.trials import offsets_from_counts, tile_offsets
from llama.science import constants as C

__all__ = [
    "DEFAULT_N_TRIALS",
    "TIE_CONVENTION",
    "TRIAL_METHODS",
    "TrialResult",
    "background_sampler",
    "bounded_pvalues",
    "pvalue_from_counts",
    "randomised_pvalues",
    "run_trials",
    "scramble_sampler",
    "trial_model",
    "trial_pvalues",
]

#: How trials evaluate the statistic: "fast" (the default: scrambles and background
#: lists decided by bounds, the exact kernel only where a trial's bounds hold an
#: observed value, :mod:`llama.science.fast_trials` and
#: :mod:`llama.science.background_trials`; a background list's B_i are looked up per
#: sample event, computed once per model) or "exact" (the exact kernel for every trial
#: neutrino).
TRIAL_METHODS = ("fast", "exact")
#: Default number of on-the-fly trials: resolves p down to ~1e-3 ((1 + 0) / 2001).
DEFAULT_N_TRIALS = 2000
#: Range of simulated neutrino errors for background lists [deg] (docs/science.md, "On-the-fly trials").
_SIGMA_RANGE_DEG = (C.SIGMA_FLOOR_DEG, 3.0)
#: How p-values treat ties, as recorded in every method dict.
TIE_CONVENTION = (
    "randomised: (#{background > observed} + U * (#{background == observed} + 1)) "
    "/ (1 + n_background), U ~ Uniform(0, 1) seeded by 'seed'; p_value_upper takes U = 1"
)
#: Second word of the tie generator's seed, so that its draws never share a stream with
#: the trials drawn from the same ``seed`` (the trials stay what they were).
_TIE_STREAM = 0x7469_6573

#: A sampler returns (ra, dec, sigma [deg], energy [GeV], dt [s], zenith [deg], offsets).
Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, ...]]


def pvalue_from_counts(n_at_least, n_total) -> np.ndarray:
    """Conservative p-value (1 + K) / (1 + N), K = #{background >= observed}.

    This is the randomised p-value with U = 1 (``p_value_upper``).

    Examples
    --------
    >>> float(pvalue_from_counts(0, 999))
    0.001
    """
    return (1.0 + np.asarray(n_at_least, dtype=float)) / (1.0 + float(n_total))


def _tie_rng(seed: int | None) -> np.random.Generator:
    """The generator of the tie-breaking draws U for ``seed`` (None: fresh entropy)."""
    return np.random.default_rng(None if seed is None else [int(seed), _TIE_STREAM])


def _tie_record(n_greater, n_equal, n_background: int, u, bad) -> dict[str, np.ndarray]:
    """p (ties broken by ``u``) and p_upper (ties counted) from the counts; NaN where ``bad``."""
    p = (n_greater + u * (n_equal + 1.0)) / (n_background + 1.0)
    p_upper = (n_greater + n_equal + 1.0) / (n_background + 1.0)
    return {
        "p": np.where(bad, np.nan, p),
        "p_upper": np.where(bad, np.nan, p_upper),
        "n_greater": n_greater,
        "n_equal": n_equal,
    }


def randomised_pvalues(background_sorted, observed, u) -> dict[str, np.ndarray]:
    """Randomised and conservative p-values of ``observed`` against a sorted background.

    Parameters
    ----------
    background_sorted : array_like (N,)
        Background statistics, ascending (+inf allowed, no NaN).
    observed : array_like (M,)
        Observed statistics (NaN gives a NaN p-value).
    u : array_like (M,)
        Uniform(0, 1) draws, one per observed value.

    Returns
    -------
    dict
        ``p`` = (K_> + U (K_= + 1)) / (N + 1), ``p_upper`` = (K_> + K_= + 1) / (N + 1),
        ``n_greater`` = K_>, ``n_equal`` = K_=.

    Examples
    --------
    >>> r = randomised_pvalues([0.0, 0.0, 0.0, 2.0], [0.0, 1.0], [0.5, 0.5])
    >>> r["p"].tolist(), r["p_upper"].tolist(), r["n_equal"].tolist()
    ([0.6, 0.3], [1.0, 0.4], [3, 0])
    """
    bg = np.asarray(background_sorted, dtype=np.float64)
    x = np.atleast_1d(np.asarray(observed, dtype=np.float64))
    u = np.broadcast_to(np.asarray(u, dtype=np.float64), x.shape)
    above = np.searchsorted(bg, x, side="right")
    n_greater = bg.size - above
    n_equal = above - np.searchsorted(bg, x, side="left")
    return _tie_record(n_greater, n_equal, bg.size, u, np.isnan(x))


def bounded_pvalues(lo, hi, observed, u) -> dict[str, np.ndarray]:
    """:func:`randomised_pvalues` for a background known only by intervals.

    Background value k lies in ``[lo[k], hi[k]]``; no interval may hold an observed
    value unless it is a single point (``lo == hi``): then every count is the one the
    values themselves give.

    Examples
    --------
    >>> r = bounded_pvalues([0.0, 0.0, 0.0, 1.5], [0.0, 0.0, 0.0, 2.5], [0.0, 1.0], [0.5, 0.5])
    >>> r["p"].tolist(), r["n_equal"].tolist()
    ([0.6, 0.3], [3, 0])
    """
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    x = np.atleast_1d(np.asarray(observed, dtype=np.float64))
    u = np.broadcast_to(np.asarray(u, dtype=np.float64), x.shape)
    lo_sorted, hi_sorted = np.sort(lo), np.sort(hi)
    open_ = lo < hi
    lo_open, hi_open = np.sort(lo[open_]), np.sort(hi[open_])
    undecided = np.searchsorted(lo_open, x, side="right") - np.searchsorted(hi_open, x, side="left")  # fmt: skip
    if np.any(undecided[~np.isnan(x)] > 0):
        raise ValueError("an interval of the background holds an observed value: refine it first")  # fmt: skip
    n_greater = lo.size - np.searchsorted(lo_sorted, x, side="right")
    # intervals holding x: all single points, equal to it
    n_equal = np.searchsorted(lo_sorted, x, side="right") - np.searchsorted(hi_sorted, x, side="left")  # fmt: skip
    return _tie_record(n_greater, n_equal, lo.size, u, np.isnan(x))


def _significance(event_background, event_odds, neutrino_odds, seed, neutrino_background=None):
    """Event and per-neutrino p-values, and the method keys saying how they were made.

    ``event_background`` and ``neutrino_background`` (default: the same) are sorted
    arrays, or ``(lo, hi)`` interval pairs (:func:`bounded_pvalues`).
    """
    rng = _tie_rng(seed)
    u_event = rng.uniform()  # drawn first, so the event's U does not depend on the list
    nu = np.ascontiguousarray(neutrino_odds, dtype=np.float64).ravel()
    u_nu = rng.uniform(size=nu.size)
    nu_bg = event_background if neutrino_background is None else neutrino_background

    def pvalues(bg, x, u):
        if isinstance(bg, tuple):
            return bounded_pvalues(*bg, x, u)
        return randomised_pvalues(bg, x, u)

    if nu_bg is event_background:  # the background sorted once for the event and its O_i
        both = pvalues(event_background, np.append(event_odds, nu), np.append(u_event, u_nu))
        event = {key: values[:1] for key, values in both.items()}
        per_nu = {key: values[1:] for key, values in both.items()}
    else:
        event = pvalues(event_background, [event_odds], [u_event])
        per_nu = pvalues(nu_bg, nu, u_nu)
    method = {
        "convention": TIE_CONVENTION,
        "seed": seed,
        "p_value_upper": float(event["p_upper"][0]),
        "n_greater": int(event["n_greater"][0]),
        "n_equal": int(event["n_equal"][0]),
        "p_values_neutrino_upper": per_nu["p_upper"].tolist(),
    }
    return float(event["p"][0]), per_nu["p"], method


@dataclass
class TrialResult:
    """On-the-fly trials for one event.

    Attributes
    ----------
    p_value : float
        Event p-value, randomised over ties (module docstring).
    p_values_neutrino : ndarray
        Per-neutrino p-values, in list order.
    trial_odds : ndarray (M,)
        The M background statistics (with ``stop_after``: the M trials drawn); with
        trials decided by bounds (scrambles, background lists), a value inside each
        trial's bounds of its ranked statistic: the exact statistic where it was
        evaluated and above the cut (background lists below it: the stand-in tiers of
        :mod:`llama.science.background_trials`).
    method : dict
        How the p-value was obtained, for ``neutrino_gw_combined``; ``p_value_upper``
        and ``p_values_neutrino_upper`` are the conservative (U = 1) values.
    trial_bounds : ndarray (M, 2) or None
        With trials decided by bounds: each trial's ranked statistic lies in
        ``[lo, hi]`` (equal where it was evaluated), and no interval holds an observed
        value, so the counts are the ones the statistics give.
    """

    p_value: float
    p_values_neutrino: np.ndarray
    trial_odds: np.ndarray
    method: dict[str, Any] = field(default_factory=dict)
    trial_bounds: np.ndarray | None = None


def scramble_sampler(ra, dec, sigma, energy, dt, zenith) -> Sampler:
    """Sampler that keeps a list and redraws each RA uniformly in [0, 360) deg.

    Examples
    --------
    >>> import numpy as np
    >>> s = scramble_sampler([10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    >>> ra, *_, off = s(np.random.default_rng(0), 3)
    >>> ra.shape, off.tolist()
    ((3,), [0, 1, 2, 3])
    """
    arrays = [np.asarray(a, dtype=np.float64).ravel() for a in (dec, sigma, energy, dt, zenith)]
    n = np.asarray(ra).size

    def draw(rng: np.random.Generator, m: int):
        tiled = [np.tile(a, m) for a in arrays]
        return (rng.uniform(0.0, 360.0, n * m), *tiled, tile_offsets(n, m))

    return draw


def background_sampler(background, rate_hz: float = C.NU_BACKGROUND_RATE_HZ) -> Sampler:
    """Sampler of Poisson(R_ν,bg · 1000 s) background lists from a background sample.

    (zenith, energy) pairs are resampled jointly from ``background`` (the same sample
    that defines B_i), so the lists follow the null the statistic assumes.

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.background import BackgroundDensity
    >>> bg = BackgroundDensity(np.linspace(1, 179, 500), np.full(500, 1e3))
    >>> ra, dec, sig, en, dt, zen, off = background_sampler(bg)(np.random.default_rng(1), 4)
    >>> off.size, bool(np.all(np.abs(dt) < 500))
    (5, True)
    """
    draw = _background_draws(background, rate_hz)
    return lambda rng, m: draw(rng, m)[0]


#: Per sample: (its zeniths, the declination a background list puts each event at).
_SAMPLE_DEC: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _sample_dec(background) -> np.ndarray:
    """dec = zenith - 90 [deg] of every sample event (IceCube at the South Pole), kept
    per sample: a draw gathers it instead of computing it per trial neutrino."""
    kept = _SAMPLE_DEC.get(background)
    if kept is None or kept[0] is not background.zenith_sorted:
        zen = background.zenith_sorted
        kept = _SAMPLE_DEC[background] = (zen, np.clip(zen - 90.0, -90.0, 90.0))
    return kept[1]


def _background_draws(background, rate_hz: float = C.NU_BACKGROUND_RATE_HZ):
    """``draw(rng, m) -> (lists, pick)``: the lists of :func:`background_sampler` and the
    index of each neutrino's (zenith, energy) in the sample (its B_i can be looked up)."""
    zen_pool = background.zenith_sorted
    en_pool = background.energy_by_zenith
    dec_pool = _sample_dec(background)
    mean = rate_hz * 2.0 * C.SEARCH_HALF_WINDOW_S
    lo, hi = np.log(_SIGMA_RANGE_DEG[0]), np.log(_SIGMA_RANGE_DEG[1])
    half = C.SEARCH_HALF_WINDOW_S

    def uniform(rng, low: float, high: float, n: int) -> np.ndarray:
        """``rng.uniform(low, high, n)``, the same doubles (NumPy's is low + (high -
        low) * random(), for scalars too) for ~2/3 of its cost."""
        out = rng.random(n)
        out *= high - low
        if low != 0.0:
            out += low
        return out

    def draw(rng: np.random.Generator, m: int):
        counts = rng.poisson(mean, m)
        n = int(counts.sum())
        pick = rng.integers(0, zen_pool.size, n)
        lists = (
            uniform(rng, 0.0, 360.0, n),
            dec_pool.take(pick),
            np.exp(uniform(rng, lo, hi, n)),
            en_pool.take(pick),
            uniform(rng, -half, half, n),
            zen_pool.take(pick),
            offsets_from_counts(counts),
        )
        return lists, pick

    return draw


#: Per sample: the background terms of every sample event (a background list's
#: neutrinos are sample events, so their B_i are looked up, not recomputed). An O3
#: event model's do not depend on the map, so every event with the same sample,
#: background density and ``background_band`` option shares them; other statistics
#: (the sub-threshold model) keep their own per model.
_SAMPLE_TERMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MODEL_TERMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _sample_terms(model, sample):
    """``model.background_terms`` of every event of ``sample``, computed once per sample
    (O3 event models: per background density and ``background_band`` option too)."""
    choices = getattr(model, "choices", None)
    if choices is None:  # not an O3 event model: kept per model
        cached = _MODEL_TERMS.get(model)
        if cached is None or cached[0] is not sample:
            terms = model.background_terms(sample.zenith_sorted, sample.energy_by_zenith)
            cached = _MODEL_TERMS[model] = (sample, terms)
        return cached[1]
    per_band = _SAMPLE_TERMS.setdefault(sample, {})
    cached = per_band.get(choices["background_band"])
    if cached is None or cached[0] is not model.background:
        terms = model.background_terms(sample.zenith_sorted, sample.energy_by_zenith)
        cached = per_band[choices["background_band"]] = (model.background, terms)
    return cached[1]


def trial_model(
    model, method: str = "fast", kind: str = "background", observed=None, n_trials=None
):
    """What evaluates the trials for ``method`` (:data:`TRIAL_METHODS`), and the method
    it applies ("exact" where no fast path applies to ``model``).

    With ``method="fast"`` and an O3 event model: scrambles of ``observed`` (the tuple
    ``(ra, dec, sigma, energy, dt, zenith)``) by RA lookup
    (:class:`llama.science.fast_trials.ScrambleTrials`), background lists against
    ``observed`` (the same tuple, optionally with the azimuths last) by bounds
    (:class:`llama.science.background_trials.BackgroundTrials`), any other lists
    through the screen (:func:`llama.science.fast_trials.screened_model`). Each has the
    ``evaluate_batch`` of :class:`llama.science.odds.EventModel`; the first two also
    ``thresholds`` and ``decide_batch`` (the p-values' exact counts).

    Examples
    --------
    >>> trial_model(object(), "fast")[1]
    'exact'
    """
    if method not in TRIAL_METHODS:
        raise ValueError(f"method must be one of {', '.join(TRIAL_METHODS)}; got {method!r}")
    from llama.science.fast_trials import ScrambleTrials, screened_model, supports_screening

    if method != "fast" or not supports_screening(model):
        return model, "exact"
    if kind == "scramble" and observed is not None:
        return ScrambleTrials(model, *observed[:6], n_trials=n_trials), "fast"
    if kind == "background" and observed is not None:
        from llama.science.background_trials import BackgroundTrials

        return BackgroundTrials(model, *observed), "fast"
    return screened_model(model), "fast"


def run_trials(
    model,
    sample,
    observed,
    n_trials,
    kind,
    seed,
    sampler=None,
    chunk=20000,
    method="fast",
    evaluator=None,
    thresholds=None,
    until=None,
    first_chunk=None,
):
    """Evaluate ``n_trials`` redrawn neutrino lists with ``model.evaluate_batch``.

    One loop for every statistic with the ``evaluate_batch(..., background_terms=)``
    and ``background_terms(zenith, energy)`` of :class:`llama.science.odds.EventModel`
    (and of the sub-threshold model). A scramble keeps each neutrino's zenith, energy
    and place in the list, hence its background terms: they are computed once.

    Parameters
    ----------
    model : EventModel or SubthresholdModel
    sample : BackgroundDensity
        Sample the background lists are drawn from (``kind="background"``).
    observed : tuple of arrays or None
        (ra, dec, sigma [deg], energy [GeV], dt [s], zenith [deg]) of the observed list,
        the seed of a scramble (unused by the other kinds).
    n_trials, kind, seed, sampler, chunk, method
        As :func:`trial_pvalues`. With ``method="fast"`` a model no fast path applies
        to (:func:`trial_model`, e.g. the sub-threshold model) runs exactly; the
        background lists' B_i are looked up in either case (the same numbers).
    evaluator : object, optional
        What :func:`trial_model` returned for these arguments (built here if None).
    thresholds : array_like, optional
        With an evaluator that has ``decide_batch`` (scrambles by RA lookup), the
        values the p-values compare with: each trial is then known only as far as
        they need (``TrialBounds``, :mod:`llama.science.fast_trials`).
    until : callable, optional
        ``until(batch) -> bool``, called after each chunk: True stops the trials there
        (sequential p-values, :class:`SequentialCount`). Chunks then start at
        ``first_chunk`` trials and double (at most ``chunk``), so an early stop wastes
        few trials and a late one costs few calls.
    first_chunk : int, optional
        Size of the first chunk with ``until`` (default ``chunk``).

    Returns
    -------
    batches : list
        The model's batch results, in order (``.odds`` per trial), or ``TrialBounds``
        (``.lo``, ``.hi``, ``.point``) with ``thresholds``.
    trial_kind : str
        "background", "scramble" or "custom" (a sampler was given).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if evaluator is None:
        scramble_of = observed if sampler is None else None
        evaluator, _ = trial_model(model, method, kind, scramble_of, n_trials)
    rng = np.random.default_rng(seed)
    fixed = None
    draws = None  # background lists with the sample index of each neutrino
    if sampler is not None:
        trial_kind = "custom"
    elif kind == "scramble":
        trial_kind = kind
        ra, dec, sigma, energy, dt, zen = observed
        sampler = scramble_sampler(ra, dec, sigma, energy, dt, zen)
        # the azimuth (doublets) follows the new RA through the detector frame
        fixed = model.background_terms(np.asarray(zen, dtype=np.float64), energy)
    elif kind == "background":
        trial_kind = kind
        draws = _background_draws(sample)
        pool = _sample_terms(model, sample)
    else:
        raise ValueError(f"kind must be 'background' or 'scramble', got {kind!r}")
    batches = []
    done = 0
    size = chunk if until is None or first_chunk is None else max(1, int(first_chunk))
    while done < n_trials:
        m = min(size, chunk, n_trials - done)
        if until is not None:
            size *= 2
        bg = None
        if draws is not None:
            (ra, dec, sigma, energy, dt, zen, offsets), pick = draws(rng, m)
            bg = type(pool)(*(a.take(pick) for a in pool))  # take: ~half a fancy index's cost
        else:
            ra, dec, sigma, energy, dt, zen, offsets = sampler(rng, m)
            if fixed is not None:
                bg = type(fixed)(*(np.tile(a, m) for a in fixed))
        if thresholds is not None:
            extra = {} if draws is None else {"sample_index": pick}  # a(ε) rows looked up
            batches.append(evaluator.decide_batch(thresholds, ra, dec, sigma, energy, dt, zen, offsets, background_terms=bg, **extra))  # fmt: skip
        else:
            batches.append(evaluator.evaluate_batch(ra, dec, sigma, energy, dt, zen, offsets, background_terms=bg))  # fmt: skip
        done += m
        if until is not None and until(batches[-1]):
            break
    return batches, trial_kind


def trial_pvalues(
    model,
    observed,
    n_trials: int = DEFAULT_N_TRIALS,
    kind: Literal["background", "scramble"] = "background",
    seed: int | None = None,
    sampler: Sampler | None = None,
    chunk: int = 20000,
    method: Literal["fast", "exact"] = "fast",
    stop_after: int | None = None,
) -> TrialResult:
    """p-values of an observed event from M on-the-fly trials on the same GW map.

    Parameters
    ----------
    model : EventModel
        The prepared GW event (:class:`llama.science.odds.EventModel`).
    observed : OddsResult
        The observed statistic (from ``model.evaluate``); its neutrinos seed
        ``kind="scramble"``.
    n_trials : int
        M; the smallest reachable p-value is 1 / (1 + M).
    kind : {"background", "scramble"}
        How to redraw the neutrinos (ignored when ``sampler`` is given).
    seed : int, optional
        Seed of the random generator (recorded in ``method``).
    sampler : callable, optional
        ``sampler(rng, m) -> (ra, dec, sigma, energy, dt, zenith, offsets)``.
    chunk : int
        Trials per batched call, bounding memory.
    method : {"fast", "exact"}
        "fast": scrambles read each neutrino's overlap from a per-event table along
        its declination ring, built with the exact kernel (``fast_path`` "ra_lookup",
        :mod:`llama.science.fast_trials`); background lists bound it from a per-event
        min/max pyramid of the map (``fast_path`` "bounds",
        :mod:`llama.science.background_trials`). Both decide each trial against the
        observed values by bounds and refine only the trials whose bounds hold one,
        so the counts and p-values are the exact method's wherever the observed value
        is above the cut (tests/test_fast_trials.py,
        tests/test_background_trials.py); lists below it are ranked by a cheap
        value, the observed list included (``odds_ranked`` in ``method``), which keeps
        the p-value calibrated. Custom samplers' lists skip the exact kernel for
        neutrinos the GW map cannot reach (``fast_path`` "screen": within 1% of the
        exact statistic plus what an overlap at 1e-12 of the map's peak density
        gives). "exact": the exact kernel everywhere. Recorded as ``statistic``.
    stop_after : int, optional
        h of Besag & Clifford's sequential p-value (:mod:`llama.science.sequential`):
        trials are drawn in chunks (2h, then doubling) and each observed value, the
        event's and every neutrino's, stops at the trial L where h trials have reached
        it, p = h / L; at most ``n_trials`` are drawn. Exactly valid; large p-values
        lose precision (spread ~ p sqrt((1 - p) / h)). Scramble tables are then sized
        for the trials a background event draws (``expected_trials``), not for
        ``n_trials``. None (the default): all ``n_trials``. Recorded as
        ``stop_after``, with ``n_trials_drawn`` and ``n_trials_used``.

    Returns
    -------
    TrialResult

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.skymap import SkyMap
    >>> from llama.science.odds import EventModel
    >>> from llama.science.neutrinos import NeutrinoList
    >>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
    >>> obs = m.evaluate(NeutrinoList(mjd=[], ra=[], dec=[], sigma=[], energy=[]), 0.0)
    >>> r = trial_pvalues(m, obs, n_trials=20, seed=1)
    >>> r.method["statistic"], r.trial_odds.size
    ('fast', 20)
    """
    lists = None  # the observed list seeds a scramble, and ranks background lists
    if sampler is None and kind in ("scramble", "background"):
        zen = np.where(np.isfinite(_zenith(observed)), _zenith(observed), 90.0 + observed.dec)
        lists = (observed.ra, observed.dec, observed.sigma, observed.energy, observed.dt, zen)
    sample = getattr(model, "background", None)  # a custom sampler needs none
    if stop_after is not None and not (int(stop_after) == stop_after and stop_after >= 1):
        raise ValueError(f"stop_after must be an integer >= 1, got {stop_after!r}")
    expected = n_trials
    if stop_after is not None:  # what a background event draws: sizes the scramble tables
        from llama.science.sequential import expected_trials

        expected = math.ceil(expected_trials(int(stop_after), n_trials))
    seed_lists = lists
    if lists is not None and kind == "background":
        seed_lists = (*lists, getattr(observed, "azimuth", None))
    evaluator, applied = trial_model(
        model, method, kind if sampler is None else "custom", seed_lists, expected
    )
    odds, odds_i = observed.odds, observed.odds_ratio
    thresholds = None
    if hasattr(evaluator, "decide_batch"):  # decided by bounds: the exact ranking
        odds, odds_i = evaluator.thresholds(observed.ra, observed.odds, observed.odds_ratio)
        thresholds = np.append(odds_i, odds)
    elif evaluator is not model:  # rank the observed list by the trials' statistic
        odds, odds_i = _ranked_statistic(evaluator, observed)
    if stop_after is not None:
        return _sequential_trials(
            model, sample, lists, n_trials, kind, seed, sampler, chunk, applied, evaluator,
            thresholds, odds, odds_i, int(stop_after),
        )  # fmt: skip
    batches, trial_kind = run_trials(
        model, sample, lists, n_trials, kind, seed, sampler, chunk, applied, evaluator, thresholds
    )
    if thresholds is None:
        trial_odds = np.concatenate([b.odds for b in batches])
        background = np.sort(trial_odds)
        n_trial_neutrinos = sum(b.odds_i.size for b in batches)
    else:
        trial_odds = np.concatenate([b.point for b in batches])
        lo, hi = np.concatenate([b.lo for b in batches]), np.concatenate([b.hi for b in batches])
        background = (lo, hi)
        n_trial_neutrinos = int(n_trials) * np.size(observed.ra)

    # Randomised over ties, so an atom (e.g. many trials at odds 0) does not pile the
    # p-values up at 1; the tie draws come from their own stream of the same seed.
    # Per neutrino: each O_i against the trials' event statistics, as O3 did with its table.
    p_event, p_nu, tie = _significance(background, odds, odds_i, seed)
    info = _trials_info(trial_kind, n_trials, n_trial_neutrinos, applied, evaluator, odds, tie)
    if thresholds is not None:
        info["n_trials_evaluated"] = int(sum(b.n_refined for b in batches))
    result = TrialResult(p_event, p_nu, trial_odds, info)
    if thresholds is not None:
        result.trial_bounds = np.stack([lo, hi], axis=1)
    return result


def _trials_info(trial_kind, n_trials, n_trial_neutrinos, applied, evaluator, odds, tie):
    """The method dict of on-the-fly trials (``tie``: the p-values' own keys)."""
    info = {
        "method": "trials",
        "trial_kind": trial_kind,
        "n_trials": int(n_trials),
        "n_trial_neutrinos": int(n_trial_neutrinos),
        "statistic": applied,
        **tie,
    }
    if applied == "fast":
        from llama.science.fast_trials import SCREEN_FLOOR

        default = "ra_lookup" if hasattr(evaluator, "node_offsets") else "screen"
        info["fast_path"] = getattr(evaluator, "fast_path", default)
        info["screen_floor"] = SCREEN_FLOOR
        info["odds_ranked"] = float(odds)
    return info


def _sequential_trials(
    model, sample, lists, n_trials, kind, seed, sampler, chunk, applied, evaluator,
    thresholds, odds, odds_i, h,
) -> TrialResult:  # fmt: skip
    """:func:`trial_pvalues` with ``stop_after=h`` (:mod:`llama.science.sequential`).

    The tie stream gives the same U's as the fixed-n p-values (the event's, then the
    neutrinos'), then the W's of values that do not stop, then one V per trial.
    """
    from llama.science.sequential import SEQUENTIAL_CONVENTION, SequentialCount

    odds_i = np.ascontiguousarray(odds_i, dtype=np.float64).ravel()
    rng = _tie_rng(seed)
    u_event = rng.uniform()
    u_nu = rng.uniform(size=odds_i.size)
    w_event = rng.uniform()
    w_nu = rng.uniform(size=odds_i.size)
    # the neutrinos first, the event last: the order of ``thresholds``
    count = SequentialCount(
        np.append(odds_i, odds), np.append(u_nu, u_event), np.append(w_nu, w_event),
        h, n_trials, rng,
    )  # fmt: skip

    def until(batch) -> bool:
        if thresholds is None:
            return count.add(batch.odds)
        return count.add(batch.lo, batch.hi)

    batches, trial_kind = run_trials(
        model, sample, lists, n_trials, kind, seed, sampler, chunk, applied, evaluator,
        thresholds, until=until, first_chunk=2 * h,
    )  # fmt: skip
    if thresholds is None:
        trial_odds = np.concatenate([b.odds for b in batches])
        n_trial_neutrinos = sum(b.odds_i.size for b in batches)
    else:
        trial_odds = np.concatenate([b.point for b in batches])
        n_trial_neutrinos = trial_odds.size * odds_i.size
    r = count.p_values()
    tie = {
        "convention": SEQUENTIAL_CONVENTION,
        "seed": seed,
        "p_value_upper": float(r["p_upper"][-1]),
        "n_greater": int(r["n_greater"][-1]),
        "n_equal": int(r["n_equal"][-1]),
        "p_values_neutrino_upper": r["p_upper"][:-1].tolist(),
        "stop_after": h,
        "n_trials_drawn": int(count.drawn),
        # the trials the event's p-value used: its L, or all drawn when it did not stop
        "n_trials_used": int(r["n_used"][-1]),
    }
    info = _trials_info(trial_kind, n_trials, n_trial_neutrinos, applied, evaluator, odds, tie)
    if thresholds is not None:
        info["n_trials_evaluated"] = int(sum(b.n_refined for b in batches))
    result = TrialResult(float(r["p"][-1]), r["p"][:-1], trial_odds, info)
    if thresholds is not None:
        lo = np.concatenate([b.lo for b in batches])
        result.trial_bounds = np.stack([lo, np.concatenate([b.hi for b in batches])], axis=1)
    return result


def _ranked_statistic(evaluator, observed) -> tuple[float, np.ndarray]:
    """The observed list's statistic (event, per neutrino) as ``evaluator`` gives it."""
    n = np.asarray(observed.ra).size
    if n == 0:
        return float(observed.odds), np.asarray(observed.odds_ratio, dtype=float)
    zen = np.where(
        np.isfinite(_zenith(observed)), _zenith(observed), 90.0 + np.asarray(observed.dec)
    )
    az = getattr(observed, "azimuth", None)
    batch = evaluator.evaluate_batch(
        observed.ra, observed.dec, observed.sigma, observed.energy, observed.dt, zen,
        np.array([0, n]), azimuth_deg=az,
    )  # fmt: skip
    return float(batch.odds[0]), batch.odds_i


def _zenith(observed) -> np.ndarray:
    z = getattr(observed, "zenith", None)
    return np.full(observed.ra.size, np.nan) if z is None else np.asarray(z, dtype=float)
