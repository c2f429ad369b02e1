"""Point-spread functions of a neutrino direction: values, norms and local shape.

``psf_kind`` 0 (``PSF_GAUSS``): O3's 2-D Gaussian ``exp(-psi^2 / 2 sigma^2) / (2 pi
sigma^2)`` [sr^-1]; 1 (``PSF_VMF``): the von Mises-Fisher density with ``kappa = 1 /
sigma^2``, normalised on the sphere. ``psi`` is the angle from the neutrino [rad].
"""

from __future__ import annotations

import math

from .cells import cell_spread
from .common import AREA, MAX_REFINE_ORDER, RESOL, TWO_PI, helper, kernel

#: PSF kinds.
PSF_GAUSS = 0
PSF_VMF = 1
#: asin(s) <= s + (pi / 2 - 1) s^3 on [0, 1] (equal at 1): see :func:`azimuth_share`.
_ASIN_CUBE = 0.5 * math.pi - 1.0


@kernel
def psf_norm(sigma: float, kind: int) -> float:
    """Integral of the PSF over the whole sphere.

    1 for the von Mises-Fisher PSF; for the O3 Gaussian ``(1/sigma^2) int_0^pi
    exp(-psi^2/2 sigma^2) sin(psi) dpsi`` (``1 - sigma^2/3 + ...``, < 1).

    Examples
    --------
    >>> round(psf_norm(0.01, PSF_GAUSS), 8), psf_norm(0.5, PSF_VMF)
    (0.99996667, 1.0)
    """
    if kind == PSF_VMF:
        return 1.0
    s2 = sigma * sigma
    if sigma < 0.3:  # asymptotic series; the cut at psi = pi is below 1e-20 here
        return 1.0 - s2 / 3.0 + s2 * s2 / 15.0 - s2**3 / 105.0 + s2**4 / 945.0
    n = 4000  # Simpson on [0, pi]
    h = math.pi / n
    acc = 0.0
    for k in range(n + 1):
        t = k * h
        f = math.exp(-0.5 * t * t / s2) * math.sin(t)
        wgt = 1.0 if (k == 0 or k == n) else (4.0 if k % 2 == 1 else 2.0)
        acc += wgt * f
    return acc * h / 3.0 / s2


@helper
def psf_peak(sigma: float, kind: int) -> float:
    """PSF value at psi = 0 [sr^-1] (vMF normalisation is stable for huge kappa)."""
    if kind == PSF_VMF:
        kappa = 1.0 / (sigma * sigma)
        return kappa / (TWO_PI * -math.expm1(-2.0 * kappa))
    return 1.0 / (TWO_PI * sigma * sigma)


@helper
def psf_from_chord2(c2: float, sigma: float, peak: float, kind: int) -> float:
    """PSF value [sr^-1] at squared chord ``c2 = |n - x|^2 = 2 (1 - cos psi)``."""
    if kind == PSF_VMF:
        return peak * math.exp(-0.5 * c2 / (sigma * sigma))
    psi = 2.0 * math.asin(min(0.5 * math.sqrt(c2), 1.0))
    return peak * math.exp(-0.5 * psi * psi / (sigma * sigma))


@helper
def psf_at(psi: float, sigma: float, peak: float, kind: int) -> float:
    """PSF value [sr^-1] at angle ``psi`` [rad].

    ``psf_at(psi) / peak`` also bounds the PSF's mass at angles >= ``psi`` over the
    whole sphere (for the Gaussian since ``sin(psi) <= psi``): the tail bound of the
    traversals.
    """
    if kind == PSF_VMF:
        s = math.sin(0.5 * psi)
        return peak * math.exp(-2.0 * s * s / (sigma * sigma))
    return peak * math.exp(-0.5 * psi * psi / (sigma * sigma))


@helper
def azimuth_share(c2: float, psi: float, rad: float, sin_rad: float) -> float:
    """Upper bound of the share of the PSF's mass beyond any angle that falls in a cap of
    angular radius ``rad`` (``sin_rad`` its sine) centred ``psi`` from the neutrino
    (``c2`` the squared chord): the cap lies within azimuths ``+- beta`` about its
    centre's, ``sin beta = sin rad / sin psi``, and the PSF is the same at every
    azimuth, so it holds ``beta / pi`` of any ring about the neutrino; ``beta <= s +
    (pi / 2 - 1) s^3`` (``s = sin beta``; the series of asin has positive terms), so no
    asin. 1 for a cap that holds the neutrino or its antipode."""
    if psi <= rad or psi + rad >= math.pi:
        return 1.0
    s = sin_rad / math.sqrt(c2 * (1.0 - 0.25 * c2))
    if s >= 1.0:  # psi within rounding of rad
        return 1.0
    return s * (1.0 + _ASIN_CUBE * s * s) / math.pi


@helper
def resolved(order: int, psi_min: float, sigma: float, res: float) -> bool:
    """Is a node small enough for the midpoint rule? Finer in the tail, where
    ``d log G / d psi = psi / sigma^2`` grows."""
    if order >= MAX_REFINE_ORDER:
        return True
    return RESOL[order] * max(1.0, 0.5 * psi_min / sigma) <= res * sigma


@helper
def cell_factor(o, x, y, z, vx, vy, vz, c2, psi, sigma, kind):
    """Second-order correction of the midpoint rule for the PSF ``G = exp(f)`` over the
    cell at order ``o`` centred on (x, y, z), ``c2`` and ``psi`` from the neutrino (vx,
    vy, vz): ``1 + tr(H M) / 2`` with ``H = grad f grad f^T + Hess f`` and ``M`` the
    cell's own second moment (:func:`.cells.cell_spread`; HEALPix cells are not
    isotropic). Along ``e_r`` (away from the neutrino) ``H`` is ``f'^2 + f''``, across
    it ``f' cot(psi)``. Lets cells in the PSF tail, where G falls steeply, stay larger
    for the same accuracy."""
    cosp = 1.0 - 0.5 * c2
    dx, dy, dz = x * cosp - vx, y * cosp - vy, z * cosp - vz  # e_r sin(psi)
    m_r, m_tr = cell_spread(o, x, y, z, dx, dy, dz)  # m_r = e_r^T M e_r sin^2(psi)
    s2 = sigma * sigma
    sin2 = dx * dx + dy * dy + dz * dz
    if kind == PSF_VMF:  # f = (cos psi - 1) / s2: f'^2 + f'' - f' cot = sin^2 / s2^2
        return 1.0 + 0.5 * (m_r / (s2 * s2) - cosp * m_tr / s2)
    # Gauss, f = -psi^2 / 2 s2: f'^2 + f'' - f' cot = (psi^2 / s2 - 1 + psi cot psi) / s2
    if sin2 > 1e-8:
        q = psi * cosp / math.sqrt(sin2)  # psi cot psi
        return 1.0 + 0.5 * ((psi * psi / s2 - 1.0 + q) * m_r / sin2 - q * m_tr) / s2
    # next to the neutrino: psi cot psi = 1 - psi^2 / 3 + ..., psi^2 = sin^2 + ...
    return 1.0 + 0.5 * ((1.0 / s2 - 1.0 / 3.0) * m_r - m_tr) / s2


@helper
def cell_midpoint(o, x, y, z, vx, vy, vz, c2, psi, sigma, peak, kind):
    """The PSF's mass over the cell at order ``o`` centred on (x, y, z) by the midpoint
    rule with :func:`cell_factor`, ``c2`` and ``psi`` from the neutrino (vx, vy, vz).
    The Gaussian's value at the centre comes from ``psi`` (:func:`psf_from_chord2`'s
    own steps, bit for bit, without its second asin)."""
    if kind == PSF_GAUSS:
        g = psf_at(psi, sigma, peak, kind)
    else:
        g = psf_from_chord2(c2, sigma, peak, kind)
    return g * AREA[o] * cell_factor(o, x, y, z, vx, vy, vz, c2, psi, sigma, kind)


@helper
def log_psf_slope_z(x, y, z, c2, psi, vz, sigma, kind):
    """``d log G / d sin(dec)`` along the meridian at (x, y, z) (``c2``, ``psi`` from
    the neutrino, ``vz`` its sin dec): ``f'(psi) (e_r . north) / cos(dec)`` with
    ``e_r . north = (z cos psi - vz) / (cos(dec) sin psi)``; 0 at the poles."""
    w2 = x * x + y * y
    if w2 < 1e-24:
        return 0.0
    cosp = 1.0 - 0.5 * c2
    if kind == PSF_VMF:  # f' / sin psi = -1 / s2
        q = 1.0
    else:  # Gauss: f' / sin psi = -(psi / sin psi) / s2
        sinp = math.sqrt(max(c2 * (1.0 - 0.25 * c2), 0.0))
        q = psi / sinp if sinp > 1e-12 else 1.0
    return -q * (z * cosp - vz) / (sigma * sigma * w2)


@helper
def psf_local(x, y, z, c2, vx, vy, vz, sigma, peak, kind):
    """Local shape of the PSF at a node centre ``x0`` (squared chord ``c2`` from the
    neutrino): ``(h, h', h'' - hc, hc, e_r)`` with ``h(psi)`` the profile, ``hc = h'
    cot(psi)`` and ``e_r`` the unit tangent at ``x0`` pointing away from the neutrino.

    On the tangent plane at ``x0`` (orthographic ``u = x - (x0.x) x0``) the PSF is
    ``h + h' e_r.u + 1/2 [(h'' - hc) (e_r.u)^2 + hc |u|^2] + O(u^3)`` (the Hessian of
    a radial function on the sphere); ``e_r.u = e_r.x`` and ``|u|^2 = |x|^2 - (x0.x)^2``.
    """
    cosp = 1.0 - 0.5 * c2
    dx, dy, dz = x * cosp - vx, y * cosp - vy, z * cosp - vz  # (away from n) * sin psi
    sinp = math.sqrt(dx * dx + dy * dy + dz * dz)
    s2 = sigma * sigma
    if kind == PSF_VMF:
        h0 = peak * math.exp(-0.5 * c2 / s2)
        h1 = -sinp / s2 * h0
        h2 = (sinp * sinp / (s2 * s2) - cosp / s2) * h0
        hc = -cosp / s2 * h0
    else:
        psi = math.atan2(sinp, cosp)
        h0 = peak * math.exp(-0.5 * psi * psi / s2)
        h1 = -psi / s2 * h0
        h2 = (psi * psi / s2 - 1.0) / s2 * h0
        hc = -h0 / s2 if sinp < 1e-12 else h1 * cosp / sinp
    if sinp < 1e-12:
        return h0, 0.0, 0.0, hc, 0.0, 0.0, 0.0
    return h0, h1, h2 - hc, hc, dx / sinp, dy / sinp, dz / sinp


@helper
def taylor_coefs(x, y, z, c2, vx, vy, vz, sigma, peak, kind):
    """Coefficients ``K`` of the second-order expansion of the PSF about a node centre
    ``x0``: ``int f G dOmega ~= sum_k K[k] * moment_k(f)`` for the moments of
    :func:`.tree.leaf_moments` (mass, first moments, second moments xx yy zz xy xz
    yz); see :func:`psf_local`. Every term is linear in the stored moments.
    """
    h0, h1, hd, hc, ex, ey, ez = psf_local(x, y, z, c2, vx, vy, vz, sigma, peak, kind)
    a = 0.5 * hd
    b = 0.5 * hc
    # K_m2 = a e e^T + b (I - x0 x0^T); off-diagonal coefficients doubled (symmetric m2)
    return (
        h0,
        h1 * ex,
        h1 * ey,
        h1 * ez,
        a * ex * ex + b * (1.0 - x * x),
        a * ey * ey + b * (1.0 - y * y),
        a * ez * ez + b * (1.0 - z * z),
        2.0 * (a * ex * ey - b * x * y),
        2.0 * (a * ex * ez - b * x * z),
        2.0 * (a * ey * ez - b * y * z),
    )
