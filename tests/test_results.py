"""The results Dataset: labelled arrays of a sweep, per-neutrino values, CF attributes.

Values are checked against an independent reading of each event's own files (the
significance JSON, read here with `json`), and the draws against
`llama.batch.sweep.random_vectors`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import llama
from llama.batch.runner import EventOutcome
from llama.batch.sweep import random_vectors
from llama.results import (
    SweepLayout,
    event_table,
    open_results,
    outcomes_to_dataset,
    read_results,
    state_names,
    unstack_draws,
    write_results,
)
from llama.results_schema import NEUTRINO_FIELDS, STATE_MEANINGS

EXAMPLES = Path(llama.__file__).parent / "examples"
GRACEIDS = ["S190425a", "S190425b"]
LISTS = ["bg-00", "bg-01", "inj-S190425a"]


def _get() -> dict[str, str]:
    return {
        "skymap_info.json": str(EXAMPLES / "events/{graceid}/skymap_info.json"),
        "lvc_skymap.fits": str(EXAMPLES / "events/{graceid}/lvc_skymap.fits"),
        "icecube_neutrino_list.json": str(EXAMPLES / "neutrinos/{neutrinos}.json"),
    }


@pytest.fixture(scope="module")
def example_sweep(tmp_path_factory):
    """A 2 x 3 sweep of example maps x neutrino lists through the significance."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LLAMA_N_TRIALS", "100")
    root = tmp_path_factory.mktemp("sweep")
    try:
        ds = llama.sweep(
            {"graceid": GRACEIDS, "neutrinos": LISTS},
            pipeline=["CoincSignificanceI3Lvc"],
            get=_get(),
            eventdir=str(root / "{graceid}-{neutrinos}"),
            flags={"ONLINE": "false"},
            results=str(root / "results.zarr"),
            jobs=2,
            progress=False,
        )
    finally:
        mp.undo()
    return ds, root


def _significance(directory: str) -> dict:
    return json.loads((Path(directory) / "significance_lvc-i3.json").read_text())


def test_grid_sweep_is_labelled_by_its_params(example_sweep):
    ds, root = example_sweep
    assert dict(ds.sizes) == {"graceid": 2, "neutrinos": 3, "neutrino": 7}
    assert ds.graceid.values.tolist() == GRACEIDS and ds.neutrinos.values.tolist() == LISTS
    assert (ds.state.values == STATE_MEANINGS.index("done")).all(), ds.attrs["summary"]
    for g in GRACEIDS:
        for n in LISTS:
            cell = ds.sel(graceid=g, neutrinos=n)
            assert str(cell.directory.values) == str(root / f"{g}-{n}")
            combined = _significance(str(cell.directory.values))["outputs"]["neutrino_gw_combined"]
            assert float(cell.p_value) == combined["p_value"]
            assert float(cell.odds_ratio) == pytest.approx(combined["odds_ratio"], rel=1e-12)


def test_per_neutrino_values_are_the_significance_files_rows_padded(example_sweep):
    ds, _ = example_sweep
    for g in GRACEIDS:
        for n in LISTS:
            cell = ds.sel(graceid=g, neutrinos=n)
            triggers = _significance(str(cell.directory.values))["outputs"]["neutrino_gw_triggers"]
            count = int(cell.neutrino_count)
            assert count == len(triggers) == int(cell.n_neutrinos)
            for field in NEUTRINO_FIELDS:
                values = cell[f"neutrino_{field}"].values
                expected = [np.nan if t.get(field) is None else t[field] for t in triggers]
                np.testing.assert_array_equal(values[:count], expected)
                assert np.isnan(values[count:]).all()  # padding
    # the injected neutrino on its own map is the most significant of its list
    inj = ds.sel(graceid="S190425a", neutrinos="inj-S190425a")
    assert float(inj.neutrino_p_value.min()) < 0.05


def test_every_variable_has_cf_attributes(example_sweep):
    ds, _ = example_sweep
    for name, var in ds.variables.items():
        assert var.attrs.get("long_name"), name
        if var.dtype.kind == "f":
            assert "units" in var.attrs, name
    assert ds.neutrino_ra.attrs["units"] == "degree" and ds.neutrino_dt.attrs["units"] == "s"
    assert ds.neutrino_psf_overlap.attrs["units"] == "sr-1"
    assert ds.state.dtype == np.int8
    meanings = ds.state.attrs["flag_meanings"].split()
    assert list(ds.state.attrs["flag_values"]) == list(range(len(meanings)))
    assert "directory" in ds.coords


def test_a_2d_grid_plots_as_a_heat_map(example_sweep):
    import matplotlib

    matplotlib.use("Agg")
    ds, _ = example_sweep
    mesh = ds.p_value.plot()
    assert mesh.get_array().shape == (2, 3)
    assert "p-value" in mesh.axes.get_title() + str(mesh.colorbar.ax.get_ylabel())


def test_netcdf_results_hold_the_same_arrays_and_the_flat_view(
    example_sweep, tmp_path, monkeypatch
):
    ds, root = example_sweep
    path = tmp_path / "results.nc"
    monkeypatch.setenv("LLAMA_N_TRIALS", "100")  # as the sweep ran: other values remake
    again = llama.sweep(
        {"graceid": GRACEIDS, "neutrinos": LISTS},
        pipeline=["CoincSignificanceI3Lvc"],
        get=_get(),
        eventdir=str(root / "{graceid}-{neutrinos}"),
        flags={"ONLINE": "false"},
        results=str(path),
        progress=False,
    )
    assert (again.state.values == STATE_MEANINGS.index("up_to_date")).all()
    # per-neutrino values of an up-to-date event come from its rider's records
    neutrino_vars = [f"neutrino_{field}" for field in NEUTRINO_FIELDS]
    for name in ("p_value", "odds_ratio", "neutrino_count", *neutrino_vars):
        np.testing.assert_array_equal(again[name].values, ds[name].values)
    assert open_results(path).p_value.attrs["units"] == "1"
    flat = read_results(path)
    assert flat.sizes["event"] == 6 and set(flat.state.values) == {"up to date"}
    assert flat.param_graceid.values.tolist() == [g for g in GRACEIDS for _ in LISTS]
    assert flat.param_neutrinos.values.tolist() == LISTS * 2
    np.testing.assert_array_equal(flat.p_value.values, ds.p_value.values.ravel())


# -- layouts without running events ---------------------------------------------------
def _outcome(index: int, vector: dict, state: str = "done", **records) -> EventOutcome:
    name = "-".join(vector.values()) or "event"
    return EventOutcome(index, name, f"/ev/{name}", vector, state, records=records)


def test_random_draws_have_a_draw_dimension_that_unstacks_to_the_grid():
    params = {"a": ["1", "2", "3"], "b": ["x", "y"]}
    layout = SweepLayout(params, random=20, seed=5)
    vectors = list(random_vectors(params, 20, 5))
    ran = [_outcome(i, v, odds_ratio=float(i)) for i, v in enumerate(vectors) if i != 7]
    ds = outcomes_to_dataset(ran, layout)
    assert dict(ds.sizes) == {"draw": 20}
    assert ds.a.values.tolist() == [v["a"] for v in vectors]  # also for the draw not run
    assert state_names(ds.state).values[7] == "not run" and np.isnan(ds.odds_ratio[7])
    grid = unstack_draws(ds)
    assert set(grid.state.dims) == {"a", "b"}
    for v in vectors:
        first = next(k for k, w in enumerate(vectors) if w == v)  # repeats dropped
        value = float(grid.odds_ratio.sel(a=v["a"], b=v["b"]))
        assert value == first or (first == 7 and np.isnan(value))


def test_records_named_like_params_are_renamed_and_no_params_is_one_event():
    layout = SweepLayout({"graceid": ["S1"]})
    ds = outcomes_to_dataset([_outcome(0, {"graceid": "S1"}, graceid="S1-from-info")], layout)
    assert ds.event_graceid.values.tolist() == ["S1-from-info"]
    single = outcomes_to_dataset([_outcome(0, {}, snr=9.0)], SweepLayout({}))
    assert dict(single.sizes) == {"event": 1} and float(single.snr[0]) == 9.0
    assert event_table(single).state.values.tolist() == ["done"]


def test_files_of_the_flat_layout_still_read():
    flat = outcomes_to_dataset([_outcome(3, {"g": "S1"}, "failed")])
    assert flat.sizes["event"] == 1 and flat.state.values.tolist() == ["failed"]
    assert event_table(flat) is flat


def test_concurrent_netcdf_writers_merge_with_the_labelled_layout(tmp_path):
    import time

    layout = SweepLayout({"g": ["S0", "S1", "S2"]})
    path = tmp_path / "r.nc"
    started = time.time()
    time.sleep(0.01)
    write_results([_outcome(0, {"g": "S0"}), _outcome(1, {"g": "S1"})], path, layout=layout,
                  merge_since=started)  # fmt: skip
    mine = [_outcome(1, {"g": "S1"}, "skipped"), _outcome(2, {"g": "S2"}, odds_ratio=2.0)]
    write_results(mine, path, layout=layout, merge_since=started)
    ds = open_results(path)
    assert state_names(ds.state).values.tolist() == ["done", "done", "done"]
    assert float(ds.odds_ratio.sel(g="S2")) == 2.0


def test_background_tables_read_the_labelled_results(example_sweep):
    from llama.science.background_table import table_from_results

    ds, root = example_sweep
    table, report = table_from_results([root / "results.zarr"])
    assert report["n_read"] == report["n_used"] == 6
    # independently: the sweep's statistics grouped by population and instruments
    expected: dict[str, list[float]] = {}
    for g in GRACEIDS:
        for n in LISTS:
            cell = ds.sel(graceid=g, neutrinos=n)
            key = f"{cell.population.item()}/O3/{cell.instruments.item()}"
            expected.setdefault(key, []).append(float(cell.odds_ratio))
    assert sorted(table.key.values.tolist()) == sorted(expected)
    for key, odds in expected.items():
        row = table.sel(key=key)
        stored = row.odds.values[: int(row.n_events)]
        np.testing.assert_array_equal(np.sort(stored), np.sort(odds))


def test_per_neutrino_values_without_an_event_directory(example_sweep, tmp_path, monkeypatch):
    """Temporary event directories are gone before the results are written (as on a
    cluster whose workers share no disk): the rows travel with the handler's record."""
    ds, _ = example_sweep
    monkeypatch.setenv("LLAMA_N_TRIALS", "100")
    kept = llama.sweep(
        {"graceid": GRACEIDS[:1], "neutrinos": LISTS[-1:]},
        pipeline=["CoincSignificanceI3Lvc"],
        get=_get(),
        flags={"ONLINE": "false"},
        results=str(tmp_path / "results.nc"),
        progress=False,
    )
    cell = kept.isel(graceid=0, neutrinos=0)
    assert not Path(str(cell.directory.values)).exists()  # the temporary event is gone
    same = ds.sel(graceid=GRACEIDS[0], neutrinos=LISTS[-1])
    count = int(same.neutrino_count)
    assert int(cell.neutrino_count) == count > 0
    for field in ("ra", "dec", "sigma", "energy", "psf_overlap", "odds_ratio"):
        np.testing.assert_allclose(
            cell[f"neutrino_{field}"].values[:count], same[f"neutrino_{field}"].values[:count]
        )
