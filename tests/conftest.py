"""Shared test fixtures: a real S3 endpoint and a real HTTP server, both on loopback.

Fixtures
--------
s3_server : session
    A moto S3 server (``moto.server.ThreadedMotoServer``) on 127.0.0.1, free port.
    Yields its endpoint URL, e.g. ``"http://127.0.0.1:40123"``.
s3 : function
    Points the AWS_* environment at `s3_server` (dummy "testing" credentials),
    clears the s3fs/storage client caches, creates a fresh bucket and yields its name.
s3_client : function
    A boto3 S3 client for the same endpoint, for checks behind LLAMA's back
    (object ACLs, listing keys).
http_server : function
    A ``ThreadingHTTPServer`` on 127.0.0.1, free port, serving a temporary directory.
    Unpacks as ``base_url, directory``; also has ``.fail(path, times, status=500)``
    to answer `status` for the next `times` requests of `path`, and ``.requests``,
    the list of ``(method, path)`` it received.
fast_retries : function
    Makes llama.storage retry quickly (tries=3, millisecond delays) for the test.

Examples
--------
::

    def test_roundtrip(s3, tmp_path):
        storage.put(tmp_path / "a", f"s3://{s3}/a")

    def test_read(http_server):
        base_url, directory = http_server
        (directory / "x.txt").write_text("hi")
        assert storage.read_text(f"{base_url}/x.txt") == "hi"
"""

from __future__ import annotations

import http.server
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# everything here talks to 127.0.0.1; a proxy from the environment must not intercept
_LOOPBACK = "127.0.0.1,localhost"


def _isolate_network_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", _LOOPBACK)
    monkeypatch.setenv("no_proxy", _LOOPBACK)


# ---------------------------------------------------------------------------------- S3


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 endpoint (moto in server mode) on loopback; yields its URL."""
    from moto.server import ThreadedMotoServer

    # moto's werkzeug logs every request at INFO; keep test output readable
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _clear_s3_caches() -> None:
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:  # pragma: no cover - s3fs is a project dependency
        pass
    from llama import storage

    storage.clear_cache()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """AWS_* environment pointing at `s3_server`, and a fresh bucket; yields its name."""
    _isolate_network_env(monkeypatch)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    # no ~/.aws files may leak into the tests
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    _clear_s3_caches()

    import boto3

    bucket = f"llama-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        _clear_s3_caches()


@pytest.fixture
def s3_client(s3: str, s3_server: str):
    """A boto3 client for the test S3 endpoint (credentials from the `s3` fixture)."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server)


# -------------------------------------------------------------------------------- HTTP


class _Control:
    """Shared state between a test and its HTTP server's handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []

    def fail(self, path: str, times: int, status: int = 500) -> None:
        """Answer `status` to the next `times` requests of `path` (e.g. "/x.txt")."""
        with self.lock:
            self.failures.setdefault(path, []).extend([status] * times)

    def next_failure(self, method: str, path: str) -> int | None:
        with self.lock:
            self.requests.append((method, path))
            queue = self.failures.get(path)
            return queue.pop(0) if queue else None


class HTTPServerHandle(tuple):
    """``(base_url, directory)`` plus ``fail`` and ``requests`` of the server."""

    def __new__(cls, base_url: str, directory: Path, control: _Control):
        self = super().__new__(cls, (base_url, directory))
        self.control = control
        return self

    @property
    def base_url(self) -> str:
        return self[0]

    @property
    def directory(self) -> Path:
        return self[1]

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.control.requests

    def fail(self, path: str, times: int, status: int = 500) -> None:
        """Answer `status` to the next `times` requests of `path` (leading "/")."""
        self.control.fail(path, times, status)


def _handler_class(directory: Path, control: _Control) -> type:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def _maybe_fail(self) -> bool:
            status = control.next_failure(self.command, self.path.split("?", 1)[0])
            if status is None:
                return False
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True

        def do_GET(self) -> None:
            if not self._maybe_fail():
                super().do_GET()

        def do_HEAD(self) -> None:
            if not self._maybe_fail():
                super().do_HEAD()

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib name
            pass  # quiet: pytest shows failures, not access logs

    return Handler


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HTTPServerHandle]:
    """A real HTTP server on 127.0.0.1 serving a temporary directory.

    Yields an `HTTPServerHandle`: ``base_url, directory = http_server``.
    """
    _isolate_network_env(monkeypatch)
    directory = tmp_path / "http-root"
    directory.mkdir()
    control = _Control()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(directory, control))
    server.daemon_threads = True
    # a short poll interval keeps shutdown() (and so every test teardown) fast
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield HTTPServerHandle(f"http://{host}:{port}", directory, control)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------------------ retries


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """llama.storage retries 3 times with millisecond backoff during the test."""
    from llama import storage

    old = storage.set_retry_policy(storage.RetryPolicy(tries=3, base_delay=0.001, max_delay=0.01))
    try:
        yield
    finally:
        storage.set_retry_policy(old)


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that a test stops with Ctrl-C (SIGINT).

    A shell starts background jobs with SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler in anything they start: a test suite run as such a job
    (``bash .ci/run &``) would send its Ctrl-C into the void. A terminal's process
    has the default action, which this restores in the child.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
