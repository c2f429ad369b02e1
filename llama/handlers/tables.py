"""Tables and summaries: neutrino lists as text and LaTeX, the coincidence summary."""

from __future__ import annotations

from llama.handler import FileHandler
from llama.handlers.coinc import CoincSignificanceI3Lvc
from llama.handlers.gw import SkymapInfo
from llama.handlers.neutrino import IceCubeNeutrinoList
from llama.handlers.plots import CoincScatterI3LvcPng


class IceCubeNeutrinoListTxt(FileHandler):
    FILENAME = "icecube_neutrino_list.txt"
    DEPENDENCIES = (IceCubeNeutrinoList,)


class IceCubeNeutrinoListTex(FileHandler):
    FILENAME = "icecube_neutrino_list.tex"
    DEPENDENCIES = (IceCubeNeutrinoList,)


class IceCubeNeutrinoListCoincTxt(FileHandler):
    FILENAME = "icecube_neutrino_list_coinc.txt"
    DEPENDENCIES = (IceCubeNeutrinoList, CoincSignificanceI3Lvc)


class CoincSummaryI3LvcTex(FileHandler):
    FILENAME = "summary_lvc-i3.tex"
    DEPENDENCIES = (CoincSignificanceI3Lvc, CoincScatterI3LvcPng, SkymapInfo, IceCubeNeutrinoList)


class CoincSummaryI3LvcPdf(FileHandler):
    FILENAME = "summary_lvc-i3.pdf"
    DEPENDENCIES = (CoincSignificanceI3Lvc, CoincScatterI3LvcPng, SkymapInfo, IceCubeNeutrinoList)
