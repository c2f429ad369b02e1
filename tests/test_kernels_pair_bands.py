"""The pair kernel's band integrals, ``int A1 A2 G1 G2 dOmega`` with the weight A jumping
at a sin(dec) edge, against an independent brute force.

On a uniform map every node's correction is zero, so the kernel's weighted overlap is
the map's density times its control variate's band integral alone
(:func:`kernels.overlap.pairs.pair_band_sum`). With the pair's product centred in a
band of weight 1e-11 and the next band (weight 1) starting 7 product widths ``s12``
away, the part beyond that edge, ~1e-12 of the product's mass, outweighs the near band
by 1e10 (as a(eps_i) a(eps_j) of a southern pair next to the northern sky does); the
band integrals used to stop at ``CAP_L`` = 6.5 widths and returned the near band
alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from polar_sums import gaussian_psf, points_about, unit_vector

from kernels.overlap import ATOL, PSF_GAUSS, prepare_map, psf_pair_overlap_prepared

RHO = 1.0 / (4.0 * math.pi)  # uniform map [sr^-1]
RTOL = 1e-2
ROWS = np.array([[1e-11, 1.0]])  # a(eps) per band: south, north of the edge


def brute_force(n1, s1, n2, s2, z_edge, reach=12.0, n_psi=3000, n_phi=4096):
    """``RHO int A1 A2 G1 G2 dOmega`` by a midpoint sum on a polar grid about the point
    ``normalise(n1 / s1^2 + n2 / s2^2)`` out to ``reach`` widths ``s12`` (beyond, the
    product is below 1e-31 of its peak), A from the band of each point."""
    s12 = s1 * s2 / math.sqrt(s1 * s1 + s2 * s2)
    n = n1 / s1**2 + n2 / s2**2
    n = n / np.linalg.norm(n)
    dpsi = reach * s12 / n_psi
    psi = (np.arange(n_psi) + 0.5) * dpsi
    phi = (np.arange(n_phi) + 0.5) * (2.0 * math.pi / n_phi)
    tot = 0.0
    for k in range(0, n_psi, 250):
        ps = psi[k : k + 250, None]
        x = points_about(n, ps, phi)
        a = np.where(x[..., 2] > z_edge, ROWS[0, 1], ROWS[0, 0]) ** 2
        tot += np.sum(a * gaussian_psf(n1, x, s1) * gaussian_psf(n2, x, s2) * np.sin(ps))
    return RHO * tot * dpsi * (2.0 * math.pi / n_phi)


@pytest.mark.parametrize(
    "dec_deg,s1_deg,s2_deg,sep_deg,reach",
    [
        (-25.0, 2.0, 2.0, 0.0, 7.0),  # coincident: the product a Gaussian of 1.41 deg
        (-30.0, 1.5, 3.0, 6.0, 7.0),  # apart (east-west), unequal widths
        (-20.0, 2.5, 1.0, 3.0, 5.0),  # the edge within CAP_L: the near integrals
    ],
)
def test_band_edge_beyond_the_near_integrals(dec_deg, s1_deg, s2_deg, sep_deg, reach):
    """The pair's weighted overlap on a uniform map with the edge ``reach`` widths
    north of the product's centre: within the kernel's tolerance (rtol of the value plus
    its floor, here below 1e-2 of the value) of the brute force."""
    deg = math.pi / 180.0
    s1, s2 = s1_deg * deg, s2_deg * deg
    ra1, ra2 = 1.0, 1.0 + sep_deg * deg / math.cos(dec_deg * deg)
    dec = dec_deg * deg
    n1, n2 = unit_vector(ra1, dec), unit_vector(ra2, dec)
    s12 = s1 * s2 / math.sqrt(s1 * s1 + s2 * s2)
    c = n1 / s1**2 + n2 / s2**2
    dec_c = math.asin(c[2] / np.linalg.norm(c))
    z_edge = math.sin(dec_c + reach * s12)
    edges = np.array([-1.0, z_edge, 1.0])
    pm = prepare_map(4 + np.arange(12), np.full(12, RHO))
    _, w = psf_pair_overlap_prepared(
        pm, [ra1], [dec], [s1], ROWS, [ra2], [dec], [s2], ROWS, edges, PSF_GAUSS, rtol=RTOL
    )
    b = brute_force(n1, s1, n2, s2, z_edge)
    # the product's mass scale (the kernel's product_mass: its value at the centre
    # times 2 pi s12^2) and the kernel's absolute floor
    cn = c / np.linalg.norm(c)
    mass = float(gaussian_psf(n1, cn, s1) * gaussian_psf(n2, cn, s2)) * 2.0 * math.pi * s12 * s12
    floor = ATOL * RTOL * RHO * ROWS[0, 1] ** 2 * mass
    assert b > 100.0 * floor  # the floor does not decide
    assert b > 1e6 * RHO * ROWS[0, 0] ** 2 * mass  # the far band carries the result
    assert w[0] == pytest.approx(b, rel=RTOL, abs=floor)
