"""NeutrinoList.read's kept list: a second read of the same text gives what parsing it
gives, as an independent copy (issue 8)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llama.science.neutrinos import NeutrinoList, NeutrinoListError

FIELDS = ("mjd", "ra", "dec", "sigma", "energy", "type", "zenith", "azimuth", "run", "event")


def _same(a: NeutrinoList, b: NeutrinoList) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes() if x.dtype != object else list(x) == list(y), name
    assert (a.complete, a.extra) == (b.complete, b.extra)


def _random_list(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    triggers = []
    for _ in range(n):
        t = {
            "mjd": float(rng.uniform(50000, 60000)),
            "ra": float(rng.uniform(0, 360)),
            "dec": float(rng.uniform(-90, 90)),
            "sigma": float(rng.uniform(0.05, 20)),
            "energy": float(10 ** rng.uniform(2, 6)),
            "type": str(rng.choice(["observation", "blinded", "injected"])),
        }
        if rng.random() < 0.5:
            t["zenith"], t["run"] = float(rng.uniform(0, 180)), int(rng.integers(0, 2**40))
        triggers.append(t)
    return {"triggers": triggers, "complete": seed % 2 == 0}


def test_read_keeps_the_list_of_the_same_text(tmp_path):
    """A second read of the same text equals a fresh parse of it, bit for bit; changing
    one list read changes neither another nor the next read; another text is parsed
    (and its errors named) as before."""
    path = tmp_path / "icecube_neutrino_list.json"
    obj = _random_list(1, 5)
    path.write_text(json.dumps(obj))
    first = NeutrinoList.read(path)
    _same(first, NeutrinoList.from_json(json.dumps(obj)))
    first.ra[:] = -1.0
    first.type[0] = "changed"
    first.extra["note"] = 1
    second = NeutrinoList.read(path)
    _same(second, NeutrinoList.from_json(json.dumps(obj)))
    second.dec[:] = 0.0
    _same(NeutrinoList.read(path), NeutrinoList.from_json(json.dumps(obj)))
    for seed in range(2, 6):  # other texts, the same length or not
        obj = _random_list(seed, seed)
        path.write_text(json.dumps(obj))
        _same(NeutrinoList.read(path), NeutrinoList.from_json(json.dumps(obj)))
    path.write_text('{"triggers": [{"mjd": 1.0}]}')
    with pytest.raises(NeutrinoListError, match="trigger 0: missing key 'ra'"):
        NeutrinoList.read(path)
