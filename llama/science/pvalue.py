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
   ``"scramble"`` (keep times, declinations, errors, energies; RA uniform, as
   IceCube blinding does) or ``"background"`` (N ~ Poisson(R_ν,bg · 1000 s) per list,
   (zenith, energy) resampled jointly from the background sample, dec = zenith - 90,
   RA and dt uniform, σ log-uniform in [0.2°, 3°]; or any ``sampler`` you pass).
2. A background table (:func:`table_significance`), O3's way: the sorted event
   statistics of a batch run over simulated GW maps x background neutrino lists,
   keyed by population, sensitivity and instruments. ``llama background build``
   (:func:`table_from_results`) writes one from ``llama batch --results`` files.

Per-neutrino p-values (same convention): each O_i looked up in the same distribution
of event statistics as the event's O, as O3 did: the table's, or the trials' event
statistics (SCIENCE.md, "Significance").

Background table file (netCDF, open with ``xarray.open_dataset(path)``)
------------------------------------------------------------------------
Dimensions ``key`` (one per population/sensitivity/instruments) and ``rank``::

    key          (key)        str      "population/sensitivity/instruments", e.g.
                                       "bns/O3/H1,L1,V1" (instruments sorted, comma-joined)
    population   (key)        str      "bns" or "bbh"
    sensitivity  (key)        str      free label, e.g. "O3" or "design"
    instruments  (key)        str      e.g. "H1,L1,V1"
    n_events     (key)        int64    number of background statistics of the key
    odds         (key, rank)  float64  the statistics, ascending; NaN beyond n_events
    statistic    (key)        str      results variable they came from ("odds_ratio")
    sources      (key)        str      results files, "; "-joined
    n_read       (key)        int64    events in those results files
    n_skipped    (key)        int64    of which skipped (failed, vetoed, no odds, ...)
    options      (key)        str      JSON of the statistic's options found in the
                                       results ("{}" when they carry none)
    created      (key)        str      UTC time the key was built (ISO 8601)

So ``ds.odds.sel(key="bns/O3/H1,L1,V1").dropna("rank")`` is one key's table. The
older ``.npz`` tables (one key: population, instruments, odds, n_events) are still
read, as sensitivity ``"unspecified"`` (:func:`open_background_table`).

Examples
--------
>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "bg.nc")
>>> build_background_table(np.arange(99.0), "bns", ["L1", "H1"], path)["n_events"]
99
>>> p, method = table_pvalue(97.5, path, seed=1)  # only 98.0 is > 97.5: p in (1/100, 2/100)
>>> 0.01 < p < 0.02, method["p_value_upper"], method["key"]
(True, 0.02, 'bns/O3/H1,L1')
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kernels.trials import offsets_from_counts, tile_offsets
from llama.science import constants as C

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "DEFAULT_N_TRIALS",
    "TIE_CONVENTION",
    "TableResult",
    "TrialResult",
    "background_odds",
    "background_sampler",
    "build_background_table",
    "instruments_key",
    "make_background_table",
    "merge_background_tables",
    "open_background_table",
    "pvalue_from_counts",
    "randomised_pvalues",
    "read_background_table",
    "scramble_sampler",
    "select_background_key",
    "table_from_results",
    "table_key",
    "table_pvalue",
    "table_significance",
    "trial_pvalues",
    "write_background_table",
]

#: Default number of on-the-fly trials: resolves p down to ~1e-3 ((1 + 0) / 2001).
DEFAULT_N_TRIALS = 2000
#: Range of simulated neutrino errors for background lists [deg] (SCIENCE.md).
_SIGMA_RANGE_DEG = (C.SIGMA_FLOOR_DEG, 3.0)
#: How p-values treat ties, as recorded in every method dict.
TIE_CONVENTION = (
    "randomised: (#{background > observed} + U * (#{background == observed} + 1)) "
    "/ (1 + n_background), U ~ Uniform(0, 1) seeded by 'seed'; p_value_upper takes U = 1"
)
#: Second word of the tie generator's seed, so that its draws never share a stream with
#: the trials drawn from the same ``seed`` (the trials stay what they were).
_TIE_STREAM = 0x7469_6573
#: Sensitivity label of the older single-key ``.npz`` tables, which had none.
LEGACY_SENSITIVITY = "unspecified"
#: Variables every background table has (see the module docstring).
_TABLE_VARIABLES = ("population", "sensitivity", "instruments", "n_events", "odds")

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
    p = (n_greater + u * (n_equal + 1.0)) / (bg.size + 1.0)
    p_upper = (n_greater + n_equal + 1.0) / (bg.size + 1.0)
    bad = np.isnan(x)
    return {
        "p": np.where(bad, np.nan, p),
        "p_upper": np.where(bad, np.nan, p_upper),
        "n_greater": n_greater,
        "n_equal": n_equal,
    }


def _significance(event_background, event_odds, neutrino_odds, seed, neutrino_background=None):
    """Event and per-neutrino p-values, and the method keys saying how they were made.

    ``event_background`` and ``neutrino_background`` (default: the same) are sorted.
    """
    rng = _tie_rng(seed)
    u_event = rng.uniform()  # drawn first, so the event's U does not depend on the list
    nu = np.ascontiguousarray(neutrino_odds, dtype=np.float64).ravel()
    u_nu = rng.uniform(size=nu.size)
    event = randomised_pvalues(event_background, [event_odds], [u_event])
    nu_bg = event_background if neutrino_background is None else neutrino_background
    per_nu = randomised_pvalues(nu_bg, nu, u_nu)
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
        The M background statistics.
    method : dict
        How the p-value was obtained, for ``neutrino_gw_combined``; ``p_value_upper``
        and ``p_values_neutrino_upper`` are the conservative (U = 1) values.
    """

    p_value: float
    p_values_neutrino: np.ndarray
    trial_odds: np.ndarray
    method: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableResult:
    """p-values of one event from a background table (:func:`table_significance`).

    Attributes
    ----------
    p_value : float
        Event p-value, randomised over ties.
    p_values_neutrino : ndarray
        Per-neutrino p-values (each O_i against the event statistics), in list order.
    background_odds : ndarray (N,)
        The table's statistics for the key used, ascending.
    method : dict
        method, path, key, population, sensitivity, instruments, n_background,
        convention, seed, p_value_upper, n_greater, n_equal, p_values_neutrino_upper.
    """

    p_value: float
    p_values_neutrino: np.ndarray
    background_odds: np.ndarray
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
    bg_fixed = None
    if sampler is None and kind == "scramble":
        zen = np.where(np.isfinite(_zenith(observed)), _zenith(observed), 90.0 + observed.dec)
        sampler = scramble_sampler(
            observed.ra, observed.dec, observed.sigma, observed.energy, observed.dt, zen
        )
        # Scrambling RA keeps (zenith, energy), hence B_i and its energies: compute them
        # once; the azimuth (doublets) follows the new RA through the detector frame.
        bg_fixed = model.background_terms(zen, observed.energy)
    elif sampler is None and kind == "background":
        sampler = background_sampler(model.background)
    elif sampler is None:
        raise ValueError(f"kind must be 'scramble' or 'background', got {kind!r}")

    odds_parts, odds_i_parts = [], []
    done = 0
    while done < n_trials:
        m = min(chunk, n_trials - done)
        ra, dec, sigma, energy, dt, zen, offsets = sampler(rng, m)
        bg = None if bg_fixed is None else type(bg_fixed)(*(np.tile(a, m) for a in bg_fixed))
        batch = model.evaluate_batch(ra, dec, sigma, energy, dt, zen, offsets, background_terms=bg)
        odds_parts.append(batch.odds)
        odds_i_parts.append(batch.odds_i)
        done += m
    trial_odds = np.concatenate(odds_parts)
    trial_odds_i = np.concatenate(odds_i_parts)

    # Randomised over ties, so an atom (e.g. many trials at odds 0) does not pile the
    # p-values up at 1; the tie draws come from their own stream of the same seed.
    # Per neutrino: each O_i against the trials' event statistics, as O3 did with its table.
    p_event, p_nu, tie = _significance(
        np.sort(trial_odds), observed.odds, observed.odds_ratio, seed
    )
    method = {
        "method": "trials",
        "trial_kind": trial_kind,
        "n_trials": int(n_trials),
        "n_trial_neutrinos": int(trial_odds_i.size),
        **tie,
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


def table_key(population: str, sensitivity: str, instruments: str | Sequence[str]) -> str:
    """The ``key`` label of a background table: "population/sensitivity/instruments".

    Examples
    --------
    >>> table_key("bns", "O3", ["V1", "L1", "H1"])
    'bns/O3/H1,L1,V1'
    """
    for name, value in (("population", population), ("sensitivity", sensitivity)):
        if not value or "/" in value:
            raise ValueError(f"{name} must be a non-empty label without '/', got {value!r}")
    return f"{population}/{sensitivity}/{instruments_key(instruments)}"


def make_background_table(entries: Iterable[dict[str, Any]], **attrs: Any) -> xr.Dataset:
    """Background table Dataset (layout in the module docstring) from one entry per key.

    Parameters
    ----------
    entries : iterable of dict
        Each with ``population``, ``sensitivity``, ``instruments`` (str or sequence)
        and ``odds`` (array_like of event statistics; NaN not allowed, +inf kept), and
        optionally ``statistic``, ``sources``, ``n_read``, ``n_skipped``, ``options``
        (dict) and ``created``.
    **attrs
        Global attributes of the file.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> ds = make_background_table([
    ...     {"population": "bns", "sensitivity": "O3", "instruments": "H1,L1", "odds": [2, 0, 1]},
    ...     {"population": "bbh", "sensitivity": "O3", "instruments": "H1,L1", "odds": [5]},
    ... ])
    >>> ds.key.values.tolist(), ds.n_events.values.tolist(), ds.odds[0].values.tolist()
    (['bns/O3/H1,L1', 'bbh/O3/H1,L1'], [3, 1], [0.0, 1.0, 2.0])
    """
    import xarray as xr

    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows, seen = [], set()
    for entry in entries:
        key = table_key(entry["population"], entry["sensitivity"], entry["instruments"])
        if key in seen:
            raise ValueError(f"key {key} appears twice")
        seen.add(key)
        odds = np.sort(np.asarray(entry["odds"], dtype=np.float64).ravel())
        if odds.size == 0:
            raise ValueError(f"key {key} has no background statistics")
        if np.isnan(odds).any():
            raise ValueError(f"key {key}: background statistics must not be NaN")
        rows.append((key, entry, odds))
    if not rows:
        raise ValueError("a background table needs at least one key")
    width = max(odds.size for _, _, odds in rows)
    # Keys have different sizes: pad with NaN past n_events (ascending values first).
    padded = np.full((len(rows), width), np.nan)
    for k, (_, _, odds) in enumerate(rows):
        padded[k, : odds.size] = odds

    def column(name: str, default: Any) -> list[Any]:
        return [entry.get(name, default) for _, entry, _ in rows]

    data = {
        "population": ("key", [entry["population"] for _, entry, _ in rows]),
        "sensitivity": ("key", [entry["sensitivity"] for _, entry, _ in rows]),
        "instruments": ("key", [instruments_key(entry["instruments"]) for _, entry, _ in rows]),
        "n_events": ("key", np.array([odds.size for _, _, odds in rows], dtype=np.int64)),
        "odds": (("key", "rank"), padded),
        "statistic": ("key", column("statistic", "odds_ratio")),
        "sources": ("key", column("sources", "")),
        "n_read": ("key", np.array(column("n_read", -1), dtype=np.int64)),
        "n_skipped": ("key", np.array(column("n_skipped", -1), dtype=np.int64)),
        "options": ("key", [json.dumps(o, sort_keys=True) for o in column("options", {})]),
        "created": ("key", column("created", now)),
    }
    ds = xr.Dataset(data, coords={"key": [key for key, _, _ in rows]})
    ds["odds"].attrs["description"] = "background event statistics, ascending; NaN padding"
    ds["n_read"].attrs["description"] = "events in the source results (-1: unknown)"
    ds["n_skipped"].attrs["description"] = "source events not used (-1: unknown)"
    ds.attrs.update(
        {
            "title": "LLAMA background table",
            "layout": "one row per key 'population/sensitivity/instruments'; odds[key, :n_events]",
            "convention": TIE_CONVENTION,
            **{k: v for k, v in attrs.items() if v is not None},
        }
    )
    return ds


def write_background_table(table: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a background table Dataset as netCDF (h5netcdf), atomically.

    Examples
    --------
    >>> import tempfile, os
    >>> ds = make_background_table([{"population": "bns", "sensitivity": "O3",
    ...                              "instruments": "H1", "odds": [1.0]}])
    >>> write_background_table(ds, os.path.join(tempfile.mkdtemp(), "t.nc")).name
    't.nc'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    # Strings as variable-length, with no encoding carried over from a file read
    # earlier: a fixed width from there would cut longer labels added since.
    table = table.copy()
    for name in list(table.variables):
        var = table[name].variable
        var.encoding = {}
        if var.dtype.kind == "U":
            table[name] = var.astype(object)
    try:
        table.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)  # atomic: a killed build never leaves half a table
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def build_background_table(
    odds_values,
    population: str,
    instruments: str | Sequence[str],
    path: str | os.PathLike,
    sensitivity: str = "O3",
) -> dict[str, Any]:
    """Write a one-key background table of sorted event statistics.

    Parameters
    ----------
    odds_values : array_like
        Event statistics O of background events (e.g. a batch run's results).
    population : {"bns", "bbh"}
    instruments : str or sequence of str
        Detector network of the background events.
    path : path-like
        Output file, written atomically: netCDF (module docstring) unless it ends in
        ``.npz`` (the older single-key format, which has no sensitivity).
    sensitivity : str
        Sensitivity label of the key (netCDF only).

    Returns
    -------
    dict
        population, instruments, n_events, path.
    """
    odds = np.asarray(odds_values, dtype=np.float64).ravel()
    if odds.size == 0 or not np.all(np.isfinite(odds)):
        raise ValueError("a background table needs at least one value, all finite")
    path = Path(path)
    key = instruments_key(instruments)
    if path.suffix == ".npz":
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(
            tmp,
            population=np.array(population),
            instruments=np.array(key),
            odds=np.sort(odds),
            n_events=np.array(odds.size),
        )
        os.replace(tmp, path)  # atomic: a killed run never leaves half a table
    else:
        entry = {"population": population, "sensitivity": sensitivity, "instruments": key}
        write_background_table(make_background_table([{**entry, "odds": odds}]), path)
    return {
        "population": population,
        "instruments": key,
        "n_events": int(odds.size),
        "path": str(path),
    }


def read_background_table(path: str | os.PathLike) -> dict[str, Any]:
    """Read an older ``.npz`` table: population, instruments, odds (ascending), n_events.

    For the netCDF tables use :func:`open_background_table`.
    """
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


def open_background_table(path: str | os.PathLike) -> xr.Dataset:
    """Load a background table (netCDF, or an older ``.npz`` converted in memory).

    The ``.npz`` tables become one key with sensitivity ``"unspecified"``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not a background table, or a key's statistics are not sorted.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "old.npz")
    >>> _ = build_background_table([3.0, 1.0], "bbh", "H1,L1", path)
    >>> open_background_table(path).key.values.tolist()
    ['bbh/unspecified/H1,L1']
    """
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"background table {path} does not exist")
    if path.suffix == ".npz":
        old = read_background_table(path)
        entry = {"population": old["population"], "sensitivity": LEGACY_SENSITIVITY}
        entry.update(instruments=old["instruments"], odds=old["odds"], sources=str(path))
        return make_background_table([entry], converted_from=str(path))
    try:
        ds = xr.load_dataset(path, engine="h5netcdf")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a netCDF background table ({err})") from None
    missing = [name for name in _TABLE_VARIABLES if name not in ds.variables]
    if missing or "key" not in ds.dims:
        raise ValueError(
            f"{path} is not a background table: no {', '.join(missing or ['key dimension'])} "
            "(build one with 'llama background build')"
        )
    for key in ds.key.values:
        odds = background_odds(ds, str(key))
        if np.any(np.diff(odds) < 0) or np.isnan(odds).any():
            raise ValueError(f"{path}: the statistics of key {key} are not sorted")
    return ds


def background_odds(table: xr.Dataset, key: str) -> np.ndarray:
    """The sorted statistics of one key of a table (the first ``n_events``)."""
    row = table.sel(key=key)
    return np.asarray(row.odds.values[: int(row.n_events)], dtype=np.float64)


def merge_background_tables(*tables: xr.Dataset) -> xr.Dataset:
    """One table with the keys of all ``tables`` (a key in two of them is an error).

    The attributes are the first table's.

    Examples
    --------
    >>> a = make_background_table([{"population": "bns", "sensitivity": "O3",
    ...                             "instruments": "H1", "odds": [1.0, 2.0]}])
    >>> b = make_background_table([{"population": "bns", "sensitivity": "design",
    ...                             "instruments": "H1", "odds": [3.0]}])
    >>> merge_background_tables(a, b).n_events.values.tolist()
    [2, 1]
    """
    entries = []
    for table in tables:
        for key in map(str, table.key.values):
            row = table.sel(key=key)
            entry = {name: row[name].values.item() for name in table.data_vars if name != "odds"}
            entry["odds"] = background_odds(table, key)
            entry["options"] = json.loads(entry.get("options") or "{}")
            entries.append(entry)
    try:
        return make_background_table(entries, **(tables[0].attrs if tables else {}))
    except ValueError as err:
        raise ValueError(f"cannot merge the tables: {err}") from None


def select_background_key(
    table: xr.Dataset,
    population: str | None = None,
    instruments: str | Sequence[str] | None = None,
    sensitivity: str | None = None,
    where: str = "the table",
) -> str:
    """The key of ``table`` for an event; None matches any value of that field.

    ``sensitivity=None`` takes the file's only sensitivity and is an error when it has
    several (name one, e.g. with ``LLAMA_BACKGROUND_SENSITIVITY``).

    Examples
    --------
    >>> ds = make_background_table([
    ...     {"population": p, "sensitivity": "O3", "instruments": i, "odds": [1.0]}
    ...     for p in ("bns", "bbh") for i in ("H1,L1", "H1,L1,V1")])
    >>> select_background_key(ds, "bbh", ["V1", "L1", "H1"])
    'bbh/O3/H1,L1,V1'
    """
    keys = [str(k) for k in table.key.values]
    sens = sorted({str(s) for s in table.sensitivity.values})
    if sensitivity is None and len(sens) > 1:
        raise ValueError(
            f"{where} holds sensitivities {', '.join(sens)}: name one "
            "(LLAMA_BACKGROUND_SENSITIVITY)"
        )
    want = {
        "population": population,
        "sensitivity": sensitivity,
        "instruments": None if instruments is None else instruments_key(instruments),
    }
    match = [
        key
        for k, key in enumerate(keys)
        if all(v is None or str(table[name].values[k]) == v for name, v in want.items())
    ]
    if len(match) != 1:
        asked = ", ".join(f"{name}={v!r}" for name, v in want.items() if v is not None)
        why = "no key" if not match else f"{len(match)} keys"
        raise ValueError(
            f"{why} of {where} match{'es' if not match else ''} {asked or 'the event'}; "
            f"keys available: {', '.join(keys)}"
        )
    return match[0]


def table_significance(
    event_odds: float,
    neutrino_odds,
    path: str | os.PathLike,
    population: str | None = None,
    instruments: str | Sequence[str] | None = None,
    sensitivity: str | None = None,
    seed: int | None = None,
) -> TableResult:
    """Event and per-neutrino p-values from a background table (SCIENCE.md).

    The key is chosen from the event's ``population``, ``instruments`` and
    ``sensitivity`` (:func:`select_background_key`). The event p-value is the fraction
    of the key's background statistics >= ``event_odds``, and each neutrino's is the
    same fraction for its O_i, both randomised over ties (module docstring).

    Parameters
    ----------
    event_odds : float
        Observed event statistic O (dimensionless).
    neutrino_odds : array_like
        Per-neutrino O_i, in list order (may be empty).
    path : path-like
        The table (netCDF, or an older ``.npz``).
    population, instruments, sensitivity : str, optional
        The event's; None matches any (sensitivity: the file's only one).
    seed : int, optional
        Seed of the tie-breaking draws U (recorded in ``method``).

    Returns
    -------
    TableResult

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "bg.nc")
    >>> _ = build_background_table([0.0] * 90 + [1.0] * 9, "bns", "H1,L1", path)
    >>> r = table_significance(0.5, [0.0, 0.5], path, "bns", ["L1", "H1"], seed=3)
    >>> r.method["p_value_upper"], r.method["p_values_neutrino_upper"]
    (0.1, [1.0, 0.1])
    """
    table = open_background_table(path)
    key = select_background_key(table, population, instruments, sensitivity, where=str(path))
    odds = background_odds(table, key)
    p_event, p_nu, tie = _significance(odds, event_odds, neutrino_odds, seed)
    row = table.sel(key=key)
    method = {
        "method": "background_table",
        "path": str(path),
        "key": key,
        "population": str(row.population.values),
        "sensitivity": str(row.sensitivity.values),
        "instruments": str(row.instruments.values),
        "n_background": int(odds.size),
        **tie,
    }
    return TableResult(p_event, p_nu, odds, method)


def table_pvalue(
    observed_odds: float | np.ndarray,
    path: str | os.PathLike,
    population: str | None = None,
    instruments: str | Sequence[str] | None = None,
    sensitivity: str | None = None,
    seed: int | None = None,
) -> tuple[float | np.ndarray, dict[str, Any]]:
    """p-value(s) of observed event statistics from a background table.

    Like :func:`table_significance` for one statistic or an array of them (each with
    its own U); ``method["p_value_upper"]`` is a float or a list to match.

    Returns
    -------
    p, method : float or ndarray, dict
    """
    values = np.atleast_1d(np.asarray(observed_odds, dtype=np.float64))
    result = table_significance(
        values[0] if values.size else 0.0,
        values[1:],
        path,
        population,
        instruments,
        sensitivity,
        seed,
    )
    method = dict(result.method)
    upper = [method.pop("p_value_upper"), *method.pop("p_values_neutrino_upper")]
    p = np.concatenate([[result.p_value], result.p_values_neutrino])[: values.size]
    if np.ndim(observed_odds) == 0:
        method["p_value_upper"] = upper[0]
        return float(p[0]), method
    for name in ("n_greater", "n_equal"):
        method.pop(name)  # they describe the first value only
    method["p_value_upper"] = upper[: values.size]
    return p, method


def _results_column(ds: xr.Dataset, name: str) -> np.ndarray | None:
    """A results variable as a numpy array, None when the Dataset lacks it."""
    return None if name not in ds.variables else np.asarray(ds[name].values)


def _label_events(
    ds: xr.Dataset, names: Sequence[str], allowed: Sequence[str] | None, canon: Callable[[str], str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-event labels from the first of the results variables ``names``, and which
    are allowed.

    Events that do not say (no variable, or an empty string) take the single allowed
    value when exactly one is given, since the caller then knows what they are.
    """
    raw = None
    for candidate in names:
        raw = _results_column(ds, candidate)
        if raw is not None:
            break
    if raw is None:
        raw = np.full(ds.sizes["event"], "", dtype=object)
    labels = np.array([canon(str(v)) for v in raw], dtype=object)
    if not allowed:
        return labels, labels != ""
    allowed = [canon(a) for a in allowed]
    if len(allowed) == 1:
        labels[labels == ""] = allowed[0]
    return labels, np.isin(labels, allowed)


def _usable_events(
    ds: xr.Dataset,
    odds: np.ndarray,
    statistic: str,
    populations: Sequence[str] | None,
    instruments: Sequence[str] | None,
    skipped: dict[str, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(population, instruments, usable) per event; counts the unusable in ``skipped``."""
    prefix = statistic.removesuffix("odds_ratio") if statistic.endswith("odds_ratio") else ""
    pops, pop_ok = _label_events(ds, [prefix + "population"], populations, str.strip)
    # The network is the GW event's, recorded by SkymapInfo (else LVCGraceDbEventData).
    nets, net_ok = _label_events(
        ds, [prefix + "instruments", "instruments", "gw_instruments"], instruments, instruments_key
    )
    states = _results_column(ds, "state")
    if states is None:
        states = np.full(odds.size, "done", dtype=object)
    # First reason wins, so each skipped event is counted once.
    reasons = [(states == s, str(s) or "no state") for s in sorted(set(map(str, states)))]
    reasons = [(m, why) for m, why in reasons if why not in ("done", "up to date")]
    reasons += [
        (np.isnan(odds), f"no {statistic}"),
        (pops == "", "no population"),
        (~pop_ok, "other population"),
        (nets == "", "no instruments"),
        (~net_ok, "other instruments"),
    ]
    keep = np.ones(odds.size, dtype=bool)
    for mask, why in reasons:
        count = int(np.sum(keep & mask))
        if count:
            skipped[why] = skipped.get(why, 0) + count
        keep &= ~mask
    return pops, nets, keep


def table_from_results(
    paths: Sequence[str | os.PathLike],
    sensitivity: str = "O3",
    populations: Sequence[str] | None = None,
    instruments: Sequence[str] | None = None,
    statistic: str = "odds_ratio",
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Background table from results Datasets of ``llama batch --results``.

    Events are grouped by population and instruments (the results' ``population``
    and ``instruments`` variables; ``statistic``'s prefix, e.g. ``subthreshold_``, is
    put in front of both). Events that failed or were vetoed, have no statistic (NaN),
    or lack a population or instruments are skipped and counted.

    Parameters
    ----------
    paths : sequence of path-like
        Results files (netCDF).
    sensitivity : str
        Sensitivity label of every key built (e.g. "O3", "design").
    populations, instruments : sequence of str, optional
        Keep only these; when exactly one is given, events that do not say take it.
    statistic : str
        The results variable holding the event statistic.

    Returns
    -------
    table, report : xarray.Dataset, dict
        ``report``: n_read, n_used, skipped (reason -> count), keys (key -> count).

    Raises
    ------
    FileNotFoundError, ValueError
        A missing file, a file without the statistic, or nothing left to build from.
    """
    import xarray as xr

    if not paths:
        raise ValueError("give at least one results file")
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    skipped: dict[str, int] = {}
    n_read = 0
    options: dict[str, Any] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"results file {path} does not exist")
        try:
            ds = xr.load_dataset(path, engine="h5netcdf")
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} is not a results Dataset ({err})") from None
        if "event" not in ds.dims:
            raise ValueError(f"{path} is not a results Dataset of llama batch (no 'event')")
        n = ds.sizes["event"]
        n_read += n
        odds = _results_column(ds, statistic)
        if odds is None:
            states = _results_column(ds, "state")
            failed = 0 if states is None else int(np.sum(states == "failed"))
            raise ValueError(
                f"{path} has no {statistic!r} variable: none of its {n} events ({failed} "
                "failed) recorded it; was CoincSignificanceI3Lvc in the pipeline?"
            )
        odds = np.asarray(odds, dtype=np.float64)
        pops, nets, keep = _usable_events(ds, odds, statistic, populations, instruments, skipped)
        for k in np.flatnonzero(keep):
            groups.setdefault((pops[k], nets[k]), []).append(odds[k : k + 1])
        # The statistic's options, when the results carry them (attributes or option_*).
        options.update({k: v for k, v in ds.attrs.items() if k.startswith("option")})
        for name in ds.data_vars:
            if str(name).startswith("option_"):
                values = {str(v) for v in np.asarray(ds[name].values)}
                options[str(name)] = values.pop() if len(values) == 1 else sorted(values)
    n_used = sum(len(v) for v in groups.values())
    summary = ", ".join(f"{why} {count}" for why, count in sorted(skipped.items()))
    # A group asked for by name but empty is an error, not a silently missing key.
    for position, wanted, canon in ((0, populations, str.strip), (1, instruments, instruments_key)):
        for value in wanted or []:
            if not any(key[position] == canon(value) for key in groups):
                raise ValueError(
                    f"no usable events for {canon(value)!r} in the results ({n_read} read; "
                    f"skipped: {summary or 'none'})"
                )
    if n_used == 0:
        raise ValueError(f"no usable events in the results ({n_read} read; skipped: {summary})")
    created = datetime.now(UTC).isoformat(timespec="seconds")
    entries = [
        {
            "population": pop,
            "sensitivity": sensitivity,
            "instruments": net,
            "odds": np.concatenate(parts),
            "statistic": statistic,
            "sources": "; ".join(str(Path(p).resolve()) for p in paths),
            "n_read": n_read,
            "n_skipped": n_read - n_used,
            "options": options,
            "created": created,
        }
        for (pop, net), parts in sorted(groups.items())
    ]
    table = make_background_table(entries)
    report = {
        "n_read": n_read,
        "n_used": n_used,
        "skipped": skipped,
        "keys": {
            str(k): int(n) for k, n in zip(table.key.values, table.n_events.values, strict=True)
        },
    }
    return table, report
