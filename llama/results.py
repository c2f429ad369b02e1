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


def write_results(outcomes: Sequence[EventOutcome], path: str | os.PathLike, **attrs) -> Path:
    """Write the results Dataset atomically as netCDF (HDF5 via h5netcdf)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = outcomes_to_dataset(outcomes, **attrs)
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)
    return path


def read_results(path: str | os.PathLike) -> xr.Dataset:
    """Load a results Dataset written by `write_results` (e.g. in a notebook)."""
    import xarray as xr

    return xr.load_dataset(path, engine="h5netcdf")
