"""Packaging: conda-env.yml in step with pyproject.toml; every command's --help is instant."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from llama.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
# pip names that conda-forge spells differently
CONDA_NAME = {"dask[array]": "dask"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req.strip())
    assert m, req
    return CONDA_NAME.get(m.group(1).lower(), m.group(1).lower()), m.group(2).replace(" ", "")


def test_conda_env_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = dict(_split(r) for r in project["dependencies"])
    text = (ROOT / "conda-env.yml").read_text().split("dependencies:", 1)[1]
    conda_lines = [
        line.strip()[2:]
        for line in text.splitlines()
        if line.startswith("  - ")  # top-level entries only, not the pip: sub-list
    ]
    conda = dict(_split(r) for r in conda_lines if not r.startswith(("python", "pip")))
    assert conda == pip


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command_is_instant(command):
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "llama.cli", command, "--help"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert f"llama {command}" in out.stdout
    # heavy libraries are imported inside main(), never for --help
    probe = subprocess.run(
        [sys.executable, "-c",
         f"import sys; from llama.cli import {command} as m; m.parser(); "
         "print(sorted(k for k in ('numpy','dask','healpy','astropy','matplotlib','xarray','numba') if k in sys.modules))"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr
    assert elapsed < 10  # generous: a cold interpreter on a loaded CI machine


def test_top_level_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "llama.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


def _help_texts(command: str) -> dict[str, str]:
    """``--help`` of a command and of each of its subcommands, by command line."""
    texts = {}
    out = subprocess.run(
        [sys.executable, "-m", "llama.cli", command, "--help"], capture_output=True, text=True
    )
    texts[f"llama {command} --help"] = out.stdout
    choices = re.search(r"\{([a-z,]+)\}", out.stdout.split("\n\n")[0])
    if command != "batch" and choices:  # batch's {...} are pipeline names, not subcommands
        for sub in choices.group(1).split(","):
            out = subprocess.run(
                [sys.executable, "-m", "llama.cli", command, sub, "--help"],
                capture_output=True, text=True,
            )  # fmt: skip
            texts[f"llama {command} {sub} --help"] = out.stdout
    return texts


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_no_markup(command):
    # argparse prints help as written: reST markup would reach the user raw
    texts = _help_texts(command)
    assert len(texts) >= (1 if command in ("batch", "warm") else 3)  # no subcommands
    for where, text in texts.items():
        assert text.startswith("usage: llama"), where
        for markup in ("``", ":mod:", ":func:", ":class:", ":py:"):
            assert markup not in text, f"{where} shows {markup!r}"


@pytest.mark.parametrize("command", [None, *sorted(COMMANDS)])
def test_version_of_every_command(command):
    from llama.version import __version__

    for flag in ("--version", "-V"):
        argv = [flag] if command is None else [command, flag]
        out = subprocess.run(
            [sys.executable, "-m", "llama.cli", *argv], capture_output=True, text=True
        )
        assert (out.returncode, out.stdout, out.stderr) == (0, __version__ + "\n", ""), argv
