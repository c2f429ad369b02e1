"""The significance handlers on the shipped example events, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llama.event import Event
from llama.handler import Status
from llama.handlers.coinc import CoincSignificanceI3Lvc, CoincSignificanceSubthresholdI3Lvc
from llama.pipeline import select_pipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "llama" / "examples"


def _event(tmp_path: Path, graceid: str, neutrinos: str | None) -> Event:
    ev = Event(tmp_path / f"{graceid}-{neutrinos}", flags={"ONLINE": "false"})
    for name in ("skymap_info.json", "lvc_skymap.fits"):
        shutil.copy(EXAMPLES / "events" / graceid / name, ev.path(name))
    if neutrinos is None:
        ev.path("icecube_neutrino_list.json").write_text('{"triggers": [], "complete": true}')
    else:
        shutil.copy(
            EXAMPLES / "neutrinos" / f"{neutrinos}.json", ev.path("icecube_neutrino_list.json")
        )
    for handler in select_pipeline(with_ancestors=["CoincSignificanceI3Lvc"]):
        if ev.status(handler) is Status.READY and handler is not CoincSignificanceI3Lvc:
            ev.generate(handler)
    return ev


@pytest.fixture(autouse=True)
def few_trials(monkeypatch):
    monkeypatch.setenv("LLAMA_N_TRIALS", "300")


def _brute_force_overlap(ev: Event, ra: float, dec: float, sigma: float) -> float:
    """sum_pix P_gw(pix) G(pix) on a fine flat grid, with healpy [sr^-1]."""
    import healpy as hp

    from llama.science.skymap import read_sky_map

    flat = read_sky_map(ev.path("lvc_skymap.fits")).flatten(512)
    prob = flat.probability()
    x, y, z = hp.pix2vec(512, np.arange(prob.size), nest=True)
    v = hp.ang2vec(np.radians(90 - dec), np.radians(ra))
    psi = np.arccos(np.clip(x * v[0] + y * v[1] + z * v[2], -1, 1))
    s = np.radians(sigma)
    return float(np.sum(prob * np.exp(-(psi**2) / (2 * s * s)) / (2 * np.pi * s * s)))


def test_injected_neutrino_on_its_own_map(tmp_path):
    ev = _event(tmp_path, "S190425a", "inj-S190425a")
    ev.generate(CoincSignificanceI3Lvc)
    data = json.loads(ev.path("significance_lvc-i3.json").read_text())
    triggers = data["outputs"]["neutrino_gw_triggers"]
    listed = json.loads(ev.path("icecube_neutrino_list.json").read_text())["triggers"]
    assert len(triggers) == len(listed)
    keys = {"ra", "dec", "sigma", "energy", "dt", "psf_overlap", "p_h_s1", "p_h_s2",
            "p_h_c", "p_h_0", "odds_ratio", "p_value"}  # fmt: skip
    assert all(keys <= set(t) for t in triggers)
    injected = [t for t, n in zip(triggers, listed, strict=True) if n["type"] == "injected"][0]
    # psf_overlap checked independently: brute-force healpy sum at NSIDE 512, within 2%
    expected = _brute_force_overlap(ev, injected["ra"], injected["dec"], injected["sigma"])
    assert injected["psf_overlap"] == pytest.approx(expected, rel=0.02)
    combined = data["outputs"]["neutrino_gw_combined"]
    assert combined["odds_ratio"] == pytest.approx(sum(t["odds_ratio"] for t in triggers))
    assert combined["n_trials"] == 300 and 0 < combined["p_value"] <= 1
    assert injected["odds_ratio"] == max(t["odds_ratio"] for t in triggers)
    assert data["inputs"]["constants"]["K0"] == 400.8
    record = CoincSignificanceI3Lvc.record(ev)
    assert record["odds_ratio"] == combined["odds_ratio"]
    # same inputs, same numbers (trials are seeded by the event and its neutrino list)
    again = CoincSignificanceI3Lvc(ev).significance()
    assert again["outputs"]["neutrino_gw_combined"] == combined


def test_empty_neutrino_list_gives_zero_odds_and_p_one(tmp_path):
    ev = _event(tmp_path, "S190425b", None)
    ev.generate(CoincSignificanceI3Lvc)
    combined = json.loads(ev.path("significance_lvc-i3.json").read_text())["outputs"][
        "neutrino_gw_combined"
    ]
    # Every trial ties at odds 0: conservative p = 1, randomised p = U (pvalue.py).
    assert combined["odds_ratio"] == 0 and combined["p_value_upper"] == 1
    assert 0 < combined["p_value"] <= 1


def test_background_table_is_used_when_configured(tmp_path, monkeypatch):
    from llama.science.background_table import build_background_table

    ev = _event(tmp_path, "S190425a", "inj-S190425a")
    table = tmp_path / "bg.npz"
    pop = CoincSignificanceI3Lvc(ev).significance()["inputs"]["population"]
    build_background_table(np.linspace(0, 1e3, 999), pop, ["H1", "V1"], table)
    monkeypatch.setenv("LLAMA_BACKGROUND_TABLE", str(table))
    combined = CoincSignificanceI3Lvc(ev).significance()["outputs"]["neutrino_gw_combined"]
    assert combined["method"] == "background_table" and combined["n_background"] == 999
    expected = (1 + np.sum(np.linspace(0, 1e3, 999) >= combined["odds_ratio"])) / 1000
    assert combined["p_value_upper"] == pytest.approx(expected)  # randomised p: U = 1
    assert expected - 1 / 1000 <= combined["p_value"] <= expected


@pytest.mark.parametrize(("graceid", "cwb"), [("S190425a", True), ("S190425d", False)])
def test_subthreshold_variant_records_the_alert(tmp_path, monkeypatch, graceid, cwb):
    """O3's sub-threshold file: one combined odds ratio, no per-neutrino entries."""
    from llama.science.neutrinos import NeutrinoList
    from llama.science.skymap import read_hdf5
    from llama.science.subthreshold import SubthresholdModel

    ev = _event(tmp_path, graceid, f"inj-{graceid}")
    ev.path("lvalert.json").write_text(json.dumps({"superevent_id": graceid}))
    ev.generate(CoincSignificanceSubthresholdI3Lvc)
    data = json.loads(ev.path("significance_subthresh_lvc-i3.json").read_text())
    assert set(data) == {"inputs", "outputs"}
    assert set(data["inputs"]) == {"gw_skymap_info", "neutrino_info", "search_parameters"}
    assert set(data["outputs"]) == {"neutrino_gw_combined"}
    combined = data["outputs"]["neutrino_gw_combined"]
    assert set(combined) == {"odds_ratio", "p_h_s1", "p_h_s2", "p_h_0", "p_h_c", "p_value", "dump"}  # fmt: skip
    assert combined["p_h_s2"] == 0 and combined["dump"] == {}
    gw = data["inputs"]["gw_skymap_info"]
    assert gw["lvalert"]["superevent_id"] == graceid and gw["graceid"] == graceid
    params = data["inputs"]["search_parameters"]
    assert params["model"] == "o3_subthreshold" and params["cwb_branch"] is cwb
    assert params["background_snr_list_synthetic"] is True
    assert params["background_snr_list"].endswith("synthetic_background_snr.txt")
    method = params["p_value_method"]
    assert method["method"] == "trials" and method["n_trials"] == 300
    assert "stop_after" not in method
    # the injected neutrino sits on the map: small p from the scrambled trials
    assert 0 < combined["p_value"] < 0.05 and combined["odds_ratio"] > 0
    # the numbers are the model's on the event's own inputs (SNR, p_terr, pipeline)
    listed = NeutrinoList.from_json(data["inputs"]["neutrino_info"])
    model = SubthresholdModel(
        read_hdf5(ev.path("lvc_skymap.hdf5")),
        rho=gw["snr"],
        rbar=gw["distmean_mpc"],
        p_terrestrial=gw["p_astro"]["Terrestrial"],
        pipeline=gw["pipeline"],
        t_gw_mjd=params["t_gw_mjd"],
    )
    again = model.evaluate(listed, params["t_gw_gps"])
    for name in ("odds_ratio", "p_h_s1", "p_h_c", "p_h_0"):
        assert combined[name] == pytest.approx(getattr(again, name), rel=1e-9), name
    record = CoincSignificanceSubthresholdI3Lvc.record(ev)
    assert record["subthreshold_odds_ratio"] == combined["odds_ratio"]
    assert record["subthreshold_p_value"] == combined["p_value"]
    # a background table: its subthreshold keys give the p-value, OPA keys are not used
    from llama.science.background_table import make_background_table, write_background_table

    entry = {"population": gw["population"], "sensitivity": "O3", "instruments": gw["instruments"]}  # fmt: skip
    opa = make_background_table([{**entry, "odds": np.linspace(0.0, 1.0, 99)}])
    monkeypatch.setenv("LLAMA_BACKGROUND_TABLE", str(write_background_table(opa, tmp_path / "o.nc")))  # fmt: skip
    unused = CoincSignificanceSubthresholdI3Lvc(ev).significance()["inputs"]["search_parameters"]
    assert unused["p_value_method"]["method"] == "trials"
    assert "no subthreshold_odds_ratio keys" in unused["p_value_method"]["background_table_unused"]
    odds = np.linspace(0.0, 2.0 * combined["odds_ratio"], 999)
    sub = make_background_table([{**entry, "odds": odds, "statistic": "subthreshold_odds_ratio"}])
    monkeypatch.setenv("LLAMA_BACKGROUND_TABLE", str(write_background_table(sub, tmp_path / "s.nc")))  # fmt: skip
    from_table = CoincSignificanceSubthresholdI3Lvc(ev).significance()
    method = from_table["inputs"]["search_parameters"]["p_value_method"]
    assert method["method"] == "background_table" and method["n_background"] == 999
    expected = (1 + np.sum(odds >= combined["odds_ratio"])) / 1000  # about one half
    assert method["p_value_upper"] == pytest.approx(expected)
    p_value = from_table["outputs"]["neutrino_gw_combined"]["p_value"]
    assert np.sum(odds > combined["odds_ratio"]) / 1000 <= p_value <= expected  # ties: U


def test_bad_analysis_option_is_a_clear_error(tmp_path, monkeypatch):
    ev = _event(tmp_path, "S190425a", "bg-00")
    monkeypatch.setenv("LLAMA_PSF", "cauchy")
    with pytest.raises(Exception, match="LLAMA_PSF='cauchy' is not allowed"):
        ev.generate(CoincSignificanceI3Lvc)
    monkeypatch.delenv("LLAMA_PSF")
    monkeypatch.setenv("LLAMA_OVERLAP_RTOL", "tight")
    with pytest.raises(Exception, match="LLAMA_OVERLAP_RTOL='tight' is not a number"):
        ev.generate(CoincSignificanceI3Lvc)
    monkeypatch.setenv("LLAMA_OVERLAP_RTOL", "2")
    with pytest.raises(Exception, match=r"overlap_rtol must be in \(0, 1\)"):
        ev.generate(CoincSignificanceI3Lvc)
    monkeypatch.setenv("LLAMA_OVERLAP_RTOL", "0.001")
    monkeypatch.setenv("LLAMA_N_TRIALS", "many")
    with pytest.raises(Exception, match="LLAMA_N_TRIALS='many' is not an integer"):
        ev.generate(CoincSignificanceI3Lvc)
    monkeypatch.setenv("LLAMA_N_TRIALS", "300")
    ev.generate(CoincSignificanceI3Lvc)
    data = json.loads(ev.path("significance_lvc-i3.json").read_text())
    assert data["inputs"]["options"]["overlap_rtol"] == 0.001


def test_map_written_by_ligo_skymap_gives_sensible_odds(tmp_path):
    """A real LVK-format multi-order file from ligo.skymap runs through the pipeline."""
    lfits = pytest.importorskip("ligo.skymap.io.fits")
    from astropy.table import Table

    from llama.science.skymap import read_sky_map

    ours = _event(tmp_path / "ours", "S190425a", "inj-S190425a")
    ours.generate(CoincSignificanceI3Lvc)
    skymap = read_sky_map(ours.path("lvc_skymap.fits"))
    table = Table(
        {
            "UNIQ": skymap.uniq,
            "PROBDENSITY": skymap.probdensity,
            "DISTMU": skymap.distmu,
            "DISTSIGMA": skymap.distsigma,
            "DISTNORM": skymap.distnorm,
        }
    )
    table.meta.update(objid="S190425a", gps_time=1240215503.017, instruments={"H1", "V1"},
                      distmean=skymap.meta["distmean"], diststd=skymap.meta["diststd"])  # fmt: skip
    theirs = Event(tmp_path / "theirs" / "S190425a", flags={"ONLINE": "false"})
    for name in ("skymap_info.json", "icecube_neutrino_list.json"):
        shutil.copy(ours.path(name), theirs.path(name))
    lfits.write_sky_map(str(theirs.path("lvc_skymap.fits")), table, moc=True)
    for handler in select_pipeline(with_ancestors=["CoincSignificanceI3Lvc"]):
        if theirs.status(handler) is Status.READY:
            theirs.generate(handler)
    read = [
        json.loads(ev.path("significance_lvc-i3.json").read_text())["outputs"]
        for ev in (ours, theirs)
    ]
    assert read[1]["neutrino_gw_combined"]["odds_ratio"] > 0
    assert read[1]["neutrino_gw_combined"]["odds_ratio"] == pytest.approx(
        read[0]["neutrino_gw_combined"]["odds_ratio"], rel=1e-6
    )
    overlaps = [[t["psf_overlap"] for t in r["neutrino_gw_triggers"]] for r in read]
    np.testing.assert_allclose(overlaps[1], overlaps[0], rtol=1e-6)


def test_a_damaged_p_astro_is_named_in_the_failure(tmp_path):
    from llama.event import HandlerFailed

    ev = _event(tmp_path, "S190425a", "inj-S190425a")
    ev.path("p_astro.json").write_text('{"BNS": 0.9}\n\n{"BBH": 0.1}\n')
    with pytest.raises(
        HandlerFailed, match=r"p_astro.json is not valid JSON \(Extra data at line 3"
    ):
        ev.generate(CoincSignificanceI3Lvc)


def test_sequential_trials_are_recorded(tmp_path, monkeypatch):
    """LLAMA_TRIAL_STOP_AFTER=20 on a background list: the file records the option and
    the trials drawn, far fewer than the 2,000 allowed; p = h / L when it stopped."""
    monkeypatch.setenv("LLAMA_N_TRIALS", "2000")
    monkeypatch.setenv("LLAMA_TRIAL_STOP_AFTER", "20")
    ev = _event(tmp_path, "S190425a", "bg-00")
    ev.generate(CoincSignificanceI3Lvc)
    data = json.loads(ev.path("significance_lvc-i3.json").read_text())
    combined = data["outputs"]["neutrino_gw_combined"]
    assert combined["stop_after"] == 20 and combined["n_trials"] == 2000
    assert combined["n_trials_used"] <= combined["n_trials_drawn"] < 2000
    assert combined["p_value"] == pytest.approx(20 / combined["n_trials_used"])
    assert combined["p_value_upper"] >= combined["p_value"]
    assert "Besag & Clifford" in combined["convention"]
    for trigger in data["outputs"]["neutrino_gw_triggers"]:
        assert 0 < trigger["p_value"] <= 1
    # seeded as before: the same numbers again
    again = CoincSignificanceI3Lvc(ev).significance()
    assert again["outputs"]["neutrino_gw_combined"] == combined
    # the sub-threshold statistic's trials stop by the same option
    ev.path("lvalert.json").write_text(json.dumps({"superevent_id": "S190425a"}))
    sub = CoincSignificanceSubthresholdI3Lvc(ev).significance()["inputs"]["search_parameters"]
    assert sub["p_value_method"]["stop_after"] == 20
    assert sub["p_value_method"]["n_trials_drawn"] < 2000
    # unset: all 2,000 trials, as before the option existed
    monkeypatch.delenv("LLAMA_TRIAL_STOP_AFTER")
    off = CoincSignificanceI3Lvc(ev).significance()["outputs"]["neutrino_gw_combined"]
    assert "stop_after" not in off and "n_trials_drawn" not in off
    monkeypatch.setenv("LLAMA_TRIAL_STOP_AFTER", "0")
    with pytest.raises(ValueError, match="LLAMA_TRIAL_STOP_AFTER=0 must be an integer >= 1"):
        CoincSignificanceI3Lvc(ev).significance()
    monkeypatch.setenv("LLAMA_TRIAL_STOP_AFTER", "twenty")
    with pytest.raises(ValueError, match="'twenty' is not an integer; set e.g. 20 or unset"):
        CoincSignificanceI3Lvc(ev).significance()


def test_a_changed_analysis_option_or_rebuilt_table_puts_the_significance_out_of_date(
    tmp_path, monkeypatch
):
    import os

    from llama.science.background_table import build_background_table

    ev = _event(tmp_path, "S190425a", "bg-00")
    ev.generate(CoincSignificanceI3Lvc)
    assert Event(ev.directory).status(CoincSignificanceI3Lvc) is Status.EXISTS
    monkeypatch.setenv("LLAMA_N_TRIALS", "301")  # another trial count: remade
    assert Event(ev.directory).status(CoincSignificanceI3Lvc) is Status.OBSOLETE
    monkeypatch.setenv("LLAMA_N_TRIALS", "300")
    assert Event(ev.directory).status(CoincSignificanceI3Lvc) is Status.EXISTS
    # a background table named, then rebuilt in place under the same name
    table = tmp_path / "bg.npz"
    pop = CoincSignificanceI3Lvc(ev).significance()["inputs"]["population"]
    build_background_table(np.linspace(0, 1e3, 999), pop, ["H1", "V1"], table)
    monkeypatch.setenv("LLAMA_BACKGROUND_TABLE", str(table))
    assert Event(ev.directory).status(CoincSignificanceI3Lvc) is Status.OBSOLETE
    ev.generate(CoincSignificanceI3Lvc)
    first = json.loads(ev.path("significance_lvc-i3.json").read_text())
    assert Event(ev.directory).status(CoincSignificanceI3Lvc) is Status.EXISTS
    build_background_table(np.linspace(0, 1e-3, 99), pop, ["H1", "V1"], table)
    st = table.stat()
    os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later rebuild
    assert Event(ev.directory).status(CoincSignificanceI3Lvc) is Status.OBSOLETE
    ev.generate(CoincSignificanceI3Lvc)
    second = json.loads(ev.path("significance_lvc-i3.json").read_text())
    n_bg = [d["outputs"]["neutrino_gw_combined"]["n_background"] for d in (first, second)]
    assert n_bg == [999, 99]
    # the plots and tables made from it follow through its checksum, as before
    meta = json.loads(ev.meta_path("significance_lvc-i3.json").read_text())
    assert (
        meta["settings"]["n_trials"] == "300" and str(table) in meta["settings"]["background_table"]
    )
