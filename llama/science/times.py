"""Time conversions between GPS seconds, MJD (UTC) and ISO 8601 UTC strings.

GW alerts give times as GPS seconds or ISO UTC strings; IceCube neutrino lists use
MJD (UTC). Every conversion gives astropy's numbers (:class:`astropy.time.Time`) bit
for bit, made with astropy's own steps on plain doubles without importing astropy
(0.3-0.4 s of every command's start): its fast ISO parser (fixed-width
``YYYY-MM-DD[THH:MM[:SS[.fff]]]``), its exact two-double arithmetic (:func:`day_frac`),
ERFA's calendar <-> JD and UTC <-> TAI, and astropy's leap-second table update
(:func:`_leap_seconds_current`). Strings the fast parser does not take and values that
are not finite go to astropy itself, which answers or says what is wrong
(tests/test_times.py compares with astropy across the whole leap-second table).

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

import math
import re
from datetime import UTC, datetime
from functools import lru_cache

import erfa
import numpy as np

__all__ = [
    "gps_to_iso",
    "iso_to_gps",
    "gps_to_mjd",
    "mjd_to_gps",
    "mjd_to_iso",
    "iso_to_mjd",
    "normalise_iso",
    "now_gps",
    "day_frac",
    "SECONDS_PER_DAY",
]

#: Seconds in one (UTC) day, for converting MJD offsets to seconds.
SECONDS_PER_DAY = 86400.0

#: What astropy's fast C parser of the ``isot`` format takes: fixed-width fields,
#: the time optional after the date and the seconds after the minutes.
_ISOT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]*))?)?)?"
)


# --- astropy's exact arithmetic (astropy.time.utils), on float64 -----------------------


def _two_sum(a, b):
    """a + b as the rounded sum and its exact error (Shewchuk 1997)."""
    x = a + b
    eb = x - a
    ea = x - eb
    return x, (a - ea) + (b - eb)


def _split(a):
    c = 134217729.0 * a  # 2**27 + 1
    high = c - (c - a)
    return high, a - high


def _two_product(a, b):
    """a * b as the rounded product and its exact error (Shewchuk 1997)."""
    x = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    y = x - ah * bh
    y -= al * bh
    y -= ah * bl
    return x, al * bl - y


def day_frac(val1, val2, divisor=None):
    """val1 + val2 (divided by ``divisor``) as an integer day and a fraction in
    [-0.5, 0.5], exactly: astropy's ``astropy.time.utils.day_frac``, step for step,
    so that Time's (jd1, jd2) come out the same doubles.

    Examples
    --------
    >>> [float(v) for v in day_frac(2451545.0, 0.75)]
    [2451546.0, -0.25]
    """
    val1 = np.asarray(val1, dtype=np.float64)
    val2 = np.asarray(val2, dtype=np.float64)
    sum12, err12 = _two_sum(val1, val2)
    if divisor is not None:
        q1 = sum12 / divisor
        p1, p2 = _two_product(q1, divisor)
        d1, d2 = _two_sum(sum12, -p1)
        d2 += err12
        d2 -= p2
        q2 = (d1 + d2) / divisor
        sum12, err12 = _two_sum(q1, q2)
    day = np.round(sum12)
    # a fraction of exactly +-0.5 may have been rounded the wrong way: its error decides
    frac, check = _two_sum(sum12 - day, err12)
    day += np.where(frac * np.sign(check) != 0.5, np.round(frac), np.round(frac + 2 * check))
    frac = sum12 - day
    frac += err12
    return day, frac


def _rint(x: float) -> float:
    """np.round of a finite double: to the nearest integer, ties to even, and a zero
    keeps the sign of ``x`` (round(-0.4) is -0.0)."""
    return math.copysign(float(round(x)), x)


def _day_frac_float(val1: float, val2: float, divisor: float | None = None):
    """`day_frac` of finite Python floats: the same steps on floats, the same doubles.

    An event converts a handful of single times; each NumPy step on a 0-d array costs
    ~1 us, ~30 times a float's.
    """
    sum12, err12 = _two_sum(val1, val2)
    if divisor is not None:
        q1 = sum12 / divisor
        p1, p2 = _two_product(q1, divisor)
        d1, d2 = _two_sum(sum12, -p1)
        d2 += err12
        d2 -= p2
        q2 = (d1 + d2) / divisor
        sum12, err12 = _two_sum(q1, q2)
    day = _rint(sum12)
    frac, check = _two_sum(sum12 - day, err12)
    sign = float((check > 0.0) - (check < 0.0))
    day += _rint(frac) if frac * sign != 0.5 else _rint(frac + 2 * check)
    frac = sum12 - day
    frac += err12
    return day, frac


def _erfa(name: str, *args):
    """ERFA's ufunc ``name`` on scalars, its results as floats (the status dropped):
    pyerfa's wrapper, which raises or warns on a status, runs the call again only
    where one is set (its own check of the status cost ~4 us a call)."""
    *results, status = getattr(erfa.ufunc, name)(*args)
    if status:
        results = getattr(erfa, name)(*args)
    return [float(r) for r in results]


# --- leap seconds ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _leap_seconds_current() -> None:
    """Bring ERFA's leap-second table up to date as astropy does before its first UTC
    conversion in a process (``astropy.time.core.update_leap_seconds``): kept as it is
    if it expires more than 150 days from today, else extended with the first table
    that does, here the IERS ``Leap_Second.dat`` of the astropy-iers-data package.
    When that one is stale too, astropy's own update runs (its system and online
    tables)."""
    good_enough = np.datetime64(datetime.now(UTC).date()) + np.timedelta64(150, "D")
    if np.datetime64(erfa.leap_seconds.expires.date()) > good_enough:
        return
    table, expires = _iers_leap_second_file()
    if table is not None and np.datetime64(expires.date()) > good_enough:
        erfa.leap_seconds.update(table)  # its expiry too, as astropy's table carries it
        return
    from astropy.time.core import update_leap_seconds

    update_leap_seconds()


class _LeapSecondTable(np.ndarray):
    """ERFA's leap-second rows with the ``expires`` date `erfa.leap_seconds.update` reads."""

    expires: datetime | None = None


def _iers_leap_second_file():
    """(year, month, TAI - UTC) rows of astropy-iers-data's ``Leap_Second.dat`` as
    ERFA's table dtype, and the date the file expires; (None, None) when missing or
    not understood. Found without importing astropy."""
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("astropy_iers_data")
        path = Path(spec.origin).parent / "data" / "Leap_Second.dat"
        rows, expires = [], None
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                if "File expires on" in line:
                    text = line.split("File expires on", 1)[1].strip()
                    expires = datetime.strptime(text, "%d %B %Y")
            elif line.strip():
                _, _, month, year, tai_utc = line.split()
                rows.append((int(year), int(month), float(tai_utc)))
        if not rows or expires is None:
            return None, None
        table = np.array(rows, dtype=erfa.dt_eraLEAPSECOND).view(_LeapSecondTable)
        table.expires = expires
        return table, expires
    except (AttributeError, TypeError, OSError, ValueError):
        return None, None


# --- GPS <-> UTC (jd1, jd2) ---------------------------------------------------------------


@lru_cache(maxsize=1)
def _gps_epoch() -> tuple[float, float, float]:
    """(jd1, jd2) of the GPS epoch, 1980-01-06 00:00:19 TAI, as astropy's ``TimeGPS``
    holds it (parsed, then ERFA's dtf2d and `day_frac`), and its days -> seconds
    factor (``1 / TimeGPS.unit``, 86400 recovered exactly from 1 / 86400)."""
    jd1, jd2 = day_frac(*erfa.dtf2d(b"TAI", 1980, 1, 6, 0, 0, 19.0))
    return float(jd1), float(jd2), 1.0 / (1.0 / erfa.DAYSEC)


def _gps_to_utc_jd(gps: np.ndarray):
    """UTC (jd1, jd2) of finite GPS seconds: ``TimeGPS.set_jds``, then TAI -> UTC."""
    _leap_seconds_current()
    jd1_epoch, jd2_epoch, seconds_per_day = _gps_epoch()
    day, frac = day_frac(gps, 0.0, divisor=seconds_per_day)
    jd1, jd2 = jd1_epoch + day, jd2_epoch + frac
    whole = np.round(jd2)
    return day_frac(*erfa.taiutc(jd1 + whole, jd2 - whole))


def _gps_to_utc_jd_float(gps: float) -> tuple[float, float]:
    """`_gps_to_utc_jd` of one finite time, on floats."""
    _leap_seconds_current()
    jd1_epoch, jd2_epoch, seconds_per_day = _gps_epoch()
    day, frac = _day_frac_float(gps, 0.0, seconds_per_day)
    jd1, jd2 = jd1_epoch + day, jd2_epoch + frac
    whole = _rint(jd2)
    return _day_frac_float(*_erfa("taiutc", jd1 + whole, jd2 - whole))


def _utc_jd_to_gps(jd1, jd2):
    """GPS seconds of UTC (jd1, jd2): UTC -> TAI, then ``TimeGPS.to_value``."""
    _leap_seconds_current()
    jd1_epoch, jd2_epoch, seconds_per_day = _gps_epoch()
    jd1, jd2 = day_frac(*erfa.utctai(jd1, jd2))
    return (jd1 - jd1_epoch) * seconds_per_day + (jd2 - jd2_epoch) * seconds_per_day


def _utc_jd_to_gps_float(jd1: float, jd2: float) -> float:
    """`_utc_jd_to_gps` of one time, on floats."""
    _leap_seconds_current()
    jd1_epoch, jd2_epoch, seconds_per_day = _gps_epoch()
    jd1, jd2 = _day_frac_float(*_erfa("utctai", jd1, jd2))
    return (jd1 - jd1_epoch) * seconds_per_day + (jd2 - jd2_epoch) * seconds_per_day


# --- ISO strings ----------------------------------------------------------------------------


def _iso_to_utc_jd(iso: str):
    """UTC (jd1, jd2) of an ISO string as astropy's ``Time(iso, format="isot",
    scale="utc")``: its fast parser's fields (the fraction of a second summed digit by
    digit, as its C code does), ERFA's dtf2d, `day_frac`. None when that parser
    would not take the string."""
    match = _ISOT.fullmatch(iso)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    frac, mult = 0.0, 0.1
    for digit in fraction or "":
        frac += int(digit) * mult
        mult /= 10.0
    seconds = float(int(second or 0)) + frac
    _leap_seconds_current()
    jd = _erfa("dtf2d", b"UTC", int(year), int(month), int(day), int(hour or 0), int(minute or 0), seconds)  # fmt: skip
    return _day_frac_float(*jd)


def _utc_jd_to_iso(jd1, jd2) -> str:
    """``Time(...).isot`` with precision 6 of UTC (jd1, jd2): ERFA's d2dtf (which
    writes a leap second as :60) in astropy's format."""
    _leap_seconds_current()
    year, month, day, hmsf = erfa.d2dtf(b"UTC", 6, jd1, jd2)
    h, m, s, f = (int(hmsf[k]) for k in "hmsf")
    return f"{int(year):d}-{int(month):02d}-{int(day):02d}T{h:02d}:{m:02d}:{s:02d}.{f:06d}"


def _astropy_time(*args, **kwargs):
    """astropy's Time, for what the steps here do not take (it answers or raises)."""
    from astropy.time import Time

    return Time(*args, **kwargs)


def _iso_text(iso) -> str:
    return str(iso).rstrip("Z")


def gps_to_iso(gps: float) -> str:
    """GPS seconds -> ISO 8601 UTC string with microseconds.

    Examples
    --------
    >>> gps_to_iso(1240215503.0)
    '2019-04-25T08:18:05.000000'
    """
    v = _finite(float(gps))
    if v is None:
        return _astropy_time(float(gps), format="gps", precision=6).utc.isot
    return _utc_jd_to_iso(*_gps_to_utc_jd(v))


@lru_cache(maxsize=1024)
def iso_to_gps(iso: str) -> float:
    """ISO 8601 UTC string (a trailing ``Z`` is allowed) -> GPS seconds.

    Kept per string in a process: an event's time is read from its skymap_info.json
    by each handler and from its sky map's DATE-OBS. A bad string raises ValueError
    (astropy's) each time.

    Examples
    --------
    >>> iso_to_gps('2019-04-25T08:18:05Z')
    1240215503.0
    """
    text = _iso_text(iso)
    jd = _iso_to_utc_jd(text)
    if jd is None:
        return float(_astropy_time(text, format="isot", scale="utc").gps)
    return _utc_jd_to_gps_float(*jd)


def normalise_iso(iso: str) -> str:
    """An ISO 8601 UTC string (a trailing ``Z`` is allowed) rewritten as astropy writes
    it, with microseconds (``Time(iso, format="isot", precision=6).isot``).

    Examples
    --------
    >>> normalise_iso('2019-04-25T08:18:05Z')
    '2019-04-25T08:18:05.000000'
    """
    text = _iso_text(iso)
    jd = _iso_to_utc_jd(text)
    if jd is None:
        return str(_astropy_time(text, format="isot", scale="utc", precision=6).isot)
    return _utc_jd_to_iso(*jd)


def now_gps() -> float:
    """The current time in GPS seconds, as astropy's ``Time.now().gps`` takes it
    (``datetime.now`` in UTC, to the microsecond)."""
    now = datetime.now(UTC)
    seconds = now.second + now.microsecond / 1e6
    _leap_seconds_current()
    jd = erfa.dtf2d(b"UTC", now.year, now.month, now.day, now.hour, now.minute, seconds)
    return float(_utc_jd_to_gps(*day_frac(*jd)))


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
    if np.ndim(gps) == 0:
        g = float(np.asarray(gps, dtype=float))
        if math.isfinite(g):  # Time(g, format="gps").utc.mjd, on floats
            jd1, jd2 = _gps_to_utc_jd_float(g)
            return (jd1 - erfa.DJM0) + jd2
    v = _finite(gps)
    if v is None:
        mjd = _astropy_time(np.asarray(gps, dtype=float), format="gps").utc.mjd
    else:
        # Time(v, format="gps").utc.mjd: TimeMJD.to_value of the UTC (jd1, jd2)
        jd1, jd2 = _gps_to_utc_jd(v)
        mjd = (jd1 - erfa.DJM0) + jd2
    return float(mjd) if np.ndim(mjd) == 0 else np.asarray(mjd)


def _mjd_to_utc_jd(mjd: np.ndarray):
    """UTC (jd1, jd2) of MJD (UTC) values, as ``TimeMJD.set_jds``."""
    jd1, jd2 = day_frac(mjd, 0.0)
    return day_frac(jd1 + erfa.DJM0, jd2)


def mjd_to_gps(mjd):
    """MJD in UTC (scalar or array) -> GPS seconds.

    Examples
    --------
    >>> round(mjd_to_gps(58598.3458912037), 3)
    1240215503.0
    """
    v = _finite(mjd)
    if v is None:
        gps = _astropy_time(np.asarray(mjd, dtype=float), format="mjd", scale="utc").gps
    elif v.size <= _FEW:  # an event's neutrinos: each time on floats
        gps = np.array([_mjd_to_gps_float(m) for m in v.ravel().tolist()]).reshape(v.shape)
    else:
        gps = _utc_jd_to_gps(*_mjd_to_utc_jd(v))
    return float(gps) if np.ndim(gps) == 0 else np.asarray(gps)


#: Up to this many times are converted one by one on floats (~5 us each), more on
#: arrays (~80 us a call, ~0.1 us a time).
_FEW = 16


def _mjd_to_gps_float(mjd: float) -> float:
    """`mjd_to_gps` of one finite time, on floats (`_mjd_to_utc_jd`'s steps)."""
    jd1, jd2 = _day_frac_float(mjd, 0.0)
    return _utc_jd_to_gps_float(*_day_frac_float(jd1 + erfa.DJM0, jd2))


def mjd_to_iso(mjd: float) -> str:
    """MJD in UTC -> ISO 8601 UTC string with microseconds.

    Examples
    --------
    >>> mjd_to_iso(58598.0)
    '2019-04-25T00:00:00.000000'
    """
    v = _finite(float(mjd))
    if v is None:
        return _astropy_time(float(mjd), format="mjd", scale="utc", precision=6).isot
    return _utc_jd_to_iso(*_mjd_to_utc_jd(v))


def iso_to_mjd(iso: str) -> float:
    """ISO 8601 UTC string -> MJD in UTC.

    Examples
    --------
    >>> iso_to_mjd('2019-04-25T12:00:00')
    58598.5
    """
    text = _iso_text(iso)
    jd = _iso_to_utc_jd(text)
    if jd is None:
        return float(_astropy_time(text, format="isot", scale="utc").mjd)
    jd1, jd2 = jd
    return float((jd1 - erfa.DJM0) + jd2)
