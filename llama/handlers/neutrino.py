"""Neutrino side: the IceCube neutrino list around the GW time.

``icecube_neutrino_list.json`` is the format of `llama.science.neutrinos.NeutrinoList`:
``{"triggers": [{mjd, ra, dec, sigma, energy, type, ...}], "complete": bool}`` with
the neutrinos within ``|t - t_gw| < 500 s``.

Where the list comes from
-------------------------
Supplied (``--get`` or by hand), or, with ONLINE=true and ``LLAMA_ICECUBE_URL`` set,
fetched from an IceCube realtime-event service. This project's stand-in protocol
(IceCube's own GFU stream is not public):

``GET {icecube}/events?mjd_start=<MJD UTC>&mjd_stop=<MJD UTC>``
    answers ``{"events": [{"mjd", "ra", "dec", "sigma", "energy", "zenith"?,
    "azimuth"?, "run"?, "event"?, "type"?}, ...], "complete": bool?}`` with every
    event in ``[mjd_start, mjd_stop]``; angles in degrees, energy in GeV, sigma the
    1-sigma error (floored at 0.2 deg on our side). ``complete`` says whether the
    service's data already cover the whole window; when absent, the list counts as
    complete once the current time is past the window's end. ``type`` defaults to
    "observation".

Blinding
--------
With BLINDED_NEUTRINOS=true a fetched list is written with scrambled right
ascensions (type "blinded"). A *supplied* file is never rewritten, so it cannot be
blinded here; `read_neutrino_list` applies the scramble in memory when the flag is set
and the file still holds unblinded triggers, and consumers should read the list
through it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama.handler import FileHandler, write_json
from llama.handlers.gw import SkymapInfo, event_gps_time, read_skymap_info

if TYPE_CHECKING:
    from llama.event import Event
    from llama.science.neutrinos import NeutrinoList

__all__ = ["SEARCH_HALF_WINDOW_S", "IceCubeNeutrinoList", "fetch_neutrinos", "read_neutrino_list"]

log = logging.getLogger(__name__)

#: Half-width of the neutrino search window around t_gw [s].
SEARCH_HALF_WINDOW_S = 500.0


def fetch_neutrinos(base_url: str, t_gw_gps: float) -> NeutrinoList:
    """Neutrinos within `SEARCH_HALF_WINDOW_S` of ``t_gw_gps`` from the IceCube service.

    Parameters
    ----------
    base_url
        The service's base URL (``LLAMA_ICECUBE_URL``).
    t_gw_gps
        GW event time [GPS s].

    Raises
    ------
    llama.services.ServiceError
        The service is unreachable or answers an error.
    ValueError
        The answer is not ``{"events": [...]}`` or an event is invalid (named).
    """
    from llama.science.neutrinos import NeutrinoList
    from llama.science.times import SECONDS_PER_DAY, gps_to_mjd
    from llama.services import get_json, join_url

    t_mjd = float(gps_to_mjd(t_gw_gps))
    half = SEARCH_HALF_WINDOW_S / SECONDS_PER_DAY
    answer = get_json(
        join_url(base_url, "events"),
        params={"mjd_start": repr(t_mjd - half), "mjd_stop": repr(t_mjd + half)},
    )
    if not isinstance(answer, dict) or not isinstance(answer.get("events"), list):
        raise ValueError('IceCube service: expected a JSON object {"events": [...]} from /events')
    events = [
        {**e, "type": e.get("type") or "observation"} if isinstance(e, dict) else e
        for e in answer["events"]
    ]
    complete = answer.get("complete")
    if complete is None:
        complete = _now_gps() > t_gw_gps + SEARCH_HALF_WINDOW_S
    neutrinos = NeutrinoList.from_json({"triggers": events, "complete": bool(complete)})
    return neutrinos.select_window(t_mjd, SEARCH_HALF_WINDOW_S)


def _now_gps() -> float:
    from llama.science.times import now_gps

    return now_gps()


def _blind(neutrinos: NeutrinoList) -> NeutrinoList:
    """Scramble right ascensions with fresh OS entropy (not reproducible on purpose:
    a seed derived from the event would let anyone undo the blinding)."""
    import numpy as np

    return neutrinos.scramble_ra(np.random.default_rng())


def _read_list(event: Event) -> NeutrinoList:
    """The event's list as its file holds it, its bytes through `Event.read_bytes`:
    those its checksum read (the significance's input hashes) or that the event keeps,
    not read from disk again (the significance, then the record)."""
    from llama.science.neutrinos import NeutrinoList, NeutrinoListError

    path = event.path(IceCubeNeutrinoList.FILENAME)
    try:
        data = event.read_bytes(IceCubeNeutrinoList.FILENAME)
    except FileNotFoundError:
        raise NeutrinoListError(f"{path}: no such file") from None
    return NeutrinoList.read(path, data)


def read_neutrino_list(event: Event) -> NeutrinoList:
    """The event's neutrino list, blinded in memory when BLINDED_NEUTRINOS=true.

    A file written by `IceCubeNeutrinoList` under that flag is already blinded; a
    supplied one may not be, and is scrambled here (the file itself stays as it was).
    """
    neutrinos = _read_list(event)
    if event.flags.is_true("BLINDED_NEUTRINOS") and any(t != "blinded" for t in neutrinos.type):
        log.warning(
            "%s: BLINDED_NEUTRINOS=true but %s holds unblinded triggers; scrambling RA in memory",
            event.eventid,
            IceCubeNeutrinoList.FILENAME,
        )
        neutrinos = _blind(neutrinos)
    return neutrinos


class IceCubeNeutrinoList(FileHandler):
    """Neutrinos within t_gw +- 500 s: ``{"triggers": [...], "complete": bool}``.

    Supplied, or fetched (ONLINE=true and ``LLAMA_ICECUBE_URL`` set; see the module
    docstring for the protocol); blinded when BLINDED_NEUTRINOS=true. Without a
    supplied file and without the service it fails, saying what to supply.
    """

    FILENAME = "icecube_neutrino_list.json"
    DEPENDENCIES = (SkymapInfo,)
    RETRIES = 1  # on top of get_json's own retries of transient HTTP failures
    TIMEOUT_S = 120.0

    def generate(self, out: Path) -> None:
        from llama.config import service_url

        info = read_skymap_info(self.event)
        base = service_url("icecube") if self.event.flags.is_true("ONLINE") else None
        if not base:
            why = (
                "ONLINE=false"
                if not self.event.flags.is_true("ONLINE")
                else ("LLAMA_ICECUBE_URL is not set")
            )
            raise RuntimeError(
                f"{self.event.eventid}: no neutrino list and no IceCube service to ask "
                f"({why}); supply {self.FILENAME} with --get, or set ONLINE=true and "
                "LLAMA_ICECUBE_URL"
            )
        neutrinos = fetch_neutrinos(base, event_gps_time(info))
        if self.event.flags.is_true("BLINDED_NEUTRINOS"):
            neutrinos = _blind(neutrinos)
        write_json(out, neutrinos.to_json())

    @classmethod
    def record(cls, event: Event) -> dict[str, Any]:
        neutrinos = _read_list(event)
        return {
            "n_neutrinos": len(neutrinos),
            "neutrinos_complete": neutrinos.complete,
            "neutrinos_blinded": bool(len(neutrinos))
            and all(t == "blinded" for t in neutrinos.type),
        }
