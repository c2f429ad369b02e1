"""Gravitational-wave side: alert inputs, the sky map and its derived products."""

from __future__ import annotations

from llama.handler import FileHandler


class SkymapInfo(FileHandler):
    """Event summary (input): graceid, event_time_iso, notice_time_iso, far [Hz],
    pipeline, instruments, skymap_filename, alert_type, optional skymap_url."""

    FILENAME = "skymap_info.json"


class LvcGcnXml(FileHandler):
    """GCN VOEvent of the GW alert (input)."""

    FILENAME = "lvc_gcn.xml"


class LvcRetractionXml(FileHandler):
    """A retraction notice (input): its presence vetoes the event."""

    FILENAME = "lvc_retraction.xml"


class LVAlertJSON(FileHandler):
    """An LVAlert / IGWN alert JSON message (input)."""

    FILENAME = "lvalert.json"


class Advok(FileHandler):
    """Advocate sign-off record (input)."""

    FILENAME = "advok.json"


class LVAlertAdvok(FileHandler):
    """Advocate sign-off extracted from an LVAlert message."""

    FILENAME = "lvalert_advok.json"
    DEPENDENCIES = (LVAlertJSON,)


class LvcSkymapFits(FileHandler):
    """The GW sky map, fetched from ``skymap_url`` (file, HTTP or S3) or supplied."""

    FILENAME = "lvc_skymap.fits"
    DEPENDENCIES = (SkymapInfo,)


class LvcSkymapHdf5(FileHandler):
    """Internal fast-loading copy of the sky map (multi-order kept multi-order)."""

    FILENAME = "lvc_skymap.hdf5"
    DEPENDENCIES = (LvcSkymapFits,)


class LvcDistancesJson(FileHandler):
    """distmean and diststd [Mpc] of the sky map."""

    FILENAME = "lvc_skymap_distances.json"
    DEPENDENCIES = (LvcSkymapFits,)


class LVCGraceDbEventData(FileHandler):
    """Preferred-event data (snr, instruments, far, offline flag)."""

    FILENAME = "lvc_gracedb_event_data.json"
    DEPENDENCIES = (SkymapInfo,)


class PAstro(FileHandler):
    """Source-class probabilities BNS, NSBH, BBH, MassGap, Terrestrial."""

    FILENAME = "p_astro.json"
    DEPENDENCIES = (SkymapInfo,)
