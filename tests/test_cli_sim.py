"""``llama sim``: parser, the three subcommands, and the shipped example set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llama.cli.sim import EXAMPLES_SEED, main, parser
from llama.science.neutrinos import NeutrinoList
from llama.science.skymap import read_sky_map

EXAMPLES = Path(__file__).resolve().parent.parent / "llama" / "examples"


def test_parser_options():
    p = parser()
    a = p.parse_args(
        ["skymap", "o.fits", "--seed", "3", "--ra", "1", "--dec", "2", "--area90", "50"]
    )
    assert (a.what, a.seed, a.ra, a.dec, a.area90, a.sigma) == ("skymap", 3, 1.0, 2.0, 50.0, None)
    with pytest.raises(SystemExit):
        p.parse_args(["skymap", "o.fits", "--sigma", "1", "--area90", "5"])
    a = p.parse_args(["neutrinos", "n.json", "--gps", "1240215503", "--inject-from", "m.fits"])
    assert a.gps == 1240215503.0 and a.inject_from == "m.fits"
    with pytest.raises(SystemExit):
        p.parse_args(["neutrinos", "n.json", "--gps", "1", "--mjd", "2"])
    a = p.parse_args(["examples", "out"])
    assert a.n_events == 8 and a.seed == EXAMPLES_SEED


def test_help_is_fast_and_works():
    out = subprocess.run(
        [sys.executable, "-m", "llama.cli.sim", "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "usage: llama sim" in out.stdout and "examples" in out.stdout
    # --help must not import the science stack
    code = "import sys, llama.cli.sim as s; s.parser(); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_skymap_and_neutrinos_commands(tmp_path, capsys):
    fits = tmp_path / "S1.fits.gz"
    assert main(["skymap", str(fits), "--seed", "1", "--ra", "120", "--dec", "-30",
                 "--sigma", "2", "--gps", "1240215503", "--objid", "S1", "--max-order", "7"]) == 0  # fmt: skip
    m = read_sky_map(fits)
    assert m.is_moc and m.max_order == 7 and m.meta["objid"] == "S1"
    assert m.area90() == pytest.approx(np.pi * (2.146 * 2) ** 2, rel=0.05)

    nu = tmp_path / "nu.json"
    assert main(["neutrinos", str(nu), "--seed", "2", "--inject-from", str(fits)]) == 0
    nl = NeutrinoList.read(nu)
    assert list(nl.type).count("injected") == 1
    t_mjd = 58598.345891  # 1240215503 GPS
    assert np.all(np.abs(nl.dt_seconds(t_mjd)) <= 500.5)

    nu2 = tmp_path / "nu2.json"
    assert main(["neutrinos", str(nu2), "--seed", "2", "--mjd", "58598.0"]) == 0
    assert main(["neutrinos", str(nu2) + "x", "--seed", "2", "--mjd", "58598.0"]) == 0
    assert nu2.read_text() == Path(str(nu2) + "x").read_text()  # seed reproduces

    assert main(["neutrinos", str(tmp_path / "n3.json")]) == 1
    assert "--gps or --mjd" in capsys.readouterr().err


def test_examples_command(tmp_path):
    out = tmp_path / "ex"
    args = ["examples", str(out), "--seed", "5", "--n-events", "3", "--n-background", "2"]
    assert main([*args, "--max-order", "6"]) == 0
    graceids = (out / "graceids.txt").read_text().split()
    names = (out / "neutrinos.txt").read_text().split()
    assert len(graceids) == 3 and names == ["bg-00", "bg-01"] + [f"inj-{g}" for g in graceids]
    # one GW time for all, so any map pairs with any list
    times = {json.loads((out / "events" / g / "skymap_info.json").read_text())["event_time_iso"]
             for g in graceids}  # fmt: skip
    assert len(times) == 1
    for g in graceids:
        assert g[0] == "S" and g[1:7].isdigit() and g[7:].isalpha()
        info = json.loads((out / "events" / g / "skymap_info.json").read_text())
        assert info["graceid"] == g
        m = read_sky_map(out / "events" / g / "lvc_skymap.fits")
        assert m.is_moc and m.max_order <= 6 and m.meta["objid"] == g
    for name in names:
        NeutrinoList.read(out / "neutrinos" / f"{name}.json")
    assert "--seed 5 --n-events 3" in (out / "README.md").read_text()


def test_shipped_examples_are_consistent():
    graceids = (EXAMPLES / "graceids.txt").read_text().split()
    names = (EXAMPLES / "neutrinos.txt").read_text().split()
    assert len(graceids) == 8 and len(names) == 24
    assert "llama sim examples" in (EXAMPLES / "README.md").read_text()
    total = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert total < 3e6
    for g in graceids:
        m = read_sky_map(EXAMPLES / "events" / g / "lvc_skymap.fits")
        assert m.max_order <= 8 and m.has_distance
    inj = [
        NeutrinoList.read(EXAMPLES / "neutrinos" / f"{n}.json")
        for n in names
        if n.startswith("inj-")
    ]
    assert len(inj) == 8 and all("injected" in list(nl.type) for nl in inj)


def test_shipped_examples_regenerate_identically(tmp_path):
    """The committed set is what the documented command writes (to float round-off)."""
    out = tmp_path / "examples"
    assert main(["examples", str(out), "--seed", str(EXAMPLES_SEED)]) == 0
    for name in ("graceids.txt", "neutrinos.txt"):
        assert (out / name).read_text() == (EXAMPLES / name).read_text()
    for g in (EXAMPLES / "graceids.txt").read_text().split():
        ours, theirs = out / "events" / g, EXAMPLES / "events" / g
        a = json.loads((ours / "skymap_info.json").read_text())
        b = json.loads((theirs / "skymap_info.json").read_text())
        assert a == b
        ma, mb = read_sky_map(ours / "lvc_skymap.fits"), read_sky_map(theirs / "lvc_skymap.fits")
        np.testing.assert_array_equal(ma.uniq, mb.uniq)
        np.testing.assert_allclose(ma.probdensity, mb.probdensity, rtol=1e-10)
    for n in (EXAMPLES / "neutrinos.txt").read_text().split():
        a = NeutrinoList.read(out / "neutrinos" / f"{n}.json")
        b = NeutrinoList.read(EXAMPLES / "neutrinos" / f"{n}.json")
        assert len(a) == len(b)
        for col in ("mjd", "ra", "dec", "sigma", "energy"):
            np.testing.assert_allclose(getattr(a, col), getattr(b, col), rtol=1e-10)
