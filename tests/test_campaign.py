"""Campaigns as Dask arrays: padded neutrino batches, trials, a real distributed cluster."""

from __future__ import annotations

import numpy as np
import pytest

from llama.science.campaign import (
    FIELDS,
    background_batch,
    padded_statistics,
    trial_statistics,
)
from llama.science.odds import EventModel
from llama.science.sim import simulate_skymap


@pytest.fixture(scope="module")
def model():
    skymap = simulate_skymap(np.random.default_rng(3), 120.0, -30.0, sigma_deg=8.0,
                             distmean=90.0, max_order=6)  # fmt: skip
    return EventModel(skymap, rho=10.0, rbar=90.0)


@pytest.fixture(scope="module")
def batch(model):
    return background_batch(np.random.default_rng(5), model, 40)


def test_padded_batch_equals_lists_one_by_one(model, batch):
    stats = padded_statistics(model, batch)
    for k in range(0, 40, 7):
        present = np.isfinite(batch["ra"][k])
        one = [batch[f][k][present] for f in FIELDS]
        alone = model.evaluate_batch(*one, np.array([0, present.sum()])).odds[0]
        assert stats[k] == pytest.approx(alone, rel=1e-12, abs=1e-300)
    counts = np.isfinite(batch["ra"]).sum(axis=1)
    assert abs(counts.mean() - 6.4) < 3  # Poisson(6.4) lists


def test_dask_array_batch_matches_numpy(model, batch):
    import dask.array as da

    lazy = {name: da.from_array(arr, chunks=(9, -1)) for name, arr in batch.items()}
    result = padded_statistics(model, lazy)
    assert isinstance(result, da.Array) and result.numblocks == (5,)
    np.testing.assert_allclose(result.compute(scheduler="threads"), padded_statistics(model, batch))


def test_trials_do_not_depend_on_scheduler(model):
    stats = trial_statistics(model, 250, chunk=100, seed=11)
    a = stats.compute(scheduler="threads")
    b = stats.compute(scheduler="synchronous")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (250,) and np.all(a >= 0)
    assert not np.array_equal(a, trial_statistics(model, 250, chunk=100, seed=12).compute())


def test_trials_on_a_distributed_cluster(model):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            remote = client.compute(trial_statistics(model, 200, chunk=50, seed=4)).result()
    local = trial_statistics(model, 200, chunk=50, seed=4).compute(scheduler="synchronous")
    np.testing.assert_allclose(remote, local, rtol=1e-12)


def test_many_maps_by_many_lists(model, batch):
    from llama.science.campaign import maps_by_lists

    other = EventModel(
        simulate_skymap(np.random.default_rng(9), 300.0, 40.0, sigma_deg=2.0, distmean=60.0,
                        max_order=6),
        rho=12.0, rbar=60.0,
    )  # fmt: skip
    grid = maps_by_lists([model, other], batch, chunk=16)
    assert grid.shape == (2, 40) and grid.numblocks == (2, 3)
    values = grid.compute()
    np.testing.assert_allclose(values[0], padded_statistics(model, batch))
    np.testing.assert_allclose(values[1], padded_statistics(other, batch))
