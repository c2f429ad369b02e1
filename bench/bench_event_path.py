"""An event's path outside the background trials, stage by stage (issue 8).

The claim (bench/README.md, "Realistic events end to end", "Event path outside the
trials"): what one realistic event costs in CPU between its inputs and its trials,
and what each cut saved. Stages, each timed per event with ``time.process_time``
over the BAYESTAR maps of ``/work/shared/data/bayestar`` (``--maps``), one
IceCube-like list per map (`llama.science.sim.simulate_background_neutrinos`):

* ``fits``: ``read_sky_map`` of the map's FITS file (LvcSkymapHdf5 reads it);
* ``fits-astropy``: the same, with the fast FITS path declined (astropy.io.fits),
  the in-process baseline of ``fits``;
* ``hdf5-write`` / ``hdf5-read``: the internal copy written and read back (the
  significance handler reads it);
* ``hdf5 write+meta+read``: what an event does with its copy (written, its meta
  read for the distances, read for the significance), one map after the other;
* ``GPS <-> MJD``: the neutrinos' MJD -> GPS and the GW time's GPS -> MJD;
* ``statistic``: ``EventModel(...)`` and ``evaluate`` of the observed list, as the
  significance handler does before its trials (map preparation, single and pair
  overlaps, background terms, detector frame); ``of which the map prepared``: the
  model and its ``prepared_map`` alone (the overlap kernels' tree of the map);
* ``watchdog``: one handler's ``_call_with_timeout`` of a function that does nothing,
  with a timeout (the handlers that fetch) and without;
* ``event, outside the trials``: the 16 events whole through ``run_batch`` (the
  realistic pipeline of ``bench_realistic.py``, synchronous, ``LLAMA_N_TRIALS=20``),
  each round into fresh event directories under ``--events-in``, less the CPU spent
  inside ``trial_pvalues``: the issue's "CPU an event costs outside the trials" (its
  handlers, riders, checksums, runner bookkeeping). The directories default to
  ``/dev/shm``: on this VM's disk, creating a file cost 0.03-1.2 ms of system CPU
  depending on where the directory lies, ~17 new files per event.

Each stage runs ``--repeat`` rounds over all maps; the best round is kept (other work
on the machine only ever slows a round), and with two trees the median over the rounds
of their ratio is printed too. ``--against REV`` also runs this script on
the tree of git revision ``REV`` (``bench/revisions.py``: kept with its Numba cache
for the next run) or the source tree in directory ``REV`` in a second process, the two processes taking
turns round by round, and prints each stage's time there and the ratio: before and
after a change under the same load.

Run: ``python bench/bench_event_path.py --against e2f2faf``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BAYESTAR = Path("/work/shared/data/bayestar")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from revisions import environment, tree_at  # noqa: E402


def events(maps: Path, seed: int):
    """(path, model keywords, neutrinos, t_gw) of each map's event."""
    import numpy as np

    from llama.science.sim import simulate_background_neutrinos
    from llama.science.times import mjd_to_gps

    catalogue = json.loads((maps / "events.json").read_text())
    out = []
    for k, name in enumerate(sorted(n for n in catalogue if (maps / f"{n}.fits").exists())):
        info = catalogue[name]
        mjd = float(info["mjd_obs"])
        nu = simulate_background_neutrinos(np.random.default_rng(seed + k), mjd)
        kw = {"rho": float(info["network_snr"]), "rbar": float(info["distmean_mpc"]),
              "population": info["population"], "t_gw_mjd": mjd}  # fmt: skip
        out.append((maps / f"{name}.fits", kw, nu, float(mjd_to_gps(mjd))))
    return out


def stages(evs, tmp: Path, events_in: Path | None = None) -> dict:
    """name -> callable running the stage once for every event; a stage may return the
    CPU seconds of its own run to leave out (the whole events' trials)."""
    from llama import event as event_module
    from llama.science import skymap as S
    from llama.science.odds import EventModel

    maps = [S.read_sky_map(path) for path, *_ in evs]
    h5 = [tmp / f"m{k}.hdf5" for k in range(len(evs))]
    for m, p in zip(maps, h5, strict=True):
        S.write_hdf5(p, m)

    def fits():
        for path, *_ in evs:
            S.read_sky_map(path)

    def fits_astropy():
        try:
            from llama.science import fits_bintable
        except ImportError:  # before the fast path: read_sky_map is astropy's
            return fits()
        fast = fits_bintable.read_bintable
        fits_bintable.read_bintable = lambda data: None
        try:
            fits()
        finally:
            fits_bintable.read_bintable = fast

    def hdf5_write():
        for m, p in zip(maps, h5, strict=True):
            S.write_hdf5(p, m)

    def hdf5_read():
        for p in h5:
            S.read_hdf5(p)

    def hdf5_event():
        # what an event does with its copy: LvcSkymapHdf5 writes it, LvcDistancesJson
        # reads its meta, the significance reads the map
        for m, p in zip(maps, h5, strict=True):
            S.write_hdf5(p, m)
            S.read_hdf5_meta(p)
            S.read_hdf5(p)

    def times():
        from llama.science.times import gps_to_mjd, mjd_to_gps

        for _, _kw, nu, t_gw in evs:
            mjd_to_gps(nu.mjd)  # the neutrinos' times (EventModel.evaluate)
            gps_to_mjd(t_gw)  # the GW time (the significance's inputs)

    def statistic():
        for m, (_, kw, nu, t_gw) in zip(maps, evs, strict=True):
            EventModel(m, **kw).evaluate(nu, t_gw)

    def map_prepared():
        for m, (_, kw, _nu, _t) in zip(maps, evs, strict=True):
            EventModel(m, **kw).prepared_map()

    def watchdog(timeout):
        def run():
            for _ in evs:
                event_module._call_with_timeout(lambda arg: None, None, timeout, "bench")

        return run

    whole = _whole_events(evs[0][0].parent, tmp, events_in) if events_in is not None else None

    return {
        "fits": fits,
        "fits-astropy": fits_astropy,
        "hdf5-write": hdf5_write,
        "hdf5-read": hdf5_read,
        "hdf5 write+meta+read": hdf5_event,
        "GPS <-> MJD": times,
        "statistic": statistic,
        "  of which the map prepared": map_prepared,
        "watchdog (timeout set)": watchdog(120.0),
        "watchdog (no timeout)": watchdog(None),
        **({"event, outside the trials": whole} if whole else {}),
    }


def _whole_events(maps: Path, tmp: Path, events_in: Path):
    """The stage running the 16 realistic events through ``run_batch``; it returns the
    CPU seconds spent in ``trial_pvalues`` (and in removing the last round's events)."""
    import shutil

    from bench_realistic import realistic_config, write_realistic_inputs

    from llama.batch.runner import run_batch
    from llama.science import pvalue

    names = events_names(maps)
    vectors = write_realistic_inputs(tmp / "inputs", len(names), maps, 8)
    inside = [0.0]
    trial_pvalues = pvalue.trial_pvalues

    def timed(*args, **kwargs):  # the significance imports it from the module per call
        t0 = time.process_time()
        try:
            return trial_pvalues(*args, **kwargs)
        finally:
            inside[0] += time.process_time() - t0

    pvalue.trial_pvalues = timed
    rounds = iter(range(1 << 30))

    def run():
        t0 = time.process_time()
        root = Path(tempfile.mkdtemp(prefix="bench-event-path-", dir=events_in))
        inside[0] = time.process_time() - t0
        config = realistic_config(tmp / "inputs", maps, root / str(next(rounds)), "synchronous", 1)
        summary = run_batch(vectors, config, total=len(vectors), progress=False)
        if summary.counts["done"] != len(vectors):
            raise SystemExit(f"whole events: {summary.line()}")
        t0 = time.process_time()
        shutil.rmtree(root)
        return inside[0] + time.process_time() - t0

    return run


def serve(maps: Path, seed: int, events_in: Path | None, only: str | None = None) -> None:
    """Worker mode: one JSON line of per-event ms per round asked for on stdin."""
    os.environ["LLAMA_N_TRIALS"] = "20"  # the whole events: the path, hardly any trials
    try:  # as llama batch runs events: freed memory kept for the next event
        from llama.batch.worker_processes import keep_freed_memory

        keep_freed_memory()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        evs = events(maps, seed)
        run = stages(evs, Path(tmp), events_in)
        run = {name: f for name, f in run.items() if only is None or only in name}
        for f in run.values():  # warm-up: imports, kernel loads, caches
            f()
        print(json.dumps({"ready": True}), flush=True)
        for _ in sys.stdin:
            out = {}
            for name, f in run.items():
                t0 = time.process_time()
                left_out = f() or 0.0
                out[name] = 1e3 * (time.process_time() - t0 - left_out) / len(evs)
            print(json.dumps(out), flush=True)


def _worker(tree: Path, args) -> subprocess.Popen:
    env = environment(tree, NUMBA_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--maps", str(args.maps),
           "--seed", str(args.seed), "--events-in", args.events_in,
           *(["--only", args.only] if args.only else [])]  # fmt: skip
    p = subprocess.Popen(cmd, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)  # fmt: skip
    if json.loads(p.stdout.readline()).get("ready") is not True:
        raise SystemExit(f"the bench in {tree} did not start")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=Path, default=BAYESTAR, help="BAYESTAR maps directory")
    parser.add_argument("--seed", type=int, default=8, help="seed of the neutrino lists (8)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds per stage (7)")
    parser.add_argument("--against", metavar="REV",
                        help="also time git revision REV, or the source tree in directory REV")  # fmt: skip
    parser.add_argument("--events-in", default="/dev/shm" if os.access("/dev/shm", os.W_OK)
                        else tempfile.gettempdir(),
                        help="where the whole events' directories go (/dev/shm; 'none': "
                        "leave that stage out)")  # fmt: skip
    parser.add_argument("--only", metavar="TEXT",
                        help="time only the stages whose name contains TEXT")  # fmt: skip
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.maps, args.seed, None if args.events_in == "none" else Path(args.events_in),
              args.only)  # fmt: skip
        return 0
    print("before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    trees = {"this tree": REPO}
    if args.against:  # a revision's tree, kept with its Numba cache, or a directory
        trees[args.against] = tree_at(args.against)
    workers = {name: _worker(tree, args) for name, tree in trees.items()}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for r in range(args.repeat):  # the trees take turns, which goes first alternating
        for name in list(workers)[:: 1 if r % 2 == 0 else -1]:
            p = workers[name]
            p.stdin.write("round\n")
            p.stdin.flush()
            for stage, ms in json.loads(p.stdout.readline()).items():
                times[name].setdefault(stage, []).append(ms)
    for p in workers.values():
        p.stdin.close()
        p.wait()
    print("after: ", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    n = len(events_names(args.maps))
    print(f"{n} BAYESTAR events, best of {args.repeat} rounds, CPU ms per event")
    names = list(trees)
    head = f"{'stage':26s}" + "".join(f"{name:>14s}" for name in names)
    print(head + ("   ratio  median of the rounds' ratios" if len(names) == 2 else ""))
    for stage in times[names[0]]:
        row = f"{stage:26s}" + "".join(f"{min(times[name][stage]):14.2f}" for name in names)
        if len(names) == 2:
            new, old = times[names[0]][stage], times[names[1]][stage]
            ratios = sorted(b / a for a, b in zip(new, old, strict=True) if a > 0)
            median = ratios[len(ratios) // 2] if ratios else float("nan")
            row += f"   {min(old) / min(new):5.2f}x  {median:5.2f}x"
        print(row)
    return 0


def events_names(maps: Path) -> list[str]:
    catalogue = json.loads((maps / "events.json").read_text())
    return [n for n in catalogue if (maps / f"{n}.fits").exists()]


if __name__ == "__main__":
    sys.exit(main())
