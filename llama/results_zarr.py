"""Results written as events finish: a zarr store updated in place, point by point.

`ZarrResults` is an ``on_outcome`` callback of `llama.batch.runner.run_batch`: each
finished event's values go to their place in the arrays of the sweep's layout
(`llama.results.SweepLayout`), in writes at least `ZarrResults.flush_s` seconds apart
that take at most `MAX_WRITE_SHARE` of the driver's time (a write costs a fraction of
a second whatever it carries, as every array's chunk is rewritten). The store is zarr format 2 with consolidated metadata, local or at any
fsspec URL (``s3://bucket/run.zarr``), and ``xarray.open_zarr`` reads it at any
time: events not finished yet are holes (``state`` 0, "not_run"; NaN; "").

The store is keyed by the sweep, not by the run: running the same sweep again (after
a kill, say) writes each event to the same place, so holes are filled and nothing is
duplicated; a store made by another sweep is refused.

Examples
--------
>>> import tempfile
>>> from llama.batch.runner import EventOutcome
>>> from llama.results import SweepLayout, open_results
>>> url = tempfile.mkdtemp() + "/run.zarr"
>>> store = ZarrResults(url, SweepLayout({"graceid": ("S1", "S2")}))
>>> store(EventOutcome(1, "S2", "/ev/S2", {"graceid": "S2"}, "done", records={"snr": 9.0}))
>>> store.close()
>>> ds = open_results(url)
>>> ds.state.values.tolist(), float(ds.snr.sel(graceid="S2"))
([0, 1], 9.0)
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama.results import (
    ResultRow,
    SweepLayout,
    cell,
    empty_variable,
    record_kinds,
    row_from_outcome,
    rows_to_dataset,
    storage_options,
)
from llama.results_schema import NEUTRINO_FIELDS, cf_attrs, state_code

if TYPE_CHECKING:
    from llama.batch.runner import EventOutcome

__all__ = ["ZarrResults"]

log = logging.getLogger("llama.batch")

#: Events per chunk of a per-event array: a chunk is rewritten whenever one of its
#: events finishes, so chunks stay small (32 kB of float64).
CHUNK_EVENTS = 4096
#: Neutrinos per chunk along the padded ``neutrino`` dimension.
CHUNK_NEUTRINOS = 16
_SKIPPED = state_code("skipped")
#: Largest share of the driver's time spent writing: after a write that took d seconds,
#: the next waits d * (1 - share) / share (4 d), so a fast batch is never slowed by
#: more than this (measured: ~0.25 s per write on a loaded 2-core VM, bench_results_zarr).
MAX_WRITE_SHARE = 0.2


class ZarrResults:
    """An ``on_outcome`` callback writing each finished event into a zarr store.

    Parameters
    ----------
    url : str or path
        The store: a local path or an fsspec URL ending in ``.zarr``.
    layout : SweepLayout
        The sweep the store holds.
    flush_s : float
        Shortest time between two writes; a write also waits four times as long as the
        previous one took (`MAX_WRITE_SHARE`). `close` writes what is left.
    **attrs
        Attributes of the Dataset (e.g. ``seed``).

    Raises
    ------
    ValueError
        The store exists and holds another sweep.
    """

    def __init__(
        self, url: str | os.PathLike, layout: SweepLayout, *, flush_s: float = 1.0, **attrs: Any
    ) -> None:
        self.url, self.layout, self.flush_s, self.attrs = str(url), layout, flush_s, attrs
        self.pending: list[ResultRow] = []
        self.last = time.monotonic()
        self.wait = flush_s  # seconds until the next write
        self.written = 0
        self.store = _store(self.url)
        self.lock_path = (
            None if "://" in self.url else Path(self.url).with_name(f".{Path(self.url).name}.lock")
        )
        with self._locked():
            self.group = self._open()

    # -- the callback ------------------------------------------------------------------
    def __call__(self, outcome: EventOutcome) -> None:
        """Take one finished event; write what is pending when the wait has passed."""
        self.pending.append(row_from_outcome(outcome, self.layout))
        if time.monotonic() - self.last >= self.wait:
            self.flush()

    def flush(self) -> None:
        """Write every pending event to the store."""
        rows, self.pending = self.pending, []
        started = self.last = time.monotonic()
        if not rows:
            return
        with self._locked():
            changed = self._grow(rows)
            self._write(rows)
            if changed:
                import zarr

                zarr.consolidate_metadata(self.store)
        self.written += len(rows)
        self.last = time.monotonic()
        took = self.last - started
        self.wait = max(self.flush_s, took * (1 - MAX_WRITE_SHARE) / MAX_WRITE_SHARE)

    def close(self) -> None:
        """Write what is pending (call it at the end of the run, also after Ctrl-C)."""
        self.flush()

    # -- opening ---------------------------------------------------------------------------
    def _open(self):
        import zarr

        try:
            group = self._reopen()
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
            group = None
        if group is None or "state" not in group:
            self._create()
            return self._reopen()
        theirs = group.attrs.get("llama_layout")
        if theirs is None or SweepLayout.from_json(theirs) != self.layout:
            raise ValueError(
                f"results store {self.url} holds another sweep ({theirs or 'not a LLAMA sweep'}); "
                "name another --results store, or remove this one to start afresh"
            )
        return group

    def _reopen(self):
        import zarr

        # never the consolidated listing: it is the readers', and lags behind new arrays
        return zarr.open_group(self.store, mode="r+", use_consolidated=False)

    def _create(self) -> None:
        ds = rows_to_dataset([], self.layout, **self.attrs)
        encoding = {name: {"chunks": self._chunks(ds[name].dims)} for name in ds.variables}
        ds.to_zarr(self.store, mode="w", zarr_format=2, consolidated=True, encoding=encoding)

    def _chunks(self, dims: tuple[str, ...]) -> tuple[int, ...]:
        """Chunks of at most `CHUNK_EVENTS` events, whole along the last dimensions."""
        shape = dict(zip(self.layout.dims, self.layout.shape(), strict=True))
        out, budget = [], CHUNK_EVENTS
        for dim in reversed(dims):
            if dim == "neutrino":
                out.append(CHUNK_NEUTRINOS)
                continue
            size = max(1, shape.get(dim, 1))
            take = size if dim != "draw" or self.layout.random >= 0 else CHUNK_EVENTS
            take = max(1, min(take, budget))
            out.append(take)
            budget = max(1, budget // take)
        return tuple(reversed(out))

    def _locked(self):
        """An ``flock`` beside a local store: two runs never rewrite one chunk at once."""
        import contextlib

        if self.lock_path is None:
            return contextlib.nullcontext()
        return _FileLock(self.lock_path)

    # -- structure: new variables, more neutrinos, more draws -----------------------------
    def _arrays(self) -> dict[str, Any]:
        return dict(self.group.arrays())

    def _dims(self, array) -> list[str]:
        return list(array.attrs.get("_ARRAY_DIMENSIONS", []))

    def _grow(self, rows: list[ResultRow]) -> bool:
        import numpy as np

        changed = False
        arrays = self._arrays()
        dims = self.layout.dims
        if self.layout.kind == "draw" and self.layout.random < 0:
            need = 1 + max(r.index for r in rows)
            have = arrays["state"].shape[0]
            if need > have:
                for array in arrays.values():
                    if "draw" in self._dims(array):
                        array.resize((need, *array.shape[1:]))
                self.group["draw"][have:need] = np.arange(have, need)
                changed = True
        shape = arrays["state"].shape
        new = {}
        for name, kind in record_kinds(rows).items():
            if name not in arrays:
                new[name] = (dims, empty_variable(name, kind, shape))
        width = max((len(r.neutrinos["ra"]) for r in rows if r.neutrinos is not None), default=-1)
        if width >= 0 and "neutrino_count" not in arrays:
            width = max(width, 1)
            for field in NEUTRINO_FIELDS:
                new[f"neutrino_{field}"] = ((*dims, "neutrino"), np.full((*shape, width), np.nan))
            new["neutrino_count"] = (dims, np.zeros(shape, dtype=np.int32))
        elif width > 0 and arrays["neutrino_ra"].shape[-1] < width:
            for field in NEUTRINO_FIELDS:
                array = arrays[f"neutrino_{field}"]
                array.resize((*array.shape[:-1], width))
            changed = True
        if new:
            import xarray as xr

            # to_zarr(mode="a") replaces the Dataset's attributes: keep the store's
            ds = xr.Dataset(new, attrs=dict(self.group.attrs))
            for name in ds.variables:
                ds[name].attrs.update(cf_attrs(str(name)))
            encoding = {name: {"chunks": self._chunks(ds[name].dims)} for name in ds.variables}
            ds.to_zarr(self.store, mode="a", zarr_format=2, consolidated=True, encoding=encoding)
            self.group = self._reopen()
            changed = True
        return changed

    # -- values ------------------------------------------------------------------------
    def _write(self, rows: list[ResultRow]) -> None:
        import numpy as np

        arrays = self._arrays()
        at = np.array([self.layout.position(r.index) for r in rows], dtype=np.int64)
        index = tuple(at.T)
        if any(r.state == _SKIPPED for r in rows):
            # an event another run held: that run's values stay where it wrote them
            stored = np.asarray(arrays["state"].vindex[index])
            keep = np.array(
                [r.state != _SKIPPED or s == 0 for r, s in zip(rows, stored, strict=True)]
            )
            rows = [r for r, k in zip(rows, keep, strict=True) if k]
            if not rows:
                return
            at = at[keep]
            index = tuple(at.T)
        texts = {"directory", "eventid", "error"}
        for name, array in arrays.items():
            if self._dims(array) != list(self.layout.dims) or name in ("state", "neutrino_count"):
                continue
            if name in self.layout.params or name in ("draw", "event"):
                continue
            kind = "text" if name in texts or array.dtype.kind in "OUST" else "number"
            values = [cell(kind, r.values.get(name)) for r in rows]
            dtype = object if kind == "text" else np.float64
            array.vindex[index] = np.array(values, dtype=dtype)
        if self.layout.kind == "draw" and self.layout.random < 0:
            for name in self.layout.params:
                arrays[name].vindex[index] = np.array(
                    [r.vector.get(name, "") for r in rows], dtype=object
                )
        if "neutrino_count" in arrays:
            self._write_neutrinos(arrays, rows, at)
        # the state last: a reader (or a run killed mid-write) sees a cell as finished
        # only once all its values are in place, never a state without its directory
        arrays["state"].vindex[index] = np.array([r.state for r in rows], dtype=np.int8)

    def _write_neutrinos(self, arrays: dict[str, Any], rows: list[ResultRow], at) -> None:
        import numpy as np

        counts = np.array([0 if r.neutrinos is None else len(r.neutrinos["ra"]) for r in rows])
        arrays["neutrino_count"].vindex[tuple(at.T)] = counts.astype(np.int32)
        width = arrays["neutrino_ra"].shape[-1]
        # every slot of each event is written: padding clears a longer earlier list
        cells = tuple(np.repeat(at[:, d], width) for d in range(at.shape[1])) + (
            np.tile(np.arange(width), len(rows)),
        )
        for field in NEUTRINO_FIELDS:
            block = np.full((len(rows), width), np.nan)
            for k, row in enumerate(rows):
                if row.neutrinos is not None:
                    block[k, : counts[k]] = row.neutrinos[field]
            arrays[f"neutrino_{field}"].vindex[cells] = block.ravel()


class _FileLock:
    """An exclusive ``flock`` held for a ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()  # closing releases the lock


def _store(url: str):
    """The zarr store object of a local path or an fsspec URL."""
    import zarr.storage

    if "://" in url and not url.startswith("file://"):
        return zarr.storage.FsspecStore.from_url(url, storage_options=storage_options(url))
    path = Path(url.removeprefix("file://")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return zarr.storage.LocalStore(path)
