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

__all__ = [
    "ANALYSIS_OPTIONS",
    "SERVICES",
    "analysis_number",
    "analysis_option",
    "config_path",
    "service_url",
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
    "background_table": ("LLAMA_BACKGROUND_TABLE", "", None),
    "background_sensitivity": ("LLAMA_BACKGROUND_SENSITIVITY", "", None),  # "": the only one
    "overlap_rtol": ("LLAMA_OVERLAP_RTOL", "", None),  # "": the kernels' default
}


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
    var, default, allowed = ANALYSIS_OPTIONS[name]
    value = os.environ.get(var) or _file_config(config_path()).get(name) or default
    value = str(value)
    if allowed is not None and value not in allowed:
        raise ValueError(f"{var}={value!r} is not allowed; choose one of: {', '.join(allowed)}")
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
            f"set e.g. {ANALYSIS_OPTIONS[name][1] or '0.01'} or unset it"
        ) from None
