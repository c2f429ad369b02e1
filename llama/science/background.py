"""Empirical background density of neutrinos, B_i, from a (zenith, energy) sample.

B is O3's (docs/science.md, "Background density B and the energy the signal is evaluated
at", steps 1-5): the count of background events within δω = 2.5° of the neutrino's
zenith and within ε·ΔE (ΔE = 0.3) of its energy ε, after raising ε to the zenith band's
minimum energy, both windows widening by ×1.5 (and ε moving ×10 or ÷10) until 5 events
are inside, with the (ε_i/ε)^3.7 correction above 80° zenith, divided by

    N_bg · 2π |cos(θ − δω) − cos(θ + δω)| · 2ΔE · ε        [sr⁻¹ GeV⁻¹].

:meth:`BackgroundDensity.o3_primary` gives it for each neutrino of an OPA list,
:meth:`BackgroundDensity.o3_partner` for the second neutrino of a doublet (O3's slip,
or the fixed rule), :meth:`BackgroundDensity.o3_list` for the sub-threshold search's
windows carried along a list. They return :class:`BackgroundTerms` (B and the energies
of the steps: the signal density a(ε, θ) is evaluated at ``energy_eval``), computed by
the Numba kernels in :mod:`kernels.background`.

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
>>> terms = bg.o3_primary(np.array([90.0]), np.array([1e4]))
>>> bool(terms.density[0] > 0 and terms.count[0] >= 5)
True
"""

from __future__ import annotations

import functools
import os
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kernels.background import (
    block_sort,
    o3_list_terms,
    o3_partner_terms,
    o3_primary_terms,
)
from llama.science import constants as C

__all__ = [
    "BackgroundDensity",
    "BackgroundTerms",
    "BAND_OPTIONS",
    "DEFAULT_BACKGROUND_SAMPLE",
    "PAIR_BACKGROUND_OPTIONS",
    "load_background_sample",
]

#: The shipped synthetic background sample (zenith [deg], energy [GeV]).
DEFAULT_BACKGROUND_SAMPLE = Path(__file__).parent / "data" / "background_neutrinos.npz"

# Widening by 1.5 forty times covers any sample: the zenith window alone exceeds 180 deg
# after 10 steps, the energy window exceeds any finite energy after ~40.
_MAX_WIDEN = 60

#: Values of ``band`` (option ``background_band``): O3's solid angle, or cut at the poles.
BAND_OPTIONS = ("o3", "capped")
#: Values of ``rule`` (option ``pair_background``): O3's partner loop, or the corrected one.
PAIR_BACKGROUND_OPTIONS = ("o3", "fixed")

# Events per block of the zenith-sorted sample whose energies the kernels keep sorted:
# a whole block inside a band is counted by bisection, so a count costs about
# 2*_BLOCK + (band size / _BLOCK) * 2 log2(_BLOCK) comparisons instead of band size.
_BLOCK = 128


class BackgroundTerms(NamedTuple):
    """O3's background terms of each query neutrino (arrays of one length).

    Attributes
    ----------
    density : numpy.ndarray
        B [sr^-1 GeV^-1].
    energy_eval : numpy.ndarray
        The energy eps left by steps 2-4 [GeV]: where a(eps, theta) is evaluated.
    energy_lo, energy_hi : numpy.ndarray
        Min and max sample energy [GeV] in the neutrino's initial zenith band (step 1;
        NaN if the band holds no event). For a partner: the primary's bounds it was
        clamped to.
    count : numpy.ndarray
        The number N of sample events entering B (int64).
    """

    density: np.ndarray
    energy_eval: np.ndarray
    energy_lo: np.ndarray
    energy_hi: np.ndarray
    count: np.ndarray


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _queries(zenith_deg, energy_gev) -> tuple[np.ndarray, np.ndarray]:
    zen = np.ascontiguousarray(zenith_deg, dtype=np.float64).ravel()
    en = np.ascontiguousarray(energy_gev, dtype=np.float64).ravel()
    if zen.shape != en.shape:
        raise ValueError(f"zenith has {zen.size} entries, energy {en.size}")
    return zen, en


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
    >>> t = bg.o3_primary(np.array([90.0]), np.array([1.0]))  # raised to the band's 100 GeV
    >>> float(t.energy_eval[0]), int(t.count[0]) >= 5
    (100.0, True)
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

    @cached_property
    def _o3_sample(self) -> tuple[np.ndarray, float]:
        # Block-sorted energies and the median of all energies (the x10 or /10 switch),
        # made once per sample on first use.
        return block_sort(self.energy_by_zenith, _BLOCK), float(np.median(self.energy_by_zenith))

    def _o3_args(self) -> tuple:
        """Sample arrays and constants in the order the kernels take them."""
        en_blk, median = self._o3_sample
        return (
            self.zenith_sorted,
            self.energy_by_zenith,
            en_blk,
            _BLOCK,
            median,
            C.BG_ZENITH_HALF_WIDTH_DEG,
            C.BG_ENERGY_REL_HALF_WIDTH,
            C.BG_MIN_EVENTS,
            C.BG_WIDEN_FACTOR,
            C.BG_ENERGY_STEP_FACTOR,
            C.BG_STEEP_ZENITH_DEG,
            C.BG_SPECTRAL_INDEX,
            _MAX_WIDEN,
        )

    def o3_primary(self, zenith_deg, energy_gev, *, band: str = "o3") -> BackgroundTerms:
        """O3's B for each neutrino on its own (docs/science.md, "Background density B and the energy the signal is evaluated at", steps 1-5, fresh windows).

        Per neutrino: the band |theta_i - theta_bg| < 2.5 deg gives eps_lo, eps_hi;
        eps = max(eps_i, eps_lo); while fewer than 5 events have
        |theta_i - theta_bg| < dw and |eps - eps_bg| < eps dE, both windows widen x1.5
        and eps moves x10 (below the median sample energy) or /10; above 80 deg, an
        eps_i above eps gives f_E = (eps_i/eps)^3.7 and eps = eps_i; then
        B = N / (N_bg 2 pi |cos(theta_i - dw) - cos(theta_i + dw)| 2 dE eps) / f_E.
        Each loop stops after 60 widenings (only a pathological sample gets there; N
        is then the last count, possibly below 5).

        Parameters
        ----------
        zenith_deg : array_like
            Neutrino zenith angles [deg].
        energy_gev : array_like
            Neutrino reconstructed energies [GeV].
        band : {"o3", "capped"}
            Solid angle of the zenith band: O3's formula, or cut at 0 and 180 deg
            (``background_band = capped``).

        Returns
        -------
        BackgroundTerms
            density [sr^-1 GeV^-1], energy_eval [GeV], energy_lo, energy_hi [GeV],
            count.

        Examples
        --------
        >>> import numpy as np
        >>> bg = BackgroundDensity(np.linspace(0, 180, 3601), np.full(3601, 1e3))
        >>> t = bg.o3_primary([90.0, 90.0], [10.0, 1e3])
        >>> t.energy_eval.tolist(), t.count.tolist()  # raised to eps_lo, no widening
        ([1000.0, 1000.0], [99, 99])
        """
        capped = _choice("band", band, BAND_OPTIONS) == "capped"
        zen, en = _queries(zenith_deg, energy_gev)
        return BackgroundTerms(*o3_primary_terms(zen, en, *self._o3_args(), capped))

    def o3_partner(
        self,
        zenith_deg,
        energy_gev,
        energy_lo,
        energy_hi,
        primary_energy,
        *,
        rule: str = "o3",
        band: str = "o3",
    ) -> BackgroundTerms:
        """O3's B for the partner j of a doublet (docs/science.md, "Pairs").

        eps_j is clamped to the primary's [energy_lo, energy_hi], then steps 3-5 run
        with theta_j, starting from dw = 2.5 deg and dE = 0.3. Step 4 compares the
        clamped energy with eps.

        Parameters
        ----------
        zenith_deg, energy_gev : array_like
            Partner zenith [deg] and energy [GeV].
        energy_lo, energy_hi : array_like
            The primary's ``energy_lo``, ``energy_hi`` [GeV] (from :meth:`o3_primary`),
            one value per partner.
        primary_energy : array_like
            The primary's ``energy_eval`` [GeV], one per partner.
        rule : {"o3", "fixed"}
            ``"o3"`` keeps O3's slip: each pass counts, then ALWAYS widens both windows
            and moves eps (×10 or ÷10, the direction decided by the PRIMARY's energy
            against the sample median: "the test looked at the primary's value"),
            stopping once a count reached 5, so B_j pairs that count with windows and
            energy moved once more. ``"fixed"``
            (``pair_background = fixed``): the primary's loop, widening only while the
            partner's own count is below 5.
        band : {"o3", "capped"}
            As :meth:`o3_primary`.

        Returns
        -------
        BackgroundTerms
            energy_lo and energy_hi are the bounds passed in.

        Examples
        --------
        >>> import numpy as np
        >>> bg = BackgroundDensity(np.linspace(0, 180, 3601), np.full(3601, 1e3))
        >>> p = bg.o3_primary([60.0], [1e3])
        >>> args = (p.energy_lo, p.energy_hi, p.energy_eval)
        >>> slip = bg.o3_partner([60.0], [5e3], *args)
        >>> fixed = bg.o3_partner([60.0], [5e3], *args, rule="fixed")
        >>> float(slip.energy_eval[0]), float(fixed.energy_eval[0])  # clamped to 1e3
        (100.0, 1000.0)
        """
        fixed = _choice("rule", rule, PAIR_BACKGROUND_OPTIONS) == "fixed"
        capped = _choice("band", band, BAND_OPTIONS) == "capped"
        zen, en = _queries(zenith_deg, energy_gev)
        lo = np.ascontiguousarray(energy_lo, dtype=np.float64).ravel()
        hi = np.ascontiguousarray(energy_hi, dtype=np.float64).ravel()
        prim = np.ascontiguousarray(primary_energy, dtype=np.float64).ravel()
        if lo.shape != zen.shape or hi.shape != zen.shape or prim.shape != zen.shape:
            raise ValueError(
                f"need one energy_lo, energy_hi and primary_energy per partner: {zen.size} "
                f"partners, {lo.size} energy_lo, {hi.size} energy_hi, {prim.size} primary_energy"
            )
        terms = o3_partner_terms(zen, en, lo, hi, prim, *self._o3_args(), capped, fixed)
        return BackgroundTerms(*terms)

    def o3_list(self, zenith_deg, energy_gev, *, band: str = "o3", offsets=None) -> BackgroundTerms:
        """O3's sub-threshold B: steps 1-5 in list order, windows carried along the list.

        dw = 2.5 deg and dE = 0.3 are set ONCE per list; every x1.5 widening carries
        over to all later neutrinos (their band and energy_lo/hi, their count, their
        B). eps is raised to eps_lo, not capped.

        Parameters
        ----------
        zenith_deg, energy_gev : array_like
            Neutrino zenith [deg] and energy [GeV], in list order.
        band : {"o3", "capped"}
            As :meth:`o3_primary`.
        offsets : array_like of int, optional
            Several lists at once (e.g. trials): list ``m`` is entries
            ``[offsets[m], offsets[m+1])``, each starting with fresh windows. Default:
            one list of all entries.

        Returns
        -------
        BackgroundTerms

        Examples
        --------
        >>> import numpy as np
        >>> bg = BackgroundDensity(np.linspace(0, 180, 3601), np.full(3601, 1e3))
        >>> bg.o3_list([90.0, 90.0], [1e4, 1e3]).count.tolist()  # 2nd inherits dw x1.5
        [149, 149]
        >>> bg.o3_primary([90.0, 90.0], [1e4, 1e3]).count.tolist()
        [149, 99]
        """
        capped = _choice("band", band, BAND_OPTIONS) == "capped"
        zen, en = _queries(zenith_deg, energy_gev)
        if offsets is None:
            off = np.array([0, zen.size], dtype=np.int64)
        else:
            off = np.ascontiguousarray(offsets, dtype=np.int64).ravel()
            if off.size < 1 or off[0] != 0 or off[-1] != zen.size or np.any(np.diff(off) < 0):
                raise ValueError(
                    f"offsets must rise from 0 to {zen.size} (the number of neutrinos); "
                    f"got {off.tolist()[:10]}"
                )
        return BackgroundTerms(*o3_list_terms(zen, en, off, *self._o3_args(), capped))


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

    The sample is read once per file version (path, modification time, size) and
    shared: every event of a batch uses the same one, and its sorted tables are built
    once (a BackgroundDensity is never modified after construction).
    """
    path = Path(DEFAULT_BACKGROUND_SAMPLE if path is None else path)
    try:
        st = path.stat()
    except OSError as exc:
        raise ValueError(f"background sample {path}: cannot read it ({exc.strerror})") from None
    return _load_sample(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_sample(path: str, mtime_ns: int, size: int) -> BackgroundDensity:
    with np.load(path) as data:
        zen = _pick(data, ("zenith", "zenith_deg"), path)
        en = _pick(data, ("energy", "energy_gev"), path)
    return BackgroundDensity(zen, en, source=path)
