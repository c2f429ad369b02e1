"""The notebooks run top to bottom (committed without outputs, executed here).

Each notebook reads its sizes from ``LLAMA_NB_*`` environment variables (defaults: a
real study); CI runs them on a few events with few background trials.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    # CI sizes: a 2 x 2 grid with 2 injections per cell, 2 maps x 3 background lists
    small = {
        "LLAMA_N_TRIALS": "200",
        "LLAMA_NB_AREAS": "10,300",
        "LLAMA_NB_SIGMAS": "0.5,3",
        "LLAMA_NB_INJECTIONS": "2",
        "LLAMA_NB_EVENTS": "2",
        "LLAMA_NB_BACKGROUND": "3",
        "LLAMA_NB_MAPS": "2",
        "MPLBACKEND": "Agg",
    }
    for name, value in small.items():
        monkeypatch.setenv(name, value)
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, "\n".join(f"{e.ename}: {e.evalue}" for e in errors)
    # every figure the notebook draws reaches the page
    for cell in notebook.cells:
        if "Figure(" in cell.source:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
