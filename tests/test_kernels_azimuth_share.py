"""The single look's tail bound of a node away from the neutrino: the share of any ring
about the neutrino that a cap (a node's enclosing circle) can hold
(``kernels.overlap.psf.azimuth_share``), against the azimuths of points on the cap's
edge measured directly, and the bound it tightens against the PSF's mass over HEALPix
pixels summed on fine sub-pixels."""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest

from kernels.overlap.common import MAXRAD, SINRAD
from kernels.overlap.psf import azimuth_share
from kernels.plain import plain_python

share = plain_python(azimuth_share)


def chord2(psi):
    """Squared chord of the angle ``psi``."""
    return 2.0 * (1.0 - math.cos(psi))


def edge_azimuths(psi, rad, n=20_000):
    """Azimuths about the north pole (the neutrino) of ``n`` points on the edge of the
    cap of angular radius ``rad`` centred ``psi`` from it at azimuth 0."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    centre = np.array([math.sin(psi), 0.0, math.cos(psi)])
    east = np.array([0.0, 1.0, 0.0])
    north = np.cross(centre, east)
    pts = math.cos(rad) * centre[:, None] + math.sin(rad) * (
        np.cos(t) * east[:, None] + np.sin(t) * north[:, None]
    )
    return np.arctan2(pts[1], pts[0])


@pytest.mark.parametrize(
    "psi, rad",
    [(0.2, 0.05), (0.02, 0.0199), (0.5, 0.01), (1.5, 0.8), (2.5, 0.3), (3.0, 0.1), (0.1, 0.09)],
)
def test_the_share_holds_the_caps_azimuths_and_is_near_their_span(psi, rad):
    span = np.abs(edge_azimuths(psi, rad)).max()  # the cap lies within +- span
    s = share(chord2(psi), psi, rad, math.sin(rad))
    assert s >= span / math.pi
    assert s <= 1.19 * span / math.pi  # the cubic bound of asin: at most 18.2% over


@pytest.mark.parametrize("psi, rad", [(0.05, 0.05), (0.01, 0.2), (0.0, 0.1), (3.1, 0.1)])
def test_a_cap_holding_the_neutrino_or_its_antipode_has_every_azimuth(psi, rad):
    assert share(chord2(psi), psi, rad, math.sin(rad)) == 1.0


@pytest.mark.parametrize("order", [3, 5])
def test_the_tail_bound_holds_the_psfs_mass_over_pixels(order):
    """The Gaussian's mass over each pixel near the neutrino (a sum over its order-11
    sub-pixels) within its bound G(psi_min) x share / peak."""
    sigma = math.radians(1.2)
    peak = 1.0 / (2.0 * math.pi * sigma * sigma)
    nu = hp.ang2vec(0.7, 0.3)
    nside = 1 << order
    pix = hp.query_disc(nside, nu, 8 * sigma, inclusive=True, nest=True)
    fine = 1 << (2 * (11 - order))
    sub = (pix[:, None] * fine + np.arange(fine)).ravel()
    v = np.array(hp.pix2vec(2048, sub, nest=True))
    ang = np.arccos(np.clip(nu @ v, -1.0, 1.0))
    mass = (peak * np.exp(-0.5 * ang**2 / sigma**2)).reshape(len(pix), fine).sum(1)
    mass *= hp.nside2pixarea(2048)
    checked = 0
    for p, m in zip(pix, mass, strict=True):
        c = np.array(hp.pix2vec(nside, p, nest=True))
        psi = math.acos(min(1.0, float(nu @ c)))
        rad = MAXRAD[order]
        g_min = peak * math.exp(-0.5 * max(psi - rad, 0.0) ** 2 / sigma**2)
        s = share(chord2(psi), psi, rad, SINRAD[order])
        assert m <= g_min * s / peak * (1 + 1e-9)
        checked += s < 1.0
    assert checked >= 5  # pixels beside the neutrino, not only the one holding it
