"""A real HTTP server on loopback speaking the protocols of LLAMA's outside services.

One ``ThreadingHTTPServer`` on 127.0.0.1 (free port) serves, under one base URL:

GraceDB REST API (``/gracedb/api``)
    ``GET /superevents/{id}/``, ``GET /events/{graceid}/``,
    ``GET /superevents/{id}/files/p_astro.json`` from the dicts ``superevents``,
    ``events`` and ``p_astro``; 404 ``{"detail": "Not found."}`` otherwise.
IceCube stand-in (``/icecube``)
    ``GET /events?mjd_start=&mjd_stop=`` -> ``{"events": [...], "complete": ...}`` with
    the entries of ``neutrinos`` in the window, widened by ``icecube_padding_s``
    (``complete`` omitted when None).
ZTF stand-in (``/ztf``)
    ``GET /candidates?mjd_start=&mjd_stop=`` -> ``{"candidates": [...]}``.
Fermi stand-in (``/fermi``)
    ``GET /grbs?start=&stop=`` (ISO UTC) -> ``{"grbs": [...]}``.
Slack-like webhooks (``/slack/services/<secret>``)
    ``POST`` of the JSON payload of `llama.handlers.receipts.webhook_payload`; the
    server checks the base64 content against its sha256 (400 ``invalid_payload``),
    records the payload in ``posts`` and answers ``slack_status`` / ``slack_body``
    (200 ``ok``). An unknown webhook path gets 404 ``no_service``.

``fail(prefix, times, status)`` makes the next ``times`` requests whose path starts
with ``prefix`` answer ``status``; ``requests`` lists ``(method, path_with_query)``.

The `fake_services` fixture starts it and points every ``LLAMA_*`` service variable at
it (and isolates the environment from proxies and the user's config file).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

SLACK_LMA_SECRET = "T0SECRET/B0LMA/xoxb-lma-very-secret-token"
SLACK_I3_SECRET = "T0SECRET/B0I3/xoxb-i3-very-secret-token"


class FakeServices:
    """State of the fake services, shared with the server threads."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.lock = threading.Lock()
        self.superevents: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self.p_astro: dict[str, Any] = {}
        self.neutrinos: list[dict] = []
        self.icecube_complete: bool | None = True
        #: the IceCube stand-in answers this much more than asked [s] (a sloppy server)
        self.icecube_padding_s = 0.0
        self.ztf_candidates: list[dict] = []
        self.fermi_grbs: list[dict] = []
        self.posts: list[dict] = []
        self.slack_status = 200
        self.slack_body = "ok"
        self.requests: list[tuple[str, str]] = []
        self._failures: list[list] = []

    # URLs -----------------------------------------------------------------------------
    @property
    def urls(self) -> dict[str, str]:
        """Environment variable -> URL for every service."""
        return {
            "LLAMA_GRACEDB_URL": f"{self.base_url}/gracedb/api/",
            "LLAMA_ICECUBE_URL": f"{self.base_url}/icecube",
            "LLAMA_ZTF_URL": f"{self.base_url}/ztf/",
            "LLAMA_FERMI_URL": f"{self.base_url}/fermi",
            "LLAMA_SLACK_LMA_WEBHOOK": f"{self.base_url}/slack/services/{SLACK_LMA_SECRET}",
            "LLAMA_SLACK_I3_WEBHOOK": f"{self.base_url}/slack/services/{SLACK_I3_SECRET}",
        }

    def fail(self, prefix: str, times: int, status: int = 503) -> None:
        """Answer ``status`` to the next ``times`` requests under path ``prefix``."""
        with self.lock:
            self._failures.append([prefix, times, status])

    def _next_failure(self, method: str, path: str) -> int | None:
        with self.lock:
            self.requests.append((method, path))
            for entry in self._failures:
                if path.startswith(entry[0]) and entry[1] > 0:
                    entry[1] -= 1
                    return entry[2]
        return None

    # routes ---------------------------------------------------------------------------
    def answer_get(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["gracedb", "api"]:
            return self._gracedb(parts[2:])
        if parts == ["icecube", "events"]:
            pad = self.icecube_padding_s / 86400.0
            lo, hi = float(query["mjd_start"]) - pad, float(query["mjd_stop"]) + pad
            events = [e for e in self.neutrinos if lo <= e["mjd"] <= hi]
            body: dict[str, Any] = {"events": events}
            if self.icecube_complete is not None:
                body["complete"] = self.icecube_complete
            return 200, body
        if parts == ["ztf", "candidates"]:
            lo, hi = float(query["mjd_start"]), float(query["mjd_stop"])
            return 200, {"candidates": [c for c in self.ztf_candidates if lo <= c["mjd"] <= hi]}
        if parts == ["fermi", "grbs"]:
            from astropy.time import Time

            lo, hi = Time(query["start"]).gps, Time(query["stop"]).gps
            keep = [g for g in self.fermi_grbs if lo <= Time(g["trigger_time_iso"]).gps <= hi]
            return 200, {"grbs": keep}
        return 404, {"detail": "Not found."}

    def _gracedb(self, parts: list[str]) -> tuple[int, Any]:
        found: Any = None
        if len(parts) == 2 and parts[0] == "superevents":
            found = self.superevents.get(parts[1])
        elif len(parts) == 2 and parts[0] == "events":
            found = self.events.get(parts[1])
        elif (
            len(parts) == 4 and parts[0] == "superevents" and parts[2:] == ["files", "p_astro.json"]
        ):
            found = self.p_astro.get(parts[1])
        return (200, found) if found is not None else (404, {"detail": "Not found."})

    def answer_post(self, path: str, body: bytes) -> tuple[int, str]:
        secret = path.removeprefix("/slack/services/")
        if not path.startswith("/slack/services/") or secret not in (
            SLACK_LMA_SECRET,
            SLACK_I3_SECRET,
        ):
            return 404, "no_service"
        try:
            payload = json.loads(body)
            content = base64.b64decode(payload["content_base64"], validate=True)
        except (ValueError, KeyError, TypeError):
            return 400, "invalid_payload"
        if hashlib.sha256(content).hexdigest() != payload.get("sha256"):
            return 400, "invalid_payload"
        channel = "lma" if secret == SLACK_LMA_SECRET else "i3"
        with self.lock:
            self.posts.append({"webhook": channel, **payload})
        return self.slack_status, self.slack_body


def _handler_class(state: FakeServices) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _failed(self) -> bool:
            status = state._next_failure(self.command, self.path)
            if status is None:
                return False
            self._send(status, b'{"detail": "injected failure"}', "application/json")
            return True

        def do_GET(self) -> None:
            if self._failed():
                return
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            try:
                status, obj = state.answer_get(split.path, query)
            except (KeyError, ValueError) as err:
                status, obj = 400, {"detail": f"bad query: {err}"}
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self._failed():
                return
            status, text = state.answer_post(urlsplit(self.path).path, body)
            self._send(status, text.encode(), "text/plain")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def fake_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeServices]:
    """Start the fake services and point every LLAMA_* service variable at them."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-llama-config"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)  # type: ignore[arg-type]
    host, port = server.server_address[:2]
    state = FakeServices(f"http://{host}:{port}")
    server.RequestHandlerClass = _handler_class(state)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    for var, url in state.urls.items():
        monkeypatch.setenv(var, url)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def no_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No service URL configured at all (environment and config file)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-llama-config"))
    for var in (
        "LLAMA_GRACEDB_URL",
        "LLAMA_ICECUBE_URL",
        "LLAMA_ZTF_URL",
        "LLAMA_FERMI_URL",
        "LLAMA_SLACK_LMA_WEBHOOK",
        "LLAMA_SLACK_I3_WEBHOOK",
    ):
        monkeypatch.delenv(var, raising=False)
