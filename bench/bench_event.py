"""Benchmark of the whole event statistic (llama.science.odds) and its trials.

Claims measured (goals on the 2-core machines):

* one event, a ~20,000-row multi-order map up to order 11, 7 neutrinos including
  pairs: time per event after compilation (goal <= 5 ms);
* ratio against a naive numpy evaluation of the same formula on the map flattened to
  order 11 (50.3 M pixels, processed in chunks), goal >= 1000x;
* on-the-fly trials for one map (Poisson(6.4) background lists), single thread:
  trials per second per core (goal >= 10,000);
* peak memory of one event (goal < 200 MB): the peak RSS of a fresh child process
  that runs only the kernel path (EventModel from the map arrays, the 7 neutrinos and
  the trials) and imports only what that path needs -- not healpy or astropy, which
  the benchmark itself uses to build the map and for the naive comparison. It includes
  Python, NumPy, Numba and LLVM themselves. The benchmark process's own peak before the
  naive part runs is printed too, for information.

Run: ``python bench/bench_event.py [--quick] [--trials M]``. ``--quick`` times the naive
version on 1/16 of the sky and extrapolates. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import healpy as hp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from numba import set_num_threads  # noqa: E402

from llama.science import constants as C  # noqa: E402
from llama.science.background import load_background_sample  # noqa: E402
from llama.science.odds import EventModel  # noqa: E402
from llama.science.pvalue import trial_pvalues  # noqa: E402
from llama.science.skymap import SkyMap  # noqa: E402

MAX_ORDER = 11
RHO, RBAR = 12.0, 150.0  # an ordinary BNS (O3 has no E_gw range check: any r̄ counts)
CENTRE = (math.radians(150.0), math.radians(-25.0))


def _blob(vec, kappa):
    c = hp.ang2vec(0.5 * math.pi - CENTRE[1], CENTRE[0])
    return kappa / (2 * math.pi * -math.expm1(-2 * kappa)) * np.exp(kappa * (vec @ c - 1.0))


def make_map(threshold: float = 1e-4) -> SkyMap:
    """A BAYESTAR-like map: a 20 deg^2 blob, refined while a pixel's probability > threshold."""
    kappa = 2 * math.pi * math.log(10) / (20.0 * (math.pi / 180) ** 2)  # 90% area 20 deg^2
    uniq, dens = [], []
    ipix = np.arange(12)
    for order in range(MAX_ORDER + 1):
        nside = 2**order
        vec = np.array(hp.pix2vec(nside, ipix, nest=True)).T
        d = _blob(vec, kappa) + 1e-6 / (4 * math.pi)  # a floor: no pixel is exactly empty
        # Split on the density's bound over the pixel (its nearest point to the centre).
        c = hp.ang2vec(0.5 * math.pi - CENTRE[1], CENTRE[0])
        psi = np.maximum(np.arccos(np.clip(vec @ c, -1, 1)) - hp.max_pixrad(nside), 0.0)
        d_max = kappa / (2 * math.pi) * np.exp(kappa * (np.cos(psi) - 1.0))
        split = (d_max * hp.nside2pixarea(nside) > threshold) & (order < MAX_ORDER)
        uniq.append(4 * 4**order + ipix[~split])
        dens.append(d[~split])
        ipix = (4 * ipix[split][:, None] + np.arange(4)).ravel()
    uniq, dens = np.concatenate(uniq), np.concatenate(dens)
    order = (np.log2(uniq // 4) // 2).astype(int)
    dens /= np.sum(dens * 4 * math.pi / (12 * 4.0**order))
    return SkyMap(probdensity=dens, uniq=uniq)


def event_neutrinos(rng):
    """7 neutrinos [deg, GeV, s]: 4 near the blob forming pairs, 3 anywhere."""
    ra0, dec0 = math.degrees(CENTRE[0]), math.degrees(CENTRE[1])
    ra = np.r_[ra0, ra0 + 0.4, ra0 - 1.5, ra0 - 1.2, rng.uniform(0, 360, 3)]
    dec = np.r_[
        dec0, dec0 + 0.2, dec0 + 1.0, dec0 + 0.8, np.degrees(np.arcsin(rng.uniform(-1, 1, 3)))
    ]
    sigma = np.array([0.5, 1.0, 2.0, 0.3, 1.0, 0.2, 3.0])
    energy = 10 ** rng.uniform(3.0, 5.0, 7)
    dt = rng.uniform(-400, 400, 7)
    return ra, dec, sigma, energy, dt, 90.0 + dec


def naive_event(model, nu, fraction=1.0, chunk=1 << 20):
    """The same statistic with numpy on the map flattened to order 11 (pixel centres).

    Everything but the background steps is written out again from SCIENCE.md ("The O3
    statistic, exactly"): O3's doublet selection (flat in detector azimuth and zenith
    degrees, each pair once at its first member), a(eps, theta) read per pixel at
    theta = 90 deg + dec_pix and at the energies the background steps leave, the planar
    Gaussian PSF at pixel centres, T, D_k and the odds with NaN and negatives set to 0.
    B_i, eps_i and the partners' B_j, eps_j come from the model's background sample:
    they are not what this benchmark times or checks.

    Returns ``({rule: odds_i}, number of pairs)`` for both partner-background rules,
    O3's slip (``"o3"``) and the corrected one (``"fixed"``), from one pass over the
    pixels: under the slip a partner's count can fall to 0 and its pair's odds to
    +inf, which compares nothing, so the fixed rule checks the pair sums.
    """
    ra, dec, sigma, energy, dt, zen = (np.asarray(a, dtype=float) for a in nu)
    n = ra.size
    az = ra % 360.0  # the model has no GW time: the South Pole limit, azimuth = RA
    r, d, s = np.radians(ra), np.radians(dec), np.radians(sigma)
    bg = model.background.o3_primary(zen, energy)
    pairs = [
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if math.hypot(zen[i] - zen[j], az[i] - az[j]) < 5.0 * (sigma[i] + sigma[j])
    ]
    pi = np.array([p[0] for p in pairs], dtype=np.int64)
    pj = np.array([p[1] for p in pairs], dtype=np.int64)
    slip = model.background.o3_partner(
        zen[pj], energy[pj], bg.energy_lo[pi], bg.energy_hi[pi], bg.energy_eval[pi]
    )
    # (B_j, eps_j) per rule; the fixed rule is the partner's own primary background.
    partners = {
        "o3": (slip.density, slip.energy_eval),
        "fixed": (bg.density[pj], bg.energy_eval[pj]),
    }
    # a(eps, theta) of each energy at the centre of every 10 deg zenith column: a pixel
    # then costs one lookup (O3's column int(theta / 10)), not a power of ten.
    n_col = model.tables.factor.shape[1]
    centres = 10.0 * np.arange(n_col) + 5.0
    a_i = np.array([model.tables.energy_density(e, centres) for e in bg.energy_eval])
    a_j = {
        rule: np.array([model.tables.energy_density(e, centres) for e in eps_j]).reshape(-1, n_col)
        for rule, (_, eps_j) in partners.items()
    }

    sm = model.skymap
    order = (np.log2(sm.uniq // 4) // 2).astype(np.int64)
    ipix = sm.uniq - 4 * 4**order
    hi = (ipix + 1) << (2 * (MAX_ORDER - order))  # each row's end in order-11 pixels
    npix = 12 * 4**MAX_ORDER
    area = 4 * math.pi / npix
    s_i = np.zeros(n)
    s_ij = {rule: np.zeros(pi.size) for rule in partners}
    stop = int(npix * fraction)
    for start in range(0, stop, chunk):
        pix = np.arange(start, min(start + chunk, stop))
        row = np.searchsorted(hi, pix, side="right")  # flattened: density of the row
        prob = sm.probdensity[row] * area
        theta, phi = hp.pix2ang(2**MAX_ORDER, pix, nest=True)
        pdec = 0.5 * math.pi - theta
        col = np.minimum((90.0 + np.degrees(pdec)) // 10.0, n_col - 1).astype(np.int64)
        g = np.empty((n, pix.size))
        for k in range(n):
            cos_psi = np.sin(pdec) * math.sin(d[k]) + np.cos(pdec) * math.cos(d[k]) * np.cos(
                phi - r[k]
            )
            psi = np.arccos(np.clip(cos_psi, -1, 1))
            g[k] = np.exp(-(psi**2) / (2 * s[k] ** 2)) / (2 * math.pi * s[k] ** 2)
            s_i[k] += np.sum(prob * a_i[k, col] * g[k])
        for q in range(pi.size):
            gg = prob * a_i[pi[q], col] * g[pi[q]] * g[pj[q]]
            for rule in partners:
                s_ij[rule][q] += np.sum(gg * a_j[rule][q, col])

    # The rest of the formula, written out again.
    egw = C.K0**2 / (model.rho**2 * math.log(C.E_GW_MAX / C.E_GW_MIN))  # r̄² P_Egw
    lr = math.log(C.E_NU_MAX / C.E_NU_MIN)
    rate = C.N0 * 10.0 * (model.rbar / 100.0) ** -2  # <n> / (E w)

    def i_k(x, k):
        """∫ Poisson(k; x E) P(E) dE over the log-uniform E_nu prior (k = 1, 2)."""
        x0, x1 = x * C.E_NU_MIN, x * C.E_NU_MAX
        if k == 1:
            return (np.exp(-x0) - np.exp(-x1)) / lr
        return ((1 + x0) * np.exp(-x0) - (1 + x1) * np.exp(-x1)) / (2 * lr)

    ndot = C.NDOT_GPC3_YR / 1e9 / (365.0 * 86400.0)  # [Mpc^-3 s^-1]
    t_i = np.maximum(0.0, 500.0 - np.abs(dt))
    d_1 = egw * i_k(rate * model.tables.zenith_weight(zen), 1)
    p_s1 = ndot / C.BEAMING_FACTOR * s_i * t_i * d_1 / (500.0 * 500.0)
    p_c = C.NU_BACKGROUND_RATE_HZ * ndot * egw * bg.density
    out = {}
    for rule, (b_j, _) in partners.items():
        p_s2 = np.zeros(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            for q in range(pi.size):
                a, c = pi[q], pj[q]
                # Three 500 s windows (GW at 0, both neutrinos): 500 s minus their spread.
                t_ij = max(0.0, 500.0 - (max(0.0, dt[a], dt[c]) - min(0.0, dt[a], dt[c])))
                d_2 = egw * i_k(rate * model.tables.zenith_weight(0.5 * (zen[a] + zen[c])), 2)
                p_s2[a] += ndot / C.BEAMING_FACTOR * s_ij[rule][q] * t_ij * d_2 / 500.0**2 / b_j[q]
            odds = (p_s1 + p_s2) / p_c
        out[rule] = np.where(np.isnan(odds) | (odds < 0), 0.0, odds)  # NaN, -inf, < 0 -> 0
    return out, pi.size


# The kernel path of one event, run by a fresh interpreter (see _child_peak_rss): the
# map and the neutrinos arrive as plain arrays in an .npz; prints one JSON line.
_ONE_EVENT_CHILD = """
import json, resource, sys
import numpy as np
from numba import set_num_threads
from llama.science.background import load_background_sample
from llama.science.odds import EventModel
from llama.science.pvalue import trial_pvalues
from llama.science.skymap import SkyMap

def peak_mb():
    # VmHWM: this process's own peak. ru_maxrss would start at the parent's RSS, which
    # Linux carries over through fork + exec into the child's figure.
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

path, n_trials, rho, rbar = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
set_num_threads(1)
imports_mb = peak_mb()
with np.load(path) as f:
    a = {k: f[k] for k in f.files}
model = EventModel(
    SkyMap(probdensity=a["probdensity"], uniq=a["uniq"]), rho, rbar, "bns",
    background=load_background_sample(),
)
nu = [a[k] for k in ("ra", "dec", "sigma", "energy", "dt", "zenith")]
first = model.evaluate_batch(*nu, np.array([0, nu[0].size]))
first_mb = peak_mb()

class Observed:
    pass

obs = Observed()
obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, obs.zenith = nu
obs.odds, obs.odds_ratio = float(first.odds[0]), first.odds_i
res = trial_pvalues(model, obs, n_trials=n_trials, kind="background", seed=1)
heavy = sorted(m for m in ("healpy", "astropy", "scipy.special", "scipy.stats") if m in sys.modules)
# Kernels compiled here rather than loaded from numba's cache (a cold cache costs memory).
compiled = sum(
    sum(v.stats.cache_misses.values()) for m in list(sys.modules) if m.startswith("kernels.")
    for v in vars(sys.modules[m]).values() if hasattr(v, "stats") and hasattr(v, "py_func")
)
print(json.dumps({"imports_mb": imports_mb, "first_call_mb": first_mb, "peak_mb": peak_mb(),
                  "odds": float(first.odds[0]), "p_value": res.p_value, "heavy": heavy,
                  "compiled": compiled}))
"""


def _child_peak_rss(skymap, nu, n_trials):
    """Peak RSS [MB] of one event's kernel path, alone in a fresh process.

    The child gets the map (uniq, probdensity) and the neutrinos as plain arrays
    through a temporary ``.npz``, imports only numpy, numba, kernels and the
    llama.science modules of that path, builds the EventModel, evaluates the neutrinos
    and runs ``n_trials`` background trials. Returns the child's JSON report: peak RSS
    after imports, after the first call and at the end, its odds and any heavy modules
    that got imported anyway.
    """
    ra, dec, sigma, energy, dt, zen = nu
    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "event.npz"
        np.savez(path, uniq=skymap.uniq, probdensity=skymap.probdensity, ra=ra, dec=dec,
                 sigma=sigma, energy=energy, dt=dt, zenith=zen)  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-c", _ONE_EVENT_CHILD, str(path), str(n_trials), str(RHO), str(RBAR)],
            cwd=root,
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        raise RuntimeError(f"one-event child process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="naive sum on 1/16 of the sky")
    ap.add_argument("--trials", type=int, default=2000, help="trials for the rate (2000)")
    args = ap.parse_args(argv)

    set_num_threads(1)  # per-core numbers
    rss_imports_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = np.random.default_rng(42)
    skymap = make_map()
    model = EventModel(skymap, RHO, RBAR, "bns", background=load_background_sample())
    nu = event_neutrinos(rng)
    off = np.array([0, 7])

    t0 = time.perf_counter()
    first = model.evaluate_batch(*nu, off)
    compile_s = time.perf_counter() - t0
    rss_compiled_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_pairs = int((first.terms["p_h_s2"] > 0).sum())
    best, med = _best(lambda: model.evaluate_batch(*nu, off), 20)
    prep_best, _ = _best(
        lambda: EventModel(
            skymap, RHO, RBAR, "bns", signal_tables=model.tables, background=model.background,
        ).evaluate_batch(*nu, off),
        5,
    )  # fmt: skip

    # Trials: one batched call per 2000 Poisson(6.4) background lists.
    trial_pvalues(model, first_result(model, nu), n_trials=50, kind="background", seed=0)
    t0 = time.perf_counter()
    res = trial_pvalues(
        model, first_result(model, nu), n_trials=args.trials, kind="background", seed=1
    )
    trial_s = time.perf_counter() - t0
    peak_kernel_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = _child_peak_rss(skymap, nu, args.trials)
    assert math.isclose(child["odds"], float(first.odds[0]), rel_tol=1e-9), child
    child_heavy = f"; also imported: {', '.join(child['heavy'])}" if child["heavy"] else ""
    if child["compiled"]:
        child_heavy += f"; compiled {child['compiled']} kernels: numba cache was cold"

    fraction = 1 / 16 if args.quick else 1.0
    t0 = time.perf_counter()
    naive_odds_i, naive_pairs = naive_event(model, nu, fraction)
    naive_s = (time.perf_counter() - t0) / fraction
    # The same event with the corrected partner rule: O3's slip leaves this event's pair
    # partners without background (B_j = 0, odds +inf), which checks no pair sum.
    fixed = EventModel(
        skymap, RHO, RBAR, "bns", pair_background="fixed", signal_tables=model.tables,
        background=model.background,
    ).evaluate_batch(*nu, off)  # fmt: skip
    rel = {
        rule: _rel(k.odds_i, naive_odds_i[rule]) for rule, k in (("o3", first), ("fixed", fixed))
    }
    naive_odds = {rule: float(v.sum()) for rule, v in naive_odds_i.items()}

    rows = [
        ("map rows / max order", f"{len(skymap)} / {skymap.max_order}", ""),
        ("neutrinos / pairs", f"7 / {n_pairs} with P_s2 > 0 ({naive_pairs} pairs found)", ""),
        ("first call (compile + run)", f"{compile_s:.2f} s", ""),
        ("time per event, prepared map", f"{best * 1e3:.2f} ms (median {med * 1e3:.2f})", "<= 5 ms"),
        ("time per event incl. EventModel()", f"{prep_best * 1e3:.2f} ms", ""),
        ("naive flattened numpy (order 11)", f"{naive_s:.1f} s" + (" (extrapolated)" if args.quick else ""), ""),
        ("speed-up vs naive", f"{naive_s / best:,.0f}x", ">= 1000x"),
        ("trials per second per core", f"{args.trials / trial_s:,.0f} ({args.trials} trials, {res.method['n_trial_neutrinos']} neutrinos)", ">= 10,000"),
        ("peak RSS, one-event process", f"{child['peak_mb']:.0f} MB (after imports {child['imports_mb']:.0f}, after first call {child['first_call_mb']:.0f}{child_heavy})", "< 200 MB"),
        ("  (info) whole benchmark process", f"{peak_kernel_mb:.0f} MB (after imports {rss_imports_mb:.0f}, after compiling {rss_compiled_mb:.0f}; incl. healpy)", ""),
        ("per-neutrino |O_i kernel / O_i naive - 1|", np.array2string(rel["o3"], precision=4) + " (inf = inf counts 0)", ""),
        ("  the same, pair_background=fixed", np.array2string(rel["fixed"], precision=4), ""),
        ("odds: kernels / naive", f"{float(first.odds[0]):.6g} / {naive_odds['o3']:.6g}" + (" (naive partial sky)" if args.quick else ""), ""),
        ("  pair_background=fixed", f"{float(fixed.odds[0]):.6g} / {naive_odds['fixed']:.6g}", ""),
        ("per-neutrino O_i (kernels, O3's slip)", np.array2string(first.odds_i, precision=4), ""),
    ]  # fmt: skip
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':<60}  goal")
    for name, value, goal in rows:
        print(f"{name:<{w}}  {value:<60}  {goal}")


def _rel(kernel, naive):
    """|kernel / naive - 1| per neutrino; equal values (both +inf, both 0) count 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(kernel == naive, 0.0, np.abs(kernel / naive - 1.0))


def first_result(model, nu):
    """The observed statistic of ``nu`` as an object ``trial_pvalues`` accepts."""
    ra, dec, sigma, energy, dt, zen = nu
    batch = model.evaluate_batch(ra, dec, sigma, energy, dt, zen, np.array([0, ra.size]))

    class Observed:
        pass

    obs = Observed()
    obs.ra, obs.dec, obs.sigma, obs.energy, obs.dt, obs.zenith = ra, dec, sigma, energy, dt, zen
    obs.odds, obs.odds_ratio = float(batch.odds[0]), batch.odds_i
    return obs


if __name__ == "__main__":
    main()
