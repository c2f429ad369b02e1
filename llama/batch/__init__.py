"""Batch runs: parameter sweeps over many event directories.

The data path, one module each:

- `llama.batch.sweep`: params files -> parameter vectors (Cartesian product, or
  seeded random draws, possibly endless);
- `llama.batch.template`: the safe formatter that fills ``{name}`` fields of
  ``--get``/``--put``/``--errdump``/``--eventdir``/``--format`` from a vector and
  the environment;
- `llama.batch.runner`: vectors -> event jobs -> one Dask graph per event (handlers
  as tasks) -> files and per-event outcomes; progress, summary, resume;
- `llama.batch.schedulers`: the pool of workers that ``--scheduler``/``--jobs`` mean,
  one whole event per task: on this machine (`llama.batch.pools`: the calling
  thread, threads, processes) or on a Dask cluster (`llama.batch.cluster`: our own
  local cluster, or a running scheduler);
- `llama.batch.errdump`: copies a failed event directory to every ``--errdump`` place;
- `llama.batch.alerts`: ``--err-alert`` webhook posts.

Submodules are imported on demand, so ``import llama.batch`` stays cheap (the
CLI's ``--help`` must be instant).

Examples
--------
>>> from llama.batch import sweep, template
>>> params = {"graceid": ["S1", "S2"]}
>>> [template.render("sim/{graceid}", v, environ={}) for v in sweep.product_vectors(params)]
['sim/S1', 'sim/S2']
"""

__all__ = ["alerts", "errdump", "runner", "sweep", "template"]
