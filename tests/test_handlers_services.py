"""Service handlers (ZTF, Fermi, upload receipts) and llama.services, on a real server."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
from pathlib import Path

import pytest

from llama import services
from llama.event import Event, HandlerFailed
from llama.flags import PRESETS
from llama.handlers import other_messengers, receipts
from llama.science.times import gps_to_iso, gps_to_mjd, iso_to_gps

pytest_plugins = ("fake_services",)  # the fake_services and no_services fixtures

T_GW_ISO = "2019-04-25T08:18:05.017553"
T_GW = iso_to_gps(T_GW_ISO)
INFO = {"graceid": "S190425z", "event_time_iso": T_GW_ISO, "far": 4.5e-13}
Lma = receipts.RctSlkLmaCoincSignificanceI3Lvc
I3 = receipts.RctSlkI3CoincSummaryI3LvcPdf


def make_event(tmp_path: Path, preset: str = "DEFAULT", **flags: str) -> Event:
    event = Event(tmp_path / "S190425z", flags={**PRESETS[preset], **flags})
    event.path("skymap_info.json").write_text(json.dumps(INFO))
    return event


def all_text(directory: Path) -> str:
    """Every file of an event directory, hidden riders included, as one string."""
    return "\n".join(p.read_bytes().decode("latin-1") for p in directory.iterdir())


# --- ZTF and Fermi ----------------------------------------------------------------------


def test_ztf_candidates(tmp_path, fake_services):
    t = float(gps_to_mjd(T_GW))
    fake_services.ztf_candidates = [
        {"name": "ZTF19aasckkq", "ra": 12.5, "dec": 33.1, "mjd": t + 1.0, "mag": 20.1},
        {"name": "ZTF19aarykkb", "ra": 240.0, "dec": -2.0, "mjd": t + 0.25, "filter": "r"},
        {"name": "ZTF19old", "ra": 1.0, "dec": 1.0, "mjd": t - 1.0},
    ]
    event = make_event(tmp_path)
    event.generate(other_messengers.ZtfTriggerList)
    out = json.loads(event.path("ztf_trigger_list.json").read_text())
    assert [c["name"] for c in out] == ["ZTF19aarykkb", "ZTF19aasckkq"]
    assert out[0]["dt"] == pytest.approx(0.25 * 86400, abs=1e-3)
    assert other_messengers.ZtfTriggerList.record(event) == {"n_ztf_candidates": 2}


def test_fermi_grbs(tmp_path, fake_services):
    fake_services.fermi_grbs = [
        {"name": "GRB190425B", "trigger_time_iso": gps_to_iso(T_GW + 300), "ra": 10.0, "dec": 5.0},
        {"name": "GRB190425A", "trigger_time_iso": gps_to_iso(T_GW + 1.7), "ra": 176.8,
         "dec": -39.8, "error_radius": 12.0},
        {"name": "GRB190424A", "trigger_time_iso": gps_to_iso(T_GW - 9000), "ra": 0, "dec": 0},
    ]  # fmt: skip
    event = make_event(tmp_path)
    event.generate(other_messengers.FermiGRBsJSON)
    out = json.loads(event.path("fermi_grbs.json").read_text())
    assert [g["name"] for g in out] == ["GRB190425A", "GRB190425B"]
    assert out[0]["dt"] == pytest.approx(1.7, abs=1e-4)
    assert out[0]["error_radius"] == 12.0


@pytest.mark.parametrize(
    "handler", [other_messengers.ZtfTriggerList, other_messengers.FermiGRBsJSON]
)
def test_offline_vetoes_other_messengers(tmp_path, handler):
    event = make_event(tmp_path, ONLINE="false")
    assert event.status(handler) == "VETOED"
    assert "ONLINE=false" in handler.veto_reason(event)


@pytest.mark.parametrize(
    ("handler", "var"),
    [
        (other_messengers.ZtfTriggerList, "LLAMA_ZTF_URL"),
        (other_messengers.FermiGRBsJSON, "LLAMA_FERMI_URL"),
    ],
)
def test_unconfigured_service_names_the_variable(tmp_path, no_services, monkeypatch, handler, var):
    monkeypatch.setattr(handler, "RETRIES", 0)
    event = make_event(tmp_path)
    with pytest.raises(HandlerFailed, match=var):
        event.generate(handler)


def test_bad_answers_are_clear(tmp_path, fake_services, monkeypatch):
    monkeypatch.setattr(other_messengers.ZtfTriggerList, "RETRIES", 0)
    fake_services.ztf_candidates = [
        {"name": "x", "ra": 400.0, "dec": 0.0, "mjd": float(gps_to_mjd(T_GW)) + 0.1}
    ]
    event = make_event(tmp_path)
    with pytest.raises(HandlerFailed, match=r"ZTF candidate 0: ra = 400.0 is outside"):
        event.generate(other_messengers.ZtfTriggerList)


# --- receipts: when they run ------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "flags", "lma", "i3"),
    [
        ("DEFAULT", {}, "UPLOAD=false", "UPLOAD=false"),
        ("DEFAULT", {"UPLOAD": "true", "ICECUBE_UPLOAD": "true"}, "ROLE=test", "ROLE=test"),
        ("TRIGGERED_INTERNAL", {}, None, "ICECUBE_UPLOAD=false"),
        ("TRIGGERED_PUBLIC", {}, None, None),
        ("TRIGGERED_PUBLIC", {"ONLINE": "false"}, "ONLINE=false", "ONLINE=false"),
        ("TRIGGERED_PUBLIC", {"VETOED": "true"}, "VETOED", "VETOED"),
        ("RERUN", {}, "UPLOAD=false", "UPLOAD=false"),
    ],
)
def test_receipt_vetoes(tmp_path, preset, flags, lma, i3):
    event = make_event(tmp_path, preset, **flags)
    for cls, expected in ((Lma, lma), (I3, i3)):
        reason = cls.veto_reason(event)
        if expected is None:
            assert reason is None
        else:
            assert expected in reason
            assert event.status(cls) == "VETOED"


def test_retraction_vetoes_receipts_except_its_own(tmp_path):
    event = make_event(tmp_path, "TRIGGERED_PUBLIC")
    event.path("lvc_retraction.xml").write_text("<VOEvent/>")
    assert "retracted" in receipts.RctSlkLmaSkymapInfo.veto_reason(event)
    assert receipts.RctSlkLmaLvcRetractionXml.veto_reason(event) is None
    event.write_flags({"UPLOAD": "false"})
    assert "UPLOAD=false" in receipts.RctSlkLmaLvcRetractionXml.veto_reason(event)


# --- receipts: posting ------------------------------------------------------------------


def test_receipt_posts_and_keeps_the_secret(tmp_path, fake_services, caplog):
    caplog.set_level(logging.DEBUG)
    event = make_event(tmp_path, "TRIGGERED_PUBLIC")
    content = json.dumps({"outputs": {"neutrino_gw_combined": {"p_value": 0.01}}}).encode()
    event.path("significance_lvc-i3.json").write_bytes(content)
    event.generate(Lma)

    receipt = json.loads(event.path("rct_slk_lma_significance_lvc-i3.json.json").read_text())
    assert receipt["channel"] == "lma" and receipt["file"] == "significance_lvc-i3.json"
    assert receipt["sha256"] == hashlib.sha256(content).hexdigest()
    assert (receipt["http_status"], receipt["response"], receipt["size"]) == (
        200,
        "ok",
        len(content),
    )
    assert receipt["posted_utc"].endswith("+00:00")

    (post,) = fake_services.posts
    assert post["webhook"] == "lma" and post["event"] == "S190425z"
    assert base64.b64decode(post["content_base64"]) == content
    assert post["text"] == "LLAMA S190425z: significance_lvc-i3.json"

    secret = fake_services.urls["LLAMA_SLACK_LMA_WEBHOOK"]
    token = secret.rsplit("/", 1)[-1]
    assert token not in all_text(event.directory)
    assert token not in caplog.text


def test_icecube_receipt_goes_to_the_icecube_channel(tmp_path, fake_services):
    event = make_event(tmp_path, "TRIGGERED_PUBLIC")
    event.path("summary_lvc-i3.pdf").write_bytes(b"%PDF-1.4\n% fake summary\n%%EOF\n")
    event.generate(I3)
    (post,) = fake_services.posts
    assert (post["webhook"], post["content_type"]) == ("i3", "application/pdf")
    receipt = json.loads(event.path("rct_slk_i3_summary_lvc-i3.pdf.json").read_text())
    assert receipt["channel"] == "i3"


def test_webhook_errors_never_show_the_url(tmp_path, fake_services, caplog):
    caplog.set_level(logging.DEBUG)
    event = make_event(tmp_path, "TRIGGERED_PUBLIC")
    event.path("significance_lvc-i3.json").write_text("{}")
    secret = fake_services.urls["LLAMA_SLACK_LMA_WEBHOOK"]
    token = secret.rsplit("/", 1)[-1]

    fake_services.slack_status, fake_services.slack_body = 500, f"boom at {secret}"
    with pytest.raises(HandlerFailed) as err:
        event.generate(Lma)
    assert "HTTP 500" in str(err.value) and "LLAMA_SLACK_LMA_WEBHOOK" in str(err.value)
    assert token not in str(err.value)
    assert not event.path("rct_slk_lma_significance_lvc-i3.json.json").exists()
    assert token not in all_text(event.directory)  # .failed.json holds the traceback
    assert token not in caplog.text


def test_unreachable_webhook(tmp_path, fake_services, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LLAMA_SLACK_LMA_WEBHOOK", f"http://127.0.0.1:{port}/hooks/sekrit-token-123")
    event = make_event(tmp_path, "TRIGGERED_PUBLIC")
    event.path("significance_lvc-i3.json").write_text("{}")
    with pytest.raises(HandlerFailed, match="ConnectionError") as err:
        event.generate(Lma)
    assert "sekrit" not in str(err.value) and "sekrit" not in all_text(event.directory)


def test_wrong_webhook_and_unconfigured(tmp_path, fake_services, monkeypatch):
    event = make_event(tmp_path, "TRIGGERED_PUBLIC")
    event.path("significance_lvc-i3.json").write_text("{}")
    monkeypatch.setenv(
        "LLAMA_SLACK_LMA_WEBHOOK", fake_services.base_url + "/slack/services/bad-token"
    )
    with pytest.raises(HandlerFailed, match="HTTP 404 'no_service'"):
        event.generate(Lma)
    monkeypatch.delenv("LLAMA_SLACK_LMA_WEBHOOK")
    with pytest.raises(HandlerFailed, match="set the environment variable LLAMA_SLACK_LMA_WEBHOOK"):
        event.generate(Lma)
    assert fake_services.posts == []


# --- llama.services ---------------------------------------------------------------------


def test_get_json_retries_then_succeeds(fake_services):
    fake_services.superevents["S1"] = {"superevent_id": "S1"}
    fake_services.fail("/gracedb/", 2, 502)
    url = services.join_url(fake_services.urls["LLAMA_GRACEDB_URL"], "superevents", "S1", "")
    assert services.get_json(url, retries=2) == {"superevent_id": "S1"}
    assert len(fake_services.requests) == 3


def test_get_json_errors(fake_services):
    fake_services.fail("/gracedb/", 3, 503)
    url = services.join_url(fake_services.base_url, "gracedb", "api", "superevents", "S1", "")
    with pytest.raises(services.ServiceError, match="HTTP 503 .* after 2 attempts"):
        services.get_json(url + "?token=abc", retries=1)
    with pytest.raises(services.ServiceError) as err:
        services.get_json(url + "?token=abc", retries=0)
    assert "token=abc" not in str(err.value)  # queries may carry credentials
    with pytest.raises(services.ServiceError, match=r"not found \(HTTP 404\)"):
        services.get_json(url, retries=0)


def test_get_json_not_json(http_server):
    base_url, directory = http_server
    (directory / "page.html").write_text("<html>maintenance</html>")
    with pytest.raises(services.ServiceError, match="not JSON.*maintenance"):
        services.get_json(f"{base_url}/page.html", retries=0)


def test_require_url(no_services, monkeypatch):
    with pytest.raises(services.ServiceError, match="LLAMA_ICECUBE_URL"):
        services.require_url("icecube")
    monkeypatch.setenv("LLAMA_ICECUBE_URL", "http://127.0.0.1:1/icecube")
    assert services.require_url("icecube") == "http://127.0.0.1:1/icecube"
