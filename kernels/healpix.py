"""HEALPix index math for the NESTED scheme and NUNIQ indices, compiled with Numba.

Pure scalar functions (plus a few array helpers) that the overlap kernels call from
inside their loops; they follow the HEALPix C++ library (``T_Healpix_Base``) and are
tested against healpy. Orders run from 0 to 29; ``nside = 2**order``.

Conventions: angles in radians; ``ra`` is the longitude ``phi`` in [0, 2 pi),
``dec = pi/2 - theta``. A NUNIQ index is ``uniq = 4 * 4**order + ipix``.

Examples
--------
>>> from kernels.healpix import uniq_to_order_ipix, pix2ang_nest
>>> uniq_to_order_ipix(4 * 4**3 + 17)
(3, 17)
>>> ra, dec = pix2ang_nest(0, 4)   # base pixel 4 sits on the equator at ra = 0
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Highest HEALPix order representable with int64 pixel indices.
MAX_ORDER = 29

# Face layout of the 12 base pixels (HEALPix C++ jrll / jpll).
_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.int64)
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.int64)

_TWOTHIRD = 2.0 / 3.0
_HALFPI = 0.5 * math.pi
_INV_HALFPI = 2.0 / math.pi


# --- bit interleaving -------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _spread_bits(v: int) -> int:
    """Put the bits of ``v`` (< 2**32) on the even bit positions."""
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    v = (v | (v << 1)) & 0x5555555555555555
    return v


@njit(cache=True, nogil=True)
def _compress_bits(v: int) -> int:
    """Inverse of :func:`_spread_bits`: collect the even bits of ``v``."""
    v = v & 0x5555555555555555
    v = (v | (v >> 1)) & 0x3333333333333333
    v = (v | (v >> 2)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v >> 4)) & 0x00FF00FF00FF00FF
    v = (v | (v >> 8)) & 0x0000FFFF0000FFFF
    v = (v | (v >> 16)) & 0x00000000FFFFFFFF
    return v


# --- sizes ------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def nside_of(order: int) -> int:
    """``nside = 2**order``."""
    return np.int64(1) << order


@njit(cache=True, nogil=True)
def npix_of(order: int) -> int:
    """Number of pixels on the sphere at ``order``: ``12 * 4**order``."""
    return np.int64(12) << (2 * order)


@njit(cache=True, nogil=True)
def pixel_area(order: int) -> float:
    """Area of one pixel at ``order`` [sr] (all HEALPix pixels have equal area)."""
    return 4.0 * math.pi / (12.0 * 4.0**order)


@njit(cache=True, nogil=True)
def pixel_resol(order: int) -> float:
    """Square root of the pixel area [rad]; same as ``healpy.nside2resol``."""
    return math.sqrt(pixel_area(order))


@njit(cache=True, nogil=True)
def max_pixrad(order: int) -> float:
    """Largest centre-to-corner angle of any pixel at ``order`` [rad].

    Same formula as HEALPix C++ ``max_pixrad`` / ``healpy.max_pixrad``. Every point of a
    pixel lies within this angle of the pixel centre, which makes it the radius used by
    the conservative disc tests below.
    """
    ns = float(nside_of(order))
    za = _TWOTHIRD
    pha = math.pi / (4.0 * ns)
    t1 = 1.0 - 1.0 / ns
    t1 *= t1
    zb = 1.0 - t1 / 3.0
    sa = math.sqrt((1.0 - za) * (1.0 + za))
    sb = math.sqrt((1.0 - zb) * (1.0 + zb))
    ax, ay = sa * math.cos(pha), sa * math.sin(pha)
    return angular_distance(ax, ay, za, sb, 0.0, zb)


# --- NUNIQ ------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def uniq_to_order_ipix(uniq: int) -> tuple[int, int]:
    """Split a NUNIQ index into ``(order, ipix)``; ``uniq = 4 * 4**order + ipix``."""
    u = np.int64(uniq)
    order = np.int64(0)
    # order = floor(log2(uniq) / 2) - 1, computed with integers to stay exact
    while (u >> (2 * (order + 1))) >= 4:
        order += 1
    return order, u - (np.int64(4) << (2 * order))


@njit(cache=True, nogil=True)
def order_ipix_to_uniq(order: int, ipix: int) -> int:
    """Join ``(order, ipix)`` into a NUNIQ index."""
    return (np.int64(4) << (2 * order)) + ipix


@njit(cache=True, nogil=True)
def uniq_to_order_ipix_array(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`uniq_to_order_ipix` over an int64 array."""
    n = uniq.shape[0]
    order = np.empty(n, np.int64)
    ipix = np.empty(n, np.int64)
    for k in range(n):
        order[k], ipix[k] = uniq_to_order_ipix(uniq[k])
    return order, ipix


@njit(cache=True, nogil=True)
def nested_range(order: int, ipix: int, fine_order: int) -> tuple[int, int]:
    """Half-open range ``[lo, hi)`` of the descendants of a pixel at ``fine_order``."""
    shift = 2 * (fine_order - order)
    return ipix << shift, (ipix + 1) << shift


@njit(cache=True, nogil=True)
def children_nest(ipix: int) -> np.ndarray:
    """The 4 children (one order finer) of NESTED pixel ``ipix``: ``4*ipix + 0..3``."""
    return 4 * np.int64(ipix) + np.arange(4, dtype=np.int64)


@njit(cache=True, nogil=True)
def parent_nest(ipix: int) -> int:
    """The parent (one order coarser) of NESTED pixel ``ipix``."""
    return ipix >> 2


# --- NESTED <-> (x, y, face) --------------------------------------------------------------
@njit(cache=True, nogil=True)
def nest_to_xyf(order: int, ipix: int) -> tuple[int, int, int]:
    """NESTED pixel -> (ix, iy, face) inside its base face."""
    face = ipix >> (2 * order)
    pix = ipix & ((np.int64(1) << (2 * order)) - 1)
    return _compress_bits(pix), _compress_bits(pix >> 1), face


@njit(cache=True, nogil=True)
def xyf_to_nest(order: int, ix: int, iy: int, face: int) -> int:
    """(ix, iy, face) -> NESTED pixel index."""
    return (np.int64(face) << (2 * order)) + _spread_bits(ix) + (_spread_bits(iy) << 1)


# --- pixel centres ------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def pix2zphi_nest(order: int, ipix: int) -> tuple[float, float, float]:
    """``(z, sin(theta), phi)`` of the centre of NESTED pixel ``ipix`` at ``order``.

    ``z = sin(dec)``, ``sin(theta) = cos(dec)`` and ``phi = ra`` in [0, 2 pi), straight
    from the ring geometry: callers that want angles skip the vector's cos/sin and
    the atan2 back (a third of a map's per-pixel set-up in
    :func:`kernels.trial_screen.pixel_cells_from`).
    """
    nside = nside_of(order)
    ix, iy, face = nest_to_xyf(order, ipix)
    fact2 = 4.0 / float(npix_of(order))
    fact1 = 2.0 * float(nside) * fact2
    jr = (_JRLL[face] << order) - ix - iy - 1
    sth = -1.0
    if jr < nside:
        nr = jr
        tmp = float(nr * nr) * fact2
        z = 1.0 - tmp
        if z > 0.99:  # sin(theta) from tmp keeps precision near the pole
            sth = math.sqrt(tmp * (2.0 - tmp))
    elif jr > 3 * nside:
        nr = 4 * nside - jr
        tmp = float(nr * nr) * fact2
        z = tmp - 1.0
        if z < -0.99:
            sth = math.sqrt(tmp * (2.0 - tmp))
    else:
        nr = nside
        z = float(2 * nside - jr) * fact1
    t = _JPLL[face] * nr + ix - iy
    if t < 0:
        t += 8 * nr
    elif t >= 8 * nr:
        t -= 8 * nr
    if nr == nside:
        phi = 0.75 * _HALFPI * float(t) * fact1
    else:
        phi = (0.5 * _HALFPI * float(t)) / float(nr)
    if sth < 0.0:
        sth = math.sqrt((1.0 - z) * (1.0 + z))
    return z, sth, phi


@njit(cache=True, nogil=True)
def pix2vec_nest(order: int, ipix: int) -> tuple[float, float, float]:
    """Unit vector ``(x, y, z)`` of the centre of NESTED pixel ``ipix`` at ``order``."""
    z, sth, phi = pix2zphi_nest(order, ipix)
    return sth * math.cos(phi), sth * math.sin(phi), z


@njit(cache=True, nogil=True)
def pix2ang_nest(order: int, ipix: int) -> tuple[float, float]:
    """``(ra, dec)`` [rad] of the centre of NESTED pixel ``ipix`` at ``order``."""
    x, y, z = pix2vec_nest(order, ipix)
    return vec_to_radec(x, y, z)


@njit(cache=True, nogil=True)
def pix2vec_nest_array(order: np.ndarray, ipix: np.ndarray) -> np.ndarray:
    """Centres of many pixels as an ``(n, 3)`` array; ``order`` and ``ipix`` are int64 arrays."""
    n = ipix.shape[0]
    out = np.empty((n, 3))
    for k in range(n):
        out[k, 0], out[k, 1], out[k, 2] = pix2vec_nest(order[k], ipix[k])
    return out


# --- direction -> pixel --------------------------------------------------------------------
@njit(cache=True, nogil=True)
def vec2pix_nest(order: int, x: float, y: float, z: float) -> int:
    """NESTED pixel at ``order`` containing the direction ``(x, y, z)`` (need not be unit)."""
    r = math.sqrt(x * x + y * y + z * z)
    return zphi2pix_nest(order, z / r, math.sqrt(x * x + y * y) / r, math.atan2(y, x))


@njit(cache=True, nogil=True)
def zphi2pix_nest(order: int, z: float, sth: float, phi: float) -> int:
    """NESTED pixel at ``order`` containing the direction of ``z = cos(theta)``,
    ``sth = sin(theta)`` and longitude ``phi`` [rad] (any turn): from (ra, dec) that is
    ``(sin(dec), cos(dec), ra)``, with no unit vector and atan2 back."""
    nside = nside_of(order)
    za = abs(z)
    tt = (phi * _INV_HALFPI) % 4.0
    if tt < 0.0:
        tt += 4.0
    if za <= _TWOTHIRD:  # equatorial belt
        temp1 = nside * (0.5 + tt)
        temp2 = nside * (z * 0.75)
        jp = np.int64(temp1 - temp2)
        jm = np.int64(temp1 + temp2)
        ifp = jp >> order
        ifm = jm >> order
        if ifp == ifm:
            face = ifp | 4
        elif ifp < ifm:
            face = ifp
        else:
            face = ifm + 8
        ix = jm & (nside - 1)
        iy = nside - (jp & (nside - 1)) - 1
        return xyf_to_nest(order, ix, iy, face)
    ntt = min(3, np.int64(tt))
    tp = tt - ntt
    if za < 0.99:
        tmp = nside * math.sqrt(3.0 * (1.0 - za))
    else:  # sin(theta) avoids cancellation in 1 - |z| near the poles
        tmp = nside * sth / math.sqrt((1.0 + za) / 3.0)
    jp = min(np.int64(tp * tmp), nside - 1)
    jm = min(np.int64((1.0 - tp) * tmp), nside - 1)
    if z >= 0:
        return xyf_to_nest(order, nside - jm - 1, nside - jp - 1, ntt)
    return xyf_to_nest(order, jp, jm, ntt + 8)


@njit(cache=True, nogil=True)
def ang2pix_nest(order: int, ra: float, dec: float) -> int:
    """NESTED pixel at ``order`` containing ``(ra, dec)`` [rad]."""
    x, y, z = radec_to_vec(ra, dec)
    return vec2pix_nest(order, x, y, z)


# --- directions and distances --------------------------------------------------------------
@njit(cache=True, nogil=True)
def radec_to_vec(ra: float, dec: float) -> tuple[float, float, float]:
    """Unit vector of ``(ra, dec)`` [rad]."""
    c = math.cos(dec)
    return c * math.cos(ra), c * math.sin(ra), math.sin(dec)


@njit(cache=True, nogil=True)
def vec_to_radec(x: float, y: float, z: float) -> tuple[float, float]:
    """``(ra, dec)`` [rad] of a vector; ``ra`` in [0, 2 pi)."""
    ra = math.atan2(y, x)
    if ra < 0.0:
        ra += 2.0 * math.pi
    return ra, math.atan2(z, math.sqrt(x * x + y * y))


@njit(cache=True, nogil=True)
def chord2(ax: float, ay: float, az: float, bx: float, by: float, bz: float) -> float:
    """Squared chord ``|a - b|**2 = 2 (1 - cos psi)`` between unit vectors (no cancellation)."""
    dx, dy, dz = ax - bx, ay - by, az - bz
    return dx * dx + dy * dy + dz * dz


@njit(cache=True, nogil=True)
def angular_distance(ax: float, ay: float, az: float, bx: float, by: float, bz: float) -> float:
    """Great-circle angle between unit vectors [rad], accurate for tiny and large angles."""
    h = 0.5 * math.sqrt(chord2(ax, ay, az, bx, by, bz))
    return 2.0 * math.asin(min(h, 1.0))


@njit(cache=True, nogil=True)
def pixel_distance_bounds(
    order: int, ipix: int, x: float, y: float, z: float
) -> tuple[float, float, float]:
    """``(psi_centre, psi_min, psi_max)``: angles from ``(x, y, z)`` to a pixel [rad].

    ``psi_min`` / ``psi_max`` bound the angle to any point of the pixel, using the
    centre distance and :func:`max_pixrad` (conservative, never too tight).
    """
    cx, cy, cz = pix2vec_nest(order, ipix)
    psi = angular_distance(cx, cy, cz, x, y, z)
    r = max_pixrad(order)
    return psi, max(psi - r, 0.0), min(psi + r, math.pi)


@njit(cache=True, nogil=True)
def pixel_may_intersect_disc(
    order: int, ipix: int, x: float, y: float, z: float, radius: float
) -> bool:
    """False only if no point of the pixel is within ``radius`` [rad] of ``(x, y, z)``.

    Conservative: a True answer may be a false positive near the disc edge, which is what
    a hierarchical traversal needs (descend into the children and test again).
    """
    return pixel_distance_bounds(order, ipix, x, y, z)[1] <= radius
