"""Map projections of the celestial sphere for the sky-map drawings.

Two projections, both with north up and right ascension increasing to the left (the
sky seen from inside, as astronomers draw it):

- :class:`Mollweide`, the all-sky panel: equal-area, centred on a fixed RA
  (:data:`ALLSKY_CENTRE_RA_DEG`, 12h, the convention of ligo.skymap's "astro hours
  mollweide"), so every event's all-sky panel has the same graticule.
- :class:`ZenithalEqualArea`, the zoom panel: Lambert's azimuthal equal-area projection
  centred on the credible region, scaled so that one unit is one degree at the centre.

Both are equal-area, so the image of the probability density is honest about how much
probability each part of the picture holds. Each projection maps (RA, Dec) [deg] to
plane coordinates and back, in plain numpy; points the inverse cannot reach are NaN.

Examples
--------
>>> import numpy as np
>>> moll = Mollweide()
>>> x, y = moll.forward(np.array([180.0, 90.0]), np.array([0.0, 0.0]))
>>> (np.round(x, 6) + 0.0).tolist(), (np.round(y, 6) + 0.0).tolist()  # + 0.0: no -0.0
([0.0, 1.414214], [0.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ALLSKY_CENTRE_RA_DEG",
    "Mollweide",
    "ZenithalEqualArea",
    "wrap180",
]

#: Right ascension at the centre of every all-sky panel [deg] (12h).
ALLSKY_CENTRE_RA_DEG = 180.0

_SQRT2 = float(np.sqrt(2.0))


def wrap180(angle_deg) -> np.ndarray:
    """Angles [deg] wrapped into [-180, 180).

    Examples
    --------
    >>> wrap180([190.0, -180.0, 30.0]).tolist()
    [-170.0, -180.0, 30.0]
    """
    return (np.asarray(angle_deg, dtype=float) + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class Mollweide:
    """Mollweide's equal-area all-sky projection; the sky fills the ellipse
    x²/8 + y²/2 <= 1.

    Parameters
    ----------
    ra_centre
        Right ascension at the centre [deg]; RA increases to the left.
    """

    ra_centre: float = ALLSKY_CENTRE_RA_DEG

    #: Half-width and half-height of the ellipse (plane units).
    half_width = 2.0 * _SQRT2
    half_height = _SQRT2

    def forward(self, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
        """Plane coordinates of directions (RA, Dec) [deg].

        The auxiliary angle solves 2θ + sin 2θ = π sin(Dec) by Newton's method, which
        converges in a few steps except at the poles, where θ = ±90° exactly.
        """
        lon = -np.radians(wrap180(np.asarray(ra_deg, dtype=float) - self.ra_centre))
        lat = np.radians(np.asarray(dec_deg, dtype=float))
        target = np.pi * np.sin(lat)
        theta = lat.copy()
        for _ in range(12):
            two = 2.0 * theta
            step = (two + np.sin(two) - target) / (2.0 + 2.0 * np.cos(two) + 1e-300)
            theta = np.clip(theta - step, -np.pi / 2, np.pi / 2)
        x = 2.0 * _SQRT2 / np.pi * lon * np.cos(theta)
        y = _SQRT2 * np.sin(theta)
        return x, y

    def inverse(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(RA, Dec) [deg] of plane points; NaN outside the ellipse."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            theta = np.arcsin(y / _SQRT2)
            lat = np.arcsin((2.0 * theta + np.sin(2.0 * theta)) / np.pi)
            lon = np.pi * x / (2.0 * _SQRT2 * np.cos(theta))
        outside = ~(np.abs(lon) <= np.pi) | ~(np.abs(y) <= _SQRT2)
        ra = (self.ra_centre - np.degrees(lon)) % 360.0
        dec = np.degrees(lat)
        return np.where(outside, np.nan, ra), np.where(outside, np.nan, dec)


@dataclass(frozen=True)
class ZenithalEqualArea:
    """Lambert's azimuthal equal-area projection centred on (ra_centre, dec_centre).

    Plane units are degrees at the centre (the projection's radius is
    2 sin(d/2) in radians for a point at angular distance d, times 180/π).

    Parameters
    ----------
    ra_centre, dec_centre
        The projection centre [deg], drawn at (0, 0) with north up.

    Examples
    --------
    >>> import numpy as np
    >>> zea = ZenithalEqualArea(30.0, 40.0)
    >>> x, y = zea.forward(np.array([30.0]), np.array([41.0]))
    >>> abs(round(float(x[0]), 9)), round(float(y[0]), 4)  # 1 deg north: 1 unit up
    (0.0, 1.0)
    """

    ra_centre: float
    dec_centre: float

    def forward(self, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
        """Plane coordinates of directions (RA, Dec) [deg]; NaN at the antipode."""
        dra = np.radians(np.asarray(ra_deg, dtype=float) - self.ra_centre)
        dec = np.radians(np.asarray(dec_deg, dtype=float))
        dec0 = np.radians(self.dec_centre)
        cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(dra)
        with np.errstate(invalid="ignore", divide="ignore"):
            k = np.sqrt(2.0 / (1.0 + cos_c))
        k = np.where(1.0 + cos_c > 1e-12, k, np.nan)
        x = -k * np.cos(dec) * np.sin(dra)  # minus: RA increases to the left
        y = k * (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(dra))
        return np.degrees(x), np.degrees(y)

    def inverse(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(RA, Dec) [deg] of plane points; NaN beyond the projection's edge."""
        xr = -np.radians(np.asarray(x, dtype=float))
        yr = np.radians(np.asarray(y, dtype=float))
        rho = np.hypot(xr, yr)
        dec0 = np.radians(self.dec_centre)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = 2.0 * np.arcsin(rho / 2.0)
            sin_c, cos_c = np.sin(c), np.cos(c)
            ratio = np.where(rho > 0, yr * sin_c * np.cos(dec0) / rho, 0.0)
            dec = np.arcsin(np.clip(cos_c * np.sin(dec0) + ratio, -1.0, 1.0))
            dra = np.arctan2(xr * sin_c, rho * np.cos(dec0) * cos_c - yr * np.sin(dec0) * sin_c)
        ra = (self.ra_centre + np.degrees(dra)) % 360.0
        dec = np.degrees(dec)
        bad = ~(rho <= 2.0)
        return np.where(bad, np.nan, ra), np.where(bad, np.nan, dec)
