"""GW handlers: alert parsing, sky-map fetch/convert, distances, GraceDB data, p_astro."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from llama.event import Event, HandlerFailed
from llama.handler import write_json
from llama.handlers import gw
from llama.science.skymap import (
    SkyMap,
    moments_to_parameters,
    read_hdf5,
    read_sky_map,
    write_sky_map,
)

if TYPE_CHECKING:
    from fake_services import FakeServices

pytest_plugins = ("fake_services",)  # the fake_services and no_services fixtures

GCN_XML = """<?xml version='1.0' encoding='UTF-8'?>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="2.0" role="observation"
    ivorn="ivo://gwnet/LVC#S190425z-2-Initial"
    xsi:schemaLocation="http://www.ivoa.net/xml/VOEvent/v2.0 http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd">
  <Who>
    <Date>2019-04-25T08:49:01</Date>
    <Author><contactName>LIGO Scientific Collaboration and Virgo Collaboration</contactName></Author>
  </Who>
  <What>
    <Param name="Packet_Type" dataType="int" value="151"/>
    <Param name="internal" dataType="int" value="0"/>
    <Param name="Pkt_Ser_Num" dataType="string" value="2"/>
    <Param name="GraceID" dataType="string" value="S190425z" ucd="meta.id"/>
    <Param name="AlertType" dataType="string" value="Initial" ucd="meta.version"/>
    <Param name="HardwareInj" dataType="int" value="0" ucd="meta.number"/>
    <Param name="OpenAlert" dataType="int" value="1" ucd="meta.number"/>
    <Param name="EventPage" dataType="string" value="https://gracedb.ligo.org/superevents/S190425z/view/" ucd="meta.ref.url"/>
    <Param name="Instruments" dataType="string" value="L1,V1" ucd="meta.code"/>
    <Param name="FAR" dataType="float" value="4.5343e-13" ucd="arith.rate;stat.falsealarm" unit="Hz"/>
    <Param name="Group" dataType="string" value="CBC" ucd="meta.code"/>
    <Param name="Pipeline" dataType="string" value="gstlal" ucd="meta.code"/>
    <Param name="Search" dataType="string" value="AllSky" ucd="meta.code"/>
    <Group name="GW_SKYMAP" type="GW_SKYMAP">
      <Param name="skymap_fits" dataType="string" value="https://gracedb.ligo.org/api/superevents/S190425z/files/LALInference.fits.gz,0" ucd="meta.ref.url"/>
    </Group>
    <Group type="Classification">
      <Param name="BNS" dataType="float" value="0.999" ucd="stat.probability"/>
      <Param name="NSBH" dataType="float" value="0.0" ucd="stat.probability"/>
      <Param name="BBH" dataType="float" value="0.0" ucd="stat.probability"/>
      <Param name="MassGap" dataType="float" value="0.0" ucd="stat.probability"/>
      <Param name="Terrestrial" dataType="float" value="0.001" ucd="stat.probability"/>
    </Group>
    <Group type="Properties">
      <Param name="HasNS" dataType="float" value="1.0" ucd="stat.probability"/>
      <Param name="HasRemnant" dataType="float" value="1.0" ucd="stat.probability"/>
    </Group>
  </What>
  <WhereWhen>
    <ObsDataLocation>
      <ObservatoryLocation id="LIGO Virgo"/>
      <ObservationLocation>
        <AstroCoordSystem id="UTC-FK5-GEO"/>
        <AstroCoords coord_system_id="UTC-FK5-GEO">
          <Time unit="s"><TimeInstant><ISOTime>2019-04-25T08:18:05.017553</ISOTime></TimeInstant></Time>
        </AstroCoords>
      </ObservationLocation>
    </ObsDataLocation>
  </WhereWhen>
  <Description>Report of a candidate gravitational wave event</Description>
</voe:VOEvent>
"""

RETRACTION_XML = """<?xml version='1.0' encoding='UTF-8'?>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" version="2.0" role="observation"
    ivorn="ivo://gwnet/LVC#S190518bb-2-Retraction">
  <Who><Date>2019-05-18T20:01:12</Date></Who>
  <What>
    <Param name="GraceID" dataType="string" value="S190518bb"/>
    <Param name="AlertType" dataType="string" value="Retraction"/>
  </What>
</voe:VOEvent>
"""


def igwn_alert(skymap_bytes: bytes | None = None) -> dict:
    """An O4 IGWN alert (Kafka) message, as in the LVK user guide's sample."""
    return {
        "alert_type": "PRELIMINARY",
        "time_created": "2023-05-25T09:31:02Z",
        "superevent_id": "S230525ab",
        "urls": {
            "gracedb": "https://gracedb.ligo.org/superevents/S230525ab/view/",
            "skymap": "https://gracedb.ligo.org/api/superevents/S230525ab/files/bayestar.multiorder.fits,1",
        },
        "event": {
            "time": "2023-05-25T09:30:41.123Z",
            "far": 9.11e-14,
            "significant": True,
            "instruments": ["H1", "L1", "V1"],
            "group": "CBC",
            "pipeline": "gstlal",
            "search": "AllSky",
            "properties": {"HasNS": 0.95, "HasRemnant": 0.91, "HasMassGap": 0.01},
            "classification": {"BNS": 0.95, "NSBH": 0.01, "BBH": 0.03, "Terrestrial": 0.01},
            "duration": None,
            "central_frequency": None,
            "skymap": base64.b64encode(skymap_bytes).decode() if skymap_bytes else None,
        },
        "external_coinc": None,
    }


INFO = {
    "graceid": "S190425z",
    "event_time_iso": "2019-04-25T08:18:05.017553",
    "notice_time_iso": "2019-04-25T08:49:01.000000",
    "far": 4.5e-13,
    "pipeline": "gstlal",
    "instruments": ["L1", "V1"],
    "alert_type": "Initial",
    "skymap_filename": "bayestar.fits.gz",
}


def blob_map(nside: int = 16, distance: bool = True, header: bool = True) -> SkyMap:
    """A von Mises-Fisher blob on a flat NESTED grid, with distance layers."""
    import healpy as hp

    npix = hp.nside2npix(nside)
    vec = np.array(hp.pix2vec(nside, np.arange(npix), nest=True))
    centre = hp.ang2vec(120.0, -20.0, lonlat=True)
    prob = np.exp(30.0 * (centre @ vec - 1.0))
    prob /= prob.sum()
    density = prob / hp.nside2pixarea(nside)
    kwargs = {}
    if distance:
        mu, sigma, norm = moments_to_parameters(np.full(npix, 150.0), np.full(npix, 40.0))
        kwargs = {"distmu": mu, "distsigma": sigma, "distnorm": norm}
    meta = {"distmean": 150.0, "diststd": 40.0} if header else {}
    return SkyMap(probdensity=density, nside=nside, meta=meta, **kwargs)


def write_moc(path: Path, **kw) -> Path:
    write_sky_map(path, blob_map(**kw))  # writes multi-order (UNIQ), like ligo.skymap
    return path


def make_event(tmp_path: Path, info: dict | None = None, **flags: str) -> Event:
    event = Event(tmp_path / "S190425z", flags={"ONLINE": "false", **flags})
    event.path("skymap_info.json").write_text(json.dumps(info or INFO))
    return event


# --- parsing alerts ---------------------------------------------------------------------


def test_skymap_info_from_gcn():
    info = gw.skymap_info_from_gcn(GCN_XML)
    assert info["graceid"] == "S190425z"
    assert info["alert_type"] == "Initial"
    assert info["event_time_iso"] == "2019-04-25T08:18:05.017553"
    assert info["notice_time_iso"] == "2019-04-25T08:49:01.000000"
    assert info["far"] == pytest.approx(4.5343e-13)
    assert info["pipeline"] == "gstlal"
    assert info["instruments"] == ["L1", "V1"]
    assert info["skymap_url"].endswith("LALInference.fits.gz,0")
    assert info["skymap_filename"] == "LALInference.fits.gz"
    assert info["role"] == "observation"
    assert info["p_astro"]["BNS"] == pytest.approx(0.999)
    gw.validate_skymap_info(info)  # a valid skymap_info


def test_skymap_info_from_gcn_retraction_and_errors():
    info = gw.skymap_info_from_gcn(RETRACTION_XML)
    assert info["alert_type"] == "Retraction" and "event_time_iso" not in info
    with pytest.raises(gw.SkymapInfoError, match="not valid XML"):
        gw.skymap_info_from_gcn("<VOEvent")
    with pytest.raises(gw.SkymapInfoError, match="GraceID"):
        gw.skymap_info_from_gcn(GCN_XML.replace('name="GraceID"', 'name="Other"'))
    with pytest.raises(gw.SkymapInfoError, match="ISOTime"):
        gw.skymap_info_from_gcn(GCN_XML.replace("ISOTime", "Other"))


def test_skymap_info_from_lvalert():
    msg = igwn_alert(b"SIMPLE  =  T")
    info = gw.skymap_info_from_lvalert(msg)
    assert info["graceid"] == "S230525ab"
    assert info["alert_type"] == "PRELIMINARY"
    assert info["event_time_iso"] == "2023-05-25T09:30:41.123000"
    assert info["notice_time_iso"] == "2023-05-25T09:31:02.000000"
    assert info["far"] == pytest.approx(9.11e-14)
    assert info["instruments"] == ["H1", "L1", "V1"]
    assert info["skymap_filename"] == "bayestar.multiorder.fits"
    assert info["p_astro"]["MassGap"] == 0.0
    gw.validate_p_astro(info["p_astro"])
    assert gw.skymap_info_from_lvalert(json.dumps(msg)) == info
    assert gw.skymap_bytes_from_lvalert(msg) == b"SIMPLE  =  T"
    assert gw.skymap_bytes_from_lvalert(igwn_alert()) is None


def test_skymap_info_from_gracedb_lvalert():
    msg = {
        "uid": "S190425z",
        "alert_type": "new",
        "object": {
            "superevent_id": "S190425z",
            "t_0": 1240215503.017,
            "far": 4.5e-13,
            "preferred_event_data": {"pipeline": "gstlal", "instruments": "L1,V1"},
        },
    }
    info = gw.skymap_info_from_lvalert(msg)
    assert info["event_time_iso"].startswith("2019-04-25T08:18:05.01")
    assert info["instruments"] == ["L1", "V1"] and info["pipeline"] == "gstlal"
    with pytest.raises(gw.SkymapInfoError, match="superevent_id"):
        gw.skymap_info_from_lvalert({"alert_type": "new"})
    with pytest.raises(gw.SkymapInfoError, match="event time"):
        gw.skymap_info_from_lvalert({"superevent_id": "S1", "event": {}})


def test_validate_skymap_info_names_missing_key(tmp_path):
    event = make_event(tmp_path, {k: v for k, v in INFO.items() if k != "event_time_iso"})
    with pytest.raises(gw.SkymapInfoError, match="missing key 'event_time_iso'"):
        gw.read_skymap_info(event)
    with pytest.raises(gw.SkymapInfoError, match="not an ISO"):
        gw.validate_skymap_info({**INFO, "event_time_iso": "yesterday"})
    with pytest.raises(gw.SkymapInfoError, match="far"):
        gw.validate_skymap_info({**INFO, "far": "lots"})


def test_event_time_converted_once_per_string_and_bad_ones_every_time():
    from astropy.time import Time

    from llama.science.times import iso_to_gps

    iso = "2021-02-03T04:05:06.789012"
    expected = Time(iso, format="isot", scale="utc").gps
    before = iso_to_gps.cache_info()
    for _ in range(3):
        gw.validate_skymap_info({**INFO, "event_time_iso": iso})
        assert gw.event_gps_time({"event_time_iso": iso}) == expected
    after = iso_to_gps.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 5
    for _ in range(2):  # a failure is not remembered as a value
        with pytest.raises(gw.SkymapInfoError, match="'2021-13-03T04:05:06' is not an ISO"):
            gw.validate_skymap_info({**INFO, "event_time_iso": "2021-13-03T04:05:06"})


# --- advocate sign-off ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "advok", "label"),
    [
        ({"uid": "S1", "alert_type": "label_added", "data": {"name": "ADVOK"}}, True, "ADVOK"),
        ({"uid": "S1", "alert_type": "label_added", "data": {"name": "ADVNO"}}, False, "ADVNO"),
        ({"uid": "S1", "alert_type": "label_removed", "data": {"name": "ADVOK"}}, False, "ADVOK"),
        (
            {"uid": "S1", "alert_type": "update", "object": {"labels": ["EM_READY", "ADVOK"]}},
            True,
            "ADVOK",
        ),
        (
            {"uid": "S1", "alert_type": "update", "object": {"labels": ["ADVOK", "ADVNO"]}},
            False,
            "ADVNO",
        ),
    ],
)
def test_lvalert_advok(tmp_path, msg, advok, label):
    event = Event(tmp_path / "S1")
    event.path("lvalert.json").write_text(json.dumps(msg))
    event.generate(gw.LVAlertAdvok)
    out = json.loads(event.path("lvalert_advok.json").read_text())
    assert (out["advok"], out["label"], out["graceid"]) == (advok, label, "S1")
    assert gw.LVAlertAdvok.record(event) == {"advok": advok}


def test_lvalert_advok_without_label_fails_clearly(tmp_path):
    event = Event(tmp_path / "S1")
    event.path("lvalert.json").write_text(json.dumps(igwn_alert()))
    with pytest.raises(HandlerFailed, match="no ADVOK or ADVNO label"):
        event.generate(gw.LVAlertAdvok)
    assert not event.path("lvalert_advok.json").exists()


# --- sky map ----------------------------------------------------------------------------


def test_skymap_fits_from_local_path_gz(tmp_path):
    src = write_moc(tmp_path / "bayestar.multiorder.fits.gz")
    event = make_event(tmp_path, {**INFO, "skymap_url": str(src)})
    event.generate(gw.LvcSkymapFits)
    data = event.path("lvc_skymap.fits").read_bytes()
    assert data[:6] == b"SIMPLE"  # stored uncompressed
    assert event.read_meta("lvc_skymap.fits")["inputs"]["skymap_info.json"]


def test_skymap_fits_from_http(tmp_path, http_server):
    base_url, directory = http_server
    write_moc(directory / "bayestar.fits")
    event = make_event(tmp_path, {**INFO, "skymap_url": f"{base_url}/bayestar.fits"})
    event.generate(gw.LvcSkymapFits)
    assert event.path("lvc_skymap.fits").read_bytes() == (directory / "bayestar.fits").read_bytes()


def test_skymap_fits_from_s3(tmp_path, s3, s3_client):
    src = write_moc(tmp_path / "m.fits")
    s3_client.put_object(Bucket=s3, Key="maps/m.fits", Body=src.read_bytes())
    event = make_event(tmp_path, {**INFO, "skymap_url": f"s3://{s3}/maps/m.fits"})
    event.generate(gw.LvcSkymapFits)
    assert event.path("lvc_skymap.fits").read_bytes() == src.read_bytes()


def test_skymap_fits_without_url_says_use_get(tmp_path):
    event = make_event(tmp_path)
    with pytest.raises(HandlerFailed, match="supply lvc_skymap.fits with --get"):
        event.generate(gw.LvcSkymapFits)


def test_skymap_fits_rejects_broken_download(tmp_path):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"this is not FITS")
    event = make_event(tmp_path, {**INFO, "skymap_url": str(bad)})
    with pytest.raises(HandlerFailed, match="FITS"):
        event.generate(gw.LvcSkymapFits)
    assert not event.path("lvc_skymap.fits").exists()


def test_hdf5_keeps_multi_order(tmp_path):
    event = make_event(tmp_path)
    write_moc(event.path("lvc_skymap.fits"))  # supplied, as with --get
    event.generate(gw.LvcSkymapHdf5)
    m = read_hdf5(event.path("lvc_skymap.hdf5"))
    assert m.is_moc and m.has_distance
    assert m.probability().sum() == pytest.approx(1.0)


def test_hdf5_from_flat_healpy_map(tmp_path):
    import healpy as hp

    event = make_event(tmp_path)
    nside = 8
    hp.write_map(
        event.path("lvc_skymap.fits"), np.full(hp.nside2npix(nside), 1 / 768), column_names=["PROB"]
    )
    event.generate(gw.LvcSkymapHdf5)
    m = read_hdf5(event.path("lvc_skymap.hdf5"))
    assert not m.is_moc and m.nside == nside and not m.has_distance


def _distances_from_fits(path) -> bytes:
    """The distances file as computed straight from the FITS map (the way before the
    HDF5 copy was used): the header's DISTMEAN/DISTSTD, else the layers' moments."""
    m = read_sky_map(path)
    in_header = all(isinstance(m.meta.get(k), float) for k in ("distmean", "diststd"))
    distmean, diststd = m.distance_moments()
    out = path.with_name("expected.json")
    write_json(out, {"distmean": distmean, "diststd": diststd,
                     "method": "header" if in_header else "layers"})  # fmt: skip
    return out.read_bytes()


def test_distances_from_header_and_from_layers(tmp_path):
    event = make_event(tmp_path)
    write_moc(event.path("lvc_skymap.fits"))
    event.generate(gw.LvcSkymapHdf5)
    event.generate(gw.LvcDistancesJson)
    d = json.loads(event.path("lvc_skymap_distances.json").read_text())
    assert (d["distmean"], d["diststd"], d["method"]) == (150.0, 40.0, "header")
    assert gw.LvcDistancesJson.record(event) == {"distmean": 150.0, "diststd": 40.0}
    # read from the HDF5 copy: byte for byte what the FITS file gives
    expected = _distances_from_fits(event.path("lvc_skymap.fits"))
    assert event.path("lvc_skymap_distances.json").read_bytes() == expected

    write_moc(event.path("lvc_skymap.fits"), header=False)
    assert event.status(gw.LvcSkymapHdf5) == "OBSOLETE"
    event.generate(gw.LvcSkymapHdf5)
    assert event.status(gw.LvcDistancesJson) == "OBSOLETE"
    event.generate(gw.LvcDistancesJson)
    d = json.loads(event.path("lvc_skymap_distances.json").read_text())
    assert d["method"] == "layers"
    assert d["distmean"] == pytest.approx(150.0, rel=1e-3)
    assert d["diststd"] == pytest.approx(40.0, rel=1e-3)
    expected = _distances_from_fits(event.path("lvc_skymap.fits"))
    assert event.path("lvc_skymap_distances.json").read_bytes() == expected


def test_distances_of_a_bayestar_map_match_the_fits_file(tmp_path):
    bayestar = Path("/work/shared/data/bayestar/bns-0.fits")
    if not bayestar.exists():
        pytest.skip("no BAYESTAR maps on this machine")
    event = make_event(tmp_path)
    event.path("lvc_skymap.fits").write_bytes(bayestar.read_bytes())
    event.generate(gw.LvcSkymapHdf5)
    event.generate(gw.LvcDistancesJson)
    expected = _distances_from_fits(event.path("lvc_skymap.fits"))
    assert event.path("lvc_skymap_distances.json").read_bytes() == expected


def test_distances_without_distance_information_fails(tmp_path):
    event = make_event(tmp_path)
    write_moc(event.path("lvc_skymap.fits"), distance=False, header=False)
    event.generate(gw.LvcSkymapHdf5)
    with pytest.raises(HandlerFailed, match="DISTMEAN"):
        event.generate(gw.LvcDistancesJson)


# --- GraceDB event data and p_astro ---------------------------------------------------


def serve_gracedb(fake: FakeServices) -> None:
    fake.superevents["S190425z"] = {
        "superevent_id": "S190425z",
        "preferred_event": "G330564",
        "far": 4.5e-13,
        "t_0": 1240215503.017,
        "labels": ["ADVOK", "EM_READY"],
    }
    fake.events["G330564"] = {
        "graceid": "G330564",
        "pipeline": "gstlal",
        "group": "CBC",
        "instruments": "L1,V1",
        "far": 4.53e-13,
        "offline": False,
        "gpstime": 1240215503.017,
        "extra_attributes": {
            "CoincInspiral": {"snr": 12.9, "ifos": "L1,V1", "mchirp": 1.44},
            "SingleInspiral": [{"ifo": "L1", "snr": 12.3}],
        },
    }
    fake.p_astro["S190425z"] = {
        "BNS": 0.999,
        "NSBH": 0.0,
        "BBH": 0.0,
        "MassGap": 0.0,
        "Terrestrial": 0.001,
    }


def test_gracedb_event_data_online(tmp_path, fake_services):
    serve_gracedb(fake_services)
    event = make_event(tmp_path, ONLINE="true")
    event.generate(gw.LVCGraceDbEventData)
    d = json.loads(event.path("lvc_gracedb_event_data.json").read_text())
    assert d == {
        "graceid": "S190425z",
        "preferred_event": "G330564",
        "snr": 12.9,
        "instruments": ["L1", "V1"],
        "far": 4.53e-13,
        "offline": False,
        "source": "gracedb",
    }
    assert ("GET", "/gracedb/api/events/G330564/") in fake_services.requests
    assert gw.LVCGraceDbEventData.record(event)["snr"] == 12.9


@pytest.mark.parametrize("handler", [gw.LVCGraceDbEventData, gw.PAstro])
def test_gracedb_handlers_time_limit_only_when_asking_gracedb(tmp_path, fake_services, handler):
    """Online the GraceDB handlers' generate runs on the watchdog thread under
    TIMEOUT_S; offline (skymap_info.json alone) on the calling thread, unlimited."""
    import threading

    serve_gracedb(fake_services)
    threads = []
    generate = handler.generate

    def noting_thread(self, out):
        threads.append(threading.current_thread())
        generate(self, out)

    p_astro = {"BNS": 1.0, "NSBH": 0.0, "BBH": 0.0, "MassGap": 0.0, "Terrestrial": 0.0}
    info = {**INFO, "snr": 12.0, "p_astro": p_astro}
    offline = make_event(tmp_path / "off", info)
    online = make_event(tmp_path / "on", info, ONLINE="true")
    assert handler.time_limit(offline) is None
    assert handler.time_limit(online) == handler.TIMEOUT_S == 120.0
    with pytest.MonkeyPatch.context() as m:
        m.setattr(handler, "generate", noting_thread)
        offline.generate(handler)
        online.generate(handler)
    assert threads[0] is threading.current_thread()
    assert threads[1] is not threading.current_thread()
    assert json.loads(online.path(handler.FILENAME).read_text()) != json.loads(
        offline.path(handler.FILENAME).read_text()
    )


def test_gracedb_event_data_burst_and_retry(tmp_path, fake_services):
    serve_gracedb(fake_services)
    fake_services.events["G330564"]["extra_attributes"] = {"MultiBurst": {"snr": 8.5}}
    fake_services.fail("/gracedb/api/superevents/", 1, 503)  # transient: retried
    event = make_event(tmp_path, ONLINE="true")
    event.generate(gw.LVCGraceDbEventData)
    assert json.loads(event.path("lvc_gracedb_event_data.json").read_text())["snr"] == 8.5


def test_gracedb_unknown_superevent_is_clear(tmp_path, fake_services, monkeypatch):
    monkeypatch.setattr(gw.LVCGraceDbEventData, "RETRIES", 0)
    event = make_event(tmp_path, ONLINE="true")
    with pytest.raises(HandlerFailed, match=r"superevents/S190425z/: not found \(HTTP 404\)"):
        event.generate(gw.LVCGraceDbEventData)


def test_gracedb_event_data_offline_from_info(tmp_path, fake_services):
    serve_gracedb(fake_services)
    event = make_event(tmp_path, {**INFO, "snr": 11.0, "instruments": "H1,L1"})
    event.generate(gw.LVCGraceDbEventData)  # ONLINE=false: no request
    d = json.loads(event.path("lvc_gracedb_event_data.json").read_text())
    assert (d["snr"], d["instruments"], d["source"]) == (11.0, ["H1", "L1"], "skymap_info")
    assert fake_services.requests == []


def test_gracedb_event_data_online_without_url_uses_info(tmp_path, no_services):
    event = make_event(tmp_path, {**INFO, "snr": 11.0}, ONLINE="true")
    event.generate(gw.LVCGraceDbEventData)
    assert json.loads(event.path("lvc_gracedb_event_data.json").read_text())["snr"] == 11.0


def test_gracedb_event_data_offline_missing_snr(tmp_path, monkeypatch):
    monkeypatch.setattr(gw.LVCGraceDbEventData, "RETRIES", 0)
    event = make_event(tmp_path)
    assert gw.LVCGraceDbEventData.veto_reason(event) is None  # works offline
    with pytest.raises(HandlerFailed, match="no 'snr'"):
        event.generate(gw.LVCGraceDbEventData)


def test_p_astro_online(tmp_path, fake_services):
    serve_gracedb(fake_services)
    event = make_event(tmp_path, ONLINE="true")
    event.generate(gw.PAstro)
    p = json.loads(event.path("p_astro.json").read_text())
    assert list(p) == list(gw.P_ASTRO_KEYS) and p["BNS"] == 0.999
    assert gw.PAstro.record(event)["p_bns"] == 0.999


def test_p_astro_offline_from_gcn_classification(tmp_path):
    event = make_event(tmp_path, gw.skymap_info_from_gcn(GCN_XML))
    event.generate(gw.PAstro)
    assert json.loads(event.path("p_astro.json").read_text())["Terrestrial"] == 0.001


def test_p_astro_errors(tmp_path, fake_services, monkeypatch):
    monkeypatch.setattr(gw.PAstro, "RETRIES", 0)
    event = make_event(tmp_path)
    with pytest.raises(HandlerFailed, match="no source classification"):
        event.generate(gw.PAstro)
    fake_services.p_astro["S190425z"] = {"BNS": 0.5, "NSBH": 0.1, "BBH": 0.1, "Terrestrial": 0.1}
    event.write_flags({"ONLINE": "true"})
    with pytest.raises(HandlerFailed, match="sum to 0.8000"):
        event.generate(gw.PAstro)
    with pytest.raises(ValueError, match="missing source class 'BBH'"):
        gw.validate_p_astro({"BNS": 1.0, "NSBH": 0, "Terrestrial": 0})


# --- flags ------------------------------------------------------------------------------


def test_vetoed_and_retracted_events(tmp_path):
    event = make_event(tmp_path, VETOED="true")
    assert event.status(gw.LvcSkymapFits) == "VETOED"
    event.write_flags({"VETOED": "false"})
    assert event.status(gw.LvcSkymapFits) == "READY"
    event.path("lvc_retraction.xml").write_text(RETRACTION_XML)
    assert event.status(gw.LvcSkymapFits) == "VETOED"


def test_importing_handlers_stays_light():
    import subprocess
    import sys

    code = "import sys, llama.handlers; print(sorted({'numpy','healpy','astropy','requests'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"
