"""llama.handler.indented_json: the layout of the handlers' JSON files. Its values are
json.dumps(indent=2)'s, read back exactly; its text depends only on the value."""

from __future__ import annotations

import enum
import json
import math
import random

import numpy as np
import pytest

from llama.handler import _json_default, indented_json


class Level(enum.IntEnum):
    LOW = 1


class Ratio(float):
    pass


def _old(obj):
    return json.dumps(obj, indent=2, default=_json_default)


def _same(a, b) -> bool:
    """Equal values of equal types, NaN equal to NaN, floats bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a.hex() == b.hex()
    return a == b


def _scalar(rng: random.Random):
    pick = rng.randrange(14)
    if pick == 0:
        return rng.choice([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308])
    if pick == 1:
        return rng.getrandbits(90) - (1 << 89)  # beyond 64 bits
    if pick == 2:
        return rng.choice([True, False, None])
    if pick == 3:
        return "".join(rng.choice('ab"\\\n\t\x00é€😀/') for _ in range(rng.randrange(6)))
    if pick == 4:
        return np.float64(rng.gauss(0, 1e5))
    if pick == 5:
        return np.int64(rng.randrange(-(10**12), 10**12))
    if pick == 6:
        return Level.LOW
    if pick == 7:
        return Ratio(rng.random())
    if pick == 8:
        return np.float32(rng.random())
    if pick == 9:
        return rng.randrange(-5, 5)
    return rng.uniform(-1e3, 1e3) * 10 ** rng.randrange(-30, 30)


def _value(rng: random.Random, depth: int):
    pick = rng.randrange(10) if depth < 5 else 9
    if pick < 3:
        return {
            "k" + str(i) + rng.choice(["", "é", '"']): _value(rng, depth + 1)
            for i in range(rng.randrange(5))
        }
    if pick < 5:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    if pick == 5:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    if pick == 6:
        return np.asarray([rng.random() for _ in range(rng.randrange(4))]).reshape(
            rng.choice([(-1,), (1, -1)])
        )
    return _scalar(rng)


def test_random_values_read_back_as_json_dumps_with_an_indent_reads_them():
    rng = random.Random(20261207)
    for _ in range(3000):
        obj = _value(rng, 0)
        text = indented_json(obj)
        assert text.isascii()
        assert _same(json.loads(text), json.loads(_old(obj))), text
        assert indented_json(obj) == text  # the same text every time


def test_the_realistic_significance_shape():
    trigger = {"ra": 231.33630492470755, "p_h_s2": 0.0, "p_value": None, "n": np.int64(3)}
    obj = {
        "inputs": {"options": {"psf": "gaussian", "rtol": 0.01}, "p_astro": {"BBH": 0.97}},
        "outputs": {
            "neutrino_gw_triggers": [trigger, dict(trigger, ra=1e-300)],
            "neutrino_gw_combined": {"p_value": 0.5, "upper": np.array([1.0, 0.25])},
        },
    }
    assert indented_json(obj) == "\n".join(
        [
            "{",
            '  "inputs": {',
            '    "options": {"psf": "gaussian", "rtol": 0.01},',
            '    "p_astro": {"BBH": 0.97}',
            "  },",
            '  "outputs": {',
            '    "neutrino_gw_triggers": [',
            '      {"ra": 231.33630492470755, "p_h_s2": 0.0, "p_value": null, "n": 3},',
            '      {"ra": 1e-300, "p_h_s2": 0.0, "p_value": null, "n": 3}',
            "    ],",
            '    "neutrino_gw_combined": {',
            '      "p_value": 0.5,',
            '      "upper": [1.0, 0.25]',
            "    }",
            "  }",
            "}",
        ]
    )


def test_flat_and_empty_values_are_json_dumps_with_an_indent_of_two():
    for obj in ({}, [], {"a": 1, "b": [], "c": {}}, [1, "x", None], 1.5, "é", None, {"a": []}):
        assert indented_json(obj) == _old(obj)


def test_keys_that_are_not_strings_are_converted_as_json_dumps_converts_them():
    obj = {"rows": {1: "one", 2.5: [1], False: None, None: {"x": [1]}}}
    assert json.loads(indented_json(obj)) == json.loads(_old(obj))


def test_what_json_dumps_refuses_is_refused():
    loop: list = [[1]]
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        indented_json({"a": loop})
    inner: dict = {}
    inner["self"] = {"x": inner}
    with pytest.raises(ValueError, match="Circular reference"):
        indented_json([inner])
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        indented_json({"a": [object()]})
    with pytest.raises(TypeError, match="keys must be"):
        indented_json({"a": {(1, 2): 3}})


def test_deep_values_end_on_one_line():
    obj: list = [1]
    for _ in range(40):
        obj = [obj, 2]
    text = indented_json(obj)
    assert json.loads(text) == json.loads(_old(obj))
    assert len(text.splitlines()) < 3 * 17
