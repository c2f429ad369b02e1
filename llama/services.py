"""Small HTTP clients for outside services: GET JSON, POST to a webhook.

Every service is reached through a base URL from `llama.config.service_url` (an
environment variable or the config file), never a hard-coded host. Handlers call

* `require_url` to get a service's base URL, or a clear error naming the variable
  that sets it;
* `get_json` for JSON APIs (GraceDB, the IceCube, ZTF and Fermi stand-ins), with a
  timeout and retries on transient failures (connection errors, HTTP 429 and 5xx);
* `post_webhook` to post a JSON payload to a channel webhook (Slack-like).

Webhook URLs are secrets: `post_webhook` never puts the URL, or any part of its
path, into an exception message, a log line or the returned response text. Tokens
in service URLs are too: response bodies quoted in messages pass through
`llama.storage.redact`, and `join_url` keeps a base URL's query string at the end.

Examples
--------
>>> from llama.services import join_url
>>> join_url("http://127.0.0.1:8000/api/", "superevents", "S190425z", "")
'http://127.0.0.1:8000/api/superevents/S190425z/'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from llama.config import SERVICES, service_url
from llama.storage import redact

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "ServiceError",
    "WebhookResponse",
    "get_json",
    "join_url",
    "post_webhook",
    "public_url",
    "require_url",
]

log = logging.getLogger(__name__)

#: Seconds to wait for a connection and for each read when the caller gives a number;
#: by default the configured LLAMA_CONNECT_TIMEOUT_S and LLAMA_READ_TIMEOUT_S apply.
DEFAULT_TIMEOUT_S = 20.0
#: Extra attempts after a transient failure.
DEFAULT_RETRIES = 2
#: Longest response body kept in receipts and error messages [characters].
MAX_BODY_CHARS = 500
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class ServiceError(RuntimeError):
    """An outside service is unconfigured, unreachable or answered with an error."""


def require_url(name: str, purpose: str = "") -> str:
    """Base URL of service ``name``, or a `ServiceError` naming the variable to set.

    Parameters
    ----------
    name
        A key of `llama.config.SERVICES` (``"gracedb"``, ``"icecube"``, ...).
    purpose
        What the URL is needed for, added to the error message.
    """
    url = service_url(name)
    if not url:
        why = f" to {purpose}" if purpose else ""
        raise ServiceError(
            f"no URL configured for the {name} service{why}: set the environment "
            f"variable {SERVICES[name]} (or '{SERVICES[name].removeprefix('LLAMA_').lower()}' "
            "in the llama config file)"
        )
    return url


def join_url(base: str, *parts: str) -> str:
    """``base`` followed by URL-quoted path ``parts``, separated by single slashes.

    The one way LLAMA builds a service URL. The parts go into the path of `base`
    (split with `urllib.parse`), before its query string and fragment: a base such
    as ``https://host/api/?token=XYZ`` keeps its token as a query parameter instead
    of swallowing the path into the token. An empty last part gives a trailing
    slash (GraceDB's REST paths end in one).

    Examples
    --------
    >>> join_url("https://host/api/?token=XYZ", "superevents", "S1", "")
    'https://host/api/superevents/S1/?token=XYZ'
    >>> join_url("http://host", "a b", "c/d")
    'http://host/a%20b/c%2Fd'
    """
    split = urlsplit(base)
    path = split.path.rstrip("/")
    for part in parts:
        # each part is one segment: a "/" or "?" inside it must not change the URL's shape
        path += "/" + quote(str(part), safe="")
    return urlunsplit((split.scheme, split.netloc, path, split.query, split.fragment))


def public_url(url: str) -> str:
    """``url`` without user name, password or query string (for messages and logs).

    Examples
    --------
    >>> public_url("https://user:pw@host.example/api/x?token=abc")
    'https://host.example/api/x'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _timeout(timeout_s: float | None) -> float | tuple[float, float]:
    """What requests takes as ``timeout``: the caller's number, else (connect, read)."""
    from llama.storage import timeouts

    return timeouts() if timeout_s is None else timeout_s


def _sleep_before_retry(attempt: int) -> None:
    time.sleep(min(0.2 * 2**attempt, 5.0))


def get_json(
    url: str,
    params: Mapping[str, Any] | None = None,
    *,
    timeout_s: float | None = None,
    retries: int = DEFAULT_RETRIES,
) -> Any:
    """GET ``url`` and decode its JSON body.

    Parameters
    ----------
    url
        Full URL (build it with `join_url` from a `require_url` base).
    params
        Query parameters.
    timeout_s
        Connect and read timeout [s]; None: the configured ones
        (`llama.storage.timeouts`: 10 s to connect, 60 s per read by default).
    retries
        Extra attempts after connection errors, timeouts, HTTP 429 or 5xx.

    Raises
    ------
    ServiceError
        On HTTP errors (404 says that the object does not exist), on failures that
        persist after the retries, and on a body that is not JSON.
    """
    import requests

    shown = public_url(url)
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            resp = requests.get(url, params=params, timeout=_timeout(timeout_s))
        except requests.RequestException as err:
            if not last:
                _sleep_before_retry(attempt)
                continue
            raise ServiceError(
                f"GET {shown} failed after {retries + 1} attempt(s): "
                f"{type(err).__name__}; check that the service is up and the URL is right"
            ) from None
        if resp.status_code in _TRANSIENT_STATUS and not last:
            _sleep_before_retry(attempt)
            continue
        if resp.status_code == 404:
            raise ServiceError(f"GET {shown}: not found (HTTP 404)")
        if resp.status_code >= 400:
            raise ServiceError(
                f"GET {shown}: HTTP {resp.status_code} {_body(resp.text, url)!r}"
                + (
                    f" after {retries + 1} attempts"
                    if resp.status_code in _TRANSIENT_STATUS
                    else ""
                )
            )
        try:
            return resp.json()
        except ValueError:
            raise ServiceError(
                f"GET {shown}: the answer is not JSON ({_body(resp.text, url, 80)!r})"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class WebhookResponse:
    """What a webhook answered: HTTP status and the (trimmed, scrubbed) body."""

    status: int
    body: str


def post_webhook(
    name: str,
    payload: Mapping[str, Any],
    *,
    timeout_s: float | None = None,
    retries: int = 1,
) -> WebhookResponse:
    """POST ``payload`` as JSON to the webhook of service ``name``.

    The webhook URL is a secret: it appears in no message, log line or return value.
    A post is retried only when it surely did not arrive (connection refused) or the
    server asked for it (HTTP 429 or 503), so that a file is not posted twice.

    Parameters
    ----------
    name
        ``"slack_lma"`` or ``"slack_i3"`` (keys of `llama.config.SERVICES`).
    payload
        JSON-serialisable body.

    Raises
    ------
    ServiceError
        Unconfigured webhook, unreachable server, or an HTTP status >= 400.
    """
    import requests

    url = require_url(name, "post to this channel")
    _hide_in_logs(url)
    label = f"the {name} webhook ({SERVICES[name]})"
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            resp = requests.post(url, json=dict(payload), timeout=_timeout(timeout_s))
        except requests.ConnectionError as err:
            refused = not isinstance(err, requests.ReadTimeout) and _never_sent(err)
            if refused and not last:
                _sleep_before_retry(attempt)
                continue
            raise ServiceError(
                f"POST to {label} failed: {type(err).__name__}; check the service"
            ) from None
        except requests.RequestException as err:
            raise ServiceError(
                f"POST to {label} failed: {type(err).__name__}; check the service"
            ) from None
        body = _trim(_scrub(redact(resp.text, also=[url]), url))
        if resp.status_code in (429, 503) and not last:
            _sleep_before_retry(attempt)
            continue
        if resp.status_code >= 400:
            raise ServiceError(f"POST to {label}: HTTP {resp.status_code} {body!r}")
        log.info("posted to %s: HTTP %s", label, resp.status_code)
        return WebhookResponse(resp.status_code, body)
    raise AssertionError("unreachable")  # pragma: no cover


class _SecretFilter(logging.Filter):
    """Rewrites log records that would show a webhook URL (urllib3 logs request paths)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in sorted(self.secrets, key=len, reverse=True):
                message = message.replace(secret, "<webhook>")
            record.msg, record.args = message, None
        return True


_SECRET_FILTER = _SecretFilter()


def _hide_in_logs(url: str) -> None:
    """Keep ``url`` and its path out of the logs of requests' transport (urllib3)."""
    path = urlsplit(url).path
    _SECRET_FILTER.secrets.update(s for s in (url, url.rstrip("/"), path) if len(s) > 1)
    for name in ("urllib3.connectionpool", "urllib3", "requests"):
        logger = logging.getLogger(name)
        if _SECRET_FILTER not in logger.filters:
            logger.addFilter(_SECRET_FILTER)


def _never_sent(err: BaseException) -> bool:
    """Whether a requests error happened before any byte was sent (connect failure)."""
    import requests

    return isinstance(err, requests.ConnectTimeout) or "refused" in str(err).lower()


def _body(text: str, url: str, limit: int = MAX_BODY_CHARS) -> str:
    """A response body fit for a message: credentials redacted, then trimmed.

    A server may echo the request, token included; redacting before trimming
    leaves no cut-off piece of a secret behind.
    """
    return _trim(redact(text, also=[url]), limit)


def _trim(text: str, limit: int = MAX_BODY_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _scrub(text: str, secret_url: str) -> str:
    """Remove the secret URL and its path (which holds the token) from ``text``."""
    secrets = [secret_url, secret_url.rstrip("/")]
    path = urlsplit(secret_url).path.strip("/")
    if len(path) >= 8:
        secrets.append(path)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "<webhook>")
    return text
