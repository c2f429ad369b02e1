"""The GW side of O3's null and chance terms (docs/science.md, "The O3 sub-threshold statistic").

O3's sub-threshold statistic has a real null term built from the GW pipeline's
P(Terrestrial), an empirical density of background SNRs and the volume V0 within
which a source at the SNR threshold could be; the OPA statistic's ``null = full``
option borrows it. Everything here is a plain function of numbers:

- r0 = k0 · sqrt(E⁺_gw) / ρ_min [Mpc] (≈ 310.06 Mpc), V0 = 4/3 π r0³ [Mpc³];
- g = k0⁴ (E⁺ − E⁻) / (r̄ ρ⁴ ln(E⁺/E⁻)) (O3's r̄ · P_Egw((r̄ρ/k0)²) · (E⁺ − E⁻) · k0²/ρ²);
- P_emp(ρ) [per unit SNR] from a list of background SNRs: 50 equal bins over
  [min, max]; ρ goes to the first bin whose upper edge is ≥ ρ (bin 1 below the
  minimum, bin 50 above the maximum); P_emp = max(count, 1) / N / bin width;
- p(x_gw | H0) = p_terr · [P_emp(ρ) R_gw,bg + (3 ρ_min³/ρ⁴) V0 ṅ] / (R_gw,bg + V0 ṅ)
  [per unit SNR], with ṅ used as the GW rate density, as O3 did.

The background SNR list O3 used ("post O3a SNR update") is not public: the user
supplies one (plain text, one SNR per line). The project ships
``data/synthetic_background_snr.txt``, a SYNTHETIC list for the examples only (see
:func:`write_synthetic_snr_list`).

Examples
--------
>>> round(r0_mpc(), 2)
310.05
>>> snr = np.linspace(5.0, 10.0, 101)
>>> round(empirical_snr_density(7.5, snr), 4)  # 2 of 101 values in a bin of width 0.1
0.198
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from llama.science import constants as C

__all__ = [
    "SYNTHETIC_HEADER",
    "SYNTHETIC_SNR_LIST",
    "r0_mpc",
    "horizon_volume_mpc3",
    "g_factor",
    "empirical_snr_density",
    "null_gw_density",
    "null_to_chance_ratio",
    "read_snr_list",
    "write_synthetic_snr_list",
]

#: The shipped SYNTHETIC background SNR list (for examples; not O3's list).
SYNTHETIC_SNR_LIST = Path(__file__).parent / "data" / "synthetic_background_snr.txt"
#: Bins of O3's empirical SNR density.
_SNR_BINS = 50


def r0_mpc() -> float:
    """r0(E⁺) = k0 sqrt(E_GW_MAX) / ρ_min [Mpc]: the farthest source above threshold."""
    return C.K0 * math.sqrt(C.E_GW_MAX) / C.RHO_MIN


def horizon_volume_mpc3() -> float:
    """V0 = 4/3 π r0³ [Mpc³].

    Examples
    --------
    >>> round(horizon_volume_mpc3() * C.NDOT_MPC3_S * 1e6, 2)  # V0 ṅ ≈ 5.94e-6 s⁻¹
    5.94
    """
    return 4.0 / 3.0 * math.pi * r0_mpc() ** 3


def g_factor(rho: float, rbar_mpc: float) -> float:
    """O3's g = k0⁴ (E⁺ − E⁻) / (r̄ ρ⁴ ln(E⁺/E⁻)) (no range check on E_gw).

    Examples
    --------
    >>> g_factor(12.0, 150.0) > g_factor(12.0, 300.0)
    True
    """
    return C.K0**4 * (C.E_GW_MAX - C.E_GW_MIN) / (rbar_mpc * rho**4 * math.log(C.E_GW_MAX / C.E_GW_MIN))  # fmt: skip


#: Header of the shipped synthetic list: whoever opens the file sees what it is.
SYNTHETIC_HEADER = (
    "# SYNTHETIC background GW SNR list, for the examples only: NOT O3's list (not public).\n"
    "# Drawn by llama.science.gw_null.write_synthetic_snr_list (n={n}, seed={seed}):\n"
    "# rho = sqrt(rho_min^2 + 2 Exponential(1)), rho_min = {rho_min}. Supply a real list,\n"
    "# one SNR per line, with LLAMA_BACKGROUND_SNR_LIST.\n"
)


def read_snr_list(path: str | os.PathLike | None = None) -> np.ndarray:
    """A background SNR list: plain text, one float per line (default: the synthetic one).

    Blank lines and lines starting with ``#`` (comments, such as the synthetic list's
    header saying what it is) are skipped.

    Examples
    --------
    >>> read_snr_list().size
    2000
    >>> SYNTHETIC_SNR_LIST.read_text().startswith("# SYNTHETIC")
    True
    """
    path = Path(SYNTHETIC_SNR_LIST if path is None else path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"background SNR list {path}: cannot read it ({exc.strerror})") from None
    lines = (line.strip() for line in text.splitlines())
    try:
        values = np.array(
            [float(x) for line in lines if line and not line.startswith("#") for x in line.split()],
            dtype=np.float64,
        )
    except ValueError as exc:
        raise ValueError(f"background SNR list {path}: one number per line expected ({exc})") from None  # fmt: skip
    if values.size < 2 or not np.all(np.isfinite(values)) or values.max() <= values.min():
        raise ValueError(f"background SNR list {path}: needs at least 2 distinct finite SNRs")
    return values


def empirical_snr_density(rho: float, snr_list) -> float:
    """P_emp(ρ) [per unit SNR], O3's histogram density of background SNRs (see module doc).

    Examples
    --------
    >>> empirical_snr_density(100.0, [1.0, 2.0]) == empirical_snr_density(2.0, [1.0, 2.0])
    True
    """
    snr = np.asarray(snr_list, dtype=np.float64)
    lo, hi = float(snr.min()), float(snr.max())
    width = (hi - lo) / _SNR_BINS
    upper = lo + width * np.arange(1, _SNR_BINS + 1)
    upper[-1] = hi
    # bin of each listed SNR and of rho: the first bin whose upper edge is >= the value
    counts = np.bincount(np.minimum(np.searchsorted(upper, snr, side="left"), _SNR_BINS - 1), minlength=_SNR_BINS)  # fmt: skip
    k = min(int(np.searchsorted(upper, rho, side="left")), _SNR_BINS - 1)
    return max(int(counts[k]), 1) / snr.size / width


def null_gw_density(rho: float, p_terrestrial: float, snr_list) -> float:
    """p(x_gw | H0) = p_terr [P_emp(ρ) R_gw,bg + (3 ρ_min³/ρ⁴) V0 ṅ] / (R_gw,bg + V0 ṅ).

    Examples
    --------
    >>> null_gw_density(12.0, 0.0, [5.0, 6.0])
    0.0
    """
    v0_ndot = horizon_volume_mpc3() * C.NDOT_MPC3_S
    astro = 3.0 * C.RHO_MIN**3 / rho**4
    return (
        p_terrestrial
        * (empirical_snr_density(rho, snr_list) * C.GW_BACKGROUND_RATE_HZ + astro * v0_ndot)
        / (C.GW_BACKGROUND_RATE_HZ + v0_ndot)
    )


def null_to_chance_ratio(rho: float, rbar_mpc: float, p_terrestrial: float, snr_list=None) -> float:
    """P_0 / P_c = p(x_gw | H0) / (V0 ṅ g): O3's sub-threshold null over its chance term
    for a real GW (both share the neutrino-background factor), for ``null = full``.

    Examples
    --------
    >>> null_to_chance_ratio(12.0, 150.0, 0.0)
    0.0
    """
    snr = read_snr_list() if snr_list is None else snr_list
    return null_gw_density(rho, p_terrestrial, snr) / (
        horizon_volume_mpc3() * C.NDOT_MPC3_S * g_factor(rho, rbar_mpc)
    )


def write_synthetic_snr_list(path: str | os.PathLike, n: int = 2000, seed: int = 2019) -> None:
    """Write a SYNTHETIC background SNR list (for examples; not O3's list), headed by
    comment lines that say so (:data:`SYNTHETIC_HEADER`).

    Noise triggers of a matched-filter search above the network threshold ρ_min have a
    tail close to Gaussian noise's, ρ² − ρ_min² ~ 2·Exponential(1); this draws ``n`` such
    SNRs with a fixed seed, rounded to 4 decimals, one per line.
    """
    rng = np.random.default_rng(seed)
    snr = np.sqrt(C.RHO_MIN**2 + 2.0 * rng.exponential(1.0, n))
    header = SYNTHETIC_HEADER.format(n=n, seed=seed, rho_min=C.RHO_MIN)
    Path(path).write_text(header + "".join(f"{x:.4f}\n" for x in snr))
