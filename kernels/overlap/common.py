"""What every module of the overlap kernels shares: tolerances, per-order tables and
the ways a function is compiled.

Compilation. A first run compiles every kernel an event needs. Numba types and lowers
each compiled function once, then LLVM optimises and code-generates it together with
every separately compiled function it calls; inlining at Numba's level (``inline=
"always"``) instead re-types the callee at every call site, which measured slower to
compile (bench/bench_startup.py). So small helpers are compiled once each and left to
LLVM to inline, and only the two per-neutrino traversals are inlined into their one
caller:

* ``kernel``: entry points called from Python (``cache=True``, ``nogil=True`` so Dask's
  threads run while a kernel does).
* ``traversal_kernel``: the serial traversals, entry points without Numba's reference
  counting (see ``per_node``): the caller passes every array they write, heap
  included, so they allocate nothing.
* ``helper``: functions called only from compiled code, without the Python and C
  wrappers nobody calls.
* ``per_node``: helpers run once per tree node, also without Numba's reference counting
  (``_nrt=False``, a private option Numba has long had): they only read or write the
  arrays they are given and allocate nothing. With it, every call increfs and decrefs
  each array argument (the prepared map holds 11) with atomic instructions, which took
  a third of the traversal's time.
* ``parallel_kernel``: the batch drivers' ``prange`` versions, compiled only when a call
  has neutrinos enough for more than one thread (a single event does not).
* ``inline``: the traversal of one neutrino (or pair), inlined into its serial kernel so
  that it runs without reference counting there; and the single look's node visit
  (``traversal.visit``), too large for LLVM to inline: called, it had the prepared
  map's record (~80 words) pushed on the stack at every node, a sixth of the look's
  time. Its one call site keeps the extra compilation to ~7 s.

The traversal kernels and every helper compile with ``error_model="numpy"``: a float
division by zero gives inf or NaN instead of raising ZeroDivisionError, so no test of
the divisor and no branch to the raising code at each of the ~15 divisions a node
visit makes (their divisors are sigma, the PSF's peak, sines and totals kept above
zero; the quotients are the same floats). Perf JIT/libm sample ratio of the recorded
single looks: about 3% fewer kernel samples.

Every argument has one type (float64 / int64 / C-contiguous writeable float64 or int64
arrays and the records of :mod:`.records`): the Python side converts, so each kernel
compiles once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..healpix import max_pixrad, pixel_area
from ..plain import plain_python

kernel = njit(cache=True, nogil=True)
traversal_kernel = njit(cache=True, nogil=True, _nrt=False, error_model="numpy")
helper = njit(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, error_model="numpy")  # fmt: skip
per_node = njit(cache=True, nogil=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True, error_model="numpy")  # fmt: skip
inline = njit(inline="always")
parallel_kernel = njit(cache=True, nogil=True, parallel=True)

#: Default relative tolerance of the pruning (sum of dropped bounds / total): the 1%
#: accuracy the search needs. The bounds are conservative: against tightly converged
#: references the errors at 1e-2 are 1e-4 (bench event) to 3.7e-3 (worst case of the
#: accuracy tests: sigma 10 deg on a 10^4 deg^2 map); 1e-3 costs 2.5x more nodes.
RTOL = 1e-2
#: Absolute floor of the pruning, relative to the map's peak density times the PSF's
#: mass (1 for a neutrino, ``int G1 G2``, at most the smaller PSF peak, for a pair; see
#: ``pairs.product_mass``), times ``rtol``: results where the map is far below its peak
#: need no relative accuracy, and chasing it costs unbounded time.
ATOL = 1e-12
#: Default resolution factor: a constant-density node is integrated at its centre when
#: its size is below ``RES * sigma`` (scaled down in the PSF tail).
RES = 0.4

MAX_REFINE_ORDER = 29
MAX_STEPS = 20_000_000  # runaway guard per neutrino (node expansions)
NMOM = 30  # moments per tree node (see tree.leaf_moments)
NGL = 16  # Gauss-Legendre points of the band integrals
CAP_L = 6.5  # band integrals reach out to this many sigma (Gaussian tail < 1e-9)
#: A single neutrino's band integrals go on out to this many sigma, a shell added to
#: ``CAP_L``'s (Gaussian tail < 3e-18): a band edge beyond ``CAP_L`` sigma carries a
#: weight up to 1e11 times the neutrino's own band's (a(eps) of a southern neutrino
#: next to the northern sky), so its ~1e-9 of the PSF is not negligible there.
CAP_TAIL = 9.0
#: Moment expansion of internal nodes up to this radius in sigma.
TAYLOR_RAD = 1.0
#: Cells crossing an A_eff edge are integrated at this fraction of ``res``.
EDGE_RES = 0.25
R3_MEAN = 0.35
ASYM = 0.1  # mean |u|^3 over a pixel, in units of its max radius cubed
TWO_PI = 2.0 * math.pi

# per-order tables (index = order), from the plain Python of the HEALPix kernels so that
# importing this module compiles nothing
AREA = np.array([plain_python(pixel_area)(o) for o in range(30)])
RESOL = np.sqrt(AREA)
# 1% margin on max_pixrad: the bound must never be optimistic
MAXRAD = np.array([plain_python(max_pixrad)(o) for o in range(30)]) * 1.01
COSRAD = np.cos(MAXRAD)
SINRAD = np.sin(MAXRAD)

# Gauss-Legendre nodes and weights on [0, 1]: NGL for the radial integrals, NPHI for
# the azimuths around a pair's product (the integrand there is near-isotropic)
GLX, GLW = np.polynomial.legendre.leggauss(NGL)
GLX = 0.5 * (GLX + 1.0)
GLW = 0.5 * GLW
NPHI = 12
PHX, PHW = np.polynomial.legendre.leggauss(NPHI)
PHX = 0.5 * (PHX + 1.0)
PHW = 0.5 * PHW


@per_node
def search_right(a, x):
    """Number of entries of the ascending array ``a`` that are <= ``x`` (numpy's
    ``searchsorted(a, x, side="right")``; bisection written out, since numpy's
    compiles comparators for every dtype, complex included, on first use)."""
    lo = 0
    hi = a.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo
