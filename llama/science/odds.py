"""The LLAMA O3 coincidence statistic (docs/science.md, "The O3 statistic, exactly").

Per neutrino i of a list (units in brackets; constants in :mod:`llama.science.constants`):

- background (:meth:`~llama.science.background.BackgroundDensity.o3_primary`): B_i
  [sr⁻¹ GeV⁻¹] and the energy ε_i at which the signal is evaluated (raised to the
  zenith band's minimum, moved by ×10/÷10 while the windows widen, O3's clamps);
- spatial overlap (kernels, exact PSF integrals over the map, never flattened):
  S_i = Σ_pix P_gw · a(ε_i, 90° + dec_pix) · ∫_pix G_i   [sr⁻¹ GeV⁻¹];
- time overlap T_i = max(0, 500 s − |t_i − t_gw|)   [s];
- distance and energy factor (no range check on E_gw, as O3):
  D_k(θ) = r̄² P_Egw((r̄ρ/k0)²) · ∫ Poisson(k; n0 · 10E · (r̄/100)⁻² · w(θ)) P(E) dE,
  where r̄² P_Egw((r̄ρ/k0)²) = k0² / (ρ² ln(E⁺/E⁻)) does not depend on r̄;
- P_s1,i = (ṅ / f_b) · S_i · T_i · D_1(θ_i) / (500 s · 500 s);
- doublets, each unordered pair once, at the first of the two in list order, partners
  selected flat in detector (zenith, azimuth) degrees without wrap, < 5(σ_i + σ_j):
  P_s2,i = (ṅ / f_b) Σ_j S_ij · T_ij · D_2((θ_i + θ_j)/2) / (500 s)² / B_j with the
  partner's B_j and ε_j from O3's partner rule (energy clamped to i's band, then its
  loop with O3's slip);
- P_c,i = R_ν,bg · ṅ · r̄² P_Egw · B_i;  P_0 = 0;
- O_i = (P_s1,i + P_s2,i) / (P_c,i + P_0,i), NaN, −∞ or negative → 0, +∞ kept;
  the event statistic O = Σ_i O_i.

The improvements (docs/science.md, "Options") are options of :class:`EventModel`, each off by default
and recorded in :attr:`EventModel.options` (hence in the significance file):
``psf="vmf"``, ``pairs="great_circle"``, ``distance="marginal"``,
``egw_prior="strict"``, ``background_band="capped"``, ``pair_background="fixed"`` and
``null="full"``; see each one's description in :data:`OPTIONS`.

Examples
--------
>>> round(gw_energy_factor(10.0, 40.0), 2)  # k0² / (ρ² ln(E⁺/E⁻)) [Mpc²], no range check
174.41
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels import odds as K
from llama.science import constants as C
from llama.science.background import BackgroundDensity, load_background_sample
from llama.science.signal_tables import SINDEC_EDGES, SignalTables, load_signal_tables

__all__ = [
    "OPTIONS",
    "OddsResult",
    "BatchOdds",
    "EventModel",
    "batch_arrays",
    "compute_odds",
    "gw_energy_factor",
    "neutrino_energy_integral",
]

#: The analysis options: name -> (O3's value first, then the improvements).
OPTIONS: dict[str, tuple[str, ...]] = {
    # neutrino PSF: O3's planar Gaussian, or von Mises-Fisher (right for wide sigma)
    "psf": ("gaussian", "vmf"),
    # doublet partners: O3's flat distance in detector (zenith, azimuth) degrees without
    # wrap, or the true great-circle separation
    "pairs": ("o3", "great_circle"),
    # distance: O3's mean distance r̄ in <n>, or <n> averaged over p(r | pixel)
    "distance": ("o3", "marginal"),
    # E_gw prior: none (cancels, O3), or the per-population range of constants.py
    "egw_prior": ("o3", "strict"),
    # B's zenith band normaliser: O3's (diverges at the poles), or capped at 0 and 180 deg
    "background_band": ("o3", "capped"),
    # doublet partner's B: O3's loop with its slip, or the corrected loop
    "pair_background": ("o3", "fixed"),
    # null hypothesis term: O3's P_0 = 0, or a real one from p_terr and the SNR density
    "null": ("o3", "full"),
}

#: psf option -> kernel code (0 Gaussian as in O3, 1 von Mises-Fisher).
_PSF_CODES = {"gaussian": 0, "vmf": 1}

_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)

#: pi / 180: NumPy's radians multiplies each double by this very double (npymath's
#: ``npy_deg2rad``), in a loop ~6x slower than a plain multiply on 10,000 values.
_RADIANS_PER_DEGREE = np.pi / 180.0


def _prepare_map(skymap, weight=None):
    """``kernels.overlap.prepare_map`` (multi-order) or ``prepare_map_flat`` of ``skymap``
    with per-pixel ``weight`` (None: ones)."""
    ov = _overlap_kernels()
    if skymap.is_moc:
        return ov.prepare_map(skymap.uniq, skymap.probdensity, weight)
    return ov.prepare_map_flat(skymap.probability(), weight)


def _radians(degrees) -> np.ndarray:
    """``np.radians`` of float64 values, bit for bit, at the speed of a multiply (the
    trials' pair terms convert ~13,000 directions and errors per call).

    Examples
    --------
    >>> x = np.array([0.0, -0.0, 90.0, 1e-300, np.inf, np.nan, 359.99999999999994])
    >>> bool((_radians(x).view(np.int64) == np.radians(x).view(np.int64)).all())
    True
    """
    return np.asarray(degrees, dtype=np.float64) * _RADIANS_PER_DEGREE


def gw_energy_factor(rho: float, rbar_mpc: float, population: str | None = None) -> float:
    """r̄² · P_Egw((r̄ρ/k0)²) [Mpc² per code energy unit].

    With ``population=None`` (O3) there is no range check: the factor is
    k0² / (ρ² ln(E⁺/E⁻)) for any r̄. With a population ("bns", "bbh") the strict prior
    of :data:`llama.science.constants.E_GW_STRICT_RANGE` applies: 0 outside its range,
    the log-uniform normalisation of that range inside.

    Examples
    --------
    >>> gw_energy_factor(12.0, 150.0) == gw_energy_factor(12.0, 1500.0)
    True
    >>> gw_energy_factor(12.0, 150.0, "bbh")  # E_gw ~ 20: below the strict BBH range
    0.0
    """
    if population is None:
        return C.K0**2 / (rho**2 * math.log(C.E_GW_MAX / C.E_GW_MIN))
    lo, hi = C.E_GW_STRICT_RANGE[population]
    e_gw = (rbar_mpc * rho / C.K0) ** 2
    if not lo <= e_gw <= hi:
        return 0.0
    return rbar_mpc**2 / (e_gw * math.log(hi / lo))


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


def batch_arrays(ra_deg, dec_deg, sigma_deg, energy_gev, dt_s, offsets):
    """Concatenated neutrino lists as contiguous float64 arrays and int64 CSR offsets,
    checked: offsets rise from 0 to N, every sigma is positive.

    Examples
    --------
    >>> batch_arrays([1.0], [2.0], [0.5], [1e3], [0.0], [0, 1])[5].tolist()
    [0, 1]
    """
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (ra_deg, dec_deg, sigma_deg, energy_gev, dt_s)]  # fmt: skip
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    n = arrays[0].size
    if any(a.shape != (n,) for a in arrays):
        raise ValueError("ra, dec, sigma, energy and dt must be 1-D arrays of equal length")
    if offsets.size < 1 or offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
        raise ValueError(f"offsets must rise from 0 to the number of neutrinos ({n})")
    if np.any(~(arrays[2] > 0)):
        raise ValueError("every sigma must be positive (NeutrinoList floors it)")
    return (*arrays, offsets)


def _overlap_kernels():
    """The overlap kernels module (imported late so this module loads without it)."""
    return importlib.import_module("kernels.overlap")


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
        Per-neutrino arrays (psf_overlap, signal_overlap, p_h_s1, p_h_s2, p_h_c, p_h_0,
        b_density, energy_eval, zenith, azimuth, dt, time_overlap).
    """

    odds: np.ndarray
    odds_i: np.ndarray
    offsets: np.ndarray
    terms: dict[str, np.ndarray] = field(default_factory=dict)


_TRIGGER_FIELDS = (
    "ra dec sigma energy dt zenith azimuth psf_overlap signal_overlap b_density "
    "energy_eval p_h_s1 p_h_s2 p_h_c p_h_0 odds_ratio"
).split()


@dataclass
class OddsResult:
    """The statistic for one event: per-neutrino terms and the combined odds.

    Per-neutrino arrays (list order): ra, dec, sigma [deg], energy [GeV], dt [s],
    zenith, azimuth [deg], psf_overlap [sr⁻¹], signal_overlap S_i [sr⁻¹ GeV⁻¹],
    b_density B_i [sr⁻¹ GeV⁻¹], energy_eval [GeV], p_h_s1, p_h_s2, p_h_c, p_h_0,
    odds_ratio.
    """

    ra: np.ndarray
    dec: np.ndarray
    sigma: np.ndarray
    energy: np.ndarray
    dt: np.ndarray
    zenith: np.ndarray
    azimuth: np.ndarray
    psf_overlap: np.ndarray
    signal_overlap: np.ndarray
    b_density: np.ndarray
    energy_eval: np.ndarray
    p_h_s1: np.ndarray
    p_h_s2: np.ndarray
    p_h_c: np.ndarray
    p_h_0: np.ndarray
    odds_ratio: np.ndarray
    odds: float
    options: dict[str, Any] = field(default_factory=dict)
    gw_energy_in_prior: bool = True

    def triggers(self, p_values=None) -> list[dict[str, float]]:
        """One dict per neutrino, in list order, for ``outputs.neutrino_gw_triggers``.

        Parameters
        ----------
        p_values : array_like, optional
            Per-neutrino p-values (e.g. ``TrialResult.p_values_neutrino``), added as
            ``p_value``.

        Examples
        --------
        >>> r = OddsResult(*([np.zeros(0)] * 16), odds=0.0)
        >>> r.triggers()
        []
        """
        out = [
            {name: float(getattr(self, name)[k]) for name in _TRIGGER_FIELDS}
            for k in range(self.ra.size)
        ]
        if p_values is not None:
            for row, p in zip(out, np.asarray(p_values, dtype=float), strict=True):
                row["p_value"] = float(p)
        return out


def _check_option(name: str, value: str) -> str:
    allowed = OPTIONS[name]
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)} (O3: {allowed[0]}); got {value!r}")  # fmt: skip
    return value


class EventModel:
    """One GW event prepared for evaluating any number of neutrino lists against it.

    Holds the map prepared for the kernels, the signal tables, the background sample
    and the event's constant factors, so on-the-fly trials pay only the kernel calls.

    Parameters
    ----------
    skymap : SkyMap
        Multi-order or flat NESTED map (:class:`llama.science.skymap.SkyMap`).
    rho : float
        Network SNR.
    rbar : float
        Mean distance DISTMEAN [Mpc].
    population : {"bns", "bbh"}
        Source class from p_astro (selects the background table and, with
        ``egw_prior="strict"``, the E_gw range).
    t_gw_mjd : float, optional
        GW time (MJD); needed to put neutrinos without zenith/azimuth into the detector
        frame. Without it, zenith = 90° + dec and azimuth = RA (the South Pole limit).
    psf, pairs, distance, egw_prior, background_band, pair_background, null : str
        Analysis options (:data:`OPTIONS`; the first value of each is O3's, the default).
    p_terrestrial : float, optional
        P(Terrestrial) from p_astro; used by ``null="full"``.
    snr_list : array_like, optional
        Background GW SNRs for ``null="full"`` (:func:`llama.science.gw_null.read_snr_list`;
        default the shipped synthetic list).
    signal_tables : SignalTables, optional
        a(ε, θ) and w(θ); default O3's (:func:`llama.science.signal_tables.load_signal_tables`).
    background : BackgroundDensity, optional
        The background neutrino sample; default the shipped one.
    overlap_rtol : float, optional
        Tolerance of the PSF overlap integrals; default ``kernels.overlap.RTOL`` (1e-2).
    """

    def __init__(
        self,
        skymap,
        rho: float,
        rbar: float,
        population: str = "bns",
        *,
        t_gw_mjd: float | None = None,
        psf: str = "gaussian",
        pairs: str = "o3",
        distance: str = "o3",
        egw_prior: str = "o3",
        background_band: str = "o3",
        pair_background: str = "o3",
        null: str = "o3",
        p_terrestrial: float | None = None,
        snr_list=None,
        signal_tables: SignalTables | None = None,
        background: BackgroundDensity | None = None,
        overlap_rtol: float | None = None,
    ) -> None:
        chosen = {
            "psf": psf,
            "pairs": pairs,
            "distance": distance,
            "egw_prior": egw_prior,
            "background_band": background_band,
            "pair_background": pair_background,
            "null": null,
        }
        for name, value in chosen.items():
            _check_option(name, value)
        if population not in ("bns", "bbh"):
            raise ValueError(f"population must be 'bns' or 'bbh', got {population!r}")
        if not (rbar > 0 and rho > 0):
            raise ValueError(f"rbar and rho must be positive, got {rbar}, {rho}")
        if null == "full" and (p_terrestrial is None or not 0 <= p_terrestrial <= 1):
            raise ValueError("null='full' needs p_terrestrial in [0, 1] (from p_astro.json)")
        if overlap_rtol is None:
            overlap_rtol = _overlap_kernels().RTOL
        if not 0 < overlap_rtol < 1:
            raise ValueError(f"overlap_rtol must be in (0, 1), e.g. 0.01; got {overlap_rtol}")
        self.skymap = skymap
        self.rho, self.rbar, self.population = float(rho), float(rbar), population
        self.t_gw_mjd = None if t_gw_mjd is None else float(t_gw_mjd)
        self.choices = chosen
        self.psf_kind = _PSF_CODES[psf]
        self.p_terrestrial = p_terrestrial
        self.overlap_rtol = float(overlap_rtol)
        self.tables = signal_tables if signal_tables is not None else load_signal_tables()
        self.background = background if background is not None else load_background_sample()
        self.marginal = distance == "marginal" and bool(skymap.has_distance)
        self.options: dict[str, Any] = {
            "model": "o3",
            **chosen,
            "distance_marginal_applied": self.marginal,
            "population": population,
            "rho": self.rho,
            "rbar_mpc": self.rbar,
            "p_terrestrial": p_terrestrial,
            "overlap_rtol": self.overlap_rtol,
            "background_sample": self.background.source,
            "signal_tables": self.tables.source,
        }
        if egw_prior == "strict":
            self.options["egw_strict_range"] = list(C.E_GW_STRICT_RANGE[population])
        # ṅ r̄² P_Egw [Mpc⁻¹ s⁻¹ per code energy unit]: common to P_s and P_c
        self.egw = gw_energy_factor(self.rho, self.rbar, population if egw_prior == "strict" else None)  # fmt: skip
        self.common = C.NDOT_MPC3_S * self.egw
        # <n> / (E w(θ)) = n0 · 10 · (r̄ / 100 Mpc)⁻²  [per code energy unit]
        self.rate_per_energy = C.N0 * 10.0 * (self.rbar / C.R_REF_MPC) ** -2
        self.null_ratio = self._null_ratio(snr_list) if null == "full" else 0.0
        self._prepared: dict[Any, Any] = {}
        self._frame = None
        self._frame_astrometry = None  # ERFA's at t_gw, when evaluate computed it

    # -- geometry ------------------------------------------------------------------------

    def detector_frame(self, ra_deg, dec_deg, dt_s, zenith_deg, azimuth_deg):
        """Zenith and azimuth [deg], filling those not given (NaN) from the frame at t_gw."""
        zen = np.array(zenith_deg, dtype=np.float64)
        az = np.array(azimuth_deg, dtype=np.float64)
        need = ~(np.isfinite(zen) & np.isfinite(az))
        if not need.any():
            return zen, az
        ra, dec = np.asarray(ra_deg)[need], np.asarray(dec_deg)[need]
        if self.t_gw_mjd is None:
            z0, a0 = 90.0 + dec, ra % 360.0
        else:
            z0, a0 = self.frame().zenith_azimuth(ra, dec, np.asarray(dt_s)[need])
        zen[need] = np.where(np.isfinite(zen[need]), zen[need], z0)
        az[need] = np.where(np.isfinite(az[need]), az[need], a0)
        return zen, az

    def frame(self):
        """The detector frame at t_gw (``DetectorFrame``), None without ``t_gw_mjd``;
        built on first use from evaluate's astrometry where it has it, and shared
        with the process's other models of the same astrometry
        (:func:`llama.science.detector_frame.detector_frame_at`)."""
        if self._frame is None and self.t_gw_mjd is not None:
            from llama.science.detector_frame import detector_frame_at

            self._frame = detector_frame_at(self.t_gw_mjd, self._frame_astrometry)
        return self._frame

    # -- kernels -------------------------------------------------------------------------

    def prepared_map(self, pixel_weight_key=None):
        """The map prepared for the overlap kernels (``kernels.overlap.PreparedMap``),
        built on first use and kept. ``pixel_weight_key``: None (O3), or
        ``(k, w)`` for the marginal-distance weights of a k-neutrino term at zenith
        weight w (:meth:`_marginal_weight`)."""
        pm = self._prepared.get(pixel_weight_key)
        if pm is None:
            if pixel_weight_key is None:
                # O3's: of the map's pixels alone, so kept with the map in the process's store
                # (a campaign's maps come again and again; ~4.5 ms per BAYESTAR map)
                from llama.science.skymap import kept_product

                pm = kept_product(self.skymap, ("prepared_map", None), _prepare_map)
            else:
                pm = _prepare_map(self.skymap, self._marginal_weight(*pixel_weight_key))
            self._prepared[pixel_weight_key] = pm
        return pm

    def signal_overlap(self, ra_deg, dec_deg, sigma_deg, energy_eval_gev, pixel_weight_key=None):
        """(Σ P_gw ∫G [sr⁻¹], S = Σ P_gw a(ε) ∫G [sr⁻¹ GeV⁻¹]) per neutrino.

        Examples
        --------
        >>> import numpy as np
        >>> from llama.science.skymap import SkyMap
        >>> m = EventModel(SkyMap(probdensity=np.full(12, 1 / (4 * np.pi)), nside=1), 12.0, 150.0)
        >>> ov, s = m.signal_overlap([10.0], [0.0], [1.0], [1e3])
        >>> bool(abs(ov[0] * 4 * np.pi - 1) < 1e-3)  # uniform map: ∫G / 4π, to the kernels' 1%
        True
        """
        ra = _radians(np.ascontiguousarray(ra_deg, dtype=np.float64))
        if ra.size == 0:
            return _EMPTY_F, _EMPTY_F
        return _overlap_kernels().psf_overlap_prepared(
            self.prepared_map(pixel_weight_key),
            ra,
            _radians(np.ascontiguousarray(dec_deg, dtype=np.float64)),
            _radians(np.ascontiguousarray(sigma_deg, dtype=np.float64)),
            self.tables.dec_rows(energy_eval_gev),
            SINDEC_EDGES,
            self.psf_kind,
            rtol=self.overlap_rtol,
        )

    def pair_overlap(self, ra, dec, sigma, eps_i, eps_j, pi, pj, pixel_weight_key=None):
        """S_ij = Σ P_gw a(ε_i) a(ε_j) ∫ G_i G_j [sr⁻² GeV⁻²] per pair (angles in rad).

        The pairs are ``(pi[k], pj[k])``, indices into ``ra``, ``dec``, ``sigma``;
        ``eps_i``, ``eps_j`` are the energies [GeV] a(ε) is evaluated at, per pair.
        """
        return _overlap_kernels().psf_pair_overlap_prepared(
            self.prepared_map(pixel_weight_key),
            ra[pi], dec[pi], sigma[pi], self.tables.dec_rows(eps_i),
            ra[pj], dec[pj], sigma[pj], self.tables.dec_rows(eps_j),
            SINDEC_EDGES, self.psf_kind, rtol=self.overlap_rtol, weighted_only=True,
        )[1]  # fmt: skip

    # -- distance ------------------------------------------------------------------------

    def _marginal_weight(self, k: int, w: float) -> np.ndarray:
        """Per pixel ∫ p(r | pix) I_k(c(r)) dr / I_k(c(r̄)), c(r) = n0 · 10 (r/100)⁻² w.

        Multiplying S by it and D_k by I_k(c(r̄)) averages the neutrino-count integral
        over the pixel's distance posterior p(r | pix) = DISTNORM r² N(r; DISTMU,
        DISTSIGMA) inside the pixel sum (docs/science.md, "Options", ``distance = marginal``).
        Pixels without a usable posterior keep r̄ (weight 1).
        """
        from llama.science.skymap import conditional_distance_pdf

        # Gauss-Legendre in r over the bulk of each pixel's posterior
        x, wq = np.polynomial.legendre.leggauss(48)
        mu = np.asarray(self.skymap.distmu, dtype=np.float64)
        sd = np.asarray(self.skymap.distsigma, dtype=np.float64)
        norm = np.asarray(self.skymap.distnorm, dtype=np.float64)
        ok = np.isfinite(mu) & np.isfinite(sd) & np.isfinite(norm) & (sd > 0) & (norm > 0)
        lo = np.where(ok, np.maximum(mu - 6.0 * sd, 0.0), 0.0)
        hi = np.where(ok, np.maximum(mu + 6.0 * sd, 1e-3), 1.0)
        r = 0.5 * (hi - lo)[:, None] * (x[None, :] + 1.0) + lo[:, None]  # (npix, 48) [Mpc]
        pdf = conditional_distance_pdf(r, mu[:, None], sd[:, None], norm[:, None])
        rate = C.N0 * 10.0 * w * (np.maximum(r, 1e-9) / C.R_REF_MPC) ** -2
        ik = neutrino_energy_integral(rate.ravel(), k).reshape(r.shape)
        mass = (pdf * wq).sum(axis=1) * 0.5 * (hi - lo)
        avg = (pdf * ik * wq).sum(axis=1) * 0.5 * (hi - lo) / np.where(mass > 0, mass, 1.0)
        i_rbar = float(neutrino_energy_integral([self.rate_per_energy * w], k)[0])
        weight = np.where(ok & (mass > 0.5), avg / i_rbar if i_rbar > 0 else 0.0, 1.0)
        return np.ascontiguousarray(weight)

    def _weight_groups(self, w, k: int):
        """(selection, pixel_weight_key) pairs covering all terms: one group with the O3
        map, or with ``distance="marginal"`` one per distinct zenith weight w of a
        k-neutrino term (each needs its own pixel weights, :meth:`_marginal_weight`)."""
        if not self.marginal:
            return [(slice(None), None)]
        return [(w == v, (k, float(v))) for v in np.unique(w)]

    def _overlaps(self, ra, dec, sigma, eps, w_i):
        """(Σ P_gw ∫G, S_i) for every neutrino."""
        overlap = np.empty(ra.size)
        signal = np.empty(ra.size)
        for sel, key in self._weight_groups(w_i, 1):
            overlap[sel], signal[sel] = self.signal_overlap(ra[sel], dec[sel], sigma[sel], eps[sel], key)  # fmt: skip
        return overlap, signal

    # -- null ----------------------------------------------------------------------------

    def _null_ratio(self, snr_list) -> float:
        """P_0 / P_c for ``null="full"``: p(x_gw | H0) / (V0 · ṅ · g), as O3's sub-threshold
        statistic relates its null and its first chance term (docs/science.md, "Chance and null")."""
        from llama.science import gw_null

        return gw_null.null_to_chance_ratio(
            self.rho, self.rbar, float(self.p_terrestrial), snr_list
        )

    # -- evaluation ----------------------------------------------------------------------

    def background_terms(self, zenith_deg, energy_gev):
        """B_i and the energies of O3's background steps for these neutrinos (primaries)."""
        return self.background.o3_primary(
            np.ascontiguousarray(zenith_deg, dtype=np.float64),
            np.ascontiguousarray(energy_gev, dtype=np.float64),
            band=self.choices["background_band"],
        )

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
        azimuth_deg=None,
        background_terms=None,
    ) -> BatchOdds:
        """Statistics of M concatenated neutrino lists in one pass of each kernel.

        Parameters
        ----------
        ra_deg, dec_deg, sigma_deg : array_like (N,)
            Directions and 1-sigma errors [deg] (sigma already floored upstream).
        energy_gev : array_like (N,)
            Reconstructed energies [GeV].
        dt_s : array_like (N,)
            t_i − t_gw [s].
        zenith_deg : array_like (N,)
            Detector zenith [deg]; NaN: from the detector frame (:meth:`detector_frame`).
        offsets : array_like (M + 1,)
            CSR offsets: list m is ``[offsets[m], offsets[m+1])``; list order matters
            (a doublet counts at its first member).
        azimuth_deg : array_like (N,), optional
            Detector azimuth [deg]; None or NaN: from the detector frame.
        background_terms : BackgroundTerms, optional
            Precomputed :meth:`background_terms` (scrambling RA keeps zenith and
            energy, hence these).

        Returns
        -------
        BatchOdds
        """
        f64 = np.float64
        ra_d, dec_d, sig_d, energy, dt, offsets = batch_arrays(
            ra_deg, dec_deg, sigma_deg, energy_gev, dt_s, offsets
        )
        n = ra_d.size
        az_in = np.full(n, np.nan) if azimuth_deg is None else azimuth_deg
        zen, az = self.detector_frame(ra_d, dec_d, dt, zenith_deg, az_in)

        bg = background_terms if background_terms is not None else self.background_terms(zen, energy)  # fmt: skip
        b_i, eps_i = bg.density, bg.energy_eval
        w_i = np.asarray(self.tables.zenith_weight(zen), dtype=f64)
        t_i = K.time_overlap(dt, C.EMISSION_HALF_WINDOW_S)  # [s]
        overlap, s_i = self._overlaps(ra_d, dec_d, sig_d, eps_i, w_i)
        d_1 = self.egw * neutrino_energy_integral(self.rate_per_energy * w_i, 1)
        p_s1 = C.NDOT_MPC3_S / C.BEAMING_FACTOR * s_i * t_i * d_1 / C.TIME_NORM_S2
        p_c = C.NU_BACKGROUND_RATE_HZ * self.common * b_i
        p_0 = p_c * self.null_ratio

        pair_i, pair_value = self.pair_terms(ra_d, dec_d, sig_d, energy, dt, zen, az, bg, offsets)
        odds_i, p_s2 = K.combine_odds(p_s1, pair_i, pair_value, p_c, p_0)
        terms = {
            "dt": dt,
            "zenith": zen,
            "azimuth": az,
            "psf_overlap": overlap,
            "signal_overlap": s_i,
            "b_density": b_i,
            "energy_eval": eps_i,
            "p_h_s1": p_s1,
            "p_h_s2": p_s2,
            "p_h_c": p_c,
            "p_h_0": p_0,
            "time_overlap": t_i,
        }
        return BatchOdds(K.segment_sum(odds_i, offsets), odds_i, offsets, terms)

    def pair_terms(self, ra_d, dec_d, sig_d, energy, dt, zen, az, bg, offsets, overlap=None, partner=None):  # fmt: skip
        """(first member, P_s2 contribution) of every doublet; those outside the common
        time window contribute 0 (or NaN, see below) without an overlap.

        Parameters
        ----------
        ra_d, dec_d, sig_d, energy, dt, zen, az, offsets
            The concatenated lists as :meth:`evaluate_batch` has them ([deg], [GeV], [s]).
        bg : BackgroundTerms
            Their :meth:`background_terms`.
        overlap : callable, optional
            Replaces :meth:`pair_overlap` (same arguments), e.g. with a bound on S_ij
            (P_s2 is linear in it): fast trials (:mod:`llama.science.fast_trials`).
        partner : callable, optional
            ``partner(first, second, compute)``: the partners' (B_j, eps_j) under O3's
            pair background, where the caller keeps them (from an earlier call on
            lists that held these doublets); ``compute()`` gives them as without it.
        """
        if overlap is None:
            overlap = self.pair_overlap
        if self.choices["pairs"] == "o3":  # flat in detector (azimuth, zenith), no wrap
            lon, lat, mode = _radians(az), _radians(zen), K.PAIR_O3_FLAT
        else:
            lon, lat, mode = _radians(ra_d), _radians(dec_d), K.PAIR_GREAT_CIRCLE
        sig = _radians(sig_d)
        pi, pj = K.find_pairs(lon, lat, sig, offsets, C.PAIR_SEPARATION_SIGMAS, mode)
        if pi.size == 0:
            return _EMPTY_I, _EMPTY_F
        t_ij = K.pair_time_overlap(dt, pi, pj, C.EMISSION_HALF_WINDOW_S)
        if self.choices["pair_background"] == "o3":

            def compute():
                terms = self.background.o3_partner(
                    zen[pj], energy[pj], bg.energy_lo[pi], bg.energy_hi[pi], bg.energy_eval[pi],
                    rule="o3", band=self.choices["background_band"],
                )  # fmt: skip
                return terms.density, terms.energy_eval

            b_j, eps_j = compute() if partner is None else partner(pi, pj, compute)
        else:  # the corrected rule: the partner's own background, as a primary
            b_j, eps_j = bg.density[pj], bg.energy_eval[pj]
        # A pair outside the common window (T_ij = 0) needs no overlap, but O3 still
        # divided its zero by B_j: with B_j = 0 that is 0/0 = NaN, and the first
        # member's odds become 0 ("NaN -> 0"). Kept, as every O3 quirk is.
        value = np.zeros(pi.size)
        value[(t_ij <= 0) & (b_j == 0)] = np.nan
        live = np.flatnonzero(t_ij > 0)
        if live.size == 0:
            return pi, value
        pl, pjl = pi[live], pj[live]
        w_ij = np.asarray(self.tables.zenith_weight(0.5 * (zen[pl] + zen[pjl])), dtype=np.float64)
        ra, dec = _radians(ra_d), _radians(dec_d)
        eps_i, eps_j = bg.energy_eval[pl], eps_j[live]
        s_ij = np.empty(live.size)
        for sel, key in self._weight_groups(w_ij, 2):
            s_ij[sel] = overlap(ra, dec, sig, eps_i[sel], eps_j[sel], pl[sel], pjl[sel], key)  # fmt: skip
        d_2 = self.egw * neutrino_energy_integral(self.rate_per_energy * w_ij, 2)
        with np.errstate(divide="ignore", invalid="ignore"):  # B_j = 0: +inf, as O3
            value[live] = (
                C.NDOT_MPC3_S
                / C.BEAMING_FACTOR
                * s_ij
                * t_ij[live]
                * d_2
                / C.TIME_NORM_S2
                / b_j[live]
            )
        return pi, value

    def evaluate(self, neutrinos, t_gw: float) -> OddsResult:
        """The statistic for one neutrino list (a ``NeutrinoList``) at GW time t_gw [GPS s].

        Zenith and azimuth come from the list when it has them, else from astropy's
        AltAz at IceCube at each neutrino's time (O3). An empty list gives odds 0.
        """
        from llama.science.times import mjd_to_gps

        ra = np.asarray(neutrinos.ra, dtype=np.float64)
        dec = np.asarray(neutrinos.dec, dtype=np.float64)
        n = ra.size
        mjd = np.asarray(neutrinos.mjd, dtype=np.float64)
        dt = np.atleast_1d(mjd_to_gps(mjd)) - t_gw if n else _EMPTY_F
        zen = _optional(getattr(neutrinos, "zenith", None), n)
        az = _optional(getattr(neutrinos, "azimuth", None), n)
        missing = ~(np.isfinite(zen) & np.isfinite(az))
        if missing.any():
            from llama.science import detector_frame as F

            if self.t_gw_mjd is None or self._frame is not None:
                z0, a0 = F.zenith_azimuth(ra[missing], dec[missing], mjd[missing])
            else:  # the trials' frame at t_gw, from the same ERFA calls (one set, ~1 ms)
                z0, a0, self._frame_astrometry = F.zenith_azimuth_and_frame_astrometry(
                    ra[missing], dec[missing], mjd[missing], self.t_gw_mjd
                )
            zen[missing] = np.where(np.isfinite(zen[missing]), zen[missing], z0)
            az[missing] = np.where(np.isfinite(az[missing]), az[missing], a0)
        batch = self.evaluate_batch(
            ra, dec, neutrinos.sigma, neutrinos.energy, dt, zen, np.array([0, n]), azimuth_deg=az
        )
        t = batch.terms
        return OddsResult(
            ra=ra,
            dec=dec,
            sigma=np.asarray(neutrinos.sigma, dtype=np.float64),
            energy=np.asarray(neutrinos.energy, dtype=np.float64),
            **{name: t[name] for name in _TRIGGER_FIELDS[4:-1]},
            odds_ratio=batch.odds_i,
            odds=float(batch.odds[0]),
            options=dict(self.options),
            gw_energy_in_prior=self.egw > 0,
        )


def _optional(values, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    return np.array(values, dtype=np.float64)


def compute_odds(
    skymap,
    neutrinos,
    t_gw: float,
    rho: float,
    rbar: float,
    population: str = "bns",
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
        Passed to :class:`EventModel` (analysis options, tables, background).

    Returns
    -------
    OddsResult
    """
    from llama.science.times import gps_to_mjd

    options.setdefault("t_gw_mjd", float(gps_to_mjd(t_gw)))
    return EventModel(skymap, rho, rbar, population, **options).evaluate(neutrinos, t_gw)
