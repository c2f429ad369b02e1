"""Background tables (llama/science/pvalue.py, ``llama background``): build, show, lookup.

The results Dataset is a real one: event directories with the files the handlers read,
their ``record()`` rows (SkymapInfo, CoincSignificanceI3Lvc) and
``llama.results.write_results``, the writer of ``llama batch --results``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from llama.batch.runner import EventOutcome
from llama.cli import background as cli
from llama.event import Event
from llama.handlers.coinc import CoincSignificanceI3Lvc, population
from llama.handlers.gw import SkymapInfo
from llama.results import SweepLayout, open_results, write_results
from llama.results_zarr import ZarrResults
from llama.science.background_table import (
    background_odds,
    build_background_table,
    make_background_table,
    open_background_table,
    select_background_key,
    table_key,
    table_pvalue,
    table_significance,
    write_background_table,
)
from llama.science.pvalue import TIE_CONVENTION

EXAMPLES = Path(__file__).resolve().parent.parent / "llama" / "examples"
GRACEIDS = (EXAMPLES / "graceids.txt").read_text().split()


def _odds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Event statistics with O3's atom: 40% exactly 0 (no neutrino near the map)."""
    return np.where(rng.uniform(size=n) < 0.4, 0.0, rng.lognormal(0.0, 2.0, n))


def _outcome(root: Path, index: int, graceid: str, odds: float | None) -> EventOutcome:
    """One event as a batch run leaves it: files, then the handlers' records."""
    ev = Event(root / f"{graceid}-{index:03d}")
    shutil.copy(EXAMPLES / "events" / graceid / "skymap_info.json", ev.path("skymap_info.json"))
    records = SkymapInfo.record(ev)
    if odds is not None:
        info = json.loads(ev.path("skymap_info.json").read_text())
        significance = {
            "inputs": {"skymap_info": info, "population": population(info["p_astro"])},
            "outputs": {"neutrino_gw_combined": {"odds_ratio": odds, "p_value": 0.5}},
        }
        ev.path(CoincSignificanceI3Lvc.FILENAME).write_text(json.dumps(significance))
        records.update(CoincSignificanceI3Lvc.record(ev))
    vector = {"graceid": graceid}
    return EventOutcome(index, ev.eventid, str(ev.directory), vector, "done", records=records)


#: The campaign's sweep: graceid x 16 repeats (128 cells, 121 of them run).
LAYOUT = SweepLayout({"graceid": GRACEIDS, "repeat": [f"{j:02d}" for j in range(16)]})


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """(flat results path, expected key -> sorted odds, {layout: path}, outcomes) for 121 events,
    3 of them unusable, written in every layout ``llama batch --results`` has made: the
    flat table of older runs, and today's labelled arrays as netCDF and as zarr."""
    root = tmp_path_factory.mktemp("campaign")
    rng = np.random.default_rng(7)
    values = _odds(rng, 120)
    outcomes = [_outcome(root, k, GRACEIDS[k // 16], float(v)) for k, v in enumerate(values)]
    expected: dict[str, list[float]] = {}
    for o in outcomes:
        key = (
            f"{o.records['population']}/O3/{','.join(sorted(o.records['instruments'].split(',')))}"
        )
        expected.setdefault(key, []).append(o.records["odds_ratio"])
    outcomes[5].state, outcomes[9].state = "failed", "failed"  # skipped: not counted
    for k in (5, 9):
        key = f"{outcomes[k].records['population']}/O3/"
        key += ",".join(sorted(outcomes[k].records["instruments"].split(",")))
        expected[key].remove(outcomes[k].records["odds_ratio"])
    for o in outcomes:  # CoincSignificanceSubthresholdI3Lvc's record beside it
        o.records["subthreshold_odds_ratio"] = o.records["odds_ratio"] / 10.0
        o.records["subthreshold_population"] = o.records["population"]
    outcomes.append(_outcome(root, 120, GRACEIDS[7], None))  # done, but no statistic
    for o in outcomes:
        o.vector["repeat"] = f"{o.index % 16:02d}"
    path = write_results(outcomes, root / "llama_batch_results.nc", seed=7)
    layouts = {"labelled netCDF": write_results(outcomes, root / "labelled.nc", layout=LAYOUT)}
    store = ZarrResults(root / "results.zarr", LAYOUT, flush_s=0)
    for o in outcomes:
        store(o)
    store.close()
    layouts["zarr"] = root / "results.zarr"
    return path, {k: np.sort(v) for k, v in expected.items()}, layouts, outcomes


def _build(campaign, tmp_path, *extra) -> tuple[int, Path]:
    table = tmp_path / "background.nc"
    return cli.main(["build", str(campaign[0]), "-o", str(table), *extra]), table


def test_build_writes_a_table_plain_xarray_opens(campaign, tmp_path, capsys):
    code, table = _build(campaign, tmp_path)
    out, err = capsys.readouterr()
    assert code == 0, err
    # Unusable events are skipped and said so, with the reasons.
    assert "WARNING: skipped 3 of 121 events (failed: 2, no odds_ratio: 1)" in err
    ds = xr.open_dataset(table)  # no engine, no llama: any xarray user
    assert sorted(map(str, ds.key.values)) == sorted(campaign[1])
    for key, odds in campaign[1].items():
        row = ds.sel(key=key)
        assert int(row.n_events) == odds.size
        np.testing.assert_array_equal(row.odds.dropna("rank").values, odds)
        assert str(row.sensitivity.values) == "O3" and str(row.statistic.values) == "odds_ratio"
        assert str(row.sources.values) == str(campaign[0].resolve())
        assert int(row.n_read) == 121 and int(row.n_skipped) == 3
        assert f"{key}: {odds.size} events" in out
    assert ds.attrs["convention"] == TIE_CONVENTION
    ds.close()


@pytest.mark.parametrize("layout", ["labelled netCDF", "zarr"])
def test_build_reads_todays_results_layouts(campaign, tmp_path, capsys, layout):
    """The labelled arrays of issue 10 (netCDF at the end, zarr as events finish) give
    the table the flat file gives: same keys, same sorted odds, same skipped events."""
    source = campaign[2][layout]
    assert "llama_layout" in open_results(source).attrs  # really the labelled layout
    table = tmp_path / "background.nc"
    assert cli.main(["build", str(source), "-o", str(table)]) == 0
    assert (
        "WARNING: skipped 3 of 121 events (failed: 2, no odds_ratio: 1)" in capsys.readouterr().err
    )
    ds = xr.open_dataset(table)
    assert sorted(map(str, ds.key.values)) == sorted(campaign[1])
    for key, odds in campaign[1].items():
        np.testing.assert_array_equal(ds.sel(key=key).odds.dropna("rank").values, odds)
        assert str(ds.sel(key=key).sources.values) == str(Path(source).resolve())
    ds.close()


def test_build_reads_a_zarr_store_on_s3(campaign, tmp_path, s3, capsys):
    """A campaign run with ``--results s3://.../NAME.zarr`` (moto on loopback; the
    endpoint from AWS_ENDPOINT_URL) builds the same table; a netCDF URL is refused."""
    url = f"s3://{s3}/campaign/results.zarr"
    store = ZarrResults(url, LAYOUT, flush_s=0)  # as `llama batch --results URL` writes
    for outcome in campaign[3]:
        store(outcome)
    store.close()
    table = tmp_path / "background.nc"
    assert cli.main(["build", url, "-o", str(table)]) == 0, capsys.readouterr().err
    ds = open_background_table(table)
    for key, odds in campaign[1].items():
        np.testing.assert_array_equal(background_odds(ds, key), odds)
        assert str(ds.sel(key=key).sources.values) == url
    assert cli.main(["build", f"s3://{s3}/campaign/results.nc", "-o", str(table)]) == 1
    assert "only zarr stores (NAME.zarr) are read from URLs" in capsys.readouterr().err


def test_both_statistics_in_one_table(campaign, tmp_path, capsys):
    """The sub-threshold statistic's keys go beside the OPA ones in the same file (one
    LLAMA_BACKGROUND_TABLE serves both handlers), each key suffixed '/subthreshold'."""
    code, table = _build(campaign, tmp_path)
    assert code == 0
    code, _ = _build(campaign, tmp_path, "--append", "--statistic", "subthreshold_odds_ratio")
    assert code == 0, capsys.readouterr().err
    ds = open_background_table(table)
    keys = set(map(str, ds.key.values))
    assert keys == set(campaign[1]) | {f"{k}/subthreshold" for k in campaign[1]}
    for key, odds in campaign[1].items():
        np.testing.assert_allclose(background_odds(ds, f"{key}/subthreshold"), odds / 10.0)
        np.testing.assert_array_equal(background_odds(ds, key), odds)
        assert str(ds.statistic.sel(key=f"{key}/subthreshold").values) == "subthreshold_odds_ratio"
    assert cli.main(["show", str(table)]) == 0
    assert "/subthreshold " in capsys.readouterr().out


def test_show_prints_keys_counts_and_quantiles(campaign, tmp_path, capsys):
    _build(campaign, tmp_path)
    capsys.readouterr()
    assert cli.main(["show", str(tmp_path / "background.nc")]) == 0
    out = capsys.readouterr().out
    assert f"{len(campaign[1])} keys" in out and "q50" in out and "q99" in out
    for key, odds in campaign[1].items():
        line = next(x for x in out.splitlines() if x.startswith(key + " "))
        fields = line.split()
        assert int(fields[1]) == odds.size
        assert fields[2] == f"{np.mean(odds == 0):.0%}"  # the atom at 0, i.e. the ties
        assert float(fields[3]) == pytest.approx(np.quantile(odds, 0.5), rel=1e-2, abs=0.0)


def test_sensitivities_append_and_are_chosen(campaign, tmp_path, capsys):
    _build(campaign, tmp_path, "--population", "bbh")
    code, table = _build(campaign, tmp_path, "--sensitivity", "design", "--append")
    assert code == 0
    ds = open_background_table(table)
    assert {str(s) for s in ds.sensitivity.values} == {"O3", "design"}
    # Appending a key that is there already is refused, and the file is kept.
    assert _build(campaign, tmp_path, "--sensitivity", "design", "--append")[0] == 1
    assert "already has key(s)" in capsys.readouterr().err
    key = next(k for k in campaign[1] if k.startswith("bbh/"))
    _, _, net = key.split("/")
    with pytest.raises(ValueError, match="holds sensitivities O3, design: name one"):
        select_background_key(ds, "bbh", net)
    assert select_background_key(ds, "bbh", net.split(","), "design") == f"bbh/design/{net}"
    with pytest.raises(ValueError, match=r"no key of .* matches .*keys available: bbh/O3/"):
        select_background_key(ds, "bns", net, "O3")  # only bbh was built for O3


def test_lookup_event_and_neutrinos_in_the_event_statistics(campaign, tmp_path):
    _, table = _build(campaign, tmp_path)
    key, odds = max(campaign[1].items(), key=lambda kv: kv[1].size)
    pop, _, net = key.split("/")
    observed, per_nu = float(np.quantile(odds, 0.8)), np.array([0.0, odds[-1], 1e9])
    r = table_significance(observed, per_nu, table, pop, net.split(",")[::-1], seed=11)
    n = odds.size
    assert r.method["key"] == key and r.method["n_background"] == n
    assert r.method["path"] == str(table) and r.method["seed"] == 11
    assert r.method["method"] == "background_table" and r.method["convention"] == TIE_CONVENTION
    # Brute force: K_> and K_= counted directly; p in its tie interval, U = 1 the upper end.
    for x, p, upper in [
        (observed, r.p_value, r.method["p_value_upper"]),
        *zip(per_nu, r.p_values_neutrino, r.method["p_values_neutrino_upper"], strict=True),
    ]:
        greater, equal = np.sum(odds > x), np.sum(odds == x)
        assert upper == pytest.approx((greater + equal + 1) / (n + 1), abs=0.0)
        assert greater / (n + 1) <= p <= upper
    assert r.method["n_equal"] == np.sum(odds == observed)
    # A neutrino at O_i = 0 ties with every zero of the table: p spread, not stuck at 1.
    assert r.method["p_values_neutrino_upper"][0] == 1.0 and r.p_values_neutrino[0] < 1.0
    # Same seed, same numbers; another seed, another draw inside the tie interval.
    again = table_significance(observed, per_nu, table, pop, net, seed=11)
    assert again.p_value == r.p_value and list(again.p_values_neutrino) == list(r.p_values_neutrino)
    assert table_significance(observed, per_nu, table, pop, net, seed=12).p_value != r.p_value
    with pytest.raises(ValueError, match="keys available"):
        table_significance(observed, [], table, pop, "G1,K1", seed=1)


def test_one_line_errors(campaign, tmp_path, capsys):
    def err(*argv):
        assert cli.main(list(argv)) == 1
        text = capsys.readouterr().err.strip().splitlines()
        return text[-1]

    missing = tmp_path / "nope.nc"
    assert "results file" in err("build", str(missing), "-o", str(tmp_path / "t.nc"))
    assert f"background table {missing} does not exist" in err("show", str(missing))
    no_odds = tmp_path / "no_odds.nc"
    write_results([EventOutcome(0, "S1", "/tmp/S1", {}, "failed", records={"snr": 9.0})], no_odds)
    msg = err("build", str(no_odds), "-o", str(tmp_path / "t.nc"))
    assert "has no 'odds_ratio' variable" in msg and "1 failed" in msg
    assert "was CoincSignificanceI3Lvc in the pipeline?" in msg
    out = tmp_path / "t.nc"
    msg = err("build", str(no_odds), "-o", str(out), "--statistic", "subthreshold_odds_ratio")
    assert "has no 'subthreshold_odds_ratio' variable" in msg
    assert "was CoincSignificanceSubthresholdI3Lvc (it needs lvalert.json) in the pipeline?" in msg
    msg = err("build", str(campaign[0]), "-o", str(tmp_path / "t.nc"), "--instruments", "G1,K1")
    assert "no usable events for 'G1,K1'" in msg
    assert "is not a background table" in err("show", str(campaign[0]))
    assert not (tmp_path / "t.nc").exists()


def test_older_npz_tables_are_still_read(tmp_path):
    old = tmp_path / "bg.npz"
    build_background_table([3.0, 0.0, 1.0], "bns", "L1,H1", old)
    ds = open_background_table(old)
    assert list(ds.key.values) == ["bns/unspecified/H1,L1"]
    p, method = table_pvalue(1.0, old, population="bns", instruments="H1,L1", seed=0)
    assert method["p_value_upper"] == pytest.approx(3 / 4, abs=0.0) and 1 / 4 <= p <= 3 / 4


def test_table_ties_randomised_uniform_conservative_not(tmp_path):
    # Null: observed and background from one distribution with 40% exactly at 0.
    rng = np.random.default_rng(2025)
    path = tmp_path / "atom.nc"
    build_background_table(_odds(rng, 4000), "bns", "H1,L1", path)
    observed = _odds(rng, 1500)
    p, method = table_pvalue(observed, path, seed=99)
    upper = np.asarray(method["p_value_upper"])
    # Threshold: KS p-value > 1e-3 for the randomised ones (fails about once in 1000
    # for a correct method; this seed is fixed, so the test is deterministic). The
    # conservative ones put the 40% atom at p = 1: KS p-value < 1e-20.
    assert stats.kstest(p, "uniform").pvalue > 1e-3
    assert stats.kstest(upper, "uniform").pvalue < 1e-20
    assert np.mean(upper >= 0.99) > 0.35 and abs(np.mean(p <= 0.5) - 0.5) < 0.04


def test_make_background_table_refuses_bad_entries(tmp_path):
    base = {"population": "bns", "sensitivity": "O3", "instruments": "H1"}
    with pytest.raises(ValueError, match="no background statistics"):
        make_background_table([{**base, "odds": []}])
    with pytest.raises(ValueError, match="must not be NaN"):
        make_background_table([{**base, "odds": [1.0, np.nan]}])
    with pytest.raises(ValueError, match="without '/'"):
        make_background_table([{**base, "sensitivity": "O3/O4", "odds": [1.0]}])
    with pytest.raises(ValueError, match="appears twice"):
        make_background_table([{**base, "odds": [1.0]}, {**base, "odds": [2.0]}])
    # +inf is a statistic (O3 kept it) and sorts last.
    table = make_background_table([{**base, "odds": [np.inf, 1.0]}])
    path = write_background_table(table, tmp_path / "inf.nc")
    assert open_background_table(path).odds.values.tolist() == [[1.0, np.inf]]


def test_handler_names_a_table(tmp_path, monkeypatch):
    """CoincSignificanceI3Lvc with LLAMA_BACKGROUND_TABLE: key from the event, p recorded."""
    from llama.handler import Status
    from llama.pipeline import select_pipeline

    ev = Event(tmp_path / "S190425a-bg-00", flags={"ONLINE": "false"})
    for name in ("skymap_info.json", "lvc_skymap.fits"):
        shutil.copy(EXAMPLES / "events" / "S190425a" / name, ev.path(name))
    shutil.copy(EXAMPLES / "neutrinos" / "bg-00.json", ev.path("icecube_neutrino_list.json"))
    for handler in select_pipeline(with_ancestors=["CoincSignificanceI3Lvc"]):
        if ev.status(handler) is Status.READY and handler is not CoincSignificanceI3Lvc:
            ev.generate(handler)
    info = json.loads(ev.path("skymap_info.json").read_text())
    pop = population(info["p_astro"])
    rng = np.random.default_rng(3)
    table = tmp_path / "bg.nc"
    entries = [
        {"population": p, "sensitivity": s, "instruments": i, "odds": _odds(rng, 500)}
        for p in ("bns", "bbh")
        for s in ("O3", "design")
        for i in (info["instruments"], ["H1", "L1", "V1"])
    ]
    write_background_table(make_background_table(entries), table)
    monkeypatch.setenv("LLAMA_BACKGROUND_TABLE", str(table))
    with pytest.raises(ValueError, match="LLAMA_BACKGROUND_SENSITIVITY"):
        CoincSignificanceI3Lvc(ev).significance()
    monkeypatch.setenv("LLAMA_BACKGROUND_SENSITIVITY", "design")
    data = CoincSignificanceI3Lvc(ev).significance()
    combined = data["outputs"]["neutrino_gw_combined"]
    key = f"{pop}/design/{','.join(sorted(info['instruments']))}"
    assert combined["method"] == "background_table" and combined["key"] == key
    assert combined["path"] == str(table) and combined["n_background"] == 500
    odds = next(
        np.sort(e["odds"])
        for e in entries
        if table_key(e["population"], e["sensitivity"], e["instruments"]) == key
    )
    greater = np.sum(odds > combined["odds_ratio"])
    assert greater / 501 <= combined["p_value"] <= combined["p_value_upper"]
    triggers = data["outputs"]["neutrino_gw_triggers"]
    uppers = combined["p_values_neutrino_upper"]
    for trigger, upper in zip(triggers, uppers, strict=True):
        assert np.sum(odds > trigger["odds_ratio"]) / 501 <= trigger["p_value"] <= upper
    # Re-running gives the same p-values (the tie draws are seeded by the event).
    assert CoincSignificanceI3Lvc(ev).significance()["outputs"] == data["outputs"]
    monkeypatch.setenv("LLAMA_BACKGROUND_SENSITIVITY", "O4")
    with pytest.raises(ValueError, match="keys available"):
        CoincSignificanceI3Lvc(ev).significance()


def test_help_is_instant_and_light():
    out = subprocess.run(
        [sys.executable, "-m", "llama.cli", "background", "build", "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    for option in ("--sensitivity", "--population", "--instruments", "--append", "-o"):
        assert option in out.stdout
