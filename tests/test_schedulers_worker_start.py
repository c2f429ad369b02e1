"""What each worker process pays to start: the Earth-orientation arrays of the detector
frame are parsed once (astropy's bundled IERS-A/B text, ~0.9 s) and kept in a file
for every later process, instead of parsed again by each worker; and IceCube's site
is found without importing astropy.coordinates (0.2-0.6 s).

The arrays kept must be the table's exactly, a fresh process must use them without
reading the table, and the file is not used where astropy would read another table.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from llama.science import detector_frame as df


@pytest.fixture()
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setattr(df._EarthOrientation, "_cache", None)
    return home


def _table_arrays() -> df._EarthOrientation:
    from astropy.utils import iers

    with df._offline_astropy():
        return df._EarthOrientation(iers.earth_orientation_table.get())


def test_kept_arrays_are_the_tables_exactly(cache_home):
    assert df._stored_arrays() is None  # nothing kept yet
    parsed = _table_arrays()
    df._store_arrays(parsed)
    (kept_file,) = (cache_home / "llama").glob("earth-orientation-*.npz")
    assert not list((cache_home / "llama").glob("*.tmp"))  # written by rename
    kept = df._stored_arrays()
    assert kept is not None
    for name in df._EOP_COLUMNS:
        np.testing.assert_array_equal(getattr(kept, name), getattr(parsed, name))
    mjd = np.array([58598.3459, 60000.1, 40000.0])  # inside the tables and before them
    np.testing.assert_array_equal(kept.dut1(mjd), parsed.dut1(mjd))
    np.testing.assert_array_equal(kept.polar_motion(mjd), parsed.polar_motion(mjd))


def test_a_fresh_process_uses_the_kept_arrays_without_reading_the_table(cache_home):
    df._store_arrays(_table_arrays())
    script = (
        "import json; from astropy.utils import iers\n"
        "from llama.science.detector_frame import zenith_azimuth\n"
        "z, az = zenith_azimuth([10.0, 200.0], [20.0, -45.0], [58598.3459, 59000.9])\n"
        "print(json.dumps({'z': list(z), 'az': list(az), "
        "'table_read': iers.IERS_Auto.iers_table is not None, "
        "'coordinates': 'astropy.coordinates' in __import__('sys').modules}))\n"
    )
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(cache_home)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["table_read"] is False
    assert seen["coordinates"] is False
    # the same directions through the table itself, in this process
    z, az = df.zenith_azimuth([10.0, 200.0], [20.0, -45.0], [58598.3459, 59000.9])
    np.testing.assert_allclose(seen["z"], z, rtol=0, atol=1e-12)
    np.testing.assert_allclose(seen["az"], az, rtol=0, atol=1e-12)


def test_no_kept_arrays_where_astropy_reads_a_local_finals_file(cache_home, tmp_path, monkeypatch):
    df._store_arrays(_table_arrays())
    assert df._stored_arrays() is not None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "finals2000A.all").write_text("")  # astropy would read this one instead
    assert df._stored_arrays_path() is None
    assert df._stored_arrays() is None


def test_a_table_set_by_the_user_wins_over_the_kept_arrays(cache_home):
    from astropy.utils import iers

    df._store_arrays(_table_arrays())
    mine = iers.IERS_B.open(iers.IERS_B_FILE)
    with iers.earth_orientation_table.set(mine):
        eop = df._EarthOrientation.get()
    np.testing.assert_array_equal(eop.mjd, np.asarray(mine["MJD"].value, dtype=float))


def test_icecube_site_is_astropys():
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    from llama.science import constants as C

    site = EarthLocation(lat=C.ICECUBE_LAT_DEG * u.deg, lon=C.ICECUBE_LON_DEG * u.deg)
    lon, lat, height = site.to_geodetic("WGS84")
    mine = df._icecube_geodetic()
    np.testing.assert_allclose(mine[:2], [lon.to_value(u.rad), lat.to_value(u.rad)],
                               rtol=0, atol=1e-14)  # fmt: skip
    assert abs(mine[2] - height.to_value(u.m)) < 1e-6  # metres


def _draw_after_init(queue) -> None:
    from llama.batch.worker_processes import worker_process_init

    worker_process_init()
    queue.put(float(np.random.random()))


def test_each_worker_gets_its_own_numpy_random_state():
    """Workers forked from one process start with its copy of NumPy's global random
    state; worker_process_init seeds each afresh (what Dask's initializer did)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    np.random.seed(1234)  # the state every child inherits
    inherited = np.random.random()
    np.random.seed(1234)
    queue = context.Queue()
    children = [context.Process(target=_draw_after_init, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    draws = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert all(child.exitcode == 0 for child in children)
    assert inherited not in draws  # without the seeding both would draw this
    assert draws[0] != draws[1]


_PRELOAD = """
import json, sys, threading
import llama.batch.worker_preload as preload
from llama.science import detector_frame
print(json.dumps({"failed": preload.preload(), "threads": threading.active_count(),
                  "modules": [m for m in preload.MODULES if m not in sys.modules],
                  "frame": detector_frame._EarthOrientation._cache is not None}))
"""


def test_the_fork_server_reads_what_every_event_reads_first_and_stays_one_thread(cache_home):
    """What a worker's first event imported or read (its modules, the leap seconds, the
    Earth-orientation arrays) is there once the fork server's preload ran, and the
    server has no thread besides its own: a process with threads must not fork."""
    import os

    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _PRELOAD], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"failed": [], "threads": 1, "modules": [], "frame": True}
