"""Time conversions between GPS seconds, MJD (UTC) and ISO 8601 UTC strings.

GW alerts give times as GPS seconds or ISO UTC strings; IceCube neutrino lists use
MJD (UTC). All conversions are astropy's (:class:`astropy.time.Time`), so leap seconds
are handled in one place; GPS <-> MJD and ISO -> GPS, on every event's path, run
astropy's own steps (its isot parser, `astropy.time.utils.day_frac` and ERFA's UTC <->
TAI) without building Time objects (~0.06-0.15 ms a call instead of ~0.4), the same
doubles bit for bit (tests/test_times.py: across the whole leap-second table).

Examples
--------
>>> from llama.science.times import gps_to_iso, iso_to_gps, gps_to_mjd
>>> gps_to_iso(1000000000.0)
'2011-09-14T01:46:25.000000'
>>> iso_to_gps('2011-09-14T01:46:25')
1000000000.0
>>> round(gps_to_mjd(1000000000.0), 6)
55818.0739
"""

from __future__ import annotations

from functools import lru_cache

import erfa
import numpy as np
from astropy.time import Time
from astropy.time.formats import TimeGPS, TimeISOT
from astropy.time.utils import day_frac

__all__ = [
    "gps_to_iso",
    "iso_to_gps",
    "gps_to_mjd",
    "mjd_to_gps",
    "mjd_to_iso",
    "iso_to_mjd",
    "SECONDS_PER_DAY",
]

#: Seconds in one (UTC) day, for converting MJD offsets to seconds.
SECONDS_PER_DAY = 86400.0


def gps_to_iso(gps: float) -> str:
    """GPS seconds -> ISO 8601 UTC string with microseconds.

    Examples
    --------
    >>> gps_to_iso(1240215503.0)
    '2019-04-25T08:18:05.000000'
    """
    return Time(float(gps), format="gps", precision=6).utc.isot


@lru_cache(maxsize=1024)
def iso_to_gps(iso: str) -> float:
    """ISO 8601 UTC string (a trailing ``Z`` is allowed) -> GPS seconds.

    Kept per string in a process: an event's time is read from its skymap_info.json
    by each handler and from its sky map's DATE-OBS (~0.4 ms each through astropy).
    A bad string raises ValueError each time.

    Examples
    --------
    >>> iso_to_gps('2019-04-25T08:18:05Z')
    1240215503.0
    """
    text = str(iso).rstrip("Z")
    try:
        # Time(text, format="isot", scale="utc").gps, step by step: the format class
        # parses the string (its C parser, as Time's), then UTC -> TAI, TimeGPS.to_value
        parsed = TimeISOT(np.array(text), None, "utc", 3, "*", "*")
    except Exception:  # noqa: BLE001 - Time says what is wrong with the string
        return float(Time(text, format="isot", scale="utc").gps)
    return float(_utc_jd_to_gps(parsed.jd1, parsed.jd2))


def _utc_jd_to_gps(jd1, jd2):
    """GPS seconds of UTC (jd1, jd2) as astropy's ``Time(...).gps`` computes them."""
    jd1_epoch, jd2_epoch, seconds_per_day = _gps_epoch()
    jd1, jd2 = day_frac(*erfa.utctai(jd1, jd2))
    return (jd1 - jd1_epoch) * seconds_per_day + (jd2 - jd2_epoch) * seconds_per_day


@lru_cache(maxsize=1)
def _gps_epoch() -> tuple[float, float, float]:
    """(jd1, jd2) of the GPS epoch (TAI) as astropy's ``TimeGPS`` holds it, and its
    days -> seconds factor; made as ``TimeGPS._epoch`` is. Converting the epoch to UTC
    here makes astropy bring ERFA's leap-second table up to date, as its first UTC
    conversion in a process does."""
    epoch = Time(
        TimeGPS.epoch_val,
        TimeGPS.epoch_val2,
        scale=TimeGPS.epoch_scale,
        format=TimeGPS.epoch_format,
    )
    _ = epoch.utc
    return float(epoch.jd1), float(epoch.jd2), 1.0 / TimeGPS.unit


def _finite(values) -> np.ndarray | None:
    """``values`` as float64, or None when one is not finite (astropy then answers)."""
    v = np.asarray(values, dtype=float)
    return v if np.isfinite(v).all() else None


def gps_to_mjd(gps):
    """GPS seconds (scalar or array) -> MJD in UTC.

    Examples
    --------
    >>> round(gps_to_mjd(1240215503.0), 6)
    58598.345891
    """
    v = _finite(gps)
    if v is None:
        mjd = Time(np.asarray(gps, dtype=float), format="gps").utc.mjd
    else:
        # Time(v, format="gps").utc.mjd, step by step: TimeGPS.set_jds, TAI -> UTC,
        # TimeMJD.to_value
        jd1_epoch, jd2_epoch, seconds_per_day = _gps_epoch()
        day, frac = day_frac(v, np.array(0.0), divisor=seconds_per_day)
        jd1, jd2 = jd1_epoch + day, jd2_epoch + frac
        whole = np.round(jd2)
        jd1, jd2 = day_frac(*erfa.taiutc(jd1 + whole, jd2 - whole))
        mjd = (jd1 - erfa.DJM0) + jd2
    return float(mjd) if np.ndim(mjd) == 0 else np.asarray(mjd)


def mjd_to_gps(mjd):
    """MJD in UTC (scalar or array) -> GPS seconds.

    Examples
    --------
    >>> round(mjd_to_gps(58598.3458912037), 3)
    1240215503.0
    """
    v = _finite(mjd)
    if v is None:
        gps = Time(np.asarray(mjd, dtype=float), format="mjd", scale="utc").gps
    else:
        # Time(v, format="mjd", scale="utc").gps, step by step: TimeMJD.set_jds,
        # UTC -> TAI, TimeGPS.to_value
        jd1, jd2 = day_frac(v, np.array(0.0))
        gps = _utc_jd_to_gps(*day_frac(jd1 + erfa.DJM0, jd2))
    return float(gps) if np.ndim(gps) == 0 else np.asarray(gps)


def mjd_to_iso(mjd: float) -> str:
    """MJD in UTC -> ISO 8601 UTC string with microseconds.

    Examples
    --------
    >>> mjd_to_iso(58598.0)
    '2019-04-25T00:00:00.000000'
    """
    return Time(float(mjd), format="mjd", scale="utc", precision=6).isot


def iso_to_mjd(iso: str) -> float:
    """ISO 8601 UTC string -> MJD in UTC.

    Examples
    --------
    >>> iso_to_mjd('2019-04-25T12:00:00')
    58598.5
    """
    return float(Time(str(iso).rstrip("Z"), format="isot", scale="utc").mjd)
