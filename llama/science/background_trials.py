"""Background-kind trials decided by bounds: the exact method's counts, few kernel calls.

A p-value needs of each trial only whether its statistic is above, equal to or below
the observed values (the event's O and each neutrino's O_i: the thresholds). A
background trial is a new Poisson list drawn over the whole sky, so, unlike a
scramble, nothing can be tabulated per neutrino; but every part of its statistic can
be bounded cheaply:

- S_i, by the nested-disc bounds of :mod:`kernels.density_bounds` (the map's smallest
  and largest density over discs of 0.5 to 8 sigma about the neutrino, from a per-event
  min/max pyramid of the map, times the PSF's mass on each annulus, times the extreme
  a(eps_i) of the bands the disc reaches), widened by what the exact kernel may differ
  from the true integral (twice its rtol, and :data:`_KERNEL_FLOOR` either side);
- everything else of a single neutrino's term (T_i, D_1, B_i, P_c,i, P_0,i) is the
  model's own, so O_i without doublets lies in [unit_i S_i,lo, unit_i S_i,hi] with
  unit_i = P_s1,i / S_i / (P_c,i + P_0,i);
- each doublet's term between 0 and the model's own pair term with S_ij replaced by
  its bound from the two neutrinos' bounds and their separation
  (:func:`llama.science.fast_trials.pair_overlap_bound`).

A trial whose interval holds no threshold is decided there, without a kernel call.
The others are refined, per trial the widest part first: one neutrino's S_i from a
kernel look aimed at the trial's thresholds (:func:`kernels.overlap.psf_overlap_targets`:
the exact kernel's traversal, stopped as soon as the interval of the true S_i it has
reached, widened by :data:`MIDPOINT_ALLOWANCE`, decides the trial with the bounds of
its other parts, else run on to the exact kernel's own S_i, the number
``EventModel.evaluate_batch`` computes, kept with a hair of margin for the order of
the model's own products); a look that stopped early is followed, if the trial still
holds a threshold, by the exact one; or, where the doublet bounds are the widest part,
pair looks aimed likewise (:func:`kernels.overlap.psf_pair_overlap_targets`, the exact
pair kernel's traversal stopped early or run to its own S_ij), then, if the trial still
holds a threshold, a second round of them (aimed anew), then, if still needed, its
exact doublet terms; and, if still undecided, the whole exact statistic
of the list. So every count is the exact statistic's.

The ranked statistic h, in three tiers, with c the event's cut (``RESOLVED_FLOORS``
times the largest odds an overlap at the screen floor gives any neutrino of the
background sample) and s a list's stand-in (the sum of unit_i times the map's density
at the neutrino times a(eps_i) there, at most the bound):

- lists whose upper bound is below c (no neutrino within ~1e-11 of the map's peak
  density): h = s / 2, below c / 2;
- lists whose bound reaches c but whose exact statistic O is below it: h = c / 2 +
  min(s, c) / 2, in [c / 2, c);
- the others: h = O.

The observed list is ranked likewise, which keeps the p-value calibrated (h is one
deterministic function of a list). So the p-values are identical to
``method="exact"`` wherever the observed value is at or above the cut, and a trial
whose bound reaches the cut needs a kernel call against an observed value below it
only when its own stand-in is below the observed one's.

Examples
--------
>>> import numpy as np
>>> from llama.science.skymap import SkyMap
>>> from llama.science.odds import EventModel
>>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
>>> bt = BackgroundTrials(m, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
>>> d = bt.decide_batch([1e300], [200.0], [0.0], [1.0], [1e3], [0.0], [90.0], [0, 1])
>>> d.n_refined, bool(d.hi[0] < 1e300)
(0, True)
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from kernels import density_bounds as KB
from kernels import odds as KO
from kernels import trial_screen as KS
from kernels import trials as KT
from llama.science import constants as C
from llama.science.detector_frame import EARTH_RATE_RAD_S
from llama.science.fast_trials import (
    RESOLVED_FLOORS,
    SCREEN_FLOOR,
    TrialBounds,
    _psf_at,
    pair_overlap_bound,
)
from llama.science.odds import _radians, neutrino_energy_integral
from llama.science.signal_tables import SINDEC_EDGES

__all__ = ["BackgroundTrials", "SkyBounds", "GRID_ROWS"]

#: Rows of the finest level of the min/max pyramid (0.7 deg cells, 2.8 MB per map):
#: finer grids hardly tighten the bounds on the BAYESTAR maps, whose density varies on
#: the PSFs' own scale (512 rows: the same trials of bbh-6 hold an observed value,
#: 41.1% against 41.8%, for 2.8x the set-up; 1024: bounds within 5% of 512's).
GRID_ROWS = 256
#: The exact kernel stops when what it has left is below rtol times its result plus
#: its absolute floor (kernels.overlap.ATOL x rtol x peak density x max a, 1e-14 at
#: the model's rtol): the bounds of its result take twice its rtol, and as floor,
#: either side, SCREEN_FLOOR (1e-12 of peak density x max a, 100 times the kernel's).
#: Below it had 1e-8 while the kernel returned slightly negative S in a map's far tail
#: (down to -8.6e-10 of that scale on bbh-2); since c3afd1a it never does, and its
#: error there is within 0.36 of its tolerance (tests/test_kernels_single_tail.py).
_KERNEL_MARGIN = 2.0
_KERNEL_FLOOR = SCREEN_FLOOR
#: Allowance for the midpoint cells of a kernel look stopped early (they carry no
#: bound): the true S lies within the bounds left plus this fraction of the running
#: total. The largest midpoint-only error found on the BAYESTAR maps is 0.095% (bbh-3's
#: polar neutrino at rtol 1e-4, 545a6b8; the PSF tails of test_kernels_cell_shape.py
#: within 0.011%), so 5% is ~50 times it. Smaller ones do not pay: the bounds left set
#: where the looks stop (bench_looks.py --events 192 against 5%: 1% 1.04x, 0% 1.02x CPU
#: per event, within the 0.98-1.04x of 5% against itself; the looks' CPU unchanged).
MIDPOINT_ALLOWANCE = 0.05
#: A pair look stops inside a finite band once no wider than this fraction of it
#: (``psf_pair_overlap_targets``' ``narrow``): the trial's other parts then matter more
#: than the rest of the look. Engineer P's setting (99335f8); bench/bench_aimed_pairs.py
#: --against compares two.
PAIR_NARROW = 0.1
#: Rounds of pair looks a trial's doublets take before its exact doublet terms: a
#: second round, aimed with the bounds of the trial's other parts as they are by then
#: (its singles often refined since) and kept within the first's, leaves fewer trials
#: to the exact terms of every doublet. The 48 events of bench_trials --per-event 48:
#: 160 -> 48 doublets given the exact pair kernel, 964 -> 1,120 pair looks; its 21
#: refining events, 4 rounds interleaved: the doublet steps 13.0 -> 10.1 ms per event,
#: decide_batch 0.96x (a second round at narrow 0.03 or 0.3: within noise of it; at 0,
#: the doublet steps 0.92x).
PAIR_LOOKS = 2
#: A single's aimed look also stops inside one of its bands once its interval lies
#: within one of this many equal cells of it (the band's cell ends given to the kernel
#: as bands of one point, ``psf_overlap_targets`` having no ``narrow``): as a pair
#: look's ``narrow``, where the trial's other parts are wider than the rest of the
#: look would make this one. The 21 refining events of bench_trials --per-event 48,
#: interleaved, 4 rounds: single looks' CPU 0.914x (2,259 -> 1,438 run to the exact
#: S_i, 11,010 -> 11,188 looks), decide_batch 0.981x; 3 rounds against 2 cells
#: 0.965x / 1.022x, 3 0.887x / 0.960x, 6 0.911x / 0.953x, 8 0.924x / 0.965x, 10 ~1.0x.
LOOK_CELLS = 4
#: A neutrino whose O_i bound from one disc (the PSF's whole reach) is below this
#: fraction of the cut keeps that bound: it cannot lift a list over the cut.
_ENOUGH = 1e-3
#: Relative margin around a part computed from exact kernel values by other products
#: than the model's own (rounding only).
_HAIR = 1e-12

#: Order of the table that finds the map pixel under a trial neutrino without a search
#: (49,152 entries; BAYESTAR maps' pixels of orders <= 6 cover ~99% of the sky).
_TABLE_ORDER = 6

_BOUNDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_POOL_ROWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Per background sample: (signal tables, distinct w(theta) of its events, which one each has).
_SAMPLE_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Per background sample: (its kernel arguments, each event's first-pass count as a
#: doublet partner or -1) for ``kernels.background.o3_partner_terms_kept``.
_FIRST_COUNTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class SkyBounds:
    """Per-map min/max pyramid and the bounds of S it gives (:mod:`kernels.density_bounds`).

    Build with :meth:`for_model` (kept per model).

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.skymap import SkyMap
    >>> sb = SkyBounds(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1))
    >>> lo, hi, u = sb.overlap(np.zeros(1), np.zeros(1), np.full(1, 0.01), np.ones((1, 18)), 0)
    >>> bool(lo[0] <= 1 / (4 * np.pi) <= hi[0])
    True
    """

    def __init__(self, skymap, rows: int = GRID_ROWS) -> None:
        # rows not a power of 2 (their halving would leave rows out of the coarser
        # levels' bounds): kernels.density_bounds.minmax_pyramid refuses them
        rows = int(rows)
        density = np.ascontiguousarray(skymap.probdensity, dtype=np.float64)
        order, ipix = skymap.order_ipix()
        self.peak = float(density.max()) if density.size else 0.0
        self.rows = rows
        self._pyramid = KB.minmax_pyramid(order, ipix, density, self.rows)
        # each pixel's range of NESTED indices at the finest order, for density()
        self._max_order = int(order.max()) if order.size else 0
        shift = 2 * (self._max_order - order)
        start = ipix << shift
        keep = np.argsort(start, kind="stable")
        self._start = np.ascontiguousarray(start[keep])
        self._stop = np.ascontiguousarray(((ipix + 1) << shift)[keep])
        self._density = np.ascontiguousarray(density[keep])
        self._table_order = min(_TABLE_ORDER, self._max_order)
        self._table = KS.density_table(self._start, self._stop, self._max_order, self._table_order)  # fmt: skip

    @classmethod
    def for_model(cls, model) -> SkyBounds:
        """The bounds of ``model``'s map, built once per model, and kept per map where
        the map came from the process's store (`llama.science.skymap.kept_product`)."""
        sb = _BOUNDS.get(model)
        if sb is None:
            from llama.science.skymap import kept_product

            # of the map's pixels alone: kept with the map in the process's store (~3.7 ms)
            sb = _BOUNDS[model] = kept_product(model.skymap, ("sky_bounds", cls, GRID_ROWS), cls)
        return sb

    def density(self, ra, dec) -> np.ndarray:
        """The map's density at each direction [sr⁻¹] (angles [rad])."""
        f64 = np.float64
        return KS.density_at_table(
            self._start, self._stop, self._density, self._max_order, self._table,
            self._table_order, np.ascontiguousarray(ra, dtype=f64), np.ascontiguousarray(dec, dtype=f64),
        )  # fmt: skip

    def overlap(self, ra, dec, sigma, arows, kind: int, enough=None):
        """(S_lo, S_hi, U_hi) of the true integrals per neutrino (angles [rad], a rows
        over :data:`~llama.science.signal_tables.SINDEC_EDGES`); an upper bound at most
        ``enough`` (per neutrino) is not tightened."""
        f64 = np.float64
        enough = np.zeros(np.size(ra)) if enough is None else enough
        return KB.overlap_bounds(
            *self._pyramid, self.rows, self.peak,
            np.ascontiguousarray(ra, dtype=f64), np.ascontiguousarray(dec, dtype=f64),
            np.ascontiguousarray(sigma, dtype=f64), np.ascontiguousarray(arows, dtype=f64),
            SINDEC_EDGES, int(kind), np.ascontiguousarray(enough, dtype=f64),
        )  # fmt: skip


def _below(true_lo, rtol):
    """A lower bound of the exact kernel's S from one of the true S (the floor already
    taken off): the kernel is within ``_KERNEL_MARGIN`` rtol of its own result, which
    is never negative (kernels.overlap.traversal.single clamps it at 0)."""
    return np.maximum(true_lo, 0.0) / (1.0 + _KERNEL_MARGIN * rtol)


def _own_band(rows, dec) -> np.ndarray:
    """Each neutrino's a(ε) in the declination band it lies in (``dec`` [rad])."""
    band = np.clip(np.searchsorted(SINDEC_EDGES, np.sin(dec), side="right") - 1, 0, rows.shape[1] - 1)  # fmt: skip
    return rows[np.arange(dec.size), band]


def _segments(offsets, which) -> tuple[np.ndarray, np.ndarray]:
    """(neutrino indices, new CSR offsets) of lists ``which`` (int64) of a batch."""
    return KT.segment_gather(offsets, which)


class _Partners:
    """The O3 partner background (B_j, eps_j) of m lists' doublets, kept from the
    ``pair_terms`` call of :meth:`BackgroundTrials._parts` for the later calls on some
    of those lists (:meth:`BackgroundTrials._refine`): each partner's values depend on
    its doublet alone (its primary's band, its own zenith and energy), and a subset of
    whole lists holds the same doublets, so the values looked up are those computed.
    """

    def __init__(self, n: int, own=None) -> None:
        self.n = n  # neutrinos in the lists: a doublet's key is first * n + second
        self.key = np.empty(0, dtype=np.int64)
        self.values = (np.empty(0), np.empty(0))
        self.own = own  # own(first, second): the same values (partner_terms), or None

    def keep(self, first, second, compute):
        """``pair_terms``' ``partner`` on the lists themselves: computed, kept."""
        density, energy_eval = compute() if self.own is None else self.own(first, second)
        key = first * np.int64(self.n) + second
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.values = (np.asarray(density)[order], np.asarray(energy_eval)[order])
        return density, energy_eval

    def of(self, k):
        """``pair_terms``' ``partner`` on the lists of neutrinos ``k`` (whole lists)."""

        def known(first, second, compute):
            key = k[first] * np.int64(self.n) + k[second]
            at = np.minimum(np.searchsorted(self.key, key), max(self.key.size - 1, 0))
            if self.key.size == 0 or not np.array_equal(self.key[at], key):
                return compute()  # a doublet not seen (never with whole lists)
            return self.values[0][at], self.values[1][at]

        return known


def partner_terms(model, zen, energy, bg, at, first, second):
    """(B_j, eps_j) of doublets (first, second) under O3's pair background, as
    ``EventModel.pair_terms`` computes them (``BackgroundDensity.o3_partner``, O3's slip),
    for lists whose neutrino k is sample event ``at[k]`` of ``model.background`` (-1:
    none): the same numbers, each sample event's first count kept across calls and
    events (``kernels.background.o3_partner_terms_kept``; the kernel checks that a
    partner is its event before using what is kept)."""
    from kernels.background import o3_partner_terms_kept
    from llama.science.background import BAND_OPTIONS, _choice

    sample = model.background
    args = sample._o3_args()
    kept = _FIRST_COUNTS.get(sample)
    if kept is None or any(a is not b for a, b in zip(kept[0][:3], args[:3], strict=True)) or kept[0][3:] != args[3:]:  # fmt: skip
        kept = _FIRST_COUNTS[sample] = (args, np.full(sample.zenith_sorted.size, -1, dtype=np.int64))  # fmt: skip
    # the option checked as BackgroundDensity.o3_partner checks it
    capped = _choice("band", model.choices["background_band"], BAND_OPTIONS) == "capped"
    f64 = np.float64
    terms = o3_partner_terms_kept(
        np.ascontiguousarray(zen[second], dtype=f64), np.ascontiguousarray(energy[second], dtype=f64),
        np.ascontiguousarray(bg.energy_lo[first], dtype=f64), np.ascontiguousarray(bg.energy_hi[first], dtype=f64),
        np.ascontiguousarray(bg.energy_eval[first], dtype=f64), np.ascontiguousarray(at[second], dtype=np.int64),
        kept[1], *args, capped, False,
    )  # fmt: skip
    return terms[0], terms[1]


class BackgroundTrials:
    """Decides background lists against the observed values by bounds (module docstring).

    Parameters
    ----------
    model : EventModel
        An O3 event model (``fast_trials.supports_screening``).
    ra, dec, sigma, energy, dt, zenith : array_like
        The observed list ([deg], [GeV], [s]); its thresholds are ranked as trials are.
    azimuth : array_like, optional
        Its detector azimuths [deg] (NaN or None: from the model's detector frame).
    """

    #: ``fast_path`` in the significance's method record.
    fast_path = "bounds"

    def __init__(self, model, ra, dec, sigma, energy, dt, zenith, azimuth=None) -> None:
        f64 = np.float64
        self.model = model
        self.observed = tuple(np.atleast_1d(np.asarray(a, dtype=f64)).ravel() for a in (ra, dec, sigma, energy, dt, zenith))  # fmt: skip
        n = self.observed[0].size
        self.azimuth = np.full(n, np.nan) if azimuth is None else np.asarray(azimuth, dtype=f64).ravel()  # fmt: skip
        self.sky = SkyBounds.for_model(model)
        self._tilt = None  # the detector frame's vertical off the pole [rad], on first use
        self.cut = self._cut()

    # -- per-neutrino constants -------------------------------------------------------

    def _units(self, dt, zen, density, d_1=None, enough_num=None):
        """(unit_i, P_c,i + P_0,i): O_i without doublets is unit_i S_i (``d_1``: the
        energy factor per neutrino, if known: :meth:`_sample_d1`); with
        ``enough_num``, enough_i too: ``enough_num`` / unit_i where unit_i > 0, else the
        largest double (as ``np.nan_to_num`` gives: a NaN is 0). One pass
        (:func:`kernels.trials.trial_units`)."""
        m = self.model
        if d_1 is None:
            w = np.asarray(m.tables.zenith_weight(zen), dtype=np.float64)
            d_1 = m.egw * neutrino_energy_integral(m.rate_per_energy * w, 1)
        f64 = np.float64
        unit, den, enough = KT.trial_units(
            np.ascontiguousarray(dt, dtype=f64), np.ascontiguousarray(density, dtype=f64),
            np.ascontiguousarray(d_1, dtype=f64), C.EMISSION_HALF_WINDOW_S,
            C.NU_BACKGROUND_RATE_HZ * m.common, m.null_ratio, C.NDOT_MPC3_S / C.BEAMING_FACTOR,
            C.TIME_NORM_S2, 0.0 if enough_num is None else float(enough_num),
        )  # fmt: skip
        return (unit, den) if enough_num is None else (unit, den, enough)

    def pool_rows(self, sample, terms) -> np.ndarray:
        """a(ε) rows of every event of the background sample (kept per sample and
        signal tables, for every event: they do not depend on the map)."""
        tables = self.model.tables
        kept = _POOL_ROWS.get(sample)
        if kept is None or kept[0] is not tables or kept[1] is not terms.energy_eval:
            rows = tables.dec_rows(terms.energy_eval)
            # each row's largest a too: a max along the rows' 18 bands costs 0.7 ms
            # per 2,000 trials, a gather of the kept maxima 0.04
            kept = _POOL_ROWS[sample] = (tables, terms.energy_eval, rows, rows.max(axis=1))
        return kept[2]

    def pool_row_max(self, sample, terms) -> np.ndarray:
        """The largest a(ε) of each :meth:`pool_rows` row."""
        self.pool_rows(sample, terms)
        return _POOL_ROWS[sample][3]

    def pool_own_band(self, sample, terms) -> tuple[np.ndarray, np.ndarray]:
        """(declination [deg], a(ε) in its own band) of every event of the background
        sample, where a background list puts it (dec = zenith - 90, as
        ``pvalue._background_draws``): the stand-in's a, gathered per batch instead of a
        sine, a search and a gather per trial neutrino (0.6 ms per 2,000 trials)."""
        rows = self.pool_rows(sample, terms)
        kept = _POOL_ROWS[sample]
        if len(kept) == 4:
            dec = np.clip(sample.zenith_sorted - 90.0, -90.0, 90.0)
            kept = _POOL_ROWS[sample] = (*kept, dec, _own_band(rows, np.radians(dec)))
        return kept[4], kept[5]

    def _sample_d1(self, sample) -> np.ndarray:
        """:meth:`_units`' energy factor d_1 of every event of the background sample,
        the same numbers: w(theta) takes one value per 5 deg zenith band, so the energy
        integral runs on those few values (kept per sample and signal tables) and is
        spread back (0.9 -> 0.3 ms per event on a 20,000-event sample)."""
        m = self.model
        kept = _SAMPLE_WEIGHTS.get(sample)
        if kept is None or kept[0] is not m.tables:
            w = np.asarray(m.tables.zenith_weight(sample.zenith_sorted), dtype=np.float64)
            kept = _SAMPLE_WEIGHTS[sample] = (m.tables, *np.unique(w, return_inverse=True))
        values, where = kept[1], kept[2]
        return (m.egw * neutrino_energy_integral(m.rate_per_energy * values, 1))[where]

    def _cut(self) -> float:
        """The cut of the ranked statistic: :data:`RESOLVED_FLOORS` times the largest odds
        an overlap at the floor (``SCREEN_FLOOR`` x peak density x max a) gives any
        event of the background sample at the best time (T = 500 s)."""
        from llama.science.pvalue import _sample_terms

        sample = self.model.background
        terms = _sample_terms(self.model, sample)
        a_max = self.pool_row_max(sample, terms)
        # kept for decide_batch: a trial neutrino's d_1 is its sample event's
        d_1 = self._sample_d1_now = self._sample_d1(sample)
        unit, _ = self._units(np.zeros(a_max.size), sample.zenith_sorted, terms.density, d_1)
        q = unit * a_max
        q = q[np.isfinite(q)]
        top = float(q.max()) if q.size else 0.0
        return RESOLVED_FLOORS * SCREEN_FLOOR * self.sky.peak * top

    # -- bounds -----------------------------------------------------------------------

    def _parts(self, ra_d, dec_d, sig_d, energy, dt, zen, az, bg, offsets, rows, a_max=None, d_1=None, own_a=None, at=None):  # fmt: skip
        """Bounds of every part of m lists' statistics.

        Returns (single_lo, single_hi, pair_hi per first member, unit, odd per list,
        P_c + P_0, the stand-in ranked below the cut, the doublets' partners):
        O_i without doublets in [single_lo, single_hi] (the exact kernel's S_i
        inside), the doublet terms at i in [0, pair_hi]; ``odd`` lists have a term
        these cannot bound (B = 0: O3's +inf or NaN) and get the exact statistic. The
        partners (:class:`_Partners`) give later ``pair_terms`` calls on these lists
        the O3 partner background computed here (``at``: each neutrino's event in the
        background sample, if known: :func:`partner_terms`).
        """
        m, r = self.model, self.model.overlap_rtol
        ra, dec, sig = _radians(ra_d), _radians(dec_d), _radians(sig_d)  # np.radians' doubles
        # far from the map one disc bounds S well enough: O_i below 1e-3 of the cut
        unit, den, enough = self._units(dt, zen, bg.density, d_1, _ENOUGH * self.cut)
        s_lo, s_hi, u_hi = self.sky.overlap(ra, dec, sig, rows, m.psf_kind, enough)
        a_max = rows.max(axis=1) if a_max is None else a_max  # each row's largest a
        # the exact kernel's S_i within _KERNEL_MARGIN rtol and the floor of the true
        # S_i's bounds (as _below), times unit_i; bad where den or single_hi is not
        # usable
        single_lo, single_hi, k_hi, bad = KT.trial_singles(
            s_lo, s_hi, unit, den, np.ascontiguousarray(a_max, dtype=np.float64), self.sky.peak,
            _KERNEL_FLOOR, 1.0 + _KERNEL_MARGIN * r, 1.0 - _KERNEL_MARGIN * r,
        )  # fmt: skip
        pair_hi = np.zeros(ra.size)

        def bound(ra_, dec_, sig_, eps_i, eps_j, pi, pj, key=None):
            a_i = a_max[pi]  # the first member's own row (eps_i is its energy_eval)
            a_j = m.tables.dec_rows(eps_j).max(axis=1)
            kind = m.psf_kind
            b = pair_overlap_bound(
                ra_[pi], dec_[pi], sig_[pi], ra_[pj], dec_[pj], sig_[pj],
                a_i * u_hi[pi], a_j * u_hi[pj], a_i, a_j, kind,
            )  # fmt: skip
            floor = self._pair_floor(sig_[pi], sig_[pj], a_i, a_j)
            return (b + floor) / (1.0 - _KERNEL_MARGIN * r)

        own = None
        if at is not None and m.choices["pair_background"] == "o3":

            def own(first, second):
                return partner_terms(m, zen, energy, bg, at, first, second)

        partners = _Partners(ra.size, own)
        first, value = m.pair_terms(ra_d, dec_d, sig_d, energy, dt, zen, az, bg, offsets, overlap=bound, partner=partners.keep)  # fmt: skip
        if first.size:
            bad[first[~np.isfinite(value)]] = True
            with np.errstate(divide="ignore", invalid="ignore"):
                share = value / den[first]
            bad[first[~np.isfinite(share)]] = True
            pair_hi = np.bincount(first, weights=np.where(np.isfinite(share), share, 0.0), minlength=ra.size)  # fmt: skip
        odd = KT.segment_any(bad, offsets)
        # below the cut a list is ranked by the map's density at its neutrinos times
        # a(eps_i) there (never above the bound): it orders them as the exact statistic
        # roughly does, which the bounds far from the map do not
        here = self.sky.density(ra, dec) * (_own_band(rows, dec) if own_a is None else own_a)
        with np.errstate(invalid="ignore"):
            stand = unit * np.minimum(here, k_hi)
        return single_lo, single_hi, pair_hi, unit, odd, den, stand, partners

    def _pair_floor(self, sig_i, sig_j, a_i, a_j) -> np.ndarray:
        """The pair kernel's floor for pairs of these widths [rad] and largest signal
        rows, which its bounds and looks are widened by (as a single's by
        ``_KERNEL_FLOOR`` x the peak density x its largest row): :meth:`_parts` and
        :meth:`_pair_looks` use the same."""
        kind = self.model.psf_kind
        peak_g = np.minimum(_psf_at(0.0, sig_i, kind), _psf_at(0.0, sig_j, kind))
        return _KERNEL_FLOOR * self.sky.peak * peak_g * a_i * a_j

    def _lists(self, ra, dec, sigma, energy, dt, zen, offsets, bg, rows, az=None, a_max=None, d_1=None, own_a=None, at=None):  # fmt: skip
        """(arrays as floats, azimuth, offsets, parts) of m lists."""
        f64 = np.float64
        ra, dec, sigma, energy, dt, zen = (np.ascontiguousarray(a, dtype=f64).ravel() for a in (ra, dec, sigma, energy, dt, zen))  # fmt: skip
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        az_in = np.full(ra.size, np.nan) if az is None else az
        zen, az = self._detector_frame(ra, dec, sigma, dt, zen, az_in, offsets)
        parts = self._parts(
            ra, dec, sigma, energy, dt, zen, az, bg, offsets, rows, a_max, d_1, own_a, at
        )
        return (ra, dec, sigma, energy, dt, zen), az, offsets, parts

    def _detector_frame(self, ra, dec, sigma, dt, zen, az, offsets):
        """(zenith, azimuth) [deg] as ``model.detector_frame`` gives them, each missing
        azimuth computed only where O3's flat doublet test may read it.

        Azimuths serve only that test, which pairs nothing whose sky separation is
        beyond the reach :func:`kernels.trial_screen.may_pair` allows (the frame's tilt
        and turn included): about 1 trial neutrino in 8 on the BAYESTAR events. The
        others keep NaN, which the test never pairs: the same doublets as with every
        azimuth (tested). With the great-circle doublets (``pairs`` not "o3") no
        azimuth is read at all.
        """
        m = self.model
        zen = np.array(zen, dtype=np.float64)
        az = np.array(az, dtype=np.float64)
        blind = ~np.isfinite(zen)  # no zenith: the frame gives both angles
        if blind.any():
            zen[blind], az[blind] = m.detector_frame(ra[blind], dec[blind], dt[blind], zen[blind], az[blind])  # fmt: skip
        need = ~np.isfinite(az)
        if m.choices["pairs"] != "o3" or not need.any():
            return zen, az
        if self._tilt is None:
            # the zenith of the south celestial pole: the frame's vertical off the pole
            # (kept with the frame, which the process keeps per GW time)
            frame = m.frame()
            if frame is None:
                pole = m.detector_frame(np.zeros(1), np.full(1, -90.0), np.zeros(1), np.full(1, np.nan), np.full(1, np.nan))  # fmt: skip
                self._tilt = math.radians(float(pole[0][0]))
            else:
                self._tilt = math.radians(frame.pole_zenith_deg)
        f64 = np.float64
        maybe = KS.may_pair(
            *(_radians(a) for a in (ra, dec, zen, sigma)),
            np.ascontiguousarray(dt, dtype=f64), offsets, float(C.PAIR_SEPARATION_SIGMAS),
            self._tilt, EARTH_RATE_RAD_S,
        )  # fmt: skip
        maybe &= need
        if maybe.any():
            frame = m.frame()
            if frame is None:
                az[maybe] = m.detector_frame(ra[maybe], dec[maybe], dt[maybe], zen[maybe], az[maybe])[1]  # fmt: skip
            else:  # what detector_frame gives them (their zeniths are known): the azimuth
                az[maybe] = frame.azimuth(ra[maybe], dec[maybe], dt[maybe])
        return zen, az

    def _middle(self, stand):
        """The ranked statistic of lists whose bound reaches the cut but whose O is below
        it: in [cut / 2, cut), above every list below the cut (their stand-in / 2)."""
        cut = self.cut
        return 0.5 * cut + 0.5 * np.minimum(np.nan_to_num(stand, nan=0.0), np.nextafter(cut, 0.0))

    @staticmethod
    def _sums(parts, offsets):
        """(lo, hi, stand-in) per list."""
        single_lo, single_hi, pair_hi, _, odd, _, stand, _ = parts
        lo = KO.segment_sum(np.maximum(single_lo, 0.0), offsets)  # O_i < 0 counts as 0
        hi = KO.segment_sum(np.maximum(single_hi + pair_hi, 0.0), offsets)
        lo[odd], hi[odd] = 0.0, np.inf
        return lo, hi, KO.segment_sum(stand, offsets)

    # -- the p-value path -------------------------------------------------------------

    def thresholds(self, ra_deg, odds_exact, odds_i_exact) -> tuple[float, np.ndarray]:
        """The observed list's ranked statistic h (event, per neutrino).

        ``ra_deg`` is the observed list's (given at construction); ``odds_exact``,
        ``odds_i_exact`` what ``EventModel.evaluate`` gave. The event: its h (module
        docstring); per neutrino its exact O_i where that is at or above the cut, else
        half its stand-in (below every trial whose bound reaches the cut).
        """
        odds_i_exact = np.asarray(odds_i_exact, dtype=np.float64).ravel()
        ra, dec, sigma, energy, dt, zen = self.observed
        if ra.size == 0:
            return float(odds_exact), odds_i_exact
        zen = np.where(np.isfinite(zen), zen, 90.0 + dec)
        bg = self.model.background_terms(zen, energy)
        rows = self.model.tables.dec_rows(bg.energy_eval)
        offsets = np.array([0, ra.size])
        _, _, _, parts = self._lists(np.asarray(ra_deg, dtype=np.float64), dec, sigma, energy, dt, zen, offsets, bg, rows, self.azimuth)  # fmt: skip
        _, hi, stand = self._sums(parts, offsets)
        cut = self.cut
        if hi[0] < cut:
            event = 0.5 * float(stand[0])
        else:
            event = float(odds_exact) if odds_exact >= cut else float(self._middle(stand)[0])
        # per neutrino (an O_i against the trials' event statistics, as O3 did, with no
        # exchangeability to keep): its exact O_i at or above the cut, else its
        # stand-in below the cut, so that no trial above the cut needs a kernel call
        # to be compared with a neutrino's value below it
        below = 0.5 * np.minimum(np.nan_to_num(parts[6], nan=0.0), np.nextafter(cut, 0.0))
        per_nu = np.where(odds_i_exact >= cut, odds_i_exact, below)
        return event, per_nu

    def decide_batch(
        self, thresholds, ra, dec, sigma, energy, dt, zenith, offsets, *,
        background_terms=None, sample_index=None, azimuth_deg=None,
    ) -> TrialBounds:  # fmt: skip
        """Bounds of m lists' ranked statistics, refined until none holds a threshold.

        The arguments are ``EventModel.evaluate_batch``'s; ``sample_index`` (each
        neutrino's event in the background sample, as ``run_trials`` draws them) lets
        the a(ε) rows be looked up. Each list's h (module docstring) lies in
        ``[lo, hi]``, a single point below the cut or where O was computed
        (``n_refined`` of them).

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> from llama.science.odds import EventModel
        >>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
        >>> bt = BackgroundTrials(m, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
        >>> args = ([200.0, 300.0], [0.0, 0.0], [1.0, 1.0], [1e3, 1e3], [0.0, 0.0], [90.0, 90.0], [0, 1, 2])
        >>> b = bt.decide_batch([], *args)
        >>> d = bt.decide_batch([np.sqrt(b.lo[0] * b.hi[0])], *args)   # inside both
        >>> o = m.evaluate_batch(*args).odds    # above the cut: h is O
        >>> d.n_refined <= 2, bool(np.all((d.lo <= o) & (o <= d.hi)))
        (True, True)
        """
        m = self.model
        if background_terms is None:
            zen_full = m.detector_frame(ra, dec, dt, zenith, np.full(np.size(ra), np.nan))[0]
            background_terms = m.background_terms(zen_full, energy)
        bg = background_terms
        if sample_index is not None:
            from llama.science.pvalue import _sample_terms

            terms = _sample_terms(m, m.background)
            # take, not fancy indexing: half the time for (n, 18) rows
            rows = self.pool_rows(m.background, terms).take(sample_index, axis=0)
            # (take, not fancy indexing, for the gathers below too: ~half the cost)
            a_max = self.pool_row_max(m.background, terms).take(sample_index)
            # the sample events' own d_1 (their zeniths, which the frame keeps)
            d_1 = self._sample_d1_now.take(sample_index) if np.isfinite(zenith).all() else None
            # the a(ε) at each neutrino's own band, where it sits where the draws put it
            pool_dec, pool_a = self.pool_own_band(m.background, terms)
            same = np.array_equal(pool_dec.take(sample_index), np.asarray(dec, dtype=np.float64).ravel())  # fmt: skip
            own_a = pool_a.take(sample_index) if same else None
            # the rows are dec_rows of each neutrino's energy_eval (the looks' own, bit
            # for bit: an elementwise function of it) where bg holds the sample's values
            same = np.array_equal(terms.energy_eval.take(sample_index), bg.energy_eval)
            exact_rows = rows if same else None
        else:
            rows = exact_rows = m.tables.dec_rows(bg.energy_eval)
            a_max = d_1 = own_a = None
        at = None if sample_index is None else np.ascontiguousarray(sample_index, dtype=np.int64)
        lists, az, offsets, parts = self._lists(ra, dec, sigma, energy, dt, zenith, offsets, bg, rows, azimuth_deg, a_max, d_1, own_a, at)  # fmt: skip
        lo_o, hi_o, stand = self._sums(parts, offsets)
        cut = self.cut
        resolved = hi_o >= cut
        mid = self._middle(stand)
        lo = np.where(resolved, 0.0, 0.5 * stand)
        hi = lo.copy()

        def store(at, o_lo, o_hi):
            """h's bounds at trials ``at`` from their O's: O at or above the cut, the
            middle tier below it."""
            lo[at] = np.where(o_lo >= cut, o_lo, mid[at])
            hi[at] = np.where(o_hi < cut, mid[at], o_hi)

        store(np.flatnonzero(resolved), lo_o[resolved], hi_o[resolved])
        t = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())
        t = t[~np.isnan(t)]

        def held(at):
            return np.searchsorted(t, hi[at], side="right") > np.searchsorted(t, lo[at], side="left")  # fmt: skip

        def holding(at):
            return at[held(at)]

        todo = holding(np.flatnonzero(lo < hi))
        n_exact = 0
        if todo.size:
            self._refine(lists, az, bg, offsets, parts, todo, store, held, t, mid, exact_rows)
            left = holding(todo)
            n_exact = left.size
            if left.size:
                idx, sub = _segments(offsets, left)
                sub_bg = type(bg)(*(a[idx] for a in bg))
                ra_, dec_, sig_, en_, dt_, zen_ = (a[idx] for a in lists)
                exact = m.evaluate_batch(ra_, dec_, sig_, en_, dt_, zen_, sub, background_terms=sub_bg)  # fmt: skip
                store(left, exact.odds, exact.odds)
        with np.errstate(invalid="ignore"):
            point = np.where(lo == hi, lo, np.where(lo > 0, np.sqrt(lo * hi), 0.5 * hi))
        return TrialBounds(lo, hi, resolved, point, int(n_exact))

    def _refine(self, lists, az, bg, offsets, parts, trials, store, held, thresholds, mid, rows=None) -> None:  # fmt: skip
        """Narrow the bounds of ``trials``' O (passed on to ``store(at, lo, hi)``) while
        they hold a threshold. Per round, each trial's widest part goes one step up the
        ladder: a single neutrino's S_i from a kernel look aimed at the trial's
        thresholds (:meth:`_look`: bounds, or the exact S_i where the look had to run to
        the end), then the exact kernel's S_i (the same call ``evaluate_batch`` makes);
        or, where the doublet bounds are wider, the trial's doublets from pair looks
        aimed at its thresholds (:meth:`_pair_looks`: exact where every look ran to the
        end; :data:`PAIR_LOOKS` rounds, each within the last), then its exact doublet
        terms (the model's own ``pair_terms``).
        ``thresholds`` (ascending) and ``mid`` (per list) only aim the looks: what is
        decided is decided by ``held`` (per list of ``at``: does it hold a threshold).
        ``rows``: the lists' ``tables.dec_rows(bg.energy_eval)``, if known (the looks
        gather theirs instead of computing them again)."""
        m = self.model
        single_lo, single_hi, pair_hi, unit, odd, den, _, partners = parts
        single_lo, single_hi = single_lo.copy(), single_hi.copy()
        pair_lo, pair_hi = np.zeros(pair_hi.size), pair_hi.copy()
        ra, dec, sig, energy, dt, zen = lists
        eps = bg.energy_eval
        idx, sub = _segments(offsets, trials)
        level = np.zeros(idx.size, dtype=np.int64)  # 0 bounds, 1 an aimed look, 2 exact
        top = 2
        live = ~odd[trials]
        pair_open = KO.segment_sum(pair_hi[idx], sub) > 0
        pair_level = np.zeros(trials.size, dtype=np.int64)  # pair looks taken
        n_max = int(np.diff(sub).max()) if trials.size else 0

        def trial_bounds(nus, off):
            """Each trial's O bounds: an O_i below 0 (a kernel's S below 0) counts as 0."""
            return KT.segment_bounds(single_lo, pair_lo, single_hi, pair_hi, nus, off)

        for _ in range(top * n_max + PAIR_LOOKS + 1):
            still = held(trials) & live
            if not still.any():
                break
            if not still.all():
                # a trial that holds no threshold never will (its bounds only narrow):
                # the rounds go on with the others' neutrinos alone (after the first
                # round ~1 trial in 6 is left)
                keep = np.flatnonzero(still)
                nus, sub = _segments(sub, keep)
                idx, level = idx[nus], level[nus]
                trials, live = trials[keep], live[keep]
                pair_open, pair_level = pair_open[keep], pair_level[keep]
            # per trial: its widest open single (the first of ties; -1 where none is
            # open), that width, and the width of its doublet bounds
            pick, width, pair_width = KT.widest_single(single_lo, single_hi, pair_lo, pair_hi, idx, level, top, sub)  # fmt: skip
            doublets = pair_open & (pair_width > np.maximum(width, 0.0))
            singles = (width > 0) & ~doublets
            pick, tr = pick[singles], np.flatnonzero(singles)
            if pick.size == 0 and not doublets.any():
                break
            changed = doublets.copy()
            if pick.size:
                k = idx[pick]
                # a first look aims at the thresholds the trial holds; a second one runs
                # to the exact S_i
                changed[tr] = True
                nus, off = _segments(sub, tr)
                o_lo, o_hi = trial_bounds(idx[nus], off)
                own_lo = np.maximum(single_lo[k] + pair_lo[k], 0.0)
                own_hi = np.maximum(single_hi[k] + pair_hi[k], 0.0)
                aims = self._aims(
                    thresholds, mid[trials[tr]], o_lo, o_hi, o_lo - own_lo, o_hi - own_hi,
                    pair_lo[k], pair_hi[k], unit[k], level[pick] == 0,
                )  # fmt: skip
                rows_k = None if rows is None else rows.take(k, axis=0)
                s_lo, s_hi, exact = self._look(ra[k], dec[k], sig[k], eps[k], *aims, rows_k)
                value = unit[k] * s_lo
                a, b = value * (1.0 - _HAIR), value * (1.0 + _HAIR)  # either sign
                # never wider than what was known
                single_lo[k] = np.where(exact, np.minimum(a, b), np.maximum(single_lo[k], unit[k] * s_lo))  # fmt: skip
                single_hi[k] = np.where(exact, np.maximum(a, b), np.minimum(single_hi[k], unit[k] * s_hi))  # fmt: skip
                level[pick] = np.where(exact, top, level[pick] + 1)
            if doublets.any():
                which = np.flatnonzero(doublets)
                groups = [(which[pair_level[which] == j], j) for j in range(PAIR_LOOKS + 1)]
                for group, level_now in groups:
                    aim = level_now < PAIR_LOOKS
                    if group.size == 0:
                        continue
                    nus, off = _segments(sub, group)
                    k = idx[nus]
                    sub_bg = type(bg)(*(a[k] for a in bg))
                    call = (ra[k], dec[k], sig[k], energy[k], dt[k], zen[k], az[k], sub_bg, off)
                    known = partners.of(k)
                    if aim:
                        # trial t's other parts (its first members' doublets apart)
                        o_lo, o_hi = trial_bounds(k, off)
                        tr = np.repeat(np.arange(group.size), np.diff(off))
                        rest = (o_lo[tr] - pair_lo[k], o_hi[tr] - pair_hi[k])
                        aims = (thresholds, mid[trials[group]], o_lo, o_hi, *rest, den[k])
                        first_k, v_lo, v_hi, settled = self._pair_looks(call, aims, known, None if rows is None else (rows, k))  # fmt: skip
                    else:
                        first_k, v_lo = m.pair_terms(*call, partner=known)
                        v_hi, settled = v_lo, np.ones(group.size, dtype=bool)
                    share_lo, share_hi = v_lo / den[k][first_k], v_hi / den[k][first_k]
                    was_lo, was_hi = pair_lo[k], pair_hi[k]
                    pair_lo[k] = pair_hi[k] = 0.0
                    np.add.at(pair_lo, k[first_k], share_lo * (1.0 - _HAIR))
                    np.add.at(pair_hi, k[first_k], share_hi * (1.0 + _HAIR))
                    if aim and level_now > 0:  # never wider than an earlier look's
                        pair_lo[k] = np.maximum(pair_lo[k], was_lo)
                        pair_hi[k] = np.minimum(pair_hi[k], was_hi)
                    pair_open[group[settled]] = False
                    pair_level[group] = level_now + 1
            at = np.flatnonzero(changed)
            nus, off = _segments(sub, at)
            store(trials[at], *trial_bounds(idx[nus], off))

    def _pair_looks(self, call, aims, partner=None, rows=None):
        """(first member, lo, hi of each doublet's term, settled per trial) of the
        doublets of m trials (``call``: ``pair_terms``' arguments, their lists), from
        pair looks aimed at the trials' thresholds.

        ``aims``: (thresholds, mid, o_lo, o_hi per trial, rest_lo, rest_hi per
        neutrino: its trial's O bounds without its doublets' as first member, P_c + P_0
        per neutrino). Each live pair's term is c S_ij (``pair_terms`` with an overlap
        of ones gives c); its bands are the S_ij at which its trial would still hold a
        threshold, as :meth:`_aims` makes them for a single (through the pair kernel's
        floor and margins, as :meth:`_look`). A look that stops gives bounds of the
        exact pair kernel's S_ij, one that runs to the end that S_ij bit for bit; the
        terms are c times those S_ij (where every look of a trial ran to the end, its
        exact doublet terms to the rounding of that product, which the caller's
        ``_HAIR`` covers, and the trial is ``settled``). Lists whose live pairs have a
        zero coefficient get the exact terms. ``partner``: ``pair_terms``' (the
        partners' background kept by _parts). ``rows``: (rows, k), where ``rows[k]``
        are ``tables.dec_rows`` of the call's neutrinos' energy_eval, if known (the
        first members' rows are gathered, not computed again).
        """
        from kernels.overlap import psf_pair_overlap_targets

        m, r = self.model, self.model.overlap_rtol
        thresholds, mid, o_lo, o_hi, rest_lo, rest_hi, den = aims
        off = call[-1]
        seen = []

        def unit(ra, dec, sig, eps_i, eps_j, pi, pj, key=None):
            seen.append((ra, dec, sig, eps_i, eps_j, pi, pj, key))
            return np.ones(pi.size)

        first, coef = m.pair_terms(*call, overlap=unit, partner=partner)
        n_trials = off.size - 1
        if not seen:  # no live pair: every term is already exact (0)
            return first, coef, coef, np.ones(n_trials, dtype=bool)
        ra, dec, sig, eps_i, eps_j, pi, pj, key = seen[0]
        live = np.flatnonzero(coef != 0.0)
        if len(seen) > 1 or key is not None or live.size != pi.size or not np.all(np.isfinite(coef)):  # fmt: skip
            first, value = m.pair_terms(*call, partner=partner)
            return first, value, value, np.ones(n_trials, dtype=bool)
        # each live pair's term per unit S_ij, in its first member's share of O
        c = coef[live] / den[pi]
        t_of = np.repeat(np.arange(n_trials), np.diff(off))[pi]
        ok = (c > 0) & np.isfinite(c)
        zero = np.zeros(pi.size)
        offsets, band_lo, band_hi = KT.aimed_bands(
            np.ascontiguousarray(thresholds, dtype=np.float64), float(self.cut), mid[t_of],
            o_lo[t_of], o_hi[t_of], rest_lo[pi], rest_hi[pi], zero, zero, c, ok,
            1.0 - _KERNEL_MARGIN * r, 1.0 + _KERNEL_MARGIN * r, 0,
        )  # fmt: skip
        # the first members' rows: dec_rows(eps_i), gathered where the caller has them
        rows_i = m.tables.dec_rows(eps_i) if rows is None else rows[0].take(rows[1][pi], axis=0)
        rows_j = m.tables.dec_rows(eps_j)
        # the floor of _parts' pair bounds
        floor = self._pair_floor(sig[pi], sig[pj], rows_i.max(axis=1), rows_j.max(axis=1))
        f = np.repeat(floor, np.diff(offsets))
        w, half = psf_pair_overlap_targets(
            m.prepared_map(), ra[pi], dec[pi], sig[pi], rows_i, ra[pj], dec[pj], sig[pj],
            rows_j, SINDEC_EDGES, m.psf_kind, offsets, band_lo - f, band_hi + f,
            MIDPOINT_ALLOWANCE, narrow=PAIR_NARROW, rtol=r,
        )  # fmt: skip
        exact = half < 0.0
        s_lo = np.where(exact, w, _below(np.maximum(w - half, 0.0) - floor, r))
        s_hi = np.where(exact, w, (np.maximum(w + half, 0.0) + floor) / (1.0 - _KERNEL_MARGIN * r))  # fmt: skip
        # each term is linear in S_ij: its coefficient times the bounds (the products'
        # rounding within the _HAIR the caller widens the terms by)
        v_lo, v_hi = np.zeros(coef.size), np.zeros(coef.size)
        v_lo[live], v_hi[live] = coef[live] * s_lo, coef[live] * s_hi
        settled = np.bincount(t_of, weights=~exact, minlength=n_trials) == 0
        return first, v_lo, v_hi, settled

    def _aims(self, thresholds, mid, o_lo, o_hi, rest_lo, rest_hi, pair_lo, pair_hi, unit, aimed):  # fmt: skip
        """Target bands of kernel looks at n neutrinos, one per trial, in the true S_i:
        (CSR offsets, band ends), for :meth:`_look`.

        A trial with O in [o_lo, o_hi] holds threshold T (in O; a threshold of h in
        [mid, cut) is the cut in O, one below mid none) while the neutrino's new
        [lo, hi] of O_i meets [T - rest_hi - pair_hi, T - rest_lo - pair_lo] (its other
        parts in [rest_lo, rest_hi], its doublets' in [pair_lo, pair_hi]); each such
        band, taken through the conversion of :meth:`_look` to the true S_i, given as
        the ends of its :data:`LOOK_CELLS` cells (from 0 up, S being positive), each a
        band of one point: the look stops outside the band, or inside it once within
        one cell. Neutrinos not ``aimed`` (or without a positive unit) get one band
        over everything: their looks run to the exact S_i.
        """
        r = self.model.overlap_rtol
        ok = aimed & (unit > 0) & np.isfinite(unit)
        f64 = np.float64
        return KT.aimed_bands(
            np.ascontiguousarray(thresholds, dtype=f64), float(self.cut), mid, o_lo, o_hi,
            rest_lo, rest_hi, pair_lo, pair_hi, unit, ok, 1.0 - _KERNEL_MARGIN * r,
            1.0 + _KERNEL_MARGIN * r, LOOK_CELLS,
        )  # fmt: skip

    def _look(self, ra_d, dec_d, sig_d, eps, offsets, band_lo, band_hi, rows=None):
        """(lo, hi, exact) of the exact kernel's S_i from looks aimed at bands of the true
        S_i (:meth:`_aims`; the floor is added here): where ``exact``, lo is the exact
        kernel's S_i itself (the look ran to the end: the same traversal as
        ``EventModel.signal_overlap``'s); elsewhere the true S_i is within the look's
        half width of its result, and the exact kernel within its tolerance of that.

        Each side of a look's interval is its own sum of what the look has left on that
        side (``sides``: a node all above or all below the neutrino's density bounds one
        side only), not the larger sum on both: the interval about half as wide where the
        map is dense about the neutrino, so the look leaves its bands sooner (the same
        traversal; bbh-3 and bns-9's looks 10-21% fewer node expansions)."""
        from kernels.overlap import psf_overlap_targets

        m, r_e = self.model, self.model.overlap_rtol
        if rows is None:  # given: dec_rows(eps), gathered from the lists' own
            rows = m.tables.dec_rows(eps)  # as signal_overlap: the exact S_i, bit for bit
        floor = _KERNEL_FLOOR * self.sky.peak * rows.max(axis=1)
        n_bands = np.diff(offsets)
        f = np.repeat(floor, n_bands)
        rad = [_radians(a) for a in (ra_d, dec_d, sig_d)]  # np.radians' doubles, C-contiguous
        value, below, above = psf_overlap_targets(
            m.prepared_map(), *rad, rows, SINDEC_EDGES, m.psf_kind, offsets, band_lo - f,
            band_hi + f, MIDPOINT_ALLOWANCE, rtol=r_e, sides=True,
        )  # fmt: skip
        exact = below < 0.0
        true_lo = np.maximum(value - below, 0.0) - floor
        true_hi = np.maximum(value + above, 0.0) + floor
        lo = np.where(exact, value, _below(true_lo, r_e))
        hi = np.where(exact, value, true_hi / (1.0 - _KERNEL_MARGIN * r_e))
        return lo, hi, exact

    def evaluate_batch(self, *args, **kwargs):
        """The exact statistic (``EventModel.evaluate_batch``; bounds decide nothing here)."""
        kwargs.pop("sample_index", None)
        return self.model.evaluate_batch(*args, **kwargs)
