"""IceCube effective area A_eff(E, zenith) and the zenith weight w(theta), from data files.

IceCube's effective-area tables are not available here in machine-readable form, so
the project ships a documented *parametrisation* in two small CSV files that users can
replace with real tables of the same shape:

``data/effective_area.csv``
    One row per bin: ``log10e_min, log10e_max`` (log10 of the neutrino energy in GeV,
    half-decade bins from 2 to 9), ``zenith_min_deg, zenith_max_deg`` (10-degree bins of
    the detector zenith angle, 0 = straight down-going, 180 = straight up-going) and
    ``aeff_m2``, the effective area in m^2, constant within the bin (so log A_eff is
    piecewise constant).
``data/zenith_weight.csv``
    ``zenith_deg, weight``: the relative signal rate w(theta) at nodes every 10 degrees,
    linearly interpolated in between; 1 at its maximum.

At the South Pole the zenith is ``90 deg + dec``, so zenith bins map one to one to
bins in ``sin(dec) = -cos(zenith)``; :func:`load_effective_area` returns the table in
those coordinates, ``aeff[n_e, n_dec]``, the layout the Numba kernels take.

The parametrisation (:func:`parametrised_log10_aeff`) loosely follows the public
IceCube point-source effective areas: about 1e-2 m^2 at a few hundred GeV rising to ~100 m^2 at
1 PeV near the horizon; the up-going (northern) sky loses area above ~30 TeV to Earth
absorption along long chords; the down-going (southern) sky is strongly suppressed at
low energy, where the atmospheric-muon veto removes events, and recovers above a PeV.
Regenerate the shipped files with ``python -m llama.science.effective_area``.

Examples
--------
>>> from llama.science.effective_area import load_effective_area, effective_area
>>> log10e_edges, sindec_edges, aeff = load_effective_area()
>>> aeff.shape == (len(log10e_edges) - 1, len(sindec_edges) - 1)
True
>>> bool(effective_area(1e5, 10.0) > effective_area(1e3, -60.0))
True
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_DIR",
    "EFFECTIVE_AREA_FILE",
    "ZENITH_WEIGHT_FILE",
    "load_effective_area",
    "effective_area",
    "load_zenith_weight",
    "zenith_weight",
    "parametrised_log10_aeff",
    "write_default_tables",
]

DATA_DIR = Path(__file__).parent / "data"
EFFECTIVE_AREA_FILE = DATA_DIR / "effective_area.csv"
ZENITH_WEIGHT_FILE = DATA_DIR / "zenith_weight.csv"

#: Bin edges of the shipped parametrisation.
LOG10E_EDGES = np.arange(2.0, 9.0 + 1e-9, 0.5)
ZENITH_EDGES_DEG = np.arange(0.0, 180.0 + 1e-9, 10.0)


def _read_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of a CSV whose first non-comment line holds the column names."""
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{os.fspath(path)}: no header line and no data")
    names = [n.strip() for n in lines[0].split(",")]
    try:
        rows = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]], dtype=float)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: non-numeric value ({exc})") from None
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise ValueError(f"{os.fspath(path)}: every row needs {len(names)} values: {names}")
    return {name: rows[:, i] for i, name in enumerate(names)}


@functools.lru_cache(maxsize=8)
def _load_effective_area_cached(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cols = _read_csv(path)
    need = ("log10e_min", "log10e_max", "zenith_min_deg", "zenith_max_deg", "aeff_m2")
    missing = [n for n in need if n not in cols]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(need)}")
    e_lo, e_hi = cols["log10e_min"], cols["log10e_max"]
    z_lo, z_hi = cols["zenith_min_deg"], cols["zenith_max_deg"]
    e_edges = np.unique(np.r_[e_lo, e_hi])
    z_edges = np.unique(np.r_[z_lo, z_hi])
    ne, nz = len(e_edges) - 1, len(z_edges) - 1
    ie = np.searchsorted(e_edges, e_lo)
    iz = np.searchsorted(z_edges, z_lo)
    table = np.full((ne, nz), np.nan)
    table[ie, iz] = cols["aeff_m2"]
    if np.isnan(table).any() or len(e_lo) != ne * nz:
        raise ValueError(
            f"{path}: the bins must form a full, non-overlapping grid of {ne} energy x "
            f"{nz} zenith bins (got {len(e_lo)} rows)"
        )
    if (table < 0).any():
        raise ValueError(f"{path}: negative effective area")
    if z_edges[0] < 0 or z_edges[-1] > 180:
        raise ValueError(f"{path}: zenith edges must lie within [0, 180] degrees")
    # zenith = 90 + dec  =>  sin(dec) = -cos(zenith), increasing with zenith.
    sindec_edges = -np.cos(np.radians(z_edges))
    sindec_edges[0], sindec_edges[-1] = max(sindec_edges[0], -1.0), min(sindec_edges[-1], 1.0)
    return e_edges, sindec_edges, table


def load_effective_area(
    path: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The effective-area table in kernel layout.

    Parameters
    ----------
    path : path, optional
        A CSV in the format of ``data/effective_area.csv``; default: the shipped one.

    Returns
    -------
    log10e_edges : ndarray, shape (n_e + 1,)
        Bin edges in log10(E / GeV), increasing.
    sindec_edges : ndarray, shape (n_dec + 1,)
        Bin edges in sin(dec), increasing (from the zenith edges: sin dec = -cos zenith).
    aeff : ndarray, shape (n_e, n_dec)
        Effective area [m^2] per bin.  Copies: safe to modify.
    """
    e, s, t = _load_effective_area_cached(os.fspath(path or EFFECTIVE_AREA_FILE))
    return e.copy(), s.copy(), t.copy()


def effective_area(energy_gev, dec_deg, path: str | os.PathLike | None = None) -> np.ndarray:
    """A_eff [m^2] at the given energies [GeV] and declinations [deg] (table lookup).

    Energies outside the table use the nearest bin.

    Examples
    --------
    >>> float(effective_area(1e4, 0.0)) > 0
    True
    """
    e_edges, s_edges, table = _load_effective_area_cached(os.fspath(path or EFFECTIVE_AREA_FILE))
    x = np.log10(np.asarray(energy_gev, dtype=float))
    s = np.sin(np.radians(np.asarray(dec_deg, dtype=float)))
    ie = np.clip(np.searchsorted(e_edges, x, side="right") - 1, 0, len(e_edges) - 2)
    js = np.clip(np.searchsorted(s_edges, s, side="right") - 1, 0, len(s_edges) - 2)
    return table[ie, js]


@functools.lru_cache(maxsize=8)
def _load_zenith_weight_cached(path: str) -> tuple[np.ndarray, np.ndarray]:
    cols = _read_csv(path)
    if "zenith_deg" not in cols or "weight" not in cols:
        raise ValueError(f"{path}: expected columns zenith_deg, weight")
    z, w = cols["zenith_deg"], cols["weight"]
    if np.any(np.diff(z) <= 0) or (w < 0).any():
        raise ValueError(f"{path}: zenith_deg must increase and weights be >= 0")
    return z, w


def load_zenith_weight(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``(zenith_deg, weight)`` of w(theta); default: the shipped file."""
    z, w = _load_zenith_weight_cached(os.fspath(path or ZENITH_WEIGHT_FILE))
    return z.copy(), w.copy()


def zenith_weight(theta_deg) -> np.ndarray:
    """Relative signal rate w(theta) at detector zenith theta [deg] (shipped table).

    Linear interpolation between the nodes; low near the zenith, 1 at the horizon.

    Examples
    --------
    >>> w = zenith_weight([0.0, 90.0, 180.0])
    >>> bool(w[0] < w[2] < w[1] == 1.0)
    True
    """
    z, w = _load_zenith_weight_cached(os.fspath(ZENITH_WEIGHT_FILE))
    return np.interp(np.asarray(theta_deg, dtype=float), z, w)


# --- the shipped parametrisation --------------------------------------------------------


def parametrised_log10_aeff(log10e, zenith_deg) -> np.ndarray:
    """log10(A_eff / m^2) of the shipped parametrisation (see the module docstring).

    Examples
    --------
    >>> round(float(parametrised_log10_aeff(2.0, 90.0)), 2)
    -2.3
    """
    x = np.asarray(log10e, dtype=float)
    cz = np.cos(np.radians(np.asarray(zenith_deg, dtype=float)))
    # Near the horizon: steep rise with energy, saturating around a few hundred m^2.
    horizon = 2.4 - 4.7 * np.exp(-(x - 2.0) / 1.6)
    # Up-going: Earth absorption grows with energy and with the chord (-cos zenith).
    chord = np.clip(-cz, 0.0, 1.0)
    absorption = 0.55 * chord * np.clip(x - 4.5, 0.0, None)
    # Down-going: the muon veto / energy cut removes low-energy events, more so the more
    # vertical the track (more overburden-free muon bundles); gone by ~10 PeV.
    depth = np.clip(cz, 0.0, 1.0)
    veto = depth * (0.3 + 3.2 * np.clip((7.0 - x) / 5.0, 0.0, None))
    return np.maximum(horizon - absorption - veto, -6.0)


#: w(theta) nodes of the shipped table: rises from the vertical down-going direction
#: (muon background forces tight cuts) to the horizon, then falls slowly towards the
#: nadir (Earth absorption of the highest-energy signal).
_ZENITH_WEIGHT_NODES = (
    (0, 0.02), (10, 0.03), (20, 0.05), (30, 0.08), (40, 0.13), (50, 0.20), (60, 0.32),
    (70, 0.50), (80, 0.80), (90, 1.00), (100, 0.92), (110, 0.80), (120, 0.68),
    (130, 0.58), (140, 0.50), (150, 0.45), (160, 0.41), (170, 0.39), (180, 0.38),
)  # fmt: skip

_AEFF_HEADER = """\
# IceCube effective area A_eff(E, zenith) for LLAMA -- a PARAMETRISATION, not IceCube data.
# Loosely follows public IceCube point-source (muon-neutrino) effective areas: ~1e-2 m^2 at
# 100 GeV rising to ~100 m^2 near a PeV at the horizon; up-going (zenith > 90 deg, northern
# sky) loses area at high energy to Earth absorption; down-going (zenith < 90 deg, southern
# sky) is suppressed at low energy by the atmospheric-muon veto.
# Columns: log10e_min, log10e_max: bin edges in log10(E / GeV) (half decades, 2..9);
#   zenith_min_deg, zenith_max_deg: detector zenith bin edges in degrees (10-degree bins;
#   zenith = 90 + dec at the South Pole); aeff_m2: effective area in m^2, constant in the bin.
# Replace this file with a real table of the same columns (any full grid of bins) to use it.
# Regenerate with: python -m llama.science.effective_area
"""

_WEIGHT_HEADER = """\
# Zenith weight w(theta) for LLAMA: relative signal-neutrino rate vs detector zenith
# (0 = vertically down-going, 90 = horizon, 180 = vertically up-going), 1 at its maximum.
# Low near the zenith (tight cuts against atmospheric muons), highest at the horizon,
# falling slowly towards the nadir (Earth absorption). A parametrisation, not IceCube data.
# Columns: zenith_deg (nodes, increasing), weight (linearly interpolated between nodes).
# Regenerate with: python -m llama.science.effective_area
"""


def write_default_tables(directory: str | os.PathLike = DATA_DIR) -> None:
    """Write the shipped ``effective_area.csv`` and ``zenith_weight.csv`` into directory."""
    directory = Path(directory)
    lines = [_AEFF_HEADER + "log10e_min,log10e_max,zenith_min_deg,zenith_max_deg,aeff_m2"]
    for e0, e1 in zip(LOG10E_EDGES[:-1], LOG10E_EDGES[1:], strict=True):
        for z0, z1 in zip(ZENITH_EDGES_DEG[:-1], ZENITH_EDGES_DEG[1:], strict=True):
            a = 10 ** parametrised_log10_aeff(0.5 * (e0 + e1), 0.5 * (z0 + z1))
            lines.append(f"{e0:.1f},{e1:.1f},{z0:.0f},{z1:.0f},{a:.4e}")
    (directory / "effective_area.csv").write_text("\n".join(lines) + "\n")
    rows = [f"{z:.0f},{w:.3f}" for z, w in _ZENITH_WEIGHT_NODES]
    (directory / "zenith_weight.csv").write_text(
        _WEIGHT_HEADER + "zenith_deg,weight\n" + "\n".join(rows) + "\n"
    )
    _load_effective_area_cached.cache_clear()
    _load_zenith_weight_cached.cache_clear()


if __name__ == "__main__":
    write_default_tables()
    print(f"wrote {EFFECTIVE_AREA_FILE} and {ZENITH_WEIGHT_FILE}")
