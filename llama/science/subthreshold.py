"""O3's sub-threshold statistic (docs/science.md, "The O3 sub-threshold statistic").

O3 ran a second statistic for GW triggers below the public-alert threshold
(LLAMA v3.5.1, ``coinc_significance/subthreshold.py``). It shares the tables a(ε, θ)
and w(θ), the background density B, the PSF G, the time overlap T, ⟨n⟩, P(E) and the
constants with the OPA statistic (:mod:`llama.science.odds`), but gives ONE odds
ratio for the whole neutrino list and has a real null term. For a list of N
neutrinos (units in brackets, constants in :mod:`llama.science.constants`):

- π_N(k) = Poisson(k; R_ν,bg · 500 s)  (mean 3.2);
- g = k0⁴ (E⁺ − E⁻) / (r̄ ρ⁴ ln(E⁺/E⁻))  (:func:`llama.science.gw_null.g_factor`);
- B_i and ε_i: O3's background steps in list order with δω, ΔE carried along the
  list (:meth:`~llama.science.background.BackgroundDensity.o3_list`);
- I_i = ∫ Poisson(1; ⟨n(E, r̄)⟩ w(θ_i)) P(E) dE  (closed form, w index int(θ_i/5));
- J_i = ∫₀^r0 d² ∫ Poisson(1; ⟨n(E, d)⟩ w(θ_i)) P(E) dE dd  [Mpc³];
- S_i = Σ_pix P_gw a(ε_i, 90° + dec_pix) ∫_pix G_i  [sr⁻¹ GeV⁻¹] (exact integrals);
- F = g Σ_i T_i I_i S_i / B_i;  P_s = ṅ π_N(max(0, N − 1)) F / (500 s)²;
- A_i = Σ_pix a(ε_i, 90° + dec_pix) Ĝ_i(pix) = ∫ a G_i dΩ / ∫ G_i dΩ  [GeV⁻¹];
- W = Σ_i J_i A_i / B_i;
- P_c = ṅ g π_N(N) + ṅ p(x_gw|H0) π_N(max(0, N − 1)) W;
- P_0 = p(x_gw|H0) π_N(N) / V0, with p(x_gw|H0) from p_terr and the user's SNR list
  (:func:`llama.science.gw_null.null_gw_density`), V0 = 4/3 π r0³;
- O = P_s / (P_c + P_0); NaN, −∞ and negative values → 0, +∞ kept; N = 0 → O = 0.
- cWB (pipeline "cwb", any case): r̄ = 1 (placeholder) and g = 1; I_i becomes
  ∫₀^r0 d² P_Egw((dρ/k0)²) ∫ Poisson(1; ⟨n(E, d)⟩ w) P(E) dE dd
  = k0²/(ρ² ln(E⁺/E⁻)) ∫₀^r0 ∫ Poisson(…) P(E) dE dd, and the first chance term
  ṅ π_N(N) ∫₀^r0 d² P_Egw((ρd/k0)²) dd = ṅ π_N(N) k0² r0 / (ρ² ln(E⁺/E⁻)).

The p-value comes from on-the-fly trials (:func:`subthreshold_trial_pvalue`: RA
scrambled, or background lists) or from a background table whose keys hold
``subthreshold_odds_ratio`` statistics (:func:`subthreshold_table_pvalue`), with the
randomised tie convention of :mod:`llama.science.pvalue`.

Readings made here (as in docs/science.md)
-----------------------------------------------------
1. The a(ε_i, ·) of S_i and of A_i is evaluated at the ε left by the background steps
   (``energy_eval``), as in the OPA section ("The ε left by steps 2-4 is the ε at
   which a(ε, ·) is evaluated"); the section says the statistic shares B and a.
2. G_i is O3's flat-sky Gaussian exp(−ψ²/2σ²)/(2πσ²) [sr⁻¹]; its exact integral over
   each pixel replaces O3's value at the pixel centre (the statistic's only intended
   difference from O3). Ĝ_i's normalisation "sum to 1 over pixels" is read as
   ∫ G_i dΩ over the sphere, so A_i = ∫ a G / ∫ G, computed with the same kernels on
   a uniform map (no flattening; independent of any map's resolution).
3. Zenith θ_i: the list's own when given, else astropy's AltAz at IceCube at the
   neutrino's time (:func:`llama.science.detector_frame.zenith_azimuth`), as the OPA
   statistic. w(θ_i) is the 5° band int(θ_i/5), clipped to the last band at 180°.
4. N counts every neutrino of the list given (also those with T = 0: they enter N,
   the carried background windows and W, but not F). No time cut is made here.
5. π_N(max(0, N − 1)) is used in P_s and in the second chance term for every N, so
   for N = 0 the terms are P_s = 0, P_c = ṅ g π_N(0), P_0 = p(x_gw|H0) π_N(0)/V0,
   and the odds are set to 0.
6. The outer distance integrals (J_i, and I_i in the cWB branch) are done by
   Gauss-Legendre quadrature in u = ln d over [ln r0 − 30, ln r0] (30 panels of 16
   nodes): the integrands are smooth in u, and the part below r0·e⁻³⁰ ≈ 3e-11 Mpc
   contributes < 1e-12 of the total. Relative accuracy better than 1e-10 (tested
   against the closed forms with erfc and against scipy's dblquad). The inner
   energy integral is the closed form (:func:`llama.science.odds.neutrino_energy_integral`).
   Both depend only on w(θ_i), so they are computed once per distinct weight.
7. cWB: P_Egw is used without a range check inside the distance integrals, as in
   the first chance term's closed form (docs/science.md, "The O3 sub-threshold statistic").
8. "NaN, −∞ or negative → 0" applies to the odds; the terms p_h_s1, p_h_c, p_h_0
   are reported as computed.
9. Trials: ``scramble`` keeps every neutrino's zenith, energy, error, time and list
   order (so B_i, ε_i, I_i, J_i and A_i) and redraws its RA; ``background`` draws
   lists with :func:`llama.science.pvalue.background_sampler` (Poisson mean
   R_ν,bg · 1000 s: the physical count in the ±500 s search window, not π_N's mean).

Examples
--------
>>> round(background_count_prior(0), 5)  # π_N(0) = exp(-3.2)
0.04076
>>> round(distance_count_integral(1.0), 2)  # J at w = 1 [Mpc³]
194564.14
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels import odds as K
from llama.science import constants as C
from llama.science import gw_null
from llama.science.odds import EventModel, batch_arrays, neutrino_energy_integral
from llama.science.signal_tables import SINDEC_EDGES

__all__ = [
    "SubthresholdBatch",
    "SubthresholdModel",
    "SubthresholdResult",
    "background_count_prior",
    "distance_count_integral",
    "is_cwb",
    "subthreshold_table_pvalue",
    "subthreshold_trial_pvalue",
    "SUBTHRESHOLD_STATISTIC",
]

#: The results variable (and background-table ``statistic``) of this statistic.
SUBTHRESHOLD_STATISTIC = "subthreshold_odds_ratio"
#: Mean of π_N: background neutrinos expected in O3's 500 s window (3.2).
_PI_MEAN = C.NU_BACKGROUND_RATE_HZ * C.NU_BACKGROUND_WINDOW_S
# Distance quadrature (reading 6): panels of one e-fold in ln d below ln r0.
_QUAD_EFOLDS = 30
_QUAD_NODES = 16


def is_cwb(pipeline: str | None) -> bool:
    """Whether a pipeline name selects O3's cWB branch ("cwb", any case).

    Examples
    --------
    >>> is_cwb("CWB"), is_cwb("gstlal"), is_cwb(None)
    (True, False, False)
    """
    return str(pipeline or "").strip().lower() == "cwb"


def background_count_prior(k) -> np.ndarray | float:
    """π_N(k) = Poisson(k; R_ν,bg · 500 s), mean 3.2 (dimensionless).

    Parameters
    ----------
    k : int or array_like of int
        Neutrino counts (>= 0).

    Examples
    --------
    >>> round(float(background_count_prior(3)), 4)
    0.2226
    """
    kk = np.asarray(k, dtype=np.float64)
    lgam = np.vectorize(math.lgamma, otypes=[np.float64])(kk + 1.0) if kk.size else kk
    out = np.exp(kk * math.log(_PI_MEAN) - _PI_MEAN - lgam)
    return float(out) if np.ndim(k) == 0 else out


@functools.lru_cache(maxsize=1)
def _ln_distance_nodes() -> tuple[np.ndarray, np.ndarray]:
    """Nodes d [Mpc] and weights d·Δu of the quadrature in u = ln d (reading 6)."""
    x, wq = np.polynomial.legendre.leggauss(_QUAD_NODES)
    top = math.log(gw_null.r0_mpc())
    lo = top - _QUAD_EFOLDS + np.arange(_QUAD_EFOLDS, dtype=np.float64)
    u = (lo[:, None] + 0.5 * (x[None, :] + 1.0)).ravel()  # panels of width 1 in u
    d = np.exp(u)
    return d, np.tile(0.5 * wq, _QUAD_EFOLDS) * d  # dd = d du


def distance_count_integral(weight, power: int = 2) -> np.ndarray | float:
    """∫₀^r0 d^power ∫ Poisson(1; ⟨n(E, d)⟩ w) P(E) dE dd [Mpc^(power+1)].

    ⟨n(E, d)⟩ = n0 · 10 E · (d / 100 Mpc)⁻²; the E integral is the closed form over
    the log-uniform prior [1e-6, 0.1], the d integral a Gauss-Legendre quadrature in
    ln d (relative accuracy better than 1e-10; module docstring, reading 6).
    ``power=2`` is J_i; ``power=0`` is the distance part of the cWB branch's I_i.

    Parameters
    ----------
    weight : float or array_like
        w(θ) [dimensionless].
    power : int
        Power of d in the integrand.

    Examples
    --------
    >>> j = distance_count_integral([0.5, 2.0])
    >>> bool(j[1] > j[0] > 0)
    True
    """
    w = np.atleast_1d(np.asarray(weight, dtype=np.float64))
    d, dw = _ln_distance_nodes()
    rate = C.N0 * 10.0 * w[:, None] * (d[None, :] / C.R_REF_MPC) ** -2
    inner = neutrino_energy_integral(rate.ravel(), 1).reshape(rate.shape)
    out = (inner * d[None, :] ** power * dw[None, :]).sum(axis=1)
    return float(out[0]) if np.ndim(weight) == 0 else out


@functools.lru_cache(maxsize=1)
def _uniform_map():
    """The whole sky at density 1/4π sr⁻¹, prepared for the overlap kernels (for A_i)."""
    from kernels.overlap import prepare_map

    return prepare_map(4 + np.arange(12), np.full(12, 1.0 / (4.0 * np.pi)))


@dataclass
class SubthresholdBatch:
    """The statistic for M concatenated lists (:meth:`SubthresholdModel.evaluate_batch`).

    Attributes
    ----------
    odds, p_h_s1, p_h_c, p_h_0 : ndarray (M,)
        Odds ratio O and its terms per list (p_h_s2 is 0 by construction).
    n : ndarray (M,) of int
        N, the number of neutrinos of each list.
    f, w : ndarray (M,)
        F and W of each list (module docstring).
    offsets : ndarray (M + 1,)
        CSR offsets of the lists into the per-neutrino ``terms``.
    terms : dict
        Per-neutrino arrays: zenith [deg], dt [s], time_overlap [s], b_density
        [sr⁻¹ GeV⁻¹], energy_eval [GeV], zenith_weight, i_int, j_int [Mpc³],
        signal_overlap [sr⁻¹ GeV⁻¹], psf_energy_average A_i [GeV⁻¹].
    """

    odds: np.ndarray
    p_h_s1: np.ndarray
    p_h_c: np.ndarray
    p_h_0: np.ndarray
    n: np.ndarray
    f: np.ndarray
    w: np.ndarray
    offsets: np.ndarray
    terms: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def odds_i(self) -> np.ndarray:
        """No per-neutrino odds (an empty array): the OPA batches' attribute, so the
        trials' bookkeeping treats both statistics alike."""
        return np.empty(0)


@dataclass
class SubthresholdResult:
    """The sub-threshold statistic for one list.

    Attributes
    ----------
    odds_ratio, p_h_s1, p_h_s2, p_h_c, p_h_0 : float
        O and its terms (p_h_s2 = 0: O3 never called its pair terms).
    n : int
        Number of neutrinos in the list.
    parts : dict
        Event-level pieces: g, gw_chance (first chance term's GW factor), f, w,
        p_gw_h0, pi_n, pi_n_minus_1, r0_mpc, v0_mpc3.
    terms : dict
        Per-neutrino arrays (see :class:`SubthresholdBatch`).
    options : dict
        What the statistic was computed with (recorded in the significance file).
    """

    odds_ratio: float
    p_h_s1: float
    p_h_s2: float
    p_h_c: float
    p_h_0: float
    n: int
    parts: dict[str, float] = field(default_factory=dict)
    terms: dict[str, np.ndarray] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def combined(self, p_value: float | None = None) -> dict[str, Any]:
        """``outputs.neutrino_gw_combined`` of the significance file (docs/science.md, "Output").

        Examples
        --------
        >>> SubthresholdResult(0.0, 0.0, 0.0, 1.0, 1.0, 0).combined()["p_h_s2"]
        0.0
        """
        return {
            "odds_ratio": self.odds_ratio,
            "p_h_s1": self.p_h_s1,
            "p_h_s2": self.p_h_s2,
            "p_h_0": self.p_h_0,
            "p_h_c": self.p_h_c,
            "p_value": p_value,
            "dump": {},
        }


class SubthresholdModel:
    """One GW trigger prepared for O3's sub-threshold statistic on any number of lists.

    Parameters
    ----------
    skymap : SkyMap
        Multi-order or flat NESTED map (:class:`llama.science.skymap.SkyMap`).
    rho : float
        Network SNR.
    rbar : float
        Mean distance DISTMEAN [Mpc] (ignored for cWB, where O3 put the placeholder 1).
    p_terrestrial : float
        P(Terrestrial) from p_astro.json, in [0, 1].
    pipeline : str
        The GW pipeline ("gstlal", "pycbc", "mbta", "spiir", "cwb", ...); "cwb" in any
        case selects the cWB branch.
    t_gw_mjd : float, optional
        GW time (MJD): puts neutrinos without zenith into the detector frame (without
        it, zenith = 90° + dec).
    snr_list : array_like, optional
        Background GW SNRs (:func:`llama.science.gw_null.read_snr_list`); default the
        shipped SYNTHETIC list.
    population : {"bns", "bbh"}
        Recorded, and keys the background table; the statistic does not use it.
    signal_tables, background, overlap_rtol
        As :class:`llama.science.odds.EventModel` (defaults: O3's tables, the shipped
        background sample, ``kernels.overlap.RTOL``).

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.skymap import SkyMap
    >>> sky = SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1)
    >>> m = SubthresholdModel(sky, rho=9.0, rbar=200.0, p_terrestrial=0.5)
    >>> b = m.evaluate_batch([10.0], [-30.0], [0.5], [1e4], [0.0], [np.nan], [0, 1])
    >>> bool(b.odds[0] > 0), float(b.n[0])
    (True, 1.0)
    """

    def __init__(
        self,
        skymap,
        rho: float,
        rbar: float,
        p_terrestrial: float,
        pipeline: str = "gstlal",
        *,
        t_gw_mjd: float | None = None,
        snr_list=None,
        population: str = "bns",
        signal_tables=None,
        background=None,
        overlap_rtol: float | None = None,
    ) -> None:
        if not 0.0 <= float(p_terrestrial) <= 1.0:
            raise ValueError(f"p_terrestrial must be in [0, 1] (p_astro.json), got {p_terrestrial}")
        self.cwb = is_cwb(pipeline)
        # cWB maps carry no distance: O3 set r̄ to the placeholder 1 (and g to 1)
        rbar_used = 1.0 if self.cwb else float(rbar)
        # the OPA model holds the prepared map, the tables, the background and the frame
        self.event = EventModel(
            skymap,
            rho,
            rbar_used,
            population,
            t_gw_mjd=t_gw_mjd,
            signal_tables=signal_tables,
            background=background,
            overlap_rtol=overlap_rtol,
        )
        self.rho, self.rbar = float(rho), rbar_used
        self.p_terrestrial = float(p_terrestrial)
        self.pipeline = str(pipeline)
        snr = gw_null.read_snr_list() if snr_list is None else np.asarray(snr_list, dtype=float)
        self.r0 = gw_null.r0_mpc()
        self.v0 = gw_null.horizon_volume_mpc3()
        self.p_gw_h0 = gw_null.null_gw_density(self.rho, self.p_terrestrial, snr)
        log_egw = math.log(C.E_GW_MAX / C.E_GW_MIN)
        if self.cwb:
            self.g = 1.0
            # ∫₀^r0 d² P_Egw((ρd/k0)²) dd = k0² r0 / (ρ² ln(E⁺/E⁻)): no range check
            self._egw_const = C.K0**2 / (self.rho**2 * log_egw)
            self.gw_chance = self._egw_const * self.r0
        else:
            self.g = gw_null.g_factor(self.rho, self.rbar)
            self.gw_chance = self.g
        self._counts: dict[float, tuple[float, float]] = {}
        self.options: dict[str, Any] = {
            "model": "o3_subthreshold",
            "pipeline": self.pipeline,
            "cwb_branch": self.cwb,
            "population": population,
            "rho": self.rho,
            "rbar_mpc": self.rbar,
            "rbar_given_mpc": float(rbar),
            "p_terrestrial": self.p_terrestrial,
            "psf": "gaussian",
            "overlap_rtol": self.event.overlap_rtol,
            "background_sample": self.event.background.source,
            "signal_tables": self.event.tables.source,
            "snr_list_size": int(snr.size),
        }

    # -- per-neutrino pieces -------------------------------------------------------------

    def background_terms(self, zenith_deg, energy_gev, offsets=None):
        """B_i and ε_i with O3's windows carried along each list (``o3_list``)."""
        return self.event.background.o3_list(
            np.ascontiguousarray(zenith_deg, dtype=np.float64),
            np.ascontiguousarray(energy_gev, dtype=np.float64),
            offsets=offsets,
        )

    def count_integrals(self, weight) -> tuple[np.ndarray, np.ndarray]:
        """(I_i, J_i [Mpc³]) for zenith weights w(θ_i), each distinct w computed once."""
        w = np.asarray(weight, dtype=np.float64)
        for value in np.unique(w):
            key = float(value)
            if key not in self._counts:
                j = float(distance_count_integral(key, 2))
                if self.cwb:
                    i = self._egw_const * float(distance_count_integral(key, 0))
                else:
                    rate = C.N0 * 10.0 * (self.rbar / C.R_REF_MPC) ** -2 * key
                    i = float(neutrino_energy_integral([rate], 1)[0])
                self._counts[key] = (i, j)
        pairs = np.array([self._counts[float(v)] for v in w.ravel()]).reshape(w.shape + (2,))
        return pairs[..., 0], pairs[..., 1]

    def psf_energy_average(self, ra_deg, dec_deg, sigma_deg, energy_eval_gev) -> np.ndarray:
        """A_i = Σ_pix a(ε_i, 90° + dec_pix) Ĝ_i(pix) = ∫ a G_i dΩ / ∫ G_i dΩ [GeV⁻¹].

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> sky = SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1)
        >>> m = SubthresholdModel(sky, 9.0, 200.0, 0.5)
        >>> a = m.psf_energy_average([0.0], [-35.0], [0.01], [1e3])[0]  # a tiny PSF
        >>> bool(np.isclose(a, m.event.tables.energy_density(1e3, 55.0)))
        True
        """
        from kernels.overlap import psf_overlap_prepared

        ra = np.radians(np.ascontiguousarray(ra_deg, dtype=np.float64))
        if ra.size == 0:
            return np.empty(0)
        overlap, weighted = psf_overlap_prepared(
            _uniform_map(),
            ra,
            np.radians(np.ascontiguousarray(dec_deg, dtype=np.float64)),
            np.radians(np.ascontiguousarray(sigma_deg, dtype=np.float64)),
            self.event.tables.dec_rows(energy_eval_gev),
            SINDEC_EDGES,
            self.event.psf_kind,
            rtol=self.event.overlap_rtol,
        )
        return weighted / overlap

    # -- evaluation ----------------------------------------------------------------------

    def evaluate_batch(
        self,
        ra_deg,
        dec_deg,
        sigma_deg,
        energy_gev,
        dt_s,
        zenith_deg,
        offsets,
        *,
        background_terms=None,
    ) -> SubthresholdBatch:
        """The statistic of M concatenated lists (trials) in one pass of each kernel.

        Parameters
        ----------
        ra_deg, dec_deg, sigma_deg : array_like (N,)
            Directions and 1-sigma errors [deg] (sigma > 0, floored upstream).
        energy_gev : array_like (N,)
            Reconstructed energies [GeV].
        dt_s : array_like (N,)
            t_i − t_gw [s].
        zenith_deg : array_like (N,)
            Detector zenith [deg]; NaN: from the detector frame at t_gw.
        offsets : array_like (M + 1,)
            CSR offsets; list order matters (the background windows carry along it).
        background_terms : BackgroundTerms, optional
            Precomputed :meth:`background_terms` with these offsets (scrambling RA
            keeps them).

        Returns
        -------
        SubthresholdBatch
        """
        f64 = np.float64
        ra, dec, sigma, energy, dt, offsets = batch_arrays(
            ra_deg, dec_deg, sigma_deg, energy_gev, dt_s, offsets
        )
        # only the zenith matters here (no pairs): the azimuth is not asked for
        zen, _ = self.event.detector_frame(ra, dec, dt, zenith_deg, np.zeros(ra.size))
        bg = background_terms if background_terms is not None else self.background_terms(zen, energy, offsets)  # fmt: skip
        b_i, eps = bg.density, bg.energy_eval
        w_i = np.asarray(self.event.tables.zenith_weight(zen), dtype=f64)
        t_i = K.time_overlap(dt, C.EMISSION_HALF_WINDOW_S)  # [s]
        i_int, j_int = self.count_integrals(w_i)
        _, s_i = self.event.signal_overlap(ra, dec, sigma, eps)
        a_i = self.psf_energy_average(ra, dec, sigma, eps)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            f = self.g * K.segment_sum(np.ascontiguousarray(t_i * i_int * s_i / b_i), offsets)
            w = K.segment_sum(np.ascontiguousarray(j_int * a_i / b_i), offsets)
            n = np.diff(offsets)
            pi_n = background_count_prior(n)
            pi_n1 = background_count_prior(np.maximum(n - 1, 0))
            p_s = C.NDOT_MPC3_S * pi_n1 * f / C.TIME_NORM_S2
            p_c = C.NDOT_MPC3_S * (self.gw_chance * pi_n + self.p_gw_h0 * pi_n1 * w)
            p_0 = self.p_gw_h0 * pi_n / self.v0
            odds = p_s / (p_c + p_0)
        # NaN, -inf and negatives fail "> 0" and become 0; +inf is kept; N = 0 gives 0
        odds = np.where((odds > 0) & (n > 0), odds, 0.0)
        terms = {
            "zenith": zen,
            "dt": dt,
            "time_overlap": t_i,
            "b_density": b_i,
            "energy_eval": eps,
            "zenith_weight": w_i,
            "i_int": i_int,
            "j_int": j_int,
            "signal_overlap": s_i,
            "psf_energy_average": a_i,
        }
        return SubthresholdBatch(odds, p_s, p_c, p_0, n, f, w, offsets, terms)

    def evaluate(self, neutrinos, t_gw: float) -> SubthresholdResult:
        """The statistic for one list (a ``NeutrinoList``) at GW time t_gw [GPS s].

        Zenith comes from the list where given, else from astropy's AltAz at IceCube
        at each neutrino's time (as the OPA statistic). Every neutrino counts in N.
        """
        from llama.science.times import mjd_to_gps

        ra = np.asarray(neutrinos.ra, dtype=np.float64)
        n = ra.size
        mjd = np.asarray(neutrinos.mjd, dtype=np.float64)
        dt = np.atleast_1d(mjd_to_gps(mjd)) - t_gw if n else np.empty(0)
        given = getattr(neutrinos, "zenith", None)
        zen = np.full(n, np.nan) if given is None else np.array(given, dtype=np.float64)
        missing = ~np.isfinite(zen)
        if missing.any():
            from llama.science.detector_frame import zenith_azimuth

            zen[missing] = zenith_azimuth(ra[missing], np.asarray(neutrinos.dec)[missing], mjd[missing])[0]  # fmt: skip
        batch = self.evaluate_batch(
            ra, neutrinos.dec, neutrinos.sigma, neutrinos.energy, dt, zen, np.array([0, n])
        )
        pi_n = float(background_count_prior(n))
        pi_n1 = float(background_count_prior(max(n - 1, 0)))
        parts = {
            "g": self.g,
            "gw_chance": self.gw_chance,
            "f": float(batch.f[0]),
            "w": float(batch.w[0]),
            "p_gw_h0": self.p_gw_h0,
            "pi_n": pi_n,
            "pi_n_minus_1": pi_n1,
            "r0_mpc": self.r0,
            "v0_mpc3": self.v0,
        }
        return SubthresholdResult(
            odds_ratio=float(batch.odds[0]),
            p_h_s1=float(batch.p_h_s1[0]),
            p_h_s2=0.0,
            p_h_c=float(batch.p_h_c[0]),
            p_h_0=float(batch.p_h_0[0]),
            n=n,
            parts=parts,
            terms=batch.terms,
            options=dict(self.options),
        )


# -- significance ------------------------------------------------------------------------


def _pvalue(background_sorted, odds: float, seed: int | None) -> tuple[float, dict[str, Any]]:
    """Randomised p-value of ``odds`` against sorted background statistics, with the
    tie keys of the OPA statistic (:mod:`llama.science.pvalue`): one list, no neutrinos."""
    from llama.science.pvalue import _significance

    p, _, method = _significance(background_sorted, odds, [], seed)
    method.pop("p_values_neutrino_upper")
    return p, method


def subthreshold_trial_pvalue(
    model: SubthresholdModel,
    ra_deg,
    dec_deg,
    sigma_deg,
    energy_gev,
    dt_s,
    zenith_deg,
    observed_odds: float,
    n_trials: int = 2000,
    kind: str = "background",
    seed: int | None = None,
    sampler=None,
    chunk: int = 20000,
    stop_after: int | None = None,
):
    """p-value of an observed sub-threshold odds ratio from M on-the-fly trials.

    Parameters
    ----------
    model : SubthresholdModel
    ra_deg, dec_deg, sigma_deg, energy_gev, dt_s, zenith_deg : array_like
        The observed list (zenith in the detector frame, as in ``result.terms``);
        ``kind="scramble"`` redraws its RAs.
    observed_odds : float
        The observed O.
    n_trials : int
        M; the smallest p reachable is about 1 / (1 + M).
    kind : {"scramble", "background"}
        Scramble the RA of each neutrino (zenith, energy, error, time, order kept),
        or draw background lists (:func:`llama.science.pvalue.background_sampler`).
    seed : int, optional
        Seed of the trials; the tie-breaking U comes from its own stream of it.
    sampler : callable, optional
        ``sampler(rng, m) -> (ra, dec, sigma, energy, dt, zenith, offsets)``
        (the format of :mod:`llama.science.pvalue`'s samplers); overrides ``kind``.
    chunk : int
        Trials per batched call.
    stop_after : int, optional
        h of Besag & Clifford's sequential p-value, as for the OPA statistic
        (:func:`llama.science.pvalue.trial_pvalues`, ``LLAMA_TRIAL_STOP_AFTER``): the
        trials stop at the L-th where h of them have reached the observed O, p = h / L.
        None (the default): all ``n_trials``.

    Returns
    -------
    llama.science.pvalue.TrialResult
        ``p_values_neutrino`` is empty (the statistic has no per-neutrino odds).

    Examples
    --------
    >>> import numpy as np
    >>> from llama.science.skymap import SkyMap
    >>> sky = SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1)
    >>> m = SubthresholdModel(sky, 9.0, 200.0, 0.5)
    >>> r = subthreshold_trial_pvalue(m, [], [], [], [], [], [], 0.0, 10, "scramble", seed=1)
    >>> r.method["n_equal"], r.method["p_value_upper"]  # every scrambled empty list ties at 0
    (10, 1.0)
    """
    from llama.science.pvalue import TrialResult, _sequential_trials, run_trials

    lists = (ra_deg, dec_deg, sigma_deg, energy_gev, dt_s, zenith_deg)
    if stop_after is not None:
        if int(stop_after) != stop_after or stop_after < 1:
            raise ValueError(f"stop_after must be an integer >= 1, got {stop_after!r}")
        # the one observed value (no per-neutrino odds), counted as the OPA's are
        result = _sequential_trials(
            model, model.event.background, lists, n_trials, kind, seed, sampler, chunk,
            "exact", model, None, float(observed_odds), np.empty(0), int(stop_after),
        )  # fmt: skip
        for key in ("p_values_neutrino_upper", "n_trial_neutrinos", "statistic"):  # OPA only
            result.method.pop(key, None)
        return result
    batches, trial_kind = run_trials(
        model, model.event.background, lists, n_trials, kind, seed, sampler, chunk
    )
    trial_odds = np.concatenate([b.odds for b in batches])
    p, tie = _pvalue(np.sort(trial_odds), observed_odds, seed)
    method = {"method": "trials", "trial_kind": trial_kind, "n_trials": int(n_trials), **tie}
    return TrialResult(p, np.empty(0), trial_odds, method)


def subthreshold_table_pvalue(
    observed_odds: float,
    path,
    population: str | None = None,
    instruments=None,
    sensitivity: str | None = None,
    seed: int | None = None,
) -> tuple[float, dict[str, Any]] | None:
    """p-value from the ``subthreshold_odds_ratio`` keys of a background table, or None.

    Only keys whose ``statistic`` is :data:`SUBTHRESHOLD_STATISTIC` (tables built with
    ``llama background build --statistic subthreshold_odds_ratio``) are considered; the
    key is then chosen as :func:`llama.science.background_table.select_background_key` does.
    Returns None when the table has no such key (older ``.npz`` tables never do).

    Examples
    --------
    >>> import tempfile, os
    >>> from llama.science.background_table import make_background_table, write_background_table
    >>> ds = make_background_table([{"population": "bns", "sensitivity": "O3",
    ...     "instruments": "H1,L1", "odds": [0.0, 1.0, 2.0, 3.0],
    ...     "statistic": "subthreshold_odds_ratio"}])
    >>> path = write_background_table(ds, os.path.join(tempfile.mkdtemp(), "t.nc"))
    >>> p, method = subthreshold_table_pvalue(2.5, path, "bns", ["H1", "L1"], seed=1)
    >>> method["key"], method["p_value_upper"]
    ('bns/O3/H1,L1/subthreshold', 0.4)
    """
    from llama.science.background_table import (
        background_odds,
        open_background_table,
        select_background_key,
        statistic_keys,
    )

    sub = statistic_keys(open_background_table(path), SUBTHRESHOLD_STATISTIC)
    if sub.sizes["key"] == 0:
        return None
    key = select_background_key(sub, population, instruments, sensitivity, where=f"{path} (subthreshold keys)")  # fmt: skip
    odds = background_odds(sub, key)
    p, tie = _pvalue(odds, observed_odds, seed)
    method = {
        "method": "background_table",
        "path": str(path),
        "key": key,
        "statistic": SUBTHRESHOLD_STATISTIC,
        "n_background": int(odds.size),
        **tie,
    }
    return p, method
