"""The detector frame against astropy's own ICRS -> AltAz transform (independent path)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from llama.science import constants as C
from llama.science.detector_frame import DetectorFrame, _offline_astropy, zenith_azimuth

#: MJDs: O3 (2019), the BAYESTAR maps' epoch (2014), a leap second (2016-12-31/2017-01-01)
#: and a date past astropy's bundled Earth-orientation tables (degraded fallback).
TIMES = (58598.3459, 56948.0, 57753.9999, 57754.0001, 80000.25)


def astropy_altaz(ra, dec, mjd):
    """zenith, azimuth [deg] from SkyCoord.transform_to(AltAz), as O3 computed them."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time

    site = EarthLocation(lat=C.ICECUBE_LAT_DEG * u.deg, lon=C.ICECUBE_LON_DEG * u.deg)
    with _offline_astropy():
        frame = AltAz(obstime=Time(mjd, format="mjd", scale="ut1"), location=site, pressure=0)
        local = SkyCoord(ra=ra * u.deg, dec=dec * u.deg).transform_to(frame)
    return 90.0 - local.alt.deg, local.az.deg % 360.0


def _angle_diff(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


@pytest.mark.parametrize("t0", TIMES)
def test_zenith_azimuth_is_astropys_transform(t0):
    rng = np.random.default_rng(int(t0))
    n = 200
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    dec[:2] = (89.999, -89.999)  # near the poles, where azimuth is ill-conditioned
    mjd = t0 + rng.uniform(-500.0, 500.0, n) / 86400.0
    zen, az = zenith_azimuth(ra, dec, mjd)
    zen0, az0 = astropy_altaz(ra, dec, mjd)
    np.testing.assert_allclose(zen, zen0, rtol=0, atol=1e-9)
    # azimuth compared as an angle on the sky: cos(altitude) * d(azimuth)
    across = _angle_diff(az, az0) * np.sin(np.radians(zen0))
    assert across.max() < 1e-9


def test_zenith_azimuth_broadcasts_and_keeps_shape():
    zen, az = zenith_azimuth([[10.0, 20.0], [30.0, 40.0]], -30.0, 58598.3459)
    assert zen.shape == az.shape == (2, 2)
    zen1, az1 = zenith_azimuth(30.0, -30.0, 58598.3459)
    assert zen1.shape == ()
    np.testing.assert_allclose(zen[1, 0], zen1, atol=1e-12)
    assert zenith_azimuth([], [], 58598.3459)[0].shape == (0,)
    # IceCube is 0.0056 deg from the South Pole: zenith ~ 90 deg + dec within ~0.3 deg
    assert abs(float(zen1) - 60.0) < 0.3


def test_detector_frame_matches_transform_over_the_window():
    frame = DetectorFrame(58598.3459)
    rng = np.random.default_rng(3)
    n = 300
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-0.999, 0.999, n)))
    dt = rng.uniform(-500.0, 500.0, n)
    zen, az = frame.zenith_azimuth(ra, dec, dt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zen0, az0 = astropy_altaz(ra, dec, 58598.3459 + dt / 86400.0)
    # the fitted rotation leaves out aberration's direction dependence (~20")
    assert np.abs(zen - zen0).max() < 0.01
    assert (_angle_diff(az, az0) * np.sin(np.radians(zen0))).max() < 0.01


def test_a_table_set_by_the_user_is_the_one_used():
    from astropy.utils import iers

    ra, dec, mjd = np.array([10.0, 200.0]), np.array([20.0, -45.0]), 58598.3459
    with iers.earth_orientation_table.set(iers.IERS_B.open()):
        zen, az = zenith_azimuth(ra, dec, mjd)
        zen0, az0 = astropy_altaz(ra, dec, np.full(2, mjd))
    np.testing.assert_allclose(zen, zen0, rtol=0, atol=1e-9)
    assert (_angle_diff(az, az0) * np.sin(np.radians(zen0))).max() < 1e-9
