"""Upload receipts: post a file to a team channel (HTTP webhook), keep a receipt.

``RctSlkLma<X>`` posts handler X's file to the LLAMA channel, ``RctSlkI3<X>`` to the
IceCube channel; each writes ``rct_slk_lma_<file>.json`` / ``rct_slk_i3_<file>.json``.

When they run
    Only with UPLOAD=true and ROLE=observation (the ``RctSlkI3`` ones also need
    ICECUBE_UPLOAD=true), on top of the base rules (VETOED, ONLINE=false, a
    retraction; the receipt for the retraction notice itself is not vetoed by it).
    Otherwise they are VETOED.

The webhook (Slack-incoming-webhook-like)
    The URL comes from ``LLAMA_SLACK_LMA_WEBHOOK`` / ``LLAMA_SLACK_I3_WEBHOOK`` (or the
    config file) and is a secret: it never appears in the receipt, the logs or an
    error message. One ``POST`` with a JSON body::

        {"text": "LLAMA S190425z: significance_lvc-i3.json",
         "channel": "lma", "event": "S190425z", "filename": "significance_lvc-i3.json",
         "content_type": "application/json", "size": 1234,
         "sha256": "<hex of the bytes>", "content_base64": "<the file, base64>"}

    Any 2xx answer is success (Slack answers ``200 ok``); its body is kept, trimmed.

The receipt
    ``{"channel", "event", "file", "size", "sha256" (of the bytes posted),
    "posted_utc", "http_status", "response"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llama.handler import FileHandler, write_json
from llama.handlers import coinc, gw, plots, tables

if TYPE_CHECKING:
    from llama.event import Event

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
    TIMEOUT_S = 120.0

    @classmethod
    def veto_reason(cls, event: Event) -> str | None:
        reason = super().veto_reason(event)
        if reason == RETRACTED and cls.UPLOADS is gw.LvcRetractionXml:
            reason = None  # the retraction notice itself is worth posting
        if reason is not None:
            return reason
        flags = event.flags
        if not flags.is_true("UPLOAD"):
            return "UPLOAD=false: nothing is posted"
        if flags["ROLE"] != "observation":
            return f"ROLE={flags['ROLE']}: only observation events are posted"
        if cls.CHANNEL == "i3" and not flags.is_true("ICECUBE_UPLOAD"):
            return "ICECUBE_UPLOAD=false: nothing is posted to IceCube"
        return None

    def generate(self, out: Path) -> None:
        import hashlib

        from llama.services import post_webhook

        data = self.dep_path(self.UPLOADS).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        name = self.UPLOADS.FILENAME
        response = post_webhook(
            f"slack_{self.CHANNEL}", webhook_payload(self.event.eventid, self.CHANNEL, name, data)
        )
        write_json(
            out,
            {
                "channel": self.CHANNEL,
                "event": self.event.eventid,
                "file": name,
                "size": len(data),
                "sha256": digest,
                "posted_utc": _utc_now(),
                "http_status": response.status,
                "response": response.body,
            },
        )


#: The base rules' reason for a retracted event (see FileHandler.veto_reason).
RETRACTED = "the GW alert was retracted"


def _utc_now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _content_type(filename: str) -> str:
    import mimetypes

    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def webhook_payload(eventid: str, channel: str, filename: str, data: bytes) -> dict[str, Any]:
    """The JSON body posted to a channel webhook (see the module docstring).

    Examples
    --------
    >>> p = webhook_payload("S190425z", "lma", "a.json", b"{}")
    >>> p["text"], p["content_base64"], p["content_type"]
    ('LLAMA S190425z: a.json', 'e30=', 'application/json')
    """
    import base64
    import hashlib

    return {
        "text": f"LLAMA {eventid}: {filename}",
        "channel": channel,
        "event": eventid,
        "filename": filename,
        "content_type": _content_type(filename),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_base64": base64.b64encode(data).decode("ascii"),
    }


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
