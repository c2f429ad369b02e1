"""Background and injection campaigns as Dask arrays.

Neutrino lists are held as 2-D arrays ``(n_lists, max_neutrinos)`` padded with NaN
(a "padded batch"); a Dask array of that shape, chunked along the lists, is evaluated
block by block, each block one batched kernel call of
:meth:`llama.science.odds.EventModel.evaluate_batch`. The same code runs on the
threaded scheduler, on processes, or on a ``distributed`` cluster.

Examples
--------
>>> import numpy as np
>>> from llama.science.campaign import pad_lists
>>> ra = pad_lists([np.array([1.0, 2.0]), np.array([3.0])])
>>> ra.shape, int(np.isnan(ra).sum())
((2, 2), 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from llama.science import constants as C

if TYPE_CHECKING:
    import dask.array as da

    from llama.science.odds import EventModel

__all__ = [
    "background_batch",
    "maps_by_lists",
    "pad_lists",
    "padded_statistics",
    "trial_statistics",
]

#: Order of the per-neutrino fields of a padded batch.
FIELDS = ("ra", "dec", "sigma", "energy", "dt", "zenith")


def pad_lists(values: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """Stack 1-D arrays of different lengths into a NaN-padded 2-D array."""
    width = max((len(v) for v in values), default=0) if width is None else width
    out = np.full((len(values), width), np.nan)
    for k, v in enumerate(values):
        out[k, : len(v)] = v
    return out


def _statistics_block(model: EventModel, *fields: np.ndarray) -> np.ndarray:
    """Event statistics of one block of padded lists (NumPy in, NumPy out)."""
    ra = fields[0]
    present = np.isfinite(ra)
    counts = present.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat = [np.asarray(f)[present] for f in fields]
    return model.evaluate_batch(*flat, offsets).odds


def padded_statistics(model: EventModel, batch: dict[str, Any]) -> Any:
    """Event statistic of every padded list in ``batch``: NumPy or Dask, like the input.

    Parameters
    ----------
    model
        The prepared GW event.
    batch
        Arrays ``ra, dec, sigma`` [deg], ``energy`` [GeV], ``dt`` [s] and ``zenith``
        [deg] (NaN: 90 + dec), each of shape ``(n_lists, max_neutrinos)``, NaN-padded.
        Dask arrays must be chunked along the lists only.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Shape ``(n_lists,)``.
    """
    arrays = [batch[name] for name in FIELDS]
    if hasattr(arrays[0], "map_blocks"):
        import dask.array as da

        arrays = [a.rechunk({1: -1}) for a in arrays]
        return da.map_blocks(
            _statistics_block, model, *arrays, drop_axis=1, dtype=np.float64, meta=np.empty(0)
        )
    return _statistics_block(model, *arrays)


def maps_by_lists(models: Sequence[EventModel], batch: dict[str, Any], chunk: int = 500):
    """Statistic of every (GW map, neutrino list) pair, as a lazy 2-D Dask array.

    Parameters
    ----------
    models
        Prepared GW events, one per map.
    batch
        A padded batch of neutrino lists (NumPy or Dask arrays), see `padded_statistics`.
    chunk
        Lists per block when ``batch`` holds NumPy arrays.

    Returns
    -------
    dask.array.Array
        Shape ``(len(models), n_lists)``; block (i, j) is one batched kernel call of
        map i over the j-th chunk of lists.
    """
    import dask.array as da

    lazy = {
        name: arr if hasattr(arr, "map_blocks") else da.from_array(arr, chunks=(chunk, -1))
        for name, arr in batch.items()
    }
    return da.stack([padded_statistics(model, lazy) for model in models])


def background_batch(
    rng: np.random.Generator, model: EventModel, n_lists: int, width: int | None = None
) -> dict[str, np.ndarray]:
    """``n_lists`` background neutrino lists as a padded batch.

    N ~ Poisson(R_bg x 1000 s) per list; (zenith, energy) drawn jointly from the
    model's background sample (so the lists follow the null that defines B_i); RA
    uniform; dt uniform in the search window; sigma log-uniform in [0.2, 3] deg.
    """
    from llama.science.pvalue import background_sampler

    ra, dec, sigma, energy, dt, zen, offsets = background_sampler(model.background)(rng, n_lists)
    counts = np.diff(offsets)
    width = int(counts.max(initial=0)) if width is None else width
    split = np.split(np.arange(ra.size), offsets[1:-1])
    return {
        name: pad_lists([arr[idx] for idx in split], width)
        for name, arr in zip(FIELDS, (ra, dec, sigma, energy, dt, zen), strict=True)
    }


def trial_statistics(
    model: EventModel, n_trials: int, chunk: int = 1000, seed: int = 0
) -> da.Array:
    """``n_trials`` background statistics for one GW map, as a lazy Dask array.

    Each chunk draws its own background lists from an independent stream
    (``numpy.random.SeedSequence(seed).spawn``), so the result does not depend on the
    scheduler or on the order blocks run in.

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.odds import EventModel
    >>> from llama.science.sim import simulate_skymap
    >>> skymap = simulate_skymap(np.random.default_rng(0), 40.0, -20.0, sigma_deg=3.0,
    ...                          distmean=80.0, max_order=6)
    >>> stats = trial_statistics(EventModel(skymap, rho=10.0, rbar=80.0), 300, chunk=100)
    >>> stats.shape, stats.numblocks
    ((300,), (3,))
    """
    import dask
    import dask.array as da

    sizes = [min(chunk, n_trials - start) for start in range(0, n_trials, chunk)]
    streams = np.random.SeedSequence(seed).spawn(len(sizes))

    def block(stream: np.random.SeedSequence, m: int) -> np.ndarray:
        lists = background_batch(np.random.default_rng(stream), model, m)
        return _statistics_block(model, *(lists[f] for f in FIELDS))

    parts = [
        da.from_delayed(dask.delayed(block)(s, m), shape=(m,), dtype=np.float64)
        for s, m in zip(streams, sizes, strict=True)
    ]
    return da.concatenate(parts) if parts else da.zeros(0, dtype=np.float64)


def expected_background_count() -> float:
    """Mean number of background neutrinos in the search window (about 6.4)."""
    return C.NU_BACKGROUND_RATE_HZ * 2.0 * C.SEARCH_HALF_WINDOW_S
