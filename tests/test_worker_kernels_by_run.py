"""Kernels recorded and loaded per kind of run (``LLAMA_KERNELS_RUN``).

Each check runs in fresh Python processes, with a cache folder of the test's own
(``XDG_CACHE_HOME``) and Numba's real cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llama.batch.worker_kernels import MAX_RUNS, RUN_VARIABLE

_RECORD_FILE = "worker-kernels-by-run-1.json"

_RECORD = """
import sys
from kernels.healpix import npix_of, nside_of
from llama.batch.worker_kernels import record_used
assert npix_of(3) == 12 * 4**3
if sys.argv[1:] == ["both"]:
    assert nside_of(3) == 8
record_used()
"""

_LOAD = """
import json
from kernels.healpix import npix_of, nside_of
from llama.batch.worker_kernels import load_recorded
loaded = load_recorded()
print(json.dumps({"loaded": loaded, "npix_of": len(npix_of.overloads),
                  "nside_of": len(nside_of.overloads)}))
"""


def _python(code: str, cache: Path, kind: str | None, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != RUN_VARIABLE}
    env.update({"XDG_CACHE_HOME": str(cache), "NUMBA_NUM_THREADS": "1"})
    if kind is not None:
        env[RUN_VARIABLE] = kind
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_run_loads_the_kernels_of_its_kind_alone(tmp_path):
    _python(_RECORD, tmp_path, "A")  # kind A: npix_of
    _python(_RECORD, tmp_path, "B", "both")  # kind B: npix_of and nside_of
    runs = json.loads((tmp_path / "llama" / _RECORD_FILE).read_text())
    assert runs["A"] == ["kernels.healpix:npix_of:(int64,)"]
    assert sorted(runs["B"]) == [
        "kernels.healpix:npix_of:(int64,)",
        "kernels.healpix:nside_of:(int64,)",
    ]
    assert list(runs) == ["A", "B"]  # the one record: nothing else written
    assert sorted(p.name for p in (tmp_path / "llama").iterdir()) == [_RECORD_FILE]

    seen = json.loads(_python(_LOAD, tmp_path, "A"))
    assert seen == {"loaded": 1, "npix_of": 1, "nside_of": 0}  # not B's nside_of
    seen = json.loads(_python(_LOAD, tmp_path, "B"))
    assert seen == {"loaded": 2, "npix_of": 1, "nside_of": 1}
    # a kind not recorded yet loads nothing: what it loaded would be recorded as its own
    seen = json.loads(_python(_LOAD, tmp_path, "C"))
    assert seen == {"loaded": 0, "npix_of": 0, "nside_of": 0}
    # a run of no kind (run_batch called directly) loads the kernels of all kinds
    seen = json.loads(_python(_LOAD, tmp_path, None))
    assert seen == {"loaded": 2, "npix_of": 1, "nside_of": 1}


def test_a_run_of_no_kind_is_recorded_with_the_others_and_loads_them_all(tmp_path):
    _python(_RECORD, tmp_path, "A")  # kind A: npix_of
    _python(_RECORD, tmp_path, None)  # no kind: npix_of, in A's too
    runs = json.loads((tmp_path / "llama" / _RECORD_FILE).read_text())
    assert runs == {"A": ["kernels.healpix:npix_of:(int64,)"],
                    "": ["kernels.healpix:npix_of:(int64,)"]}  # fmt: skip
    (tmp_path / "llama" / _RECORD_FILE).write_text(json.dumps({
        "": ["kernels.healpix:npix_of:(int64,)"], "B": ["kernels.healpix:nside_of:(int64,)"],
    }))  # fmt: skip
    assert json.loads(_python(_LOAD, tmp_path, None)) == {
        "loaded": 2, "npix_of": 1, "nside_of": 1,
    }  # fmt: skip
    # where nothing is recorded for it, a named kind loads none of them
    assert json.loads(_python(_LOAD, tmp_path, "A"))["loaded"] == 0


def test_a_kind_recorded_again_keeps_what_it_had(tmp_path):
    _python(_RECORD, tmp_path, "A", "both")
    _python(_RECORD, tmp_path, "A")  # a later run of A whose first event used less
    runs = json.loads((tmp_path / "llama" / _RECORD_FILE).read_text())
    assert len(runs["A"]) == 2


def test_the_record_keeps_the_kinds_recorded_last(tmp_path):
    (tmp_path / "llama").mkdir()
    record = tmp_path / "llama" / _RECORD_FILE
    old = {f"K{i}": ["kernels.healpix:nside_of:(int64,)"] for i in range(MAX_RUNS)}
    record.write_text(json.dumps(old))
    _python(_RECORD, tmp_path, "K0")  # K0 again, with a kernel it lacked: now the last
    _python(_RECORD, tmp_path, "new")
    runs = json.loads(record.read_text())
    assert len(runs) == MAX_RUNS and list(runs)[-2:] == ["K0", "new"]
    assert "K1" not in runs  # the oldest one dropped
    assert sorted(runs["K0"]) == [
        "kernels.healpix:npix_of:(int64,)",
        "kernels.healpix:nside_of:(int64,)",
    ]


def test_a_file_of_another_format_is_ignored_then_replaced(tmp_path):
    (tmp_path / "llama").mkdir()
    record = tmp_path / "llama" / _RECORD_FILE
    for text in ('["kernels.healpix:npix_of:(int64,)"]', "{not json", '{"A": "npix_of"}'):
        record.write_text(text)  # a list (an older record's format), garbage, no list
        assert json.loads(_python(_LOAD, tmp_path, "A"))["loaded"] == 0
        assert json.loads(_python(_LOAD, tmp_path, None))["loaded"] == 0
    _python(_RECORD, tmp_path, "A")
    assert json.loads(record.read_text()) == {"A": ["kernels.healpix:npix_of:(int64,)"]}


def test_a_home_that_cannot_be_written_records_nothing_and_fails_nothing(tmp_path):
    blocked = tmp_path / "file"  # the cache folder's place is a plain file
    blocked.write_text("")
    _python(_RECORD, blocked, "A")  # exits 0: nothing raised
    assert json.loads(_python(_LOAD, blocked, "A"))["loaded"] == 0
    assert blocked.read_text() == ""
