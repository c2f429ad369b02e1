"""The BAYESTAR events of ``tests/data/bayestar`` (its README says how they were made)
as the statistic's event models, for the tests that check the trials and kernels on
realistic maps."""

from __future__ import annotations

import json
from pathlib import Path

from llama.science.odds import EventModel
from llama.science.skymap import read_sky_map

DATA = Path(__file__).parent / "data" / "bayestar"


def bayestar_model(name: str, **options) -> EventModel:
    """The model of BAYESTAR event ``name`` (e.g. "bbh-2"): its map, network SNR, mean
    distance, population and time from ``events.json``; ``options`` go to EventModel."""
    info = json.loads((DATA / "events.json").read_text())[name]
    skymap = read_sky_map(DATA / f"{name}.fits")
    rho, rbar = float(info["network_snr"]), float(info["distmean_mpc"])
    return EventModel(skymap, rho, rbar, info["population"], t_gw_mjd=float(info["mjd_obs"]), **options)  # fmt: skip
