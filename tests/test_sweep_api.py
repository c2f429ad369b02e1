"""``llama.sweep``: one call from Python, the same events and results as ``llama batch``,
a progress display in a real Jupyter kernel, and a real distributed LocalCluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import llama
from llama.batch.sweep import ParamsError, random_vectors
from llama.cli import batch
from llama.results import open_results, state_names

EXAMPLES = Path(llama.__file__).parent / "examples"
INFO = {"skymap_info.json": str(EXAMPLES / "events/{graceid}/skymap_info.json")}


def _info(graceid: str) -> dict:
    return json.loads((EXAMPLES / "events" / graceid / "skymap_info.json").read_text())


def test_sweep_and_llama_batch_make_the_same_events_and_results(tmp_path, capsys):
    ids = EXAMPLES / "graceids.txt"
    nus = EXAMPLES / "neutrinos.txt"
    ds = llama.sweep([f"graceid={ids}", f"neutrinos={nus}"], pipeline=["SkymapInfo"],
                     get=INFO, eventdir=str(tmp_path / "api/{graceid}-{neutrinos}"),
                     random=7, seed=11, flags={}, progress=False)  # fmt: skip
    code = batch.main(["-D", "-l", "/dev/null", f"graceid={ids}", f"neutrinos={nus}",
                       "--random", "7", "--seed", "11", "-f", "SkymapInfo", "--flags",
                       "--get", f"skymap_info.json={INFO['skymap_info.json']}",
                       "--eventdir", str(tmp_path / "cli/{graceid}-{neutrinos}"),
                       "--results", str(tmp_path / "cli.nc")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    cli = open_results(tmp_path / "cli.nc")
    # the draws are those of llama.batch.sweep.random_vectors with the seed, in order
    names = {"graceid": ids.read_text().split(), "neutrinos": nus.read_text().split()}
    drawn = list(random_vectors(names, 7, 11))
    for result in (ds, cli):
        assert dict(result.sizes) == {"draw": 7}
        assert result.graceid.values.tolist() == [v["graceid"] for v in drawn]
        assert result.neutrinos.values.tolist() == [v["neutrinos"] for v in drawn]
        assert result.attrs["seed"] == 11
    # each draw's records are its own map's skymap_info (repeats: up to date)
    assert set(state_names(ds.state).values) <= {"done", "up to date"}
    for i, vector in enumerate(drawn):
        info = _info(vector["graceid"])
        assert float(ds.far[i]) == info["far"] and str(ds.pipeline.values[i]) == info["pipeline"]
        assert str(ds.directory.values[i]).endswith(
            f"api/{vector['graceid']}-{vector['neutrinos']}"
        )
    for name in ("far", "instruments", "event_graceid", "eventid", "pipeline"):
        assert ds[name].values.tolist() == cli[name].values.tolist(), name
    assert state_names(ds.state).values.tolist() == state_names(cli.state).values.tolist()


def test_values_given_as_lists_and_bad_params_are_one_message(tmp_path):
    ds = llama.sweep({"graceid": ["S190425b", "S190425a"]}, pipeline=["SkymapInfo"],
                     get=INFO, eventdir=str(tmp_path / "{graceid}"), flags={}, progress=False)  # fmt: skip
    assert ds.graceid.values.tolist() == ["S190425b", "S190425a"]
    assert float(ds.far.sel(graceid="S190425a")) == _info("S190425a")["far"]
    with pytest.raises(ParamsError, match="params 'graceid': the list of values is empty"):
        llama.sweep({"graceid": []}, pipeline=["SkymapInfo"], progress=False)
    with pytest.raises(ParamsError, match="'grace id' is not a valid name"):
        llama.sweep({"grace id": ["S1"]}, pipeline=["SkymapInfo"], progress=False)


def test_progress_on_a_terminal_is_a_text_bar(tmp_path, capsys):
    llama.sweep({"graceid": ["S190425a", "S190425b", "S190425c"]}, pipeline=["SkymapInfo"],
                get=INFO, eventdir=str(tmp_path / "{graceid}"), flags={})  # fmt: skip
    err = capsys.readouterr().err
    assert "3/3" in err and "event" in err


def test_progress_renders_as_html_in_a_jupyter_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = (
        "import llama\n"
        f"ds = llama.sweep({{'graceid': ['S190425a', 'S190425b', 'S190425c']}},\n"
        f"    pipeline=['SkymapInfo'], get={INFO!r}, eventdir={str(tmp_path / '{graceid}')!r},\n"
        "    flags={}, jobs=1)\n"
        "print(int((ds.state > 0).sum()))"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(html) == 1, outputs  # one display, updated in place
    assert '<progress value="3" max="3"' in html[0] and "3/3 events" in html[0]
    assert [o.text for o in outputs if o.get("name") == "stdout"] == ["3\n"]
    assert not any(o.get("name") == "stderr" for o in outputs)  # no text bar in the kernel


def test_sweep_on_a_distributed_local_cluster_shows_where_to_look(tmp_path, capsys):
    pytest.importorskip("distributed")
    ids = ["S190425a", "S190425b", "S190425c", "S190425d"]
    ds = llama.sweep({"graceid": ids}, pipeline=["SkymapInfo"], get=INFO,
                     eventdir=str(tmp_path / "{graceid}"), flags={}, scheduler="distributed",
                     jobs=2, progress=False)  # fmt: skip
    out = capsys.readouterr().out
    assert "Dask dashboard: http" in out or "Dask scheduler at tcp://127.0.0.1" in out
    assert state_names(ds.state).values.tolist() == ["done"] * 4
    np.testing.assert_array_equal(ds.far.values, [_info(g)["far"] for g in ids])
