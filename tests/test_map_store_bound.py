"""LLAMA_MAP_STORE_MIB: the bound of each process's store of sky maps, from the
environment or the config file, read at the store's first use; a bad value is one
clear message, and `llama batch` refuses it before any work."""

from __future__ import annotations

import json

import numpy as np

import llama.science.skymap as S
from llama.cli import batch
from llama.config import map_store_bytes


def _parsed(seed: int) -> S._Parsed:
    rng = np.random.default_rng(seed)
    density = rng.random(12)
    return S._Parsed(density[None, :], None, 1, "{}")


def test_the_variable_bounds_a_new_store(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no config file
    monkeypatch.setenv("LLAMA_MAP_STORE_MIB", "0")
    store = S._MapStore()
    assert store.max_bytes == 0
    store.keep("a" * 64, _parsed(1))
    assert store.entries == [] and store.held == 0  # 0 keeps nothing
    monkeypatch.setenv("LLAMA_MAP_STORE_MIB", "1.5")
    assert S._MapStore().max_bytes == 3 << 19
    kept = S._MapStore()
    kept.keep("b" * 64, _parsed(2))
    assert [sha for sha, _ in kept.entries] == ["b" * 64]
    # read once: a store keeps the bound it first read
    monkeypatch.setenv("LLAMA_MAP_STORE_MIB", "0")
    assert kept.max_bytes == 3 << 19
    kept.max_bytes = None  # read again
    assert kept.max_bytes == 0


def test_default_and_config_file(monkeypatch, tmp_path):
    monkeypatch.delenv("LLAMA_MAP_STORE_MIB", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    assert map_store_bytes() == S.MAP_STORE_BYTES == 256 << 20
    # (the config file is read once per process and path: written before its first read)
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"map_store_mib": 64}))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert map_store_bytes() == 64 << 20
    monkeypatch.setenv("LLAMA_MAP_STORE_MIB", "8")  # the environment first
    assert map_store_bytes() == 8 << 20


def test_bad_values_name_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv("LLAMA_MAP_STORE_MIB", bad)
        try:
            map_store_bytes()
        except ValueError as err:
            assert str(err) == (
                f"LLAMA_MAP_STORE_MIB={bad!r} is not a size in MiB; "
                "set e.g. 256 (0 keeps no map) or unset it"
            )
        else:
            raise AssertionError(f"{bad!r} accepted")
    monkeypatch.delenv("LLAMA_MAP_STORE_MIB")
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"map_store_mib": "big"}))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    try:
        map_store_bytes()
    except ValueError as err:
        assert str(err).startswith("map_store_mib in ") and "'big' is not a size in MiB" in str(err)
    else:
        raise AssertionError("config file value accepted")


def test_batch_refuses_a_bad_bound_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLAMA_MAP_STORE_MIB", "plenty")
    code = batch.main(["-D", "-l", "/dev/null", "-f", "SkymapInfo", "--flags",
                       "--eventdir", str(tmp_path / "ev")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "LLAMA_MAP_STORE_MIB='plenty' is not a size in MiB" in err
    assert not (tmp_path / "ev").exists()


def test_help_documents_the_bound(capsys):
    try:
        batch.main(["--help"])
    except SystemExit:
        pass
    out = " ".join(capsys.readouterr().out.split())
    assert "LLAMA_MAP_STORE_MIB (default 256; 0 keeps none)" in out
