"""The handler catalogue, grouped by messenger and role.

Importing this package registers every handler class in `llama.handler.REGISTRY` and
checks the DAG (cycles, unknown dependencies, clashing file names).
"""

from llama.handler import REGISTRY
from llama.handlers import (  # noqa: F401  (import registers the classes)
    coinc,
    gw,
    neutrino,
    other_messengers,
    plots,
    receipts,
    tables,
)

REGISTRY.check()

__all__ = ["coinc", "gw", "neutrino", "other_messengers", "plots", "receipts", "tables"]
