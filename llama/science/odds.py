"""The LLAMA coincidence statistic (SCIENCE.md) for one GW event and its neutrinos.

Formulas as implemented (units in brackets; constants from
:mod:`llama.science.constants`):

- time overlap, h = 250 s:  T_i = max(0, 2h - |t_i - t_gw|)   [s]
- GW energy pinned by the SNR:  E_gw = (r̄ ρ / k0)^2          [code units, 1e51 erg]
- log-uniform prior:  P_Egw(E) = 1 / (E ln(E+/E-)) on [E-, E+], else 0   [per code unit]
- common factor:  Q = ṅ r̄^2 P_Egw(E_gw)        [Mpc^-3 s^-1 · Mpc^2 · per code unit]
- expected count per unit neutrino energy:
  a_i = n0 · 10 · (r̄ / 100 Mpc)^-2 · w(θ_i)     [per code unit], so ⟨n⟩ = a_i E_ν
- I_k(a) = ∫ Poisson(k; a E_ν) P(E_ν) dE_ν over [1e-6, 0.1] (closed form, dimensionless)
- D_i = Q · I_1(a_i)
- S_i = Σ_pix P_gw(pix) · w_pix · A_eff(ε_i, δ_pix) · ∫_pix G_i dΩ   [A_eff units · sr^-1]
- P_s1,i = (ṅ/f_b) ... written as  Q · I_1(a_i) · S_i · T_i / (f_b (500 s)^2)
- pairs (separation < 5(σ_i+σ_j), same list):
  S_ij = Σ_pix P_gw · w_pix · A_i G_i · A_j G_j          [A_eff^2 · sr^-2]
  T_ij = common overlap of the three 500 s windows          [s]
  P_s2,ij = Q · I_2(ā_ij) · S_ij · T_ij / (f_b (500 s)^2) / B_j,  ā_ij = (a_i + a_j)/2
- chance:  P_c,i = Q · R_ν,bg · B_i,  B_i [sr^-1 GeV^-1] from :mod:`.background`
- null:  P_0,i = 0 (``null_term="o3"``), or P_c,i · p_terr / (1 - p_terr) (``"full"``)
- O_i = (P_s1,i + Σ_j P_s2,ij) / (P_c,i + P_0,i), non-finite or negative -> 0;  O = Σ_i O_i

ṅ enters as :data:`~llama.science.constants.NDOT_MPC3_S`. Q cancels in O_i; it is kept
so the reported P terms are the published ones. When E_gw falls outside its prior,
Q = 0 and every O_i is 0/0 -> 0, as SCIENCE.md prescribes (``gw_energy_in_prior``
records it).

The full null term: Bartos et al. (2019) write the denominator as the sum of the
"real GW + background neutrino" hypothesis (P_c) and the "noise GW + background
neutrino" one. Both share the neutrino factor R_ν,bg B_i, so their ratio is the GW
pipeline's noise-to-astrophysical likelihood ratio weighted by the rates, which is
exactly p_terrestrial / (1 - p_terrestrial) from ``p_astro.json``. The third term
(noise GW + an astrophysical neutrino unrelated to it) is neglected: such neutrinos
are a small fraction of the realtime stream.

Distance-aware mode (``distance_aware=True``, maps with distance layers): the sky is
weighted by w_pix = p(r̄ | pix) / Σ_pix P_gw p(r̄ | pix), i.e. the sky map conditioned
on the distance r̄ at which D and P_c are evaluated, with
p(r | pix) = DISTNORM r^2 N(r; DISTMU, DISTSIGMA). Otherwise w_pix = 1 (O3).

Examples
--------
>>> import numpy as np
>>> from llama.science.odds import gw_energy_prior
>>> round(gw_energy_prior(40.0, 10.0) * 1e3, 3)  # P_Egw at E_gw = (40 * 10 / 400.8)^2
109.008
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kernels import odds as K
from llama.science import constants as C
from llama.science.background import BackgroundDensity, load_background_sample

__all__ = [
    "OddsResult",
    "BatchOdds",
    "EventModel",
    "compute_odds",
    "gw_energy_prior",
    "neutrino_energy_integral",
    "PSF_KINDS",
    "PAIR_MODES",
]

#: psf option -> kernel code (0 Gaussian as in O3, 1 von Mises-Fisher).
PSF_KINDS = {"gaussian": 0, "vmf": 1}
#: pair_distance option -> kernel code.
PAIR_MODES = {"great_circle": K.PAIR_GREAT_CIRCLE, "o3_flat": K.PAIR_O3_FLAT}
#: Width of the neutrino search window, normalising the time terms [s].
_WINDOW_S = 2.0 * C.SEARCH_HALF_WINDOW_S

_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)


def gw_energy_prior(rbar_mpc: float, rho: float) -> float:
    """P_Egw at E_gw = (r̄ ρ / k0)^2, log-uniform on [E_GW_MIN, E_GW_MAX] [per code unit].

    Examples
    --------
    >>> gw_energy_prior(4000.0, 10.0)  # E_gw ~ 1e4 code units: outside the prior
    0.0
    """
    e_gw = (rbar_mpc * rho / C.K0) ** 2
    if not (C.E_GW_MIN <= e_gw <= C.E_GW_MAX):
        return 0.0
    return 1.0 / (e_gw * math.log(C.E_GW_MAX / C.E_GW_MIN))


def neutrino_energy_integral(rate_per_energy, k: int = 1) -> np.ndarray:
    """∫ Poisson(k; a E_ν) P(E_ν) dE_ν over the E_ν prior (log-uniform), dimensionless.

    Parameters
    ----------
    rate_per_energy : array_like
        a = ⟨n⟩ / E_ν [per code energy unit].
    k : int
        1 (single neutrino) or 2 (pair).

    Examples
    --------
    >>> round(float(neutrino_energy_integral([11.0], 1)[0]), 5)
    0.05795
    """
    a = np.ascontiguousarray(rate_per_energy, dtype=np.float64).ravel()
    return K.poisson_energy_integral(a, int(k), C.E_NU_MIN, C.E_NU_MAX)


def _overlap_kernels():
    """The overlap kernels module (imported late so this module loads without it)."""
    return importlib.import_module("kernels.overlap")


def _default_effective_area() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ea = importlib.import_module("llama.science.effective_area")
    return tuple(np.ascontiguousarray(x, dtype=np.float64) for x in ea.load_effective_area())


def _default_zenith_weight() -> Callable[[np.ndarray], np.ndarray]:
    return importlib.import_module("llama.science.effective_area").zenith_weight


def _distance_pixel_weight(skymap, rbar: float) -> np.ndarray:
    """w_pix = p(r̄|pix) / Σ P_gw p(r̄|pix): the sky map conditioned on r = r̄."""
    from llama.science.skymap import conditional_distance_pdf

    p_r = conditional_distance_pdf(rbar, skymap.distmu, skymap.distsigma, skymap.distnorm)
    norm = float(np.sum(skymap.probability() * p_r))
    if not (norm > 0 and math.isfinite(norm)):
        # No pixel supports r̄ (or no usable layers): fall back to the O3 weighting.
        return np.ones(len(skymap.probdensity))
    return np.ascontiguousarray(p_r / norm)


@dataclass
class BatchOdds:
    """Statistics of M neutrino lists against one GW map (see :meth:`EventModel.evaluate_batch`).

    Attributes
    ----------
    odds : ndarray (M,)
        Event statistic O per list.
    odds_i : ndarray (N,)
        Per-neutrino odds O_i of the concatenated lists.
    offsets : ndarray (M + 1,)
        CSR offsets of the lists into ``odds_i``.
    terms : dict
        Per-neutrino arrays (psf_overlap, p_h_s1, p_h_s2, p_h_c, p_h_0, dt, ...).
    """

    odds: np.ndarray
    odds_i: np.ndarray
    offsets: np.ndarray
    terms: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class OddsResult:
    """The statistic for one event: per-neutrino terms and the combined odds.

    Per-neutrino arrays (list order): ra, dec, sigma [deg], energy [GeV], dt [s],
    psf_overlap [sr^-1], p_h_s1, p_h_s2, p_h_c, p_h_0, odds_ratio.
    """

    ra: np.ndarray
    dec: np.ndarray
    sigma: np.ndarray
    energy: np.ndarray
    dt: np.ndarray
    psf_overlap: np.ndarray
    p_h_s1: np.ndarray
    p_h_s2: np.ndarray
    p_h_c: np.ndarray
    p_h_0: np.ndarray
    odds_ratio: np.ndarray
    odds: float
    options: dict[str, Any] = field(default_factory=dict)
    gw_energy_in_prior: bool = True
    zenith: np.ndarray | None = None

    def triggers(self, p_values=None) -> list[dict[str, float]]:
        """One dict per neutrino, in list order, for ``outputs.neutrino_gw_triggers``.

        Parameters
        ----------
        p_values : array_like, optional
            Per-neutrino p-values (e.g. ``TrialResult.p_values_neutrino``), added as
            ``p_value``.

        Examples
        --------
        >>> r = OddsResult(*([np.zeros(0)] * 11), odds=0.0)
        >>> r.triggers()
        []
        """
        names = ("ra dec sigma energy dt psf_overlap p_h_s1 p_h_s2 p_h_c p_h_0 odds_ratio").split()
        out = [{name: float(getattr(self, name)[k]) for name in names} for k in range(self.ra.size)]
        if p_values is not None:
            for row, p in zip(out, np.asarray(p_values, dtype=float), strict=True):
                row["p_value"] = float(p)
        return out

    def combined(self, p_value: float, method: dict[str, Any]) -> dict[str, Any]:
        """The ``outputs.neutrino_gw_combined`` object: odds, p-value and how it was got.

        Examples
        --------
        >>> r = OddsResult(*([np.zeros(0)] * 11), odds=0.0)
        >>> r.combined(1.0, {"method": "trials", "n_trials": 10})["p_value"]
        1.0
        """
        return {
            "odds_ratio": float(self.odds),
            "p_value": float(p_value),
            "p_value_method": dict(method),
            "gw_energy_in_prior": bool(self.gw_energy_in_prior),
            "options": dict(self.options),
        }


class EventModel:
    """One GW event prepared for evaluating any number of neutrino lists against it.

    Holds the map arrays, pixel weights, A_eff table, constants-derived factors and
    the background density, so on-the-fly trials pay only the kernel calls.

    Parameters
    ----------
    skymap : SkyMap
        Multi-order or flat NESTED map (:class:`llama.science.skymap.SkyMap`).
    rho : float
        Network SNR.
    rbar : float
        Mean distance DISTMEAN [Mpc].
    population : {"bns", "bbh"}
        Source class from p_astro (recorded; selects the background table).
    psf : {"gaussian", "vmf"}
    distance_aware : bool
        Weight pixels by p(r̄ | pix) when the map has distance layers.
    pair_distance : {"great_circle", "o3_flat"}
    null_term : {"o3", "full"}
    p_terrestrial : float, optional
        P(Terrestrial) from p_astro; required for ``null_term="full"``.
    effective_area : (log10e_edges, sindec_edges, aeff), optional
        Default: :func:`llama.science.effective_area.load_effective_area`.
    zenith_weight : callable, optional
        w(θ [deg]); default :func:`llama.science.effective_area.zenith_weight`.
    background : BackgroundDensity, optional
        Default: the shipped synthetic sample.
    overlap_rtol : float, optional
        Tolerance of the PSF overlap integrals (the sum of the error bounds of what is
        not evaluated, relative to the result); default ``kernels.overlap.RTOL``
        (1e-2). Smaller is more accurate and slower (1e-3: ~2.5x the work).
    """

    def __init__(
        self,
        skymap,
        rho: float,
        rbar: float,
        population: Literal["bns", "bbh"] = "bns",
        *,
        psf: Literal["gaussian", "vmf"] = "gaussian",
        distance_aware: bool = False,
        pair_distance: Literal["great_circle", "o3_flat"] = "great_circle",
        null_term: Literal["o3", "full"] = "o3",
        p_terrestrial: float | None = None,
        effective_area: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        zenith_weight: Callable[[np.ndarray], np.ndarray] | None = None,
        background: BackgroundDensity | None = None,
        overlap_rtol: float | None = None,
    ) -> None:
        if psf not in PSF_KINDS:
            raise ValueError(f"psf must be one of {sorted(PSF_KINDS)}, got {psf!r}")
        if pair_distance not in PAIR_MODES:
            raise ValueError(f"pair_distance must be one of {sorted(PAIR_MODES)}")
        if null_term not in ("o3", "full"):
            raise ValueError(f"null_term must be 'o3' or 'full', got {null_term!r}")
        if population not in ("bns", "bbh"):
            raise ValueError(f"population must be 'bns' or 'bbh', got {population!r}")
        if null_term == "full" and (p_terrestrial is None or not 0 <= p_terrestrial < 1):
            raise ValueError("null_term='full' needs p_terrestrial in [0, 1)")
        if not (rbar > 0 and rho > 0):
            raise ValueError(f"rbar and rho must be positive, got {rbar}, {rho}")
        if overlap_rtol is None:
            overlap_rtol = _overlap_kernels().RTOL
        if not 0 < overlap_rtol < 1:
            raise ValueError(f"overlap_rtol must be in (0, 1), e.g. 0.01; got {overlap_rtol}")
        self.overlap_rtol = float(overlap_rtol)
        self.skymap = skymap
        self.rho, self.rbar, self.population = float(rho), float(rbar), population
        self.psf_kind = PSF_KINDS[psf]
        self.pair_mode = PAIR_MODES[pair_distance]
        self.null_term, self.p_terrestrial = null_term, p_terrestrial
        self.distance_aware = bool(distance_aware and skymap.has_distance)
        self.options = {
            "psf": psf,
            "distance_aware": self.distance_aware,
            "pair_distance": pair_distance,
            "null_term": null_term,
            "p_terrestrial": p_terrestrial,
            "population": population,
            "rho": self.rho,
            "rbar_mpc": self.rbar,
            "overlap_rtol": self.overlap_rtol,
        }
        ea = effective_area if effective_area is not None else _default_effective_area()
        self.log10e_edges, self.sindec_edges, self.aeff = (
            np.ascontiguousarray(x, dtype=np.float64) for x in ea
        )
        self.zenith_weight = zenith_weight or _default_zenith_weight()
        self.background = background if background is not None else load_background_sample()
        self.options["background_sample"] = self.background.source
        self.probdensity = np.ascontiguousarray(skymap.probdensity, dtype=np.float64)
        npix = self.probdensity.size
        # Flat NESTED maps go to the kernels as probability per pixel.
        self.prob_flat = None if skymap.is_moc else np.ascontiguousarray(skymap.probability())
        self.pixel_weight = (
            _distance_pixel_weight(skymap, self.rbar) if self.distance_aware else np.ones(npix)
        )
        # Q = ṅ r̄² P_Egw(E_gw)  [Mpc^-3 s^-1 · Mpc^2 · per code energy unit]
        self.p_egw = gw_energy_prior(self.rbar, self.rho)
        self.common = C.NDOT_MPC3_S * self.rbar**2 * self.p_egw
        # a / w(θ) = n0 · 10 · (r̄ / 100 Mpc)^-2  [expected neutrinos per code energy unit]
        self.rate_per_energy = C.N0 * 10.0 * (self.rbar / C.R_REF_MPC) ** -2
        self._prepared = None  # kernels.overlap.PreparedMap, built on first use
        self.null_ratio = 0.0
        if null_term == "full":
            self.null_ratio = p_terrestrial / (1.0 - p_terrestrial)

    # -- kernels -------------------------------------------------------------------------

    @property
    def prepared_map(self):
        """The map prepared for the overlap kernels (``kernels.overlap.PreparedMap``:
        sorted rows, quadtree bounds and moments), built on first use and kept, so
        every later evaluation and trial pays only the traversal."""
        if self._prepared is None:
            ov = _overlap_kernels()
            if self.skymap.is_moc:
                self._prepared = ov.prepare_map(
                    self.skymap.uniq, self.probdensity, self.pixel_weight
                )
            else:
                self._prepared = ov.prepare_map_flat(self.prob_flat, self.pixel_weight)
        return self._prepared

    def _psf_overlap(self, ra, dec, sigma, energy):
        """(Σ P_gw ∫G, Σ P_gw w A_eff ∫G) per neutrino, angles in rad."""
        return _overlap_kernels().psf_overlap_prepared(
            self.prepared_map,
            ra,
            dec,
            sigma,
            energy,
            self.log10e_edges,
            self.sindec_edges,
            self.aeff,
            self.psf_kind,
            rtol=self.overlap_rtol,
        )

    def _pair_overlap(self, ra, dec, sigma, energy, pi, pj):
        """S_ij = Σ P_gw w A_i G_i A_j G_j [A_eff^2 sr^-2] for each pair."""
        if pi.size == 0:
            return _EMPTY_F
        ov = _overlap_kernels()
        args = (
            ra[pi],
            dec[pi],
            sigma[pi],
            energy[pi],
            ra[pj],
            dec[pj],
            sigma[pj],
            energy[pj],
            self.log10e_edges,
            self.sindec_edges,
            self.aeff,
            self.psf_kind,
        )
        # only the weighted sum enters P_s2: the kernel need not converge the other
        return ov.psf_pair_overlap_prepared(
            self.prepared_map, *args, rtol=self.overlap_rtol, weighted_only=True
        )[1]

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
        b_density=None,
    ) -> BatchOdds:
        """Statistics of M concatenated neutrino lists in one pass of each kernel.

        Parameters
        ----------
        ra_deg, dec_deg, sigma_deg : array_like (N,)
            Directions and 1-sigma errors [deg] (sigma already floored upstream).
        energy_gev : array_like (N,)
            Reconstructed energies [GeV].
        dt_s : array_like (N,)
            t_i - t_gw [s].
        zenith_deg : array_like (N,)
            Detector zenith [deg]; NaN -> 90 + dec (IceCube at the South Pole).
        offsets : array_like (M + 1,)
            CSR offsets: list m is ``[offsets[m], offsets[m+1])``.
        b_density : array_like (N,), optional
            Precomputed B_i [sr^-1 GeV^-1] (RA scrambling leaves it unchanged).

        Returns
        -------
        BatchOdds
        """
        f64 = np.float64
        ra = np.radians(np.ascontiguousarray(ra_deg, dtype=f64))
        dec = np.radians(np.ascontiguousarray(dec_deg, dtype=f64))
        sigma = np.radians(np.ascontiguousarray(sigma_deg, dtype=f64))
        energy = np.ascontiguousarray(energy_gev, dtype=f64)
        dt = np.ascontiguousarray(dt_s, dtype=f64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        zen = np.ascontiguousarray(zenith_deg, dtype=f64)
        zen = np.where(np.isfinite(zen), zen, 90.0 + np.degrees(dec))
        n = ra.size
        if offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must rise from 0 to the number of neutrinos")
        if np.any(~(sigma > 0)):
            raise ValueError("every sigma must be positive (NeutrinoList floors it)")

        if b_density is None:
            b_density = self.background.density(zen, energy)
        b_density = np.ascontiguousarray(b_density, dtype=f64)

        t_i = K.time_overlap(dt, C.EMISSION_HALF_WINDOW_S)  # [s]
        if n:
            overlap, weighted = self._psf_overlap(ra, dec, sigma, energy)
        else:
            overlap, weighted = _EMPTY_F, _EMPTY_F
        rate = self.rate_per_energy * np.asarray(self.zenith_weight(zen), dtype=f64)
        d_i = self.common * neutrino_energy_integral(rate, 1)  # D_i
        # P_s1 = (ṅ/f_b) S T D / (500 s)^2 with ṅ r̄² P_Egw folded into D.
        p_s1 = d_i * weighted * t_i / (C.BEAMING_FACTOR * _WINDOW_S**2)
        p_c = self.common * C.NU_BACKGROUND_RATE_HZ * b_density
        p_0 = p_c * self.null_ratio

        pi, pj = K.find_pairs(ra, dec, sigma, offsets, C.PAIR_SEPARATION_SIGMAS, self.pair_mode)
        pair_signal = _EMPTY_F
        if pi.size:
            t_ij = K.pair_time_overlap(dt, pi, pj, C.EMISSION_HALF_WINDOW_S)
            keep = t_ij > 0  # pairs outside the window cannot contribute
            pi, pj, t_ij = pi[keep], pj[keep], t_ij[keep]
            s_ij = self._pair_overlap(ra, dec, sigma, energy, pi, pj)
            d2 = self.common * neutrino_energy_integral(0.5 * (rate[pi] + rate[pj]), 2)
            pair_signal = d2 * s_ij * t_ij / (C.BEAMING_FACTOR * _WINDOW_S**2)
        odds_i, p_s2 = K.combine_odds(p_s1, pi, pj, pair_signal, b_density, p_c, p_0)
        odds = K.segment_sum(odds_i, offsets)
        terms = {
            "dt": dt,
            "psf_overlap": overlap,
            "p_h_s1": p_s1,
            "p_h_s2": p_s2,
            "p_h_c": p_c,
            "p_h_0": p_0,
            "b_density": b_density,
            "time_overlap": t_i,
        }
        return BatchOdds(odds=odds, odds_i=odds_i, offsets=offsets, terms=terms)

    def evaluate(self, neutrinos, t_gw: float) -> OddsResult:
        """The statistic for one neutrino list (a ``NeutrinoList``) at GW time t_gw [GPS s].

        An empty list gives odds 0.
        """
        ra = np.asarray(neutrinos.ra, dtype=np.float64)
        dec = np.asarray(neutrinos.dec, dtype=np.float64)
        sigma = np.asarray(neutrinos.sigma, dtype=np.float64)
        energy = np.asarray(neutrinos.energy, dtype=np.float64)
        n = ra.size
        if n:
            from llama.science.times import mjd_to_gps

            dt = np.atleast_1d(mjd_to_gps(np.asarray(neutrinos.mjd, dtype=np.float64))) - t_gw
        else:
            dt = _EMPTY_F
        zenith = getattr(neutrinos, "zenith_deg", None)
        zenith = np.full(n, np.nan) if zenith is None else np.asarray(zenith, dtype=np.float64)
        batch = self.evaluate_batch(ra, dec, sigma, energy, dt, zenith, np.array([0, n]))
        t = batch.terms
        return OddsResult(
            ra=ra,
            dec=dec,
            sigma=sigma,
            energy=energy,
            dt=t["dt"],
            psf_overlap=t["psf_overlap"],
            p_h_s1=t["p_h_s1"],
            p_h_s2=t["p_h_s2"],
            p_h_c=t["p_h_c"],
            p_h_0=t["p_h_0"],
            odds_ratio=batch.odds_i,
            odds=float(batch.odds[0]),
            options=dict(self.options),
            gw_energy_in_prior=self.p_egw > 0,
            zenith=zenith,
        )


def compute_odds(
    skymap,
    neutrinos,
    t_gw: float,
    rho: float,
    rbar: float,
    population: Literal["bns", "bbh"] = "bns",
    **options: Any,
) -> OddsResult:
    """The LLAMA odds ratio for one event (see the module docstring for the formulas).

    Parameters
    ----------
    skymap : SkyMap
    neutrinos : NeutrinoList
        Validated list (sigma floored at 0.2 deg, positive).
    t_gw : float
        GW time [GPS s].
    rho : float
        Network SNR.
    rbar : float
        DISTMEAN [Mpc].
    population : {"bns", "bbh"}
    **options
        Passed to :class:`EventModel` (psf, distance_aware, pair_distance, null_term,
        p_terrestrial, effective_area, zenith_weight, background).

    Returns
    -------
    OddsResult
    """
    return EventModel(skymap, rho, rbar, population, **options).evaluate(neutrinos, t_gw)
