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

from llama.batch.runner import BatchConfig, BatchSummary, EventOutcome, run_batch
from llama.event import Event
from llama.flags import DEFAULT_FLAGS, PRESETS
from llama.handler import REGISTRY, FileHandler, Status
from llama.pipeline import Pipeline, select_pipeline
from llama.results import (
    SweepLayout,
    open_results,
    outcomes_to_dataset,
    read_results,
    write_results,
)
from llama.sweep_api import sweep
from llama.version import __version__

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
