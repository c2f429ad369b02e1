"""The review example's analysis option: ``llama/examples/review.args`` asks for
sequential p-values with ``--analysis trial_stop_after=20``, the README says so, and
``--analysis`` reaches the significance (recorded in its file), is undone after the
run, and refuses bad input with one message.

Runs ``llama.cli.batch.main`` in this process on one example event (its significance
only, ``+f CoincSignificanceI3Lvc``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llama.cli.batch import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "llama" / "examples"


def test_review_args_ask_for_sequential_trials_and_the_readme_says_so() -> None:
    lines = (EXAMPLES / "review.args").read_text().splitlines()
    assert lines[lines.index("--analysis") + 1] == "trial_stop_after=20"
    readme = (ROOT / "README.md").read_text()
    assert "--analysis trial_stop_after=20" in readme
    assert "Stopping early (sequential trials)" in readme


def _argv(tmp_path: Path, *extra: str) -> list[str]:
    (tmp_path / "g.txt").write_text("S190425a\n")
    (tmp_path / "n.txt").write_text("bg-00\n")
    return [
        f"graceid={tmp_path / 'g.txt'}", f"neutrinos={tmp_path / 'n.txt'}",
        "+f", "CoincSignificanceI3Lvc", "--flags", "ONLINE=false",
        "--get",
        f"skymap_info.json={EXAMPLES}/events/{{graceid}}/skymap_info.json",
        f"lvc_skymap.fits={EXAMPLES}/events/{{graceid}}/lvc_skymap.fits",
        f"icecube_neutrino_list.json={EXAMPLES}/neutrinos/{{neutrinos}}.json",
        "--eventdir", str(tmp_path / "run" / "{graceid}-{neutrinos}"),
        "-D", "-l", os.devnull, "-v", "none",
        *extra,
    ]  # fmt: skip


def _found(obj, key: str) -> list:
    """Every value stored under ``key`` anywhere in a JSON document."""
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == key] + [
            x for v in obj.values() for x in _found(v, key)
        ]
    if isinstance(obj, list):
        return [x for v in obj for x in _found(v, key)]
    return []


@pytest.mark.parametrize("scheduler", ["synchronous", "processes"])
def test_analysis_option_reaches_the_significance_and_is_undone(
    tmp_path, monkeypatch, scheduler
) -> None:
    """With --analysis trial_stop_after=20 the background event draws fewer than its
    2,000 trials and its file records h = 20, in this process and in a worker process
    (as review.args runs with --jobs 2); the variable is gone after the run; the same
    command without it makes the file again, with all 2,000 trials (the file records
    the options it was made with)."""
    monkeypatch.delenv("LLAMA_TRIAL_STOP_AFTER", raising=False)
    monkeypatch.setenv("LLAMA_N_TRIALS", "2000")
    out = tmp_path / "run" / "S190425a-bg-00" / "significance_lvc-i3.json"
    run = ("--scheduler", scheduler, "--jobs", "1")
    assert main(_argv(tmp_path, *run, "--analysis", "trial_stop_after=20")) == 0
    sequential = json.loads(out.read_text())
    assert 20 in _found(sequential, "stop_after")
    assert all(n < 2000 for n in _found(sequential, "n_trials_drawn"))
    assert _found(sequential, "n_trials_drawn")
    assert "LLAMA_TRIAL_STOP_AFTER" not in os.environ
    assert main(_argv(tmp_path, *run)) == 0
    full = json.loads(out.read_text())
    assert 20 not in _found(full, "stop_after") and not _found(full, "n_trials_drawn")


def test_analysis_given_twice_sets_both(tmp_path, monkeypatch) -> None:
    """``--analysis A --analysis B`` applies A and B (the second does not replace the
    first)."""
    monkeypatch.delenv("LLAMA_TRIAL_STOP_AFTER", raising=False)
    monkeypatch.delenv("LLAMA_N_TRIALS", raising=False)
    out = tmp_path / "run" / "S190425a-bg-00" / "significance_lvc-i3.json"
    twice = ("--analysis", "n_trials=300", "--analysis", "trial_stop_after=20")
    assert main(_argv(tmp_path, "--scheduler", "synchronous", *twice)) == 0
    made = json.loads(out.read_text())
    assert 20 in _found(made, "stop_after") and 300 in _found(made, "n_trials")


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("trial_stop_after", "NAME=VALUE"),
        ("no_such_option=1", "NAME=VALUE"),
        ("trial_stop_after=twenty", "not an integer"),
        ("trial_stop_after=0", "must be > 0"),
        ("psf=cauchy", "choose one of"),
    ],
)
def test_bad_analysis_options_are_refused_in_one_line(tmp_path, capsys, entry, says) -> None:
    before = dict(os.environ)
    assert main(_argv(tmp_path, "--analysis", entry)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and says in err and entry.split("=")[0] in err
    assert dict(os.environ) == before
    assert not (tmp_path / "run").exists()  # refused before any event ran
