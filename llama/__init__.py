"""LLAMA: the gravitational-wave x high-energy-neutrino coincidence search, in batch.

The public API, for notebooks and scripts. Importing it is cheap: numerical libraries
load when first used.

Examples
--------
>>> import llama
>>> "CoincSignificanceI3Lvc" in llama.select_pipeline("LLAMA2_REVIEW_PIPELINE")
True

``llama.sweep(params, pipeline=..., get=..., eventdir=..., results=...)`` runs a whole
sweep and returns its results as labelled arrays (`llama.sweep_api.sweep`).
"""

#: Where each name of the public API lives: imported at its first use (PEP 562), so
#: that ``import llama`` (which every ``llama`` command and every worker process does
#: first) costs no more than the package itself. Importing all of them took ~0.15 s
#: of CPU before ``llama batch`` could start its fork server (~0.3 s with the
#: sources compiled, under PYTHONDONTWRITEBYTECODE).
_API = {
    "BatchConfig": "llama.batch.runner",
    "BatchSummary": "llama.batch.runner",
    "EventOutcome": "llama.batch.runner",
    "run_batch": "llama.batch.runner",
    "Event": "llama.event",
    "DEFAULT_FLAGS": "llama.flags",
    "PRESETS": "llama.flags",
    "REGISTRY": "llama.handler",
    "FileHandler": "llama.handler",
    "Status": "llama.handler",
    "Pipeline": "llama.pipeline",
    "select_pipeline": "llama.pipeline",
    "SweepLayout": "llama.results",
    "open_results": "llama.results",
    "outcomes_to_dataset": "llama.results",
    "read_results": "llama.results",
    "write_results": "llama.results",
    "sweep": "llama.sweep_api",
    "__version__": "llama.version",
}


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'llama' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later uses find it here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


__all__ = [
    "DEFAULT_FLAGS",
    "PRESETS",
    "REGISTRY",
    "BatchConfig",
    "BatchSummary",
    "Event",
    "EventOutcome",
    "FileHandler",
    "Pipeline",
    "Status",
    "SweepLayout",
    "__version__",
    "open_results",
    "outcomes_to_dataset",
    "read_results",
    "run_batch",
    "select_pipeline",
    "sweep",
    "write_results",
]
