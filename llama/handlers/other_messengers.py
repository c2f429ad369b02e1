"""Other messengers queried around the GW event: ZTF optical candidates, Fermi GBM.

Both handlers contact an outside service, so they are VETOED when ONLINE=false, and
they fail with a message naming the variable to set when their base URL is not
configured. This project's protocols for these services (stand-ins for the ZTF
alert brokers and the Fermi GBM trigger catalogue):

ZTF, base URL ``LLAMA_ZTF_URL``
    ``GET {ztf}/candidates?mjd_start=<MJD UTC>&mjd_stop=<MJD UTC>`` answers
    ``{"candidates": [{"name", "ra", "dec", "mjd", "mag"?, "filter"?, ...}]}``: the
    candidates first detected in the window. The window is ``ZTF_WINDOW_DAYS`` after
    t_gw. Position filtering against the GW map is left to the products that read
    both (the scatter plots); this handler only depends on ``skymap_info.json``.
    Written as a JSON list, sorted by ``mjd``, every candidate with ``dt`` [s].

Fermi GBM, base URL ``LLAMA_FERMI_URL``
    ``GET {fermi}/grbs?start=<ISO UTC>&stop=<ISO UTC>`` answers
    ``{"grbs": [{"name", "trigger_time_iso", "ra", "dec", "error_radius"?, ...}]}``;
    the window is t_gw +- ``FERMI_HALF_WINDOW_S``. Written as a JSON list, sorted by
    time, each burst with ``dt`` [s] relative to t_gw.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama.handler import FileHandler, write_json
from llama.handlers.gw import SkymapInfo, event_gps_time, read_skymap_info

if TYPE_CHECKING:
    from llama.event import Event

__all__ = [
    "FERMI_HALF_WINDOW_S",
    "ZTF_WINDOW_DAYS",
    "FermiGRBsJSON",
    "ZtfTriggerList",
    "fetch_fermi_grbs",
    "fetch_ztf_candidates",
]

#: Time window of the ZTF query [days after t_gw].
ZTF_WINDOW_DAYS = (0.0, 3.0)
#: Half-width of the Fermi GBM query around t_gw [s] (the LLAMA search window).
FERMI_HALF_WINDOW_S = 500.0


def _position(item: Any, i: int, what: str) -> dict[str, Any]:
    """Check that ``item`` is an object with finite ra in [0, 360], dec in [-90, 90]."""
    import math

    if not isinstance(item, Mapping):
        raise ValueError(f"{what} {i}: is {type(item).__name__}, not an object")
    out = dict(item)
    for key, lo, hi in (("ra", 0.0, 360.0), ("dec", -90.0, 90.0)):
        try:
            value = float(out[key])
        except KeyError:
            raise ValueError(f"{what} {i}: missing key {key!r}") from None
        except (TypeError, ValueError):
            raise ValueError(f"{what} {i}: {key} = {out[key]!r} is not a number") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{what} {i}: {key} = {value} is outside [{lo}, {hi}] degrees")
        out[key] = value
    return out


def _list_of(answer: Any, key: str, service: str) -> list:
    if not isinstance(answer, Mapping) or not isinstance(answer.get(key), list):
        raise ValueError(f"{service}: expected a JSON object {{{key!r}: [...]}}")
    return answer[key]


def fetch_ztf_candidates(base_url: str, t_gw_gps: float) -> list[dict[str, Any]]:
    """ZTF candidates first seen in `ZTF_WINDOW_DAYS` after ``t_gw_gps``, with ``dt`` [s]."""
    from llama.science.times import SECONDS_PER_DAY, gps_to_mjd
    from llama.services import get_json, join_url

    t_mjd = float(gps_to_mjd(t_gw_gps))
    answer = get_json(
        join_url(base_url, "candidates"),
        params={
            "mjd_start": repr(t_mjd + ZTF_WINDOW_DAYS[0]),
            "mjd_stop": repr(t_mjd + ZTF_WINDOW_DAYS[1]),
        },
    )
    out = []
    for i, item in enumerate(_list_of(answer, "candidates", "ZTF service")):
        cand = _position(item, i, "ZTF candidate")
        try:
            cand["mjd"] = float(cand["mjd"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"ZTF candidate {i}: needs a numeric 'mjd'") from None
        cand["dt"] = (cand["mjd"] - t_mjd) * SECONDS_PER_DAY
        out.append(cand)
    return sorted(out, key=lambda c: c["mjd"])


def fetch_fermi_grbs(base_url: str, t_gw_gps: float) -> list[dict[str, Any]]:
    """Fermi GBM bursts within `FERMI_HALF_WINDOW_S` of ``t_gw_gps``, with ``dt`` [s]."""
    from llama.science.times import gps_to_iso, iso_to_gps
    from llama.services import get_json, join_url

    answer = get_json(
        join_url(base_url, "grbs"),
        params={
            "start": gps_to_iso(t_gw_gps - FERMI_HALF_WINDOW_S),
            "stop": gps_to_iso(t_gw_gps + FERMI_HALF_WINDOW_S),
        },
    )
    out = []
    for i, item in enumerate(_list_of(answer, "grbs", "Fermi service")):
        grb = _position(item, i, "Fermi GRB")
        try:
            grb["dt"] = iso_to_gps(str(grb["trigger_time_iso"])) - t_gw_gps
        except KeyError:
            raise ValueError(f"Fermi GRB {i}: missing key 'trigger_time_iso'") from None
        except ValueError:
            raise ValueError(
                f"Fermi GRB {i}: trigger_time_iso = {grb['trigger_time_iso']!r} is not ISO UTC"
            ) from None
        if abs(grb["dt"]) <= FERMI_HALF_WINDOW_S:
            out.append(grb)
    return sorted(out, key=lambda g: g["dt"])


class _ServiceQuery(FileHandler, abstract=True):
    """A JSON list fetched from an outside service around the GW time (when ONLINE)."""

    DEPENDENCIES = (SkymapInfo,)
    CONTACTS_SERVICE = True
    RETRIES = 1  # on top of get_json's own retries of transient HTTP failures
    TIMEOUT_S = 120.0
    #: Service name in `llama.config.SERVICES`, and what the query is for (messages).
    SERVICE: str
    PURPOSE: str
    #: Column of the results Dataset holding the number of items found.
    RECORD_KEY: str

    @staticmethod
    def fetch(base_url: str, t_gw_gps: float) -> list[dict[str, Any]]:
        raise NotImplementedError

    def generate(self, out: Path) -> None:
        from llama.services import require_url

        info = read_skymap_info(self.event)
        base = require_url(self.SERVICE, self.PURPOSE)
        write_json(out, self.fetch(base, event_gps_time(info)))

    @classmethod
    def record(cls, event: Event) -> dict[str, Any]:
        import json

        return {cls.RECORD_KEY: len(json.loads(event.read_bytes(cls.FILENAME)))}


class ZtfTriggerList(_ServiceQuery):
    """ZTF optical candidates after the GW time (queried when ONLINE; a JSON list)."""

    FILENAME = "ztf_trigger_list.json"
    SERVICE, PURPOSE, RECORD_KEY = "ztf", "query ZTF candidates", "n_ztf_candidates"
    fetch = staticmethod(fetch_ztf_candidates)


class FermiGRBsJSON(_ServiceQuery):
    """Fermi GBM bursts near the GW time (queried when ONLINE; a JSON list)."""

    FILENAME = "fermi_grbs.json"
    SERVICE, PURPOSE, RECORD_KEY = "fermi", "query Fermi GBM bursts", "n_fermi_grbs"
    fetch = staticmethod(fetch_fermi_grbs)
