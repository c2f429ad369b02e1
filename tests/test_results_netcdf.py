"""The netCDF results file written without xarray is the file xarray writes.

`llama.results.write_results` writes with `llama.results_netcdf.write_netcdf`
(h5netcdf alone); the reference is xarray's own ``to_netcdf(engine="h5netcdf")`` of
the Dataset `outcomes_to_dataset` builds from the same outcomes. Every HDF5 object
of the two files is compared: names in order, dtypes, shapes, fill values, chunks,
values (NaN equal to NaN), attributes in order with their values (object
references by the name of what they point to); and xarray reads back identical
Datasets.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from llama.batch.runner import EventOutcome
from llama.results import SweepLayout, outcomes_to_dataset, write_results
from llama.results_schema import NEUTRINO_FIELDS, NEUTRINO_RECORD


def _neutrinos(n: int, shift: float) -> dict[str, list]:
    columns = {name: [shift + i + 0.5 for i in range(n)] for name in NEUTRINO_FIELDS}
    if n:
        columns["energy"][0] = None  # a missing value: NaN
    return columns


def _records(k: int, n_nu: int | None) -> dict:
    records = {
        "odds_ratio": 0.1 * k,
        "p_value": None if k % 3 == 0 else 1 / (k + 2),
        "population": "BNS" if k % 2 else "BBH",
        "instruments": "H1,L1",
        "neutrinos_blinded": bool(k % 2),
        "n_neutrinos": np.int64(k),
        "snr": np.float64(8.5 + k),
        "event": "a record named like the layout's own",
    }
    if n_nu is not None:
        records[NEUTRINO_RECORD] = _neutrinos(n_nu, k)
    return records


def _grid():
    layout = SweepLayout({"graceid": ("S1", "S22", "S333"), "nu": ("a", "bb")})
    states = ["done", "failed", "up to date", "done", "vetoed"]
    outcomes = [
        EventOutcome(i, f"e{i}", f"/ev/e{i}", dict(zip(layout.params, v, strict=True)), s,
                     error="boom: ü" if s == "failed" else "",
                     records=_records(i, [3, None, 0, 5, 1][i]))
        for i, (v, s) in enumerate(zip(
            [("S1", "a"), ("S1", "bb"), ("S22", "a"), ("S333", "bb"), ("S22", "bb")], states, strict=True))
    ]  # fmt: skip
    return outcomes, layout, {"seed": None}


def _draws():
    layout = SweepLayout({"a": ("1", "22"), "b": ("x", "y", "zzz")}, random=6, seed=11)
    drawn = layout.draw_values()
    outcomes = [
        EventOutcome(i, f"d{i}", f"/ev/d{i}", {"a": drawn["a"][i], "b": drawn["b"][i]}, "done",
                     records=_records(i, i))
        for i in (0, 2, 3)
    ]  # fmt: skip
    return outcomes, layout, {"seed": 11}


def _endless():
    layout = SweepLayout({"a": ("1", "22")}, random=-1, seed=5)
    outcomes = [
        EventOutcome(i, f"d{i}", f"/ev/d{i}", {"a": "22" if i else "1"}, "done",
                     records=_records(i, 2))
        for i in range(3)
    ]  # fmt: skip
    return outcomes, layout, {"seed": 5}


def _no_params():
    layout = SweepLayout({})
    outcomes = [EventOutcome(0, "only", "/ev/only", {}, "done", records=_records(1, 4))]
    return outcomes, layout, {"seed": 0}


def _flat():
    outcomes = [
        EventOutcome(3, "S1", "/ev/S1", {"g": "S1"}, "done", records={"snr": 9.0, "far": None}),
        EventOutcome(1, "S2", "/ev/S2", {"g": "S2", "h": "x"}, "failed", error="no map",
                     records={"snr": None, "pipeline": "gstlal"}),
    ]  # fmt: skip
    return outcomes, None, {"seed": 3}


CASES = {"grid": _grid, "draws": _draws, "endless": _endless, "no params": _no_params,
         "flat": _flat}  # fmt: skip


def _plain(value, f: h5py.File):
    """An attribute or value in a comparable form (references: the name pointed at)."""
    if isinstance(value, h5py.Reference):
        return ("ref", f[value].name)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O" or value.dtype.names:
            return [_plain(v, f) for v in value.tolist()]
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (tuple, list)):
        return [_plain(v, f) for v in value]
    if isinstance(value, np.generic):
        return ("scalar", value.dtype.str, value.tobytes())
    return value


def _objects(path) -> list:
    """Every object of an HDF5 file, in iteration order, with everything about it."""
    with h5py.File(path, "r") as f:
        out = [("/", [(k, _plain(f.attrs[k], f)) for k in f.attrs])]
        for name in f:
            d = f[name]
            values = d[()]
            out.append((
                name, d.dtype.str, str(d.dtype.metadata), d.shape, d.chunks, d.compression,
                _plain(d.fillvalue, f), _plain(values, f),
                [(k, _plain(d.attrs[k], f)) for k in d.attrs],
            ))  # fmt: skip
        return out


@pytest.mark.parametrize("case", list(CASES))
def test_the_file_is_the_one_xarray_writes(tmp_path, case):
    outcomes, layout, attrs = CASES[case]()
    ours = write_results(outcomes, tmp_path / "ours.nc", layout=layout, **attrs)
    reference = tmp_path / "xarray.nc"
    outcomes_to_dataset(outcomes, layout, **attrs).to_netcdf(reference, engine="h5netcdf")
    assert _objects(ours) == _objects(reference)
    mine, theirs = (xr.load_dataset(p, engine="h5netcdf") for p in (ours, reference))
    xr.testing.assert_identical(mine, theirs)
    assert list(mine.variables) == list(theirs.variables)
    assert list(mine.attrs) == list(theirs.attrs)


def test_no_events_are_written_by_xarray(tmp_path):
    """An empty table (xarray writes empty text arrays as float64) takes xarray's path."""
    path = write_results([], tmp_path / "empty.nc", seed=1)
    ds = xr.load_dataset(path, engine="h5netcdf")
    assert ds.sizes["event"] == 0 and ds.attrs["seed"] == 1
