"""Every file access of LLAMA, local or remote, through fsspec URLs.

One place decides how files move: batch ``--get``/``--put``/``--errdump``, params
files and sky-map downloads all call the functions here.

Supported locations
-------------------
- local paths (``~`` is expanded) and ``file://`` URLs: read and write;
- ``http://`` and ``https://``: read only (any write raises `StorageError`);
- ``s3://bucket/key``: read and write through s3fs, configured only by the
  standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``,
  ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``), so any S3-compatible store works.

Errors
------
Transient failures (connection errors, HTTP 5xx/429, S3 throttling) are retried with
exponential backoff (see `RetryPolicy`); "not found" is never retried and becomes a
`NotFoundError`. Every error message names the URL with secrets removed (see
`redact`) and says what to check.

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> src = os.path.join(d, "a.txt")
>>> with open(src, "w") as f:
...     _ = f.write("hello")
>>> put(src, os.path.join(d, "out", "b.txt"))
>>> read_text(os.path.join(d, "out", "b.txt"))
'hello'
>>> exists("file://" + os.path.join(d, "nope"))
False
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "PROTOCOLS",
    "Backend",
    "NotFoundError",
    "RetryPolicy",
    "StorageError",
    "UnsafePathError",
    "atomic_write_bytes",
    "clear_cache",
    "exists",
    "filesystem_path",
    "get",
    "get_retry_policy",
    "is_local",
    "join",
    "put",
    "put_tree",
    "read_bytes",
    "read_text",
    "REDACTED",
    "RedactingFilter",
    "redact",
    "safe_join",
    "set_retry_policy",
    "timeouts",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


# ----------------------------------------------------------------------------- errors


class StorageError(Exception):
    """A file could not be read or written; the message says what to check.

    Messages never contain credentials (see `redact`).
    """


class NotFoundError(StorageError, FileNotFoundError):
    """The file (or bucket) does not exist. Never retried.

    Also a `FileNotFoundError`, so ``except FileNotFoundError`` keeps working.
    """


class UnsafePathError(ValueError):
    """A relative name would leave the event directory (see `safe_join`)."""


# --------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Backend:
    """How one URL scheme maps onto fsspec.

    Parameters
    ----------
    protocol : str
        The fsspec protocol name.
    module : str or None
        Python module the fsspec implementation needs (None: built in).
    pip : str or None
        What to ``pip install`` when `module` is missing.
    writable : bool
        Whether LLAMA may write there.
    """

    protocol: str
    module: str | None
    pip: str | None
    writable: bool


#: URL scheme -> backend. The empty scheme is a plain local path.
PROTOCOLS: dict[str, Backend] = {
    "": Backend("file", None, None, True),
    "file": Backend("file", None, None, True),
    "http": Backend("http", "aiohttp", "aiohttp", False),
    "https": Backend("https", "aiohttp", "aiohttp", False),
    "s3": Backend("s3", "s3fs", "s3fs", True),
}


def _scheme(url: str) -> str:
    """Lower-case scheme of `url`, or "" for a plain path."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return m.group(1).lower() if m else ""


def _backend(url: str) -> Backend:
    """The `Backend` for `url`, checking that its optional dependency is installed."""
    scheme = _scheme(url)
    backend = PROTOCOLS.get(scheme)
    if backend is None:
        supported = ", ".join(f"{s}://" for s in PROTOCOLS if s)
        raise StorageError(
            f"unsupported URL scheme {scheme}:// in {redact(url)}; "
            f"use a local path or one of {supported}"
        )
    if backend.module and importlib.util.find_spec(backend.module) is None:
        raise StorageError(f"{scheme}:// needs {backend.module}: pip install {backend.pip}")
    return backend


def is_local(url: str | os.PathLike[str]) -> bool:
    """Whether `url` is a local path or a ``file://`` URL.

    Examples
    --------
    >>> is_local("/tmp/x"), is_local("file:///tmp/x"), is_local("s3://b/k")
    (True, True, False)
    """
    return _scheme(os.fspath(url)) in ("", "file")


def filesystem_path(url: str) -> str:
    """Filesystem path of a local path or ``file://`` URL (``~`` expanded).

    Examples
    --------
    >>> filesystem_path("file:///data/S190425z/skymap.fits")
    '/data/S190425z/skymap.fits'
    >>> filesystem_path("file://localhost/data/x.json"), filesystem_path("/tmp/x")
    ('/data/x.json', '/tmp/x')
    """
    if _scheme(url) == "file":
        url = url.split("://", 1)[1]
        # file://localhost/abs is the same as file:///abs
        if url.startswith("localhost/"):
            url = url[len("localhost") :]
    return os.path.expanduser(url)


def join(url: str | os.PathLike[str], *parts: str) -> str:
    """Append path components to a local path or URL with "/".

    Examples
    --------
    >>> join("s3://bucket/dumps/", "S190425z", "ERRDUMP.log")
    's3://bucket/dumps/S190425z/ERRDUMP.log'
    >>> join("/tmp/dumps", "S1")
    '/tmp/dumps/S1'
    """
    url = os.fspath(url)
    if is_local(url) and _scheme(url) == "":
        return os.path.join(url, *parts)
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


# ---------------------------------------------------------------------------- secrets

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# a query string, with or without the URL before it (servers echo bare request paths)
_QUERY_IN_TEXT = re.compile(r"\?[^\s'\"<>]*")
_QUERY_PAIR = re.compile(r"(^|[?&;])([^=&;#?]+)=([^&;#]*)")
# the token of a Slack webhook written without its scheme
_SLACK_BARE = re.compile(r"(hooks\.slack\.com/services/)[^\s'\"<>?#]+", re.I)
#: What a credential is replaced with.
REDACTED = "***"


def _redact_query(query: str) -> str:
    # every value: which names hold tokens is the server's choice, not ours to guess
    return _QUERY_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}", query)


def _redact_url(url: str) -> str:
    from llama.config import WEBHOOK_PATH

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@" + netloc.rsplit("@", 1)[1]
    path = WEBHOOK_PATH.sub(
        lambda m: m.group(0)[: m.start("token") - m.start(0)] + REDACTED, parts.path
    )
    query = _redact_query(parts.query) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact(text: str | os.PathLike[str], also: Iterable[str] = ()) -> str:
    """Remove credentials from a URL or from any message that may contain URLs.

    The one redaction of LLAMA: log records (`RedactingFilter`), failure reasons,
    ``.failed.json`` files, error dumps and exception messages all pass through it.
    It blanks, in this order:

    - every secret known from the environment and the config file
      (`llama.config.secret_strings`: credential variables, webhook URLs and their
      paths, passwords and query values of service URLs), wherever it appears;
    - the parts of the URLs in `also` that may be tokens (`llama.config.url_secrets`);
    - in every URL: ``user:password@`` and the token of webhook paths
      (``hooks.slack.com/services/***``, ``.../webhooks/***``);
    - every value of every query string, with or without its URL (a server may echo
      the request path ``/api/?token=...``).

    Parameters
    ----------
    text : str or path-like
        The message.
    also : iterable of str
        URLs whose secret parts must be blanked too (e.g. the URL just requested).

    Returns
    -------
    str

    Examples
    --------
    >>> redact("https://me:hunter2@host/a?X-Amz-Signature=abc&x=1")
    'https://***@host/a?X-Amz-Signature=***&x=***'
    >>> redact("GET /api/?token=XYZ/superevents/S1/ failed")
    'GET /api/?token=*** failed'
    >>> redact("posting to hooks.slack.com/services/T00/B00/XXXX")
    'posting to hooks.slack.com/services/***'
    >>> redact("s3://bucket/key")
    's3://bucket/key'
    """
    from llama.config import secret_strings, url_secrets

    text = os.fspath(text)
    secrets = set(secret_strings())
    for url in also:
        secrets.update(url_secrets(url))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_IN_TEXT.sub(lambda m: _redact_url(m.group(0)), text)
    text = _SLACK_BARE.sub(lambda m: m.group(1) + REDACTED, text)
    return _QUERY_IN_TEXT.sub(lambda m: _redact_query(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record's text through `redact`.

    Put on the handlers that write LLAMA's logs (the console and the log file of
    ``llama batch``): a filter on a handler sees the records of every logger that
    reaches it, where one on the ``llama`` logger would miss those of its children.
    The message, the traceback and the stack text are all redacted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# ---------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures.

    Attempt ``i`` (0-based) that fails transiently is followed by a sleep of
    ``min(max_delay, base_delay * factor**i)`` scaled by a random factor in
    [0.5, 1] (jitter, so that many workers do not retry in lockstep), as long as
    attempts remain and the sleep ends within ``budget_s`` of the first attempt.

    Parameters
    ----------
    tries : int
        Total attempts, at least 1.
    base_delay, factor, max_delay : float
        Backoff schedule, in seconds.
    budget_s : float or None
        Seconds, counted from the first attempt, after which no retry starts
        (None: only `tries` limits). An outage shorter than the budget is ridden out.

    Examples
    --------
    >>> RetryPolicy(tries=3, base_delay=0.1).delay(2)
    0.4
    >>> RetryPolicy.from_config().budget_s
    60.0
    """

    tries: int = 4
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    budget_s: float | None = None

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError(f"RetryPolicy.tries must be >= 1, got {self.tries}")

    def delay(self, attempt: int) -> float:
        """Upper bound of the sleep after failed attempt `attempt` (0-based)."""
        return min(self.max_delay, self.base_delay * self.factor**attempt)

    @classmethod
    def from_config(cls) -> RetryPolicy:
        """The default policy: retries bounded by time, ``LLAMA_RETRY_BUDGET_S`` (60 s).

        The budget, not a count, bounds the retries, so that an outage of a few
        seconds is ridden out whatever each attempt costs (`llama.config`).
        """
        from llama.config import network_option

        budget = network_option("retry_budget_s")
        return cls(tries=10_000 if budget > 0 else 1, budget_s=budget)


# None: the policy comes from the configuration at each call (see get_retry_policy)
_retry_policy: RetryPolicy | None = None


def set_retry_policy(policy: RetryPolicy | None) -> RetryPolicy | None:
    """Set the process-wide default retry policy; return the previous one.

    None goes back to the configured policy (`RetryPolicy.from_config`).

    Examples
    --------
    >>> old = set_retry_policy(RetryPolicy(tries=2, base_delay=0.01))
    >>> get_retry_policy().tries
    2
    >>> _ = set_retry_policy(old)
    """
    global _retry_policy
    old, _retry_policy = _retry_policy, policy
    return old


def get_retry_policy() -> RetryPolicy:
    """The process-wide default `RetryPolicy` (set, or from the configuration)."""
    return _retry_policy if _retry_policy is not None else RetryPolicy.from_config()


def timeouts() -> tuple[float, float]:
    """The configured (connect, read) timeouts in seconds of every remote access.

    ``LLAMA_CONNECT_TIMEOUT_S`` (default 10) and ``LLAMA_READ_TIMEOUT_S`` (default
    60, the longest silence of a server within one request), or the config file.

    Examples
    --------
    >>> timeouts()
    (10.0, 60.0)
    """
    from llama.config import network_option

    return network_option("connect_timeout_s"), network_option("read_timeout_s")


# S3 error codes that mean "try again later"
_TRANSIENT_S3_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "503",
    "500",
}


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """`exc` and its causes/contexts (s3fs hides botocore errors in __cause__)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _http_status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        status = getattr(e, "status", None)  # aiohttp.ClientResponseError
        if isinstance(status, int):
            return status
        response = getattr(e, "response", None)  # botocore ClientError
        if isinstance(response, dict):
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
    return None


def _s3_code(exc: BaseException) -> str | None:
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict) and "Error" in response:
            return str(response["Error"].get("Code"))
    return None


def _is_connection_error(exc: BaseException) -> bool:
    names = {c.__name__ for e in _chain(exc) for c in type(e).__mro__}
    # aiohttp's and botocore's connection/timeouts, without importing either here
    return bool(
        names
        & {
            "ConnectionError",
            "TimeoutError",
            "FSTimeoutError",
            "ClientConnectionError",
            "ClientPayloadError",
            "ServerDisconnectedError",
            "HTTPClientError",
            "EndpointConnectionError",
            "IncompleteRead",
        }
    )


def _kind(exc: BaseException) -> str:
    """Classify a failure: "not_found", "denied", "transient" or "other"."""
    if isinstance(exc, NotFoundError):
        return "not_found"
    code = _s3_code(exc)
    status = _http_status(exc)
    if code in _TRANSIENT_S3_CODES or (status is not None and (status >= 500 or status == 429)):
        return "transient"
    if isinstance(exc, FileNotFoundError) or status in (404, 410):
        return "not_found"
    if isinstance(exc, PermissionError) or status in (401, 403):
        return "denied"
    if _is_connection_error(exc):
        return "transient"
    return "other"


def _hint(url: str, kind: str) -> str:
    """What the user should check, per location type and failure kind."""
    scheme = _scheme(url)
    if scheme == "s3":
        endpoint = _s3_endpoint() or "the AWS default"
        if kind == "not_found":
            return (
                "check the bucket and key names, and that AWS_ENDPOINT_URL points at the "
                f"right store (now: {redact(endpoint)})"
            )
        if kind == "denied":
            return "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket's policy"
        if kind == "transient":
            return f"check that the S3 endpoint {redact(endpoint)} is reachable"
        return f"check the URL and the AWS_* settings (endpoint: {redact(endpoint)})"
    if scheme in ("http", "https"):
        if kind == "not_found":
            return "check the URL"
        if kind == "denied":
            return "only unauthenticated HTTP(S) is supported; check the URL"
        if kind == "transient":
            return "check that the server is up and reachable"
        return "check the URL"
    if kind == "not_found":
        return f"check the path (relative paths start from {os.getcwd()})"
    if kind == "denied":
        return "check the file permissions"
    return "check the path and free disk space"


def _describe(exc: BaseException) -> str:
    """Short, secret-free description of the underlying error."""
    code = _s3_code(exc)
    status = _http_status(exc)
    bits = [type(exc).__name__]
    if code:
        bits.append(code)
    elif status:
        bits.append(f"HTTP {status}")
    msg = redact(str(exc))
    return f"{' '.join(bits)}: {msg}" if msg else " ".join(bits)


def _call(what: str, url: str, func: Callable[[], T], retry: RetryPolicy | None = None) -> T:
    """Run `func` with retries on transient errors, translating failures.

    Raises `NotFoundError` or `StorageError`; the original exception is kept on the
    ``original`` attribute but not chained, because chained tracebacks would print
    unredacted URLs.
    """
    # the configured policy is read only once something failed: most calls succeed
    # at once, and reading the configuration was a good part of a local copy's cost
    policy = retry
    start = time.monotonic()
    attempt = -1
    while True:
        attempt += 1
        try:
            return func()
        except (StorageError, UnsafePathError):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            if policy is None:
                policy = get_retry_policy()
            kind = _kind(exc)
            pause = policy.delay(attempt) * random.uniform(0.5, 1.0)
            elapsed = time.monotonic() - start
            in_budget = policy.budget_s is None or elapsed + pause <= policy.budget_s
            if kind == "transient" and attempt + 1 < policy.tries and in_budget:
                log.warning(
                    "%s %s failed (%s); retry %d in %.2f s",
                    what,
                    redact(url),
                    _describe(exc),
                    attempt + 1,
                    pause,
                )
                time.sleep(pause)
                continue
            err = _translate(what, url, exc, kind, attempt + 1, elapsed)
            err.original = exc  # type: ignore[attr-defined]
            raise err from None


def _translate(
    what: str, url: str, exc: BaseException, kind: str, tries: int, elapsed: float = 0.0
) -> StorageError:
    where = redact(url)
    hint = _hint(url, kind)
    if kind == "not_found":
        return NotFoundError(f"cannot {what} {where}: not found; {hint}")
    if kind == "denied":
        return StorageError(f"cannot {what} {where}: access denied ({_describe(exc)}); {hint}")
    if _s3_code(exc) == "AccessControlListNotSupported":
        return StorageError(
            f"cannot {what} {where}: the bucket does not accept ACLs (object ownership "
            "'bucket owner enforced'); upload without --public or enable ACLs on the bucket"
        )
    if type(exc).__name__ == "NoCredentialsError":
        return StorageError(
            f"cannot {what} {where}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        )
    if kind == "transient":
        # the settings that bound the wait, so the user can give a slow store more time
        return StorageError(
            f"cannot {what} {where}: gave up after {tries} {'try' if tries == 1 else 'tries'} "
            f"in {elapsed:.1f} s "
            f"({_describe(exc)}); {hint}, or allow longer waits with LLAMA_RETRY_BUDGET_S, "
            "LLAMA_CONNECT_TIMEOUT_S and LLAMA_READ_TIMEOUT_S"
        )
    return StorageError(f"cannot {what} {where}: {_describe(exc)}; {hint}")


# ------------------------------------------------------------------------ filesystems

_fs_lock = threading.Lock()
_s3_cache: dict[tuple[Any, ...], Any] = {}


def _s3_endpoint() -> str | None:
    # botocore's own precedence: the service-specific variable wins
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def clear_cache() -> None:
    """Forget cached filesystem objects (e.g. after changing AWS_* variables in tests).

    Examples
    --------
    >>> clear_cache()
    """
    with _fs_lock:
        _s3_cache.clear()


def _s3_filesystem() -> Any:
    """An s3fs filesystem for the current AWS_* environment.

    s3fs/botocore already read AWS_ENDPOINT_URL and the credentials from the
    environment; the endpoint is still passed explicitly, and the instance is
    cached on the environment it was made from, so that a changed environment
    (tests, notebooks) is never served by a stale client. Retries inside s3fs and
    botocore are switched off so that `RetryPolicy` is the only retry layer
    (otherwise the layers multiply: 5 x 5 x tries attempts).
    """
    import s3fs

    endpoint = _s3_endpoint()
    connect_s, read_s = timeouts()
    key = (
        os.getpid(),  # s3fs clients do not survive fork
        endpoint,
        connect_s,
        read_s,
        os.environ.get("AWS_ACCESS_KEY_ID"),
        hash(os.environ.get("AWS_SECRET_ACCESS_KEY")),
        hash(os.environ.get("AWS_SESSION_TOKEN")),
        os.environ.get("AWS_DEFAULT_REGION"),
        os.environ.get("AWS_PROFILE"),
    )
    with _fs_lock:
        fs = _s3_cache.get(key)
        if fs is None:
            kwargs: dict[str, Any] = {
                "skip_instance_cache": True,
                "config_kwargs": {
                    "retries": {"max_attempts": 1, "mode": "standard"},
                    # botocore's own default waits 60 s to connect: LLAMA's settings rule
                    "connect_timeout": connect_s,
                    "read_timeout": read_s,
                },
            }
            if endpoint:
                kwargs["endpoint_url"] = endpoint
            fs = s3fs.S3FileSystem(**kwargs)
            fs.retries = 1  # a class attribute in s3fs, not a constructor argument
            _s3_cache[key] = fs
        return fs


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and the path it wants for `url`."""
    backend = _backend(url)
    if backend.protocol == "file":
        import fsspec

        return fsspec.filesystem("file"), filesystem_path(url)
    if backend.protocol == "s3":
        return _s3_filesystem(), url.split("://", 1)[1]
    return _http_filesystem(backend.protocol), url


def _http_filesystem(protocol: str) -> Any:
    """fsspec's HTTP filesystem with LLAMA's connect and read timeouts.

    aiohttp's default is one 300 s limit on the whole request, which a server that
    accepts and never answers used up once per retry (20 minutes per file). The
    instance is cached by fsspec on its arguments, so changed settings get a new one.
    """
    import aiohttp
    import fsspec

    connect_s, read_s = timeouts()
    # no total limit: a large file that keeps arriving is not a hung server
    limits = aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=read_s)
    # fsspec's HTTP filesystem takes whole URLs
    return fsspec.filesystem(protocol, client_kwargs={"timeout": limits})


def _refuse_readonly(url: str, what: str) -> None:
    backend = _backend(url)
    if not backend.writable:
        raise StorageError(
            f"cannot {what} {redact(url)}: {_scheme(url)}:// locations are read-only; "
            "write to a local path or an s3:// URL instead"
        )


# ----------------------------------------------------------------------------- local


def _part_beside(dest: str) -> str:
    """A fresh hidden download name ``.NAME.<12 hex>.part`` in the directory of `dest`
    (the pattern `llama.event.Event.remove_leftovers` clears)."""
    head, sep, name = dest.rpartition("/")
    return f"{head}{sep}.{name}.{os.urandom(6).hex()}.part"


def _replace_atomically(
    dest: str, tmp: str, fill: Callable[[int], None], make_parents: bool
) -> None:
    """Create `tmp` (the umask decides its permissions), let `fill` write it through its
    descriptor, then rename it over `dest`; on any failure remove `tmp`. Missing parent
    directories are made only when `make_parents` (on the first failure, so the common
    case costs no stat)."""
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileNotFoundError:
            if not make_parents:
                raise
            os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            fill(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _atomic_local_write(dest: str | os.PathLike[str], fill: Callable[[str], None]) -> None:
    """Write `dest` atomically: `fill` writes a temp file beside it (by name), then rename.

    Parent directories are created. A killed process leaves at most a hidden
    ``.*.part`` file, never a half-written `dest`.
    """
    path = os.fspath(dest)
    tmp = _part_beside(path)
    _replace_atomically(path, tmp, lambda _fd: fill(tmp), make_parents=True)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to the local file ``dest`` atomically (temporary file, then rename).

    The directory must exist: this is the lean writer of event files, metadata riders
    and sky maps, which run several times per event (``get``/``put`` also make
    parents). A kill leaves at most a hidden ``.NAME.tmp-<12 hex>`` file (which
    `llama.event.Event.remove_leftovers` clears), never a half-written ``dest``.
    Plain ``os`` calls on string paths: pathlib and uuid objects cost more here than
    the system calls.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> atomic_write_bytes(path, b"abc")
    >>> open(path, "rb").read()
    b'abc'
    """
    path = os.fspath(dest)
    head, sep, name = path.rpartition("/")
    tmp = f"{head}{sep}.{name}.tmp-{os.urandom(6).hex()}"
    _replace_atomically(path, tmp, lambda fd: _write_all(fd, data), make_parents=False)


# ------------------------------------------------------------------------------- API


def read_bytes(url: str | os.PathLike[str], *, retry: RetryPolicy | None = None) -> bytes:
    """Read a whole file.

    Parameters
    ----------
    url : str or path-like
        Local path, ``file://``, ``http(s)://`` or ``s3://`` URL.
    retry : RetryPolicy, optional
        Overrides the process default (`set_retry_policy`).

    Returns
    -------
    bytes

    Raises
    ------
    NotFoundError
        Nothing at `url`.
    StorageError
        Any other failure, after retrying transient ones.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> with open(p, "wb") as f:
    ...     _ = f.write(b"abc")
    >>> read_bytes(p)
    b'abc'
    """
    url = os.fspath(url)
    if is_local(url):
        # plain os calls, as `get` makes: a command that reads only local files (its
        # params lists) need not import fsspec (~0.05-0.07 s of CPU)
        path = filesystem_path(url)
        # a pipe such as bash's <(...) can be read once only: no retry
        once = RetryPolicy(tries=1) if _is_stream(path) else retry
        return _call("read", url, lambda: Path(path).read_bytes(), once)
    fs, path = _filesystem(url)
    return _call("read", url, lambda: fs.cat_file(path), retry)


def _is_stream(path: str) -> bool:
    """True for a named pipe or character device (``/dev/fd/63`` from ``<(...)``)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def read_text(
    url: str | os.PathLike[str], encoding: str = "utf-8", *, retry: RetryPolicy | None = None
) -> str:
    """Read a whole text file (UTF-8 by default).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> with open(p, "w") as f:
    ...     _ = f.write("S190425z\\n")
    >>> read_text(p)
    'S190425z\\n'
    """
    url = os.fspath(url)
    data = read_bytes(url, retry=retry)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StorageError(
            f"cannot read {redact(url)} as {encoding} text ({exc.reason} at byte {exc.start}); "
            "check that it is a text file"
        ) from None


def get(
    url: str | os.PathLike[str],
    local_path: str | os.PathLike[str],
    *,
    retry: RetryPolicy | None = None,
) -> CopyStamp | None:
    """Download `url` to `local_path` atomically.

    The data goes to a temporary file in the destination directory, which is then
    renamed into place (``os.replace``), so `local_path` is either the old file or
    the complete new one. Parent directories are created.

    Returns the `CopyStamp` of a local source that was the same file throughout the
    copy (`llama.event.Event.note_copy` takes the copy's checksum from it), else None.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "src.txt"), "w") as f:
    ...     _ = f.write("data")
    >>> stamp = get(os.path.join(d, "src.txt"), os.path.join(d, "sub", "dst.txt"))
    >>> open(os.path.join(d, "sub", "dst.txt")).read()
    'data'
    >>> stamp.made[0], stamp.source[2]  # the copy's size, the source's
    (4, 4)
    """
    url = os.fspath(url)
    if not is_local(os.fspath(local_path)):
        raise StorageError(
            f"cannot download {redact(url)} to {redact(local_path)}: the destination must be local"
        )
    local_path = filesystem_path(os.fspath(local_path))
    if is_local(url):
        source = filesystem_path(url)
        # plain os calls (open, sendfile, rename): fsspec's local copy made ~13 stats
        # per file, and inputs are copied into every event of a batch
        return _call("download", url, lambda: _copy_local(source, local_path), retry)
    fs, path = _filesystem(url)

    def attempt() -> None:
        _atomic_local_write(local_path, lambda tmp: fs.get_file(path, tmp))

    _call("download", url, attempt, retry)
    return None


class CopyStamp(NamedTuple):
    """A local copy `get` made: the source's identity (st_dev, st_ino, size,
    mtime_ns), the same before and after the copy, and the copy's (size, mtime_ns) as
    made. Under the checksums' trust (a file unchanged in size and mtime_ns has the
    same bytes), a copy still at ``made`` holds the bytes of any other copy of the
    same ``source``."""

    source: tuple[int, int, int, int]
    made: tuple[int, int]


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _copy_local(source: str, dest: str) -> CopyStamp | None:
    """Copy the local file `source` to `dest` atomically: a hidden ``.NAME.<hex>.part``
    file beside `dest` (parents made when missing), then a rename. Returns its
    `CopyStamp`, or None where the source changed during the copy."""
    tmp = _part_beside(dest)
    src = os.open(source, os.O_RDONLY)
    made: list[os.stat_result] = []

    def fill(out: int) -> None:
        _copy_fd(src, out)
        made.append(os.fstat(out))  # os.replace keeps size and mtime

    try:
        before = os.fstat(src)
        _replace_atomically(dest, tmp, fill, make_parents=True)
        after = _identity(os.fstat(src))
    finally:
        os.close(src)
    if after != _identity(before) or made[0].st_size != after[2]:
        return None
    return CopyStamp(after, (made[0].st_size, made[0].st_mtime_ns))


def _copy_fd(src: int, out: int) -> None:
    try:  # in the kernel: no copy through Python
        while os.sendfile(out, src, None, 1 << 24):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while block := os.read(src, 1 << 20):  # pipes and file systems without sendfile
        _write_all(out, block)


def put(
    local_path: str | os.PathLike[str],
    url: str | os.PathLike[str],
    public: bool = False,
    *,
    retry: RetryPolicy | None = None,
) -> None:
    """Upload (or copy) a local file to `url`.

    Parameters
    ----------
    local_path : str or path-like
        The file to send.
    url : str or path-like
        Local path / ``file://`` (written atomically, parents created) or ``s3://``.
        HTTP(S) destinations raise `StorageError`.
    public : bool
        S3 only: canned ACL ``public-read``. Otherwise no ACL is sent, so the object
        gets the bucket's default, which is private (owner only); sending
        ``ACL=private`` explicitly would fail on buckets that disable ACLs.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "a"), "w") as f:
    ...     _ = f.write("x")
    >>> put(os.path.join(d, "a"), os.path.join(d, "deep", "er", "b"))
    >>> os.path.exists(os.path.join(d, "deep", "er", "b"))
    True
    >>> put(os.path.join(d, "a"), "https://example.org/b")
    Traceback (most recent call last):
    ...
    llama.storage.StorageError: cannot upload to https://example.org/b: https:// locations are read-only; write to a local path or an s3:// URL instead
    """
    src = filesystem_path(os.fspath(local_path))
    url = os.fspath(url)
    _refuse_readonly(url, "upload to")
    if not os.path.isfile(src):
        raise NotFoundError(
            f"cannot upload {redact(src)} to {redact(url)}: no such local file; "
            "check that it was produced"
        )
    fs, path = _filesystem(url)
    if is_local(url):
        import shutil

        def attempt() -> None:
            _atomic_local_write(path, lambda tmp: shutil.copyfile(src, tmp))

    else:
        extra = {"ACL": "public-read"} if public else {}

        def attempt() -> None:
            fs.put_file(src, path, **extra)

    _call("upload to", url, attempt, retry)


def put_tree(
    local_dir: str | os.PathLike[str],
    url: str | os.PathLike[str],
    public: bool = False,
    *,
    exclude: Iterable[str] = (),
    retry: RetryPolicy | None = None,
) -> list[str]:
    """Copy a local directory recursively to `url` (local or S3).

    Files keep their relative paths below `url`. Symlinked directories are not
    followed (no cycles, nothing from outside the tree); symlinked files are
    copied by content.

    Parameters
    ----------
    local_dir : str or path-like
        The directory to copy.
    url : str or path-like
        Destination directory: local path / ``file://`` or ``s3://``.
    public : bool
        As in `put`.
    exclude : iterable of str
        File or directory names skipped at any depth, e.g. ``(".git",)``.

    Returns
    -------
    list of str
        The destination of every file written.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "ev", ".git"))
    >>> for name in ("ev/a.json", "ev/.git/HEAD"):
    ...     with open(os.path.join(d, name), "w") as f:
    ...         _ = f.write("{}")
    >>> [os.path.basename(p) for p in put_tree(os.path.join(d, "ev"), os.path.join(d, "copy"),
    ...                                        exclude=[".git"])]
    ['a.json']
    """
    root = filesystem_path(os.fspath(local_dir))
    url = os.fspath(url)
    _refuse_readonly(url, "upload to")
    if not os.path.isdir(root):
        raise NotFoundError(
            f"cannot upload {redact(root)}: no such local directory; check the path"
        )
    skip = set(exclude)
    written = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            if name in skip:
                continue
            parts = [] if rel_dir == "." else rel_dir.split(os.sep)
            dest = join(url, *parts, name)
            put(os.path.join(dirpath, name), dest, public, retry=retry)
            written.append(dest)
    return written


def exists(url: str | os.PathLike[str], *, retry: RetryPolicy | None = None) -> bool:
    """Whether something exists at `url`.

    "Not found" is False; transient errors are retried and then raised, never
    silently turned into False.

    Examples
    --------
    >>> exists("/definitely/not/here")
    False
    """
    url = os.fspath(url)
    if is_local(url):
        return os.path.exists(filesystem_path(url))
    fs, path = _filesystem(url)
    if _scheme(url) in ("http", "https"):
        check: Callable[[], Any] = lambda: _http_status_of(fs, path)  # noqa: E731
    else:
        # refresh: s3fs may answer from a listing cached before another writer's upload
        check = lambda: fs.info(path, refresh=True)  # noqa: E731
    try:
        _call("check", url, check, retry)
    except NotFoundError:
        return False
    return True


def _http_status_of(fs: Any, url: str) -> int:
    """HEAD `url` (GET without reading the body if HEAD is refused).

    fsspec's own ``exists``/``info`` turn every HTTP failure, 5xx included, into
    "missing", which would hide outages; so raise for anything but success.
    """
    from fsspec.asyn import sync

    async def probe() -> int:
        session = await fs.set_session()
        target = fs.encode_url(url)
        async with session.head(target, allow_redirects=True, **fs.kwargs) as r:
            status = r.status
        if status in (405, 501):
            async with session.get(target, **fs.kwargs) as r:
                status = r.status
        if status == 404 or status == 410:
            raise FileNotFoundError(url)
        if status >= 400:
            import aiohttp

            raise aiohttp.ClientResponseError(
                r.request_info, (), status=status, message=f"HTTP {status}"
            )
        return status

    return sync(fs.loop, probe)


# ------------------------------------------------------------------------ path safety


def safe_join(directory: str | os.PathLike[str], relative_name: str) -> Path:
    """Join a user-supplied file name to an event directory, refusing escapes.

    For ``--get`` destinations and ``--put`` sources: the name must stay inside
    `directory`. Absolute paths, ``..`` that climbs out, the directory itself, and
    symlinks (existing ones, anywhere on the path) that lead outside are refused.

    Parameters
    ----------
    directory : str or path-like
        The event directory.
    relative_name : str
        A relative file name such as ``skymap_info.json`` or ``plots/a.png``.

    Returns
    -------
    pathlib.Path
        ``directory / relative_name``, normalised.

    Raises
    ------
    UnsafePathError
        The name would leave `directory`.

    Examples
    --------
    >>> safe_join("/tmp/ev", "skymap_info.json").as_posix()
    '/tmp/ev/skymap_info.json'
    >>> safe_join("/tmp/ev", "../etc/passwd")
    Traceback (most recent call last):
    ...
    llama.storage.UnsafePathError: '../etc/passwd' leaves the event directory /tmp/ev: names must be relative paths inside it
    """
    name = os.fspath(relative_name)
    base = Path(directory)
    why = "names must be relative paths inside it"
    if not name or "\0" in name:
        raise UnsafePathError(f"{name!r} is not a valid file name in {base}")
    if os.path.isabs(name) or name.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafePathError(f"{name!r} is an absolute path; {why} ({base})")
    normal = os.path.normpath(name)
    if normal == "." or normal == ".." or normal.startswith(".." + os.sep):
        raise UnsafePathError(f"{name!r} leaves the event directory {base}: {why}")
    candidate = base / normal
    if os.sep not in normal and not os.path.islink(candidate):
        return candidate  # a plain name that is no symlink: inside, one lstat to know
    # resolve() follows existing symlinks, so a link pointing outside is caught too
    real_base = base.resolve()
    real = candidate.resolve()
    if real == real_base or real_base not in real.parents:
        raise UnsafePathError(
            f"{name!r} leads outside the event directory {base} (through a symlink?): {why}"
        )
    return candidate
