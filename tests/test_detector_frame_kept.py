"""The detector frame kept per process and GW time (``detector_frame_at``,
``EventModel.frame``): each event gets its own frame's rotation, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from llama.science import detector_frame as DF
from llama.science.odds import EventModel
from llama.science.skymap import SkyMap
from llama.science.times import gps_to_mjd

T_GW = 1_240_215_503.0
T_GW_MJD = float(gps_to_mjd(T_GW))


def _map() -> SkyMap:
    nside = 8
    rng = np.random.default_rng(3)
    p = rng.uniform(0.5, 1.5, 12 * nside**2)
    return SkyMap(probdensity=p / p.sum() / (4 * np.pi / p.size), nside=nside)


def _astrometry(t0, n, seed):
    rng = np.random.default_rng(seed)
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-90, 90, n)
    mjd = t0 + rng.uniform(-500, 500, n) / 86400.0
    return DF.zenith_azimuth_and_frame_astrometry(ra, dec, mjd, t0)[2]


@pytest.mark.parametrize("t0", (58598.3459, 57753.9999))
def test_kept_frame_is_each_events_own(t0):
    """Events at one GW time with different lists (ERFA's astrometry of each, whose
    unset ``phi`` may differ) share one kept frame, whose rotation and angles are
    those of each event's own DetectorFrame, bit for bit; another time gets its own."""
    astroms = [_astrometry(t0, n, seed) for seed, n in enumerate((1, 4, 9))]
    frames = [DF.detector_frame_at(t0, a) for a in astroms]
    assert all(f is frames[0] for f in frames)
    assert DF.detector_frame_at(t0) is frames[0]  # its own astrometry: the same key
    rng = np.random.default_rng(5)
    ra, dec, dt = rng.uniform(0, 360, 50), rng.uniform(-90, 90, 50), rng.uniform(-500, 500, 50)
    for a in astroms:
        own = DF.DetectorFrame(t0, a)
        assert np.array_equal(own.rotation, frames[0].rotation)
        for x, y in zip(own.zenith_azimuth(ra, dec, dt), frames[0].zenith_azimuth(ra, dec, dt), strict=True):  # fmt: skip
            assert np.array_equal(x, y)
    other = DF.detector_frame_at(t0 + 0.5, _astrometry(t0 + 0.5, 3, 9))
    assert other is not frames[0]
    assert not np.array_equal(other.rotation, frames[0].rotation)


def test_pole_zenith_is_the_models_detector_frame_value():
    """The frame's kept pole zenith is what the model's detector_frame gives (0, -90)
    at dt = 0, the double the trials' tilt was taken from."""
    m = EventModel(_map(), 12.0, 150.0, t_gw_mjd=T_GW_MJD)
    zen, _ = m.detector_frame(np.zeros(1), np.full(1, -90.0), np.zeros(1), np.full(1, np.nan), np.full(1, np.nan))  # fmt: skip
    assert m.frame().pole_zenith_deg == float(zen[0])
    assert EventModel(_map(), 12.0, 150.0).frame() is None


def test_azimuth_alone_is_zenith_azimuths():
    """The frame's azimuth alone is zenith_azimuth's, bit for bit (the trials read it
    for neutrinos whose zenith they have)."""
    frame = DF.detector_frame_at(T_GW_MJD)
    rng = np.random.default_rng(11)
    ra, dec = rng.uniform(0, 360, 3000), np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    dt = rng.uniform(-500, 500, 3000)
    dec[:3] = (-90.0, 90.0, 0.0)
    for k in (0, 1, 7, 3000):
        got = frame.azimuth(ra[:k], dec[:k], dt[:k])
        assert np.array_equal(got, frame.zenith_azimuth(ra[:k], dec[:k], dt[:k])[1])
