"""Fast trials: the exact statistic where it matters, cheap where it provably does not.

Two ways to make on-the-fly trials cheap: scrambles get the exact method's p-values
(its counts, decided by bounds), background lists a statistic within 1% (plus a floor
far below the map's scale) of :meth:`~llama.science.odds.EventModel.evaluate_batch`.

**Scrambles** (:class:`ScrambleTrials`). A scramble keeps each neutrino's declination,
error, energy and time and redraws its right ascension, so B_i, T_i, the distance and
energy factors and P_c,i never change, and the spatial overlap S_i is a function of RA
alone. ``log S_i(RA)`` is tabulated once per event with the exact kernel on an
adaptive circular RA grid (nodes at most 4 sigma apart along the ring, every
interval's midpoint checked against the exact kernel, again whenever a new node
changes its cubic, and halved until the cubic interpolant agrees within
:data:`TABLE_RTOL`, or both lie below the floor; :mod:`kernels.ra_lookup`). A
p-value needs of each trial only whether its statistic is above, at or below the
observed values, so each trial is first bounded from lookups alone
(:meth:`ScrambleTrials.bounds`): each exact S_i within the tables' and the kernel's
tolerances of the looked-up one, and at most what the screen allows (below); each
doublet term between 0 and a bound from bounds of S_i, S_j and the pair's
separation d (for O3's Gaussian S_ij <= (a_j,max G_j,peak S_i + a_i,max G_i,peak
S_j') exp(-d² / 2 (sigma_i + sigma_j)²)) or from the density near the pair. Only the
trials whose bounds hold an observed value get exact parts (the kernels' own
numbers), and those still undecided the whole exact statistic
(:meth:`ScrambleTrials.decide_batch`).

**Background lists** (:class:`TrialScreen`, :func:`screened_model`). Most trial
neutrinos land far from a GW map, where the spatial overlap
S_i = Σ_pix P_gw a(ε_i) ∫_pix G_i is more than 12 orders of magnitude below the map's
scale; there the exact overlap kernel no longer resolves S_i either (its absolute floor,
``kernels.overlap.ATOL``), yet it still spends most of a trial's time on them.
:class:`TrialScreen` bounds, per event and cheaply, the largest density within reach of a
PSF (:mod:`kernels.trial_screen`); a neutrino whose bound is below the floor

    S_floor,i = SCREEN_FLOOR · max(P_gw density) · max_dec a(ε_i, dec)

gets the map's own density at its position times a(ε_i, dec_i) (never above the
floor) instead of the kernel. So every S_i of a trial is within
``overlap_rtol · S_i + S_floor,i`` of the exact one, and everything else of the
statistic (background, time, distance, doublets with their exact pair overlaps) is the
model's own :meth:`~llama.science.odds.EventModel.evaluate_batch`.

The screened statistic, like the scrambles' ranked statistic below the cut
(:data:`RESOLVED_FLOORS`), is a deterministic function of a list, so ranking the
observed list's among the trials' keeps the p-value exactly calibrated (the trials and
the observation are exchangeable under the null).

Examples
--------
>>> import numpy as np
>>> from llama.science.skymap import SkyMap
>>> from llama.science.odds import EventModel
>>> dens = np.full(12, 1e-20); dens[4] = 3 / np.pi    # all mass in one base pixel
>>> m = EventModel(SkyMap(probdensity=dens, nside=1), 12.0, 150.0)
>>> screen = TrialScreen.for_model(m)
>>> screen.relevant(np.radians([0.0, 180.0]), np.zeros(2), np.radians([1.0, 1.0])).tolist()
[True, False]
"""

from __future__ import annotations

import copy
import math
import weakref
from typing import NamedTuple

import numpy as np

from kernels import odds as KO
from kernels import ra_lookup as KR
from kernels import trial_screen as KS
from kernels.trials import tile_offsets
from llama.science import constants as C
from llama.science.signal_tables import SINDEC_EDGES

__all__ = [
    "BOUND_RTOL",
    "COARSE_TABLE_RTOL",
    "RESOLVED_FLOORS",
    "SCREEN_FLOOR",
    "TABLE_RTOL",
    "TrialBounds",
    "ScrambleTrials",
    "TrialScreen",
    "interval_error_bounds",
    "pair_annulus_bound",
    "pair_overlap_bound",
    "screened_model",
    "supports_screening",
]

#: Relative floor of the screen: overlaps below this fraction of the map's peak density
#: (times the neutrino's largest a(ε, dec)) are not computed exactly. It is the exact
#: kernel's own scale of "results far below the map's scale" (kernels.overlap.ATOL).
SCREEN_FLOOR = 1e-12
#: PSF mass left outside the screened disc, relative to SCREEN_FLOOR (its share of the bound).
_TAIL_SHARE = 0.1
#: Rows of the (dec, RA) bound grid: 1 deg cells (2 x 180 x 360 doubles per class).
_GRID_ROWS = 180
#: Upper sigma edges of the PSF classes [deg], geometric over the background range
#: 0.2-3 deg; a sigma above the last one is always computed exactly.
_SIGMA_EDGES_DEG = np.geomspace(0.2, 3.0, 7)[1:]
#: Largest relative difference between a ring table's cubic and the exact kernel at
#: the midpoint of any of its intervals (where either lies above the floor), checked
#: again whenever a new node changes the interval's cubic; a failed midpoint becomes
#: a node.
TABLE_RTOL = 2e-3
#: First nodes of a ring table: at most this many sigma apart along the ring (true
#: angle). A PSF-smoothed map has no feature narrower than sigma, so with the checked
#: midpoints every feature lies within 1 sigma of a point the kernel evaluated.
_RING_SPACING_SIGMAS = 4.0
_MIN_RING_NODES = 8
#: Tolerance of the exact kernel on the ring tables' nodes (the model's is 1e-2).
_TABLE_KERNEL_RTOL = 1e-3
#: ... where very many trials are expected (``n_trials`` unknown, or from
#: :data:`_TIGHT_FROM_TRIALS`): the nodes' error, amplified by the cubic, is then no
#: longer most of a bound's width (median share of a looked-up S_i 7.1e-3 -> 1.9e-3 on
#: bbh-3's 11 neutrinos, the rest the exact kernel's own 1e-2), so fewer trials hold an
#: observed value and need the exact kernel (570 -> 410 of 20,000 there: 1.34x the
#: trials per CPU second), for 1.4-1.5x the tables' set-up (+2.3 s CPU there;
#: bench/bench_scrambles.py).
_TIGHT_TABLE_KERNEL_RTOL = 1e-4
#: From this many trials expected, the tables' nodes are at :data:`_TIGHT_TABLE_KERNEL_RTOL`:
#: their extra set-up pays back from ~700,000 trials on bbh-3's 11 neutrinos (3.3 µs
#: saved a trial), never on events whose trials seldom hold an observed value.
_TIGHT_FROM_TRIALS = 1_000_000
#: Up to this many trials expected, tables are coarse: their set-up, not the trials,
#: is what an event's p-values cost, and a trial whose wider bounds hold an observed
#: value gets the exact kernel (a p-value's default 2,000 trials: tables 2.1-2.4x
#: cheaper on wide maps, measured in bench/bench_trials.py's end to end).
_COARSE_UP_TO_TRIALS = 5000
#: Coarse tables: the model's own kernel tolerance on the nodes, this at the midpoints.
COARSE_TABLE_RTOL = 5e-3
#: Halvings of a ring interval at most (4 sigma / 2^8 = sigma / 64).
_MAX_RING_LEVELS = 8
#: Rounds of checks at most (halvings and the re-checks of the neighbours they change).
_MAX_RECHECKS = 64
#: Values are clamped this far below the floor before their logarithm is taken, so
#: the cubic does not swing between 1e-300 and the map's scale.
_CLAMP_BELOW_FLOOR = 1e-30
#: Margin on the pair bounds (:meth:`ScrambleTrials._pair_overlap_bound`) for the table's
#: interpolation error and the exact kernel's own (rtol 1e-2 bounds).
_PAIR_BOUND_MARGIN = 1.05
#: O3's Gaussian product integrated over the sphere, at most this times the planar value.
_SPHERE_MARGIN = 1.02
#: The product of two of O3's Gaussians bounded as a Gaussian this much wider than
#: the planar product's (the sphere's curvature; :meth:`ScrambleTrials._pair_annulus_bound`).
_PAIR_PSF_WIDER = 1.05
#: Trials whose doublet bounds are their widest part that make building the map's
#: pyramid (6-12 ms) worth it, when the tables did not build it: a pair look costs
#: ~0.3 ms, and the pyramid's bounds decide about half of those trials.
_PYRAMID_WORTH = 40
#: ∫ G_i G_j of O3's Gaussians on the sphere is at least this times
#: :func:`product_integral` (tests/test_fast_trials.py: within 3% by quadrature).
_PAIR_MASS_LOW = 0.97
#: The pair kernel's absolute floor taken this many times in the pyramid's pair bound:
#: in a map's far tail the pair kernel is off by up to ~2.1x its tolerance (tests/
#: test_kernels_pair_tail.py).
_PAIR_FLOOR_MARGIN = 3.0
#: Tolerance of the pair kernel's first look at a doublet that bounds cannot decide:
#: its result bounds the exact method's S_ij within about this (and the floors).
_COARSE_PAIR_RTOL = 0.25
#: Relative difference between a looked-up S_i and the exact kernel's at most this
#: beyond the model's own ``overlap_rtol`` (1e-2 by default; bounds of
#: :meth:`ScrambleTrials.bounds`): the table is within TABLE_RTOL of its kernel
#: (rtol 1e-3), with as much again to spare.
_TABLE_SHARE = 1e-2
#: ... for coarse tables: their kernel's tolerance (1e-2), COARSE_TABLE_RTOL and as
#: much again to spare.
_COARSE_TABLE_SHARE = 2.5e-2
#: The default bounds' relative width: the model's overlap_rtol 1e-2 plus the table's.
BOUND_RTOL = 2e-2
#: Near or below the floor, where the table only promises to be within the floor:
#: 1.1 floors either way.
_BOUND_FLOOR = 1.1
#: A looked-up S_i above this many floors (where the screen says the ring is within
#: reach) is a table value above the floor, hence within the relative tolerance: only
#: the exact kernel's absolute tolerance (its rtol times the floor) is added to it.
_RELATIVE_ABOVE_FLOORS = 3.0
#: Margin on the exact kernels' absolute tolerances.
_ATOL_MARGIN = 1.1
#: A scramble is "resolved" when its looked-up statistic without doublets plus the
#: bound of its doublet terms reaches this many times its floor (the sum of its
#: neutrinos' odds floors), the cut: there it is ranked by its exact statistic (or the
#: cut, whichever is larger), below by that looked-up value.
RESOLVED_FLOORS = 10.0

_SCREENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class TrialBounds(NamedTuple):
    """What cheap bounds say of m trials' statistics.

    Each trial's statistic h, the one its p-value ranks, lies in ``[lo, hi]``;
    ``lo == hi`` where it is known. Scrambles (:meth:`ScrambleTrials.bounds`): h is
    the exact statistic, or the cut where that is larger, where ``resolved``, the
    looked-up one below. ``point`` is a value inside: h where known, else (scrambles)
    the looked-up statistic without doublets. ``n_refined`` trials were evaluated for
    their h.
    """

    lo: np.ndarray
    hi: np.ndarray
    resolved: np.ndarray
    point: np.ndarray
    n_refined: int = 0


def supports_screening(model) -> bool:
    """Whether ``model`` is an O3 event model the screen applies to.

    The screen bounds the map's own density: a model with per-pixel distance weights
    (``distance="marginal"``) or without a multi-order or flat map is evaluated
    exactly.

    Examples
    --------
    >>> supports_screening(object())
    False
    """
    return (
        hasattr(model, "signal_overlap")
        and hasattr(model, "skymap")
        and not getattr(model, "marginal", True)
    )


class TrialScreen:
    """Per-event bound of the map density within reach of a PSF, by sigma class.

    Build with :meth:`for_model` (kept per model, built on first use).

    Attributes
    ----------
    peak : float
        Largest density of the map [sr⁻¹].
    threshold : float
        A dilated bound at or below it means "negligible" [sr⁻¹].
    """

    def __init__(self, skymap) -> None:
        density = np.ascontiguousarray(skymap.probdensity, dtype=np.float64)
        order, ipix = skymap.order_ipix()
        self.peak = float(np.max(density)) if density.size else 0.0
        self.threshold = (1.0 - _TAIL_SHARE) * SCREEN_FLOOR * self.peak
        self._max_order = int(order.max())
        shift = 2 * (self._max_order - order)
        start = ipix << shift
        idx = np.argsort(start, kind="stable")
        self._start = np.ascontiguousarray(start[idx])
        self._stop = np.ascontiguousarray(((ipix + 1) << shift)[idx])
        self._density = np.ascontiguousarray(density[idx])
        base = KS.sky_max_grid(order, ipix, density, _GRID_ROWS)
        tail = _TAIL_SHARE * SCREEN_FLOOR
        self._edges = np.radians(_SIGMA_EDGES_DEG)
        self._bounds = [KS.dilate_max(base, KS.psf_reach(s, tail)) for s in self._edges]

    @classmethod
    def for_model(cls, model) -> TrialScreen:
        """The screen of ``model``'s map, built once per model, and kept per map where
        the map came from the process's store (`llama.science.skymap.kept_product`)."""
        screen = _SCREENS.get(model)
        if screen is None:
            from llama.science.skymap import kept_product

            # of the map's pixels alone: kept with the map in the process's store
            screen = _SCREENS[model] = kept_product(model.skymap, ("trial_screen", cls), cls)
        return screen

    def relevant(self, ra, dec, sigma) -> np.ndarray:
        """True where the exact overlap is needed (angles [rad]).

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> s = TrialScreen(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1))
        >>> s.relevant(np.zeros(2), np.zeros(2), np.radians([1.0, 10.0])).tolist()
        [True, True]
        """
        ra, dec, sigma = (np.ascontiguousarray(a, dtype=np.float64) for a in (ra, dec, sigma))
        out = np.ones(ra.size, dtype=bool)  # sigma beyond the classes: exact
        cls = np.searchsorted(self._edges, sigma, side="left")
        for k, bound in enumerate(self._bounds):
            sel = np.flatnonzero(cls == k)
            if sel.size:
                out[sel] = KS.cell_lookup(bound, ra[sel], dec[sel]) > self.threshold
        return out

    def ring_reach(self, dec, sigma) -> np.ndarray:
        """Per RA column of the bound grid along declination ``dec``, whether a PSF of
        ``sigma`` centred there may see more than the floor (angles [rad]); for
        :func:`ring_table`'s ``reach``.

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> dens = np.full(12, 1e-20); dens[4] = 3 / np.pi    # one base pixel at RA 0
        >>> r = TrialScreen(SkyMap(probdensity=dens, nside=1)).ring_reach(0.0, np.radians(1.0))
        >>> r.size, bool(r[0]), bool(r[r.size // 2])
        (360, True, False)
        """
        k = int(np.searchsorted(self._edges, sigma, side="left"))
        n_dec = self._bounds[0].shape[0]
        if k >= len(self._bounds):
            return np.ones(2 * n_dec, dtype=bool)  # sigma beyond the classes: exact
        row = min(max(int(math.floor((dec + 0.5 * math.pi) / (math.pi / n_dec))), 0), n_dec - 1)
        return self._bounds[k][row] > self.threshold

    def density_near(self, ra, dec, sigma, wider: int = 0) -> np.ndarray:
        """A bound of the map's density within a PSF's reach of each direction [sr⁻¹],
        plus the peak times the Gaussian's mass beyond that reach; the peak itself
        where ``sigma`` is beyond the classes (angles [rad]).

        The reach is that of ``sigma``'s class moved ``wider`` classes up (at most to
        the last): with
        tail = ``_TAIL_SHARE * SCREEN_FLOOR`` and the class's upper edge e, a Gaussian
        of ``sigma`` has at most tail^((e / sigma)²) of its mass beyond it (at most
        tail for ``wider=0``; ~1e-79 two classes up, where e / sigma >= 2.47).

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> dens = np.full(12, 1e-20); dens[4] = 3 / np.pi    # one base pixel at RA 0
        >>> s = TrialScreen(SkyMap(probdensity=dens, nside=1))
        >>> near = s.density_near(np.radians([0.0, 180.0]), np.zeros(2), np.radians([1.0, 1.0]))
        >>> bool(np.isclose(near[0], 3 / np.pi, rtol=1e-12)), bool(near[1] < 1e-12)
        (True, True)
        """
        ra, dec, sigma = (np.ascontiguousarray(a, dtype=np.float64) for a in (ra, dec, sigma))
        out = np.full(ra.size, self.peak)
        cls = np.searchsorted(self._edges, sigma, side="left")
        last = len(self._bounds) - 1
        cls = np.where(cls <= last, np.minimum(cls + wider, last), cls)  # at most the last
        tail = np.zeros(ra.size)
        for k, bound in enumerate(self._bounds):
            sel = np.flatnonzero(cls == k)
            if sel.size:
                out[sel] = KS.cell_lookup(bound, ra[sel], dec[sel])
                tail[sel] = np.exp(math.log(_TAIL_SHARE * SCREEN_FLOOR) * (self._edges[k] / sigma[sel]) ** 2)  # fmt: skip
        return out + tail * self.peak

    def density(self, ra, dec) -> np.ndarray:
        """The map's density at each direction [sr⁻¹] (angles [rad])."""
        return KS.density_at(
            self._start, self._stop, self._density, self._max_order,
            np.ascontiguousarray(ra, dtype=np.float64), np.ascontiguousarray(dec, dtype=np.float64),
        )  # fmt: skip


def screened_model(model):
    """A shallow copy of ``model`` whose ``signal_overlap`` skips negligible neutrinos.

    Everything else (background terms, doublets, the prepared map) is ``model``'s own.
    Returns ``model`` itself when :func:`supports_screening` is False.

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.skymap import SkyMap
    >>> from llama.science.odds import EventModel
    >>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
    >>> fast = screened_model(m)
    >>> fast is not m and fast.skymap is m.skymap
    True
    """
    if not supports_screening(model):
        return model
    screen = TrialScreen.for_model(model)
    exact = model.signal_overlap
    fast = copy.copy(model)

    def signal_overlap(ra_deg, dec_deg, sigma_deg, energy_eval_gev, pixel_weight_key=None):
        if pixel_weight_key is not None:
            return exact(ra_deg, dec_deg, sigma_deg, energy_eval_gev, pixel_weight_key)
        ra_deg, dec_deg, sigma_deg = (
            np.ascontiguousarray(a, dtype=np.float64) for a in (ra_deg, dec_deg, sigma_deg)
        )
        ra, dec, sigma = np.radians(ra_deg), np.radians(dec_deg), np.radians(sigma_deg)
        eps = np.ascontiguousarray(energy_eval_gev, dtype=np.float64)
        need = screen.relevant(ra, dec, sigma)
        # Negligible: the density at the neutrino times a(ε_i, dec_i), at most the floor.
        overlap = screen.density(ra, dec)
        band = np.clip(np.searchsorted(SINDEC_EDGES, np.sin(dec), side="right") - 1, 0, SINDEC_EDGES.size - 2)  # fmt: skip
        rows = model.tables.dec_rows(eps)
        signal = overlap * rows[np.arange(ra.size), band]
        if need.any():
            k = np.flatnonzero(need)
            overlap[k], signal[k] = exact(ra_deg[k], dec_deg[k], sigma_deg[k], eps[k])
        return overlap, signal

    fast.signal_overlap = signal_overlap
    fast.screen = screen
    return fast


# --------------------------------------------------------------------------------------
# Scrambles: RA lookup tables
# --------------------------------------------------------------------------------------


def _psf_at(psi, sigma, kind: int) -> np.ndarray:
    """The model's PSF at angle ``psi`` from the neutrino [sr⁻¹] (angles [rad]): O3's
    Gaussian exp(-psi² / 2 sigma²) / (2 pi sigma²), or the von Mises-Fisher density
    (kind 1, kappa = 1 / sigma²), as kernels.overlap defines them."""
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    if kind == 1:
        return np.exp(-2.0 * np.sin(0.5 * psi) ** 2 / s2) / (2.0 * math.pi * s2 * -np.expm1(-2.0 / s2))  # fmt: skip
    return np.exp(-0.5 * psi**2 / s2) / (2.0 * math.pi * s2)


def _band(dec_rad: float) -> int:
    """The sin(dec) band of a(eps) rows that ``dec_rad`` falls in."""
    k = int(np.searchsorted(SINDEC_EDGES, math.sin(dec_rad), side="right")) - 1
    return min(max(k, 0), SINDEC_EDGES.size - 2)


def _frame_rotation(model, dec_deg, dt_s) -> tuple[np.ndarray, np.ndarray]:
    """The model's detector frame as (rotation, azimuth turn per neutrino [deg]) for
    :func:`kernels.ra_lookup.frame_azimuth`, read off its public ``detector_frame``.

    The frame is a rotation R (local = R @ sky, local axes east, north, up) and a turn of
    the azimuth with each neutrino's time, so R's columns are the local vectors
    (sin z sin a, sin z cos a, cos z) of the sky axes x, y, z at dt = 0.
    """
    nan3 = np.full(3, np.nan)
    zen, az = model.detector_frame(np.array([0.0, 90.0, 0.0]), np.array([0.0, 0.0, 90.0]), np.zeros(3), nan3, nan3)  # fmt: skip
    z, a = np.radians(zen), np.radians(az)
    rotation = np.ascontiguousarray(np.stack([np.sin(z) * np.sin(a), np.sin(z) * np.cos(a), np.cos(z)]))  # fmt: skip
    n = np.size(dec_deg)
    nan = np.full(n, np.nan)
    a0 = model.detector_frame(np.zeros(n), dec_deg, np.zeros(n), nan, nan)[1]
    a1 = model.detector_frame(np.zeros(n), dec_deg, dt_s, nan, nan)[1]
    return rotation, np.ascontiguousarray((a1 - a0) % 360.0)


def _separation(ra_i, dec_i, ra_j, dec_j) -> np.ndarray:
    """Great-circle angle between directions [rad] (haversine: exact for small ones)."""
    hav = np.sin(0.5 * np.subtract(dec_j, dec_i)) ** 2 + np.cos(dec_i) * np.cos(dec_j) * np.sin(0.5 * np.subtract(ra_j, ra_i)) ** 2  # fmt: skip
    return 2.0 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))


def _towards(ra_i, dec_i, ra_j, dec_j, d, t) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) [rad] of the point at angle ``t`` from i on the great circle to j
    (``d`` apart); i itself where d is 0."""
    ui = np.stack([np.cos(dec_i) * np.cos(ra_i), np.cos(dec_i) * np.sin(ra_i), np.sin(dec_i)])
    uj = np.stack([np.cos(dec_j) * np.cos(ra_j), np.cos(dec_j) * np.sin(ra_j), np.sin(dec_j)])
    with np.errstate(divide="ignore", invalid="ignore"):
        wi = np.where(d > 0, np.sin(d - t) / np.sin(d), 1.0)
        wj = np.where(d > 0, np.sin(t) / np.sin(d), 0.0)
    v = wi * ui + wj * uj
    return np.arctan2(v[1], v[0]) % (2.0 * math.pi), np.arctan2(v[2], np.hypot(v[0], v[1]))


def pair_overlap_bound(ra_i, dec_i, sigma_i, ra_j, dec_j, sigma_j, s_i, s_j, a_i, a_j, kind=0):
    """An upper bound of a pair's overlap S_ij from the two single overlaps.

    S_ij = ∫ rho a_i a_j G_i G_j and S_i = ∫ rho a_i G_i, S_j = ∫ rho a_j G_j with the
    same a(eps) rows as S_ij. Every point x has psi_i + psi_j >= d, the pair's
    separation; where psi_i <= t, G_j(x) <= G_j(d - t), elsewhere G_i(x) <= G_i(t), so

        S_ij <= max(a_j) G_j(d - t) S_i + max(a_i) G_i(t) S_j,

    and also S_ij <= max(a_j) G_j(0) S_i. t = d sigma_i / (sigma_i + sigma_j) makes
    the Gaussian's two exponents equal, exp(-d² / 2 (sigma_i + sigma_j)²). Holds for any
    PSF that falls with the angle (both of kernels.overlap's).

    Parameters
    ----------
    ra_i, dec_i, sigma_i, ra_j, dec_j, sigma_j : array_like
        The two neutrinos [rad].
    s_i, s_j : array_like
        Their overlaps (a bound of each serves).
    a_i, a_j : array_like
        The largest a(eps) of each row.
    kind : int
        0 O3's Gaussian, 1 von Mises-Fisher.

    Examples
    --------
    >>> b_near = pair_overlap_bound(0.0, 0.0, 0.01, 0.0, 0.0, 0.01, 1.0, 1.0, 1.0, 1.0)
    >>> b_far = pair_overlap_bound(0.0, 0.0, 0.01, 0.1, 0.0, 0.01, 1.0, 1.0, 1.0, 1.0)
    >>> round(float(b_near) * 2 * np.pi * 1e-4, 6), bool(b_far < 1e-4 * b_near)
    (1.0, True)
    """
    si, sj = np.asarray(sigma_i, dtype=np.float64), np.asarray(sigma_j, dtype=np.float64)
    d = _separation(ra_i, dec_i, ra_j, dec_j)
    t = d * si / (si + sj)
    loose = a_j * _psf_at(0.0, sj, kind) * s_i
    with np.errstate(invalid="ignore"):  # inf * 0
        split = a_j * _psf_at(d - t, sj, kind) * s_i + a_i * _psf_at(t, si, kind) * s_j
    return np.fmin(loose, split)


def pair_annulus_bound(sky, ra_i, dec_i, sigma_i, ra_j, dec_j, sigma_j, rows, kind=0, d=None):
    """Lower and upper bounds of a pair's overlap S_ij = ∫ rho a_i a_j G_i G_j from a
    map's min/max pyramid (nested discs about the pair's product).

    G_i G_j is ∫ G_i G_j (:func:`product_integral`) times a PSF of width sigma_c =
    (sigma_i⁻² + sigma_j⁻²)^(-1/2) about the pair's weighted centre: exactly for von
    Mises-Fisher PSFs (kappa_c = |kappa_i n_i + kappa_j n_j|, centre along that
    vector), on the plane for O3's Gaussian, whose sphere's curvature a PSF wider by
    :data:`_PAIR_PSF_WIDER` covers (a wider PSF only moves mass to outer annuli,
    bounded over larger discs, and only lowers a lower bound, whose disc minima fall
    with the radius). So S_ij <= ∫ G_i G_j x the nested-disc upper bound of ∫ rho a_i
    a_j G_c (:meth:`~llama.science.background_trials.SkyBounds.overlap`), far tighter
    than the largest density within the product's reach where the map varies on the
    PSFs' scale, and S_ij >= :data:`_PAIR_MASS_LOW` ∫ G_i G_j x the lower one (on
    the sphere ∫ G_i G_j is within 3% of :func:`product_integral`).

    Parameters
    ----------
    sky : SkyBounds
        The map's pyramid.
    ra_i, dec_i, sigma_i, ra_j, dec_j, sigma_j : (k,) float64
        The pairs' members [rad].
    rows : (k, nb) float64
        a_i a_j per sin(dec) band (:data:`~llama.science.signal_tables.SINDEC_EDGES`).
    kind : int
        0 O3's Gaussian, 1 von Mises-Fisher.
    d : (k,) float64, optional
        The pairs' separations [rad] (computed when not given).

    Returns
    -------
    lo, hi : (k,) float64

    Examples
    --------
    >>> from llama.science.background_trials import SkyBounds
    >>> from llama.science.skymap import SkyMap
    >>> sky = SkyBounds(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1))
    >>> s = np.radians([1.0])
    >>> lo, hi = pair_annulus_bound(sky, 0.0 * s, 0.0 * s, s, s, 0.0 * s, s, np.ones((1, 18)))
    >>> want = product_integral(s, s, s) / (4 * np.pi)   # a uniform map: rho ∫ G_i G_j
    >>> bool(0.96 * want[0] < lo[0] <= want[0] <= hi[0] < 1.01 * want[0])
    True
    """
    ra_i, dec_i, ra_j, dec_j = (np.asarray(a, dtype=np.float64) for a in (ra_i, dec_i, ra_j, dec_j))
    si, sj = np.asarray(sigma_i, dtype=np.float64), np.asarray(sigma_j, dtype=np.float64)
    d = _separation(ra_i, dec_i, ra_j, dec_j) if d is None else d
    if kind == 1:  # the product of two vMF densities is one: centre and kappa exact
        ui = np.stack([np.cos(dec_i) * np.cos(ra_i), np.cos(dec_i) * np.sin(ra_i), np.sin(dec_i)])
        uj = np.stack([np.cos(dec_j) * np.cos(ra_j), np.cos(dec_j) * np.sin(ra_j), np.sin(dec_j)])
        v = ui / si**2 + uj / sj**2
        c_ra = np.arctan2(v[1], v[0]) % (2.0 * math.pi)
        c_dec = np.arctan2(v[2], np.hypot(v[0], v[1]))
        s_c = 1.0 / np.sqrt(np.sqrt(np.sum(v * v, axis=0)))
    else:
        c_ra, c_dec = _towards(ra_i, dec_i, ra_j, dec_j, d, d * si**2 / (si**2 + sj**2))
        s_c = _PAIR_PSF_WIDER * si * sj / np.sqrt(si**2 + sj**2)
    u_lo, u_hi, _ = sky.overlap(c_ra, c_dec, s_c, rows, kind)
    mass = product_integral(d, si, sj, kind)
    low = _PAIR_MASS_LOW if kind == 0 else 1.0 - 1e-9  # vMF: exact
    return low * mass * u_lo, mass * u_hi


def product_integral(d, sigma_i, sigma_j, kind: int = 0) -> np.ndarray:
    """∫ G_i G_j dΩ over the sky for two PSFs ``d`` apart [sr⁻¹] (angles [rad]).

    O3's Gaussian: the planar value exp(-d² / 2 s²) / (2 pi s²), s² = sigma_i² +
    sigma_j², times :data:`_SPHERE_MARGIN` (on the sphere it is up to 1.7% larger for
    sigma 3 deg and d = 6 (sigma_i + sigma_j), by brute-force quadrature). von
    Mises-Fisher (kind 1): exact, the product of two vMF densities being one, with
    K = |kappa_i n_i + kappa_j n_j|.

    Examples
    --------
    >>> s = np.radians(1.0)
    >>> g = product_integral(0.0, s, s) / _SPHERE_MARGIN
    >>> v = product_integral(0.0, s, s, kind=1)
    >>> bool(abs(g * 4 * np.pi * s**2 - 1) < 1e-12), bool(abs(v / g - 1) < 1e-3)
    (True, True)
    """
    d = np.asarray(d, dtype=np.float64)
    si2, sj2 = np.asarray(sigma_i, dtype=np.float64) ** 2, np.asarray(sigma_j, dtype=np.float64) ** 2  # fmt: skip
    if kind == 1:
        ki, kj = 1.0 / si2, 1.0 / sj2
        big = np.sqrt(ki * ki + kj * kj + 2.0 * ki * kj * np.cos(d))
        norm = -np.expm1(-2.0 * ki) * -np.expm1(-2.0 * kj)
        return ki * kj * -np.expm1(-2.0 * big) * np.exp(big - ki - kj) / (2.0 * math.pi * big * norm)  # fmt: skip
    s2 = si2 + sj2
    return _SPHERE_MARGIN * np.exp(-0.5 * d * d / s2) / (2.0 * math.pi * s2)


#: Safety factor on :func:`interval_error_bounds`' model of a table's error.
_INTERVAL_SAFETY = 1.5


def interval_error_bounds(phi, mid_err, node_rtol: float) -> np.ndarray:
    """Per interval of a ring table, a bound of |looked-up S / true S - 1|.

    The cubic through nodes j-1 .. j+2 differs from the true log S by the
    interpolation error of log S, E(x) = f⁗(ξ)/24 Π(x - x_q), plus the interpolated
    node errors (each node within ``node_rtol``, the table kernel's tolerance), at most
    Λ(x) node_rtol with Λ = Σ |ℓ_q(x)| the Lagrange basis' Lebesgue function. At the
    midpoint the check saw ``mid_err`` against a value itself within node_rtol, so
    |E(mid)| <= mid_err + (Λ(mid) + 1) node_rtol; with f⁗ about constant over the
    stencil, |E| on the interval is at most max |Π| / |Π(mid)| times that. So

        bound = _INTERVAL_SAFETY x (ρ (mid_err + (Λ(mid) + 1) node_rtol) + max Λ node_rtol),

    with ρ and Λ computed for each interval's own (uneven) stencil at 9 points.
    NaN where ``mid_err`` is (an interval never checked).

    Examples
    --------
    >>> phi = np.arange(16) * (2 * np.pi / 16)
    >>> b = interval_error_bounds(phi, np.full(16, 1e-4), 1e-3)
    >>> bool(np.allclose(b, 1.5 * (1e-4 + 2.25e-3 + 1.25e-3)))   # even nodes: ρ 1, Λ 1.25
    True
    """
    k = phi.size
    j = np.arange(k)
    m = j[:, None] - 1 + np.arange(4)[None, :]
    wrap = m // k
    xs = phi[m - wrap * k] + wrap * (2.0 * math.pi) - phi[:, None]  # stencil about node j
    x = np.linspace(0.0, 1.0, 9)[None, :] * xs[:, 2:3]  # 9 points of interval j
    diff = x[:, :, None] - xs[:, None, :]  # (k, 9, 4)
    lam = np.zeros(x.shape)
    for q in range(4):
        others = [t for t in range(4) if t != q]
        num = np.prod(diff[:, :, others], axis=2)
        den = np.prod(xs[:, q : q + 1] - xs[:, others], axis=1)[:, None]
        lam += np.abs(num / den)
    prod = np.abs(np.prod(diff, axis=2))
    rho = prod.max(axis=1) / prod[:, 4]
    smooth = rho * (mid_err + (lam[:, 4] + 1.0) * node_rtol)
    return _INTERVAL_SAFETY * (smooth + lam.max(axis=1) * node_rtol)


def ring_table(
    evaluate, dec_rad: float, sigma_rad: float, floor: float, rtol: float = TABLE_RTOL,
    reach: np.ndarray | None = None, below=None, checks: bool = False,
):  # fmt: skip
    """Nodes and log values of one neutrino's overlap along its declination ring.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(phi) -> S`` at right ascensions ``phi`` [rad] (the exact kernel).
    dec_rad, sigma_rad : float
        The neutrino's declination and error [rad].
    floor : float
        S at or below it needs no relative accuracy.
    rtol : float
        Relative accuracy demanded at every interval's midpoint.
    reach : (c,) bool, optional
        Per RA column ``[2 pi q / c, 2 pi (q + 1) / c)`` of the ring, False where S is
        known to be at most ``floor`` (:meth:`TrialScreen.ring_reach`): no kernel call
        there, S counts as ``below(phi)`` (default 0), against which the cubic is
        checked there.
    below : callable, optional
        A cheap stand-in for S out of reach, at most ``floor`` (e.g. the map's density
        there times a(eps)): it keeps the order of lists far from the map.
    checks : bool
        Also return each interval's last check.

    Returns
    -------
    phi, logv : ndarray
        Sorted nodes in [0, 2 pi) and log(max(S, floor · 1e-30)) there, for
        :func:`kernels.ra_lookup.ring_lookup`.
    mid_err : ndarray, with ``checks``
        Per interval (node j to the next), |cubic / evaluate - 1| at its midpoint with
        its final stencil (at most ``rtol`` unless the interval is below the floor or
        at its smallest width); NaN where it was not checked (all four stencil nodes
        below floor / 10).

    Examples
    --------
    >>> import numpy as np
    >>> gauss = lambda phi: np.exp(-0.5 * ((phi - 2.0) / 0.05) ** 2)
    >>> phi, logv = ring_table(gauss, 0.0, 0.05, 1e-12)
    >>> x = np.linspace(1.8, 2.2, 101)
    >>> err = np.exp(KR.ring_interp(phi, logv, x)) / gauss(x) - 1
    >>> bool(np.max(np.abs(err)) < 1e-6), phi.size < 200
    (True, True)
    """
    arc = 2.0 * math.pi * max(math.cos(dec_rad), 0.0)
    k = max(_MIN_RING_NODES, math.ceil(arc / (_RING_SPACING_SIGMAS * sigma_rad)))
    phi = np.arange(k) * (2.0 * math.pi / k)
    clamp = floor * _CLAMP_BELOW_FLOOR
    log_floor = math.log(floor) if floor > 0 else -np.inf
    n_cols = 1 if reach is None else reach.size
    reach = np.ones(1, dtype=bool) if reach is None else np.asarray(reach, dtype=bool)
    col_width = 2.0 * math.pi / n_cols

    def log_value(x):
        """log S at x and whether the kernel ran (else S <= floor: the stand-in's log)."""
        ran = reach[(x // col_width).astype(np.int64) % n_cols]
        out = np.full(x.size, clamp)
        if below is not None and not ran.all():
            out[~ran] = np.clip(below(x[~ran]), clamp, floor)
        if ran.any():
            out[ran] = np.maximum(evaluate(x[ran]), clamp)
        return np.log(out), ran

    logv, known = log_value(phi)
    min_width = (2.0 * math.pi / k) / 2.0**_MAX_RING_LEVELS
    # Per interval j = [phi_j, phi_j+1): the log value at its midpoint once evaluated
    # (NaN before), and whether its cubic passed the check with its current stencil.
    mid_log = np.full(k, np.nan)
    mid_known = np.zeros(k, dtype=bool)
    passed = np.zeros(k, dtype=bool)
    mid_err = np.full(k, np.nan)
    for _ in range(_MAX_RECHECKS):
        n = phi.size
        width = np.append(phi[1:], phi[0] + 2.0 * math.pi) - phi
        # The cubic of interval j runs through nodes j-1 .. j+2. Where all four lie
        # below floor / 10, a feature (at least sigma wide) between nodes 4 sigma apart
        # is within 2 sigma of one of them, so its peak is below e^2 floor / 10 < floor.
        # A node the screen skipped may hold anything up to the floor.
        upper = np.where(known, logv, log_floor)
        top4 = np.maximum.reduce([np.roll(upper, s) for s in (1, 0, -1, -2)])
        # Intervals out of reach are checked too, against the stand-in (no kernel
        # call): next to a kernel value, the cubic could swing above the floor there.
        todo = np.flatnonzero((top4 > log_floor - math.log(10.0)) & ~passed)
        if todo.size == 0:
            break
        mid = phi[todo] + 0.5 * width[todo]
        fresh = np.flatnonzero(np.isnan(mid_log[todo]))
        if fresh.size:
            mid_log[todo[fresh]], mid_known[todo[fresh]] = log_value(mid[fresh])
        got = mid_log[todo]
        pred = KR.ring_interp(phi, logv, mid)
        err = np.abs(np.expm1(pred - got))
        mid_err[todo] = err
        good = err <= rtol
        # below the floor everywhere on the interval (ends, midpoint, prediction)
        top = np.maximum(np.maximum(logv[todo], logv[(todo + 1) % n]), np.maximum(pred, got))
        good |= (top <= log_floor) | (width[todo] <= min_width)
        passed[todo] = good
        split = todo[~good]
        if split.size == 0:
            continue
        # The midpoints of the failed intervals become nodes; the halves are unchecked.
        mid_split = phi[split] + 0.5 * width[split]
        phi = np.concatenate([phi, mid_split])
        logv = np.concatenate([logv, mid_log[split]])
        known = np.concatenate([known, mid_known[split]])
        mid_log[split] = np.nan
        mid_log = np.concatenate([mid_log, np.full(split.size, np.nan)])
        mid_known = np.concatenate([mid_known, np.zeros(split.size, dtype=bool)])
        mid_err[split] = np.nan
        mid_err = np.concatenate([mid_err, np.full(split.size, np.nan)])
        passed[split] = False
        passed = np.concatenate([passed, np.zeros(split.size, dtype=bool)])
        order = np.argsort(phi, kind="stable")
        phi, logv, known = phi[order], logv[order], known[order]
        mid_log, mid_known, passed = mid_log[order], mid_known[order], passed[order]
        mid_err = mid_err[order]
        # A new node changes the cubic of the 4 intervals whose stencil holds it, so
        # those already passed are checked again (from their kept midpoint values).
        new_at = np.flatnonzero(order >= n)
        for offset in (-2, -1, 0, 1):
            passed[(new_at + offset) % phi.size] = False
            mid_err[(new_at + offset) % phi.size] = np.nan
    if checks:
        return np.ascontiguousarray(phi), np.ascontiguousarray(logv), mid_err
    return np.ascontiguousarray(phi), np.ascontiguousarray(logv)


class ScrambleTrials:
    """Scramble trials of one observed list, decided by bounds (see the module docstring).

    Built once per event; :meth:`decide_batch` then takes the trials' right
    ascensions (the rest of each list is the observed one's) and the values the
    p-values compare with, and says of each trial whether its exact statistic is
    above, at or below each value: the exact method's counts, from table lookups
    wherever bounds suffice.

    Parameters
    ----------
    model : EventModel
        An O3 event model with ``distance="o3"`` (:func:`supports_screening`).
    ra, dec, sigma, energy, dt, zenith : array_like (n,)
        The observed list [deg, GeV, s]; zenith NaN: 90° + dec.
    rtol : float, optional
        Accuracy of the ring tables at their midpoints (:data:`TABLE_RTOL`, or
        :data:`COARSE_TABLE_RTOL` for coarse tables).
    n_trials : int, optional
        Trials expected. Up to 5,000 the tables are coarse (their nodes at the
        model's own kernel tolerance, wider bounds): cheaper to build than the
        trials' extra refinements cost. A neutrino whose table would need more kernel
        evaluations than this (a narrow PSF on a ring the map spans) is evaluated
        with the exact kernel at each trial's RA instead. From 1,000,000 (or unknown),
        the fine tables' nodes are 10x tighter still (:data:`_TIGHT_TABLE_KERNEL_RTOL`).
    node_rtol : float, optional
        The kernel's tolerance on the nodes of fine tables, instead of the one
        ``n_trials`` picks (at most the model's ``overlap_rtol``).

    Attributes
    ----------
    n_nodes : int
        Exact kernel evaluations spent on the tables.
    direct : (n,) bool
        Neutrinos without a table: the exact kernel at each trial's RA where the map
        is within reach (their S_i is then known, not bounded).
    coarse : bool
        Whether the tables are coarse (``n_trials`` up to 5,000).
    bound_rtol : float
        The widest relative width of the bounds of a looked-up S_i (about
        :data:`BOUND_RTOL` for the model's default overlap_rtol and fine tables; most
        intervals of a fine table give narrower ones, :func:`interval_error_bounds`).
    cut : float
        :data:`RESOLVED_FLOORS` times the list's floor (:meth:`bounds`).

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.skymap import SkyMap
    >>> from llama.science.odds import EventModel
    >>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
    >>> st = ScrambleTrials(m, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    >>> exact = m.evaluate_batch([200.0], [0.0], [1.0], [1e3], [0.0], [90.0], [0, 1]).odds
    >>> b = st.bounds([200.0])
    >>> bool(b.lo[0] <= exact[0] <= b.hi[0]), bool(b.hi[0] / b.lo[0] < 1.05)
    (True, True)
    """

    def __init__(
        self, model, ra, dec, sigma, energy, dt, zenith, rtol: float | None = None,
        n_trials: int | None = None, node_rtol: float | None = None,
    ):  # fmt: skip
        if not supports_screening(model):
            raise ValueError("ScrambleTrials needs an O3 EventModel with distance='o3'")
        f64 = np.float64
        ra, dec, sigma, energy, dt = (np.ascontiguousarray(a, dtype=f64).ravel() for a in (ra, dec, sigma, energy, dt))  # fmt: skip
        zen = np.ascontiguousarray(zenith, dtype=f64).ravel()
        zen = np.where(np.isfinite(zen), zen, 90.0 + dec)
        self.model = model
        self.n = n = ra.size
        self.dec, self.sigma, self.energy, self.dt, self.zenith = dec, sigma, energy, dt, zen
        self.bg = model.background_terms(zen, energy)
        # P_s1 per unit S_i, P_c and P_0: the model's own terms for S = 1 (no pairs).
        unit = copy.copy(model)
        unit.signal_overlap = lambda r, *_a, **_k: (np.ones(np.size(r)), np.ones(np.size(r)))
        unit.pair_overlap = lambda r, d, s, e_i, *_a, **_k: np.zeros(np.size(e_i))
        terms = unit.evaluate_batch(ra, dec, sigma, energy, dt, zen, [0, n], background_terms=self.bg).terms  # fmt: skip
        self.coef, self.p_c, self.p_0 = terms["p_h_s1"], terms["p_h_c"], terms["p_h_0"]
        self._pair_mode_o3 = model.choices["pairs"] == "o3"
        self._rotation = self._turn = None
        if self._pair_mode_o3 and model.t_gw_mjd is not None and n:
            self._rotation, self._turn = _frame_rotation(model, dec, dt)
        # Neutrinos that may pair in some scramble: a partner within the pair distance
        # in zenith (O3's rule) or declination, which scrambles keep (with a hair of
        # margin for roundings).
        lat = np.radians(zen if self._pair_mode_o3 else dec)
        reach = C.PAIR_SEPARATION_SIGMAS * (np.radians(sigma)[:, None] + np.radians(sigma)[None, :])  # fmt: skip
        may_pair = np.abs(lat[:, None] - lat[None, :]) < reach * (1.0 + 1e-9)
        np.fill_diagonal(may_pair, False)
        self._pairable = np.flatnonzero(may_pair.any(axis=1))
        # the ring tables
        rho_max = float(np.max(model.skymap.probdensity)) if model.skymap.probdensity.size else 0.0
        eps = np.ascontiguousarray(self.bg.energy_eval, dtype=f64)
        self._amax = model.tables.dec_rows(eps).max(axis=1) if n else np.empty(0)
        self._rho_max = rho_max
        self.floor = SCREEN_FLOOR * rho_max * self._amax
        # Fine tables: their kernel runs 10-100x tighter than the model's, so that the
        # bounds are mostly the exact kernel's own tolerance; coarse ones, at the model's.
        self.coarse = n_trials is not None and n_trials <= _COARSE_UP_TO_TRIALS
        if rtol is None:
            rtol = COARSE_TABLE_RTOL if self.coarse else TABLE_RTOL
        if node_rtol is None:
            many = n_trials is None or n_trials >= _TIGHT_FROM_TRIALS
            node_rtol = _TIGHT_TABLE_KERNEL_RTOL if many else _TABLE_KERNEL_RTOL
        tight = copy.copy(model)
        if not self.coarse:
            tight.overlap_rtol = min(model.overlap_rtol, node_rtol)
        # kernel calls per first node in reach (checks, refinement) x their cost in
        # exact ones: 5-9 measured on BAYESTAR maps, the fine tables' at rtol 1e-3
        # (1.4x that at 1e-4)
        per_node = (
            6.5 if self.coarse else (7.5 if tight.overlap_rtol >= _TABLE_KERNEL_RTOL else 10.5)
        )
        self._rows = model.tables.dec_rows(eps) if n else np.empty((0, 0))
        self._eps = eps
        self._screen = TrialScreen.for_model(model) if n else None
        self._build_tables(tight, rtol, per_node, n_trials)
        self._pair_statics(may_pair)
        self._sky = None  # the map's pyramid, for the pairs' second bound (_tighten_pairs)
        if not self.coarse and self._pairable.size >= 2:
            self._sky_bounds()  # built with the tables where many trials are expected
        self.cut = RESOLVED_FLOORS * float(self.odds_floor().sum()) if n else 0.0
        # the widest relative width of the bounds of a looked-up S_i (_s_bounds)
        share = _COARSE_TABLE_SHARE if self.coarse else _TABLE_SHARE
        self.bound_rtol = (1.0 + share) / (1.0 - model.overlap_rtol) - 1.0
        from kernels.overlap import ATOL

        # the exact kernels' absolute tolerances: ATOL x their rtol x the map's peak x
        # max a (one neutrino), x the product's mass x max a_i max a_j (a pair)
        self._atol = _ATOL_MARGIN * ATOL * model.overlap_rtol * rho_max * self._amax
        self._pair_atol = _ATOL_MARGIN * ATOL * model.overlap_rtol * rho_max
        self._screen_columns()

    def _build_tables(self, kernel, rtol, per_node, n_trials) -> None:
        """The ring tables (``node_offsets``, ``phi``, ``logv``, :func:`ring_table`) with
        ``kernel``, an EventModel at the tables' tolerance, and which neutrinos are
        ``direct`` instead: those whose table would cost more kernel calls
        (``per_node`` per first node) than ``n_trials``."""
        n, screen = self.n, self._screen
        phis, logs, shares = [], [], []
        share = _COARSE_TABLE_SHARE if self.coarse else _TABLE_SHARE
        self.n_nodes = 0
        self.direct = np.zeros(n, dtype=bool)  # exact kernel per trial, no table
        for i in range(n):
            d_i, s_i = math.radians(self.dec[i]), math.radians(self.sigma[i])
            ring = 2.0 * math.pi * math.cos(d_i) / s_i
            if n_trials is not None and per_node * ring / _RING_SPACING_SIGMAS > n_trials:
                self.direct[i] = True
            if self.direct[i] or self.coef[i] == 0.0 or not self.floor[i] > 0:
                # no table (a placeholder): S_i is exact, or the screen's bound alone
                phi = np.arange(_MIN_RING_NODES) * (2.0 * math.pi / _MIN_RING_NODES)
                logv = np.zeros(_MIN_RING_NODES)
                err = share
            else:

                def exact(phi, i=i):
                    self.n_nodes += phi.size
                    f = np.full
                    k = phi.size
                    return kernel.signal_overlap(np.degrees(phi), f(k, self.dec[i]), f(k, self.sigma[i]), f(k, self._eps[i]))[1]  # fmt: skip

                a_i = self._rows[i, _band(d_i)]

                def below(phi, d_i=d_i, a_i=a_i):  # as screened_model: rho there x a
                    return screen.density(phi, np.full(phi.size, d_i)) * a_i

                reach = screen.ring_reach(d_i, s_i)
                phi, logv, mid = ring_table(exact, d_i, s_i, self.floor[i], rtol, reach, below, checks=True)  # fmt: skip
                err = share
                if not self.coarse:
                    err = np.fmin(interval_error_bounds(phi, mid, kernel.overlap_rtol), share)
            phis.append(phi)
            logs.append(logv)
            shares.append(np.broadcast_to(err, phi.shape))
        sizes = [p.size for p in phis]
        self.node_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.phi = np.ascontiguousarray(np.concatenate(phis) if phis else np.empty(0))
        self.logv = np.ascontiguousarray(np.concatenate(logs) if logs else np.empty(0))
        # per interval, the table's share of the bounds' relative width
        self._share = np.ascontiguousarray(np.concatenate(shares) if shares else np.empty(0))
        # the same cubics as monomials, found through buckets (3x faster lookups)
        self._cubics = KR.ring_prepare(self.node_offsets, self.phi, self.logv, 2)

    def _screen_columns(self) -> None:
        """Per neutrino and RA column of the screen's grid on its ring: whether the map
        is within reach (``_reach``), and a bound of S_i there (``_s_max``: max a x the
        density near, tail included) as the exact kernel may give it (its tolerances
        added)."""
        n, screen, rtol = self.n, self._screen, self.model.overlap_rtol
        n_cols = 2 * _GRID_ROWS
        centres = (np.arange(n_cols) + 0.5) * (2.0 * math.pi / n_cols)
        self._reach = np.ones((n, n_cols), dtype=bool)
        self._s_max = np.full((n, n_cols), np.inf)
        for i in range(n):
            d_i, s_i = np.full(n_cols, math.radians(self.dec[i])), np.full(n_cols, math.radians(self.sigma[i]))  # fmt: skip
            near = np.minimum.reduce([screen.density_near(centres, d_i, s_i, w) for w in (0, 1, 2)])
            self._reach[i] = screen.ring_reach(d_i[0], s_i[0])
            self._s_max[i] = (self._amax[i] * near + self._atol[i]) / (1.0 - rtol)

    def _pair_statics(self, near) -> None:
        """What a doublet (i, j), i < j, of a scramble adds per unit S_ij
        (``_pair_unit``: the model's own ``pair_terms`` on the two-neutrino list with
        equal azimuths, so that it pairs; 0, NaN or inf as O3's quirks give), and its
        partner's a(eps) row (O3's rule may evaluate it at another energy) as the
        largest ratio to j's own row and its largest value: a scramble changes none of
        them, only whether the two pair and S_ij. ``near``: which may pair."""
        n = self.n
        self._pair_unit = np.zeros((n, n))
        self._pair_ratio = np.zeros((n, n))
        self._pair_amax = np.zeros((n, n))
        # per pair and sin(dec) band, a_i a_j as the pair kernel weights it
        self._pair_rows = np.zeros((n, n, SINDEC_EDGES.size - 1))
        for i, j in zip(*np.nonzero(np.triu(near, 1)), strict=True):
            sel = np.array([i, j])
            seen = []

            def unit(ra, dec, sig, eps_i, eps_j, pi, pj, key=None, seen=seen):
                seen.append(eps_j)
                return np.ones(pi.size)

            bg = type(self.bg)(*(a[sel] for a in self.bg))
            first, value = self.model.pair_terms(
                np.zeros(2), self.dec[sel], self.sigma[sel], self.energy[sel], self.dt[sel],
                self.zenith[sel], np.zeros(2), bg, np.array([0, 2]), overlap=unit,
            )  # fmt: skip
            if first.size == 0:  # apart by the margin's hair: never pairs
                continue
            self._pair_unit[i, j] = value[0]
            if seen:
                rows_j = self.model.tables.dec_rows(seen[0])[0]
                with np.errstate(divide="ignore", invalid="ignore"):  # inf: j's own a is 0
                    self._pair_ratio[i, j] = np.where(rows_j > 0, rows_j / self._rows[j], 0.0).max()  # fmt: skip
                self._pair_amax[i, j] = rows_j.max()
                self._pair_rows[i, j] = self._rows[i] * rows_j

    def _find_pairs(self, ra_deg, ra, m):
        """The doublets (pi, pj) of m scrambles, indices into the m x n entries, by the
        model's rule, looked for only among the neutrinos that can pair at all
        (:attr:`_pairable`: a scramble keeps each one's zenith and declination, and a
        pair's separation is at least their difference); and the azimuths [deg] of all
        entries when every neutrino can pair (else None)."""
        n, cand = self.n, self._pairable
        none = np.empty(0, np.int64)
        if cand.size < 2:
            return none, none, None
        nc = cand.size
        every = nc == n  # all may pair: one azimuth per entry, kept for the pair terms
        cols = np.arange(m * n) if every else (np.arange(m)[:, None] * n + cand).ravel()
        sig = np.tile(np.radians(self.sigma[cand]), m)
        az = None
        if self._pair_mode_o3:
            az = self._azimuth(ra_deg[cols], ra[cols], None if every else cand)
            lon, lat, mode = np.radians(az), np.tile(np.radians(self.zenith[cand]), m), KO.PAIR_O3_FLAT  # fmt: skip
        else:
            lon, lat, mode = ra[cols], np.tile(np.radians(self.dec[cand]), m), KO.PAIR_GREAT_CIRCLE
        pi, pj = KO.find_pairs(lon, lat, sig, tile_offsets(nc, m), C.PAIR_SEPARATION_SIGMAS, mode)
        return cols[pi], cols[pj], (az if every else None)

    def _pair_overlap_bound(self, ra, dec, sigma, s_hi, pi, pj, tight: bool = False):
        """Upper bounds of the exact pair kernel's S_ij for the doublets (pi, pj) (indices
        into ``ra``, ``dec``, ``sigma`` [rad] and ``s_hi``, bounds of the true S_i):
        :func:`pair_overlap_bound` or the density bound, with margins; with ``tight``
        also :meth:`_pair_annulus_bound` (a few µs a pair: for the trials that hold
        an observed value)."""
        n = self.n
        i, j = pi % n, pj % n
        ratio, a_i, a_j, kind = self._pair_ratio[i, j], self._amax[i], self._pair_amax[i, j], self.model.psf_kind  # fmt: skip
        split = pair_overlap_bound(
            ra[pi], dec[pi], sigma[pi], ra[pj], dec[pj], sigma[pj], s_hi[pi],
            ratio * s_hi[pj], a_i, a_j, kind,
        )  # fmt: skip
        # And S_ij <= max a_i max a_j (max rho near the product) ∫ G_i G_j: the
        # product's mass lies about its weighted centre, within sigma_c <= min sigma.
        si, sj = sigma[pi], sigma[pj]
        d = _separation(ra[pi], dec[pi], ra[pj], dec[pj])
        c_ra, c_dec = _towards(ra[pi], dec[pi], ra[pj], dec[pj], d, d * si**2 / (si**2 + sj**2))
        # Any reach bounds S_ij: the screen's own (tight near the map) or one or two
        # classes up (wider discs, but the mass beyond them ~1e-45 and ~1e-79, so
        # pairs far from the map get a bound far below the floor).
        s_min = np.minimum(si, sj)
        near = self._screen.density_near(c_ra, c_dec, s_min)
        for wider in (1, 2):
            near = np.fmin(near, self._screen.density_near(c_ra, c_dec, s_min, wider))
        mass = a_i * a_j * product_integral(d, si, sj, kind)
        # the pair kernel's absolute tolerance: ATOL x its rtol x the map's peak x the
        # product's mass x max a_i max a_j
        bound = _PAIR_BOUND_MARGIN * np.fmin(split, mass * near) + self._pair_atol * mass
        if tight:
            bound = np.fmin(bound, self._pair_annulus_bound(ra, dec, sigma, pi, pj, d)[1])
        return bound

    def _pair_annulus_bound(self, ra, dec, sigma, pi, pj, d):
        """:func:`pair_annulus_bound` of the doublets (pi, pj) with margins, the pair
        kernel's rtol and absolute floor: (lo, hi) of the pair kernel's S_ij."""
        n = self.n
        i, j = pi % n, pj % n
        t_lo, t_hi = pair_annulus_bound(
            self._sky_bounds(), ra[pi], dec[pi], sigma[pi], ra[pj], dec[pj],
            sigma[pj], self._pair_rows[i, j], self.model.psf_kind, d,
        )  # fmt: skip
        # the pair kernel's absolute floor (ATOL rtol rho_max max a_i max a_j ∫ G_i G_j),
        # with the margin of its far-tail errors
        mass = product_integral(d, sigma[pi], sigma[pj], self.model.psf_kind)
        floor = _PAIR_FLOOR_MARGIN * self._pair_atol * mass * self._amax[i] * self._pair_amax[i, j]  # fmt: skip
        # the kernel within rtol of the true S_ij plus its floor (twice that in the
        # far tail, as the upper bound's margins allow too)
        r = _PAIR_FLOOR_MARGIN * self.model.overlap_rtol
        return np.maximum(t_lo * (1.0 - r) - floor, 0.0), _PAIR_BOUND_MARGIN * t_hi + floor

    def evaluate_batch(
        self, ra_deg, dec_deg=None, sigma_deg=None, energy_gev=None, dt_s=None, zenith_deg=None,
        offsets=None, *, azimuth_deg=None, background_terms=None,
    ):  # fmt: skip
        """The exact statistic (``EventModel.evaluate_batch``) of m scrambles:
        ``ra_deg`` holds m x n right ascensions [deg], list after list; the other
        arguments are ignored (they are the observed list's, tiled). For callers that
        want the numbers; p-values need only :meth:`decide_batch`.

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> from llama.science.odds import EventModel
        >>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
        >>> st = ScrambleTrials(m, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
        >>> exact = m.evaluate_batch([200.0], [0.0], [1.0], [1e3], [0.0], [90.0], [0, 1]).odds
        >>> bool(st.evaluate_batch([200.0]).odds[0] == exact[0])
        True
        """
        from llama.science.odds import BatchOdds

        ra_deg = np.ascontiguousarray(ra_deg, dtype=np.float64).ravel()
        n = self.n
        if n == 0:
            m = 0 if offsets is None else np.size(offsets) - 1
            return BatchOdds(np.zeros(m), np.empty(0), tile_offsets(0, m), {})
        if ra_deg.size % n:
            raise ValueError(f"ra_deg must hold whole lists of {n} neutrinos, got {ra_deg.size}")
        m = ra_deg.size // n
        bg = type(self.bg)(*(np.tile(a, m) for a in self.bg))
        tile = (np.tile(a, m) for a in (self.dec, self.sigma, self.energy, self.dt, self.zenith))
        return self.model.evaluate_batch(ra_deg, *tile, tile_offsets(n, m), background_terms=bg)

    def _s_bounds(self, ra_deg, ra, m):
        """Per entry of m lists (list after list): (the looked-up S_i, a lower and an
        upper bound of the exact kernel's S_i there, as ``EventModel.evaluate_batch``
        computes it).

        From a table: the true S within the share of the interval the RA falls in
        (:func:`interval_error_bounds` for fine tables, at most the global share;
        at most :attr:`bound_rtol` in all), the exact kernel within its rtol of that,
        plus its absolute tolerance where the looked-up value is above :data:`_RELATIVE_ABOVE_FLOORS`
        floors within the map's reach; else within 1.1 floors, and never below minus
        the kernel's absolute tolerance. Everywhere at most the screen's bound (max a
        x the density within reach). ``direct`` neutrinos: the exact kernel's own
        value within reach (``known``; bounds with a hair of margin for the roundings
        of sums, so that a trial is known only once :meth:`_exact` gave it), else the
        screened stand-in within the bounds above.

        Returns
        -------
        s, lo, hi : ndarray
        known : ndarray of bool
            Where S_i is the exact kernel's (``direct`` within reach).
        """
        n = self.n
        known = np.zeros(ra.size, dtype=bool)
        # the true S within the table's share, the kernel's within its rtol of that
        untabled = (self.coef == 0.0) | ~(self.floor > 0)
        s, lo, hi = KR.ring_s_bounds(
            self.node_offsets, self.phi, *self._cubics, self._share, ra, self._s_max,
            self._reach, self.floor, self._atol, untabled, self.model.overlap_rtol,
            _RELATIVE_ABOVE_FLOORS, _BOUND_FLOOR,
        )  # fmt: skip
        if not self.direct.any():
            return s, lo, hi, known
        n_cols = self._s_max.shape[1]
        col = np.floor((ra % (2.0 * math.pi)) / (2.0 * math.pi / n_cols)).astype(np.int64) % n_cols  # fmt: skip
        for i in np.flatnonzero(self.direct):
            q = np.arange(i, ra.size, n)
            in_reach = self._reach[i, col[q]]
            near, far = q[in_reach], q[~in_reach]
            # out of reach: the screened stand-in, rho there x a (at most the floor)
            band = self._rows[i, _band(math.radians(self.dec[i]))]
            s[far] = self._screen.density(ra[far], np.full(far.size, math.radians(self.dec[i]))) * band  # fmt: skip
            lo[far], hi[far] = -self._atol[i], self._s_max[i, col[far]]
            if near.size:
                k = near.size
                f = np.full
                s[near] = self.model.signal_overlap(ra_deg[near], f(k, self.dec[i]), f(k, self.sigma[i]), f(k, self._eps[i]))[1]  # fmt: skip
                lo[near] = s[near] - 1e-12 * np.abs(s[near])
                hi[near] = s[near] + 1e-12 * np.abs(s[near])
                known[near] = True
        return s, lo, hi, known

    def _unit_odds(self) -> np.ndarray:
        """Per neutrino, O_i per unit S_i without doublets: P_s1 / S / (P_c + P_0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.coef / (self.p_c + self.p_0)

    def bounds(self, ra_deg) -> TrialBounds:
        """Bounds of the ranked statistic h of m scrambles, from lookups alone.

        Per trial, O_1 is the statistic without doublets from the looked-up S_i and D
        the sum of its doublets' bound terms (:meth:`_pair_bounds`; a doublet's term
        lies in [0, bound]), so no pair kernel runs. A trial is ``resolved`` when O_1
        + D reaches :data:`RESOLVED_FLOORS` times its floor (:meth:`odds_floor`), the
        :attr:`cut`: its h is the exact statistic, or the cut where that is larger
        (so thresholds below the cut never need a resolved trial refined), bounded
        with each exact S_i within the bounds of :meth:`_s_bounds`; below, where
        neither the tables nor the exact kernel resolve the map, h is O_1 + D itself
        (known, ``lo == hi``). Trials with a term that is not finite (O3's B_j = 0)
        get [cut, inf).

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> from llama.science.odds import EventModel
        >>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
        >>> st = ScrambleTrials(m, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
        >>> b = st.bounds([200.0, 300.0])
        >>> kw = dict(dec_deg=[0.0] * 2, sigma_deg=[1.0] * 2, energy_gev=[1e3] * 2, dt_s=[0.0] * 2)
        >>> exact = m.evaluate_batch([200.0, 300.0], **kw, zenith_deg=[90.0] * 2, offsets=[0, 1, 2]).odds
        >>> bool(np.all((b.lo <= exact) & (exact <= b.hi))), b.resolved.tolist()
        (True, [True, True])
        """
        return self._bounds(np.ascontiguousarray(ra_deg, dtype=np.float64).ravel())[0]

    def _bounds(self, ra_deg):
        """(:meth:`bounds`, per trial the exact statistic's bounds without doublets,
        per row the doublets' bound terms (first members; for the observed list), per
        entry an upper bound of the true S_i)."""
        n = self.n
        m = ra_deg.size // n if n else 0
        if n == 0:
            z = np.zeros(m)
            return TrialBounds(z, z.copy(), np.zeros(m, dtype=bool), z.copy()), z, z, z, z
        offsets = tile_offsets(n, m)
        ra = np.radians(ra_deg)
        s, s_lo, s_hi, _ = self._s_bounds(ra_deg, ra, m)
        p_c, p_0 = np.tile(self.p_c, m), np.tile(self.p_0, m)
        none_i, none_f = np.empty(0, np.int64), np.empty(0)
        # O_1 summed as evaluate_batch sums it (the same roundings)
        o_1 = KO.segment_sum(KO.combine_odds(s * np.tile(self.coef, m), none_i, none_f, p_c, p_0)[0], offsets)  # fmt: skip
        unit = np.tile(self._unit_odds(), m)
        # The exact kernel's S_i may fall below 0 by its absolute tolerance: with a
        # doublet term added, O_i is then just below the term, not 0.
        with np.errstate(invalid="ignore"):  # inf * 0 where a unit odds is not finite
            e_lo = KO.segment_sum(unit * s_lo, offsets)
            e_hi = KO.segment_sum(unit * s_hi, offsets)
        s_true = self._true_s_max(s_hi, m)
        rows_d, odd = self._pair_bounds(ra_deg, ra, s_true, m)
        pair_hi = KO.segment_sum(rows_d, offsets)
        ranked = o_1 + pair_hi
        resolved = ranked >= self.cut
        # h = max(exact, cut): no threshold below the cut needs a resolved trial refined
        lo = np.where(resolved, np.maximum(e_lo, self.cut), ranked)
        hi = np.where(resolved, np.maximum(e_hi + pair_hi, self.cut), ranked)
        odd |= ~(np.isfinite(lo) & np.isfinite(hi))
        resolved |= odd
        lo[odd], hi[odd] = self.cut, np.inf
        return TrialBounds(lo, hi, resolved, np.clip(o_1, lo, hi)), e_lo, e_hi, rows_d, s_true

    def _true_s_max(self, s_hi, m):
        """An upper bound of the true S_i from one of the exact kernel's: the kernel is
        within its rtol of the value plus its absolute tolerance."""
        return (s_hi + np.tile(self._atol, m)) * (1.0 + self.model.overlap_rtol)

    def _pair_bounds(self, ra_deg, ra, s, m, tight: bool = False):
        """Per row (its doublets as first member), the doublets' bound terms over P_c +
        P_0 (what they may add to O_i), and per trial whether any term is not
        finite: each term is the pair's unit term (:meth:`_pair_statics`, the model's
        own) times the bound of S_ij from ``s``, bounds of the true S_i (``tight``:
        see :meth:`_pair_overlap_bound`)."""
        n = self.n
        rows_d = np.zeros(m * n)
        odd = np.zeros(m, dtype=bool)
        pi, pj, _ = self._find_pairs(ra_deg, ra, m)
        if pi.size == 0:
            return rows_d, odd
        i, j = pi % n, pj % n
        sig = np.tile(np.radians(self.sigma), m)
        dec = np.tile(np.radians(self.dec), m)
        bound = self._pair_overlap_bound(ra, dec, sig, s, pi, pj, tight)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 x inf: O3's quirks, exact
            # a hair of margin for the model's roundings of its product
            share = self._pair_unit[i, j] * bound * (1.0 + 1e-12) / (self.p_c + self.p_0)[i]
        row = pi
        fin = np.isfinite(share)
        rows_d += np.bincount(row, weights=np.where(fin, share, 0.0), minlength=m * n)
        odd[row[~fin] // n] = True
        return rows_d, odd

    def _pair_parts(self, ra_deg, trials, first_row, coarse: bool = False):
        """Per trial, bounds (lo, hi) of what its doublets with first member
        ``first_row`` (its place in the list) add to the exact statistic: their terms
        (``EventModel.pair_terms``, the pair overlaps of the others not computed) over
        that neutrino's P_c + P_0. Exact (lo == hi, the exact method's number), or
        with ``coarse`` from the pair kernel at rtol :data:`_COARSE_PAIR_RTOL`: the
        kernel stops once the sum of its bounds on what is left is below rtol times
        its value plus its absolute floor, so the exact method's S_ij (the same
        kernel at the model's rtol) lies within both tolerances of it."""
        n, k = self.n, trials.size
        rows = (trials[:, None] * n + np.arange(n)).ravel()
        sub = ra_deg[rows]
        lo_out, hi_out = np.zeros(k), np.zeros(k)
        found = self._pair_args(sub, np.radians(sub), k)
        if found is None:
            return lo_out, hi_out
        sub_trials, args = found
        # the sub-batch holds only trials with a doublet: its row r is trial sub_trials[r // n]
        wanted = first_row[sub_trials]
        cache = []

        def overlap(side, ra, dec, sig, eps_i, eps_j, pi, pj, key=None):
            value = np.zeros(pi.size)
            sel = np.flatnonzero(pi % n == wanted[pi // n])
            if not sel.size:
                return value
            if not coarse:
                value[sel] = self.model.pair_overlap(ra, dec, sig, eps_i[sel], eps_j[sel], pi[sel], pj[sel], key)  # fmt: skip
                return value
            if not cache:
                cache.append(self._coarse_pair_overlap(ra, dec, sig, eps_i[sel], eps_j[sel], pi[sel], pj[sel], key))  # fmt: skip
            value[sel] = cache[0][side]
            return value

        shares = []
        for side in (0, 1) if coarse else (0,):
            first, value = self.model.pair_terms(*args, overlap=lambda *a, side=side: overlap(side, *a))  # fmt: skip
            keep = first % n == wanted[first // n]
            first, value = first[keep], value[keep]
            with np.errstate(divide="ignore", invalid="ignore"):
                share = value / (self.p_c + self.p_0)[first % n]
            shares.append(np.bincount(sub_trials[first // n], weights=share, minlength=k))
        return lo_out + shares[0], hi_out + shares[-1]

    def _coarse_pair_overlap(self, ra, dec, sig, eps_i, eps_j, pi, pj, key):
        """(lo, hi) of the exact method's S_ij from the pair kernel at
        :data:`_COARSE_PAIR_RTOL` (see :meth:`_pair_parts`)."""
        from kernels.overlap import ATOL, psf_pair_overlap_prepared

        m, tables, kind = self.model, self.model.tables, self.model.psf_kind
        rows_i, rows_j = tables.dec_rows(eps_i), tables.dec_rows(eps_j)
        value = psf_pair_overlap_prepared(
            m.prepared_map(key), ra[pi], dec[pi], sig[pi], rows_i, ra[pj], dec[pj], sig[pj],
            rows_j, SINDEC_EDGES, kind, rtol=_COARSE_PAIR_RTOL, weighted_only=True,
        )[1]  # fmt: skip
        r_c, r_e = _COARSE_PAIR_RTOL, m.overlap_rtol
        # the kernels' absolute floors (twice, for margin): ATOL rtol (largest density)
        # x min PSF peak x max a_i x max a_j
        scale = 2.0 * ATOL * self._rho_max * np.minimum(_psf_at(0.0, sig[pi], kind), _psf_at(0.0, sig[pj], kind))  # fmt: skip
        scale = scale * rows_i.max(axis=1) * rows_j.max(axis=1)
        slack = (r_c + r_e) * scale
        return (value * (1.0 - r_c) - slack) / (1.0 + r_e), (value * (1.0 + r_c) + slack) / (1.0 - r_e)  # fmt: skip

    def exact_above(self) -> float:
        """Counts of trials above (or at) a threshold at least this large are the exact
        statistic's: an unresolved trial (O_1 + D below the cut) has an exact
        statistic below (1 + :attr:`bound_rtol`) times the cut plus 1.1 floors."""
        floor = float(self.odds_floor().sum())
        return ((1.0 + self.bound_rtol) * RESOLVED_FLOORS + _BOUND_FLOOR) * floor

    def thresholds(self, ra_deg, odds_exact, odds_i_exact) -> tuple[float, np.ndarray]:
        """The observed list's ranked statistic h (event, per neutrino; :meth:`bounds`).

        The event: ``odds_exact`` (what ``EventModel.evaluate`` gave, or the cut
        where that is larger) where the list is resolved, else O_1 + D. Per neutrino,
        by its own O_1,i + D_i against the list's cut: ``odds_i_exact`` or O_1,i +
        D_i (not raised to the cut: an O_i below it is then decided against every
        resolved trial without refining any, while a value at the cut would tie
        with every resolved trial whose exact statistic is below it).
        """
        ra_deg = np.ascontiguousarray(ra_deg, dtype=np.float64).ravel()
        odds_i_exact = np.asarray(odds_i_exact, dtype=np.float64)
        if self.n == 0:
            return float(odds_exact), odds_i_exact
        b, _, _, rows_d, _ = self._bounds(ra_deg)
        event = max(float(odds_exact), self.cut) if b.resolved[0] else float(b.lo[0])
        s = self._s_bounds(ra_deg, np.radians(ra_deg), 1)[0]
        none_i, none_f = np.empty(0, np.int64), np.empty(0)
        ranked_i = KO.combine_odds(s * self.coef, none_i, none_f, self.p_c, self.p_0)[0] + rows_d
        resolved_i = (ranked_i >= self.cut) | ~np.isfinite(ranked_i)
        per_nu = np.where(resolved_i, odds_i_exact, ranked_i)
        return event, per_nu

    def decide_batch(self, thresholds, ra_deg, *_lists, **_background) -> TrialBounds:
        """:meth:`bounds` of m scrambles (right ascensions ``ra_deg``, list after list;
        the other arguments of ``evaluate_batch`` are ignored), refined until no
        interval holds one of ``thresholds``: the trials whose interval does get exact
        parts of their statistic, widest first (:meth:`_refine`), and those still
        undecided the whole exact statistic (``EventModel.evaluate_batch``). Then
        every count of trials above or at a threshold is the one their h gives.

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> from llama.science.odds import EventModel
        >>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
        >>> st = ScrambleTrials(m, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
        >>> b = st.bounds([200.0, 300.0])
        >>> d = st.decide_batch([b.point[0]], [200.0, 300.0])  # uniform map: both hold it
        >>> d.n_refined, bool(np.all(d.lo == d.hi))
        (2, True)
        >>> st.decide_batch([1e300], [200.0, 300.0]).n_refined
        0
        """
        ra_deg = np.ascontiguousarray(ra_deg, dtype=np.float64).ravel()
        if self.n == 0:  # empty lists: statistic 0, as evaluate_batch gives
            offsets = _lists[5] if len(_lists) > 5 else _background.get("offsets")
            z = np.zeros(0 if offsets is None else np.size(offsets) - 1)
            return TrialBounds(z, z.copy(), np.ones(z.size, dtype=bool), z.copy())
        b, e_lo, e_hi, rows_d, s_true = self._bounds(ra_deg)
        lo, hi = b.lo.copy(), b.hi.copy()
        t = np.sort(np.asarray(thresholds, dtype=np.float64))
        t = t[~np.isnan(t)]

        def holding(at):
            return at[np.searchsorted(t, hi[at], side="right") > np.searchsorted(t, lo[at], side="left")]  # fmt: skip

        todo = holding(np.flatnonzero(lo < hi))
        if todo.size == 0:
            return b
        rows_lo = self._tighten_pairs(ra_deg, todo[np.isfinite(hi[todo])], lo, hi, e_lo, e_hi, rows_d, s_true)  # fmt: skip
        todo = holding(todo)
        if todo.size == 0:
            return TrialBounds(lo, hi, b.resolved, np.clip(b.point, lo, hi))
        left = todo[np.isfinite(hi[todo])]  # not finite: the whole statistic
        if left.size:
            self._refine(ra_deg, left, lo, hi, rows_d, rows_lo, holding)
        left = holding(todo)
        if left.size:
            lo[left] = hi[left] = np.maximum(self._exact(ra_deg, left), self.cut)
        point = np.where(lo == hi, lo, b.point)
        return TrialBounds(lo, hi, b.resolved, point, int(left.size))

    def _sky_bounds(self):
        """The map's min/max pyramid (:class:`~llama.science.background_trials.SkyBounds`,
        kept per model), built on first use."""
        if self._sky is None:
            from llama.science.background_trials import SkyBounds

            self._sky = SkyBounds.for_model(self.model)
        return self._sky

    def _tighten_pairs(self, ra_deg, trials, lo, hi, e_lo, e_hi, rows_d, s_true) -> np.ndarray:
        """Narrow ``lo``, ``hi`` of resolved ``trials`` (and their rows of ``rows_d``) in
        place by the pyramid's pair bounds (:meth:`_pair_annulus_bound`), for the few
        trials that hold an observed value: the lookups' doublet bounds are often
        10-10^5 times the exact terms where a pair's product lies in the map's slope,
        and give no lower bound. Returns per row (all m x n) a lower bound of its
        doublet terms (0 elsewhere)."""
        n, k = self.n, trials.size
        rows_lo = np.zeros(rows_d.size)
        if k == 0 or self._pairable.size < 2:
            return rows_lo
        if self._sky is None:  # the pyramid (6-12 ms) only where it saves more pair looks
            rows = (trials[:, None] * n + np.arange(n)).ravel()
            doublets = rows_d[rows].reshape(k, n).sum(axis=1) > e_hi[trials] - e_lo[trials]
            if np.count_nonzero(doublets) < _PYRAMID_WORTH:
                return rows_lo
        rows = (trials[:, None] * n + np.arange(n)).ravel()
        sub = ra_deg[rows]
        ra = np.radians(sub)
        pi, pj, _ = self._find_pairs(sub, ra, k)
        if pi.size == 0:
            return rows_lo
        i, j = pi % n, pj % n
        sig, dec = np.tile(np.radians(self.sigma), k), np.tile(np.radians(self.dec), k)
        d = _separation(ra[pi], dec[pi], ra[pj], dec[pj])
        b_lo, b_hi = self._pair_annulus_bound(ra, dec, sig, pi, pj, d)
        b_hi = np.fmin(b_hi, self._pair_overlap_bound(ra, dec, sig, s_true[rows], pi, pj))
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 x inf: O3's quirks
            unit = self._pair_unit[i, j] / (self.p_c + self.p_0)[i]
            share_hi = unit * b_hi * (1.0 + 1e-12)
            share_lo = unit * b_lo * (1.0 - 1e-12)
        fin = np.isfinite(share_hi) & np.isfinite(share_lo) & (unit >= 0.0)
        keep = np.ones(k, dtype=bool)
        keep[pi[~fin] // n] = False  # O3's quirks: as the lookups left them
        new_hi = np.bincount(pi, weights=np.where(fin, share_hi, 0.0), minlength=k * n)
        new_lo = np.bincount(pi, weights=np.where(fin, share_lo, 0.0), minlength=k * n)
        new_hi = np.fmin(new_hi, rows_d[rows])  # both bound each row's doublet terms
        sel = np.repeat(keep, n)
        rows_d[rows[sel]] = new_hi[sel]
        rows_lo[rows[sel]] = new_lo[sel]
        t = trials[keep]
        with np.errstate(invalid="ignore"):
            up = np.maximum(e_hi[t] + new_hi.reshape(k, n)[keep].sum(axis=1), self.cut)
            down = np.maximum(e_lo[t] + new_lo.reshape(k, n)[keep].sum(axis=1), self.cut)
        hi[t] = np.minimum(hi[t], up)
        lo[t] = np.maximum(lo[t], np.minimum(down, hi[t]))
        return rows_lo

    def _refine(self, ra_deg, trials, lo, hi, rows_d, rows_lo, holding) -> None:
        """Narrow ``lo``, ``hi`` of ``trials`` in place while they hold a threshold: per
        trial and round, the widest part of its bounds is made exact, either one
        neutrino's S_i (the exact kernel's, as ``EventModel.evaluate_batch`` computes
        it: the same call, the same arguments) or the doublet terms of one first
        member (the pair kernel; bounded by ``rows_lo``, ``rows_d``, per row, before). Usually one
        neutrino near the map makes a trial's statistic, and one kernel call decides
        it instead of the whole list's."""
        n, k = self.n, trials.size
        rows = (trials[:, None] * n + np.arange(n)).ravel()
        ra_sub = ra_deg[rows]
        _, s_lo, s_hi, s_known = self._s_bounds(ra_sub, np.radians(ra_sub), k)
        unit_n = self._unit_odds()
        unit = np.tile(unit_n, k)
        # columns 0 .. n-1: each neutrino's P_s1 share; n .. 2n-1: its doublets' terms
        with np.errstate(invalid="ignore"):  # inf * 0 where a unit odds is not finite
            part_lo = np.concatenate([(unit * s_lo).reshape(k, n), rows_lo[rows].reshape(k, n)], axis=1)  # fmt: skip
            part_hi = np.concatenate([(unit * s_hi).reshape(k, n), rows_d[rows].reshape(k, n)], axis=1)  # fmt: skip
        known = part_hi <= part_lo
        known[:, :n] |= s_known.reshape(k, n)
        coarse_done = np.zeros((k, n), dtype=bool)
        pos = np.arange(k)
        for _ in range(3 * n):
            still = pos[np.isin(trials, holding(trials))]
            if still.size == 0:
                break
            width = np.where(known[still], -1.0, part_hi[still] - part_lo[still])
            pick = np.argmax(width, axis=1)
            open_ = width[np.arange(still.size), pick] >= 0
            still, pick = still[open_], pick[open_]
            if still.size == 0:
                break
            single = pick < n
            if single.any():
                at, i = still[single], pick[single]
                exact = self._single_overlaps(ra_sub[at * n + i], i)
                value = unit_n[i] * exact
                # a hair of margin for the roundings of the model's own products
                part_lo[at, i] = value - 1e-12 * np.abs(value)
                part_hi[at, i] = value + 1e-12 * np.abs(value)
            known[still[single], pick[single]] = True
            looked = coarse_done[still, np.maximum(pick - n, 0)]
            for coarse in (True, False):  # first a coarse look, then the exact terms
                sel = ~single & (looked != coarse)
                if sel.any():
                    at, i = still[sel], pick[sel] - n
                    add_lo, add_hi = self._pair_parts(ra_deg, trials[at], i, coarse)
                    part_lo[at, n + i] = add_lo - 1e-12 * np.abs(add_lo)
                    part_hi[at, n + i] = add_hi + 1e-12 * np.abs(add_hi)
                    coarse_done[at, i] = True
                    known[at, n + i] = not coarse
            with np.errstate(invalid="ignore"):  # bounds of max(exact, cut)
                lo[trials[still]] = np.maximum(part_lo[still].sum(axis=1), self.cut)
                hi[trials[still]] = np.maximum(part_hi[still].sum(axis=1), self.cut)
            bad = still[~(np.isfinite(lo[trials[still]]) & np.isfinite(hi[trials[still]]))]
            lo[trials[bad]], hi[trials[bad]] = self.cut, np.inf  # (O3's B_j = 0): the exact one
            known[bad] = True

    def _single_overlaps(self, ra_deg, which) -> np.ndarray:
        """The exact kernel's S_i of neutrinos ``which`` at ``ra_deg`` (one each), as
        ``EventModel.evaluate_batch`` computes them: the same call per entry, made in
        order of neutrino and RA (neighbouring traversals share the map's nodes in
        cache: 7% less CPU on bbh-3's 11 neutrinos)."""
        order = np.lexsort((ra_deg, which))
        out = np.empty(ra_deg.size)
        w = which[order]
        out[order] = self.model.signal_overlap(ra_deg[order], self.dec[w], self.sigma[w], self._eps[w])[1]  # fmt: skip
        return out

    def _exact(self, ra_deg, trials) -> np.ndarray:
        """The exact statistic (``EventModel.evaluate_batch``) of the given trials."""
        rows = (trials[:, None] * self.n + np.arange(self.n)).ravel()
        return self.evaluate_batch(ra_deg[rows]).odds

    def _azimuth(self, ra_deg, ra, which=None):
        """Detector azimuth [deg] of lists of the neutrinos ``which`` (default all)."""
        if self._rotation is None:
            return ra_deg % 360.0
        which = slice(None) if which is None else which
        return KR.frame_azimuth(self._rotation, self._turn[which], np.radians(self.dec[which]), ra)  # fmt: skip

    def _pair_args(self, ra_deg, ra, m):
        """(trials with a doublet, the arguments of ``EventModel.pair_terms`` for those
        trials), or None without doublets."""
        n = self.n
        pi, _, az = self._find_pairs(ra_deg, ra, m)
        if pi.size == 0:
            return None
        # The trials with a doublet go through the model's own pair terms.
        trials = np.unique(pi // n)
        rows = (trials[:, None] * n + np.arange(n)).ravel()
        k = trials.size
        az = az[rows] if az is not None else self._azimuth(ra_deg[rows], ra[rows])
        bg = type(self.bg)(*(np.tile(a, k) for a in self.bg))
        args = (
            ra_deg[rows], np.tile(self.dec, k), np.tile(self.sigma, k), np.tile(self.energy, k),
            np.tile(self.dt, k), np.tile(self.zenith, k), az, bg, tile_offsets(n, k),
        )  # fmt: skip
        return trials, args

    def odds_floor(self) -> np.ndarray:
        """Per neutrino, the odds an overlap at the floor gives, P_s1(S_floor,i) / (P_c,i +
        P_0,i): below it the tables claim no relative accuracy."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nan_to_num(self.coef * self.floor / (self.p_c + self.p_0), nan=0.0)
