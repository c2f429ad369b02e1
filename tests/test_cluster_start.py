"""Our own local Dask cluster's start: what the driver does while its workers start."""

import json
import os
import subprocess
import sys

import pytest

_START = """
import json, sys
from multiprocessing import forkserver

from llama.batch.cluster import local_cluster
from llama.batch.worker_processes import CLUSTER_PRELOAD

if __name__ == "__main__":
    cluster = local_cluster(1)
    try:
        from distributed import Client

        with Client(cluster) as client:
            pids = list(client.run(lambda: __import__("os").getpid()).values())
        print(json.dumps({
            "pandas": "pandas" in sys.modules,
            "preload": forkserver._forkserver._preload_modules,
            "ours": list(CLUSTER_PRELOAD),
            "pids": pids,
        }))
    finally:
        cluster.close()
"""


def test_the_driver_leaves_the_fork_servers_preload_to_us(tmp_path):
    # distributed's first nanny would import every package it might preload (pandas:
    # ~0.4 s of the driver's CPU) to set a preload list that our running fork server
    # never reads; our cluster keeps our list and the workers still start, forked
    pytest.importorskip("distributed")
    script = tmp_path / "start.py"
    script.write_text(_START)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=300, check=True)  # fmt: skip
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["pandas"] is False
    assert seen["preload"] == seen["ours"]
    assert len(seen["pids"]) == 1 and seen["pids"][0] != os.getpid()


def _heartbeat_running(dask_worker) -> bool:
    return dask_worker.periodic_callbacks["heartbeat"].is_running()


def test_closing_our_cluster_stops_the_workers_heartbeats_first(capfd):
    # a heartbeat on its way as the scheduler retired its worker logged an ERROR
    # with a traceback on the command's stderr (1 close in 6)
    pytest.importorskip("distributed")
    from llama.batch.cluster import _stop_heartbeats
    from llama.batch.schedulers import make_pool

    pool = make_pool("distributed", 2, len)
    try:
        pool.submit("abc")
        assert pool.next_finished(timeout=120) == ("abc", 3)
        assert all(pool.client.run(_heartbeat_running).values())
        _stop_heartbeats(pool.client)
        assert not any(pool.client.run(_heartbeat_running).values())
    finally:
        pool.close()
    assert "ERROR" not in capfd.readouterr().err
