"""An unchanged re-run leaves the netCDF results file alone (issue 8, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys

from llama.batch.runner import EventOutcome
from llama.results import read_results, write_results


def outcomes(state: str = "done", odds: float = 2.5) -> list[EventOutcome]:
    return [
        EventOutcome(
            index=i,
            eventid=f"S{i}",
            directory=f"/ev/S{i}",
            vector={"graceid": f"S{i}"},
            state=state,
            records={"odds_ratio": odds * i, "graceid": f"S{i}"},
        )
        for i in range(3)
    ]


def test_same_rows_leave_the_file_alone(tmp_path):
    path = tmp_path / "results.nc"
    write_results(outcomes(), path, seed=1)
    before = os.stat(path)
    write_results(outcomes(), path, seed=1)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert read_results(path).state.values.tolist() == ["done"] * 3


def test_changed_rows_attributes_or_file_are_written_again(tmp_path):
    path = tmp_path / "results.nc"
    write_results(outcomes(), path, seed=1)
    write_results(outcomes(state="up to date"), path, seed=1)  # state of this run
    assert read_results(path).state.values.tolist() == ["up to date"] * 3
    write_results(outcomes(state="up to date", odds=3.0), path, seed=1)  # a record
    assert read_results(path).odds_ratio.values.tolist() == [0.0, 3.0, 6.0]
    write_results(outcomes(state="up to date", odds=3.0), path, seed=2)  # an attribute
    assert read_results(path).attrs["seed"] == 2
    # the file replaced behind the record's back (another tool, a copy): written again
    before = os.stat(path)
    path.write_bytes(path.read_bytes())
    # the clock the file system stamps with may be coarser than the test: step it
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10_000_000))
    ino = before.st_ino
    write_results(outcomes(state="up to date", odds=3.0), path, seed=2)
    assert os.stat(path).st_ino != ino
    assert read_results(path).odds_ratio.values.tolist() == [0.0, 3.0, 6.0]


def test_unchanged_rerun_does_not_import_xarray(tmp_path):
    path = tmp_path / "results.nc"
    write_results(outcomes(), path)
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_results_rerun import outcomes\n"
        "from llama.results import write_results\n"
        "write_results(outcomes(), sys.argv[1])\n"
        "print('xarray' in sys.modules)\n"
    )
    here = os.path.dirname(__file__)
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), here], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
