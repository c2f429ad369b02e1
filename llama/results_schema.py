"""What each variable of the results Dataset means: names, CF attributes, state codes.

The results of a sweep (`llama.results`) carry CF-style ``long_name`` and ``units``
on every variable, so that plots label their axes and a reader of the file needs no
other documentation. Per-neutrino values come from ``outputs.neutrino_gw_triggers`` of
the event's ``significance_lvc-i3.json`` and are stored as ``neutrino_<field>``.

Examples
--------
>>> cf_attrs("odds_ratio")["units"]
'1'
>>> cf_attrs("neutrino_sigma")
{'long_name': 'neutrino angular uncertainty (1 sigma)', 'units': 'degree'}
>>> STATE_MEANINGS[state_code("up to date")]
'up_to_date'
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NEUTRINO_FIELDS",
    "NEUTRINO_RECORD",
    "SIGNIFICANCE_FILE",
    "STATE_MEANINGS",
    "cf_attrs",
    "state_attrs",
    "state_code",
    "state_name",
]

#: The file whose per-neutrino rows become the ``neutrino`` dimension.
SIGNIFICANCE_FILE = "significance_lvc-i3.json"

#: The state of an event, stored as int8 codes; 0 marks a hole (not run yet), which is
#: also what an unwritten part of an incremental store reads as.
STATE_MEANINGS = ("not_run", "done", "up_to_date", "vetoed", "failed", "skipped")

# terms of the odds ratio carry different units each; only their ratios are used
_RELATIVE = "relative scale: only ratios of the terms (the odds ratio) are meaningful"

#: Per-neutrino fields of the significance file: long_name, units.
NEUTRINO_FIELDS: dict[str, tuple[str, str]] = {
    "ra": ("neutrino right ascension (J2000)", "degree"),
    "dec": ("neutrino declination (J2000)", "degree"),
    "sigma": ("neutrino angular uncertainty (1 sigma)", "degree"),
    "energy": ("neutrino reconstructed energy", "GeV"),
    "dt": ("neutrino arrival time minus GW time", "s"),
    "zenith": ("neutrino zenith angle at IceCube", "degree"),
    "azimuth": ("neutrino azimuth at IceCube", "degree"),
    "psf_overlap": ("overlap of the neutrino PSF with the GW sky map", "sr-1"),
    "signal_overlap": ("signal overlap S_i (sky map x PSF x signal energy density)", "sr-1 GeV-1"),
    "b_density": ("background density B_i of the neutrino", "sr-1 GeV-1"),
    "energy_eval": ("energy at which the signal density is evaluated", "GeV"),
    "p_h_s1": ("single-neutrino signal term P_s1", "1"),
    "p_h_s2": ("doublet signal term P_s2", "1"),
    "p_h_c": ("chance-coincidence term P_c", "1"),
    "p_h_0": ("null term P_0", "1"),
    "odds_ratio": ("odds ratio O_i of the neutrino", "1"),
    "p_value": ("p-value of the neutrino's odds ratio", "1"),
}

#: The record under which the significance handler reports its per-neutrino rows
#: (field -> list of values), so that the results need no access to the event's files:
#: a temporary event directory is gone, and a cluster's workers may share no disk.
NEUTRINO_RECORD = "neutrinos"


def neutrino_columns(triggers: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The `NEUTRINO_FIELDS` of ``outputs.neutrino_gw_triggers`` as columns of floats
    (NaN where a value is missing or not a number; ±inf kept).

    Examples
    --------
    >>> cols = neutrino_columns([{"ra": 1.0, "odds_ratio": "inf"}, {"ra": 2}])
    >>> cols["ra"], cols["odds_ratio"][0], len(cols) == len(NEUTRINO_FIELDS)
    ([1.0, 2.0], inf, True)
    """
    return {name: [_float(t.get(name)) for t in triggers] for name in NEUTRINO_FIELDS}


def _float(value: Any) -> float:
    try:
        return float("nan") if value is None else float(value)
    except (TypeError, ValueError):
        return float("nan")


#: Per-event variables and the records handlers report: long_name, units (None: text).
_EVENT: dict[str, tuple[str, str | None]] = {
    "directory": ("event directory", None),
    "eventid": ("event name (the directory's name)", None),
    "error": ("why the event failed (one line; empty otherwise)", None),
    "neutrino_count": ("number of neutrinos along the neutrino dimension", "1"),
    "odds_ratio": ("LLAMA odds ratio O of the event (sum of the neutrinos' O_i)", "1"),
    "p_value": ("p-value of the event's odds ratio", "1"),
    "population": ("GW source population (bns or bbh, from p_astro)", None),
    "subthreshold_odds_ratio": ("sub-threshold odds ratio of the event", "1"),
    "subthreshold_p_value": ("p-value of the sub-threshold odds ratio", "1"),
    "subthreshold_population": ("GW source population of the sub-threshold statistic", None),
    "n_neutrinos": ("neutrinos in the event's list", "1"),
    "neutrinos_complete": ("neutrino list covers the whole time window (1 yes, 0 no)", "1"),
    "neutrinos_blinded": ("neutrino list is blinded (1 yes, 0 no)", "1"),
    "graceid": ("GraceDB id of the GW event", None),
    "far": ("false-alarm rate of the GW candidate", "Hz"),
    "pipeline": ("GW search pipeline", None),
    "instruments": ("GW detectors (comma-separated)", None),
    "gw_instruments": ("GW detectors of the LVAlert (comma-separated)", None),
    "advok": ("advocate sign-off of the GW alert (1 yes, 0 no)", "1"),
    "distmean": ("posterior mean luminosity distance of the GW source", "Mpc"),
    "diststd": ("posterior standard deviation of the luminosity distance", "Mpc"),
    "snr": ("GW network signal-to-noise ratio", "1"),
    "p_bns": ("probability that the GW source is a binary neutron star (p_astro)", "1"),
    "p_nsbh": ("probability that the GW source is a neutron star-black hole (p_astro)", "1"),
    "p_bbh": ("probability that the GW source is a binary black hole (p_astro)", "1"),
    "p_massgap": ("probability that the GW source has a mass-gap object (p_astro)", "1"),
    "p_terrestrial": ("probability that the GW candidate is terrestrial (p_astro)", "1"),
    "n_ztf_candidates": ("ZTF optical candidates found", "1"),
    "n_fermi_grbs": ("Fermi GBM bursts found", "1"),
}


def cf_attrs(name: str) -> dict[str, str]:
    """``long_name`` and (for numbers with known units) ``units`` of a results variable.

    Parameters
    ----------
    name : str
        The variable's name in the results Dataset (``event_`` prefixes of records
        renamed to avoid a params name are looked through).

    Returns
    -------
    dict
        Attributes to set; an unknown record gets a ``long_name`` made from its name
        and no ``units`` (the handler that reports it does not say).

    Examples
    --------
    >>> cf_attrs("distmean")
    {'long_name': 'posterior mean luminosity distance of the GW source', 'units': 'Mpc'}
    >>> cf_attrs("n_widgets")
    {'long_name': 'n widgets'}
    """
    if name.startswith("neutrino_") and name.removeprefix("neutrino_") in NEUTRINO_FIELDS:
        long_name, units = NEUTRINO_FIELDS[name.removeprefix("neutrino_")]
        attrs = {"long_name": long_name, "units": units}
        if name.startswith("neutrino_p_h_"):
            attrs["comment"] = _RELATIVE
        return attrs
    base = name.removeprefix("event_") if name.startswith("event_") else name
    if base in _EVENT:
        long_name, units = _EVENT[base]
        return (
            {"long_name": long_name} if units is None else {"long_name": long_name, "units": units}
        )
    return {"long_name": base.replace("_", " ")}


def state_code(state: str) -> int:
    """The int8 code of an `~llama.batch.runner.EventOutcome` state.

    Examples
    --------
    >>> state_code("done"), state_code("failed")
    (1, 4)
    """
    return STATE_MEANINGS.index(state.replace(" ", "_"))


def state_name(code: int) -> str:
    """The outcome state of a code, as `EventOutcome.state` spells it ("up to date").

    Examples
    --------
    >>> state_name(2), state_name(0)
    ('up to date', 'not run')
    """
    return STATE_MEANINGS[int(code)].replace("_", " ")


def state_attrs() -> dict[str, Any]:
    """CF flag attributes of the ``state`` variable.

    Examples
    --------
    >>> state_attrs()["flag_meanings"].split()[:2]
    ['not_run', 'done']
    """
    import numpy as np

    return {
        "long_name": "final state of the event",
        "flag_values": np.arange(len(STATE_MEANINGS), dtype=np.int8),
        "flag_meanings": " ".join(STATE_MEANINGS),
        "comment": "not_run: a hole, filled by running the same sweep again",
    }
