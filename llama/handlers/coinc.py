"""Coincidence significance: the LLAMA odds ratio and p-values (docs/science.md, "Significance").

The analysis options (PSF form, distance-aware mode, pair distance, null term, number
and kind of trials, sequential stopping of the trials, background table) come from `llama.config.analysis_option`;
the defaults reproduce O3. The p-value comes from a background table when
``LLAMA_BACKGROUND_TABLE`` names one, else from on-the-fly trials seeded by the event
id and the neutrino list, so re-running an event gives the same numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama.config import ANALYSIS_OPTIONS
from llama.handler import FileHandler, write_json
from llama.handlers.gw import (
    LVAlertJSON,
    LvcDistancesJson,
    LVCGraceDbEventData,
    LvcSkymapHdf5,
    PAstro,
    SkymapInfo,
    event_gps_time,
    read_skymap_info,
)
from llama.handlers.neutrino import IceCubeNeutrinoList, read_neutrino_list


def population(p_astro: dict[str, float]) -> str:
    """ "bbh" when P(BBH) > P(BNS) + P(NSBH) + P(MassGap), else "bns" (docs/science.md, "Inputs").

    Examples
    --------
    >>> population({"BNS": 0.1, "NSBH": 0.1, "BBH": 0.7, "MassGap": 0.0, "Terrestrial": 0.1})
    'bbh'
    """
    others = sum(p_astro.get(k, 0.0) for k in ("BNS", "NSBH", "MassGap"))
    return "bbh" if p_astro.get("BBH", 0.0) > others else "bns"


def _input_files() -> dict[str, Any]:
    """The statistic's replaceable inputs named in the configuration (signal tables,
    background sample), as EventModel / SubthresholdModel keywords; absent: defaults."""
    from llama.config import analysis_option

    files: dict[str, Any] = {}
    if analysis_option("signal_tables"):
        from llama.science.signal_tables import load_signal_tables

        files["signal_tables"] = load_signal_tables(analysis_option("signal_tables"))
    if analysis_option("background_sample"):
        from llama.science.background import load_background_sample

        files["background"] = load_background_sample(analysis_option("background_sample"))
    return files


def _options() -> dict[str, Any]:
    """The statistic's analysis options and inputs, from the environment / config file."""
    from llama.config import analysis_number, analysis_option
    from llama.science.odds import OPTIONS

    options: dict[str, Any] = {name: analysis_option(name) for name in OPTIONS}
    options["overlap_rtol"] = analysis_number("overlap_rtol")
    options.update(_input_files())
    if options["null"] == "full":
        from llama.science.gw_null import read_snr_list

        options["snr_list"] = read_snr_list(analysis_option("background_snr_list") or None)
    return options


@dataclass(frozen=True)
class _EventInputs:
    """What both significance handlers read from the event directory."""

    info: dict[str, Any]
    neutrinos: Any  # NeutrinoList
    rho: float
    distmean: float
    p_astro: dict[str, float]
    population: str
    t_gw: float  # GPS s
    t_gw_mjd: float
    seed: int  # of the trials and tie draws: the event id and its neutrino list


def _event_inputs(handler: FileHandler) -> _EventInputs:
    from llama.science.times import gps_to_mjd

    event = handler.event
    info = read_skymap_info(event)
    p_astro = handler.read_json(PAstro)
    t_gw = event_gps_time(info)
    return _EventInputs(
        info=info,
        neutrinos=read_neutrino_list(event),
        rho=float(handler.read_json(LVCGraceDbEventData)["snr"]),
        distmean=float(handler.read_json(LvcDistancesJson)["distmean"]),
        p_astro=p_astro,
        population=population(p_astro),
        t_gw=t_gw,
        t_gw_mjd=float(gps_to_mjd(t_gw)),
        seed=_seed(event.eventid, event.sha256(IceCubeNeutrinoList.FILENAME)),
    )


def _stop_after() -> int | None:
    """h of the sequential p-value (``LLAMA_TRIAL_STOP_AFTER``), or None: all trials."""
    from llama.config import analysis_number

    h = analysis_number("trial_stop_after", int)
    if h is not None and h < 1:
        raise ValueError(
            f"LLAMA_TRIAL_STOP_AFTER={h} must be an integer >= 1 (e.g. 20: stop a p-value "
            "once 20 trials reach the observed statistic), or unset for all trials"
        )
    return h


def _seed(eventid: str, neutrino_sha: str | None) -> int:
    digest = hashlib.sha256(f"{eventid}:{neutrino_sha}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class CoincSignificanceI3Lvc(FileHandler):
    """Odds ratio and p-value of the GW x IceCube coincidence (significance_lvc-i3.json)."""

    FILENAME = "significance_lvc-i3.json"
    # every analysis option may shape the significance: a change puts it out of date
    SETTINGS = tuple(ANALYSIS_OPTIONS)
    DEPENDENCIES = (
        SkymapInfo,
        LvcSkymapHdf5,
        LvcDistancesJson,
        IceCubeNeutrinoList,
        LVCGraceDbEventData,
        PAstro,
    )

    def generate(self, out: Path) -> None:
        write_json(out, self.significance())

    def significance(self) -> dict[str, Any]:
        """The contents of the significance file (docs/science.md, "Output")."""
        from llama.config import analysis_number, analysis_option
        from llama.science.background_table import table_significance
        from llama.science.constants import constants_dict
        from llama.science.odds import EventModel
        from llama.science.pvalue import trial_pvalues

        ev = _event_inputs(self)
        info, neutrinos, p_astro, pop = ev.info, ev.neutrinos, ev.p_astro, ev.population
        model = EventModel(
            LvcSkymapHdf5.read(self.event),
            rho=ev.rho,
            rbar=ev.distmean,
            population=pop,
            t_gw_mjd=ev.t_gw_mjd,
            p_terrestrial=float(p_astro.get("Terrestrial", 0.0)),
            **_options(),
        )
        observed = model.evaluate(neutrinos, ev.t_gw)
        table = analysis_option("background_table")
        if table:
            # Key from the event's population and network; ties randomised per event.
            from_table = table_significance(
                observed.odds,
                observed.odds_ratio,
                table,
                population=pop,
                instruments=info.get("instruments") or None,
                sensitivity=analysis_option("background_sensitivity") or None,
                seed=ev.seed,
            )
            p_value, method = from_table.p_value, from_table.method
            p_nu = from_table.p_values_neutrino
        else:
            trials = trial_pvalues(
                model,
                observed,
                n_trials=analysis_number("n_trials", int),
                kind=analysis_option("trial_kind"),
                seed=ev.seed,
                stop_after=_stop_after(),  # recorded with n_trials_drawn when set
            )
            p_value, method, p_nu = trials.p_value, trials.method, trials.p_values_neutrino
        triggers = observed.triggers()
        for trigger, p in zip(triggers, p_nu, strict=True):
            trigger["p_value"] = None if p is None else float(p)
        return {
            "inputs": {
                "skymap_info": info,
                "neutrino_list": neutrinos.to_json(),
                "snr": model.rho,
                "distmean_mpc": ev.distmean,
                "p_astro": p_astro,
                "population": pop,
                "options": observed.options,
                "gw_energy_in_prior": observed.gw_energy_in_prior,
                "constants": constants_dict(),
            },
            "outputs": {
                "neutrino_gw_triggers": triggers,
                "neutrino_gw_combined": {
                    "odds_ratio": observed.odds,
                    "p_value": p_value,
                    **method,
                },
            },
        }

    @classmethod
    def record(cls, event) -> dict[str, Any]:
        import json

        from llama.results_schema import NEUTRINO_RECORD, neutrino_columns

        data = json.loads(event.read_bytes(cls.FILENAME))
        combined = data["outputs"]["neutrino_gw_combined"]
        records = {
            "odds_ratio": combined["odds_ratio"],
            "p_value": combined["p_value"],
            "population": data["inputs"]["population"],
        }
        triggers = data["outputs"].get("neutrino_gw_triggers")
        if isinstance(triggers, list):  # rows travel with the outcome, read where the file is
            records[NEUTRINO_RECORD] = neutrino_columns(triggers)
        return records


class CoincSignificanceSubthresholdI3Lvc(FileHandler):
    """O3's sub-threshold statistic for GW candidates announced over LVAlert
    (significance_subthresh_lvc-i3.json; docs/science.md, "The O3 sub-threshold statistic").

    One odds ratio for the whole neutrino list, with a real null term from P(Terrestrial)
    and the background GW SNR list (``LLAMA_BACKGROUND_SNR_LIST``, default the shipped
    SYNTHETIC list), computed by :class:`llama.science.subthreshold.SubthresholdModel`.
    The p-value comes from the ``subthreshold_odds_ratio`` keys of the background table
    named by ``LLAMA_BACKGROUND_TABLE`` when it has any, else from on-the-fly trials
    (``LLAMA_N_TRIALS``, ``LLAMA_TRIAL_KIND``) seeded by the event and its list.
    """

    FILENAME = "significance_subthresh_lvc-i3.json"
    SETTINGS = tuple(ANALYSIS_OPTIONS)
    DEPENDENCIES = (*CoincSignificanceI3Lvc.DEPENDENCIES, LVAlertJSON)

    def generate(self, out: Path) -> None:
        write_json(out, self.significance())

    def significance(self) -> dict[str, Any]:
        """The contents of the significance file (docs/science.md, "Output
        ``significance_subthresh_lvc-i3.json``")."""
        from llama.config import analysis_number, analysis_option
        from llama.science.constants import constants_dict
        from llama.science.gw_null import SYNTHETIC_SNR_LIST, read_snr_list
        from llama.science.subthreshold import (
            SubthresholdModel,
            subthreshold_table_pvalue,
            subthreshold_trial_pvalue,
        )

        ev = _event_inputs(self)
        info, neutrinos, p_astro, pop = ev.info, ev.neutrinos, ev.p_astro, ev.population
        t_gw, seed = ev.t_gw, ev.seed
        snr_path = analysis_option("background_snr_list") or None
        # the OPA statistic's tables, background sample and overlap tolerance apply here
        model = SubthresholdModel(
            LvcSkymapHdf5.read(self.event),
            rho=ev.rho,
            rbar=ev.distmean,
            p_terrestrial=float(p_astro.get("Terrestrial", 0.0)),
            pipeline=str(info.get("pipeline") or ""),
            t_gw_mjd=ev.t_gw_mjd,
            snr_list=read_snr_list(snr_path),
            population=pop,
            overlap_rtol=analysis_number("overlap_rtol"),
            **_input_files(),
        )
        observed = model.evaluate(neutrinos, t_gw)
        table = analysis_option("background_table")
        from_table = None
        if table:
            from_table = subthreshold_table_pvalue(
                observed.odds_ratio,
                table,
                population=pop,
                instruments=info.get("instruments") or None,
                sensitivity=analysis_option("background_sensitivity") or None,
                seed=seed,
            )
        if from_table is not None:
            p_value, method = from_table
        else:
            terms = observed.terms
            trials = subthreshold_trial_pvalue(
                model,
                neutrinos.ra,
                neutrinos.dec,
                neutrinos.sigma,
                neutrinos.energy,
                terms["dt"],
                terms["zenith"],
                observed.odds_ratio,
                n_trials=analysis_number("n_trials", int),
                kind=analysis_option("trial_kind"),
                seed=seed,
                stop_after=_stop_after(),
            )
            p_value, method = trials.p_value, trials.method
            if table:  # named but of no use here: say so rather than fall back silently
                method["background_table_unused"] = f"{table} has no subthreshold_odds_ratio keys"
        return {
            "inputs": {
                "gw_skymap_info": {
                    **info,
                    "snr": model.rho,
                    "distmean_mpc": ev.distmean,
                    "p_astro": p_astro,
                    "population": pop,
                    "lvalert": self.read_json(LVAlertJSON),
                },
                "neutrino_info": neutrinos.to_json(),
                "search_parameters": {
                    **observed.options,
                    "t_gw_gps": t_gw,
                    "t_gw_mjd": ev.t_gw_mjd,
                    "background_snr_list": str(snr_path or SYNTHETIC_SNR_LIST),
                    "background_snr_list_synthetic": snr_path is None,
                    "p_value_method": method,
                    "constants": constants_dict(),
                },
            },
            "outputs": {"neutrino_gw_combined": observed.combined(p_value)},
        }

    @classmethod
    def record(cls, event) -> dict[str, Any]:
        import json

        data = json.loads(event.read_bytes(cls.FILENAME))
        combined = data["outputs"]["neutrino_gw_combined"]
        return {
            "subthreshold_odds_ratio": combined["odds_ratio"],
            "subthreshold_p_value": combined["p_value"],
            "subthreshold_population": data["inputs"]["gw_skymap_info"]["population"],
        }
