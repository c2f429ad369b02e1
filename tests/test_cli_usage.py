"""``llama batch`` run with nothing to do, and what ``--random`` draws (issue 10, item 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from llama.batch.sweep import random_vectors
from llama.cli import batch

EXAMPLES = Path(__file__).resolve().parent.parent / "llama" / "examples"


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_no_arguments_prints_usage_and_runs_nothing(tmp_path):
    # a real process: no -D, so the refusal must come before the release check
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    out = subprocess.run(
        [sys.executable, "-m", "llama.cli", "batch"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert out.stderr.startswith("usage: llama batch")
    assert "llama batch: error: no arguments: give the params (NAME=FILE" in out.stderr
    assert "--eventdir DIR" in out.stderr and "Traceback" not in out.stderr
    assert "events:" not in out.stderr  # no "1 events: 1 done" summary
    assert _tree(tmp_path) == []  # not even a log file


def test_a_run_that_keeps_nothing_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = batch.main(["-D", "-l", "/dev/null", "-f", "SkymapInfo", "--flags"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "llama batch: error: nothing would be kept" in err
    assert "give --eventdir DIR, --put FILE=PATH and/or --results FILE" in err
    assert _tree(tmp_path) == []
    # the same run with somewhere to keep the event goes ahead
    code = batch.main(["-D", "-l", "/dev/null", "-v", "none", "-f", "SkymapInfo", "--flags",
                       "--eventdir", str(tmp_path / "ev")])  # fmt: skip
    assert code == 0 and (tmp_path / "ev" / "FLAGS.json").exists()


def test_random_draws_are_with_replacement_as_the_help_says():
    """--help promises M(1-(1-1/M)^N) distinct events for N draws over M combinations."""
    graceids = (EXAMPLES / "graceids.txt").read_text().split()
    lists = (EXAMPLES / "neutrinos.txt").read_text().split()
    params = {"graceid": graceids, "neutrinos": lists}
    m, n = len(graceids) * len(lists), 100
    distinct = [
        len({tuple(v.values()) for v in random_vectors(params, n, seed)}) for seed in range(100)
    ]
    expected = m * (1 - (1 - 1 / m) ** n)  # 78.1 for the examples
    # mean of 100 runs: standard error ~0.33, so 1.5 is over 4 sigma
    assert abs(np.mean(distinct) - expected) < 1.5
    assert max(distinct) < n  # draws repeat: never N distinct here
    assert len({tuple(v.values()) for v in random_vectors(params, n, 1)}) == 84  # README's seed
