"""Per-event results of a batch run, collected into an xarray Dataset.

One row per event along dimension ``event``: the event id and directory, the
parameter vector (one variable per params name, prefixed ``param_``), the final state,
and the scalar records the handlers report (odds ratio, p-value, number of neutrinos,
distances, ...). Missing numbers are NaN, missing strings empty.

Examples
--------
>>> from llama.batch.runner import EventOutcome
>>> from llama.results import outcomes_to_dataset
>>> ds = outcomes_to_dataset([
...     EventOutcome(0, "S1", "/tmp/S1", {"graceid": "S1"}, "done", records={"odds_ratio": 2.5}),
...     EventOutcome(1, "S2", "/tmp/S2", {"graceid": "S2"}, "failed"),
... ])
>>> ds.sizes["event"], float(ds.odds_ratio[0]), str(ds.state[1].values)
(2, 2.5, 'failed')
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr

    from llama.batch.runner import EventOutcome

__all__ = ["outcomes_to_dataset", "read_results", "write_results"]


def _column(values: list[Any]) -> tuple[Any, ...]:
    import numpy as np

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float, bool)) for v in present):
        return np.array([math.nan if v is None else float(v) for v in values])
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def outcomes_to_dataset(outcomes: Sequence[EventOutcome], **attrs: Any) -> xr.Dataset:
    """Build the results Dataset from event outcomes (see module docstring)."""
    import numpy as np
    import xarray as xr

    columns: dict[str, list[Any]] = {
        "eventid": [o.eventid for o in outcomes],
        "directory": [o.directory for o in outcomes],
        "state": [o.state for o in outcomes],
        "error": [o.error for o in outcomes],
    }
    params = sorted({k for o in outcomes for k in o.vector})
    records = sorted({k for o in outcomes for k in o.records})
    for name in params:
        columns[f"param_{name}"] = [o.vector.get(name) for o in outcomes]
    for name in records:
        columns[name] = [o.records.get(name) for o in outcomes]
    data = {name: ("event", _column(values)) for name, values in columns.items()}
    index = np.array([o.index for o in outcomes], dtype=np.int64)
    clean = {k: v for k, v in attrs.items() if v is not None}
    return xr.Dataset(data, coords={"event": index}, attrs=clean)


def write_results(
    outcomes: Sequence[EventOutcome],
    path: str | os.PathLike,
    *,
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
        ds = outcomes_to_dataset(rows, **attrs)
        # a name of this process's own: a fixed name was held open (HDF5 file lock)
        # by the other run and failed with BlockingIOError
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            ds.to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _merge(rows: list[EventOutcome], path: Path, since: float) -> list[EventOutcome]:
    """``rows`` plus the rows of the file at `path` if it was written at or after `since`."""
    try:
        if path.stat().st_mtime < since:
            return rows  # a previous run's results: replaced, as always
        theirs = _read_outcomes(path)
    except FileNotFoundError:
        return rows
    except (OSError, ValueError) as err:
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
        row = {name: ds[name].values[i] for name in ds.data_vars}
        vector, records = {}, {}
        for name, value in row.items():
            if name in fixed or _missing(value):
                continue
            if name.startswith("param_"):
                vector[name.removeprefix("param_")] = str(value)
            else:
                records[name] = value.item() if hasattr(value, "item") else value
        outcomes.append(
            EventOutcome(
                index=int(ds.event.values[i]),
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


def read_results(path: str | os.PathLike) -> xr.Dataset:
    """Load a results Dataset written by `write_results` (e.g. in a notebook)."""
    import xarray as xr

    return xr.load_dataset(path, engine="h5netcdf")
