"""``--err-alert``: tell maintainers about unhandled exceptions through a webhook.

The webhook URL comes from configuration (``LLAMA_ERR_ALERT_URL``, see
`llama.config`); it is a secret and never logged.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping

from llama.config import service_url

__all__ = ["alert_maintainers"]

log = logging.getLogger("llama.batch")


def alert_maintainers(eventid: str, text: str, vector: Mapping[str, str]) -> bool:
    """POST ``{"text": ...}`` (Slack incoming-webhook shape) describing a failure.

    Returns True when the webhook accepted it; never raises (an alert that cannot be
    sent is logged, and the batch goes on).
    """
    url = service_url("err_alert")
    if not url:
        log.warning("--err-alert: no LLAMA_ERR_ALERT_URL configured; alert not sent")
        return False
    tail = "\n".join(text.strip().splitlines()[-15:])
    body = json.dumps(
        {"text": f"llama batch: event {eventid} failed\nparameters: {dict(vector)}\n```{tail}```"}
    ).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return 200 <= response.status < 300
    except OSError as err:
        log.warning("--err-alert: could not reach the alert webhook (%s)", type(err).__name__)
        return False
