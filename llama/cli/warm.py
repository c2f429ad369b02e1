"""``llama warm``: compile the Numba kernels into Numba's on-disk cache, in parallel.

The kernels (``kernels/``) are compiled by Numba the first time they run and kept in
its cache (``kernels/__pycache__``, or ``NUMBA_CACHE_DIR``), from which later runs load
them in a second or two. Without this step the first ``llama batch`` after an install
compiles them itself, one after another, while its first events wait (about 25 s of
CPU on a 2-core laptop, bench/bench_startup.py). ``llama warm`` does that work once, at
install time, in several worker processes: each job runs one part of the statistic on
a small synthetic event through the same Python code as ``llama batch`` (so the
kernels compile for exactly the argument types a run passes), and the last job runs
an event with both kinds of on-the-fly trials, which loads everything the other jobs
compiled and compiles whatever they missed. Running it again loads everything and
compiles nothing.

It also compiles the Python bytecode of the ``llama`` and ``kernels`` packages
(``.pyc`` files in their ``__pycache__`` folders, :func:`compile_bytecode`), which Python
reads at every later start, even where ``PYTHONDONTWRITEBYTECODE`` is set (that variable
only stops Python from writing them). Without them each process of a run compiles
every module it imports from source: the fork server of ``llama batch`` spent 1.49 s of
CPU preloading instead of 1.13 s, and the first event of a 20-event command ended
0.3-0.6 s later. A package installed read-only is skipped (its installer compiled it,
or nothing can be written there); a source edited later is compiled from source again
until the next ``llama warm`` (Python checks each ``.pyc`` against its source).

Kernels run single-threaded in the workers, as in ``llama batch`` (one level of
parallelism: ``llama.batch.schedulers``), so the multi-threaded ``prange`` versions
that only large calls from Python use are left to compile on first use.

Examples
--------
Shell::

    llama warm              # as many worker processes as cores, at most 4
    llama warm --jobs 1     # one after another

>>> from llama.cli.warm import JOBS, parser
>>> parser().parse_args(["--jobs", "2"]).jobs
2
>>> list(JOBS)
['overlaps', 'statistic', 'screen', 'flat', 'doublets', 'trials']
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from llama.version import __version__

__all__ = ["JOBS", "compile_bytecode", "main", "parser", "run_job"]

#: The packages whose bytecode ``llama warm`` compiles (everything LLAMA installs).
PACKAGES = ("llama", "kernels")


def parser() -> argparse.ArgumentParser:
    """The argparse parser of ``llama warm`` (no heavy imports)."""
    p = argparse.ArgumentParser(
        prog="llama warm",
        description="Compile the Numba kernels of the statistic into Numba's cache "
        "(kernels/__pycache__, or NUMBA_CACHE_DIR), in parallel worker processes, so that "
        "the first 'llama batch' after an install loads them instead of compiling them "
        "while its events wait. Run once after 'pip install'; running it again loads "
        "everything and compiles nothing. It also compiles the Python bytecode (.pyc) of "
        "the llama and kernels packages, which every later process reads instead of "
        "compiling the modules from source (skipped where they are read-only).",
    )
    p.add_argument(
        "-V", "--version", action="version", version=__version__,
        help="Print the version number and exit.",
    )  # fmt: skip
    p.add_argument(
        "-j", "--jobs", type=int, default=None, metavar="N",
        help="worker processes (default: the number of cores, at most 4)",
    )  # fmt: skip
    p.add_argument(
        "--only", nargs="+", metavar="JOB", choices=list(JOBS),
        help=f"run only these jobs, in this order ({', '.join(JOBS)}); default: all",
    )  # fmt: skip
    return p


# --------------------------------------------------------------------------------------
# the jobs: each runs part of the statistic on one small synthetic event
# --------------------------------------------------------------------------------------
def _event(t_gw_mjd: float | None = None):
    """(model, neutrino arrays) of a small synthetic event.

    The map is a multi-order map (NUNIQ) at HEALPix order 4 with one Gaussian blob
    around RA 120, Dec -30 deg; the six neutrinos hold two close pairs at the blob
    (so doublets are found) and two far from it. Zenith and azimuth are given, so
    without ``t_gw_mjd`` no detector frame (astropy) is needed.
    """
    import healpy as hp
    import numpy as np

    from llama.science.odds import EventModel
    from llama.science.skymap import SkyMap

    order = 4
    nside = 1 << order
    ipix = np.arange(12 * nside * nside, dtype=np.int64)
    x, y, z = hp.pix2vec(nside, ipix, nest=True)
    cx, cy, cz = hp.ang2vec(120.0, -30.0, lonlat=True)
    rho = np.exp((x * cx + y * cy + z * cz - 1.0) / np.radians(10.0) ** 2) + 1e-6
    rho /= rho.sum() * hp.nside2pixarea(nside)
    skymap = SkyMap(uniq=4 * 4**order + ipix, probdensity=rho)
    model = EventModel(skymap, 12.0, 150.0, "bns", t_gw_mjd=t_gw_mjd)
    ra = np.array([120.0, 120.3, 119.0, 118.8, 40.0, 300.0])
    dec = np.array([-30.0, -29.8, -31.0, -31.1, 10.0, 60.0])
    nu = {
        "ra": ra,
        "dec": dec,
        "sigma": np.array([0.5, 1.0, 2.0, 0.3, 1.0, 3.0]),
        "energy": np.array([3e3, 1e4, 5e2, 2e3, 3e4, 8e3]),
        "dt": np.array([-100.0, 20.0, 0.0, 150.0, -400.0, 50.0]),
        "zenith": 90.0 + dec,
        "azimuth": ra % 360.0,
    }
    return model, nu


def _overlaps() -> None:
    """The sky map's preparation and the single-neutrino PSF overlap."""
    model, nu = _event()
    model.signal_overlap(nu["ra"], nu["dec"], nu["sigma"], nu["energy"])


def _statistic() -> None:
    """Everything in one event's statistic but the overlaps: background densities
    (primaries, partners, whole lists), time windows, doublet search, odds."""
    import numpy as np

    model, nu = _event()
    # stand-ins for the overlaps, which the 'overlaps' and 'doublets' jobs compile
    model._overlaps = lambda ra, dec, sig, eps, w: (np.ones(ra.size), np.ones(ra.size))
    model.pair_overlap = lambda ra, dec, sig, eps_i, eps_j, pi, pj, key=None: np.ones(pi.size)
    n = nu["ra"].size
    args = (nu["ra"], nu["dec"], nu["sigma"], nu["energy"], nu["dt"], nu["zenith"])
    model.evaluate_batch(*args, np.array([0, n]), azimuth_deg=nu["azimuth"])
    model.background.o3_list(nu["zenith"], nu["energy"], offsets=np.array([0, 2, n]))


def _screen() -> None:
    """The background trials' screen of the map (bounds of its density by PSF size) and
    the min/max pyramid that bounds their overlaps."""
    import numpy as np

    from llama.science.fast_trials import TrialScreen

    model, nu = _event()
    screen = TrialScreen(model.skymap)
    ra, dec, sig = (np.radians(nu[k]) for k in ("ra", "dec", "sigma"))
    screen.relevant(ra, dec, sig)
    screen.density_near(ra, dec, sig)
    screen.density(ra, dec)
    from llama.science.background_trials import SkyBounds  # background trials' bounds

    SkyBounds(model.skymap).overlap(ra, dec, sig, np.ones((ra.size, 18)), 0)


def _flat_map() -> None:
    """The preparation of a flat (single-resolution NESTED) map, as older LVK maps are."""
    import healpy as hp

    from llama.science.odds import EventModel
    from llama.science.skymap import SkyMap

    multi_order, _ = _event()
    nside = 1 << 3
    prob = hp.ud_grade(multi_order.skymap.probability(), nside, order_in="NESTED", power=-2)
    flat = SkyMap(probdensity=prob / hp.nside2pixarea(nside), nside=nside)
    EventModel(flat, 12.0, 150.0, "bns").prepared_map()


def _doublets() -> None:
    """The PSF overlap of neutrino pairs, exact and aimed (after 'overlaps', whose
    helpers it shares)."""
    import numpy as np

    model, nu = _event()
    ra, dec, sig = (np.radians(nu[k]) for k in ("ra", "dec", "sigma"))
    pi, pj = np.array([0, 2]), np.array([1, 3])
    model.pair_overlap(ra, dec, sig, nu["energy"][pi], nu["energy"][pj], pi, pj)
    # the background trials' pair looks aimed at thresholds (BackgroundTrials._pair_looks;
    # the trials job's few trials seldom need one): one stopped, one run to the end
    from kernels.overlap import psf_pair_overlap_targets
    from llama.science.signal_tables import SINDEC_EDGES

    rows_i, rows_j = (model.tables.dec_rows(nu["energy"][p]) for p in (pi, pj))
    psf_pair_overlap_targets(
        model.prepared_map(), ra[pi], dec[pi], sig[pi], rows_i, ra[pj], dec[pj], sig[pj],
        rows_j, SINDEC_EDGES, model.psf_kind, np.array([0, 1, 2]), np.array([-1.0, -np.inf]),
        np.array([-0.5, np.inf]), 0.05, narrow=0.1, rtol=model.overlap_rtol,
    )  # fmt: skip


def _trials() -> None:
    """One event as ``CoincSignificanceI3Lvc`` computes it: the statistic with the
    detector frame at t_gw, then background and scramble trials (fast paths)."""
    import numpy as np

    from llama.science.neutrinos import NeutrinoList
    from llama.science.pvalue import trial_pvalues
    from llama.science.times import mjd_to_gps

    t_mjd = 58598.345891
    model, nu = _event(t_gw_mjd=t_mjd)
    neutrinos = NeutrinoList(
        mjd=t_mjd + nu["dt"] / 86400.0,
        ra=nu["ra"],
        dec=nu["dec"],
        sigma=nu["sigma"],
        energy=nu["energy"],
        type=np.full(nu["ra"].size, "observation"),
    )
    observed = model.evaluate(neutrinos, float(mjd_to_gps(t_mjd)))
    for kind in ("background", "scramble"):
        trial_pvalues(model, observed, n_trials=50, kind=kind, seed=1)
    _scramble_tables(model, observed)


def _scramble_tables(model, observed) -> None:
    """Scrambles as many trials see them: every neutrino's RA table built and looked up
    (:mod:`kernels.ra_lookup`), trials decided at observed values some of them hold.
    The 50 trials above give each neutrino the exact kernel instead (no table pays)."""
    import numpy as np

    from llama.science.fast_trials import ScrambleTrials
    from llama.science.pvalue import scramble_sampler

    zenith = np.where(np.isfinite(observed.zenith), observed.zenith, 90.0 + observed.dec)
    lists = (observed.ra, observed.dec, observed.sigma, observed.energy, observed.dt, zenith)
    ra = scramble_sampler(*lists)(np.random.default_rng(1), 20)[0]
    for n_trials in (2000, 10_000):  # coarse tables, fine ones
        st = ScrambleTrials(model, *lists, n_trials=n_trials)
        st.decide_batch(st.bounds(ra).point, ra)


#: Job name -> (what it compiles, function). Dependencies are in :data:`AFTER`.
JOBS: dict[str, tuple[str, Callable[[], None]]] = {
    "overlaps": ("sky map preparation and PSF overlaps", _overlaps),
    "statistic": ("background densities, doublet search, odds", _statistic),
    "screen": ("the background trials' screen and bounds", _screen),
    "flat": ("preparation of flat sky maps", _flat_map),
    "doublets": ("PSF overlaps of neutrino pairs", _doublets),
    "trials": ("one event with background and scramble trials (RA tables too)", _trials),
}
#: Jobs that start only once these are done (they load what those compiled instead
#: of compiling it a second time in parallel).
AFTER: dict[str, tuple[str, ...]] = {
    "doublets": ("overlaps",),
    "trials": ("overlaps", "statistic", "screen"),
}


# --------------------------------------------------------------------------------------
# running them
# --------------------------------------------------------------------------------------
def kernel_counts() -> tuple[int, int]:
    """(compiled, loaded from the cache) specialisations of the kernels in this process.

    Counts Numba's per-dispatcher cache statistics over the jitted functions defined in
    the imported ``kernels`` modules (a helper that is only called from compiled code
    counts when its caller compiles; a caller loaded from the cache loads it too).

    Examples
    --------
    >>> compiled, loaded = kernel_counts()
    >>> compiled >= 0 and loaded >= 0
    True
    """
    compiled = loaded = 0
    for name, mod in list(sys.modules.items()):
        if not (name == "kernels" or name.startswith("kernels.")) or mod is None:
            continue
        for value in list(vars(mod).values()):
            py_func = getattr(value, "py_func", None)
            stats = getattr(value, "stats", None)
            if stats is None or getattr(py_func, "__module__", None) != name:
                continue
            compiled += sum(stats.cache_misses.values())
            loaded += sum(stats.cache_hits.values())
    return compiled, loaded


def run_job(name: str) -> dict:
    """Run job ``name`` here; returns its name, compiled and loaded counts, CPU and
    wall seconds (what a worker process sends back)."""
    t0, c0 = time.perf_counter(), time.process_time()
    compiled0, loaded0 = kernel_counts()  # a worker process may have run other jobs
    JOBS[name][1]()
    compiled, loaded = kernel_counts()
    return {
        "job": name,
        "compiled": compiled - compiled0,
        "loaded": loaded - loaded0,
        "cpu_s": time.process_time() - c0,
        "wall_s": time.perf_counter() - t0,
        "pid": os.getpid(),
    }


def _worker_init() -> None:
    """Worker processes run the kernels on one thread each, as ``llama batch`` does,
    and leave Ctrl-C to the driver (which stops them)."""
    import signal

    from llama.batch.schedulers import KERNEL_THREAD_VARIABLES

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in KERNEL_THREAD_VARIABLES:
        os.environ[var] = "1"


def cache_location() -> str:
    """Where Numba keeps the compiled kernels: ``NUMBA_CACHE_DIR`` when set, else the
    ``__pycache__`` folders of the ``kernels`` package, or Numba's per-user cache when
    the package is installed read-only.

    Examples
    --------
    >>> "__pycache__" in cache_location() or "cache" in cache_location().lower()
    True
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    import importlib.util

    spec = importlib.util.find_spec("kernels")  # without importing Numba here
    where = os.path.dirname(spec.origin) if spec and spec.origin else "kernels"
    pycache = os.path.join(where, "__pycache__")
    if os.access(pycache if os.path.isdir(pycache) else where, os.W_OK):
        return f"the __pycache__ folders under {where}"
    # Numba's fallback (its UserWideCacheLocator: the platform's user cache folder)
    user = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numba")
    return f"Numba's per-user cache ({user} on Linux; {where} is read-only)"


def compile_bytecode(packages: Sequence[str] = PACKAGES) -> tuple[list[str], list[str]]:
    """Compile the Python bytecode of ``packages`` into their ``__pycache__`` folders.

    Returns (the folders compiled, the folders skipped): a package whose folder cannot
    be written is skipped without failing, and so is one that cannot be found. Files
    whose ``.pyc`` is current are left as they are; a file that does not compile (a
    syntax error) leaves its package among the compiled ones (Python reports it at
    import). ``compileall`` writes even where ``PYTHONDONTWRITEBYTECODE`` is set.

    Examples
    --------
    >>> compiled, skipped = compile_bytecode(["no_such_package_here"])
    >>> compiled, skipped
    ([], ['no_such_package_here'])
    """
    import compileall
    import importlib.util

    compiled, skipped = [], []
    for name in packages:
        spec = importlib.util.find_spec(name)  # without importing it
        where = list(spec.submodule_search_locations or []) if spec else []
        if not where:
            skipped.append(name)
            continue
        for folder in where:
            pycache = os.path.join(folder, "__pycache__")
            if not os.access(pycache if os.path.isdir(pycache) else folder, os.W_OK):
                skipped.append(folder)
                continue
            compileall.compile_dir(folder, quiet=2)  # silent, whatever it finds
            compiled.append(folder)
    return compiled, skipped


class _Progress:
    """One status line, rewritten in place on a terminal, one line per job otherwise."""

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()

    def update(self, running: Sequence[str], finished: dict | None = None) -> None:
        if finished is not None:
            self.done += 1
        elapsed = time.perf_counter() - self.t0
        if self.tty:
            now = ", ".join(running) if running else "-"
            line = (
                f"llama warm: {self.done}/{self.total} jobs done, {elapsed:.0f} s; running: {now}"
            )
            self.stream.write("\r\033[K" + line)
        elif finished is not None:
            self.stream.write(
                f"llama warm: {self.done}/{self.total} {finished['job']}: "
                f"{finished['compiled']} compiled, {finished['loaded']} loaded "
                f"({finished['cpu_s']:.1f} s CPU), {elapsed:.1f} s\n"
            )
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_jobs(names: Sequence[str], workers: int, progress: _Progress) -> list[dict]:
    """Run the jobs on ``workers`` processes, each job once the jobs of :data:`AFTER`
    that are also being run are done; returns their records in the order they ended.

    Raises RuntimeError naming the job that failed. On any exit before the end
    (a failed job, Ctrl-C) the worker processes are terminated at once: what they
    compiled so far is in the cache, whole (Numba writes a kernel's file once it has
    compiled it, and replaces files atomically).
    """
    import multiprocessing
    import queue

    pending, running, records = list(names), set(), []
    ended: queue.Queue = queue.Queue()  # (name, record or exception), from the pool's thread
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    pool = ctx.Pool(workers, initializer=_worker_init)
    try:
        while pending or running:
            finished_names = {r["job"] for r in records}
            for name in list(pending):
                if len(running) >= workers:
                    break
                if all(d in finished_names or d not in names for d in AFTER.get(name, ())):
                    pool.apply_async(
                        run_job, (name,),
                        callback=lambda rec, n=name: ended.put((n, rec)),
                        error_callback=lambda exc, n=name: ended.put((n, exc)),
                    )  # fmt: skip
                    running.add(name)
                    pending.remove(name)
            progress.update(sorted(running))
            try:
                name, rec = ended.get(timeout=1.0)
            except queue.Empty:
                continue
            running.discard(name)
            if isinstance(rec, BaseException):
                raise RuntimeError(f"job {name!r} ({JOBS[name][0]}) failed: {rec!r}") from rec
            records.append(rec)
            progress.update(sorted(running), rec)
        pool.close()
    finally:
        pool.terminate()  # no-op for idle workers after close(); stops running ones
        pool.join()
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``llama warm``; returns the exit status."""
    args = parser().parse_args(argv)
    names = list(dict.fromkeys(args.only)) if args.only else list(JOBS)
    workers = args.jobs if args.jobs is not None else min(4, os.cpu_count() or 1)
    if workers < 1:
        print(f"llama warm: error: --jobs must be at least 1, got {workers}", file=sys.stderr)
        return 2
    workers = min(workers, len(names))
    where = cache_location()
    procs = f"{workers} worker process{'es' if workers > 1 else ''}"
    print(f"llama warm: compiling the Numba kernels into {where} with {procs}")
    t0 = time.perf_counter()
    compiled_dirs, skipped = compile_bytecode()  # first: the workers then start from it
    if compiled_dirs:
        print(
            f"llama warm: Python bytecode of {', '.join(PACKAGES)} compiled "
            f"({time.perf_counter() - t0:.1f} s)"
        )
    if skipped:
        print(f"llama warm: Python bytecode not compiled in {', '.join(skipped)} (read-only)")
    sys.stdout.flush()
    progress = _Progress(len(names))
    try:
        records = run_jobs(names, workers, progress)
    except RuntimeError as exc:
        progress.close()
        print(f"llama warm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.close()
        print(
            "llama warm: interrupted; the kernels compiled so far are cached: run "
            "'llama warm' again to compile the rest",
            file=sys.stderr,
        )
        return 130
    progress.close()
    wall = time.perf_counter() - t0
    compiled = sum(r["compiled"] for r in records)
    loaded = sum(r["loaded"] for r in records)
    cpu = sum(r["cpu_s"] for r in records)
    per_worker: dict[int, float] = {}
    for r in records:
        per_worker[r["pid"]] = per_worker.get(r["pid"], 0.0) + r["cpu_s"]
    print(
        f"llama warm: done in {wall:.1f} s ({cpu:.1f} s CPU in the jobs, the busiest worker "
        f"{max(per_worker.values(), default=0.0):.1f} s): {compiled} kernel specialisations "
        f"compiled, {loaded} loaded from the cache; later runs load them from there"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
