"""Coincidence significance: the LLAMA odds ratio and p-values."""

from __future__ import annotations

from llama.handler import FileHandler
from llama.handlers.gw import (
    LVAlertJSON,
    LvcDistancesJson,
    LVCGraceDbEventData,
    LvcSkymapHdf5,
    PAstro,
    SkymapInfo,
)
from llama.handlers.neutrino import IceCubeNeutrinoList


class CoincSignificanceI3Lvc(FileHandler):
    """Odds ratio and p-value of the GW x IceCube coincidence."""

    FILENAME = "significance_lvc-i3.json"
    DEPENDENCIES = (
        SkymapInfo,
        LvcSkymapHdf5,
        LvcDistancesJson,
        IceCubeNeutrinoList,
        LVCGraceDbEventData,
        PAstro,
    )


class CoincSignificanceSubthresholdI3Lvc(CoincSignificanceI3Lvc):
    """The same statistic for sub-threshold GW candidates announced over LVAlert."""

    FILENAME = "significance_subthresh_lvc-i3.json"
    DEPENDENCIES = (*CoincSignificanceI3Lvc.DEPENDENCIES, LVAlertJSON)
