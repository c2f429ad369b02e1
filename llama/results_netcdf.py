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

h5netcdf opens every object it touches again by its path at each use (each
variable's dataset and each dimension's scale, ~1,450 lookups for a 42-variable
file, each a new h5py object and an HDF5 open): the write is given an h5py file of
its own (`_LookupCache`) that opens each path once and hands out the same object
after, until something is deleted. The same HDF5 calls otherwise, in the same
order: the file's bytes are unchanged, and its writing took half the time (~355 ->
~175 ms for 42 variables of 20 events, measured old/new interleaved in one process).

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
    track_order = _track_order(h5netcdf)
    # h5netcdf.File leaves a file it was handed open (and still writes _NCProperties
    # into it when the mode is "w"): closed here after it
    with (
        _LookupCache(path, "w", track_order=track_order) as h5file,
        h5netcdf.File(h5file, "w", **options) as f,
    ):
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


def _track_order(h5netcdf) -> bool | None:
    """The ``track_order`` h5netcdf gives h5py when it creates a file itself (True
    since h5py 3.7: netCDF-4 orders objects by creation)."""
    try:
        return h5netcdf.core._get_track_order("h5py")
    except AttributeError:  # an h5netcdf without it: what all recent ones answer
        return True


def _lookup_cache_class():
    """`_LookupCache`, built on first use (h5py is imported only then)."""
    import h5py

    class _Forgets:
        """Deleting or moving an object empties the lookups (the paths kept may now
        name other objects, or none)."""

        _lookups: dict

        def __delitem__(self, name) -> None:
            self._lookups.clear()
            super().__delitem__(name)

        def move(self, source, dest) -> None:
            self._lookups.clear()
            super().move(source, dest)

    class _Group(_Forgets, h5py.Group):
        """A group from `_LookupCache`: deleting through it empties the cache."""

    class LookupCache(_Forgets, h5py.File):
        """An h5py file that opens each object once by its path (a ``str``) and hands
        out that object at every later lookup, until an object is deleted or moved
        (through the file or a group it gave): then every path is opened again.
        Other lookups (references, bytes) go to h5py as they are."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._lookups: dict[str, object] = {}

        def __getitem__(self, name):
            if not isinstance(name, str):
                return super().__getitem__(name)
            found = self._lookups.get(name)
            if found is None:
                found = super().__getitem__(name)
                if isinstance(found, h5py.Group) and not isinstance(found, h5py.File):
                    found = _Group(found.id)
                    found._lookups = self._lookups
                self._lookups[name] = found
            return found

    return LookupCache


def _LookupCache(*args, **kwargs):
    """An h5py file whose objects are opened once each by path
    (`_lookup_cache_class`); the arguments are h5py.File's.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with _LookupCache(Path(folder) / "c.h5", "w") as f:
    ...         _ = f.create_dataset("x", data=np.arange(3))
    ...         same = f["x"] is f["x"] and f["/"] is f["/"]
    ...         del f["/"]["x"]
    ...         gone = "x" not in f and "x" not in f._lookups
    ...         _ = f.create_dataset("x", data=np.arange(4))
    ...         size = f["x"].size
    >>> same, gone, size
    (True, True, 4)
    """
    global _LOOKUP_CACHE
    if _LOOKUP_CACHE is None:
        _LOOKUP_CACHE = _lookup_cache_class()
    return _LOOKUP_CACHE(*args, **kwargs)


_LOOKUP_CACHE = None


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
