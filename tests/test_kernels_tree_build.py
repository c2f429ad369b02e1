"""The multi-order map's quadtree (kernels.overlap.tree.build_tree) against a plain
Python build: rows that tile the sky (a BAYESTAR map's, where the tree is sized
without counting its internal nodes) and rows with gaps (where the first size is too
small and the nodes are counted), node for node."""

from __future__ import annotations

import numpy as np
import pytest
from bayestar_events import DATA

from kernels.overlap.api import prepare_map
from llama.science.skymap import read_sky_map


def _plain_tree(uniq):
    """(child, leaf_row) of the breadth-first quadtree over the 12 base pixels whose
    leaves are the rows (row n: a node no row covers), built node by node."""
    order = (np.floor(np.log2(uniq / 4)) // 2).astype(np.int64)
    ipix = uniq - 4 * 4**order
    n = uniq.size
    rows = {(int(o), int(p)): k for k, (o, p) in enumerate(zip(order, ipix, strict=True))}
    # every strict ancestor of a row is an internal node
    internal = {(int(o) - d, int(p) >> (2 * d)) for o, p in zip(order, ipix, strict=True) for d in range(1, int(o) + 1)}  # fmt: skip
    nodes = [(0, f) for f in range(12)]
    child, leaf_row = [], []
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node in internal:
            child.append(len(nodes))
            leaf_row.append(n)
            nodes.extend((node[0] + 1, 4 * node[1] + c) for c in range(4))
        else:
            child.append(-1)
            leaf_row.append(rows.get(node, n))
        i += 1
    return np.array(child), np.array(leaf_row)


def _sorted(uniq):
    order = (np.floor(np.log2(uniq / 4)) // 2).astype(np.int64)
    return uniq[np.argsort((uniq - 4 * 4**order) << (2 * (29 - order)), kind="stable")]


def _maps():
    sky = _sorted(read_sky_map(DATA / "bbh-6.fits").uniq.astype(np.int64))
    rng = np.random.default_rng(5)
    return {
        "tiling": sky,
        "gaps": sky[np.sort(rng.choice(sky.size, sky.size // 2, replace=False))],
        "one row": sky[[sky.size // 3]],
        "base pixels but one": 4 + np.delete(np.arange(12), 7),
        "twelve deep rows": _sorted(4 * 4**9 + rng.choice(12 * 4**9, 12, replace=False)),
    }


@pytest.mark.parametrize("name", list(_maps()))
def test_the_tree_is_the_plain_breadth_first_build(name):
    uniq = _maps()[name]
    pm = prepare_map(uniq, np.linspace(1.0, 2.0, uniq.size))
    child, leaf_row = _plain_tree(uniq)
    np.testing.assert_array_equal(pm.child, child)
    np.testing.assert_array_equal(pm.leaf_row, leaf_row)
    assert pm.bounds.shape[0] == child.size == pm.centres.shape[0]
    assert pm.moments.shape[0] == (child.size - 12) // 4
