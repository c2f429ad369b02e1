"""Where outside services are: configurable URLs, never hard-coded hosts.

Each service has an environment variable; a JSON file
``$XDG_CONFIG_HOME/llama/config.json`` (``~/.config/llama/config.json``) may give the
same keys in lower case, e.g. ``{"gracedb_url": "https://gracedb.example/api/"}``.
The environment wins. A service with no URL is simply not contacted.

Service URLs and webhooks may carry access tokens, like the AWS and other credential
variables: `credential_reason` says which variables are credentials, so that
templates never copy them into files, and `secret_strings` lists what messages must
never show (see `llama.storage.redact`).

Examples
--------
>>> import os
>>> from llama.config import service_url
>>> os.environ["LLAMA_GRACEDB_URL"] = "http://127.0.0.1:9/api/"
>>> service_url("gracedb")
'http://127.0.0.1:9/api/'
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "ANALYSIS_OPTIONS",
    "CREDENTIAL_WORDS",
    "NETWORK_OPTIONS",
    "SERVICES",
    "WEBHOOK_PATH",
    "analysis_number",
    "analysis_option",
    "config_path",
    "credential_reason",
    "network_option",
    "secret_strings",
    "service_url",
    "url_secrets",
]

#: Service name -> environment variable holding its base URL.
SERVICES: dict[str, str] = {
    "gracedb": "LLAMA_GRACEDB_URL",
    "icecube": "LLAMA_ICECUBE_URL",
    "ztf": "LLAMA_ZTF_URL",
    "fermi": "LLAMA_FERMI_URL",
    "slack_lma": "LLAMA_SLACK_LMA_WEBHOOK",
    "slack_i3": "LLAMA_SLACK_I3_WEBHOOK",
    "err_alert": "LLAMA_ERR_ALERT_URL",
}


def config_path() -> Path:
    """The optional configuration file."""
    # looked up ~30 times per event (each analysis option): the Path is made once per
    # value of the two variables it depends on, and keeps its hash for _file_config
    return _config_path_under(os.environ.get("XDG_CONFIG_HOME") or "", os.environ.get("HOME"))


@lru_cache(maxsize=8)
def _config_path_under(xdg_config_home: str, home: str | None) -> Path:
    # ``home`` only keys the cache: Path.home() reads $HOME (or the user database)
    base = xdg_config_home or Path.home() / ".config"
    return Path(base) / "llama" / "config.json"


@lru_cache(maxsize=4)
def _file_config(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or remove it") from err


def _config_or_empty() -> dict:
    """The config file's contents, or {} when it is missing or unreadable.

    The credential checks must work even with a damaged file (the services that need
    it report the damage themselves).
    """
    try:
        data = _file_config(config_path())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def service_url(name: str) -> str | None:
    """Base URL of service ``name`` (a key of `SERVICES`), or None if unconfigured."""
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    env = os.environ.get(SERVICES[name])
    if env:
        return env
    return _file_config(config_path()).get(SERVICES[name].removeprefix("LLAMA_").lower())


#: Analysis options of the significance handlers: name -> (environment variable,
#: default, allowed values or None for free-form). O3 behaviour is the default.
ANALYSIS_OPTIONS: dict[str, tuple[str, str, tuple[str, ...] | None]] = {
    # the statistic's options (llama.science.odds.OPTIONS): O3's value is the default
    "psf": ("LLAMA_PSF", "gaussian", ("gaussian", "vmf")),
    "pairs": ("LLAMA_PAIRS", "o3", ("o3", "great_circle")),
    "distance": ("LLAMA_DISTANCE", "o3", ("o3", "marginal")),
    "egw_prior": ("LLAMA_EGW_PRIOR", "o3", ("o3", "strict")),
    "background_band": ("LLAMA_BACKGROUND_BAND", "o3", ("o3", "capped")),
    "pair_background": ("LLAMA_PAIR_BACKGROUND", "o3", ("o3", "fixed")),
    "null": ("LLAMA_NULL", "o3", ("o3", "full")),
    # inputs of the statistic: "" means the shipped default file
    "signal_tables": ("LLAMA_SIGNAL_TABLES", "", None),
    "background_sample": ("LLAMA_BACKGROUND_SAMPLE", "", None),
    "background_snr_list": ("LLAMA_BACKGROUND_SNR_LIST", "", None),
    "n_trials": ("LLAMA_N_TRIALS", "2000", None),
    "trial_kind": ("LLAMA_TRIAL_KIND", "background", ("background", "scramble")),
    # h of the sequential p-value (Besag & Clifford 1991); "": all n_trials, as O3
    "trial_stop_after": ("LLAMA_TRIAL_STOP_AFTER", "", None),
    "background_table": ("LLAMA_BACKGROUND_TABLE", "", None),
    "background_sensitivity": ("LLAMA_BACKGROUND_SENSITIVITY", "", None),  # "": the only one
    "overlap_rtol": ("LLAMA_OVERLAP_RTOL", "", None),  # "": the kernels' default
}


def _option_value(name: str, file_config: dict) -> str:
    """Analysis option ``name``: its environment variable, else the config file's
    entry, else the default (unchecked)."""
    var, default, _ = ANALYSIS_OPTIONS[name]
    return str(os.environ.get(var) or file_config.get(name) or default)


def analysis_option(name: str) -> str:
    """The value of analysis option ``name`` (environment, then config file, then default).

    Examples
    --------
    >>> import os
    >>> os.environ["LLAMA_PSF"] = "vmf"
    >>> analysis_option("psf")
    'vmf'
    >>> del os.environ["LLAMA_PSF"]
    >>> analysis_option("psf")
    'gaussian'
    """
    var, _, allowed = ANALYSIS_OPTIONS[name]
    value = _option_value(name, _file_config(config_path()))
    if allowed is not None and value not in allowed:
        raise ValueError(f"{var}={value!r} is not allowed; choose one of: {', '.join(allowed)}")
    return value


#: Analysis options whose value names a file: its size and modification time join the
#: fingerprint, so that a table rebuilt in place puts the files made with it out of date.
FILE_OPTIONS = ("signal_tables", "background_sample", "background_snr_list", "background_table")


def analysis_fingerprint(name: str) -> str:
    """Analysis option ``name`` as recorded beside the files it shapes.

    The value itself, and for a file-valued option (`FILE_OPTIONS`) also the file's
    size and modification time, so that rebuilding a background table under the same
    name changes it. A bad value is not checked here (the handler reports it).

    Examples
    --------
    >>> import os
    >>> analysis_fingerprint("psf")
    'gaussian'
    >>> analysis_fingerprint("background_table")
    ''
    """
    return _fingerprint(name, _config_or_empty())


def analysis_fingerprints(names: Iterable[str]) -> dict[str, str]:
    """`analysis_fingerprint` of each of ``names``, the config file looked up once
    (a handler's `llama.handler.FileHandler.settings`: every option, once per
    significance file made or checked; per option, finding the config file cost more
    than the option's own value).

    Examples
    --------
    >>> analysis_fingerprints(["psf", "background_table"])
    {'psf': 'gaussian', 'background_table': ''}
    """
    config = _config_or_empty()
    return {name: _fingerprint(name, config) for name in names}


def _fingerprint(name: str, file_config: dict) -> str:
    value = _option_value(name, file_config)
    if value and name in FILE_OPTIONS:
        try:
            st = os.stat(value)
        except OSError:
            return value  # missing: the handler fails with the reason
        return f"{value} ({st.st_size} B, mtime_ns {st.st_mtime_ns})"
    return value


def analysis_number(name: str, kind: type[int] | type[float] = float) -> int | float | None:
    """A numeric analysis option parsed as ``kind``; None when it is empty (unset with
    no default). A value that is not a number is one clear error naming the variable.

    Examples
    --------
    >>> import os
    >>> os.environ["LLAMA_N_TRIALS"] = "500"
    >>> analysis_number("n_trials", int)
    500
    >>> del os.environ["LLAMA_N_TRIALS"]
    >>> analysis_number("overlap_rtol") is None
    True
    """
    value = analysis_option(name)
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        var = ANALYSIS_OPTIONS[name][0]
        raise ValueError(
            f"{var}={value!r} is not {'an integer' if kind is int else 'a number'}; "
            f"set e.g. {ANALYSIS_OPTIONS[name][1] or _EXAMPLE_VALUES.get(name, '0.01')} or unset it"
        ) from None


#: A value to suggest in messages for numeric options whose default is empty.
_EXAMPLE_VALUES = {"trial_stop_after": "20"}


# -- waits ---------------------------------------------------------------------------
#: Waiting options: name -> (environment variable, default in seconds, what it bounds).
#: The config file may give them under the name, e.g. ``{"read_timeout_s": 120}``.
NETWORK_OPTIONS: dict[str, tuple[str, float, str]] = {
    "connect_timeout_s": (
        "LLAMA_CONNECT_TIMEOUT_S", 10.0, "the wait for a connection to a server (HTTP, S3)"
    ),
    "read_timeout_s": (
        "LLAMA_READ_TIMEOUT_S", 60.0, "the wait for each answer or piece of data from a server"
    ),
    "retry_budget_s": (
        "LLAMA_RETRY_BUDGET_S", 60.0,
        "how long transient failures (connection errors, timeouts, HTTP 5xx/429, S3 "
        "throttling) are retried with exponential backoff; 0 means no retries",
    ),
    "lock_wait_s": (
        "LLAMA_BATCH_LOCK_WAIT_S", 10.0,
        "how long llama batch waits, at the end of its run, for an event directory that "
        "another run is using before it skips it",
    ),
}  # fmt: skip


def network_option(name: str) -> float:
    """The value of waiting option ``name`` in seconds (environment, config file, default).

    Parameters
    ----------
    name
        A key of `NETWORK_OPTIONS`.

    Returns
    -------
    float
        A finite number of seconds, at least 0 (connect and read timeouts: above 0).

    Raises
    ------
    ValueError
        One message naming the variable, the bad value and what to set instead.

    Examples
    --------
    >>> import os
    >>> network_option("connect_timeout_s")
    10.0
    >>> os.environ["LLAMA_READ_TIMEOUT_S"] = "2.5"
    >>> network_option("read_timeout_s")
    2.5
    >>> os.environ["LLAMA_READ_TIMEOUT_S"] = "soon"
    >>> network_option("read_timeout_s")
    Traceback (most recent call last):
    ...
    ValueError: LLAMA_READ_TIMEOUT_S='soon' is not a number of seconds; set e.g. 60 or unset it
    >>> del os.environ["LLAMA_READ_TIMEOUT_S"]
    """
    var, default, _ = NETWORK_OPTIONS[name]
    # a timeout of 0 would fail every request at once; a budget of 0 only means no retries
    zero_ok = name in ("retry_budget_s", "lock_wait_s")
    return _number_setting(var, name, default, zero_ok, "a number of seconds", f"{default:g}")


def _number_setting(var: str, key: str, default: float, zero_ok: bool, unit: str, example: str):
    """A finite number above 0 (at least 0 where ``zero_ok``) from environment variable
    ``var``, else ``key`` in the config file, else ``default``; else ValueError naming
    where the value came from, the value, ``unit`` ("a number of seconds") and
    ``example`` to set instead."""
    raw = os.environ.get(var)
    where = var
    if not raw:
        raw = _config_or_empty().get(key)
        where = f"{key} in {config_path()}"
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
        shown = f"{var}={raw!r}" if where == var else f"{where}: {raw!r}"
        raise ValueError(f"{shown} is not {unit}; set e.g. {example} or unset it")
    return value


# -- memory ------------------------------------------------------------------------------
#: The bound of what each process keeps of the sky maps it met, for the events that use
#: the same map again (the parsed map, the exact kernel's tree, the bounds' pyramid:
#: ~8 MiB a BAYESTAR map): environment variable and default [MiB]. The config file may
#: give it as ``{"map_store_mib": 64}``.
MAP_STORE_MIB = ("LLAMA_MAP_STORE_MIB", 256)


def map_store_bytes() -> int:
    """The bound of each process's store of sky maps [bytes] (environment, config file,
    default `MAP_STORE_MIB`); 0 keeps no map from one event to the next.

    Raises
    ------
    ValueError
        One message naming the variable, the bad value and what to set instead.

    Examples
    --------
    >>> import os
    >>> map_store_bytes() == 256 << 20
    True
    >>> os.environ["LLAMA_MAP_STORE_MIB"] = "0.5"
    >>> map_store_bytes()
    524288
    >>> os.environ["LLAMA_MAP_STORE_MIB"] = "lots"
    >>> map_store_bytes()
    Traceback (most recent call last):
    ...
    ValueError: LLAMA_MAP_STORE_MIB='lots' is not a size in MiB; set e.g. 256 (0 keeps no map) or unset it
    >>> del os.environ["LLAMA_MAP_STORE_MIB"]
    """
    var, default = MAP_STORE_MIB
    mib = _number_setting(var, "map_store_mib", default, True, "a size in MiB", f"{default} (0 keeps no map)")  # fmt: skip
    return int(mib * (1 << 20))


# -- credentials -------------------------------------------------------------------------
#: Words that mark a variable as a credential wherever they appear in its name.
CREDENTIAL_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL")
# variables whose whole value is a secret URL (anyone holding it can post)
_WEBHOOK_NAMES = ("LLAMA_ERR_ALERT_URL",)
# shortest text blanked from messages: shorter values would blank innocent words
_MIN_SECRET = 6
#: The token part of the paths of known webhook shapes: Slack (services/T../B../xxxx),
#: Discord and others (webhooks/ID/TOKEN), Google Chat and Teams style (hooks/...).
WEBHOOK_PATH = re.compile(r"/(?:services|webhooks?|hooks)/(?P<token>[^?#\s]+)", re.I)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _is_webhook(name: str) -> bool:
    upper = name.upper()
    return upper.endswith("_WEBHOOK") or upper in _WEBHOOK_NAMES


def credential_reason(name: str, value: str | None = None) -> str | None:
    """Why environment variable `name` (holding `value`) is a credential, or None.

    Credentials are the ``AWS_*`` variables, names containing one of
    `CREDENTIAL_WORDS`, LLAMA's service URLs and webhooks (``LLAMA_*_URL``,
    ``LLAMA_*_WEBHOOK``: they may carry an access token), names and values found in
    the config file (which holds the same URLs; its analysis options excepted), and
    any value holding ``user:password@`` or a query string, which may be a token.

    Examples
    --------
    >>> credential_reason("AWS_SECRET_ACCESS_KEY")
    'AWS_* variables give access to S3'
    >>> credential_reason("LLAMA_SLACK_LMA_WEBHOOK")
    'a webhook URL lets anyone who has it post to the channel'
    >>> credential_reason("GITHUB_TOKEN")
    'its name contains TOKEN'
    >>> credential_reason("RUN_URL", "https://host/x?sig=abc")[:40]
    'its value holds a URL with a query strin'
    >>> credential_reason("USER", "ann") is None
    True
    """
    upper = name.upper()
    if upper.startswith("AWS_"):
        return "AWS_* variables give access to S3"
    for word in CREDENTIAL_WORDS:
        if word in upper:
            return f"its name contains {word}"
    if _is_webhook(upper):
        return "a webhook URL lets anyone who has it post to the channel"
    if upper.startswith("LLAMA_") and upper.endswith("_URL"):
        return "LLAMA's service URLs may carry an access token"
    settings = _config_or_empty()
    key = upper.removeprefix("LLAMA_").lower()
    if key in settings and key not in ANALYSIS_OPTIONS and key not in NETWORK_OPTIONS:
        return f"{key!r} is set in the llama config file {config_path()}"
    if value:
        if any(
            isinstance(v, str) and v == value
            for k, v in settings.items()
            if k not in ANALYSIS_OPTIONS and k not in NETWORK_OPTIONS
        ):
            return f"its value is set in the llama config file {config_path()}"
        if _carries_token(value):
            return (
                "its value holds a URL with a query string, user:password@ or a webhook "
                "path, which may carry a token"
            )
    return None


def _carries_token(value: str) -> bool:
    """Whether a URL in `value` has a query string, a user:password@ or a webhook path."""
    for match in _URL.finditer(value):
        try:
            parts = urlsplit(match.group(0))
        except ValueError:
            return True  # cannot tell: treat as a credential
        if parts.query or "@" in parts.netloc or WEBHOOK_PATH.search(parts.path):
            return True
    return False


def url_secrets(url: str) -> list[str]:
    """The parts of `url` that may be tokens: password, query values, webhook path.

    Parts shorter than 6 characters are left out: blanking them would blank
    innocent words (a query value stays hidden by its ``name=`` anyway).

    Examples
    --------
    >>> url_secrets("https://u:hunter2@h/api/?token=XYZ123&n=1")
    ['XYZ123', 'hunter2']
    >>> url_secrets("https://hooks.slack.com/services/T00/B00/abcdef")
    ['T00/B00/abcdef']
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return []
    found = [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    if parts.password:
        found.append(parts.password)
    if WEBHOOK_PATH.search(parts.path or ""):
        found.append(WEBHOOK_PATH.search(parts.path).group("token"))
    return [s for s in found if len(s) >= _MIN_SECRET]


def secret_strings(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret that messages must never show, longest first.

    The values of variables named like credentials (`CREDENTIAL_WORDS`), webhook
    URLs with their paths, and the tokens inside service URLs (passwords, query
    values, webhook path tokens), from `environ` and from the config file. Base URLs
    themselves are not secrets: messages keep naming the host they tried.

    Examples
    --------
    >>> secret_strings({"LLAMA_GRACEDB_URL": "https://h/api/?token=abcdef123", "USER": "ann"})
    ['abcdef123']
    """
    environ = os.environ if environ is None else environ
    settings = _config_or_empty()
    pairs = list(environ.items())
    pairs += [("LLAMA_" + k.upper(), v) for k, v in settings.items() if isinstance(v, str)]
    found: set[str] = set()
    for name, value in pairs:
        upper = name.upper()
        if not value:
            continue
        if any(word in upper for word in CREDENTIAL_WORDS) and len(value) >= _MIN_SECRET:
            found.add(value)
        if _is_webhook(upper):
            path = urlsplit(value).path.strip("/")
            found.update(s for s in (value, value.rstrip("/"), path) if len(s) >= _MIN_SECRET)
        if "://" in value:
            found.update(url_secrets(value))
    return sorted(found, key=len, reverse=True)
