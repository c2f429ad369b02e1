"""Every constant of the LLAMA search, in one place, with units.

Values are those used in the O3 observing run (Bartos et al. 2019, PRD 100, 083017;
Countryman et al. 2019, arXiv:1901.05486) unless stated otherwise. Code units follow
O3: GW and neutrino emission energies are in O3's code unit kg·Mpc²·s⁻²
(≈ 9.52e51 erg), so that ``10 * E`` in code units is approximately ``E / 1e51 erg``.
Reconstructed neutrino energies are in GeV.

Change a value here and nowhere else; ``constants_dict()`` is what the significance
files record as "the constants used".
"""

from __future__ import annotations

import math

# --- time -----------------------------------------------------------------------------
#: Half-width of the neutrino search window around the GW time [s].
SEARCH_HALF_WINDOW_S = 500.0
#: Half-width of the per-messenger emission window used in the time overlap T_i [s].
EMISSION_HALF_WINDOW_S = 250.0
#: O3's normalisation of the signal terms, (t_ν⁺ − t_ν⁻)(t_gw⁺ − t_gw⁻) = 500 s × 500 s
#: [s²] (not the (1000 s)² of the search window).
TIME_NORM_S2 = (2.0 * EMISSION_HALF_WINDOW_S) ** 2

# --- neutrino point-spread function -------------------------------------------------
#: Floor on a neutrino's 1-sigma angular error [deg].
SIGMA_FLOOR_DEG = 0.2
#: GCN 90% containment radius in units of the 1-sigma error: r90 = 2.146 sigma.
R90_PER_SIGMA = 2.146
#: Doublets are considered when their great-circle separation is below this many
#: times (sigma_i + sigma_j).
PAIR_SEPARATION_SIGMAS = 5.0

# --- GW emission ----------------------------------------------------------------------
#: SNR-to-energy constant: E_gw = (r * rho / K0)^2 with r in Mpc, E in code units.
K0 = 400.8
#: Network SNR threshold of the GW search [dimensionless].
RHO_MIN = 5.59
#: Log-uniform prior range of the GW energy [code units, kg·Mpc²·s⁻² ≈ 9.52e51 erg].
E_GW_MIN = 1.87e-3
E_GW_MAX = 18.7
#: Per-population E_gw = (r ρ / K0)^2 ranges of the ``egw_prior = strict`` option
#: [code units]. They span the r·ρ of detected sources of each population with a factor
#: ~3 in r·ρ to spare on each side: BAYESTAR simulations of 1.4+1.4 Msun BNS give
#: r·ρ = 1,400-3,500 Mpc (E_gw 12-76), 30+30 Msun BBH 17,800-28,700 Mpc (E_gw 2,000-5,100).
#: O3 applied no range (its global one cancels in the odds).
E_GW_STRICT_RANGE = {"bns": (1.0, 700.0), "bbh": (200.0, 5.0e4)}

# --- neutrino emission ----------------------------------------------------------------
#: Log-uniform prior range of the neutrino energy [code units, kg·Mpc²·s⁻² ≈ 9.52e51 erg].
E_NU_MIN = 1e-6
E_NU_MAX = 0.1
#: Expected neutrino count normalisation: <n> = N0 * (10 E_nu) * (r / R_REF_MPC)^-2 * w(theta).
N0 = 1.1
#: Reference distance of the neutrino count normalisation [Mpc].
R_REF_MPC = 100.0

# --- rates ----------------------------------------------------------------------------
#: Local rate density of joint GW+neutrino sources [Gpc^-3 yr^-1].
NDOT_GPC3_YR = 1500.0
#: Beaming factor of the neutrino emission [dimensionless].
BEAMING_FACTOR = 10.0
#: Rate of IceCube background neutrinos in the realtime stream, all sky [Hz].
NU_BACKGROUND_RATE_HZ = 6.4e-3
#: Rate of background (false) GW triggers [Hz] (1 per day).
GW_BACKGROUND_RATE_HZ = 1.0 / 86400.0
#: Window of O3's sub-threshold background-count prior pi_N = Poisson(N; R_nu,bg * this)
#: [s]: 500 s (the emission window), not the 1000 s search window, so the mean is 3.2.
NU_BACKGROUND_WINDOW_S = 500.0

# --- empirical background density of neutrinos -----------------------------------------
#: Half-width of the zenith window used for the background density B_i [deg].
BG_ZENITH_HALF_WIDTH_DEG = 2.5
#: Relative half-width of the energy window used for B_i [fraction of the energy].
BG_ENERGY_REL_HALF_WIDTH = 0.3
#: Minimum number of background events inside the window before it stops widening.
BG_MIN_EVENTS = 5
#: Factor by which both windows widen when too few events fall inside.
BG_WIDEN_FACTOR = 1.5
#: Factor by which O3 moves the energy per widening (x10 below the sample median, /10 above).
BG_ENERGY_STEP_FACTOR = 10.0
#: Zenith above which O3 applies the spectral correction f_E to B [deg].
BG_STEEP_ZENITH_DEG = 80.0
#: Spectral index of that correction, f_E = (eps_i / eps)^index [dimensionless].
BG_SPECTRAL_INDEX = 3.7

# --- detector ---------------------------------------------------------------------------
#: IceCube's geodetic latitude and longitude [deg], as O3 placed it for the detector
#: frame (zenith and azimuth from astropy's AltAz, no refraction).
ICECUBE_LAT_DEG = -89.9944
ICECUBE_LON_DEG = -62.6081

# --- unit conversions -----------------------------------------------------------------
MPC_PER_GPC = 1000.0
#: O3's year (365 days) in ṅ.
SECONDS_PER_YEAR = 365.0 * 86400.0
#: Source rate density in Mpc^-3 s^-1.
NDOT_MPC3_S = NDOT_GPC3_YR / MPC_PER_GPC**3 / SECONDS_PER_YEAR
DEG = math.pi / 180.0


def constants_dict() -> dict[str, float]:
    """All search constants by name, for recording beside results.

    Examples
    --------
    >>> from llama.science.constants import constants_dict
    >>> constants_dict()["K0"]
    400.8
    """
    return {
        name: value
        for name, value in globals().items()
        if name.isupper() and isinstance(value, (int, float))
    }
