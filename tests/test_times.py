"""Time conversions: GPS <-> MJD without Time objects, the same doubles as astropy's."""

from __future__ import annotations

import warnings

import erfa
import numpy as np
import pytest
from astropy.time import Time

from llama.science.times import (
    gps_to_iso,
    gps_to_mjd,
    iso_to_gps,
    iso_to_mjd,
    mjd_to_gps,
    mjd_to_iso,
)


def astropy_mjd_to_gps(mjd):
    return Time(np.asarray(mjd, dtype=float), format="mjd", scale="utc").gps


def astropy_gps_to_mjd(gps):
    return Time(np.asarray(gps, dtype=float), format="gps").utc.mjd


def leap_second_mjds() -> np.ndarray:
    """MJD (UTC) of each day that starts right after a leap second, 1972 on."""
    table = erfa.leap_seconds.get()
    first_days = [
        erfa.cal2jd(int(y), int(m), 1)[1]
        for y, m in zip(table["year"], table["month"], strict=True)
    ]
    return np.array([d for d in first_days if d >= 41317.0])  # 1972-01-01: leap seconds start


def assert_bits(ours, theirs) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype == np.float64 and ours.shape == theirs.shape
    mismatched = ours.view(np.int64) != theirs.view(np.int64)
    assert not mismatched.any(), (ours[mismatched][:5], theirs[mismatched][:5])


def test_leap_second_table_is_the_one_checked():
    days = leap_second_mjds()
    assert len(days) >= 27 and days[-1] >= 57754.0  # 2017-01-01, the latest so far


def test_mjd_to_gps_is_astropys_at_random_times():
    rng = np.random.default_rng(8)
    mjd = rng.uniform(41317.0, 64000.0, 100_000)  # 1972 to 2034
    with warnings.catch_warnings():  # ERFA's "dubious year" past the table, both ways
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        assert_bits(mjd_to_gps(mjd), astropy_mjd_to_gps(mjd))
    for x in mjd[mjd < 60000][:300]:  # scalars take the same path
        ours = mjd_to_gps(float(x))
        assert isinstance(ours, float) and ours == float(astropy_mjd_to_gps(x))


def test_gps_to_mjd_is_astropys_at_random_times():
    rng = np.random.default_rng(9)
    gps = rng.uniform(0.0, 1.7e9, 100_000)  # 1980 to 2033
    with warnings.catch_warnings():  # ERFA's "dubious year" past the table, both ways
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        assert_bits(gps_to_mjd(gps), astropy_gps_to_mjd(gps))
    for x in gps[gps < 1.4e9][:300]:
        ours = gps_to_mjd(float(x))
        assert isinstance(ours, float) and ours == float(astropy_gps_to_mjd(x))


@pytest.mark.parametrize("day", leap_second_mjds().tolist())
def test_conversions_are_astropys_across_each_leap_second(day):
    """The last minute of each leap-second day (86,401 s long) and the first of the
    next: whole seconds, the leap second itself and the doubles next to them."""
    # MJD: the day's fraction runs over 86,401 s, so probe both 86,400 and 86,401 steps
    seconds = np.r_[np.arange(-60.0, 61.0), np.arange(-2.0, 2.0, 0.001)]
    mjd = np.r_[day + seconds / 86400.0, day + seconds / 86401.0, day - 1.0 / 86401.0]
    mjd = np.r_[mjd, np.nextafter(mjd, np.inf), np.nextafter(mjd, -np.inf)]
    assert_bits(mjd_to_gps(mjd), astropy_mjd_to_gps(mjd))
    # GPS: the same instants, round the inserted second
    gps = float(astropy_mjd_to_gps(day))
    around = gps + np.r_[np.arange(-60.0, 61.0), np.arange(-3.0, 3.0, 0.001)]
    around = np.r_[around, np.nextafter(around, np.inf), np.nextafter(around, -np.inf)]
    assert_bits(gps_to_mjd(around), astropy_gps_to_mjd(around))
    assert gps_to_mjd(gps) == float(astropy_gps_to_mjd(gps))
    assert mjd_to_gps(day) == float(astropy_mjd_to_gps(day))


@pytest.mark.parametrize("day", leap_second_mjds().tolist()[-8:])
def test_single_times_and_few_take_astropys_doubles_at_leap_seconds(day):
    """Scalars and lists of up to 16 times (an event's neutrinos), converted on floats
    one by one, across a leap second: the doubles of astropy's arrays."""
    seconds = np.r_[np.arange(-3.0, 3.0, 0.25), -1.0 / 86401.0 * 86400.0]
    mjd = np.r_[day + seconds / 86400.0, day + seconds / 86401.0]
    mjd = np.r_[mjd, np.nextafter(mjd, np.inf), np.nextafter(mjd, -np.inf)]
    want = astropy_mjd_to_gps(mjd)
    for k in range(0, mjd.size, 16):
        assert_bits(mjd_to_gps(mjd[k : k + 16]), want[k : k + 16])
    assert_bits(mjd_to_gps(mjd[:12].reshape(3, 4)), want[:12].reshape(3, 4))
    gps = want + np.r_[0.0, 0.5, -0.5].repeat(mjd.size // 3 + 1)[: mjd.size]
    theirs = astropy_gps_to_mjd(gps)
    for k in range(0, gps.size, 5):
        assert gps_to_mjd(float(gps[k])) == float(theirs[k])
        iso = gps_to_iso(float(gps[k]))
        assert iso_to_gps(iso) == astropy_iso_to_gps(iso), iso


def test_round_trips_stay_within_a_microsecond():
    rng = np.random.default_rng(10)
    gps = rng.uniform(6e8, 1.4e9, 1000)  # 1999 to 2024: no "dubious year" warnings
    np.testing.assert_allclose(mjd_to_gps(gps_to_mjd(gps)), gps, rtol=0, atol=1e-6)


def test_not_finite_values_fail_as_in_astropy():
    for values in (np.array([np.nan, 58598.0]), np.inf):
        with pytest.raises(ValueError, match="must be finite doubles"):
            mjd_to_gps(values)
        with pytest.raises(ValueError, match="must be finite doubles"):
            gps_to_mjd(values)


def test_shapes_and_types():
    assert isinstance(mjd_to_gps(np.float64(58598.0)), float)
    assert isinstance(gps_to_mjd(1240215503), float)  # an int is a time too
    assert mjd_to_gps(np.zeros((2, 3)) + 58598.0).shape == (2, 3)
    assert gps_to_mjd([1240215503.0]).shape == (1,)
    assert mjd_to_gps("58598") == mjd_to_gps(58598.0)  # as before: numpy's float()


def astropy_iso_to_gps(iso: str) -> float:
    return float(Time(iso.rstrip("Z"), format="isot", scale="utc").gps)


def test_iso_to_gps_is_astropys():
    """Random times to 0-9 decimals, the leap seconds themselves (23:59:60) and the
    seconds around them, with and without a trailing Z."""
    rng = np.random.default_rng(11)
    texts = []
    for mjd in rng.uniform(41317.0, 61000.0, 3000):
        whole = Time(mjd, format="mjd", scale="utc").isot[:19]
        digits = int(rng.integers(0, 10))
        fraction = "" if digits == 0 else "." + "".join(map(str, rng.integers(0, 10, digits)))
        texts.append(whole + fraction)
    for day in leap_second_mjds():
        last = Time(day - 1.0, format="mjd", scale="utc").isot[:10]
        texts += [f"{last}T23:59:59.999999", f"{last}T23:59:60", f"{last}T23:59:60.5",
                  f"{last}T23:59:60.999999999"]  # fmt: skip
        texts.append(Time(day, format="mjd", scale="utc").isot[:10] + "T00:00:00.000001")
    iso_to_gps.cache_clear()
    for text in texts:
        for form in (text, text + "Z"):
            assert iso_to_gps(form) == astropy_iso_to_gps(form), form


def test_iso_conversions_and_their_errors():
    assert iso_to_gps("2019-04-25T08:18:05Z") == iso_to_gps("2019-04-25T08:18:05")
    assert iso_to_gps("2019-04-25T08:18:05.017553") == pytest.approx(1240215503.017553, abs=1e-6)
    assert gps_to_iso(iso_to_gps("2016-12-31T23:59:60.5")) == "2016-12-31T23:59:60.500000"
    assert iso_to_mjd(mjd_to_iso(58598.25)) == 58598.25
    with warnings.catch_warnings():  # ERFA: "time is after end of day", both ways
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        odd = "2019-04-25T08:18:61"  # astropy takes it (with a warning): so do we
        assert iso_to_gps(odd) == astropy_iso_to_gps(odd)
    for bad in ("not a time", "2019-13-01T00:00:00", "2019-04-25 08:18"):
        for _ in range(2):  # a bad string fails each time, also once asked before
            with pytest.raises(ValueError):
                iso_to_gps(bad)
            with pytest.raises(ValueError):
                astropy_iso_to_gps(bad)


def test_day_frac_is_astropys():
    """The exact two-double sum (and quotient) on random and tie-breaking values."""
    from astropy.time.utils import day_frac as astropy_day_frac

    from llama.science.times import day_frac

    rng = np.random.default_rng(12)
    a = np.r_[rng.uniform(-1e9, 1e9, 20_000), np.arange(-4.0, 4.0, 0.5)]
    b = np.r_[rng.uniform(-1.0, 1.0, 20_000) * 10.0 ** rng.integers(-17, 3, 20_000),
              np.full(16, 2.0**-60)]  # fmt: skip
    for divisor in (None, 86400.0, 1.0 / (1.0 / 86400.0)):
        kwargs = {} if divisor is None else {"divisor": divisor}
        for ours, theirs in zip(day_frac(a, b, **kwargs), astropy_day_frac(a, b, **kwargs), strict=True):  # fmt: skip
            assert_bits(ours, theirs)


def test_gps_epoch_is_astropys():
    from astropy.time.formats import TimeGPS

    from llama.science.times import _gps_epoch

    epoch = TimeGPS._epoch if hasattr(TimeGPS, "_epoch") else None
    if epoch is None:
        epoch = Time(TimeGPS.epoch_val, TimeGPS.epoch_val2, scale=TimeGPS.epoch_scale,
                     format=TimeGPS.epoch_format)  # fmt: skip
    assert _gps_epoch() == (epoch.jd1, epoch.jd2, 1.0 / TimeGPS.unit)


def iso_texts(seed: int, n: int) -> list[str]:
    """Random ISO strings (1972-2026) to 0-9 decimals, each leap second (23:59:60)
    and the instants either side of it, and the shorter forms astropy's parser takes."""
    rng = np.random.default_rng(seed)
    texts = []
    for mjd in rng.uniform(41317.0, 61400.0, n):
        whole = Time(mjd, format="mjd", scale="utc").isot[:19]
        digits = int(rng.integers(0, 10))
        fraction = "" if digits == 0 else "." + "".join(map(str, rng.integers(0, 10, digits)))
        texts += [whole + fraction, whole[:16], whole[:10]]
    for day in leap_second_mjds():
        last = Time(day - 1.0, format="mjd", scale="utc").isot[:10]
        texts += [f"{last}T23:59:59.9999995", f"{last}T23:59:60", f"{last}T23:59:60.",
                  f"{last}T23:59:60.9999996", f"{last}T23:59:59.999999"]  # fmt: skip
    return texts


def test_iso_outputs_are_astropys():
    """normalise_iso, iso_to_mjd, gps_to_iso and mjd_to_iso against Time, string for
    string and bit for bit, including each leap second and the rounding next to it."""
    from llama.science.times import normalise_iso

    for text in iso_texts(13, 1000):
        t = Time(text, format="isot", scale="utc", precision=6)
        assert normalise_iso(text + "Z") == t.isot, text
        assert iso_to_mjd(text) == float(t.mjd), text
    rng = np.random.default_rng(14)
    gps = np.r_[rng.uniform(0.0, 1.5e9, 2000), [float(astropy_mjd_to_gps(d)) for d in leap_second_mjds()]]  # fmt: skip
    for g in np.r_[gps, gps - 0.5, gps - 1e-7, gps + 0.9999996]:
        assert gps_to_iso(g) == Time(g, format="gps", precision=6).utc.isot, g
    days = leap_second_mjds()
    for m in np.r_[rng.uniform(41317.0, 61400.0, 2000), days, days - 0.5 / 86401.0, np.nextafter(days, 0)]:  # fmt: skip
        assert mjd_to_iso(m) == Time(m, format="mjd", scale="utc", precision=6).isot, m


def test_now_gps_is_now():
    from llama.science.times import now_gps

    before = float(Time.now().gps)
    ours = now_gps()
    assert before <= ours <= float(Time.now().gps)


def test_an_event_time_needs_no_astropy():
    """In a fresh process the conversions import no astropy, and leave ERFA's
    leap-second table (rows and expiry) as astropy's first UTC conversion does."""
    import subprocess
    import sys

    code = (
        "import sys, erfa\n"
        "from llama.science import times as T\n"
        "v = [T.iso_to_gps('2019-04-25T08:18:05.5Z'), T.gps_to_mjd(1240215503.0),"
        " T.mjd_to_gps(58598.3), T.gps_to_iso(1240215503.25), T.normalise_iso('2019-04-25T08:18'),"
        " T.mjd_to_iso(58598.1), T.iso_to_mjd('2019-04-25')]\n"
        "assert not [m for m in sys.modules if m.startswith('astropy')], 'astropy imported'\n"
        "print(repr(v)); print(erfa.leap_seconds.get().tolist()); print(erfa.leap_seconds.expires)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    values, rows, expires = out.stdout.strip().splitlines()
    t = Time("2019-04-25T08:18:05.5", format="isot", scale="utc")  # astropy's update ran
    assert values == repr([
        float(t.gps), float(astropy_gps_to_mjd(1240215503.0)), float(astropy_mjd_to_gps(58598.3)),
        Time(1240215503.25, format="gps", precision=6).utc.isot,
        Time("2019-04-25T08:18", format="isot", precision=6).isot,
        Time(58598.1, format="mjd", scale="utc", precision=6).isot,
        float(Time("2019-04-25", format="isot", scale="utc").mjd),
    ])  # fmt: skip
    assert rows == str(erfa.leap_seconds.get().tolist())
    assert expires == str(erfa.leap_seconds.expires)


def test_leap_second_file_is_read_as_astropy_reads_it():
    """The rows and expiry taken from astropy-iers-data's Leap_Second.dat without
    astropy are the ones astropy's reader gives."""
    from astropy.utils import iers

    from llama.science.times import _iers_leap_second_file

    table, expires = _iers_leap_second_file()
    theirs = iers.LeapSeconds.from_iers_leap_seconds(iers.IERS_LEAP_SECOND_FILE)
    for column in ("year", "month", "tai_utc"):
        np.testing.assert_array_equal(table[column], np.asarray(theirs[column]))
    assert expires.date().isoformat() == theirs.expires.isot[:10]
    assert table.expires == expires  # what erfa.leap_seconds.update reads
