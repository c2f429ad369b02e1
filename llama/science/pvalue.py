"""Significance of the LLAMA statistic: on-the-fly trials and background tables.

Convention (both sources): with K background statistics >= the observed one out of
N, the p-value is ``(1 + K) / (1 + N)``. It counts the observation as one of the
draws, so it is never 0 and is exactly uniform (discrete) under the null; its floor
is 1 / (1 + N) (about 5e-4 with the default 2000 trials).

Sources
-------
1. On-the-fly trials (:func:`trial_pvalues`): keep the GW map, redraw the neutrinos M
   times and evaluate all M lists in one batched call of
   :meth:`llama.science.odds.EventModel.evaluate_batch`. Two ways to redraw:
   ``"scramble"`` (keep times, declinations, errors, energies; RA uniform, as
   IceCube blinding does) or ``"background"`` (N ~ Poisson(R_ν,bg · 1000 s) per list,
   (zenith, energy) resampled jointly from the background sample, dec = zenith - 90,
   RA and dt uniform, σ log-uniform in [0.2°, 3°]; or any ``sampler`` you pass).
2. A background table (:func:`build_background_table`, :func:`table_pvalue`): an
   ``.npz`` file with ``population`` (str), ``instruments`` (str, sorted and
   comma-joined, e.g. "H1,L1,V1"), ``odds`` (float64, ascending) and ``n_events``;
   built from a batch run's event statistics; looked up by binary search.

Per-neutrino p-values: the fraction (same convention) of all trial neutrinos' O_i
that are >= the neutrino's O_i.

Examples
--------
>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "bg.npz")
>>> build_background_table(np.arange(99.0), "bns", ["L1", "H1"], path)["n_events"]
99
>>> table_pvalue(97.5, path)[0]  # only 98.0 is >= 97.5: (1 + 1) / (1 + 99)
0.02
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kernels.trials import count_at_least, offsets_from_counts, tile_offsets
from llama.science import constants as C

__all__ = [
    "DEFAULT_N_TRIALS",
    "TrialResult",
    "pvalue_from_counts",
    "trial_pvalues",
    "scramble_sampler",
    "background_sampler",
    "build_background_table",
    "read_background_table",
    "table_pvalue",
    "instruments_key",
]

#: Default number of on-the-fly trials: resolves p down to ~1e-3 ((1 + 0) / 2001).
DEFAULT_N_TRIALS = 2000
#: Range of simulated neutrino errors for background lists [deg] (SCIENCE.md).
_SIGMA_RANGE_DEG = (C.SIGMA_FLOOR_DEG, 3.0)

#: A sampler returns (ra, dec, sigma [deg], energy [GeV], dt [s], zenith [deg], offsets).
Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, ...]]


def pvalue_from_counts(n_at_least, n_total) -> np.ndarray:
    """(1 + K) / (1 + N).

    Examples
    --------
    >>> float(pvalue_from_counts(0, 999))
    0.001
    """
    return (1.0 + np.asarray(n_at_least, dtype=float)) / (1.0 + float(n_total))


@dataclass
class TrialResult:
    """On-the-fly trials for one event.

    Attributes
    ----------
    p_value : float
        Event p-value, (1 + K) / (1 + M).
    p_values_neutrino : ndarray
        Per-neutrino p-values, in list order.
    trial_odds : ndarray (M,)
        The M background statistics.
    method : dict
        How the p-value was obtained, for ``neutrino_gw_combined``.
    """

    p_value: float
    p_values_neutrino: np.ndarray
    trial_odds: np.ndarray
    method: dict[str, Any] = field(default_factory=dict)


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
    zen_pool = background.zenith_sorted
    en_pool = background.energy_by_zenith
    mean = rate_hz * 2.0 * C.SEARCH_HALF_WINDOW_S

    def draw(rng: np.random.Generator, m: int):
        counts = rng.poisson(mean, m)
        n = int(counts.sum())
        pick = rng.integers(0, zen_pool.size, n)
        zen = zen_pool[pick]
        lo, hi = np.log(_SIGMA_RANGE_DEG[0]), np.log(_SIGMA_RANGE_DEG[1])
        return (
            rng.uniform(0.0, 360.0, n),
            np.clip(zen - 90.0, -90.0, 90.0),  # IceCube at the South Pole: dec = zenith - 90
            np.exp(rng.uniform(lo, hi, n)),
            en_pool[pick],
            rng.uniform(-C.SEARCH_HALF_WINDOW_S, C.SEARCH_HALF_WINDOW_S, n),
            zen,
            offsets_from_counts(counts),
        )

    return draw


def trial_pvalues(
    model,
    observed,
    n_trials: int = DEFAULT_N_TRIALS,
    kind: Literal["scramble", "background"] = "scramble",
    seed: int | None = None,
    sampler: Sampler | None = None,
    chunk: int = 20000,
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
    kind : {"scramble", "background"}
        How to redraw the neutrinos (ignored when ``sampler`` is given).
    seed : int, optional
        Seed of the random generator (recorded in ``method``).
    sampler : callable, optional
        ``sampler(rng, m) -> (ra, dec, sigma, energy, dt, zenith, offsets)``.
    chunk : int
        Trials per batched call, bounding memory.

    Returns
    -------
    TrialResult
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    rng = np.random.default_rng(seed)
    trial_kind = "custom" if sampler is not None else kind
    b_fixed = None
    if sampler is None and kind == "scramble":
        zen = np.where(np.isfinite(_zenith(observed)), _zenith(observed), 90.0 + observed.dec)
        sampler = scramble_sampler(
            observed.ra, observed.dec, observed.sigma, observed.energy, observed.dt, zen
        )
        # Scrambling RA keeps (zenith, energy), hence B_i: compute it once.
        b_fixed = model.background.density(zen, observed.energy)
    elif sampler is None and kind == "background":
        sampler = background_sampler(model.background)
    elif sampler is None:
        raise ValueError(f"kind must be 'scramble' or 'background', got {kind!r}")

    odds_parts, odds_i_parts = [], []
    done = 0
    while done < n_trials:
        m = min(chunk, n_trials - done)
        ra, dec, sigma, energy, dt, zen, offsets = sampler(rng, m)
        b = None if b_fixed is None else np.tile(b_fixed, m)
        batch = model.evaluate_batch(ra, dec, sigma, energy, dt, zen, offsets, b_density=b)
        odds_parts.append(batch.odds)
        odds_i_parts.append(batch.odds_i)
        done += m
    trial_odds = np.concatenate(odds_parts)
    trial_odds_i = np.concatenate(odds_i_parts)

    obs = np.array([observed.odds], dtype=np.float64)
    p_event = float(pvalue_from_counts(count_at_least(trial_odds, obs)[0], trial_odds.size))
    obs_i = np.ascontiguousarray(observed.odds_ratio, dtype=np.float64)
    p_nu = pvalue_from_counts(count_at_least(trial_odds_i, obs_i), trial_odds_i.size)
    method = {
        "method": "trials",
        "trial_kind": trial_kind,
        "n_trials": int(n_trials),
        "n_trial_neutrinos": int(trial_odds_i.size),
        "seed": seed,
        "convention": "(1 + #{trials >= observed}) / (1 + n_trials)",
    }
    return TrialResult(p_event, p_nu, trial_odds, method)


def _zenith(observed) -> np.ndarray:
    z = getattr(observed, "zenith", None)
    return np.full(observed.ra.size, np.nan) if z is None else np.asarray(z, dtype=float)


def instruments_key(instruments: str | Sequence[str]) -> str:
    """Canonical instruments key: sorted, comma-joined.

    Examples
    --------
    >>> instruments_key(["V1", "H1", "L1"])
    'H1,L1,V1'
    >>> instruments_key("L1,H1")
    'H1,L1'
    """
    if isinstance(instruments, str):
        instruments = [s for s in instruments.replace(" ", ",").split(",") if s]
    return ",".join(sorted(set(instruments)))


def build_background_table(
    odds_values,
    population: str,
    instruments: str | Sequence[str],
    path: str | os.PathLike,
) -> dict[str, Any]:
    """Write a background table (``.npz``) of sorted event statistics.

    Parameters
    ----------
    odds_values : array_like
        Event statistics O of background events (e.g. a batch run's results).
    population : {"bns", "bbh"}
    instruments : str or sequence of str
        Detector network of the background events.
    path : path-like
        Output file (``.npz``; written atomically).

    Returns
    -------
    dict
        population, instruments, n_events, path.
    """
    odds = np.asarray(odds_values, dtype=np.float64).ravel()
    if odds.size == 0 or not np.all(np.isfinite(odds)):
        raise ValueError("a background table needs at least one value, all finite")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    key = instruments_key(instruments)
    np.savez(
        tmp,
        population=np.array(population),
        instruments=np.array(key),
        odds=np.sort(odds),
        n_events=np.array(odds.size),
    )
    os.replace(tmp, path)  # atomic: a killed run never leaves half a table
    return {
        "population": population,
        "instruments": key,
        "n_events": int(odds.size),
        "path": str(path),
    }


def read_background_table(path: str | os.PathLike) -> dict[str, Any]:
    """Read a background table: population, instruments, odds (ascending), n_events."""
    with np.load(path, allow_pickle=False) as data:
        odds = np.asarray(data["odds"], dtype=np.float64)
        table = {
            "population": str(data["population"]),
            "instruments": str(data["instruments"]),
            "odds": odds,
            "n_events": int(data["n_events"]),
        }
    if np.any(np.diff(odds) < 0):
        raise ValueError(f"{path}: background odds are not sorted")
    return table


def table_pvalue(
    observed_odds: float | np.ndarray,
    path: str | os.PathLike,
    population: str | None = None,
    instruments: str | Sequence[str] | None = None,
) -> tuple[float | np.ndarray, dict[str, Any]]:
    """p-value(s) of observed statistics from a background table.

    ``population`` / ``instruments``, when given, must match the table's.

    Returns
    -------
    p, method : float or ndarray, dict
    """
    table = read_background_table(path)
    if population is not None and population != table["population"]:
        raise ValueError(f"table {path} is for {table['population']!r}, not {population!r}")
    if instruments is not None and instruments_key(instruments) != table["instruments"]:
        raise ValueError(f"table {path} is for {table['instruments']!r}, not {instruments!r}")
    odds = table["odds"]
    x = np.atleast_1d(np.asarray(observed_odds, dtype=np.float64))
    k = odds.size - np.searchsorted(odds, x, side="left")
    p = pvalue_from_counts(k, odds.size)
    method = {
        "method": "background_table",
        "path": str(path),
        "population": table["population"],
        "instruments": table["instruments"],
        "n_background": int(odds.size),
        "convention": "(1 + #{background >= observed}) / (1 + n_background)",
    }
    return (float(p[0]) if np.ndim(observed_odds) == 0 else p), method
