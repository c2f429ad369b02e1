"""LLAMA: the gravitational-wave x high-energy-neutrino coincidence search, in batch.

The public API, for notebooks and scripts. Importing it is cheap: numerical libraries
load when first used.

Examples
--------
>>> import llama
>>> "CoincSignificanceI3Lvc" in llama.select_pipeline("LLAMA2_REVIEW_PIPELINE")
True
"""

from llama.batch.runner import BatchConfig, BatchSummary, EventOutcome, run_batch
from llama.event import Event
from llama.flags import DEFAULT_FLAGS, PRESETS
from llama.handler import REGISTRY, FileHandler, Status
from llama.pipeline import Pipeline, select_pipeline
from llama.results import outcomes_to_dataset, read_results, write_results
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
    "__version__",
    "outcomes_to_dataset",
    "read_results",
    "run_batch",
    "select_pipeline",
    "write_results",
]
