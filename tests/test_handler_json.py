"""Indented JSON of the handlers' files: the text of json.dumps(indent=2), its errors."""

from __future__ import annotations

import collections
import enum
import json
import math

import numpy as np
import pytest

from llama.handler import _json_default, dumps_indented, write_json

STRINGS = ["", "a", 'quote " and \\ backslash', "tab\t newline\n", "é ü 中文", "\ud83d\ude00 😀",
           "\x00\x1f\x7f", "lone \ud800 surrogate", "</script>"]  # fmt: skip
NUMBERS = [0, -1, 2**70, -(2**63), True, False, None, 0.0, -0.0, 1.5, 1e-300, 5e-324, 1e300,
           math.pi, float("nan"), float("inf"), float("-inf"), 1e16, 123456789.0]  # fmt: skip


class Level(enum.IntEnum):
    LOW = 1


def reference(obj, default=_json_default) -> str:
    return json.dumps(obj, indent=2, default=default)


def random_value(rng: np.random.Generator, depth: int = 0):
    kind = rng.integers(0, 12 if depth < 5 else 6)
    if kind == 0:
        return STRINGS[rng.integers(len(STRINGS))]
    if kind in (1, 2):
        return NUMBERS[rng.integers(len(NUMBERS))]
    if kind == 3:
        return float(rng.normal() * 10.0 ** rng.integers(-20, 20))
    if kind == 4:  # numpy scalars: a float64 is a float, the others go through default
        return [np.float64(rng.normal()), np.int64(rng.integers(-9, 9)), np.bool_(True),
                np.float32(0.1)][rng.integers(4)]  # fmt: skip
    if kind == 5:
        return Level.LOW
    if kind in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.integers(0, 5))]
    if kind == 8:
        return tuple(random_value(rng, depth + 1) for _ in range(rng.integers(0, 3)))
    if kind == 9:
        return np.arange(rng.integers(0, 4)) * 0.5  # an array: its tolist()
    keys = ["k", "", "é", "with space", 3, -2.5, True, False, None, float("nan")]
    out = {}
    for _ in range(rng.integers(0, 6)):
        out[keys[rng.integers(len(keys))]] = random_value(rng, depth + 1)
    return out if kind == 10 else collections.OrderedDict(out)


def test_random_structures_have_json_dumps_text():
    rng = np.random.default_rng(12)
    for _ in range(3000):
        obj = random_value(rng)
        assert dumps_indented(obj, _json_default) == reference(obj)


@pytest.mark.parametrize("obj", [*STRINGS, *NUMBERS, [], {}, [[]], {"a": {}}, [{}], (), {"": []},
                                 {2: "int key", 1.5: "float", None: 0, True: 1, False: 0}])  # fmt: skip
def test_plain_values_have_json_dumps_text(obj):
    assert dumps_indented(obj) == json.dumps(obj, indent=2)


def test_a_significance_shaped_file(tmp_path):
    triggers = [{"mjd": 56975.477647289736 + k, "ra": 328.1, "dec": -15.7, "p_value": None,
                 "odds_ratio": 5.059688603505625e-13, "type": "unspecified"} for k in range(8)]  # fmt: skip
    obj = {"inputs": {"skymap_info": {"graceid": "S1", "instruments": ["H1", "L1"]}},
           "outputs": {"neutrino_gw_triggers": triggers,
                       "neutrino_gw_combined": {"p_value": 0.41, "counts": np.arange(3)}}}  # fmt: skip
    write_json(tmp_path / "s.json", obj)
    assert (tmp_path / "s.json").read_text() == reference(obj) + "\n"


def test_errors_are_json_dumps_errors():
    def error(call):
        try:
            call()
        except Exception as err:  # noqa: BLE001 - the error itself is compared
            return type(err), str(err)
        raise AssertionError("no error")

    loop: list = [1]
    loop.append(loop)
    ring: dict = {}
    ring["self"] = [ring]
    for bad in ({(1, 2): 3}, {"a": {object(): 1}}, loop, ring, [1, {2}], object()):
        assert error(lambda bad=bad: dumps_indented(bad)) == error(
            lambda bad=bad: json.dumps(bad, indent=2)
        )
    assert error(lambda: dumps_indented([object()], _json_default)) == error(
        lambda: reference([object()])
    )

    class Me:  # a default that hands back the object itself: a loop through default
        def tolist(self):
            return self

    assert error(lambda: dumps_indented(Me(), _json_default)) == error(lambda: reference(Me()))
