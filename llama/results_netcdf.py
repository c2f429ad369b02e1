"""The results Dataset written as netCDF-4 with h5netcdf alone, as xarray writes it.

``ds.to_netcdf(path, engine="h5netcdf")`` costs a command that has not imported
xarray ~1.7 s of CPU for importing xarray, pandas and the parts of Dask and
distributed that xarray loads to look for chunked arrays, before a 200-event file
whose own writing takes ~0.1 s. `write_netcdf` makes the same calls on h5netcdf
that xarray's h5netcdf backend makes for the results' variables (numbers, text,
int8 states, int64 draw numbers; no times, no chunked arrays), in the same order,
so the file is the same: global attributes, then the dimensions in the order the
variables name them, then each variable (data variables first, then the
coordinates) with its CF encoding: ``_FillValue`` NaN for floating-point
variables, variable-length UTF-8 for text, and the ``coordinates`` attribute
naming the non-dimension coordinates that lie along the variable
(tests/test_results_netcdf.py compares every object, attribute and value of the
two files).

Examples
--------
>>> import numpy as np, tempfile, xarray as xr
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as folder:
...     path = Path(folder) / "r.nc"
...     write_netcdf(path, {"snr": (("event",), np.array([9.0, np.nan]), {"units": "1"})},
...                  {"event": (("event",), np.arange(2), {})}, {"title": "demo"})
...     ds = xr.load_dataset(path, engine="h5netcdf")
>>> ds.snr.values.tolist()[0], ds.snr.attrs["units"], ds.attrs["title"]
(9.0, '1', 'demo')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["Variable", "write_netcdf"]

#: One variable: its dimensions, its values (a NumPy array) and its attributes.
Variable = tuple[tuple[str, ...], Any, Mapping[str, Any]]


def write_netcdf(
    path: str | os.PathLike,
    variables: Mapping[str, Variable],
    coords: Mapping[str, Variable],
    attrs: Mapping[str, Any],
) -> None:
    """Write a Dataset given as plain arrays to a netCDF-4 file, as xarray would.

    Parameters
    ----------
    path
        The file (replaced).
    variables, coords
        ``{name: (dims, values, attrs)}``: the data variables and the coordinates, in
        the Dataset's order. Values are NumPy arrays of numbers, or of text (``<U``
        or ``object`` holding ``str``); none may be empty.
    attrs
        The Dataset's attributes.

    Raises
    ------
    ValueError
        An empty array or an object array holding something else than text, which
        xarray encodes otherwise (write those with xarray).
    """
    import h5netcdf
    import h5py
    import numpy as np

    everything = {**variables, **coords}
    sizes: dict[str, int] = {}
    for name, (dims, values, _) in everything.items():
        if values.size == 0:
            raise ValueError(f"{name}: an empty array (xarray writes it as float64)")
        if values.dtype.kind == "O" and not all(isinstance(v, str) for v in values.flat):
            raise ValueError(f"{name}: an object array that does not hold only text")
        sizes.update(zip(dims, values.shape, strict=True))
    along = _coordinates_along(everything, coords)
    text = h5py.string_dtype()
    # h5netcdf.File as xarray's backend opens it for writing a NETCDF4 file (which
    # names the format only to an h5netcdf that takes it: after 1.6.4)
    options = {"invalid_netcdf": None, "decode_vlen_strings": True, "driver": None}
    if _version(h5netcdf.__version__) > (1, 6, 4):
        options["format"] = "NETCDF4"
    with h5netcdf.File(path, "w", **options) as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for dim, size in sizes.items():
            f.dimensions[dim] = size
        for name, (dims, values, var_attrs) in everything.items():
            is_text = values.dtype.kind in "UO"
            fill = values.dtype.type(np.nan) if values.dtype.kind == "f" else None
            var = f.create_variable(
                name, dtype=text if is_text else values.dtype, dimensions=dims,
                fillvalue=fill, chunks=None,
            )  # fmt: skip
            for key, value in var_attrs.items():
                var.attrs[key] = value
            if along.get(name):
                var.attrs["coordinates"] = " ".join(sorted(along[name]))
            var[...] = values.astype(object) if values.dtype.kind == "U" else values


def _version(text: str) -> tuple[int, ...]:
    """The leading numbers of a version string: "1.8.3" -> (1, 8, 3).

    Examples
    --------
    >>> _version("1.8.3"), _version("1.7.0rc1") > (1, 6, 4)
    ((1, 8, 3), True)
    """
    import re

    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def _coordinates_along(
    everything: Mapping[str, Variable], coords: Mapping[str, Variable]
) -> dict[str, set[str]]:
    """For each variable, the non-dimension coordinates whose dimensions it has all
    of (CF's ``coordinates`` attribute, as xarray fills it)."""
    dims_used = {dim for dims, _, _ in everything.values() for dim in dims}
    own = {name for name in coords if name not in dims_used}
    along: dict[str, set[str]] = {}
    for coord in own:
        need = set(coords[coord][0])
        for name, (dims, _, _) in everything.items():
            if name not in own and name not in dims and need <= set(dims):
                along.setdefault(name, set()).add(coord)
    return along
