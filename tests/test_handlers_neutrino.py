"""IceCubeNeutrinoList against the fake IceCube service; blinding; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama.event import Event, HandlerFailed
from llama.handlers import neutrino
from llama.science.neutrinos import NeutrinoList
from llama.science.times import gps_to_mjd, iso_to_gps

pytest_plugins = ("fake_services",)  # the fake_services and no_services fixtures

T_GW_ISO = "2019-04-25T08:18:05.017553"
T_GW = iso_to_gps(T_GW_ISO)
INFO = {"graceid": "S190425z", "event_time_iso": T_GW_ISO, "far": 4.5e-13}


def nu(dt: float, ra: float = 120.0, **extra) -> dict:
    """An event of the IceCube stand-in, ``dt`` seconds after the GW."""
    return {
        "mjd": float(gps_to_mjd(T_GW + dt)),
        "ra": ra,
        "dec": -20.0,
        "sigma": 0.1,
        "energy": 2.5e4,
        "zenith": 70.0,
        "run": 132496,
        "event": 45,
        **extra,
    }


def make_event(tmp_path: Path, **flags: str) -> Event:
    event = Event(tmp_path / "S190425z", flags=flags)
    event.path("skymap_info.json").write_text(json.dumps(INFO))
    return event


def test_fetch_keeps_the_window(tmp_path, fake_services):
    fake_services.neutrinos = [nu(-600), nu(-499), nu(10, ra=30.0), nu(499.5), nu(501)]
    fake_services.icecube_padding_s = 200.0  # the client must cut the window itself
    event = make_event(tmp_path)
    event.generate(neutrino.IceCubeNeutrinoList)
    out = json.loads(event.path("icecube_neutrino_list.json").read_text())
    assert out["complete"] is True
    assert len(out["triggers"]) == 3
    first = out["triggers"][0]
    assert first["type"] == "observation" and first["sigma"] == 0.2  # floor
    assert (first["run"], first["event"], first["zenith"]) == (132496, 45, 70.0)
    assert out["triggers"][1]["ra"] == 30.0
    nl = NeutrinoList.read(event.path("icecube_neutrino_list.json"))
    assert all(abs(nl.dt_seconds(float(gps_to_mjd(T_GW)))) < 500)
    assert neutrino.IceCubeNeutrinoList.record(event) == {
        "n_neutrinos": 3,
        "neutrinos_complete": True,
        "neutrinos_blinded": False,
    }
    path, query = fake_services.requests[-1][1].split("?")
    assert path == "/icecube/events" and "mjd_start=" in query and "mjd_stop=" in query


def test_complete_from_service_and_from_clock(tmp_path, fake_services):
    fake_services.icecube_complete = False
    event = make_event(tmp_path)
    event.generate(neutrino.IceCubeNeutrinoList)
    assert not json.loads(event.path("icecube_neutrino_list.json").read_text())["complete"]
    fake_services.icecube_complete = None  # not said: 2019 is long past
    event.path("icecube_neutrino_list.json").unlink()
    event.generate(neutrino.IceCubeNeutrinoList)
    out = json.loads(event.path("icecube_neutrino_list.json").read_text())
    assert out == {"triggers": [], "complete": True}


def test_blinded_neutrinos(tmp_path, fake_services):
    fake_services.neutrinos = [nu(dt, ra=123.456) for dt in (-100, 0, 100, 200)]
    event = make_event(tmp_path, BLINDED_NEUTRINOS="true")
    event.generate(neutrino.IceCubeNeutrinoList)
    trig = json.loads(event.path("icecube_neutrino_list.json").read_text())["triggers"]
    assert [t["type"] for t in trig] == ["blinded"] * 4
    assert all(t["ra"] != 123.456 for t in trig)
    assert [t["dec"] for t in trig] == [-20.0] * 4  # declination kept
    assert neutrino.IceCubeNeutrinoList.record(event)["neutrinos_blinded"] is True


def test_supplied_list_is_blinded_on_read(tmp_path, no_services):
    event = make_event(tmp_path, BLINDED_NEUTRINOS="true")
    supplied = {"triggers": [{**nu(5), "type": "observation"}], "complete": True}
    event.path("icecube_neutrino_list.json").write_text(json.dumps(supplied))
    assert event.status(neutrino.IceCubeNeutrinoList) == "EXISTS"  # never rewritten
    nl = neutrino.read_neutrino_list(event)
    assert list(nl.type) == ["blinded"] and nl.ra[0] != 120.0
    assert json.loads(event.path("icecube_neutrino_list.json").read_text()) == supplied
    event.write_flags({"BLINDED_NEUTRINOS": "false"})
    assert neutrino.read_neutrino_list(event).ra[0] == 120.0


def test_no_list_and_no_service_is_a_clear_error(tmp_path, no_services, monkeypatch):
    monkeypatch.setattr(neutrino.IceCubeNeutrinoList, "RETRIES", 0)
    event = make_event(tmp_path, ONLINE="false")
    assert neutrino.IceCubeNeutrinoList.veto_reason(event) is None
    with pytest.raises(HandlerFailed, match="ONLINE=false.*supply icecube_neutrino_list.json"):
        event.generate(neutrino.IceCubeNeutrinoList)
    event.write_flags({"ONLINE": "true"})
    with pytest.raises(HandlerFailed, match="LLAMA_ICECUBE_URL is not set"):
        event.generate(neutrino.IceCubeNeutrinoList)


def test_bad_service_answers(tmp_path, fake_services, monkeypatch):
    monkeypatch.setattr(neutrino.IceCubeNeutrinoList, "RETRIES", 0)
    fake_services.neutrinos = [{**nu(0), "dec": 95.0}]
    event = make_event(tmp_path)
    with pytest.raises(HandlerFailed, match="trigger 0: dec"):
        event.generate(neutrino.IceCubeNeutrinoList)
    fake_services.fail("/icecube/", 5, 500)
    with pytest.raises(HandlerFailed, match="HTTP 500 .* after 3 attempts"):
        event.generate(neutrino.IceCubeNeutrinoList)
    assert not event.path("icecube_neutrino_list.json").exists()
