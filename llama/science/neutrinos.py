"""IceCube neutrino lists: the ``icecube_neutrino_list.json`` format, as arrays.

File format (PIPELINE.md)::

    {"triggers": [
        {"mjd": 58598.3459, "ra": 120.5, "dec": -10.2, "sigma": 0.6,
         "energy": 12000.0, "type": "observation",
         "zenith": 79.8, "azimuth": 10.0, "run": 132456, "event": 789},
        ...],
     "complete": true}

``mjd`` is UTC, ``ra``/``dec``/``sigma``/``zenith``/``azimuth`` are degrees
(``sigma`` is the 1-sigma angular error, floored at SIGMA_FLOOR_DEG), ``energy`` is the
reconstructed energy in GeV and ``type`` one of observation, blinded, injected,
archival, unspecified.  ``zenith``, ``azimuth``, ``run`` and ``event`` are optional.
``complete`` says whether the list covers the whole search window.

Examples
--------
>>> from llama.science.neutrinos import NeutrinoList
>>> nl = NeutrinoList.from_json({"triggers": [
...     {"mjd": 58598.3, "ra": 10.0, "dec": -5.0, "sigma": 0.1, "energy": 1e4,
...      "type": "observation"}], "complete": True})
>>> len(nl), float(nl.sigma[0]), float(nl.zenith_deg[0])
(1, 0.2, 85.0)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llama.science.constants import SIGMA_FLOOR_DEG
from llama.science.times import SECONDS_PER_DAY

__all__ = ["NeutrinoList", "NeutrinoListError", "NEUTRINO_TYPES"]

#: Allowed values of a trigger's ``type``.
NEUTRINO_TYPES = ("observation", "blinded", "injected", "archival", "unspecified")
_REQUIRED = ("mjd", "ra", "dec", "sigma", "energy")
# [day] arrival times astropy's UTC conversions accept with leap seconds known or
# extrapolated; a value outside is a unit mistake (seconds, JD) that failed deep in ERFA
MJD_VALID = (0.0, 100_000.0)
_OPTIONAL_FLOAT = ("zenith", "azimuth")
_OPTIONAL_INT = ("run", "event")


class NeutrinoListError(ValueError):
    """An invalid neutrino list; the message names the trigger and the fix."""


def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


@dataclass
class NeutrinoList:
    """A list of IceCube neutrino triggers as parallel arrays.

    Parameters
    ----------
    mjd : ndarray
        Arrival times, MJD (UTC).
    ra, dec : ndarray
        Equatorial direction [deg].
    sigma : ndarray
        1-sigma angular error [deg]; values below SIGMA_FLOOR_DEG are raised to it.
    energy : ndarray
        Reconstructed energy [GeV].
    type : ndarray of str
        One of NEUTRINO_TYPES per trigger.
    zenith, azimuth : ndarray, optional
        Detector coordinates [deg]; NaN where not given.
    run, event : ndarray of int, optional
        IceCube run and event numbers; -1 where not given.
    complete : bool
        Whether the list covers the whole search window.

    Raises
    ------
    NeutrinoListError
        On NaN, sigma <= 0, |dec| > 90, an unknown type, or arrays of unequal length.
    """

    mjd: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    sigma: np.ndarray
    energy: np.ndarray
    type: np.ndarray = None  # type: ignore[assignment]
    zenith: np.ndarray = None  # type: ignore[assignment]
    azimuth: np.ndarray = None  # type: ignore[assignment]
    run: np.ndarray = None  # type: ignore[assignment]
    event: np.ndarray = None  # type: ignore[assignment]
    complete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _REQUIRED:
            setattr(self, name, _floats(getattr(self, name)))
        n = len(self.mjd)
        for name in _REQUIRED:
            if len(getattr(self, name)) != n:
                raise NeutrinoListError(
                    f"{name} has {len(getattr(self, name))} values but mjd has {n}; "
                    "give every trigger all of mjd, ra, dec, sigma, energy"
                )
        self.type = (
            np.full(n, "unspecified", dtype=object)
            if self.type is None
            else np.asarray(self.type, dtype=object).reshape(-1)
        )
        for name in _OPTIONAL_FLOAT:
            arr = getattr(self, name)
            setattr(self, name, np.full(n, np.nan) if arr is None else _floats(arr))
        for name in _OPTIONAL_INT:
            arr = getattr(self, name)
            setattr(
                self,
                name,
                np.full(n, -1, dtype=np.int64)
                if arr is None
                else np.asarray(arr, dtype=np.int64).reshape(-1),
            )
        self.complete = bool(self.complete)
        self._validate()
        # The floor is part of the format: IceCube's smallest quoted errors are
        # optimistic, and the PSF must not become narrower than the reconstruction.
        self.sigma = np.maximum(self.sigma, SIGMA_FLOOR_DEG)

    def _validate(self) -> None:
        n = len(self.mjd)
        for name in ("type", *_OPTIONAL_FLOAT, *_OPTIONAL_INT):
            if len(getattr(self, name)) != n:
                raise NeutrinoListError(f"{name} has {len(getattr(self, name))} values, not {n}")
        if n and self._values_hold():
            bad_type = [t for t in self.type if t not in NEUTRINO_TYPES]
            if not bad_type:
                return
        for name in _REQUIRED:
            bad = ~np.isfinite(getattr(self, name))
            if bad.any():
                i = int(np.argmax(bad))
                raise NeutrinoListError(
                    f"trigger {i}: {name} is {getattr(self, name)[i]!r}; every trigger needs "
                    f"a finite {name}"
                )
        checks = (
            (self.sigma <= 0, "sigma", "must be > 0 degrees (the 1-sigma angular error)"),
            (np.abs(self.dec) > 90, "dec", "must be within [-90, 90] degrees"),
            (self.energy <= 0, "energy", "must be > 0 GeV"),
            (
                (self.mjd < MJD_VALID[0]) | (self.mjd > MJD_VALID[1]),
                "mjd",
                f"is outside [{MJD_VALID[0]:g}, {MJD_VALID[1]:g}] (years 1858-2132): "
                "give the UTC arrival time as a Modified Julian Date",
            ),
        )
        for bad, name, fix in checks:
            if bad.any():
                i = int(np.argmax(bad))
                raise NeutrinoListError(f"trigger {i}: {name} = {getattr(self, name)[i]:g} {fix}")
        for i, t in enumerate(self.type):
            if t not in NEUTRINO_TYPES:
                raise NeutrinoListError(
                    f"trigger {i}: type {t!r} is not one of {', '.join(NEUTRINO_TYPES)}"
                )

    def _values_hold(self) -> bool:
        """Whether every required value is finite and within its range, from each
        column's extremes (a list's few triggers: ~6 NumPy calls instead of ~25); when
        not, `_validate`'s checks one by one find and name the first bad value."""
        columns = np.array([getattr(self, name) for name in _REQUIRED])
        if not np.isfinite(columns).all():
            return False
        (mjd_lo, _, dec_lo, sigma_lo, energy_lo), (mjd_hi, _, dec_hi, _, _) = (
            columns.min(axis=1).tolist(),
            columns.max(axis=1).tolist(),
        )
        return (
            sigma_lo > 0
            and -90 <= dec_lo
            and dec_hi <= 90
            and energy_lo > 0
            and MJD_VALID[0] <= mjd_lo
            and mjd_hi <= MJD_VALID[1]
        )

    # -- construction ---------------------------------------------------------------

    @classmethod
    def empty(cls, complete: bool = True) -> NeutrinoList:
        """A valid list with no triggers."""
        z = np.zeros(0)
        return cls(mjd=z, ra=z, dec=z, sigma=z, energy=z, complete=complete)

    @classmethod
    def from_json(cls, obj: dict[str, Any] | str) -> NeutrinoList:
        """Build from the parsed JSON object (or its text).

        Raises
        ------
        NeutrinoListError
            When ``triggers`` is missing, or a trigger lacks a required key or has a bad
            value; the message names the trigger index.

        Examples
        --------
        >>> NeutrinoList.from_json('{"triggers": [], "complete": false}').complete
        False
        >>> NeutrinoList.from_json({"triggers": [{"mjd": 1.0}]})
        Traceback (most recent call last):
        ...
        llama.science.neutrinos.NeutrinoListError: trigger 0: missing key 'ra'; ...
        """
        if isinstance(obj, (str, bytes)):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                raise NeutrinoListError(f"not valid JSON: {exc}") from None
        if not isinstance(obj, dict) or "triggers" not in obj:
            raise NeutrinoListError(
                'a neutrino list is a JSON object {"triggers": [...], "complete": bool}; '
                "the 'triggers' key is missing"
            )
        triggers = obj["triggers"]
        if not isinstance(triggers, list):
            raise NeutrinoListError("'triggers' must be a JSON list of trigger objects")
        cols = _plain_columns(triggers)
        if cols is None:  # a trigger is not plain: the loop names the first problem
            cols = _checked_columns(triggers)
        z = np.zeros(0)
        return cls(
            **{k: (np.asarray(v) if v else z) for k, v in cols.items() if k != "type"},
            type=np.asarray(cols["type"], dtype=object),
            complete=bool(obj.get("complete", True)),
        )

    @classmethod
    def read(cls, path: str | os.PathLike, data: bytes | None = None) -> NeutrinoList:
        """Read an ``icecube_neutrino_list.json`` file (``data``: its bytes, where the
        caller holds them already, e.g. from `llama.event.Event.read_bytes`).

        The list last read in this process is kept with the file's bytes: an event reads
        its list for the significance, then for its record; a file with the same bytes
        gives a copy of the kept list instead of parsing and checking it again.
        """
        if data is None:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                raise NeutrinoListError(f"{os.fspath(path)}: no such file") from None
        kept = _LAST_READ.get("list")
        if kept is not None and kept[0] == data and type(kept[1]) is cls:
            return kept[1].copy()
        try:
            # decoded as the text-mode read before did (UTF-8; the JSON of a list is ASCII)
            neutrinos = cls.from_json(data.decode())
        except UnicodeDecodeError as exc:
            raise NeutrinoListError(f"{os.fspath(path)}: not valid JSON: {exc}") from None
        except NeutrinoListError as exc:
            raise NeutrinoListError(f"{os.fspath(path)}: {exc}") from None
        _LAST_READ["list"] = (data, neutrinos.copy())
        return neutrinos

    def copy(self) -> NeutrinoList:
        """An independent copy (its arrays and ``extra`` copied), without checking the
        values again as the constructor would."""
        out = object.__new__(type(self))
        for name, value in self.__dict__.items():
            out.__dict__[name] = value.copy() if isinstance(value, (np.ndarray, dict)) else value
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the file format (optional keys only where known)."""
        triggers = []
        for i in range(len(self)):
            trig: dict[str, Any] = {
                "mjd": float(self.mjd[i]),
                "ra": float(self.ra[i]),
                "dec": float(self.dec[i]),
                "sigma": float(self.sigma[i]),
                "energy": float(self.energy[i]),
                "type": str(self.type[i]),
            }
            for key in _OPTIONAL_FLOAT:
                v = getattr(self, key)[i]
                if np.isfinite(v):
                    trig[key] = float(v)
            for key in _OPTIONAL_INT:
                v = getattr(self, key)[i]
                if v >= 0:
                    trig[key] = int(v)
            triggers.append(trig)
        return {"triggers": triggers, "complete": self.complete}

    def write(self, path: str | os.PathLike) -> None:
        """Write the JSON file atomically (temporary name, then rename)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)

    # -- views -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.mjd)

    def subset(self, index) -> NeutrinoList:
        """The triggers selected by a boolean mask or index array, in list order."""
        return NeutrinoList(
            mjd=self.mjd[index],
            ra=self.ra[index],
            dec=self.dec[index],
            sigma=self.sigma[index],
            energy=self.energy[index],
            type=self.type[index],
            zenith=self.zenith[index],
            azimuth=self.azimuth[index],
            run=self.run[index],
            event=self.event[index],
            complete=self.complete,
        )

    def concatenate(self, other: NeutrinoList) -> NeutrinoList:
        """Both lists' triggers, sorted by time; complete if both are."""
        cat = {
            k: np.concatenate([getattr(self, k), getattr(other, k)])
            for k in (*_REQUIRED, "type", *_OPTIONAL_FLOAT, *_OPTIONAL_INT)
        }
        nl = NeutrinoList(**cat, complete=self.complete and other.complete)
        return nl.subset(np.argsort(nl.mjd, kind="stable"))

    def dt_seconds(self, t_gw_mjd: float) -> np.ndarray:
        """Arrival time relative to the GW time [s]."""
        return (self.mjd - t_gw_mjd) * SECONDS_PER_DAY

    def select_window(self, t_gw_mjd: float, half_window_s: float) -> NeutrinoList:
        """Triggers with ``|t - t_gw| < half_window_s``.

        Examples
        --------
        >>> nl = NeutrinoList(mjd=[58598.0, 58598.01], ra=[0, 0], dec=[0, 0],
        ...                   sigma=[1, 1], energy=[1e3, 1e3])
        >>> len(nl.select_window(58598.0, 500.0))
        1
        """
        return self.subset(np.abs(self.dt_seconds(t_gw_mjd)) < half_window_s)

    def scramble_ra(self, rng: np.random.Generator) -> NeutrinoList:
        """A copy with right ascensions redrawn uniformly and type set to "blinded".

        IceCube's blinding: declination (hence zenith, and the detector response) is
        kept, only the RA, which carries the sky position, is hidden.
        """
        out = self.subset(slice(None))
        out.ra = rng.uniform(0.0, 360.0, len(self))
        out.type = np.full(len(self), "blinded", dtype=object)
        out.azimuth = np.full(len(self), np.nan)  # tied to RA; no longer meaningful
        return out

    @property
    def zenith_deg(self) -> np.ndarray:
        """Detector zenith [deg]: as given, else 90 + dec (IceCube is at the South Pole).

        Examples
        --------
        >>> NeutrinoList(mjd=[0, 0], ra=[0, 0], dec=[-90, 30], sigma=[1, 1],
        ...              energy=[1, 1], zenith=[np.nan, 121.0]).zenith_deg
        array([  0., 121.])
        """
        return np.where(np.isfinite(self.zenith), self.zenith, 90.0 + self.dec)


#: ``"list"``: (bytes, NeutrinoList) of the last file `NeutrinoList.read` parsed.
_LAST_READ: dict[str, tuple[bytes, NeutrinoList]] = {}


def _as_float(value, i: int, key: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise NeutrinoListError(f"trigger {i}: {key} = {value!r} is not a number") from None
    if math.isnan(out):
        raise NeutrinoListError(f"trigger {i}: {key} is NaN; every trigger needs a finite {key}")
    return out


def _plain_columns(triggers: list) -> dict[str, list] | None:
    """The columns of triggers that are all plain (objects with every required number,
    none NaN, optional values absent or numbers), gathered key by key: ~half the
    time of the trigger-by-trigger loop on an event's list. None when one is not."""
    if not all(isinstance(trig, dict) for trig in triggers):
        return None
    try:
        cols = {key: [float(trig[key]) for trig in triggers] for key in _REQUIRED}
        for key in _OPTIONAL_FLOAT:
            given = [trig.get(key) for trig in triggers]
            cols[key] = [np.nan if v is None else float(v) for v in given]
            if sum(v is None for v in given) != sum(math.isnan(v) for v in cols[key]):
                return None  # a NaN given
        for key in _OPTIONAL_INT:
            cols[key] = [-1 if (v := trig.get(key)) is None else int(v) for trig in triggers]
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if any(math.isnan(v) for key in _REQUIRED for v in cols[key]):
        return None
    cols["type"] = [trig.get("type") or "unspecified" for trig in triggers]
    return cols


def _checked_columns(triggers: list) -> dict[str, list]:
    """The columns, trigger by trigger and key by key: the first trigger that is not an
    object or has a key missing, not a number or NaN is named."""
    cols: dict[str, list] = {k: [] for k in (*_REQUIRED, "type", *_OPTIONAL_FLOAT)}
    cols.update({k: [] for k in _OPTIONAL_INT})
    for i, trig in enumerate(triggers):
        if not isinstance(trig, dict):
            raise NeutrinoListError(f"trigger {i}: is {type(trig).__name__}, not an object")
        _required_values(trig, i, cols)
        cols["type"].append(trig.get("type") or "unspecified")
        for key in _OPTIONAL_FLOAT:
            v = trig.get(key)
            cols[key].append(np.nan if v is None else _as_float(v, i, key))
        for key in _OPTIONAL_INT:
            v = trig.get(key)
            cols[key].append(-1 if v is None else int(v))
    return cols


def _required_values(trig: dict, i: int, cols: dict[str, list]) -> None:
    """Trigger ``i``'s required values appended to ``cols``, key by key: the first one
    missing, not a number or NaN is named."""
    for key in _REQUIRED:
        if key not in trig:
            raise NeutrinoListError(
                f"trigger {i}: missing key {key!r}; each trigger needs "
                f"{', '.join(_REQUIRED)} (and optionally type, zenith, azimuth, "
                "run, event)"
            )
        cols[key].append(_as_float(trig[key], i, key))
