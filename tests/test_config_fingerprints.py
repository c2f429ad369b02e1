"""analysis_fingerprints (FileHandler.settings): the config file looked up once for all
options, the same values as analysis_fingerprint one by one, and a file-valued option
rebuilt in place still changes its fingerprint."""

from __future__ import annotations

import json
import os

from llama import config
from llama.config import ANALYSIS_OPTIONS, analysis_fingerprint, analysis_fingerprints
from llama.handlers.coinc import CoincSignificanceI3Lvc


def test_the_same_fingerprints_as_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "llama").mkdir(parents=True)
    table = tmp_path / "table.npz"
    table.write_bytes(b"x" * 10)
    (tmp_path / "xdg" / "llama" / "config.json").write_text(
        json.dumps({"psf": "vmf", "background_table": str(table), "n_trials": "77"})
    )
    monkeypatch.setenv("LLAMA_N_TRIALS", "500")  # the environment over the file
    monkeypatch.setenv("LLAMA_SIGNAL_TABLES", str(tmp_path / "missing.npz"))
    names = tuple(ANALYSIS_OPTIONS)
    got = analysis_fingerprints(names)
    assert got == {name: analysis_fingerprint(name) for name in names}
    assert got["psf"] == "vmf" and got["n_trials"] == "500"
    assert got["signal_tables"] == str(tmp_path / "missing.npz")
    assert got["background_table"].startswith(f"{table} (10 B, mtime_ns ")
    assert CoincSignificanceI3Lvc.settings() == got


def test_a_table_rebuilt_in_place_changes_the_fingerprint(tmp_path, monkeypatch):
    table = tmp_path / "table.npz"
    table.write_bytes(b"x" * 10)
    monkeypatch.setenv("LLAMA_BACKGROUND_TABLE", str(table))
    before = analysis_fingerprints(["background_table", "psf"])
    st = table.stat()
    table.write_bytes(b"y" * 10)
    os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    after = analysis_fingerprints(["background_table", "psf"])
    assert after["background_table"] != before["background_table"]
    assert after["psf"] == before["psf"]
    table.write_bytes(b"z" * 11)
    assert "(11 B," in analysis_fingerprints(["background_table"])["background_table"]


def test_a_damaged_config_file_is_as_none(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "bad"))
    (tmp_path / "bad" / "llama").mkdir(parents=True)
    (tmp_path / "bad" / "llama" / "config.json").write_text("{not json")
    config._file_config.cache_clear()
    assert (
        analysis_fingerprints(["psf"])
        == {"psf": analysis_fingerprint("psf")}
        == {"psf": "gaussian"}
    )
