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
