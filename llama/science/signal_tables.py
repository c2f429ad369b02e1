"""O3's signal tables: the reconstructed-energy density a(ε, θ) and the zenith weight w(θ).

Both come from the O3 analysis code (LLAMA v3.5.1, ``coinc_significance/utils.py``,
functions ``aeff_lookup_table`` and ``angle_list``) as numbers, shipped in
``data/o3_tables.json`` with their source. Replace them by passing another file of the
same layout to :func:`load_signal_tables` (or setting ``LLAMA_SIGNAL_TABLES``).

a(ε, θ) [GeV⁻¹]
    What O3 called "Aeff" is NOT an effective area: it is the density of a signal
    neutrino's reconstructed energy, A_eff(ε) ε⁻² / N_ε, integrating to 0.8–1.0 over
    1e2–1e9 GeV in each zenith band. O3's rule: row ``k`` is the smallest of 4..15 with
    log10 ε < (k + 1)/2 (row ``high_e`` for log10 ε ≥ 8); zenith column
    j = int(θ / 10) with θ = 90° + dec of the sky position; inside a row,
    log10 a = factor[j] + (log10 ε − (k + 1)/2 + 0.5) · 2 · exponent[j], i.e. log-linear
    from ``factor`` at log10 ε = k/2 to ``factor + exponent`` at (k + 1)/2 (row 4 extends
    this line below 10^2 GeV).
w(θ) [dimensionless]
    Relative occurrence of a signal neutrino in 5° zenith bands, index int(θ / 5): 0.065
    straight down, peak 2.67 just below the horizon. It multiplies the expected count
    ⟨n⟩, and n0 = 1.1 was calibrated with it.

For the overlap kernels the sky dependence of a is needed per neutrino as a row over
declination bands: θ = 90° + dec puts column j on dec ∈ [−90° + 10 j, −80° + 10 j),
i.e. the sin(dec) bands :data:`SINDEC_EDGES`.

Examples
--------
>>> tables = load_signal_tables()
>>> float(tables.energy_density(1e3, 100.0)).__round__(7)  # row 6 (log10 ε = 3), column 10
0.0005593
>>> float(tables.zenith_weight(92.0))
2.66636028
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SignalTables",
    "load_signal_tables",
    "DEFAULT_SIGNAL_TABLES",
    "SINDEC_EDGES",
    "ZENITH_BIN_DEG",
    "WEIGHT_BIN_DEG",
]

#: The shipped tables (O3's numbers, with their source in the file).
DEFAULT_SIGNAL_TABLES = Path(__file__).parent / "data" / "o3_tables.json"
#: Zenith bin width of a(ε, θ) [deg].
ZENITH_BIN_DEG = 10.0
#: Zenith bin width of w(θ) [deg].
WEIGHT_BIN_DEG = 5.0
#: Rows by energy: row k serves log10 ε < (k + 1)/2; lower rows first.
_ROW_KEYS = tuple(range(4, 16))
#: log10 ε [GeV] from which the ``high_e`` row serves.
_HIGH_E_LOG10 = 8.0

#: sin(dec) edges of a's zenith columns that lie on the sky (dec from −90° to 90° in
#: 10° steps): 18 bands, column 18 (θ = 180° exactly, dec = 90°) has no area.
SINDEC_EDGES = np.sin(np.radians(np.arange(-90.0, 90.0 + 1e-9, ZENITH_BIN_DEG)))
SINDEC_EDGES[0], SINDEC_EDGES[-1] = -1.0, 1.0


class SignalTablesError(ValueError):
    """A signal-tables file does not have the layout of ``data/o3_tables.json``."""


@dataclass(frozen=True)
class SignalTables:
    """a(ε, θ) and w(θ) as arrays (see the module docstring for the rules).

    Attributes
    ----------
    factor, exponent : ndarray (13, n_zen)
        Rows 4..15 then ``high_e``; columns are 10° zenith bins from θ = 0.
    weight : ndarray (n_w,)
        w per 5° zenith bin from θ = 0.
    source : str
        The file the tables came from.
    """

    factor: np.ndarray
    exponent: np.ndarray
    weight: np.ndarray
    source: str

    # -- a(ε, θ) ---------------------------------------------------------------------------

    def _row_and_offset(self, energy_gev) -> tuple[np.ndarray, np.ndarray]:
        """Row index (0..12) and the in-row coordinate 2 (log10 ε − (k+1)/2 + 0.5)."""
        x = np.log10(np.asarray(energy_gev, dtype=np.float64))
        # smallest k in 4..15 with x < (k + 1)/2, i.e. k = max(4, floor(2x)); np.clip's
        # Python wrapper cost more than the rest on an event's few neutrinos
        k = np.minimum(np.maximum(np.floor(2.0 * x), _ROW_KEYS[0]), _ROW_KEYS[-1])
        row = (k - _ROW_KEYS[0]).astype(np.int64)
        high = x >= _HIGH_E_LOG10
        row = np.where(high, len(_ROW_KEYS), row)
        offset = 2.0 * (x - 0.5 * (k + 1.0) + 0.5)
        return row, offset

    def energy_density(self, energy_gev, zenith_deg) -> np.ndarray:
        """a(ε, θ) [GeV⁻¹] at reconstructed energies ε [GeV] and zeniths θ [deg].

        Examples
        --------
        >>> t = load_signal_tables()
        >>> a = t.energy_density([1e2, 1e3, 1e4], 120.0)  # up-going sky
        >>> bool(a[1] > a[0] > 0 and a[1] > a[2] > 0)
        True
        """
        row, offset = self._row_and_offset(energy_gev)
        col = _bin_index(zenith_deg, ZENITH_BIN_DEG, self.factor.shape[1])
        row, offset, col = np.broadcast_arrays(row, offset, col)
        return 10.0 ** (self.factor[row, col] + offset * self.exponent[row, col])

    def dec_rows(self, energy_gev) -> np.ndarray:
        """a(ε_i, θ = 90° + dec) per neutrino over the declination bands :data:`SINDEC_EDGES`.

        Returns
        -------
        ndarray (n, 18), C-contiguous [GeV⁻¹]: the layout the overlap kernels take.

        Examples
        --------
        >>> load_signal_tables().dec_rows([1e3, 1e5]).shape
        (2, 18)
        """
        row, offset = self._row_and_offset(np.atleast_1d(energy_gev))
        f, e = self._dec_band_rows
        # f + offset e, then 10 ** it, in one new array (rows taken whole: take)
        out = e.take(row, axis=0)
        out *= offset[:, None]
        out += f.take(row, axis=0)
        return np.power(10.0, out, out=out)

    @functools.cached_property
    def _dec_band_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(factor, exponent) of the zenith columns on the sky, contiguous."""
        nb = SINDEC_EDGES.size - 1
        return (
            np.ascontiguousarray(self.factor[:, :nb]),
            np.ascontiguousarray(self.exponent[:, :nb]),
        )

    # -- w(θ) ------------------------------------------------------------------------------

    def zenith_weight(self, zenith_deg) -> np.ndarray:
        """w(θ): O3's weight of the 5° band int(θ/5) (θ = 180° uses the last band).

        Examples
        --------
        >>> load_signal_tables().zenith_weight([0.0, 4.9, 5.0]).tolist()
        [0.064912, 0.064912, 0.06930208]
        """
        return self.weight[_bin_index(zenith_deg, WEIGHT_BIN_DEG, self.weight.size)]


def _bin_index(theta_deg, width: float, n_bins: int) -> np.ndarray:
    """Bin int(θ / width) of each zenith, clipped to 0..n_bins − 1: ``θ // width``.

    NumPy's float ``//`` goes through fmod per element (~15 ns each, 3x the steps
    here); the floor of the rounded quotient is the same but where the quotient rounds
    up onto the next integer (θ just below a bin edge), which the product check steps
    back. NaN and ±inf become NaN, as ``//`` makes them.
    """
    theta = np.asarray(theta_deg, dtype=np.float64)
    q = np.floor(theta / width)
    q = q - (q * width > theta) + (theta - theta)  # θ − θ: 0, or NaN where not finite
    # np.clip's Python wrapper costs more than the rest on an event's few neutrinos
    return np.minimum(np.maximum(q.astype(np.int64), 0), n_bins - 1)


def _row_arrays(rows: dict, key: str, n_zen: int, path: str) -> tuple[list, list]:
    try:
        row = rows[key]
        factor = [float(v) for v in row["factor"]]
        exponent = [float(v) for v in row["exponent"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SignalTablesError(
            f"{path}: aeff.rows[{key!r}] needs 'factor' and 'exponent' lists of numbers ({exc})"
        ) from None
    if len(factor) != n_zen or len(exponent) != n_zen:
        raise SignalTablesError(
            f"{path}: aeff.rows[{key!r}] has {len(factor)}/{len(exponent)} values; "
            f"every row needs {n_zen} zenith bins"
        )
    return factor, exponent


@functools.lru_cache(maxsize=8)
def _load(path: str, stamp: tuple[int, int]) -> SignalTables:  # stamp: a changed file reloads
    try:
        data = json.loads(Path(path).read_text())
        rows = data["aeff"]["rows"]
        weight = np.asarray(data["zenith_weight"]["values"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise SignalTablesError(
            f"{path}: not a signal-tables file (JSON with aeff.rows and "
            f"zenith_weight.values, as llama/science/data/o3_tables.json): {exc}"
        ) from None
    keys = [str(k) for k in _ROW_KEYS] + ["high_e"]
    n_zen = len(rows.get("4", {}).get("factor", [])) if isinstance(rows, dict) else 0
    if n_zen * ZENITH_BIN_DEG < 180.0:
        raise SignalTablesError(f"{path}: the zenith bins must cover 0-180 deg")
    pairs = [_row_arrays(rows, k, n_zen, path) for k in keys]
    factor = np.array([p[0] for p in pairs])
    exponent = np.array([p[1] for p in pairs])
    if weight.ndim != 1 or weight.size * WEIGHT_BIN_DEG < 180.0 or np.any(~(weight >= 0)):
        raise SignalTablesError(
            f"{path}: zenith_weight.values must be >= 0 and cover 0-180 deg in 5-deg bins"
        )
    if not (np.all(np.isfinite(factor)) and np.all(np.isfinite(exponent))):
        raise SignalTablesError(f"{path}: non-finite factor or exponent")
    return SignalTables(factor, exponent, weight, source=path)


def load_signal_tables(path: str | os.PathLike | None = None) -> SignalTables:
    """Read a(ε, θ) and w(θ) from a JSON file (default: O3's, :data:`DEFAULT_SIGNAL_TABLES`).

    Examples
    --------
    >>> load_signal_tables().weight.size
    36
    """
    path = os.fspath(path or DEFAULT_SIGNAL_TABLES)
    try:
        st = os.stat(path)
    except OSError:
        raise SignalTablesError(f"{path}: no such signal-tables file") from None
    return _load(path, (st.st_mtime_ns, st.st_size))


def energy_density_integral(tables: SignalTables, zenith_deg: float, n: int = 4000) -> float:
    """∫ a(ε, θ) dε over 1e2–1e9 GeV (O3: 0.8–1.0 in each band), by the trapezoid rule in ln ε.

    Examples
    --------
    >>> 0.7 < energy_density_integral(load_signal_tables(), 120.0) < 1.1
    True
    """
    ln_e = np.linspace(math.log(1e2), math.log(1e9), n)
    e = np.exp(ln_e)
    return float(np.trapezoid(tables.energy_density(e, zenith_deg) * e, ln_e))
