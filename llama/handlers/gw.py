"""Gravitational-wave side: alert inputs, the sky map and its derived products.

Inputs (supplied by a listener, by hand or by ``--get``): `SkymapInfo`, `LvcGcnXml`,
`LvcRetractionXml`, `LVAlertJSON`, `Advok`. Listeners build ``skymap_info.json`` with
`skymap_info_from_gcn` (a GCN VOEvent) or `skymap_info_from_lvalert` (an IGWN alert
JSON message); every handler reads it through `read_skymap_info`, which checks it.

``skymap_info.json``
    ``graceid`` and ``event_time_iso`` (UTC) are required; the other keys are
    ``notice_time_iso``, ``far`` [Hz], ``pipeline``, ``instruments`` (list),
    ``skymap_filename``, ``alert_type``, ``skymap_url`` (a local path, ``file://``,
    ``http(s)://`` or ``s3://`` URL), and optionally the preferred event's ``snr`` and
    ``offline`` flag and a ``p_astro`` dict (BNS, NSBH, BBH, MassGap, Terrestrial),
    which the offline paths of `LVCGraceDbEventData` and `PAstro` use.

Online lookups (`LVCGraceDbEventData`, `PAstro`) use GraceDB's REST API under the base
URL ``LLAMA_GRACEDB_URL`` (e.g. ``https://gracedb.ligo.org/api/``):

* ``GET {gracedb}/superevents/{graceid}/`` -> ``{"superevent_id", "preferred_event",
  "far", "t_0", ...}``
* ``GET {gracedb}/events/{preferred_event}/`` -> ``{"graceid", "instruments": "H1,L1",
  "far", "offline", "extra_attributes": {"CoincInspiral": {"snr"}} or
  {"MultiBurst": {"snr"}}, ...}``
* ``GET {gracedb}/superevents/{graceid}/files/p_astro.json`` -> ``{"BNS": ..., ...}``
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama.handler import FileHandler, note_written, write_json

if TYPE_CHECKING:
    from llama.event import Event
    from llama.science.skymap import SkyMap

__all__ = [
    "P_ASTRO_KEYS",
    "SKYMAP_INFO_REQUIRED",
    "Advok",
    "LVAlertAdvok",
    "LVAlertJSON",
    "LVCGraceDbEventData",
    "LvcDistancesJson",
    "LvcGcnXml",
    "LvcRetractionXml",
    "LvcSkymapFits",
    "LvcSkymapHdf5",
    "PAstro",
    "SkymapInfo",
    "SkymapInfoError",
    "advok_from_lvalert",
    "event_gps_time",
    "read_skymap_info",
    "skymap_bytes_from_lvalert",
    "skymap_info_from_gcn",
    "skymap_info_from_lvalert",
    "validate_p_astro",
    "validate_skymap_info",
]

log = logging.getLogger(__name__)

#: Keys every ``skymap_info.json`` must have.
SKYMAP_INFO_REQUIRED = ("graceid", "event_time_iso")
#: Source classes of ``p_astro.json``, in file order.
P_ASTRO_KEYS = ("BNS", "NSBH", "BBH", "MassGap", "Terrestrial")
#: Largest allowed deviation of the p_astro sum from 1.
P_ASTRO_SUM_TOLERANCE = 0.01
#: Advocate labels on GraceDB: sign-off given / refused.
ADVOCATE_LABELS = ("ADVOK", "ADVNO")


class SkymapInfoError(ValueError):
    """An invalid skymap_info.json, GCN notice or alert message; says what is missing."""


# --- skymap_info.json -----------------------------------------------------------------


def validate_skymap_info(
    info: Any, where: str = "skymap_info.json", required: tuple[str, ...] = SKYMAP_INFO_REQUIRED
) -> dict[str, Any]:
    """Check a skymap_info dict and return it with normalised types.

    ``instruments`` given as ``"H1,L1"`` becomes ``["H1", "L1"]``; ``far`` and ``snr``
    become floats.

    Raises
    ------
    SkymapInfoError
        Naming the missing key or the bad value.

    Examples
    --------
    >>> validate_skymap_info({"graceid": "S1", "event_time_iso": "2019-04-25T08:18:05",
    ...                       "instruments": "H1,L1"})["instruments"]
    ['H1', 'L1']
    >>> validate_skymap_info({"graceid": "S1"})
    Traceback (most recent call last):
    ...
    llama.handlers.gw.SkymapInfoError: skymap_info.json: missing key 'event_time_iso' ...
    """
    if not isinstance(info, Mapping):
        raise SkymapInfoError(f"{where}: must be a JSON object, not {type(info).__name__}")
    info = dict(info)
    for key in required:
        if info.get(key) in (None, ""):
            raise SkymapInfoError(
                f"{where}: missing key {key!r} (required: {', '.join(required)}); "
                "rebuild it from the GCN notice or alert, or fix it by hand"
            )
    if "event_time_iso" in info:
        _check_iso(info["event_time_iso"], "event_time_iso", where)
    if info.get("instruments") is not None:
        info["instruments"] = _instrument_list(info["instruments"])
    for key in ("far", "snr"):
        if info.get(key) is not None:
            info[key] = _finite_float(info[key], key, where)
    return info


def read_skymap_info(event: Event) -> dict[str, Any]:
    """The checked ``skymap_info.json`` of ``event`` (see `validate_skymap_info`)."""
    import json

    path = event.path(SkymapInfo.FILENAME)
    try:  # its bytes kept by the event: read by ~5 handlers and the record of each event
        info = json.loads(event.read_bytes(SkymapInfo.FILENAME))
    except FileNotFoundError:
        raise SkymapInfoError(
            f"{event.eventid}: no {SkymapInfo.FILENAME}; supply it with --get or make it "
            "from the GCN notice / alert"
        ) from None
    except json.JSONDecodeError as err:
        raise SkymapInfoError(f"{path}: not valid JSON ({err})") from None
    return validate_skymap_info(info, where=str(path))


def event_gps_time(info: Mapping[str, Any]) -> float:
    """GPS time [s] of the GW event from a skymap_info dict's ``event_time_iso``."""
    return _gps_of_iso(str(info["event_time_iso"]))


def _gps_of_iso(iso: str) -> float:
    """`llama.science.times.iso_to_gps`, which keeps each string's answer: an event's
    ``event_time_iso`` is checked by every handler that reads its skymap_info.json
    (5 per event to its significance). A bad string raises ValueError each time."""
    from llama.science.times import iso_to_gps

    return iso_to_gps(iso)


def _check_iso(value: Any, key: str, where: str) -> None:
    try:
        _gps_of_iso(str(value))
    except ValueError:
        raise SkymapInfoError(
            f"{where}: {key} = {value!r} is not an ISO 8601 UTC time "
            "(e.g. 2019-04-25T08:18:05.017553)"
        ) from None


def _finite_float(value: Any, key: str, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SkymapInfoError(f"{where}: {key} = {value!r} is not a number") from None
    if not math.isfinite(out) or out < 0:
        raise SkymapInfoError(f"{where}: {key} = {value!r} must be finite and >= 0")
    return out


def _instrument_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return [str(s) for s in value]


def _normalise_iso(value: str) -> str:
    from llama.science.times import normalise_iso

    return normalise_iso(str(value))


def _filename_from_url(url: str) -> str:
    """Last path component, without GraceDB's ``,<version>`` suffix."""
    from urllib.parse import urlsplit

    name = urlsplit(url).path.rsplit("/", 1)[-1]
    head, sep, tail = name.rpartition(",")
    return head if sep and tail.isdigit() else name


# --- GCN VOEvent ----------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _gcn_params(root) -> dict[str, str]:
    """Param name -> value for every Param outside Classification/Properties groups."""
    params: dict[str, str] = {}
    for elem in root.iter():
        if _local(elem.tag) == "Param" and elem.get("name"):
            params.setdefault(elem.get("name"), elem.get("value", ""))
    return params


def _gcn_group(root, group_type: str) -> dict[str, float]:
    for elem in root.iter():
        if _local(elem.tag) == "Group" and elem.get("type") == group_type:
            return {
                p.get("name"): float(p.get("value"))
                for p in elem
                if _local(p.tag) == "Param" and p.get("name")
            }
    return {}


def _gcn_text(root, path: tuple[str, ...]) -> str | None:
    """Text of the first element whose local tag is ``path[-1]`` under ``path[:-1]``."""
    for elem in root.iter():
        if _local(elem.tag) == path[0]:
            node = elem
            for tag in path[1:]:
                node = next((c for c in node.iter() if _local(c.tag) == tag), None)
                if node is None:
                    break
            if node is not None and node.text and node.text.strip():
                return node.text.strip()
    return None


def skymap_info_from_gcn(xml_text: str | bytes) -> dict[str, Any]:
    """Build a skymap_info dict from an LVK GCN VOEvent notice.

    Reads the Params ``GraceID``, ``AlertType``, ``FAR`` [Hz], ``Pipeline``,
    ``Instruments``, ``skymap_fits`` (URL, kept as ``skymap_url``), the event time
    from ``WhereWhen`` (ISOTime), the notice time from ``Who/Date``, the VOEvent
    ``role``, and the ``Classification`` group as ``p_astro`` when present.

    Raises
    ------
    SkymapInfoError
        Not XML, not a VOEvent, or a required Param / the event time missing.
    """
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        raise SkymapInfoError(f"GCN notice: not valid XML ({err})") from None
    if _local(root.tag) != "VOEvent":
        raise SkymapInfoError(f"GCN notice: root element is {_local(root.tag)}, not VOEvent")
    params = _gcn_params(root)
    for name in ("GraceID", "AlertType"):
        if not params.get(name):
            raise SkymapInfoError(f"GCN notice: missing Param {name!r}")
    info: dict[str, Any] = {
        "graceid": params["GraceID"],
        "alert_type": params["AlertType"],
        "role": root.get("role", "observation"),
    }
    event_time = _gcn_text(root, ("WhereWhen", "ISOTime"))
    if event_time is None and params["AlertType"].lower() != "retraction":
        raise SkymapInfoError("GCN notice: missing the event time (WhereWhen ... ISOTime)")
    if event_time is not None:
        info["event_time_iso"] = _normalise_iso(event_time)
    notice_time = _gcn_text(root, ("Who", "Date"))
    if notice_time is not None:
        info["notice_time_iso"] = _normalise_iso(notice_time)
    if params.get("FAR"):
        info["far"] = float(params["FAR"])
    if params.get("Pipeline"):
        info["pipeline"] = params["Pipeline"]
    if params.get("Instruments"):
        info["instruments"] = _instrument_list(params["Instruments"])
    if params.get("skymap_fits"):
        info["skymap_url"] = params["skymap_fits"]
        info["skymap_filename"] = _filename_from_url(params["skymap_fits"])
    classification = _gcn_group(root, "Classification")
    if classification:
        info["p_astro"] = {k: classification.get(k, 0.0) for k in P_ASTRO_KEYS}
    return info


# --- IGWN alert / LVAlert JSON --------------------------------------------------------


def _alert_parts(msg: Mapping[str, Any]) -> tuple[str | None, dict, dict]:
    """(graceid, event dict, superevent object) of an IGWN alert or LVAlert message."""
    obj = msg.get("object") if isinstance(msg.get("object"), Mapping) else {}
    graceid = msg.get("superevent_id") or obj.get("superevent_id") or msg.get("uid")
    event = msg.get("event") if isinstance(msg.get("event"), Mapping) else None
    if event is None:
        event = obj.get("preferred_event_data") or {}
    return graceid, dict(event), dict(obj)


def skymap_info_from_lvalert(msg: Mapping[str, Any] | str) -> dict[str, Any]:
    """Build a skymap_info dict from an IGWN alert JSON message (or its text).

    The IGWN alert format (O4): ``superevent_id``, ``alert_type``, ``time_created``,
    ``event`` {``time`` (ISO), ``far``, ``pipeline``, ``instruments`` (list),
    ``classification`` (p_astro), ``skymap`` (base64 FITS, see
    `skymap_bytes_from_lvalert`)}, ``urls`` {``gracedb``, optionally ``skymap``}.
    GraceDB LVAlert messages (``uid``, ``alert_type``, ``object`` = the superevent with
    ``t_0`` [GPS] and ``preferred_event_data``) are understood too.

    Raises
    ------
    SkymapInfoError
        When the message has no superevent id or (except for retractions) no time.
    """
    import json

    from llama.science.times import gps_to_iso

    if isinstance(msg, (str, bytes)):
        try:
            msg = json.loads(msg)
        except json.JSONDecodeError as err:
            raise SkymapInfoError(f"alert message: not valid JSON ({err})") from None
    if not isinstance(msg, Mapping):
        raise SkymapInfoError("alert message: must be a JSON object")
    graceid, event, obj = _alert_parts(msg)
    if not graceid:
        raise SkymapInfoError("alert message: missing key 'superevent_id' (or 'uid')")
    alert_type = str(msg.get("alert_type", "")).upper() or "UNKNOWN"
    info: dict[str, Any] = {"graceid": str(graceid), "alert_type": alert_type}
    if event.get("time"):
        info["event_time_iso"] = _normalise_iso(event["time"])
    elif obj.get("t_0") is not None:
        info["event_time_iso"] = gps_to_iso(float(obj["t_0"]))
    elif event.get("gpstime") is not None:
        info["event_time_iso"] = gps_to_iso(float(event["gpstime"]))
    elif alert_type != "RETRACTION":
        raise SkymapInfoError(
            f"alert message for {graceid}: missing the event time (event.time or object.t_0)"
        )
    if msg.get("time_created"):
        info["notice_time_iso"] = _normalise_iso(str(msg["time_created"]).replace(" ", "T"))
    far = event.get("far", obj.get("far"))
    if far is not None:
        info["far"] = float(far)
    if event.get("pipeline"):
        info["pipeline"] = str(event["pipeline"])
    if event.get("instruments"):
        info["instruments"] = _instrument_list(event["instruments"])
    urls = msg.get("urls") if isinstance(msg.get("urls"), Mapping) else {}
    if urls.get("skymap"):
        info["skymap_url"] = str(urls["skymap"])
        info["skymap_filename"] = _filename_from_url(str(urls["skymap"]))
    classification = event.get("classification")
    if isinstance(classification, Mapping) and classification:
        info["p_astro"] = {k: float(classification.get(k, 0.0)) for k in P_ASTRO_KEYS}
    return info


def skymap_bytes_from_lvalert(msg: Mapping[str, Any]) -> bytes | None:
    """The FITS sky map embedded (base64) in an IGWN alert's ``event.skymap``, or None.

    A listener writes these bytes as ``lvc_skymap.fits`` (an input then).

    Raises
    ------
    SkymapInfoError
        When ``event.skymap`` is present but is not base64.
    """
    event = msg.get("event") if isinstance(msg.get("event"), Mapping) else {}
    data = event.get("skymap")
    if not data:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise SkymapInfoError("alert message: event.skymap is not base64-encoded") from None


def advok_from_lvalert(msg: Mapping[str, Any]) -> dict[str, Any]:
    """The advocate sign-off (ADVOK / ADVNO label) carried by an LVAlert message.

    A ``label_added`` / ``label_removed`` message about an advocate label decides;
    otherwise the superevent's ``labels`` list (``object.labels`` or ``labels``), where
    ADVNO wins over ADVOK.

    Returns
    -------
    dict
        ``{"graceid", "advok": bool, "label", "alert_type", "labels"}``.

    Raises
    ------
    SkymapInfoError
        When the message carries no advocate label (no sign-off yet).
    """
    graceid, _event, obj = _alert_parts(msg)
    alert_type = str(msg.get("alert_type", "")).lower()
    labels = [str(x) for x in (obj.get("labels") or msg.get("labels") or [])]
    data = msg.get("data") if isinstance(msg.get("data"), Mapping) else {}
    named = str(data.get("name", ""))
    out = {"graceid": graceid, "alert_type": alert_type, "labels": labels}
    if alert_type in ("label_added", "label_removed") and named in ADVOCATE_LABELS:
        added = alert_type == "label_added"
        # removing ADVNO is not a sign-off; removing ADVOK withdraws one
        return {**out, "label": named, "advok": added and named == "ADVOK"}
    for label in ("ADVNO", "ADVOK"):
        if label in labels:
            return {**out, "label": label, "advok": label == "ADVOK"}
    raise SkymapInfoError(
        f"lvalert.json for {graceid}: no ADVOK or ADVNO label (alert_type "
        f"{alert_type or 'unknown'}); the advocate has not signed off yet"
    )


# --- p_astro --------------------------------------------------------------------------


def validate_p_astro(p: Any, where: str = "p_astro") -> dict[str, float]:
    """Check source-class probabilities; return them in `P_ASTRO_KEYS` order.

    ``MassGap`` may be absent (O4 p_astro files dropped it) and then counts as 0.

    Raises
    ------
    ValueError
        A missing class, a value outside [0, 1], or a sum that is not ~1.

    Examples
    --------
    >>> validate_p_astro({"BNS": 0.9, "NSBH": 0.05, "BBH": 0, "Terrestrial": 0.05})
    {'BNS': 0.9, 'NSBH': 0.05, 'BBH': 0.0, 'MassGap': 0.0, 'Terrestrial': 0.05}
    """
    if not isinstance(p, Mapping):
        raise ValueError(f"{where}: must be an object with keys {', '.join(P_ASTRO_KEYS)}")
    out: dict[str, float] = {}
    for key in P_ASTRO_KEYS:
        if key not in p:
            if key == "MassGap":
                out[key] = 0.0
                continue
            raise ValueError(
                f"{where}: missing source class {key!r} (need {', '.join(P_ASTRO_KEYS)})"
            )
        try:
            value = float(p[key])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key} = {p[key]!r} is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{where}: {key} = {value} is not a probability in [0, 1]")
        out[key] = value
    total = sum(out.values())
    if abs(total - 1.0) > P_ASTRO_SUM_TOLERANCE:
        raise ValueError(f"{where}: the probabilities sum to {total:.4f}, not 1")
    return out


# --- input handlers -------------------------------------------------------------------


class SkymapInfo(FileHandler):
    """Event summary (input): graceid, event_time_iso, notice_time_iso, far [Hz],
    pipeline, instruments, skymap_filename, alert_type, optional skymap_url.

    Made by listeners with `skymap_info_from_gcn` / `skymap_info_from_lvalert`, or
    supplied with ``--get``.
    """

    FILENAME = "skymap_info.json"

    @classmethod
    def record(cls, event: Event) -> dict[str, Any]:
        info = read_skymap_info(event)
        return {
            "graceid": info["graceid"],
            "far": info.get("far"),
            "pipeline": info.get("pipeline"),
            "instruments": ",".join(info.get("instruments") or []),
        }


class LvcGcnXml(FileHandler):
    """GCN VOEvent of the GW alert (input); see `skymap_info_from_gcn`."""

    FILENAME = "lvc_gcn.xml"


class LvcRetractionXml(FileHandler):
    """A retraction notice (input): its presence vetoes the event."""

    FILENAME = "lvc_retraction.xml"


class LVAlertJSON(FileHandler):
    """An LVAlert / IGWN alert JSON message (input); see `skymap_info_from_lvalert`."""

    FILENAME = "lvalert.json"


class Advok(FileHandler):
    """Advocate sign-off record (input), same layout as `LVAlertAdvok`'s file."""

    FILENAME = "advok.json"


# --- generated handlers ---------------------------------------------------------------


class LVAlertAdvok(FileHandler):
    """Advocate sign-off extracted from ``lvalert.json`` (ADVOK / ADVNO labels).

    Writes ``{"graceid", "advok": bool, "label", "alert_type", "labels"}``; fails with
    a clear message when the alert carries no advocate label.
    """

    FILENAME = "lvalert_advok.json"
    DEPENDENCIES = (LVAlertJSON,)

    def generate(self, out: Path) -> None:
        write_json(out, advok_from_lvalert(self.read_json(LVAlertJSON)))

    @classmethod
    def record(cls, event: Event) -> dict[str, Any]:
        import json

        return {"advok": json.loads(event.read_bytes(cls.FILENAME))["advok"]}


class LvcSkymapFits(FileHandler):
    """The GW sky map, fetched from ``skymap_url`` (file, HTTP or S3) or supplied.

    The download is checked with `llama.science.skymap.read_sky_map` before it lands;
    a gzipped map is stored uncompressed.
    """

    FILENAME = "lvc_skymap.fits"
    DEPENDENCIES = (SkymapInfo,)
    TIMEOUT_S = 600.0

    def generate(self, out: Path) -> None:
        import gzip
        import io

        from llama import storage
        from llama.science.skymap import read_sky_map

        info = read_skymap_info(self.event)
        url = info.get("skymap_url")
        if not url:
            raise SkymapInfoError(
                f"{self.event.eventid}: skymap_info.json has no skymap_url, so there is "
                f"nowhere to fetch the sky map from; supply {self.FILENAME} with --get "
                "(or add skymap_url to skymap_info.json)"
            )
        data = storage.read_bytes(url)
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        read_sky_map(io.BytesIO(data))  # raises SkyMapError naming the problem
        out.write_bytes(data)


class LvcSkymapHdf5(FileHandler):
    """Internal fast-loading copy of the sky map (multi-order kept multi-order)."""

    FILENAME = "lvc_skymap.hdf5"
    DEPENDENCIES = (LvcSkymapFits,)

    def generate(self, out: Path) -> None:
        import io

        from llama.science.skymap import hdf5_copy

        def fits() -> io.BytesIO:
            # the bytes the event's checksum of the input read just before, not a
            # second read; only where this process has no copy of this map yet
            data = io.BytesIO(self.event.read_bytes(LvcSkymapFits.FILENAME))
            data.name = str(self.dep_path(LvcSkymapFits))  # named in read_sky_map's errors
            return data

        # ``out`` is a temporary name, renamed by the event: no second one inside. A
        # map this process has copied before (a campaign's maps over many neutrino
        # lists) is written from the kept copy's bytes, the FITS file not parsed
        sha256 = self.event.sha256(LvcSkymapFits.FILENAME)
        written = hdf5_copy(out, fits, sha256, atomic=False)
        if written is not None:  # its checksum from the bytes read back, not a second read
            note_written(out, written.data, written.sha256)

    @classmethod
    def read(cls, event: Event) -> SkyMap:
        """The event's copy of the map. Read under its checksum (`Event.sha256`: one
        stat where the file's size and mtime_ns are those of its last checksum), so
        the map `write_hdf5` or an earlier read kept in this process is taken without
        opening the file (`llama.science.skymap.read_hdf5`)."""
        from llama.science.skymap import read_hdf5

        return read_hdf5(event.path(cls.FILENAME), sha256=event.sha256(cls.FILENAME))

    @classmethod
    def read_meta(cls, event: Event) -> dict[str, Any]:
        """The copy's meta dict (the FITS header's keys), as `read` finds the map."""
        from llama.science.skymap import read_hdf5_meta

        return read_hdf5_meta(event.path(cls.FILENAME), sha256=event.sha256(cls.FILENAME))


class LvcDistancesJson(FileHandler):
    """distmean and diststd [Mpc] of the sky map, from its header or its layers.

    Writes ``{"distmean": Mpc, "diststd": Mpc, "method": "header" | "layers"}``.

    Read from `LvcSkymapHdf5`'s copy of the map, which keeps the FITS header's
    DISTMEAN/DISTSTD and the distance layers as they were: the same numbers as from
    the FITS file, without parsing it a second time per event. When the header has
    them, only the copy's header attributes are read.
    """

    FILENAME = "lvc_skymap_distances.json"
    DEPENDENCIES = (LvcSkymapHdf5,)

    def generate(self, out: Path) -> None:
        header = _header_distances(self.event)
        if header is not None:
            (distmean, diststd), method = header, "header"
        else:
            # SkyMapError names what is missing when there are no layers either
            skymap = LvcSkymapHdf5.read(self.event)
            (distmean, diststd), method = skymap.distance_moments(), "layers"
        write_json(out, {"distmean": float(distmean), "diststd": float(diststd), "method": method})

    @classmethod
    def record(cls, event: Event) -> dict[str, Any]:
        import json

        d = json.loads(event.read_bytes(cls.FILENAME))
        return {"distmean": d["distmean"], "diststd": d["diststd"]}


def _header_distances(event: Event) -> tuple[float, float] | None:
    """(DISTMEAN, DISTSTD) [Mpc] kept from the FITS header in an `LvcSkymapHdf5` copy
    (its meta, see `llama.science.skymap.write_hdf5`), or None when the header had no
    finite pair: then they come from the layers."""
    meta = LvcSkymapHdf5.read_meta(event)  # SkyMapError names a file that is not a copy
    values = [meta.get(k) for k in ("distmean", "diststd")]
    if all(isinstance(v, float) and math.isfinite(v) for v in values):
        return values[0], values[1]
    return None


def _use_gracedb(event: Event) -> str | None:
    """GraceDB base URL when the event is ONLINE and one is configured, else None."""
    from llama.config import service_url

    if not event.flags.is_true("ONLINE"):
        return None
    return service_url("gracedb")


def _online_time_limit(cls, event: Event) -> float | None:
    """`FileHandler.time_limit` of the handlers that ask GraceDB only when ONLINE: none
    offline, where they read skymap_info.json alone."""
    return cls.TIMEOUT_S if _use_gracedb(event) else None


def _snr_of(gevent: Mapping[str, Any]) -> float | None:
    extra = gevent.get("extra_attributes") or {}
    for group in ("CoincInspiral", "MultiBurst"):
        attrs = extra.get(group)
        if isinstance(attrs, Mapping) and attrs.get("snr") is not None:
            return float(attrs["snr"])
    return None


class LVCGraceDbEventData(FileHandler):
    """Preferred-event data: ``{graceid, preferred_event, snr, instruments, far,
    offline, source}``.

    With ONLINE=true and ``LLAMA_GRACEDB_URL`` set, from GraceDB (the superevent, then
    its preferred event; ``source: "gracedb"``); otherwise from ``skymap_info.json``
    (``snr``, ``instruments``, ``far``, ``offline``; ``source: "skymap_info"``).
    Works without a network, so it is not a service handler for veto purposes.
    """

    FILENAME = "lvc_gracedb_event_data.json"
    DEPENDENCIES = (SkymapInfo,)
    RETRIES = 1  # on top of get_json's own retries of transient HTTP failures
    TIMEOUT_S = 120.0
    time_limit = classmethod(_online_time_limit)

    def generate(self, out: Path) -> None:
        info = read_skymap_info(self.event)
        base = _use_gracedb(self.event)
        data = self._from_gracedb(base, info) if base else self._from_info(info)
        write_json(out, data)

    @staticmethod
    def _from_gracedb(base: str, info: Mapping[str, Any]) -> dict[str, Any]:
        from llama.services import get_json, join_url

        graceid = info["graceid"]
        superevent = get_json(join_url(base, "superevents", graceid, ""))
        preferred = superevent.get("preferred_event")
        if not preferred:
            raise ValueError(f"GraceDB superevent {graceid} has no preferred_event")
        gevent = get_json(join_url(base, "events", preferred, ""))
        snr = _snr_of(gevent)
        if snr is None:
            raise ValueError(
                f"GraceDB event {preferred} carries no SNR (extra_attributes.CoincInspiral"
                ".snr or MultiBurst.snr)"
            )
        far = gevent.get("far", superevent.get("far"))
        return {
            "graceid": graceid,
            "preferred_event": preferred,
            "snr": snr,
            "instruments": _instrument_list(gevent.get("instruments") or []),
            "far": None if far is None else float(far),
            "offline": bool(gevent.get("offline", False)),
            "source": "gracedb",
        }

    def _from_info(self, info: Mapping[str, Any]) -> dict[str, Any]:
        if info.get("snr") is None:
            raise SkymapInfoError(
                f"{self.event.eventid}: skymap_info.json has no 'snr' and GraceDB is not "
                "used (ONLINE=false or LLAMA_GRACEDB_URL unset); add snr (and "
                f"instruments, far) to skymap_info.json or supply {self.FILENAME} with --get"
            )
        return {
            "graceid": info["graceid"],
            "preferred_event": info.get("preferred_event"),
            "snr": info["snr"],
            "instruments": info.get("instruments") or [],
            "far": info.get("far"),
            "offline": bool(info.get("offline", False)),
            "source": "skymap_info",
        }

    @classmethod
    def record(cls, event: Event) -> dict[str, Any]:
        import json

        d = json.loads(event.read_bytes(cls.FILENAME))
        return {"snr": d["snr"], "gw_instruments": ",".join(d.get("instruments") or [])}


class PAstro(FileHandler):
    """Source-class probabilities BNS, NSBH, BBH, MassGap, Terrestrial.

    With ONLINE=true and ``LLAMA_GRACEDB_URL`` set, GraceDB's ``p_astro.json`` of the
    superevent; otherwise ``skymap_info.json``'s ``p_astro`` (which
    `skymap_info_from_gcn` / `skymap_info_from_lvalert` fill from the alert's
    classification). There is no guessed fallback: without either it fails, naming
    what to supply. Checked by `validate_p_astro`.
    """

    FILENAME = "p_astro.json"
    DEPENDENCIES = (SkymapInfo,)
    RETRIES = 1  # on top of get_json's own retries of transient HTTP failures
    TIMEOUT_S = 120.0
    time_limit = classmethod(_online_time_limit)

    def generate(self, out: Path) -> None:
        info = read_skymap_info(self.event)
        base = _use_gracedb(self.event)
        if base:
            from llama.services import get_json, join_url

            url = join_url(base, "superevents", info["graceid"], "files", "p_astro.json")
            p = validate_p_astro(get_json(url), where=f"GraceDB p_astro.json of {info['graceid']}")
        elif info.get("p_astro") is not None:
            p = validate_p_astro(info["p_astro"], where="skymap_info.json p_astro")
        else:
            raise SkymapInfoError(
                f"{self.event.eventid}: no source classification: skymap_info.json has no "
                "'p_astro' and GraceDB is not used (ONLINE=false or LLAMA_GRACEDB_URL "
                f"unset); supply {self.FILENAME} with --get or add p_astro to skymap_info.json"
            )
        write_json(out, p)

    @classmethod
    def record(cls, event: Event) -> dict[str, Any]:
        import json

        d = json.loads(event.read_bytes(cls.FILENAME))
        return {f"p_{k.lower()}": d.get(k) for k in P_ASTRO_KEYS}
