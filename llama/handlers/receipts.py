"""Upload receipts: post a file to a team channel (HTTP webhook), keep a receipt.

``RctSlkLma<X>`` posts handler X's file to the LLAMA channel, ``RctSlkI3<X>`` to the
IceCube channel; each writes ``rct_slk_lma_<file>.json`` / ``rct_slk_i3_<file>.json``.
"""

from __future__ import annotations

from typing import ClassVar

from llama.handler import FileHandler
from llama.handlers import coinc, gw, plots, tables

#: Handlers whose files are posted to the LLAMA team channel.
LLAMA_CHANNEL_FILES = (
    gw.SkymapInfo, gw.LvcGcnXml, gw.LvcRetractionXml, gw.LVAlertJSON, gw.LvcDistancesJson,
    gw.LVCGraceDbEventData, coinc.CoincSignificanceI3Lvc,
    coinc.CoincSignificanceSubthresholdI3Lvc, plots.CoincScatterI3LvcPng,
    plots.CoincScatterI3LvcPdf, plots.CoincScatterZtfLVCPng, plots.CoincScatterZtfLVCPdf,
    plots.CoincScatterZtfI3LvcPng, plots.CoincScatterZtfI3LvcPdf, tables.CoincSummaryI3LvcPdf,
)  # fmt: skip
#: Handlers whose files are posted to the IceCube channel.
ICECUBE_CHANNEL_FILES = (tables.CoincSummaryI3LvcPdf,)


class SlackReceipt(FileHandler, abstract=True):
    """Post ``UPLOADS``'s file to a channel webhook and record a receipt."""

    UPLOADS: ClassVar[type[FileHandler]]
    CHANNEL: ClassVar[str]  # "lma" or "i3"
    CONTACTS_SERVICE = True


def _receipt_class(channel: str, prefix: str, target: type[FileHandler]) -> type[FileHandler]:
    return type(
        f"{prefix}{target.__name__}",
        (SlackReceipt,),
        {
            "__module__": __name__,
            "__doc__": f"Receipt for posting {target.FILENAME} to the {channel} channel.",
            "FILENAME": f"rct_slk_{channel}_{target.FILENAME}.json",
            "DEPENDENCIES": (target,),
            "UPLOADS": target,
            "CHANNEL": channel,
        },
    )


RECEIPTS = [_receipt_class("lma", "RctSlkLma", t) for t in LLAMA_CHANNEL_FILES] + [
    _receipt_class("i3", "RctSlkI3", t) for t in ICECUBE_CHANNEL_FILES
]
globals().update({cls.__name__: cls for cls in RECEIPTS})
