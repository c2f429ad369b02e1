"""Neutrino side: the IceCube neutrino list around the GW time."""

from __future__ import annotations

from llama.handler import FileHandler
from llama.handlers.gw import SkymapInfo


class IceCubeNeutrinoList(FileHandler):
    """Neutrinos within t_gw +- 500 s: ``{"triggers": [...], "complete": bool}``."""

    FILENAME = "icecube_neutrino_list.json"
    DEPENDENCIES = (SkymapInfo,)
