"""The icecube_neutrino_list.json format: round trips, validation, window, blinding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llama.science.constants import SIGMA_FLOOR_DEG
from llama.science.neutrinos import NeutrinoList, NeutrinoListError


def trig(**kw):
    base = {"mjd": 58598.3, "ra": 10.0, "dec": -5.0, "sigma": 0.5, "energy": 1e4}
    base.update(kw)
    return base


def test_round_trip(tmp_path):
    obj = {
        "triggers": [
            trig(type="observation", zenith=84.0, azimuth=12.0, run=123, event=4),
            trig(mjd=58598.301, ra=350.0, dec=40.0, sigma=2.0, energy=3e3),
        ],
        "complete": False,
    }
    nl = NeutrinoList.from_json(obj)
    assert len(nl) == 2 and not nl.complete
    assert nl.type.tolist() == ["observation", "unspecified"]
    nl.write(tmp_path / "n.json")
    again = NeutrinoList.read(tmp_path / "n.json")
    assert again.to_json() == nl.to_json()
    out = json.loads((tmp_path / "n.json").read_text())
    assert out["triggers"][0]["run"] == 123 and "run" not in out["triggers"][1]


def test_empty_list_is_valid(tmp_path):
    nl = NeutrinoList.from_json({"triggers": [], "complete": True})
    assert len(nl) == 0
    nl.write(tmp_path / "e.json")
    assert len(NeutrinoList.read(tmp_path / "e.json")) == 0
    assert len(NeutrinoList.empty().select_window(58598.0, 500)) == 0


def test_sigma_floor():
    nl = NeutrinoList.from_json({"triggers": [trig(sigma=0.05)]})
    assert nl.sigma[0] == SIGMA_FLOOR_DEG


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"ra": None}, "trigger 1: ra = None is not a number"),
        ({"sigma": 0.0}, "trigger 1: sigma = 0 must be > 0"),
        ({"sigma": -1.0}, "trigger 1: sigma = -1 must be > 0"),
        ({"dec": 91.0}, r"trigger 1: dec = 91 must be within \[-90, 90\]"),
        ({"energy": float("nan")}, "trigger 1: energy is NaN"),
        ({"type": "real"}, "trigger 1: type 'real' is not one of"),
    ],
)
def test_bad_values_name_the_trigger(bad, match):
    with pytest.raises(NeutrinoListError, match=match):
        NeutrinoList.from_json({"triggers": [trig(), trig(**bad)]})


def test_missing_key_names_trigger_and_fix():
    t = trig()
    del t["dec"]
    with pytest.raises(NeutrinoListError, match="trigger 1: missing key 'dec'; each trigger needs"):
        NeutrinoList.from_json({"triggers": [trig(), t]})
    with pytest.raises(NeutrinoListError, match="'triggers' key is missing"):
        NeutrinoList.from_json({"neutrinos": []})


def test_read_errors_name_the_file(tmp_path):
    p = tmp_path / "n.json"
    p.write_text("{not json")
    with pytest.raises(NeutrinoListError, match="n.json: not valid JSON"):
        NeutrinoList.read(p)
    with pytest.raises(NeutrinoListError, match="no such file"):
        NeutrinoList.read(tmp_path / "missing.json")


def test_nan_in_arrays_rejected():
    with pytest.raises(NeutrinoListError, match="trigger 0: ra"):
        NeutrinoList(mjd=[1.0], ra=[np.nan], dec=[0.0], sigma=[1.0], energy=[1.0])


def test_select_window():
    t0 = 58598.5
    dts = np.array([-600, -499, 0, 499.9, 501])
    nl = NeutrinoList(
        mjd=t0 + dts / 86400, ra=np.zeros(5), dec=np.zeros(5), sigma=np.ones(5),
        energy=np.ones(5),
    )  # fmt: skip
    sel = nl.select_window(t0, 500.0)
    np.testing.assert_allclose(sel.dt_seconds(t0), [-499, 0, 499.9], atol=1e-4)


def test_scramble_ra_keeps_dec_and_marks_blinded():
    nl = NeutrinoList.from_json({"triggers": [trig(), trig(ra=200.0, dec=30.0)]})
    a = nl.scramble_ra(np.random.default_rng(1))
    b = nl.scramble_ra(np.random.default_rng(1))
    np.testing.assert_array_equal(a.ra, b.ra)
    assert not np.allclose(a.ra, nl.ra)
    np.testing.assert_array_equal(a.dec, nl.dec)
    assert set(a.type) == {"blinded"} and set(nl.type) == {"unspecified"}


def test_zenith_from_dec_unless_given():
    nl = NeutrinoList.from_json({"triggers": [trig(dec=-30.0), trig(dec=10.0, zenith=101.0)]})
    np.testing.assert_allclose(nl.zenith_deg, [60.0, 101.0])


def test_concatenate_sorts_by_time():
    a = NeutrinoList.from_json({"triggers": [trig(mjd=2.0)]})
    b = NeutrinoList.from_json({"triggers": [trig(mjd=1.0, type="injected")]})
    c = a.concatenate(b)
    assert c.mjd.tolist() == [1.0, 2.0] and c.type.tolist() == ["injected", "unspecified"]


@pytest.mark.parametrize("mjd", [1e15, -5.0, 2.4e6])  # seconds, negative, a Julian Date
def test_an_absurd_arrival_time_is_one_clear_message(mjd):
    trig = {"mjd": mjd, "ra": 1.0, "dec": 2.0, "sigma": 0.5, "energy": 1e4}
    with pytest.raises(NeutrinoListError, match=r"trigger 0: mjd = .* is outside \[0, 100000\]"):
        NeutrinoList.from_json({"triggers": [trig]})


def _trigger(**changes):
    trig = {"mjd": 58598.3, "ra": 10.0, "dec": -5.0, "sigma": 0.5, "energy": 2e3}
    trig.update(changes)
    return {k: v for k, v in trig.items() if v is not ...}


@pytest.mark.parametrize(
    ("triggers", "match"),
    [
        # the first trigger in list order is named, whatever its key's place
        ([_trigger(energy=...), _trigger(mjd="x")], "trigger 0: missing key 'energy'"),
        ([_trigger(), _trigger(ra=None), _trigger(energy=...)], "trigger 1: ra = None is not"),
        ([_trigger(), _trigger(mjd="x", ra=...)], "trigger 1: mjd = 'x' is not a number"),
        ([_trigger(), _trigger(), _trigger(sigma=float("nan"))], "trigger 2: sigma is NaN"),
        ([_trigger(), _trigger(zenith=float("nan"))], "trigger 1: zenith is NaN"),
        ([_trigger(), 3, _trigger(energy=...)], "trigger 1: is int, not an object"),
        # past the parse, the range checks in turn (sigma, dec, energy, mjd) name theirs
        (
            [_trigger(), _trigger(), _trigger(dec=95.0), _trigger(sigma=-1.0)],
            "trigger 3: sigma = -1",
        ),
        ([_trigger(), _trigger(), _trigger(dec=95.0)], "trigger 2: dec = 95"),
        ([_trigger(), _trigger(energy=0.0)], "trigger 1: energy = 0 must be > 0"),
        ([_trigger(), _trigger(type="nope")], "trigger 1: type 'nope' is not one of"),
        ([_trigger(mjd=1e6), _trigger(dec=-91.0)], "trigger 1: dec = -91"),
        ([_trigger(), _trigger(mjd=1e6)], "trigger 1: mjd = 1e"),
    ],
)
def test_a_list_names_its_first_bad_trigger(triggers, match):
    with pytest.raises(NeutrinoListError, match=match):
        NeutrinoList.from_json({"triggers": triggers})


def test_plain_triggers_read_as_given():
    triggers = [
        _trigger(zenith=95.0, run=7),
        _trigger(mjd="58598.4", type="observation", azimuth=12.5, event=3),
        _trigger(dec=-90.0, sigma=0.01, energy=1e9, type=None),
        _trigger(dec=90.0, mjd=100000.0),
    ]
    nl = NeutrinoList.from_json({"triggers": triggers, "complete": False})
    assert nl.mjd.tolist() == [58598.3, 58598.4, 58598.3, 100000.0]
    assert nl.dec.tolist() == [-5.0, -5.0, -90.0, 90.0]
    assert nl.sigma.tolist() == [0.5, 0.5, SIGMA_FLOOR_DEG, 0.5]
    assert nl.type.tolist() == ["unspecified", "observation", "unspecified", "unspecified"]
    assert np.isnan(nl.zenith[1:]).all() and nl.zenith[0] == 95.0
    assert np.isnan(nl.azimuth[[0, 2, 3]]).all() and nl.azimuth[1] == 12.5
    assert nl.run.tolist() == [7, -1, -1, -1] and nl.event.tolist() == [-1, 3, -1, -1]
    assert nl.complete is False and nl.mjd.dtype == np.float64 and nl.run.dtype == np.int64
