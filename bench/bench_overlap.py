"""Benchmark of the PSF overlap kernels (kernels.overlap).

Claims measured (2-core x86 goals): one event, a ~20,000-row multi-order map up to
order 11 with 7 neutrinos and 2 pairs, <= 5 ms after compilation (map preparation
included, once per event); >= 1000x faster than
a naive flattened full-sky numpy evaluation of the same sums; >= 70,000 overlaps per
second per core for neutrinos scattered over the sky; and the peak memory.

The sky weight of each neutrino is the statistic's: O3's signal energy density
a(eps_i, theta = 90 deg + dec) per sin(dec) band (``SignalTables.dec_rows`` over
``SINDEC_EDGES``), evaluated at the energy O3's background steps leave (raised to the
zenith band's minimum, moved while the windows widen; shipped background sample). The naive sums read a per pixel
with ``SignalTables.energy_density`` at the pixel's own zenith, independently of the
band rows the kernels take.

Run: ``python bench/bench_overlap.py [--quick] [--pairs N] [--baseline REV]``
(``--quick`` times the naive sum on a fraction of the sky and extrapolates).
``--baseline REV`` also times the kernels as they were at git revision REV
(``kernels/overlap.py`` or the ``kernels/overlap/`` package, unpacked under the temporary
directory with its own Numba cache): the event, the trials and random pairs (the
doublets of background trials), each side in processes of its own (``--rounds`` each,
alternated), so that the ratio new / baseline holds under whatever load the machine has
and neither side's calls go through Numba's Python typeof as a second copy's did in one
process. Prints a table; writes
nothing outside the temporary directory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import healpy as hp
import numpy as np
from numba import get_num_threads, set_num_threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import kernels.overlap as KO  # noqa: E402
from kernels.overlap import (  # noqa: E402
    PSF_GAUSS,
    prepare_map,
    psf_overlap_prepared,
)
from llama.science.background import load_background_sample  # noqa: E402
from llama.science.signal_tables import SINDEC_EDGES, load_signal_tables  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from revisions import RevisionError, module_at, package_at, source_at  # noqa: E402

DEG = math.pi / 180
MAX_ORDER = 11
TABLES = load_signal_tables()  # O3's a(eps, theta) [GeV^-1], the statistic's sky weight
BACKGROUND = load_background_sample()


def energy_eval(dec, energy):
    """The energy [GeV] at which the statistic reads a(eps, theta): O3's background steps
    at zenith 90 deg + dec (``dec`` in rad)."""
    return BACKGROUND.o3_primary(90.0 + np.degrees(dec), energy).energy_eval


def blob_density(vec, centre, kappa):
    c = hp.ang2vec(math.pi / 2 - centre[1], centre[0])
    return kappa / (2 * np.pi * -np.expm1(-2 * kappa)) * np.exp(kappa * (vec @ c - 1))


def make_map(thresh):
    """Two Fisher blobs (30 and 300 deg^2 at 90%) plus a 1e-4 floor, refined while a
    pixel's probability bound exceeds ``thresh`` (like BAYESTAR's adaptive maps)."""
    blobs = [((1.0, 0.3), 0.7, 30.0), ((1.3, 0.1), 0.3, 300.0)]
    uniq, rho = [], []
    ipix = np.arange(12)
    for order in range(MAX_ORDER + 1):
        nside = 2**order
        vec = np.array(hp.pix2vec(nside, ipix, nest=True)).T
        dens = np.full(ipix.size, 1e-4 / (4 * np.pi))
        dmax = dens.copy()
        for centre, weight, area in blobs:
            kappa = 2 * np.pi * np.log(10) / (area * DEG**2)
            dens += weight * blob_density(vec, centre, kappa)
            c = hp.ang2vec(math.pi / 2 - centre[1], centre[0])
            psi = np.maximum(np.arccos(np.clip(vec @ c, -1, 1)) - hp.max_pixrad(nside), 0)
            dmax += weight * kappa / (2 * np.pi) * np.exp(kappa * (np.cos(psi) - 1))
        split = (dmax * hp.nside2pixarea(nside) > thresh) & (order < MAX_ORDER)
        uniq.append(4 * 4**order + ipix[~split])
        rho.append(dens[~split])
        ipix = (4 * ipix[split][:, None] + np.arange(4)).ravel()
    uniq, rho = np.concatenate(uniq), np.concatenate(rho)
    o = (np.log2(uniq // 4) // 2).astype(int)
    rho /= np.sum(rho * hp.nside2pixarea(2**o))
    return uniq, rho


def event_neutrinos(rng):
    """7 neutrinos: 3 near the map's blobs, 4 random; pairs (0,1) and (2,3)."""
    ra = np.array([1.0, 1.02, 1.3, 1.28, 0, 0, 0])
    dec = np.array([0.3, 0.31, 0.1, 0.12, 0, 0, 0])
    ra[4:] = rng.uniform(0, 2 * np.pi, 3)
    dec[4:] = np.arcsin(rng.uniform(-1, 1, 3))
    sigma = np.array([0.5, 1.0, 2.0, 0.3, 1.0, 0.2, 3.0]) * DEG
    energy = energy_eval(dec, 10 ** rng.uniform(2.5, 5, 7))
    return ra, dec, sigma, energy, np.array([0, 2]), np.array([1, 3])


def random_pairs(rng, n):
    """Arguments of ``psf_pair_overlap_prepared`` (weighted, Gaussian) for ``n`` random
    pairs: the first member near the blobs (within 15 deg) or anywhere, the second at up
    to 5 (s1 + s2) from it; sigma 0.2-3 deg, O3's evaluation energies."""
    s1, s2 = (np.exp(rng.uniform(np.log(0.2), np.log(3.0), n)) * DEG for _ in range(2))
    near = rng.uniform(size=n) < 0.5
    ra1 = np.where(near, 1.0 + rng.uniform(-0.25, 0.25, n), rng.uniform(0, 2 * np.pi, n))
    dec1 = np.where(near, 0.3 + rng.uniform(-0.25, 0.25, n), np.arcsin(rng.uniform(-1, 1, n)))
    sep = rng.uniform(0, 5, n) * (s1 + s2)
    pa = rng.uniform(0, 2 * np.pi, n)
    v = np.array(hp.ang2vec(np.pi / 2 - dec1, ra1))
    east = np.cross([0.0, 0.0, 1.0], v)
    east /= np.linalg.norm(east, axis=1)[:, None]
    north = np.cross(v, east)
    t = np.cos(pa)[:, None] * north + np.sin(pa)[:, None] * east
    w = np.cos(sep)[:, None] * v + np.sin(sep)[:, None] * t
    th, ra2 = hp.vec2ang(w)
    dec2 = np.pi / 2 - th
    rows1 = TABLES.dec_rows(energy_eval(dec1, 10 ** rng.uniform(2.5, 5, n)))
    rows2 = TABLES.dec_rows(energy_eval(dec2, 10 ** rng.uniform(2.5, 5, n)))
    return ra1, dec1, s1, rows1, ra2, dec2, s2, rows2, SINDEC_EDGES, PSF_GAUSS


def baseline_kernels(rev):
    """The overlap kernels as they were at git revision ``rev``, imported as
    ``kernels.overlap_baseline`` (``kernels.overlap`` stays the working tree's) by
    ``bench/revisions.py``, kept with their own Numba cache; their relative imports of
    the kernels' sibling modules (``kernels.healpix``, ``kernels.plain``) reach the
    working tree's."""
    try:
        if source_at(rev, "kernels/overlap.py") is not None:  # the one-module kernels
            return module_at(rev, "kernels/overlap.py", "kernels.overlap_baseline")
        return package_at(rev, "kernels/overlap", "kernels.overlap_baseline")
    except RevisionError as err:
        raise SystemExit(
            f"--baseline {rev}: no kernels/overlap.py nor kernels/overlap/ ({err})"
        ) from None


def one_event(uniq, rho, nu, ko=KO):
    """The event as the statistic runs it: the map prepared once (its quadtree, bounds
    and moments), the a(eps, dec) rows of the 7 neutrinos, then the 7 single overlaps
    and the 2 pairs on it (with the kernels of module ``ko``)."""
    ra, dec, sigma, energy, pi, pj = nu
    pm = ko.prepare_map(uniq, rho)
    rows = TABLES.dec_rows(energy)
    ov = ko.psf_overlap_prepared(pm, ra, dec, sigma, rows, SINDEC_EDGES, PSF_GAUSS)
    pr = ko.psf_pair_overlap_prepared(
        pm, ra[pi], dec[pi], sigma[pi], rows[pi], ra[pj], dec[pj], sigma[pj], rows[pj],
        SINDEC_EDGES, PSF_GAUSS,
    )  # fmt: skip
    return ov, pr


def naive(uniq, rho, nu, fraction=1.0, chunk=1 << 20):
    """Flatten to order 11 (50.3 M pixels) chunk by chunk and sum the same formula."""
    ra, dec, sigma, energy, pi, pj = nu
    o = (np.log2(uniq // 4) // 2).astype(np.int64)
    lo = (uniq - 4 * 4**o) << (2 * (MAX_ORDER - o))
    idx = np.argsort(lo)
    lo, dens = lo[idx], rho[idx]
    nside = 2**MAX_ORDER
    npix = 12 * nside**2
    area = hp.nside2pixarea(nside)
    vnu = np.array(hp.ang2vec(np.pi / 2 - dec, ra))
    ov = np.zeros(7)
    wt = np.zeros(7)
    pov = np.zeros(2)
    pwt = np.zeros(2)
    # a(eps_k, theta) at the centre of each 10 deg zenith column (constant in a column),
    # so that each pixel costs one lookup rather than a power of ten.
    n_col = TABLES.factor.shape[1]
    a_cols = np.array([TABLES.energy_density(e, 10.0 * np.arange(n_col) + 5.0) for e in energy])
    stop = int(npix * fraction)
    for s in range(0, stop, chunk):
        pix = np.arange(s, min(s + chunk, stop))
        vec = np.array(hp.pix2vec(nside, pix, nest=True))
        m = dens[np.searchsorted(lo, pix, side="right") - 1] * area
        # O3 read a at theta = 90 deg + dec of each pixel centre, column int(theta / 10).
        zen_pix = 90.0 + np.degrees(np.arcsin(np.clip(vec[2], -1, 1)))
        col = np.minimum((zen_pix // 10.0).astype(np.int64), a_cols.shape[1] - 1)
        g = np.empty((7, pix.size))
        ga = np.empty((7, pix.size))
        for k in range(7):
            psi = np.arccos(np.clip(vnu[k] @ vec, -1, 1))
            g[k] = np.exp(-(psi**2) / (2 * sigma[k] ** 2)) / (2 * np.pi * sigma[k] ** 2)
            ga[k] = g[k] * a_cols[k, col]
            ov[k] += m @ g[k]
            wt[k] += m @ ga[k]
        for q in range(2):
            pov[q] += m @ (g[pi[q]] * g[pj[q]])
            pwt[q] += m @ (ga[pi[q]] * ga[pj[q]])
    return ov / fraction, wt / fraction, pov / fraction, pwt / fraction


def timeit(fn, repeat):
    fn()  # compile / warm
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return float(np.median(best)), float(np.min(best))


def workload(n_random, n_pairs):
    """The bench's inputs, the same in every process: the map, the event's neutrinos,
    ``n_random`` random-sky trial neutrinos (ra, dec, sigma, evaluation energy) and
    ``n_pairs`` random pairs (`random_pairs`)."""
    rng = np.random.default_rng(2019)
    uniq, rho = make_map(thresh=1.2e-4)
    nu = event_neutrinos(rng)
    rra = rng.uniform(0, 2 * np.pi, n_random)
    rdec = np.arcsin(rng.uniform(-1, 1, n_random))
    rsig = np.exp(rng.uniform(np.log(0.2), np.log(3.0), n_random)) * DEG
    ren = energy_eval(rdec, 10 ** rng.uniform(2.5, 5, n_random))
    return uniq, rho, nu, (rra, rdec, rsig, ren), random_pairs(rng, n_pairs)


def side_timings(ko, work, threads, rounds=50, call_rounds=3):
    """Median times [s] of the event, the random-sky trials and the random pairs with the
    kernels of module ``ko`` (the only copy of the kernels this process calls), at 1
    and ``threads`` Numba threads, and the event's weighted overlaps."""
    uniq, rho, nu, (rra, rdec, rsig, ren), pair_args = work
    t = time.perf_counter()
    weighted = one_event(uniq, rho, nu, ko)[0][1]
    out = {"first": time.perf_counter() - t, "weighted": weighted.tolist()}
    pm = ko.prepare_map(uniq, rho)
    rows = TABLES.dec_rows(ren)
    for nt in sorted({1, threads}):
        set_num_threads(nt)
        out[f"event {nt}"] = timeit(lambda: one_event(uniq, rho, nu, ko), rounds)[0]
        out[f"trials {nt}"] = timeit(
            lambda: ko.psf_overlap_prepared(pm, rra, rdec, rsig, rows, SINDEC_EDGES), call_rounds
        )[0]
        out[f"pairs {nt}"] = timeit(
            lambda: ko.psf_pair_overlap_prepared(pm, *pair_args, weighted_only=True), call_rounds
        )[0]
    set_num_threads(threads)
    return out


TAG = "@@side "  # a side's answer on its stdout starts with this


def versus_baseline(args, threads):
    """Rows comparing this tree's kernels with those of ``args.baseline``: each side in
    processes of its own (in one process, Numba would give the second copy's prepared
    map the first's type and send its every call through Python's typeof), the two
    alternated round by round, ratios of the medians over rounds."""
    sides = {"new": [], "baseline": []}
    for r in range(args.rounds):
        for side in ("new", "baseline") if r % 2 == 0 else ("baseline", "new"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--baseline", args.baseline,
                   "--side", side, "--random", str(args.random), "--pairs", str(args.pairs)]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [x for x in done.stdout.splitlines() if x.startswith(TAG)]
            if done.returncode != 0 or not lines:
                raise SystemExit(f"the {side} side failed (exit {done.returncode}):\n{done.stderr[-2000:]}")  # fmt: skip
            sides[side].append(json.loads(lines[-1][len(TAG) :]))

    def median(side, key):
        return float(np.median([x[key] for x in sides[side]]))

    same = all(x["weighted"] == sides["new"][0]["weighted"] for s in sides.values() for x in s)
    rows = [
        (f"baseline {args.baseline}: first call", f"{median('baseline', 'first'):.2f} s"),
        ("same weighted overlaps as baseline", str(same)),
    ]
    for nt in sorted({1, threads}):
        en, eb = median("new", f"event {nt}"), median("baseline", f"event {nt}")
        tn, tb = median("new", f"trials {nt}"), median("baseline", f"trials {nt}")
        pn, pb = median("new", f"pairs {nt}"), median("baseline", f"pairs {nt}")
        rows.append((f"event, {nt} thread(s): new / baseline", f"{en * 1e3:.2f} / {eb * 1e3:.2f} ms = {en / eb:.2f}"))  # fmt: skip
        rows.append((f"trials, {nt} thread(s): new / baseline", f"{args.random / tn:,.0f} / {args.random / tb:,.0f} per s = {tn / tb:.2f} (time)"))  # fmt: skip
        rows.append((f"pairs, {nt} thread(s): new / baseline", f"{args.pairs / pn:,.0f} / {args.pairs / pb:,.0f} per s = {pn / pb:.2f} (time)"))  # fmt: skip
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="naive sum on 1/8 of the sky")
    ap.add_argument("--random", type=int, default=20000, help="random-sky neutrinos")
    ap.add_argument("--pairs", type=int, default=2000, help="random pairs (doublet trials)")
    ap.add_argument("--baseline", metavar="REV", help="also time the kernels of git REV")
    ap.add_argument("--rounds", type=int, default=4, help="--baseline: processes per side")
    ap.add_argument("--side", choices=("new", "baseline"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    threads = get_num_threads()
    if args.side:  # one side's process of --baseline
        ko = baseline_kernels(args.baseline) if args.side == "baseline" else KO
        work = workload(args.random, args.pairs)
        print(TAG + json.dumps(side_timings(ko, work, threads)), flush=True)
        return

    t = time.perf_counter()
    uniq, rho, nu, (rra, rdec, rsig, ren), pair_args = work = workload(args.random, args.pairs)
    t_map = time.perf_counter() - t
    o = (np.log2(uniq // 4) // 2).astype(int)

    t = time.perf_counter()
    res = one_event(uniq, rho, nu)
    t_compile = time.perf_counter() - t
    set_num_threads(1)
    ev1_med, ev1_min = timeit(lambda: one_event(uniq, rho, nu), 50)
    set_num_threads(threads)
    evn_med, evn_min = timeit(lambda: one_event(uniq, rho, nu), 50)
    rss_kernel = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # background trials: random-sky neutrinos in one call
    n = args.random
    pm = prepare_map(uniq, rho)  # trials reuse the event's prepared map

    def trials():
        # The rows are part of each trial's cost (the statistic builds them per call).
        return psf_overlap_prepared(pm, rra, rdec, rsig, TABLES.dec_rows(ren), SINDEC_EDGES)

    set_num_threads(1)
    tr1, _ = timeit(trials, 3)
    set_num_threads(threads)
    trn, _ = timeit(trials, 3)

    # doublet trials: random pairs, half near the blobs, separations up to 5 (s1 + s2),
    # many of them wide and in the map's tail (where the absolute floor matters)
    set_num_threads(1)
    tp1, _ = timeit(lambda: KO.psf_pair_overlap_prepared(pm, *pair_args, weighted_only=True), 3)
    set_num_threads(threads)

    versus = versus_baseline(args, threads) if args.baseline else []
    frac = 0.125 if args.quick else 1.0
    t = time.perf_counter()
    nov, nwt, npov, npwt = naive(uniq, rho, nu, fraction=1.0 if not args.quick else frac)
    t_naive = time.perf_counter() - t
    rss_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    (ov, wt), (pov, pwt) = res
    rows = [
        ("map rows / max order", f"{uniq.size} / {o.max()}"),
        ("map build (numpy)", f"{t_map:.2f} s"),
        ("first call incl. compile/cache load", f"{t_compile:.2f} s"),
        (
            "event (7 nu + 2 pairs, map prepared), 1 thread",
            f"{ev1_med * 1e3:.2f} ms (min {ev1_min * 1e3:.2f})",
        ),
        (f"event, {threads} threads", f"{evn_med * 1e3:.2f} ms (min {evn_min * 1e3:.2f})"),
        (
            "naive flattened numpy" + (" (extrapolated from 1/8)" if args.quick else ""),
            f"{t_naive / (frac if args.quick else 1.0):.2f} s",
        ),
        (
            "speed-up vs naive (1 thread)",
            f"{t_naive / (frac if args.quick else 1.0) / ev1_med:.0f}x",
        ),
        ("random-sky overlaps/s, 1 thread", f"{n / tr1:,.0f}"),
        (f"random-sky overlaps/s, {threads} threads", f"{n / trn:,.0f}"),
        ("random pair overlaps/s, 1 thread", f"{args.pairs / tp1:,.0f}"),
        ("peak RSS after kernels", f"{rss_kernel:.0f} MiB"),
        ("peak RSS after naive", f"{rss_all:.0f} MiB"),
        *versus,
    ]
    w = max(len(r[0]) for r in rows)
    print(f"load average {os.getloadavg()[0]:.2f}; Numba threads {threads}")
    print(f"{'quantity':<{w}}  value")
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    if args.quick:
        return
    print()
    print("kernel vs naive (order-11 midpoint sums): max relative difference")
    big = nov > 1e-6 * nov.max()
    print(f"  overlap  {np.max(np.abs(ov[big] / nov[big] - 1)):.2e}")
    print(f"  weighted {np.max(np.abs(wt[big] / nwt[big] - 1)):.2e}")
    print(f"  pairs    {np.max(np.abs(pov / npov - 1)):.2e}")
    print(f"  weighted pairs {np.max(np.abs(pwt / npwt - 1)):.2e}")


if __name__ == "__main__":
    main()
