"""Where outside services are: configurable URLs, never hard-coded hosts.

Each service has an environment variable; a JSON file
``$XDG_CONFIG_HOME/llama/config.json`` (``~/.config/llama/config.json``) may give the
same keys in lower case, e.g. ``{"gracedb_url": "https://gracedb.example/api/"}``.
The environment wins. A service with no URL is simply not contacted.

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
import os
from functools import lru_cache
from pathlib import Path

__all__ = ["SERVICES", "config_path", "service_url"]

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
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "llama" / "config.json"


@lru_cache(maxsize=4)
def _file_config(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or remove it") from err


def service_url(name: str) -> str | None:
    """Base URL of service ``name`` (a key of `SERVICES`), or None if unconfigured."""
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    env = os.environ.get(SERVICES[name])
    if env:
        return env
    return _file_config(config_path()).get(SERVICES[name].removeprefix("LLAMA_").lower())
