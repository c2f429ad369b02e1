"""``llama batch --results NAME.zarr``: written as events finish, readable while the batch
runs, kept through ``kill -9``, completed without duplicates by the same command; the
same store on S3 (a real moto server on loopback) and the netCDF file written at the end.

Each cell of the store is checked against the event directory it names (its own
``skymap_info.json``), not against values computed here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from llama.cli import batch
from llama.results import SweepLayout, open_results, state_names
from llama.results_schema import state_code
from llama.results_zarr import ZarrResults

DONE, UP_TO_DATE, NOT_RUN = state_code("done"), state_code("up to date"), state_code("not run")


def _ids(tmp_path: Path, n: int) -> Path:
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"S{i:05d}" for i in range(n)) + "\n")
    # each event's skymap_info.json: one template, filled with its graceid (--format)
    (tmp_path / "info.json").write_text('{{"graceid": "{graceid}"}}')
    return ids


def _source(tmp_path: Path) -> list[str]:
    return ["--get", f"skymap_info.json={tmp_path / 'info.json'}", "--format", "skymap_info.json"]


def _command(tmp_path: Path, ids: Path, results: str) -> list[str]:
    return [sys.executable, "-m", "llama.cli", "batch", "-D", "-l", str(tmp_path / "log"),
            f"graceid={ids}", "-f", "SkymapInfo", "--flags", "--jobs", "1", *_source(tmp_path),
            "--eventdir", str(tmp_path / "ev" / "{graceid}"), "--results", results]  # fmt: skip


def _check_cells_match_their_events(ds: xr.Dataset, tmp_path: Path) -> None:
    """Every finished cell names its own event directory, which holds that event."""
    finished = np.flatnonzero(ds.state.values != NOT_RUN)
    for i in finished:
        graceid = str(ds.graceid.values[i])
        directory = Path(str(ds.directory.values[i]))
        assert directory == tmp_path / "ev" / graceid
        info = json.loads((directory / "skymap_info.json").read_text())
        assert info["graceid"] == graceid


def test_kill_9_keeps_what_finished_and_the_same_command_fills_the_holes(tmp_path):
    n = 3000  # long enough (seconds) to be killed mid-run on a fast idle machine too
    ids = _ids(tmp_path, n)
    store = tmp_path / "results.zarr"
    cmd = _command(tmp_path, ids, str(store))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, reads = 0, 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and seen < 20:
            time.sleep(0.2)
            if not (store / ".zmetadata").exists():
                continue
            # read while the batch writes: a consistent Dataset every time
            ds = xr.open_zarr(store)
            assert dict(ds.sizes) == {"graceid": n}
            done = int((ds.state.values == DONE).sum())
            assert done >= seen  # nothing finished is ever lost
            seen, reads = done, reads + 1
        assert proc.poll() is None, "the batch ended before it could be killed; make it longer"
        assert seen >= 20, proc.stderr.read() if proc.poll() is not None else "too slow"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    killed = xr.open_zarr(store).load()
    kept = killed.state.values != NOT_RUN
    assert kept.sum() >= seen and kept.sum() < n  # the finished ones, and holes
    assert set(np.unique(killed.state.values)) <= {NOT_RUN, DONE}
    _check_cells_match_their_events(killed, tmp_path)
    assert (killed.eventid.values[~kept] == "").all()

    # the same command again: the holes are run, the rest is up to date, each once
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    ds = open_results(store).load()
    assert (
        dict(ds.sizes) == {"graceid": n} and ds.graceid.values.tolist() == ids.read_text().split()
    )
    assert (ds.state.values != NOT_RUN).all()
    # what finished before the kill is up to date now, not run twice
    assert (ds.state.values[kept] == UP_TO_DATE).all()
    done = int((ds.state.values == DONE).sum())
    assert f"{n} events: {done} done, {n - done} up to date" in again.stdout
    assert len(set(ds.directory.values.tolist())) == n  # one cell per event directory
    _check_cells_match_their_events(ds, tmp_path)


def test_zarr_results_on_s3_and_netcdf_at_the_end(tmp_path, s3, capsys):
    ids = _ids(tmp_path, 4)
    url = f"s3://{s3}/campaign/results.zarr"
    base = ["-D", "-l", "/dev/null", f"graceid={ids}", "-f", "SkymapInfo", "--flags",
            *_source(tmp_path), "--eventdir", str(tmp_path / "ev" / "{graceid}")]  # fmt: skip
    assert batch.main([*base, "--results", url]) == 0, capsys.readouterr().err
    ds = open_results(url).load()  # the endpoint comes from AWS_ENDPOINT_URL
    assert ds.graceid.values.tolist() == ids.read_text().split()
    assert state_names(ds.state).values.tolist() == ["done"] * 4
    _check_cells_match_their_events(ds, tmp_path)
    # the same store again: the same cells, now up to date (no appended duplicates)
    assert batch.main([*base, "--results", url]) == 0
    again = open_results(url).load()
    assert dict(again.sizes) == {"graceid": 4}
    assert state_names(again.state).values.tolist() == ["up to date"] * 4
    # --results NAME.nc: the same labelled arrays, written once at the end
    nc = tmp_path / "results.nc"
    assert batch.main([*base, "--results", str(nc)]) == 0
    local = open_results(nc)
    assert local.graceid.values.tolist() == ds.graceid.values.tolist()
    assert local.directory.values.tolist() == ds.directory.values.tolist()
    capsys.readouterr()


def test_a_store_of_another_sweep_is_refused(tmp_path, capsys):
    store = tmp_path / "r.zarr"
    ZarrResults(store, SweepLayout({"graceid": ("S1", "S2")})).close()
    ids = _ids(tmp_path, 3)
    code = batch.main(["-D", "-l", "/dev/null", f"graceid={ids}", "-f", "SkymapInfo",
                       "--flags", "--eventdir", str(tmp_path / "ev" / "{graceid}"),
                       "--results", str(store)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "holds another sweep" in err and "name another --results store" in err
    assert not (tmp_path / "ev").exists()  # refused before any event ran


@pytest.mark.parametrize("layout", [
    SweepLayout({"g": ("S1", "S2", "S3")}),
    SweepLayout({"g": ("S1", "S2", "S3")}, random=5, seed=2),
    SweepLayout({"g": ("S1", "S2", "S3")}, random=-1, seed=2),
], ids=["grid", "draws", "endless"])  # fmt: skip
def test_store_grows_with_new_records_and_longer_neutrino_lists(layout, tmp_path):
    from llama.batch.runner import EventOutcome
    from llama.results_schema import SIGNIFICANCE_FILE

    def event(index: int, graceid: str, n_nu: int, **records) -> EventOutcome:
        directory = tmp_path / f"{graceid}-{index}"
        directory.mkdir()
        triggers = [{"ra": 10.0 * k, "dec": -float(k), "p_value": 0.5} for k in range(n_nu)]
        (directory / SIGNIFICANCE_FILE).write_text(
            json.dumps({"outputs": {"neutrino_gw_triggers": triggers}})
        )
        return EventOutcome(index, directory.name, str(directory), {"g": graceid}, "done",
                            records=records)  # fmt: skip

    url = tmp_path / "r.zarr"
    store = ZarrResults(url, layout, flush_s=0)
    store(event(0, "S1", 2, snr=9.0))
    first = open_results(url)
    assert first.sizes["neutrino"] == 2 and "population" not in first
    store(event(2, "S3", 5, snr=11.0, population="bns"))  # a new record, longer list
    store.close()
    ds = open_results(url).load()
    assert ds.sizes["neutrino"] == 5
    at = {"grid": {0: {"g": "S1"}, 2: {"g": "S3"}}}.get(layout.kind)
    cells = [ds.isel(draw=i) for i in (0, 2)] if at is None else [ds.sel(**at[i]) for i in (0, 2)]
    assert [float(c.snr) for c in cells] == [9.0, 11.0]
    assert [str(c.population.values) for c in cells] == ["", "bns"]
    assert [int(c.neutrino_count) for c in cells] == [2, 5]
    np.testing.assert_array_equal(cells[0].neutrino_ra.values[:2], [0.0, 10.0])
    assert np.isnan(cells[0].neutrino_ra.values[2:]).all()  # padding
    np.testing.assert_array_equal(cells[1].neutrino_dec.values, [0.0, -1.0, -2.0, -3.0, -4.0])
    if layout.kind == "draw" and layout.random < 0:
        assert ds.g.values.tolist() == ["S1", "", "S3"]  # endless: the draws made so far


def test_two_runs_on_one_store_keep_each_others_events(tmp_path):
    """An event another run held ("skipped" here) keeps the values that run wrote."""
    from llama.batch.runner import EventOutcome

    layout = SweepLayout({"g": ("S1", "S2", "S3")})
    url = tmp_path / "r.zarr"
    first, second = ZarrResults(url, layout, flush_s=0), ZarrResults(url, layout, flush_s=0)
    first(EventOutcome(1, "S2", "/ev/S2", {"g": "S2"}, "done", records={"snr": 8.0}))
    second(EventOutcome(1, "S2", "/ev/S2", {"g": "S2"}, "skipped", error="in use"))
    second(EventOutcome(2, "S3", "/ev/S3", {"g": "S3"}, "done", records={"snr": 9.0}))
    second(EventOutcome(0, "S1", "/ev/S1", {"g": "S1"}, "skipped", error="in use"))
    first.close()
    second.close()
    ds = open_results(url).load()
    assert state_names(ds.state).values.tolist() == ["skipped", "done", "done"]
    np.testing.assert_array_equal(ds.snr.values, [np.nan, 8.0, 9.0])
    assert ds.error.values.tolist() == ["in use", "", ""]
