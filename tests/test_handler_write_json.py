"""llama.handler.write_json: the JSON every handler's file is written as (laid out by
llama.handler.indented_json; its layout is tested in test_handler_indented_json.py)."""

from __future__ import annotations

import json
import os

import numpy as np

from llama.handler import indented_json, write_json

# what handlers put in their files: nested containers, NumPy scalars and arrays,
# non-ASCII text, floats that print in exponent form, None and booleans
CONTENT = {
    "inputs": {"skymap_info": {"graceid": "S1é", "far": 1e-09, "instruments": ["H1", "L1"]}},
    "outputs": {
        "neutrino_gw_triggers": [
            {"ra": np.float64(268.40887597581747), "n": np.int64(3), "p_value": None},
            {"ra": 1.5e-300, "n": 0, "p_value": 0.974112967280766},
        ],
        "p_values_neutrino_upper": np.array([1.0, 0.5]),
        "complete": True,
        "empty": {},
    },
}
# the same with NumPy's values written out by hand
PLAIN = {
    "inputs": {"skymap_info": {"graceid": "S1é", "far": 1e-09, "instruments": ["H1", "L1"]}},
    "outputs": {
        "neutrino_gw_triggers": [
            {"ra": 268.40887597581747, "n": 3, "p_value": None},
            {"ra": 1.5e-300, "n": 0, "p_value": 0.974112967280766},
        ],
        "p_values_neutrino_upper": [1.0, 0.5],
        "complete": True,
        "empty": {},
    },
}


def test_the_file_is_indented_json_and_a_newline_and_reads_back_as_json_dumps(tmp_path):
    write_json(tmp_path / "f.json", CONTENT)
    data = (tmp_path / "f.json").read_bytes()
    assert data == (indented_json(PLAIN) + "\n").encode("ascii")
    assert json.loads(data) == PLAIN == json.loads(json.dumps(PLAIN, indent=2))
    assert data.decode("ascii").splitlines()[:3] == ["{", '  "inputs": {', '    "skymap_info": {']


def test_a_flat_file_is_json_dumps_with_an_indent_of_two(tmp_path):
    """p_astro, distances, GraceDB data: the same bytes as before indented_json."""
    flat = {"BNS": 0.0, "BBH": 0.97, "far": 1e-09, "graceid": "S1é", "n": 3, "x": None}
    write_json(tmp_path / "f.json", flat)
    assert (tmp_path / "f.json").read_bytes() == (json.dumps(flat, indent=2) + "\n").encode()


def test_a_longer_file_in_the_way_is_replaced_whole(tmp_path):
    (tmp_path / "f.json").write_text("x" * 10_000)
    write_json(tmp_path / "f.json", {"a": 1})
    assert (tmp_path / "f.json").read_text() == '{\n  "a": 1\n}\n'


def test_short_writes_are_continued_until_the_text_is_written(tmp_path, monkeypatch):
    """A write that takes only part of the bytes (a disk filling up, a signal) is
    followed by writes of the rest, not taken for the whole."""
    write = os.write
    calls = []

    def short_write(fd, data):
        calls.append(len(data))
        return write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", short_write)
    write_json(tmp_path / "f.json", PLAIN)
    monkeypatch.undo()
    text = indented_json(PLAIN) + "\n"
    assert (tmp_path / "f.json").read_text() == text
    assert len(calls) == -(-len(text) // 7)
