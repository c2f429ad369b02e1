"""Results of a sweep as labelled arrays (an xarray Dataset), and their files.

The layout follows the sweep (`SweepLayout`):

- a Cartesian product has one dimension per params name, whose values are its
  coordinate: ``ds.odds_ratio.sel(graceid="S190425z", neutrinos="nu3.json")``, and
  a 2-D sweep plots as a grid (``ds.p_value.plot()``);
- ``--random N`` draws have a ``draw`` dimension with each params name as a
  coordinate along it; ``ds.set_index(draw=[...]).unstack("draw")`` turns them into
  the grid (see `unstack_draws`; draws are made with replacement, so repeats are
  dropped first);
- a run without params has one ``event`` of length 1.

Per event: ``state`` (int8 codes with CF ``flag_values``/``flag_meanings``; 0 is a
hole, an event not run yet), ``directory`` (a coordinate), ``eventid``, ``error`` and
every scalar record of the handlers (``odds_ratio``, ``p_value``, ``population``,
``distmean``, ...; a record named like a params name gets the prefix ``event_``).
Per neutrino, along a padded ``neutrino`` dimension with ``neutrino_count`` the
number used: ``neutrino_ra``, ``neutrino_dec``, ``neutrino_sigma``,
``neutrino_energy``, ``neutrino_dt``, ``neutrino_psf_overlap``, the terms
``neutrino_p_h_s1`` ... ``neutrino_p_h_0``, ``neutrino_odds_ratio`` and
``neutrino_p_value`` (read from each event's ``significance_lvc-i3.json``). Every
variable has CF ``long_name`` and, for numbers, ``units`` (`llama.results_schema`).

`read_results` gives the flat view of any results file (one row per event that ran,
dimension ``event``, ``state`` as text, params as ``param_<name>``), the layout of
files written before the labelled one.

Examples
--------
>>> from llama.batch.runner import EventOutcome
>>> layout = SweepLayout({"graceid": ("S1", "S2"), "nu": ("a", "b", "c")})
>>> outcomes = [
...     EventOutcome(1, "S1-b", "/ev/S1-b", {"graceid": "S1", "nu": "b"}, "done",
...                  records={"odds_ratio": 2.5}),
...     EventOutcome(3, "S2-a", "/ev/S2-a", {"graceid": "S2", "nu": "a"}, "failed"),
... ]
>>> ds = outcomes_to_dataset(outcomes, layout=layout)
>>> dict(ds.sizes)
{'graceid': 2, 'nu': 3}
>>> float(ds.odds_ratio.sel(graceid="S1", nu="b")), str(ds.directory.sel(graceid="S2", nu="a").values)
(2.5, '/ev/S2-a')
>>> state_names(ds.state).sel(graceid="S2").values.tolist()
['failed', 'not run', 'not run']
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama.results_schema import (
    NEUTRINO_FIELDS,
    NEUTRINO_RECORD,
    SIGNIFICANCE_FILE,
    STATE_MEANINGS,
    cf_attrs,
    neutrino_columns,
    state_attrs,
    state_code,
    state_name,
)

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr

    from llama.batch.runner import EventOutcome

__all__ = [
    "ResultRow",
    "SweepLayout",
    "event_table",
    "is_zarr",
    "open_results",
    "outcomes_to_dataset",
    "read_results",
    "row_from_outcome",
    "rows_to_dataset",
    "state_names",
    "unstack_draws",
    "warm_netcdf_writer",
    "write_results",
]

#: Names the layout itself uses: a record of the same name gets the prefix ``event_``.
_RESERVED = {
    "state",
    "directory",
    "eventid",
    "error",
    "draw",
    "event",
    "neutrino",
    "neutrino_count",
}


@dataclass(frozen=True)
class SweepLayout:
    """The shape of a sweep's results: its params and how vectors were made of them.

    Parameters
    ----------
    params : mapping of str to sequence of str
        The params names and their values, in the order given (the last name varies
        fastest in the Cartesian product, as `llama.batch.sweep.product_vectors`).
    random : int, optional
        ``--random N``: N draws (negative: endless); None for the Cartesian product.
    seed : int, optional
        Seed of the draws.

    Examples
    --------
    >>> grid = SweepLayout({"a": ("1", "2"), "b": ("x", "y", "z")})
    >>> grid.kind, grid.dims, grid.shape(), grid.position(4)
    ('grid', ('a', 'b'), (2, 3), (1, 1))
    >>> SweepLayout({"a": ("1", "2")}, random=5, seed=1).dims
    ('draw',)
    """

    params: Mapping[str, Sequence[str]]
    random: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", {k: tuple(v) for k, v in self.params.items()})

    @property
    def kind(self) -> str:
        """ "grid", "draw" or "event" (no params)."""
        if self.random is not None:
            return "draw"
        return "grid" if self.params else "event"

    @property
    def dims(self) -> tuple[str, ...]:
        """The dimensions of a per-event variable."""
        return {"grid": tuple(self.params), "draw": ("draw",), "event": ("event",)}[self.kind]

    def shape(self, draws: int = 0) -> tuple[int, ...]:
        """The per-event shape; an endless sweep has `draws` so far."""
        if self.kind == "grid":
            return tuple(len(v) for v in self.params.values())
        if self.kind == "draw":
            # an endless sweep starts with draw 0 as a hole: a store made empty would
            # get float64 text arrays (xarray cannot tell the dtype of no values)
            return (self.random if self.random >= 0 else max(draws, 1),)
        return (1,)

    def position(self, index: int) -> tuple[int, ...]:
        """Where event `index` (its place in the order vectors are made) goes."""
        if self.kind == "grid":
            import numpy as np

            return tuple(int(i) for i in np.unravel_index(index, self.shape()))
        return (index,) if self.kind == "draw" else (0,)

    def draw_values(self, n: int | None = None) -> dict[str, list[str]]:
        """The params values of draws 0..n-1 (the same draws the run makes)."""
        from llama.batch.sweep import random_vectors

        n = self.random if n is None else n
        names = list(self.params)
        vectors = list(random_vectors(self.params, n, self.seed)) if n and names else []
        return {name: [v[name] for v in vectors] for name in names}

    def to_json(self) -> str:
        """The layout as JSON (the ``llama_layout`` attribute of the results)."""
        return json.dumps({"params": self.params, "random": self.random, "seed": self.seed})

    @classmethod
    def from_json(cls, text: str) -> SweepLayout:
        """The layout from `to_json`'s text."""
        data = json.loads(text)
        return cls(data["params"], data.get("random"), data.get("seed"))

    def coords(self, draws: int = 0) -> dict[str, Any]:
        """Coordinates of the per-event dimensions (params values, draw numbers)."""
        import numpy as np

        # fixed-width text: zarr gives variable-width text back as numpy's StringDType,
        # which xarray cannot put on a plot axis
        if self.kind == "grid":
            return {n: (n, np.array(v, dtype=str)) for n, v in self.params.items()}
        if self.kind == "event":
            return {"event": ("event", np.zeros(1, dtype=np.int64))}
        size = self.shape(draws)[0]
        out: dict[str, Any] = {"draw": ("draw", np.arange(size, dtype=np.int64))}
        known = self.draw_values(size) if self.random >= 0 else {n: [] for n in self.params}
        width = max((len(v) for vs in self.params.values() for v in vs), default=1)
        for name, values in known.items():
            column = np.full(size, "", dtype=f"<U{width}")
            column[: len(values)] = values
            out[name] = ("draw", column)
        return out


@dataclass
class ResultRow:
    """One event's results, ready to be placed in the arrays of a `SweepLayout`."""

    index: int
    state: int
    vector: dict[str, str]
    values: dict[str, Any] = field(default_factory=dict)
    neutrinos: dict[str, np.ndarray] | None = None  # None: no significance file


def row_from_outcome(outcome: EventOutcome, layout: SweepLayout | None = None) -> ResultRow:
    """An event's `ResultRow`: its outcome's values and the neutrinos of its significance file.

    Parameters
    ----------
    outcome : EventOutcome
        As `llama.batch.runner.run_batch` reports it.
    layout : SweepLayout, optional
        Records named like one of its params are renamed ``event_<name>``.

    Examples
    --------
    >>> from llama.batch.runner import EventOutcome
    >>> row = row_from_outcome(EventOutcome(0, "S1", "/nowhere/S1", {"graceid": "S1"}, "done",
    ...                                     records={"graceid": "S1", "snr": 9.0}),
    ...                        SweepLayout({"graceid": ("S1",)}))
    >>> sorted(row.values), row.state, row.neutrinos
    (['directory', 'error', 'event_graceid', 'eventid', 'snr'], 1, None)
    """
    taken = _RESERVED | set(layout.params if layout is not None else ())
    values: dict[str, Any] = {
        "directory": outcome.directory,
        "eventid": outcome.eventid,
        "error": outcome.error,
    }
    records = dict(outcome.records)
    columns = records.pop(NEUTRINO_RECORD, None)
    for name, value in records.items():
        values[f"event_{name}" if name in taken else name] = value
    neutrinos = None
    if isinstance(columns, dict):  # reported by the handler where the event ran
        neutrinos = _neutrino_arrays(columns)
    elif outcome.state in ("done", "up to date") and outcome.directory:
        neutrinos = read_neutrinos(Path(outcome.directory) / SIGNIFICANCE_FILE)
    return ResultRow(
        outcome.index, state_code(outcome.state), dict(outcome.vector), values, neutrinos
    )


def read_neutrinos(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """Per-neutrino arrays of a significance file (`NEUTRINO_FIELDS`), None without one.

    A damaged file gives None too: the results are a summary and never fail an event.
    """
    try:
        with open(path, encoding="utf-8") as f:
            triggers = json.load(f)["outputs"]["neutrino_gw_triggers"]
        return _neutrino_arrays(neutrino_columns(triggers))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _neutrino_arrays(columns: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """`NEUTRINO_FIELDS` arrays of equal length from per-neutrino columns; None if the
    columns do not agree (a damaged record is left out, never fatal)."""
    import numpy as np

    n = {len(v) for v in columns.values() if isinstance(v, list)}
    if len(n) != 1:
        return None
    size = n.pop()
    out = {}
    for name in NEUTRINO_FIELDS:
        values = columns.get(name)
        out[name] = np.array(
            [_number(v) for v in values] if isinstance(values, list) else [math.nan] * size,
            dtype=np.float64,
        )
    return out


def _number(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, bool)) or (
        hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0 and value.dtype.kind in "biuf"
    )


def record_kinds(rows: Iterable[ResultRow]) -> dict[str, str]:
    """Each per-event variable's kind: "number" (float64, NaN missing) or "text" ("")."""
    kinds: dict[str, str] = {}
    unknown: set[str] = set()
    for row in rows:
        for name, value in row.values.items():
            if value is None:
                unknown.add(name)
            elif name not in kinds:
                kinds[name] = "number" if _is_number(value) else "text"
    for name in unknown - set(kinds):  # never given: NaN, as the flat table had it
        kinds[name] = "number"
    for name in ("directory", "eventid", "error"):
        kinds[name] = "text"
    return kinds


def empty_variable(name: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """A per-event array of holes: NaN for numbers, "" for text."""
    import numpy as np

    if kind == "number":
        return np.full(shape, np.nan)
    return np.full(shape, "", dtype=object)


def cell(kind: str, value: Any) -> Any:
    """`value` as stored in a variable of `kind` (None: the hole value)."""
    if kind == "number":
        return _number(value)
    return "" if value is None else str(value)


def rows_to_dataset(rows: Sequence[ResultRow], layout: SweepLayout, **attrs: Any) -> xr.Dataset:
    """The labelled results Dataset of `rows` (see the module docstring)."""
    import xarray as xr

    variables, coords = _labelled_arrays(rows, layout)
    ds = xr.Dataset(variables, coords=coords)
    return decorate(ds, layout, **attrs)


def _labelled_arrays(
    rows: Sequence[ResultRow], layout: SweepLayout
) -> tuple[dict[str, tuple[Any, np.ndarray]], dict[str, tuple[Any, np.ndarray]]]:
    """The data variables and coordinates of `rows_to_dataset`, ``{name: (dims,
    values)}`` in the Dataset's order, without attributes."""
    import numpy as np

    draws = 1 + max((r.index for r in rows), default=-1)
    shape = layout.shape(draws)
    dims = layout.dims
    kinds = record_kinds(rows)
    data = {name: empty_variable(name, kind, shape) for name, kind in kinds.items()}
    state = np.zeros(shape, dtype=np.int8)
    width = max((len(r.neutrinos["ra"]) for r in rows if r.neutrinos is not None), default=-1)
    per_nu: dict[str, np.ndarray] = {}
    if width >= 0:
        per_nu = {f"neutrino_{n}": np.full((*shape, width), np.nan) for n in NEUTRINO_FIELDS}
        per_nu["neutrino_count"] = np.zeros(shape, dtype=np.int32)
    for row in rows:
        at = layout.position(row.index)
        state[at] = row.state
        for name, value in row.values.items():
            data[name][at] = cell(kinds[name], value)
        if row.neutrinos is not None:
            count = len(row.neutrinos["ra"])
            per_nu["neutrino_count"][at] = count
            for name, values in row.neutrinos.items():
                per_nu[f"neutrino_{name}"][(*at, slice(0, count))] = values
    coords = layout.coords(draws)
    if layout.kind == "draw" and layout.random < 0:
        for row in rows:  # endless draws: the coordinates are the vectors run
            for name in layout.params:
                coords[name][1][row.index] = row.vector.get(name, "")
    coords["directory"] = (dims, data.pop("directory"))
    variables = {"state": (dims, state)}
    variables.update({name: (dims, values) for name, values in data.items()})
    for name, values in per_nu.items():
        variables[name] = (dims if name == "neutrino_count" else (*dims, "neutrino"), values)
    return variables, coords


def decorate(ds: xr.Dataset, layout: SweepLayout, **attrs: Any) -> xr.Dataset:
    """Set the CF attributes of every variable and the Dataset's own."""
    for name in ds.variables:
        ds[name].attrs.update(variable_attrs(str(name), layout))
    ds.attrs.update(dataset_attrs(layout, **attrs))
    return ds


def variable_attrs(name: str, layout: SweepLayout) -> dict[str, Any]:
    """The CF attributes of the variable `name` of a labelled Dataset."""
    if name == "state":
        return state_attrs()
    if name in layout.params:
        # the name alone: it labels plot axes ("graceid", "sigma")
        return {"long_name": name, "comment": f"value of the params {name!r}"}
    if name == "draw":
        return {"long_name": "random draw number"}
    if name == "event":
        return {"long_name": "event number"}
    return cf_attrs(name)


def dataset_attrs(layout: SweepLayout, **attrs: Any) -> dict[str, Any]:
    """The attributes of a labelled Dataset: CF's, the layout's, then `attrs` (those
    not None), and the layout's seed unless `attrs` gave one."""
    out = {
        "Conventions": "CF-1.8",
        "title": "LLAMA sweep results",
        "llama_layout": layout.to_json(),
        **{k: v for k, v in attrs.items() if v is not None},
    }
    if layout.seed is not None:
        out.setdefault("seed", layout.seed)
    return out


def outcomes_to_dataset(
    outcomes: Sequence[EventOutcome], layout: SweepLayout | None = None, **attrs: Any
) -> xr.Dataset:
    """Build the results Dataset from event outcomes (see the module docstring).

    Parameters
    ----------
    outcomes : sequence of EventOutcome
        One per event, as `llama.batch.runner.run_batch` reports them.
    layout : SweepLayout, optional
        The sweep; without it the flat table of `read_results` is built (one row per
        outcome along ``event``, states as text, params as ``param_<name>``).
    **attrs
        Attributes of the Dataset (e.g. ``seed``).
    """
    if layout is None:
        return _flat_dataset(outcomes, **attrs)
    return rows_to_dataset([row_from_outcome(o, layout) for o in outcomes], layout, **attrs)


def state_names(state: xr.DataArray) -> xr.DataArray:
    """The ``state`` codes as the outcome states' words ("done", "up to date", "not run").

    Examples
    --------
    >>> import xarray as xr
    >>> state_names(xr.DataArray([1, 4, 0])).values.tolist()
    ['done', 'failed', 'not run']
    """
    import numpy as np

    words = np.array([state_name(i) for i in range(len(STATE_MEANINGS))], dtype=object)
    return state.copy(data=words[np.asarray(state.values, dtype=np.int64)])


def unstack_draws(ds: xr.Dataset) -> xr.Dataset:
    """Random draws on the grid of their params (repeated draws dropped, holes NaN).

    Examples
    --------
    >>> from llama.batch.runner import EventOutcome
    >>> layout = SweepLayout({"a": ("1", "2"), "b": ("x", "y")}, random=8, seed=3)
    >>> drawn = layout.draw_values()
    >>> pairs = list(zip(drawn["a"], drawn["b"], strict=True))
    >>> ds = outcomes_to_dataset([
    ...     EventOutcome(i, a + b, f"/ev/{a}{b}", {"a": a, "b": b}, "done", records={"snr": 10.0 + i})
    ...     for i, (a, b) in enumerate(pairs)], layout)
    >>> grid = unstack_draws(ds)
    >>> grid.snr.dims, grid.sizes["a"] * grid.sizes["b"] >= len(set(pairs))
    (('a', 'b'), True)
    >>> a, b = pairs[-1]  # a repeated pair keeps its first draw
    >>> float(grid.snr.sel(a=a, b=b)) == 10.0 + pairs.index((a, b))
    True
    """
    layout = SweepLayout.from_json(ds.attrs["llama_layout"])
    names = list(layout.params)
    return (
        ds.reset_coords("directory")
        .set_index(draw=names)
        .drop_duplicates("draw")
        .unstack("draw")
        .set_coords("directory")
    )


# -- files ----------------------------------------------------------------------------
def is_zarr(path: str | os.PathLike) -> bool:
    """Whether a results path names a zarr store (``.zarr``, a trailing slash allowed).

    Examples
    --------
    >>> is_zarr("s3://bucket/run.zarr"), is_zarr("run.nc")
    (True, False)
    """
    return str(path).rstrip("/").endswith(".zarr")


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for a results URL: the S3 endpoint of the AWS_* environment."""
    if not str(url).startswith("s3://"):
        return {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def open_results(path: str | os.PathLike) -> xr.Dataset:
    """The labelled results Dataset of a zarr store (lazy, any fsspec URL) or netCDF file.

    A zarr store may be opened while its batch still runs: events finished so far have
    their values, the others are holes (state "not_run").
    """
    import xarray as xr

    if is_zarr(path):
        url = str(path)
        return xr.open_zarr(url, storage_options=storage_options(url) or None)
    return xr.load_dataset(path, engine="h5netcdf")


def event_table(ds: xr.Dataset) -> xr.Dataset:
    """The flat view of results: one row per event that ran, along ``event``.

    States are text ("done", "up to date", ...), params are ``param_<name>``
    variables, and ``event`` numbers events in the order their vectors were made. A
    Dataset already flat (a file written before the labelled layout) is returned as
    it is.

    Examples
    --------
    >>> from llama.batch.runner import EventOutcome
    >>> layout = SweepLayout({"g": ("S1", "S2")})
    >>> ds = outcomes_to_dataset([EventOutcome(1, "S2", "/ev/S2", {"g": "S2"}, "done")], layout)
    >>> flat = event_table(ds)
    >>> flat.sizes["event"], flat.param_g.values.tolist(), flat.state.values.tolist()
    (1, ['S2'], ['done'])
    """
    import numpy as np

    if "llama_layout" not in ds.attrs:
        return ds
    layout = SweepLayout.from_json(ds.attrs["llama_layout"])
    dims = layout.dims
    flat = ds.reset_coords("directory")
    if layout.kind == "draw":
        flat = flat.reset_coords(list(layout.params)).rename(
            {n: f"param_{n}" for n in layout.params}
        )
    elif layout.kind == "grid":
        flat = flat.reset_index(dims, drop=True)
        for name in dims:
            grid = np.broadcast_to(
                np.asarray(ds[name].values, dtype=object).reshape(
                    [-1 if d == name else 1 for d in dims]
                ),
                layout.shape(),
            )
            flat[f"param_{name}"] = (dims, grid)
    if len(dims) > 1:
        flat = flat.stack(event=dims)
    elif dims[0] != "event":
        flat = flat.rename({dims[0]: "event"})
    flat = flat.drop_vars(["event", *dims], errors="ignore")
    flat = flat.assign_coords(event=np.arange(flat.sizes["event"], dtype=np.int64))
    flat = flat.isel(event=np.flatnonzero(np.asarray(flat.state.values) != 0))
    flat["state"] = ("event", np.array([state_name(c) for c in flat.state.values], dtype=object))
    return flat


def read_results(path: str | os.PathLike) -> xr.Dataset:
    """The flat table (`event_table`) of a results file or store, loaded in memory.

    For the labelled arrays use `open_results`.
    """
    ds = open_results(path)
    return event_table(ds.load() if is_zarr(path) else ds)


def write_results(
    outcomes: Sequence[EventOutcome],
    path: str | os.PathLike,
    *,
    layout: SweepLayout | None = None,
    merge_since: float | None = None,
    **attrs,
) -> Path:
    """Write the results Dataset atomically as netCDF (HDF5 via h5netcdf).

    Parameters
    ----------
    outcomes
        One per event of this run.
    path
        The results file.
    layout
        The sweep (`SweepLayout`): the labelled layout; None writes the flat table.
    merge_since
        A `time.time` stamp, normally the start of this run. When the file at `path`
        was written at or after it, another run finished while this one ran (two
        ``llama batch`` runs at once): its rows are kept, except those of event
        directories this run has a row for (a "skipped" row of this run gives way to
        the other run's row). None, or an older file: the file is replaced.
    **attrs
        Attributes of the Dataset (e.g. ``seed``).

    Returns
    -------
    pathlib.Path

    Notes
    -----
    Concurrent writers are serialised by an ``flock`` on the hidden file
    ``.NAME.lock`` beside `path`, and each writes its own temporary file before the
    atomic rename, so the file is always one complete Dataset.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as guard:
        # held until the rename: the merge must see the other writer's finished file
        fcntl.flock(guard, fcntl.LOCK_EX)
        rows = list(outcomes)
        if merge_since is not None:
            rows = _merge(rows, path, merge_since)
        digest = _rows_digest(rows, layout, attrs)
        if _written_with(path, digest):
            return path  # the same rows as the file holds: no xarray, no rewrite
        # a name of this process's own: a fixed name was held open (HDF5 file lock)
        # by the other run and failed with BlockingIOError
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            _write_netcdf(rows, layout, attrs, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _record_digest(path, digest)
    return path


def _write_netcdf(rows, layout: SweepLayout | None, attrs: dict[str, Any], path: Path) -> None:
    """The Dataset of `outcomes_to_dataset` written to `path` without xarray
    (`llama.results_netcdf`: the same file, ~1.7 s of CPU less in a process that has
    not imported xarray), or with it where an array is empty."""
    from llama.results_netcdf import write_netcdf

    if layout is None:
        variables, coords = _flat_arrays(rows)
        var_attrs: dict[str, dict[str, Any]] = {}
        ds_attrs = {k: v for k, v in attrs.items() if v is not None}
    else:
        variables, coords = _labelled_arrays([row_from_outcome(o, layout) for o in rows], layout)
        var_attrs = {name: variable_attrs(name, layout) for name in [*variables, *coords]}
        ds_attrs = dataset_attrs(layout, **attrs)
    try:
        write_netcdf(
            path,
            {n: (_dims(d), v, var_attrs.get(n, {})) for n, (d, v) in variables.items()},
            {n: (_dims(d), v, var_attrs.get(n, {})) for n, (d, v) in coords.items()},
            ds_attrs,
        )
    except ValueError:  # no events, or values xarray encodes its own way
        outcomes_to_dataset(rows, layout, **attrs).to_netcdf(path, engine="h5netcdf")


def _dims(dims: str | tuple[str, ...]) -> tuple[str, ...]:
    return (dims,) if isinstance(dims, str) else tuple(dims)


def warm_netcdf_writer() -> None:
    """Import and run once what `write_results` uses, on a two-event file written to a
    temporary folder, so that a run's own results file later costs only its writing.

    The first netCDF file of a process pays for importing h5netcdf and h5py and for
    their set-up at first use (xarray is not needed: `llama.results_netcdf`).
    ``llama batch`` calls this in a thread of its own while worker processes run the
    events and the driver would otherwise wait, instead of after the last event.
    Nothing is left behind: the temporary folder is removed.

    Examples
    --------
    >>> import sys
    >>> warm_netcdf_writer()
    >>> "h5netcdf" in sys.modules
    True
    """
    import tempfile

    from llama.batch.runner import EventOutcome

    # the kinds of variables of a real file: int8 states, numbers, text, per neutrino
    layout = SweepLayout({"warm": ("a", "b")})
    records = {
        "odds_ratio": 1.0,
        "population": "BNS",
        NEUTRINO_RECORD: {name: [0.0] for name in NEUTRINO_FIELDS},
    }
    outcome = EventOutcome(0, "a", "/nowhere/a", {"warm": "a"}, "done", records=records)
    with tempfile.TemporaryDirectory(prefix="llama-results-warm-") as folder:
        _write_netcdf([outcome], layout, {"seed": 0}, Path(folder) / "warm.nc")


# -- an unchanged re-run leaves the file alone ----------------------------------------
def _digest_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.rows.json")


def _rows_digest(rows: Sequence[EventOutcome], layout: SweepLayout | None, attrs) -> str:
    """sha256 of everything the Dataset is built from: the rows, the layout, the
    attributes and the package version (which fixes the schema)."""
    import hashlib

    from llama import __version__

    def plain(value: Any) -> Any:  # numpy values and arrays in full, never abbreviated
        return value.tolist() if hasattr(value, "tolist") else repr(value)

    content = [
        __version__,
        None if layout is None else layout.to_json(),
        sorted((str(k), v) for k, v in attrs.items() if v is not None),
        [(o.index, o.eventid, o.directory, o.vector, o.state, o.error, o.records) for o in rows],
    ]
    text = json.dumps(content, sort_keys=True, default=plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _written_with(path: Path, digest: str) -> bool:
    """Whether the file at `path` is the one written from rows of this `digest`: the
    record beside it names the digest and the file's size and mtime."""
    try:
        record = json.loads(_digest_path(path).read_bytes())
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record == {
        "sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns
    }  # fmt: skip


def _record_digest(path: Path, digest: str) -> None:
    # after the rename: a kill in between leaves an old record that no longer matches
    # the file's size and mtime, so the next run writes the file again
    from llama.storage import atomic_write_bytes

    st = os.stat(path)
    record = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    atomic_write_bytes(_digest_path(path), json.dumps(record).encode())


# -- the flat table (files written before the labelled layout, and merges) -----------
def _column(values: list[Any]) -> np.ndarray:
    import numpy as np

    present = [v for v in values if v is not None]
    if present and all(_is_number(v) for v in present):
        return np.array([math.nan if v is None else float(v) for v in values])
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def _flat_dataset(outcomes: Sequence[EventOutcome], **attrs: Any) -> xr.Dataset:
    import xarray as xr

    variables, coords = _flat_arrays(outcomes)
    clean = {k: v for k, v in attrs.items() if v is not None}
    return xr.Dataset(variables, coords=coords, attrs=clean)


def _flat_arrays(
    outcomes: Sequence[EventOutcome],
) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, tuple[str, np.ndarray]]]:
    """The data variables and coordinates of the flat table, ``{name: (dim, values)}``."""
    import numpy as np

    columns: dict[str, list[Any]] = {
        "eventid": [o.eventid for o in outcomes],
        "directory": [o.directory for o in outcomes],
        "state": [o.state for o in outcomes],
        "error": [o.error for o in outcomes],
    }
    params = sorted({k for o in outcomes for k in o.vector})
    records = sorted({k for o in outcomes for k in o.records} - {NEUTRINO_RECORD})
    for name in params:
        columns[f"param_{name}"] = [o.vector.get(name) for o in outcomes]
    for name in records:
        columns[name] = [o.records.get(name) for o in outcomes]
    data = {name: ("event", _column(values)) for name, values in columns.items()}
    index = np.array([o.index for o in outcomes], dtype=np.int64)
    return data, {"event": ("event", index)}


def _merge(rows: list[EventOutcome], path: Path, since: float) -> list[EventOutcome]:
    """``rows`` plus the rows of the file at `path` if it was written at or after `since`."""
    try:
        if path.stat().st_mtime < since:
            return rows  # a previous run's results: replaced, as always
        theirs = _read_outcomes(path)
    except FileNotFoundError:
        return rows
    except (OSError, ValueError, KeyError) as err:
        # the other run's file is unreadable: this run's rows are still worth writing
        import logging

        logging.getLogger("llama.batch").warning(
            "results file %s could not be read to merge with (%s): it is replaced", path, err
        )
        return rows
    mine = {o.directory: o for o in rows if o.state != "skipped"}
    merged = [o for o in theirs if o.directory not in mine]
    kept = {o.directory for o in merged}
    merged += [o for o in rows if o.directory not in kept or o.state != "skipped"]
    return sorted(merged, key=lambda o: (o.index, o.directory))


def _read_outcomes(path: Path) -> list[EventOutcome]:
    """The rows of a results file as `EventOutcome` records (NaN and "" as missing)."""
    from llama.batch.runner import EventOutcome

    ds = read_results(path)
    fixed = {"eventid", "directory", "state", "error"}
    outcomes = []
    for i in range(ds.sizes.get("event", 0)):
        row = {name: ds[name].values[i] for name in ds.data_vars if "neutrino" not in ds[name].dims}
        vector, records = {}, {}
        for name, value in row.items():
            if name in fixed or name.startswith("neutrino_") or _missing(value):
                continue
            if name.startswith("param_"):
                vector[name.removeprefix("param_")] = str(value)
            else:
                records[name] = value.item() if hasattr(value, "item") else value
        outcomes.append(
            EventOutcome(
                index=int(ds.event.values[i]),  # the event's place in the sweep
                eventid=str(row.get("eventid", "")),
                directory=str(row.get("directory", "")),
                vector=vector,
                state=str(row.get("state", "")),
                error=str(row.get("error", "")),
                records=records,
            )
        )
    return outcomes


def _missing(value: Any) -> bool:
    if isinstance(value, str):
        return value == ""
    try:
        return bool(math.isnan(value))
    except TypeError:
        return False
