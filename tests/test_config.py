"""The configuration file's place and the analysis options read through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama import config


def test_config_path_follows_the_environment_each_call(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_path() == tmp_path / "xdg" / "llama" / "config.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.config_path() == tmp_path / "home" / ".config" / "llama" / "config.json"
    monkeypatch.setenv("HOME", str(tmp_path / "other"))
    assert config.config_path() == Path.home() / ".config" / "llama" / "config.json"
    assert config.config_path() == tmp_path / "other" / ".config" / "llama" / "config.json"
    monkeypatch.setenv("XDG_CONFIG_HOME", "")  # empty: as unset
    assert config.config_path().parent.parent == tmp_path / "other" / ".config"


def test_options_from_the_file_of_the_current_place(tmp_path, monkeypatch):
    for name, psf in (("a", "vmf"), ("b", "gaussian")):
        (tmp_path / name / "llama").mkdir(parents=True)
        (tmp_path / name / "llama" / "config.json").write_text(json.dumps({"psf": psf}))
    monkeypatch.delenv("LLAMA_PSF", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "a"))
    assert config.analysis_option("psf") == "vmf"
    assert config.analysis_fingerprint("psf") == "vmf"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "b"))
    assert config.analysis_option("psf") == "gaussian"
    monkeypatch.setenv("LLAMA_PSF", "vmf")  # the environment wins
    assert config.analysis_option("psf") == "vmf"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    monkeypatch.delenv("LLAMA_PSF")
    assert config.analysis_option("psf") == "gaussian"  # no file: the default


def test_a_bad_option_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("LLAMA_PSF", "cauchy")
    with pytest.raises(ValueError, match="LLAMA_PSF='cauchy' is not allowed"):
        config.analysis_option("psf")
