"""Time conversions between GPS seconds, MJD (UTC) and ISO 8601 UTC strings.

GW alerts give times as GPS seconds or ISO UTC strings; IceCube neutrino lists use
MJD (UTC). All conversions go through :class:`astropy.time.Time` so leap seconds are
handled in one place.

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

import numpy as np
from astropy.time import Time

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


def iso_to_gps(iso: str) -> float:
    """ISO 8601 UTC string (a trailing ``Z`` is allowed) -> GPS seconds.

    Examples
    --------
    >>> iso_to_gps('2019-04-25T08:18:05Z')
    1240215503.0
    """
    return float(Time(str(iso).rstrip("Z"), format="isot", scale="utc").gps)


def gps_to_mjd(gps):
    """GPS seconds (scalar or array) -> MJD in UTC.

    Examples
    --------
    >>> round(gps_to_mjd(1240215503.0), 6)
    58598.345891
    """
    mjd = Time(np.asarray(gps, dtype=float), format="gps").utc.mjd
    return float(mjd) if np.ndim(mjd) == 0 else np.asarray(mjd)


def mjd_to_gps(mjd):
    """MJD in UTC (scalar or array) -> GPS seconds.

    Examples
    --------
    >>> round(mjd_to_gps(58598.3458912037), 3)
    1240215503.0
    """
    gps = Time(np.asarray(mjd, dtype=float), format="mjd", scale="utc").gps
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
