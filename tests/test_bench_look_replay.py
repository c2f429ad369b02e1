"""bench/bench_look_replay.py: recorded kernel calls replayed on one copy of a package.

A tiny package (a NamedTuple record of arrays, made by ``prepare_map``, and Numba kernels
taking it, under the names of the overlap kernels) is loaded twice under two module
names, as the bench loads two revisions of ``kernels/overlap``. Numba types a tuple by
its items alone, so the copy called second finds none of its compiled signatures and
takes the Python fallback on every call: the counter the bench's workers report must see
exactly those calls, and a replay of saved calls must give each call's own result.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_look_replay as replay_bench  # noqa: E402

SOURCE = """
from typing import NamedTuple

import numpy as np
from numba import njit


class PreparedMap(NamedTuple):
    density: np.ndarray
    weight: np.ndarray
    edges: np.ndarray


def prepare_map(values):
    values = np.asarray(values, float)
    return PreparedMap(values, np.ones_like(values), np.arange(values.size + 1, dtype=EDGES))


@njit
def _weighted(pmap, x, scale):
    return scale * (pmap.density * pmap.weight).sum() + x + pmap.edges[-1]


def psf_overlap_targets(pmap, x, scale=1.0):
    return (_weighted(pmap, x, scale),)
"""


def copy_of_package(name: str, edges: str) -> types.ModuleType:
    """The tiny package's module, made anew under ``name`` (its own classes, kernels),
    its record's last array of dtype ``edges``: Numba's fingerprint-to-type table lives
    as long as the process, so each test's records get items of their own."""
    module = types.ModuleType(name)
    module.EDGES = edges
    sys.modules[name] = module
    exec(compile(SOURCE, f"<{name}>", "exec"), module.__dict__)
    return module


@pytest.fixture
def copies(request):
    names = ("replay_copy_a", "replay_copy_b")
    yield tuple(copy_of_package(n, request.param) for n in names)
    for n in names:
        sys.modules.pop(n, None)


@pytest.mark.parametrize("copies", ["float64"], indirect=True)
def test_the_copy_called_second_takes_the_fallback_on_every_call(copies):
    first, second = copies
    a, b = first.prepare_map([1.0, 2.0]), second.prepare_map([1.0, 2.0])
    first.psf_overlap_targets(a, 0.5)
    second.psf_overlap_targets(b, 0.5)  # each compiled once for its own record
    with replay_bench.fallbacks_counted() as slow:
        for _ in range(5):
            first.psf_overlap_targets(a, 0.5)
    assert slow == [0]
    with replay_bench.fallbacks_counted() as slow:
        for _ in range(7):
            assert second.psf_overlap_targets(b, 0.5) == (3.5 + 2.0,)
    assert slow == [7]
    # the counter is taken away again
    second.psf_overlap_targets(b, 0.5)
    assert slow == [7]


@pytest.mark.parametrize("copies", ["int32"], indirect=True)
def test_saved_calls_replay_each_with_its_own_map_and_arguments(copies, tmp_path):
    recorded, replayed = copies
    maps = [recorded.prepare_map(v) for v in ([1.0, 2.0], [4.0], [0.5, 0.25, 8.0])]
    prepared = {id(m): ("prepare_map", (list(m.density),), {}, m) for m in maps}
    calls = [("psf_overlap_targets", (maps[i], x), {"scale": s})
             for i, x, s in ((0, 0.5, 1.0), (2, -1.0, 2.0), (1, 3.0, 0.5), (0, 0.0, 3.0))]  # fmt: skip
    path = tmp_path / "calls.pickle"
    replay_bench.save(calls, prepared, path)
    with open(path, "rb") as f:
        rec = pickle.load(f)
    own = {key: getattr(replayed, name)(*a, **k) for key, name, a, k in rec["maps"]}
    assert all(type(m).__module__ == "replay_copy_b" for m in own.values())
    outputs: list = []
    cpu, _ = replay_bench.replay(replayed, own, rec["calls"], outputs)  # compiles: untimed
    # by hand: scale * sum(density) + x + number of pixels
    assert outputs == [(3.0 + 0.5 + 2,), (2 * 8.75 - 1.0 + 3,), (0.5 * 4.0 + 3.0 + 1,), (9.0 + 2,)]  # fmt: skip
    assert set(cpu) == {"psf_overlap_targets"} and cpu["psf_overlap_targets"] >= 0.0
    # alone in its process (no other copy called), every later call is compiled dispatch
    again: list = []
    _, slow = replay_bench.replay(replayed, own, rec["calls"], again)
    assert slow == 0 and again == outputs
    np.testing.assert_array_equal(own[id(maps[2])].density, [0.5, 0.25, 8.0])
