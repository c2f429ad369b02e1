"""Registry DAG checks, pipelines and the -p / -f / +f selection."""

from __future__ import annotations

import pytest

from llama.handler import REGISTRY, DagError, FileHandler, HandlerRegistry, topological_order
from llama.pipeline import named_pipelines, select_pipeline

CLI_CHOICES = """SkymapInfo RctSlkLmaCoincSummaryI3LvcPdf LvcGcnXml IceCubeNeutrinoListTex
LVAlertAdvok LvcSkymapFits RctSlkLmaCoincScatterZtfLVCPdf CoincSignificanceSubthresholdI3Lvc
CoincScatterI3LvcPdf RctSlkLmaLvcRetractionXml PAstro CoincSummaryI3LvcPdf
RctSlkLmaCoincScatterZtfI3LvcPng ZtfTriggerList RctSlkLmaLvcDistancesJson LVCGraceDbEventData
RctSlkI3CoincSummaryI3LvcPdf IceCubeNeutrinoListCoincTxt LvcRetractionXml
RctSlkLmaCoincSignificanceSubthresholdI3Lvc IceCubeNeutrinoList IceCubeNeutrinoListTxt
RctSlkLmaLVAlertJSON FermiGRBsJSON RctSlkLmaLvcGcnXml RctSlkLmaCoincScatterZtfLVCPng
CoincSummaryI3LvcTex CoincSignificanceI3Lvc RctSlkLmaCoincScatterI3LvcPng CoincScatterZtfI3LvcPdf
RctSlkLmaCoincScatterZtfI3LvcPdf CoincScatterI3LvcPng CoincScatterZtfLVCPdf LvcDistancesJson
LvcSkymapHdf5 CoincScatterZtfLVCPng RctSlkLmaSkymapInfo CoincScatterZtfI3LvcPng
RctSlkLmaCoincSignificanceI3Lvc RctSlkLmaCoincScatterI3LvcPdf Advok RctSlkLmaLVCGraceDbEventData
LVAlertJSON""".split()


def test_catalogue_is_exactly_the_reference_page_choices():
    import llama.handlers  # noqa: F401

    assert sorted(REGISTRY) == sorted(CLI_CHOICES)


def test_default_pipeline_is_every_handler_in_dependency_order():
    default = named_pipelines()["DEFAULT_PIPELINE"]
    assert set(default.names()) == set(CLI_CHOICES)
    position = {h: i for i, h in enumerate(default.handlers)}
    for h in default.handlers:
        assert all(position[d] < position[h] for d in h.DEPENDENCIES)


def test_subthreshold_pipeline_is_the_handler_and_its_ancestors():
    sub = named_pipelines()["SUBTHRESHOLD_PIPELINE"]
    assert sub.names()[-1] == "CoincSignificanceSubthresholdI3Lvc"
    assert "LVAlertJSON" in sub and "SkymapInfo" in sub and "CoincScatterI3LvcPng" not in sub


def test_review_pipeline_needs_no_outside_service():
    review = named_pipelines()["LLAMA2_REVIEW_PIPELINE"]
    assert len(review) == 14
    assert not any(h.CONTACTS_SERVICE for h in review)


def test_exact_selection_makes_no_ancestors_and_plus_adds_them():
    exact = select_pipeline(exact=["LvcSkymapHdf5"])
    assert exact.names() == ["LvcSkymapHdf5"]
    assert exact.explicit == {REGISTRY["LvcSkymapHdf5"]}
    plus = select_pipeline(with_ancestors=["LvcSkymapHdf5"])
    assert plus.names() == ["SkymapInfo", "LvcSkymapFits", "LvcSkymapHdf5"]
    union = select_pipeline("SUBTHRESHOLD_PIPELINE", exact=["CoincScatterI3LvcPng"])
    assert "CoincScatterI3LvcPng" in union and "LVAlertJSON" in union


def test_unknown_names_list_the_choices():
    with pytest.raises(KeyError, match="valid choices are: .*SkymapInfo"):
        select_pipeline(exact=["SkyMapInfo"])
    with pytest.raises(KeyError, match="LLAMA2_REVIEW_PIPELINE"):
        select_pipeline("NOPE")


def test_registry_rejects_unknown_dependencies_cycles_and_clashes():
    reg = HandlerRegistry()
    outside = HandlerRegistry()

    class Elsewhere(FileHandler, registry=outside):
        FILENAME = "elsewhere.json"

    class A(FileHandler, registry=reg):
        FILENAME = "a.json"
        DEPENDENCIES = (Elsewhere,)

    with pytest.raises(DagError, match="not registered"):
        reg.check()

    class B(FileHandler, registry=outside):
        FILENAME = "b.json"

    B.DEPENDENCIES = (Elsewhere,)
    Elsewhere.DEPENDENCIES = (B,)
    with pytest.raises(DagError, match="cycle"):
        topological_order([B, Elsewhere])

    with pytest.raises(DagError, match="both write"):

        class C(FileHandler, registry=outside):
            FILENAME = "b.json"

        outside.check()


def test_filename_must_be_plain():
    with pytest.raises(DagError, match="plain"):

        class Bad(FileHandler, registry=HandlerRegistry()):
            FILENAME = "../x.json"
