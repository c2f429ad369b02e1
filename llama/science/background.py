"""Empirical background density of neutrinos, B_i, from a (zenith, energy) sample.

SCIENCE.md defines B at a neutrino's zenith theta [deg] and energy eps [GeV] as the
number n of background events with |theta - theta_bg| < 2.5 deg and
|eps - eps_bg| < 0.3 eps, divided by

    N_bg * 2 pi |cos(theta - 2.5 deg) - cos(theta + 2.5 deg)| * 2 * 0.3 * eps,

both windows widening by x1.5 until n >= 5. Units: sr^-1 GeV^-1 (a probability
density per background event in solid angle and energy).

The sample is an ``.npz`` file with arrays ``zenith`` [deg] and ``energy`` [GeV]
(``zenith_deg`` / ``energy_gev`` are accepted too). The default is the project's
synthetic sample ``llama/science/data/background_neutrinos.npz`` made by
:func:`llama.science.sim.simulate_background_sample`.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> bg = BackgroundDensity(np.degrees(np.arccos(rng.uniform(-1, 1, 20000))),
...                        10 ** rng.uniform(2, 6, 20000))
>>> b = bg.density(np.array([90.0]), np.array([1e4]))
>>> b.shape
(1,)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kernels.odds import background_density
from llama.science import constants as C

__all__ = ["BackgroundDensity", "DEFAULT_BACKGROUND_SAMPLE", "load_background_sample"]

#: The shipped synthetic background sample (zenith [deg], energy [GeV]).
DEFAULT_BACKGROUND_SAMPLE = Path(__file__).parent / "data" / "background_neutrinos.npz"

# Widening by 1.5 forty times covers any sample: the zenith window alone exceeds 180 deg
# after 10 steps, the energy window exceeds any finite energy after ~40.
_MAX_WIDEN = 60


class BackgroundDensity:
    """Background density B(zenith, energy) [sr^-1 GeV^-1] from a fixed sample.

    Parameters
    ----------
    zenith_deg : array_like
        Zenith angles of the background sample [deg].
    energy_gev : array_like
        Reconstructed energies of the background sample [GeV].
    source : str, optional
        Where the sample came from (recorded in outputs).

    Examples
    --------
    >>> import numpy as np
    >>> bg = BackgroundDensity(np.linspace(0, 180, 1001), np.full(1001, 100.0))
    >>> float(bg.density(np.array([90.0]), np.array([1.0]))[0]) > 0  # widened until 5 inside
    True
    """

    def __init__(self, zenith_deg, energy_gev, source: str = "in-memory") -> None:
        zen = np.asarray(zenith_deg, dtype=np.float64).ravel()
        en = np.asarray(energy_gev, dtype=np.float64).ravel()
        if zen.shape != en.shape:
            raise ValueError(f"zenith has {zen.size} entries, energy {en.size}")
        good = np.isfinite(zen) & np.isfinite(en) & (en > 0)
        if good.sum() < C.BG_MIN_EVENTS:
            raise ValueError(
                f"background sample needs >= {C.BG_MIN_EVENTS} valid events, got {good.sum()}"
            )
        order = np.argsort(zen[good], kind="stable")
        # Sorted by zenith so each query's zenith band is one searchsorted slice.
        self.zenith_sorted = np.ascontiguousarray(zen[good][order])
        self.energy_by_zenith = np.ascontiguousarray(en[good][order])
        self.source = source

    def __len__(self) -> int:
        return self.zenith_sorted.size

    def density(self, zenith_deg, energy_gev) -> np.ndarray:
        """B at each (zenith [deg], energy [GeV]) query, in sr^-1 GeV^-1.

        Examples
        --------
        >>> import numpy as np
        >>> bg = BackgroundDensity(np.linspace(0, 180, 1001), np.full(1001, 100.0))
        >>> bg.density(np.array([]), np.array([])).size
        0
        """
        zen = np.ascontiguousarray(zenith_deg, dtype=np.float64).ravel()
        en = np.ascontiguousarray(energy_gev, dtype=np.float64).ravel()
        return background_density(
            zen,
            en,
            self.zenith_sorted,
            self.energy_by_zenith,
            C.BG_ZENITH_HALF_WIDTH_DEG,
            C.BG_ENERGY_REL_HALF_WIDTH,
            C.BG_MIN_EVENTS,
            C.BG_WIDEN_FACTOR,
            _MAX_WIDEN,
        )


def _pick(data, names: tuple[str, ...], path) -> np.ndarray:
    for name in names:
        if name in data:
            return np.asarray(data[name])
    raise KeyError(f"{path}: background sample needs one of {names}; has {sorted(data.keys())}")


def load_background_sample(path: str | os.PathLike | None = None) -> BackgroundDensity:
    """Read a background sample file (``.npz``: ``zenith`` [deg], ``energy`` [GeV]).

    Parameters
    ----------
    path : path-like, optional
        The sample; default :data:`DEFAULT_BACKGROUND_SAMPLE`.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "bg.npz")
    >>> np.savez(p, zenith=np.linspace(0, 180, 100), energy=np.full(100, 1e3))
    >>> len(load_background_sample(p))
    100
    """
    path = Path(DEFAULT_BACKGROUND_SAMPLE if path is None else path)
    with np.load(path) as data:
        zen = _pick(data, ("zenith", "zenith_deg"), path)
        en = _pick(data, ("energy", "energy_gev"), path)
    return BackgroundDensity(zen, en, source=str(path))
