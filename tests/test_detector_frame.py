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


def _child(code: str, cache_home) -> list[str]:
    """stdout lines of ``code`` run in a fresh interpreter with its own cache home."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    return out.stdout.splitlines()


#: Random directions at random times from 1962 (before the IERS-B table) to 2080 (past
#: every table), in a fresh process: the astropy modules it imported, and the results.
_FRESH = (
    "import sys, numpy as np\n"
    "from llama.science.detector_frame import zenith_azimuth\n"
    "rng = np.random.default_rng(21)\n"
    "ra, dec = rng.uniform(0, 360, 3000), np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))\n"
    "mjd = np.r_[rng.uniform(37000.0, 80000.0, 2990), 57753.99999, 57754.00001, 37665.0, 80000.0, 36000.0, 61000.0, 61500.0, 62000.0, 57000.0, 58000.0]\n"  # noqa: E501
    "zen, az = zenith_azimuth(ra, dec, mjd)\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] == 'astropy'))\n"
    "print(zen.tobytes().hex()); print(az.tobytes().hex())\n"
)


def test_the_cached_table_needs_no_astropy_and_gives_its_numbers(tmp_path):
    """With the arrays' file missing a process reads astropy's table (and keeps the
    arrays); the next one imports no astropy module and gives the same doubles as
    astropy's own table read here, bit for bit, also outside the IERS tables."""
    from astropy.utils import iers

    from llama.science import detector_frame as D

    first = _child(_FRESH, tmp_path)
    assert "astropy.utils.iers" in first[0]  # no file yet: astropy parsed the table
    assert len(list((tmp_path / "llama").glob("earth-orientation-*.npz"))) == 1
    second = _child(_FRESH, tmp_path)
    assert second[0] == "[]", second[0]  # astropy_iers_data (its file names) at most
    assert second[1:] == first[1:]

    rng = np.random.default_rng(21)
    ra, dec = rng.uniform(0, 360, 3000), np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    mjd = np.r_[rng.uniform(37000.0, 80000.0, 2990), 57753.99999, 57754.00001, 37665.0,
                80000.0, 36000.0, 61000.0, 61500.0, 62000.0, 57000.0, 58000.0]  # fmt: skip
    with D._offline_astropy():
        eop = D._EarthOrientation(iers.earth_orientation_table.get())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zen, az = D._observed(ra, dec, D._apco(mjd, eop))
    assert second[1] == zen.tobytes().hex() and second[2] == az.tobytes().hex()


def test_the_arrays_file_is_named_as_from_astropy():
    """The file's key, found without astropy, is the one astropy's own module gives
    (its version, its IERS-A/B file names, sizes and times): it changes with them."""
    import hashlib
    import os

    import astropy
    from astropy.utils import iers

    from llama.science.detector_frame import _stored_arrays_path

    files = (iers.IERS_A_FILE, iers.IERS_B_FILE)
    stats = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    key = hashlib.sha256(repr((astropy.__version__, stats)).encode()).hexdigest()[:16]
    assert _stored_arrays_path().name == f"earth-orientation-{key}.npz"


@pytest.mark.parametrize("t0", (58598.3459, 57753.9999, 80000.25))
def test_one_astrometry_gives_the_angles_and_the_frame_of_separate_calls(t0):
    """The neutrinos' angles and the frame's astrometry from one set of ERFA calls are
    those of separate calls, bit for bit (the frame's rotation included)."""
    from llama.science.detector_frame import zenith_azimuth_and_frame_astrometry

    rng = np.random.default_rng(7)
    ra = rng.uniform(0.0, 360.0, 9)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, 9)))
    mjd = t0 + rng.uniform(-500.0, 500.0, 9) / 86400.0
    zen, az, astrom = zenith_azimuth_and_frame_astrometry(ra, dec, mjd, t0)
    zen0, az0 = zenith_azimuth(ra, dec, mjd)
    assert np.array_equal(zen, zen0) and np.array_equal(az, az0)
    shared, own = DetectorFrame(t0, astrom), DetectorFrame(t0)
    assert np.array_equal(shared.rotation, own.rotation)
    dt = rng.uniform(-500.0, 500.0, 9)
    assert all(np.array_equal(a, b) for a, b in zip(shared.zenith_azimuth(ra, dec, dt), own.zenith_azimuth(ra, dec, dt), strict=True))  # fmt: skip
    empty = zenith_azimuth_and_frame_astrometry([], [], [], t0)
    assert empty[0].shape == (0,) and np.array_equal(
        DetectorFrame(t0, empty[2]).rotation, own.rotation
    )
