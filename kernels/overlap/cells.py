"""The shape of a HEALPix cell: its second moments about its centre.

HEALPix cells have equal areas but not equal shapes. A cell is the image of a square
of side ``1 / nside`` in its base face's coordinates, so over it ``u = J xi`` (``u``
the offset from the centre on the tangent plane, ``xi`` uniform on the square, ``J``
the face's Jacobian at the centre) and its second moment per unit area is ``M =
J J^T / (12 nside^2)``, isotropic (``A / 12`` per axis) nowhere: in the equatorial
zone a diamond with axes along the meridian and the parallel, ``A / 12`` times
``8 / (3 pi (1 - z^2))`` and ``3 pi (1 - z^2) / 8``; in the polar caps a sheared one,
its larger eigenvalue up to 2.4 times ``A / 12`` next to a face's edge. The midpoint
rule's second-order term ``tr(H M) / 2`` (``H`` the integrand's Hessian over its
value) takes ``M``: with ``A / 12`` per axis it came out 1-2% low on polar cells in a
PSF's tail, where ``H`` is large along the direction away from the neutrino.

From the HEALPix projection (Gorski et al. 2005), with ``w = sqrt(1 - z^2)`` and the
local north and east unit vectors, in units of ``1 / (12 nside^2)``:

* equatorial zone ``|z| < 2/3``: ``M_nn = 8 / (9 w^2)``, ``M_ee = pi^2 w^2 / 8``,
  ``M_ne = 0``;
* polar caps: with ``t`` the centre's azimuth within its face (``phi mod pi/2`` over
  ``pi/2``), ``M_nn = 8 / (3 (1 + |z|))``, ``M_ee = pi^2 (1 + |z|) (t^2 + (1 - t)^2)
  / 12``, ``M_ne = -+ pi (1 - 2 t) / 3`` (north, south);
* cells centred on ``|z| = 2/3`` are half one, half the other: the mean of the two.

Both have determinant ``(pi / 3)^2`` (equal areas). Against the second moments of
4,096 sub-cells per cell (tests/test_kernels_cell_shape.py) they are within 3.0%,
0.72%, 0.07% of ``A / 12`` at orders 3, 6, 9 (the Jacobian's variation across a cell,
~ 1 / nside); the cells touching a pole 9.3% at order 3.
"""

from __future__ import annotations

import math

from .common import AREA, helper

#: The polar caps begin at |z| = 2/3; cells centred on it (to rounding) straddle it.
Z_CAP = 2.0 / 3.0
_ON_CAP_EDGE = 1e-13
_PI2 = math.pi * math.pi


@helper
def face_spread(o, x, y, z):
    """(M_nn, M_ee, M_ne, w) of the cell at order ``o`` centred on the unit vector (x,
    y, z): its second moments per unit area [sr] along the local north and east, and
    ``w = sqrt(x^2 + y^2)`` (no frame at the poles: ``w`` 0 there, the cell taken as
    isotropic)."""
    w2 = x * x + y * y
    scale = AREA[o] / (4.0 * math.pi)  # 1 / (12 nside^2)
    if w2 < 1e-30:
        s = AREA[o] / 12.0
        return s, s, 0.0, 0.0
    w = math.sqrt(w2)
    za = abs(z)
    if za < Z_CAP - _ON_CAP_EDGE:
        return scale * 8.0 / (9.0 * w2), scale * _PI2 * w2 / 8.0, 0.0, w
    t = (math.atan2(y, x) % (0.5 * math.pi)) / (0.5 * math.pi)
    nn = 8.0 / (3.0 * (1.0 + za))
    ee = _PI2 * (1.0 + za) * (t * t + (1.0 - t) * (1.0 - t)) / 12.0
    ne = -math.pi * (1.0 - 2.0 * t) / 3.0
    if z < 0.0:
        ne = -ne
    if za <= Z_CAP + _ON_CAP_EDGE:  # half polar, half equatorial
        nn = 0.5 * (nn + 8.0 / (9.0 * w2))
        ee = 0.5 * (ee + _PI2 * w2 / 8.0)
        ne = 0.5 * ne
    return scale * nn, scale * ee, scale * ne, w


@helper
def cell_spread(o, x, y, z, gx, gy, gz):
    """(g^T M g, tr M) of the cell at order ``o`` centred on (x, y, z), for a tangent
    vector ``g`` there (``g . x = 0``): its second moment along ``g`` times ``|g|^2``,
    and in all."""
    mnn, mee, mne, w = face_spread(o, x, y, z)
    if w == 0.0:
        return mnn * (gx * gx + gy * gy + gz * gz), mnn + mee
    gn = gz / w  # g . north, since g . x = 0
    ge = (x * gy - y * gx) / w  # g . east
    return mnn * gn * gn + mee * ge * ge + 2.0 * mne * gn * ge, mnn + mee


@helper
def cell_tensor(o, x, y, z):
    """The cell's second moment per unit area ``M`` as a 3-D tensor on the tangent plane
    at its centre: (xx, yy, zz, xy, xz, yz)."""
    mnn, mee, mne, w = face_spread(o, x, y, z)
    if w == 0.0:  # isotropic: M = s (I - x x^T)
        s = mnn
        return s * (1.0 - x * x), s * (1.0 - y * y), s * (1.0 - z * z), -s * x * y, -s * x * z, -s * y * z  # fmt: skip
    nx, ny, nz = -z * x / w, -z * y / w, w  # local north
    ex, ey = -y / w, x / w  # local east (ez = 0)
    return (
        mnn * nx * nx + mee * ex * ex + 2.0 * mne * nx * ex,
        mnn * ny * ny + mee * ey * ey + 2.0 * mne * ny * ey,
        mnn * nz * nz,
        mnn * nx * ny + mee * ex * ey + mne * (nx * ey + ex * ny),
        mnn * nx * nz + mne * ex * nz,
        mnn * ny * nz + mne * ey * nz,
    )
