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
