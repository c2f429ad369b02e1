"""One call from Python: a sweep of events through a pipeline, its results as a Dataset.

`sweep` is ``llama batch`` for a notebook: the same params, the same templates, the
same engine (`llama.batch.runner.run_batch`), and the same results layout
(`llama.results`). `plan_sweep` (params -> vectors and layout) and `results_writer`
(the incremental zarr store) are shared with the command line, so both make the same
events in the same order and write the same files.

Examples
--------
>>> import tempfile
>>> import llama
>>> root = tempfile.mkdtemp()
>>> ds = llama.sweep({"graceid": ["S1", "S2"]}, pipeline=["SkymapInfo"],
...                  eventdir=root + "/{graceid}", flags={}, progress=False)
>>> ds.state.sel(graceid="S2").item(), llama.results.state_name(1)
(1, 'done')
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llama.results import SweepLayout, is_zarr

if TYPE_CHECKING:
    import xarray as xr

    from llama.batch.runner import BatchSummary, EventOutcome
    from llama.pipeline import Pipeline
    from llama.results_zarr import ZarrResults

__all__ = ["SweepPlan", "finish_results", "plan_sweep", "results_writer", "sweep"]

log = logging.getLogger("llama.batch")


@dataclass(frozen=True)
class SweepPlan:
    """The parameter vectors of a sweep and the layout of its results.

    Made by `plan_sweep`; `vectors` may be called more than once (same vectors).
    """

    params: Mapping[str, Sequence[str]]
    random: int | None
    seed: int | None

    @property
    def layout(self) -> SweepLayout:
        return SweepLayout(self.params, self.random, self.seed)

    @property
    def total(self) -> int | None:
        """Number of events; None for endless draws."""
        from llama.batch import sweep

        if self.random is None and not self.params:
            return 1
        return sweep.count(self.params, self.random)

    def vectors(self) -> Iterator[dict[str, str]]:
        """The parameter vectors, in the order their events are numbered."""
        from llama.batch import sweep

        if self.random is not None:
            return sweep.random_vectors(self.params, self.random, self.seed)
        return sweep.product_vectors(self.params) if self.params else iter([{}])


def plan_sweep(
    params: Mapping[str, Sequence[Any] | str] | Sequence[str],
    random: int | None = None,
    seed: int | None = None,
) -> SweepPlan:
    """The vectors and results layout of a sweep (shared by `sweep` and ``llama batch``).

    Parameters
    ----------
    params : mapping or sequence of str
        ``{name: [values...]}`` (values turned to text), ``{name: "FILE"}`` (read like
        a params file: local, http(s):// or s3://), or ``["name=FILE", ...]`` specs.
    random : int, optional
        Number of random draws (with replacement; negative: endless) instead of the
        Cartesian product.
    seed : int, optional
        Seed of the draws; default a fresh one (logged).

    Raises
    ------
    llama.batch.sweep.ParamsError
        A params file that cannot be read or a bad name, with the spec named.

    Examples
    --------
    >>> plan = plan_sweep({"a": [1, 2], "b": ["x"]})
    >>> plan.total, list(plan.vectors())
    (2, [{'a': '1', 'b': 'x'}, {'a': '2', 'b': 'x'}])
    >>> plan_sweep({"a": ["1", "2"]}, random=3, seed=7).layout.dims
    ('draw',)
    """
    from llama.batch import sweep

    if isinstance(params, Mapping):
        values = sweep.Params()
        files = {name: v for name, v in params.items() if isinstance(v, (str, os.PathLike))}
        read = sweep.parse_params([f"{name}={path}" for name, path in files.items()])
        for name, given in params.items():
            if name in files:
                values[name] = read[name]
                values.places[name] = read.places[name]
            else:
                if not str(name).isidentifier():
                    raise sweep.ParamsError(f"params name {name!r} is not a valid name")
                values[name] = [str(v) for v in given]
                if not values[name]:
                    raise sweep.ParamsError(f"params {name!r}: the list of values is empty")
        params = values
    else:
        params = sweep.parse_params(list(params))
    if random is not None and seed is None:
        seed = sweep.make_seed()
    if random is not None:
        log.info("random draws: %s, seed %d (repeat with --seed %d)",
                 "endless" if random < 0 else random, seed, seed)  # fmt: skip
    return SweepPlan(params, random, seed)


def results_writer(results: str | os.PathLike | None, plan: SweepPlan, **attrs: Any):
    """The incremental store of a ``.zarr`` results path (None for netCDF or no path).

    Opened before any event runs, so a store that cannot be written, or that holds
    another sweep, is reported at once.
    """
    if results is None or not is_zarr(results):
        return None
    from llama.results_zarr import ZarrResults
    from llama.storage import redact

    writer = ZarrResults(results, plan.layout, **attrs)
    log.info("results written to %s as events finish (xarray.open_zarr reads it meanwhile)",
             redact(str(results)))  # fmt: skip
    return writer


def finish_results(
    results: str | os.PathLike | None,
    summary: BatchSummary,
    plan: SweepPlan,
    writer: ZarrResults | None,
    merge_since: float | None = None,
):
    """Close the zarr store, or write the netCDF file of a finished run; returns the path."""
    if writer is not None:
        writer.close()
        return results
    if results is None or not summary.outcomes:
        return None
    from llama.results import write_results

    return write_results(
        summary.outcomes, results, layout=plan.layout, merge_since=merge_since, seed=plan.seed
    )


def sweep(
    params: Mapping[str, Sequence[Any] | str] | Sequence[str],
    pipeline: str | Pipeline | Sequence[str] | None = None,
    get: Mapping[str, str] | None = None,
    eventdir: str | None = None,
    random: int | None = None,
    seed: int | None = None,
    scheduler: Any = "threads",
    jobs: int | None = None,
    results: str | os.PathLike | None = None,
    *,
    put: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
    progress: bool = True,
    **config: Any,
) -> xr.Dataset:
    """Run a sweep of events and return its results as labelled arrays.

    Parameters
    ----------
    params : mapping or sequence of str
        The sweep's params (see `plan_sweep`): ``{"graceid": [...], "neutrinos": "nu.txt"}``.
    pipeline : str, Pipeline or sequence of str, optional
        A named pipeline ("LLAMA2_REVIEW_PIPELINE"), a `llama.Pipeline`, or handler
        names made with their ancestors (``+f``); default DEFAULT_PIPELINE.
    get, put : mapping, optional
        ``{event file: URL template}`` as ``--get`` / ``{event file: URL template}`` as ``--put``.
    eventdir : str, optional
        Event directory template (``"runs/{graceid}-{neutrinos}"``); default temporary
        directories (deleted after the run, so no per-neutrino results).
    random, seed : int, optional
        Random draws instead of the Cartesian product (see `plan_sweep`).
    scheduler : str or distributed.Client
        "threads", "processes", "synchronous", "distributed" (a local cluster of `jobs`
        workers, with its dashboard link shown), a scheduler address, or a Client.
    jobs : int, optional
        Events at once (default: one per CPU).
    results : str or path, optional
        A ``.zarr`` store (local or fsspec URL, written as events finish) or a netCDF
        file (written at the end).
    flags : mapping, optional
        Flags of the events (default: existing flags, DEFAULT for new events).
    progress : bool
        Show a progress bar: in Jupyter one HTML bar updated in place (tqdm's widget
        when ipywidgets is installed), on a terminal tqdm's text bar on stderr.
    **config
        Other `llama.BatchConfig` fields (``format``, ``errdump``, ``public``, ...).

    Returns
    -------
    xarray.Dataset
        The results (`llama.results`), loaded in memory; ``attrs["summary"]`` holds
        the run's one-line summary.
    """
    import time

    from llama.batch.runner import BatchConfig, run_batch
    from llama.results import open_results, outcomes_to_dataset
    from llama.version import __version__

    plan = plan_sweep(params, random, seed)
    cluster = _Cluster(scheduler, jobs)
    settings = BatchConfig(
        pipeline=_pipeline(pipeline),
        get=dict(get or {}),
        put=dict(put or {}),
        eventdir=eventdir,
        flags=flags,
        scheduler=cluster.address,
        version=__version__,
        **({"jobs": jobs} if jobs is not None else {}),
        **config,
    )
    writer = results_writer(results, plan)
    bar = _progress_bar(plan.total) if progress else None

    failed = 0

    def on_outcome(outcome: EventOutcome) -> None:
        nonlocal failed
        if writer is not None:
            writer(outcome)
        failed += outcome.state == "failed"
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=failed)

    started = time.time()
    try:
        summary = run_batch(plan.vectors(), settings, total=plan.total, progress=False,
                            keep_outcomes=plan.total is not None, on_outcome=on_outcome)  # fmt: skip
    except BaseException:
        if writer is not None:  # what finished is written before the error goes up
            writer.close()
        raise
    finally:
        if bar is not None:
            bar.close()
        cluster.close()
    summary.seed = plan.seed
    path = finish_results(results, summary, plan, writer, merge_since=started)
    if path is not None:
        ds = open_results(path).load()
    else:
        ds = outcomes_to_dataset(summary.outcomes, plan.layout)
    ds.attrs["summary"] = summary.line()
    return ds


def _pipeline(pipeline: str | Pipeline | Sequence[str] | None) -> Pipeline:
    from llama.pipeline import Pipeline, select_pipeline

    if isinstance(pipeline, Pipeline):
        return pipeline
    if pipeline is None or isinstance(pipeline, str):
        return select_pipeline(pipeline)
    return select_pipeline(with_ancestors=list(pipeline))


def _progress_bar(total: int | None):
    """A progress display that renders where the sweep runs.

    In a Jupyter kernel: tqdm's widget when ipywidgets is installed, else a plain HTML
    ``<progress>`` bar updated in place (`_HtmlProgress`); on a terminal, tqdm's text
    bar on stderr.
    """
    import importlib.util

    if _in_jupyter():
        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.auto import tqdm

            return tqdm(total=total, unit="event")
        return _HtmlProgress(total)
    from tqdm.std import tqdm

    return tqdm(total=total, unit="event", file=sys.stderr)


def _in_jupyter() -> bool:
    """Whether this runs in a Jupyter kernel (not a terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class _HtmlProgress:
    """A progress bar for Jupyter without ipywidgets: one HTML output updated in place.

    Quacks like the part of tqdm that `sweep` uses (``update``, ``set_postfix``,
    ``close``); redraws at most every `interval` seconds, and once at the end.
    """

    def __init__(self, total: int | None, interval: float = 0.2) -> None:
        import time

        from IPython.display import HTML, display

        self.total, self.n, self.interval, self.postfix = total, 0, interval, {}
        self.started = self.drawn = time.monotonic()
        self.handle = display(HTML(self.html()), display_id=True)

    def html(self) -> str:
        import html
        import time

        elapsed = time.monotonic() - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        of = "" if self.total is None else f"/{self.total}"
        extra = "".join(
            f", {html.escape(str(k))}={html.escape(str(v))}" for k, v in self.postfix.items()
        )
        bar = (
            f'<progress value="{self.n}" max="{self.total}" style="width:20em"></progress> '
            if self.total
            else ""
        )
        return f"<div>{bar}<code>{self.n}{of} events, {elapsed:.0f} s, {rate:.2f} events/s{extra}</code></div>"

    def update(self, n: int = 1) -> None:
        import time

        self.n += n
        if time.monotonic() - self.drawn >= self.interval:
            self.redraw()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def redraw(self) -> None:
        import time

        from IPython.display import HTML

        self.drawn = time.monotonic()
        self.handle.update(HTML(self.html()))

    def close(self) -> None:
        self.redraw()


class _Cluster:
    """The scheduler of a sweep; for "distributed", a local cluster with its dashboard."""

    def __init__(self, scheduler: Any, jobs: int | None) -> None:
        self.cluster = self.client = None
        self.address = scheduler
        if scheduler == "distributed":
            import importlib.util

            from distributed import Client

            from llama.batch.cluster import local_cluster

            # the dashboard needs bokeh; without it the link would lead nowhere
            dashboard = ":0" if importlib.util.find_spec("bokeh") is not None else None
            # the batch engine's cluster (its workers' allocator setting: issue 8, item 4)
            self.cluster = local_cluster(jobs or os.cpu_count() or 1, dashboard)
            self.client = Client(self.cluster)
            self.address = self.cluster.scheduler_address
            _show_dashboard(self.client, dashboard is not None)
        elif not isinstance(scheduler, str):  # a distributed.Client of the caller's
            import importlib.util

            self.address = scheduler.scheduler.address
            _show_dashboard(scheduler, importlib.util.find_spec("bokeh") is not None)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _show_dashboard(client, available: bool) -> None:
    if not available:
        print(f"Dask scheduler at {client.scheduler.address} (pip install bokeh for its dashboard)")
        return
    link = client.dashboard_link
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display

        if get_ipython() is not None:
            display(HTML(f'Dask dashboard: <a href="{link}" target="_blank">{link}</a>'))
            return
    except ImportError:
        pass
    print(f"Dask dashboard: {link}")
