"""Scatter plots of neutrinos and optical candidates over the GW sky map.

Each plot is a PNG handler and a PDF handler drawing the same figure
(:func:`llama.science.plotting.draw_scatter`): the GW probability per deg² as an image
with its colour bar on an all-sky Mollweide panel (centred on RA 180° for every event)
and on a zoom that follows the 90% credible region, 50%/90% contours, neutrinos as
their 90% containment circles numbered as the rows of the neutrino tables and listed
with their arrival time relative to the GW event, and ZTF candidates as named stars.
Right ascension is labelled in degrees, or in hours with ``LLAMA_PLOT_RA_UNIT=hours``
in the environment (the setting is not an input of the plots: plots already made keep
their unit until they are made again).
The PNG and PDF handlers of one plot share the drawing (it is made once per thread),
and handlers in different threads draw at the same time (each on its own figure).

The GW time the listed arrival times (Δt) are relative to is taken from the event's
``skymap_info.json`` when it is there (it is an ancestor of the neutrino list, so a
change to it makes these plots obsolete through the list), else from the sky map
header, else Δt is relative to the first neutrino; the plot says which. Neutrinos are read through
:func:`llama.handlers.neutrino.read_neutrino_list`, so under BLINDED_NEUTRINOS=true a
supplied unblinded list is drawn with scrambled right ascensions.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama.handler import FileHandler
from llama.handlers.gw import LvcSkymapHdf5, SkymapInfo
from llama.handlers.neutrino import IceCubeNeutrinoList, read_neutrino_list
from llama.handlers.other_messengers import ZtfTriggerList

if TYPE_CHECKING:
    from llama.event import Event
    from llama.science.neutrinos import NeutrinoList
    from llama.science.plotting import Candidate
    from llama.science.skymap import SkyMap

__all__ = [
    "CoincScatterI3LvcPdf",
    "CoincScatterI3LvcPng",
    "CoincScatterZtfI3LvcPdf",
    "CoincScatterZtfI3LvcPng",
    "CoincScatterZtfLVCPdf",
    "CoincScatterZtfLVCPng",
    "read_candidates",
    "reference_time",
]

#: This thread's last sky map read by a scatter plot: (file key, SkyMap).
_last_map = threading.local()


def reference_time(
    event: Event, skymap: SkyMap | None = None, neutrinos: NeutrinoList | None = None
) -> tuple[float | None, str]:
    """The time neutrino dt values are relative to, as (MJD UTC, description).

    In order of preference: ``event_time_iso`` of the event's ``skymap_info.json``;
    the ``gps_time`` of the sky map header; the first neutrino's time. ``(None, ...)``
    when none is available (an empty list and no GW time).
    """
    from llama.science import times

    info = event.path(SkymapInfo.FILENAME)
    if info.exists():
        import json

        iso = json.loads(info.read_text()).get("event_time_iso")
        if iso:
            return times.iso_to_mjd(iso), f"GW event time {iso} UTC ({SkymapInfo.FILENAME})"
    gps = (skymap.meta.get("gps_time") if skymap is not None else None) or None
    if gps is not None:
        iso = times.gps_to_iso(float(gps))
        return times.gps_to_mjd(float(gps)), f"GW event time {iso} UTC (sky map header)"
    if neutrinos is not None and len(neutrinos) > 0:
        t0 = float(neutrinos.mjd[0])
        return t0, f"the first neutrino, {times.mjd_to_iso(t0)} UTC (no GW time available)"
    return None, "no reference time (no GW time and no neutrinos)"


def read_candidates(obj: Any) -> list[Candidate]:
    """Candidates from a ``ztf_trigger_list.json`` object.

    Accepts a list of ``{ra, dec, name, ...}`` objects, or an object holding such a
    list under ``candidates``, ``triggers`` or ``objects``; the name may also be given
    as ``objectId`` or ``id``.

    Examples
    --------
    >>> read_candidates([{"ra": 1.5, "dec": -2, "name": "ZTF19abc"}])
    [Candidate(ra=1.5, dec=-2.0, name='ZTF19abc')]
    """
    from llama.science.plotting import Candidate

    if isinstance(obj, dict):
        found = [obj[k] for k in ("candidates", "triggers", "objects") if k in obj]
        if not found:
            raise ValueError(
                f"{ZtfTriggerList.FILENAME}: expected a list of candidates or an object "
                "with a 'candidates' list"
            )
        obj = found[0]
    out = []
    for i, item in enumerate(obj):
        try:
            ra, dec = float(item["ra"]), float(item["dec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{ZtfTriggerList.FILENAME}: candidate {i} needs numeric ra and dec [deg]"
            ) from exc
        name = item.get("name") or item.get("objectId") or item.get("id") or f"#{i}"
        out.append(Candidate(ra=ra % 360.0, dec=dec, name=str(name)))
    return out


class _ScatterPlot(FileHandler, abstract=True):
    """Shared drawing: reads whichever of neutrinos and ZTF candidates it depends on."""

    #: Title after the GraceID.
    SUBJECT = ""

    def _skymap(self) -> SkyMap:
        """The event's sky map; the PNG and PDF handlers of a plot, which run one after
        the other in the same thread, read it once (the file's identity, size and
        modification time must match)."""
        path = self.dep_path(LvcSkymapHdf5)
        st = path.stat()
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        last = getattr(_last_map, "entry", None)
        if last is not None and last[0] == key:
            return last[1]
        skymap = LvcSkymapHdf5.read(self.event)
        _last_map.entry = (key, skymap)
        return skymap

    def _neutrinos(self) -> NeutrinoList | None:
        if IceCubeNeutrinoList not in self.DEPENDENCIES:
            return None
        return read_neutrino_list(self.event)  # RA scrambled under BLINDED_NEUTRINOS

    def _candidates(self) -> list[Candidate]:
        if ZtfTriggerList not in self.DEPENDENCIES:
            return []
        return read_candidates(self.read_json(ZtfTriggerList))

    def generate(self, out: Path) -> None:
        """Draw the figure and save it in the format of this handler's FILENAME."""
        from llama.science import plotting

        skymap = self._skymap()
        neutrinos = self._neutrinos()
        candidates = self._candidates()
        note = ""
        dt = None
        if neutrinos is not None:
            t0, what = reference_time(self.event, skymap, neutrinos)
            if t0 is not None:
                dt = neutrinos.dt_seconds(t0)
            note = f"Δt: neutrino arrival time relative to {what}"
        title = f"{self.event.eventid}: {self.SUBJECT}"
        fmt = Path(self.FILENAME).suffix.lstrip(".")
        # the PNG and PDF handlers of a plot draw the same figure: the second one in the
        # same thread finds it already drawn (same key) and only saves it; each thread
        # draws on its own figure, so threads draw at the same time (no lock)
        unit = plotting.ra_unit_setting()  # LLAMA_PLOT_RA_UNIT: deg (default) or hours
        key = plotting.drawing_key(skymap, neutrinos, dt, candidates, title, note, unit)
        fig = plotting.draw_scatter(
            skymap, neutrinos, dt, candidates, title, note, key, ra_unit=unit
        )
        plotting.save_figure(fig, out, fmt)


class CoincScatterI3LvcPng(_ScatterPlot):
    """PNG: IceCube neutrinos (r90 circles, colour = energy) over the GW sky map."""

    FILENAME = "scatterplot_lvc-i3.png"
    DEPENDENCIES = (LvcSkymapHdf5, IceCubeNeutrinoList)
    SUBJECT = "IceCube neutrinos over the GW sky map"


class CoincScatterI3LvcPdf(CoincScatterI3LvcPng):
    """PDF of the same figure as `CoincScatterI3LvcPng`."""

    FILENAME = "scatterplot_lvc-i3.pdf"


class CoincScatterZtfLVCPng(_ScatterPlot):
    """PNG: ZTF optical candidates over the GW sky map."""

    FILENAME = "scatterplot_ztf-lvc.png"
    DEPENDENCIES = (LvcSkymapHdf5, ZtfTriggerList)
    SUBJECT = "ZTF candidates over the GW sky map"


class CoincScatterZtfLVCPdf(CoincScatterZtfLVCPng):
    """PDF of the same figure as `CoincScatterZtfLVCPng`."""

    FILENAME = "scatterplot_ztf-lvc.pdf"


class CoincScatterZtfI3LvcPng(_ScatterPlot):
    """PNG: IceCube neutrinos and ZTF candidates over the GW sky map."""

    FILENAME = "scatterplot_ztf-lvc-i3.png"
    DEPENDENCIES = (LvcSkymapHdf5, IceCubeNeutrinoList, ZtfTriggerList)
    SUBJECT = "IceCube neutrinos and ZTF candidates over the GW sky map"


class CoincScatterZtfI3LvcPdf(CoincScatterZtfI3LvcPng):
    """PDF of the same figure as `CoincScatterZtfI3LvcPng`."""

    FILENAME = "scatterplot_ztf-lvc-i3.pdf"
