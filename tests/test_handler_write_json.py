"""llama.handler.write_json: the indented JSON every handler's file is written as."""

from __future__ import annotations

import json
import os

import numpy as np

from llama.handler import write_json

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


def test_the_file_is_json_dumps_with_an_indent_of_two_and_a_newline(tmp_path):
    write_json(tmp_path / "f.json", CONTENT)
    data = (tmp_path / "f.json").read_bytes()
    assert data == (json.dumps(PLAIN, indent=2) + "\n").encode("ascii")
    assert json.loads(data) == PLAIN


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
    text = json.dumps(PLAIN, indent=2) + "\n"
    assert (tmp_path / "f.json").read_text() == text
    assert len(calls) == -(-len(text) // 7)


def _random_value(rng, depth):
    """Nested dicts, lists and tuples of what json.dumps takes: floats of every
    magnitude and NaN/inf, ints and IntEnums, bools, None, text with escapes and
    non-ASCII, NumPy scalars and arrays, str and float subclasses, odd keys."""
    import enum
    import math

    class Level(enum.IntEnum):
        HIGH = 3

    class Text(str):
        pass

    class Loud(float):
        def __repr__(self):
            return "not used by JSON"

    kind = rng.integers(5) if depth < 5 else 0
    if kind == 0:
        return [
            float(rng.random() * 10.0 ** rng.integers(-320, 308)),
            rng.choice([math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e16, 1e-7]),
            int(rng.integers(-(2**62), 2**62)) * 10**6,
            True, False, None,
            "".join(chr(c) for c in rng.integers(0, 0x3000, 5)) + '\\"\n\x00\u2028é😀',
            np.float64(rng.random()), np.int64(rng.integers(-9, 9)), np.bool_(True),
            np.float32(0.1), Level.HIGH, Loud(2.5), Text("t\t"), np.array([1.5, np.nan]),
        ][rng.integers(15)]  # fmt: skip
    if kind == 1:
        return [_random_value(rng, depth + 1) for _ in range(rng.integers(5))]
    if kind == 2:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.integers(4)))
    keys = ["a", "é\t", Text("k"), 1.5, math.nan, -math.inf, True, False, None, 7, Level.HIGH]
    return {
        keys[rng.integers(len(keys))] if rng.random() < 0.3 else f"key{rng.integers(50)}":
        _random_value(rng, depth + 1)
        for _ in range(rng.integers(6))
    }  # fmt: skip


def test_the_text_is_json_dumps_own_on_random_contents():
    """indented_json writes json.dumps(indent=2)'s text, not only for handlers' files."""
    from llama.handler import _json_default, indented_json

    rng = np.random.default_rng(5)
    for _ in range(3000):
        obj = _random_value(rng, 0)
        assert indented_json(obj) == json.dumps(obj, indent=2, default=_json_default)


def test_what_json_dumps_refuses_it_refuses_with_the_same_error():
    import pytest

    from llama.handler import indented_json

    loop: list = []
    loop.append(loop)
    inner: dict = {}
    inner["x"] = [inner]
    for obj, error, message in [
        ({(1, 2): 1}, TypeError, "keys must be str, int, float, bool or None, not tuple"),
        ({"a": [object()]}, TypeError, "cannot write object to JSON"),
        ({"a": {1j: 2}}, TypeError, "not complex"),
        (loop, ValueError, "Circular reference detected"),
        (inner, ValueError, "Circular reference detected"),
    ]:
        with pytest.raises(error, match=message):
            indented_json(obj)
