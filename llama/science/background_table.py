"""Background tables, O3's way: sorted event statistics keyed by population,
sensitivity and instruments, and the p-values they give.

A table is built from the results of a ``llama batch`` campaign over simulated GW maps
x background neutrino lists (``llama background build``, :func:`table_from_results`);
an event's p-value is the fraction of the key's statistics above its own, randomised
over ties as :mod:`llama.science.pvalue` says; each O_i is looked up in the same table.

Background table file (netCDF, open with ``xarray.open_dataset(path)``)
------------------------------------------------------------------------
Dimensions ``key`` (one per population/sensitivity/instruments and statistic) and
``rank``::

    key          (key)        str      "population/sensitivity/instruments", e.g.
                                       "bns/O3/H1,L1,V1" (instruments sorted, comma-joined),
                                       for the OPA statistic; other statistics add theirs,
                                       "bns/O3/H1,L1,V1/subthreshold", so one file holds
                                       the tables of both significance handlers
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
from typing import TYPE_CHECKING, Any

import numpy as np

from llama.science.pvalue import TIE_CONVENTION, _significance

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "DEFAULT_STATISTIC",
    "LEGACY_SENSITIVITY",
    "TableResult",
    "background_odds",
    "build_background_table",
    "instruments_key",
    "make_background_table",
    "merge_background_tables",
    "open_background_table",
    "read_background_table",
    "select_background_key",
    "statistic_keys",
    "table_from_results",
    "table_key",
    "table_pvalue",
    "table_significance",
    "write_background_table",
]

#: Sensitivity label of the older single-key ``.npz`` tables, which had none.
LEGACY_SENSITIVITY = "unspecified"
#: The statistic of CoincSignificanceI3Lvc (results variable), whose keys carry no suffix.
DEFAULT_STATISTIC = "odds_ratio"
#: Variables every background table has (see the module docstring).
_TABLE_VARIABLES = ("population", "sensitivity", "instruments", "n_events", "odds")


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


def table_key(
    population: str,
    sensitivity: str,
    instruments: str | Sequence[str],
    statistic: str = DEFAULT_STATISTIC,
) -> str:
    """The ``key`` label of a background table: "population/sensitivity/instruments",
    and "/subthreshold" after it for the sub-threshold statistic.

    Examples
    --------
    >>> table_key("bns", "O3", ["V1", "L1", "H1"])
    'bns/O3/H1,L1,V1'
    >>> table_key("bns", "O3", "H1,L1", statistic="subthreshold_odds_ratio")
    'bns/O3/H1,L1/subthreshold'
    """
    for name, value in (("population", population), ("sensitivity", sensitivity)):
        if not value or "/" in value:
            raise ValueError(f"{name} must be a non-empty label without '/', got {value!r}")
    key = f"{population}/{sensitivity}/{instruments_key(instruments)}"
    if statistic != DEFAULT_STATISTIC:
        key += "/" + statistic.removesuffix("_odds_ratio")
    return key


def statistic_keys(table: xr.Dataset, statistic: str = DEFAULT_STATISTIC) -> xr.Dataset:
    """The keys of ``table`` that hold ``statistic`` (all keys of a table that does not
    say, such as an older ``.npz`` one, count as the default statistic's).

    Examples
    --------
    >>> ds = make_background_table([
    ...     {"population": "bns", "sensitivity": "O3", "instruments": "H1", "odds": [1.0]},
    ...     {"population": "bns", "sensitivity": "O3", "instruments": "H1", "odds": [2.0],
    ...      "statistic": "subthreshold_odds_ratio"}])
    >>> statistic_keys(ds, "subthreshold_odds_ratio").key.values.tolist()
    ['bns/O3/H1/subthreshold']
    """
    if "statistic" not in table.variables:
        return table if statistic == DEFAULT_STATISTIC else table.isel(key=[])
    mask = np.array([str(v) == statistic for v in table.statistic.values], dtype=bool)
    return table.isel(key=np.flatnonzero(mask))


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
        statistic = entry.get("statistic", DEFAULT_STATISTIC)
        key = table_key(entry["population"], entry["sensitivity"], entry["instruments"], statistic)
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
            "layout": "one row per key 'population/sensitivity/instruments' (then "
            "'/subthreshold' for that statistic); odds[key, :n_events]",
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
    """Event and per-neutrino p-values from a background table (docs/science.md, "Background tables").

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
    table = statistic_keys(open_background_table(path))
    if table.sizes["key"] == 0:
        raise ValueError(
            f"{path} has no keys of the event statistic {DEFAULT_STATISTIC!r} (only other "
            "statistics'): build them with 'llama background build RESULTS -o TABLE --append'"
        )
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


#: The handler whose record holds each statistic a table can be built from.
_STATISTIC_HANDLERS = {
    "odds_ratio": "CoincSignificanceI3Lvc",
    "subthreshold_odds_ratio": "CoincSignificanceSubthresholdI3Lvc (it needs lvalert.json)",
}


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


def _source_name(path: str | os.PathLike) -> str:
    """Where results came from, as recorded in a table: a URL as given, a file absolute."""
    return str(path) if "://" in str(path) else str(Path(path).resolve())


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
        Results of ``llama batch --results``: netCDF files, or zarr stores (local, or
        any fsspec URL such as ``s3://bucket/run.zarr``; S3 through the ``AWS_*``
        environment, as ``llama batch``).
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
    if not paths:
        raise ValueError("give at least one results file")
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    skipped: dict[str, int] = {}
    n_read = 0
    options: dict[str, Any] = {}
    from llama.results import is_zarr, read_results

    for path in map(str, paths):
        if "://" in path:
            # a store written by `llama batch --results s3://.../NAME.zarr`
            if not is_zarr(path):
                raise ValueError(
                    f"{path}: only zarr stores (NAME.zarr) are read from URLs; copy a "
                    "netCDF results file to a local disk first"
                )
        elif not (Path(path).is_file() or (is_zarr(path) and Path(path).is_dir())):
            raise FileNotFoundError(f"results file {path} does not exist")
        try:
            # the flat view (one row per event that ran) of either results layout
            ds = read_results(path)
        except (OSError, ValueError, KeyError) as err:
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
                f"failed) recorded it; was {_STATISTIC_HANDLERS.get(statistic, 'its handler')} "
                "in the pipeline?"
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
            "sources": "; ".join(_source_name(p) for p in paths),
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
