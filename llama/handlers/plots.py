"""Scatter plots of neutrinos and optical candidates over the GW sky map."""

from __future__ import annotations

from llama.handler import FileHandler
from llama.handlers.gw import LvcSkymapHdf5
from llama.handlers.neutrino import IceCubeNeutrinoList
from llama.handlers.other_messengers import ZtfTriggerList


class CoincScatterI3LvcPng(FileHandler):
    FILENAME = "scatterplot_lvc-i3.png"
    DEPENDENCIES = (LvcSkymapHdf5, IceCubeNeutrinoList)


class CoincScatterI3LvcPdf(CoincScatterI3LvcPng):
    FILENAME = "scatterplot_lvc-i3.pdf"


class CoincScatterZtfLVCPng(FileHandler):
    FILENAME = "scatterplot_ztf-lvc.png"
    DEPENDENCIES = (LvcSkymapHdf5, ZtfTriggerList)


class CoincScatterZtfLVCPdf(CoincScatterZtfLVCPng):
    FILENAME = "scatterplot_ztf-lvc.pdf"


class CoincScatterZtfI3LvcPng(FileHandler):
    FILENAME = "scatterplot_ztf-lvc-i3.png"
    DEPENDENCIES = (LvcSkymapHdf5, IceCubeNeutrinoList, ZtfTriggerList)


class CoincScatterZtfI3LvcPdf(CoincScatterZtfI3LvcPng):
    FILENAME = "scatterplot_ztf-lvc-i3.pdf"
