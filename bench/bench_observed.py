"""The observed statistic of realistic events: where ``EventModel.evaluate`` spends its time.

Issue 8's 50 events/s leaves 40 ms of CPU per event for everything, and the observed
list's statistic (``EventModel.evaluate``: background terms, single overlaps, doublets)
is computed on every event. This bench builds the events of ``bench_realistic.py``
(event ``k``: BAYESTAR map ``k mod 16`` of ``/work/shared/data/bayestar`` with the
IceCube-like background list drawn with seed ``seed + k`` at that map's time, O3's
options) and times, in CPU seconds of this process, each event's ``evaluate`` and its
parts: the background terms, the single overlaps (``signal_overlap``) and the doublet
overlaps (``pair_overlap``, with the kernel's node expansions of every pair).

With ``--baseline REV`` the same events are evaluated by the code of git revision REV
(its tree from ``bench/revisions.py``, kept with its Numba cache for the next run; or
the source tree in directory REV), each tree in its own process, the processes
alternating (``--rounds``) so both see the same load: the odds must be identical
unless the math changed. (Two trees in one process do not compare: whichever tree's
kernels were loaded second ran up to 2x slower, the same code included.)

Run: ``python bench/bench_observed.py [--events 200] [--baseline HEAD~1] [--rounds 2]
[--pairs]``.
Prints a table; writes only the baseline's kept tree (``$TMPDIR/llama-bench-revisions``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BAYESTAR = Path("/work/shared/data/bayestar")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from revisions import tree_at  # noqa: E402


def load_code(root: Path):
    """The ``llama`` and ``kernels`` packages of the tree at ``root``, imported afresh.

    Another tree's packages replace this one's in ``sys.modules`` while they load, and
    the modules of both are kept apart afterwards (each holds its own references)."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("llama", "kernels")}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(root))
    try:
        odds = importlib.import_module("llama.science.odds")
        skymap = importlib.import_module("llama.science.skymap")
        sim = importlib.import_module("llama.science.sim")
        times = importlib.import_module("llama.science.times")
        code = {"odds": odds, "skymap": skymap, "sim": sim, "times": times}
        code["modules"] = {
            k: v for k, v in sys.modules.items() if k.split(".")[0] in ("llama", "kernels")
        }
    finally:
        sys.path.remove(str(root))
        for k in list(sys.modules):
            if k.split(".")[0] in ("llama", "kernels"):
                del sys.modules[k]
        sys.modules.update(saved)
    return code


@contextlib.contextmanager
def active(code):
    """Make ``code``'s modules the importable ones (late imports inside the library)."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("llama", "kernels")}
    for k in saved:
        del sys.modules[k]
    sys.modules.update(code["modules"])
    try:
        yield
    finally:
        for k in list(sys.modules):
            if k.split(".")[0] in ("llama", "kernels"):
                # kept: a module imported late (e.g. the detector frame) is imported once
                code["modules"][k] = sys.modules.pop(k)
        sys.modules.update(saved)


class Parts:
    """CPU seconds spent in some methods of an EventModel (wrapped on the instance)."""

    NAMES = ("evaluate", "background_terms", "signal_overlap", "pair_overlap", "pair_terms")

    def __init__(self) -> None:
        self.cpu = dict.fromkeys(self.NAMES, 0.0)
        self.calls = dict.fromkeys(self.NAMES, 0)

    def wrap(self, model) -> None:
        for name in self.NAMES:
            f = getattr(model, name)

            def timed(*a, _f=f, _name=name, **k):
                t0 = time.process_time()
                try:
                    return _f(*a, **k)
                finally:
                    self.cpu[_name] += time.process_time() - t0
                    self.calls[_name] += 1

            setattr(model, name, timed)


def events(code, n: int, seed: int):
    """(name, model, neutrinos, t_gw) of the realistic events, models kept per map."""
    catalogue = json.loads((BAYESTAR / "events.json").read_text())
    names = sorted(k for k in catalogue if (BAYESTAR / f"{k}.fits").exists())
    models = {}
    out = []
    for k in range(n):
        name = names[k % len(names)]
        info = catalogue[name]
        if name not in models:
            sm = code["skymap"].read_sky_map(BAYESTAR / f"{name}.fits")
            models[name] = code["odds"].EventModel(
                sm,
                float(info["network_snr"]),
                float(info["distmean_mpc"]),
                info["population"],
                t_gw_mjd=float(info["mjd_obs"]),
            )
        rng = np.random.default_rng(seed + k)
        nl = code["sim"].simulate_background_neutrinos(rng, float(info["mjd_obs"]))
        t_gw = float(code["times"].mjd_to_gps(float(info["mjd_obs"])))
        out.append((name, models[name], nl, t_gw))
    return out


def pair_table(code, evs) -> list[tuple]:
    """Per doublet of the observed lists: (event, k, CPU s, node expansions, sigmas)."""
    api = importlib.import_module("kernels.overlap.api")
    rows = []
    for k, (name, model, nl, t_gw) in enumerate(evs):
        seen: list[tuple] = []

        def overlap(ra, dec, sig, eps_i, eps_j, pi, pj, key=None, _m=model, seen=seen):
            pm = _m.prepared_map(key)
            for a in range(pi.size):
                args = (
                    pm,
                    ra[pi[a : a + 1]], dec[pi[a : a + 1]], sig[pi[a : a + 1]],
                    _m.tables.dec_rows(eps_i[a : a + 1]),
                    ra[pj[a : a + 1]], dec[pj[a : a + 1]], sig[pj[a : a + 1]],
                    _m.tables.dec_rows(eps_j[a : a + 1]),
                )  # fmt: skip
                acc = api._accuracy(_m.psf_kind, _m.overlap_rtol, api.RES / np.sqrt(2.0))
                nu_i = api._neutrinos(*args[1:4])
                nu_j = api._neutrinos(*args[5:8])
                si = api._signal_rows(args[4], code["odds"].SINDEC_EDGES, 1)
                sj = api.SignalRows(api._signal_rows(args[8], si.sindec_edges, 1).rows, si.sindec_edges)  # fmt: skip
                t0 = time.process_time()
                out = api._serial(api.pair_serial, (pm, nu_i, nu_j, si, sj, acc, True), 1)
                cpu = time.process_time() - t0
                seen.append((cpu, int(out[2][0]), float(np.degrees(sig[pi[a]])), float(np.degrees(sig[pj[a]]))))  # fmt: skip
            return type(_m).pair_overlap(_m, ra, dec, sig, eps_i, eps_j, pi, pj, key)

        model.pair_overlap = overlap  # on the instance: evaluate's doublets pass here
        try:
            model.evaluate(nl, t_gw)
        finally:
            del model.pair_overlap
        rows += [(name, k, *s) for s in seen]
    return rows


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def measure(root: Path, n: int, seed: int, repeat: int, out: Path) -> dict:
    """CPU per event of ``root``'s code (best of ``repeat`` passes) and its parts; the
    odds (event and per neutrino) written to ``out`` (.npz)."""
    code = load_code(root)
    with active(code):
        evs = events(code, n, seed)
        for _, model, nl, t_gw in evs[: len({e[0] for e in evs})]:
            model.evaluate(nl, t_gw)  # warm: kernels loaded, maps prepared
    best, parts, odds = np.inf, Parts(), {}
    for _ in range(repeat):
        per = Parts()
        for model in {id(ev[1]): ev[1] for ev in evs}.values():
            per.wrap(model)
        cpu = 0.0
        with active(code):
            for k, (_, model, nl, t_gw) in enumerate(evs):
                t0 = time.process_time()
                r = model.evaluate(nl, t_gw)
                cpu += time.process_time() - t0
                odds[k] = (r.odds, r.odds_ratio.copy())
        for ev in evs:
            for name in Parts.NAMES:
                ev[1].__dict__.pop(name, None)
        if cpu < best:
            best, parts = cpu, per
    np.savez(out, odds=np.array([odds[k][0] for k in range(n)]), odds_i=np.concatenate([odds[k][1] for k in range(n)]))  # fmt: skip
    return {"cpu": best, "parts": parts.cpu, "calls": parts.calls}


def run_child(root: Path, args, out: Path) -> dict:
    """:func:`measure` in a fresh interpreter (one tree per process: a second tree's
    kernels in the same process ran up to 2x slower, whichever was loaded second)."""
    cmd = [sys.executable, __file__, "--child", str(root), "--events", str(args.events), "--seed", str(args.seed), "--repeat", str(args.repeat), "--out", str(out)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--seed", type=int, default=8, help="seed of the lists (8, as bench_realistic)")
    ap.add_argument("--baseline", help="git revision to compare with (odds and CPU)")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the events (best kept)")
    ap.add_argument("--rounds", type=int, default=2, help="processes per tree, alternating")
    ap.add_argument("--pairs", action="store_true", help="print the costliest doublets")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        res = measure(Path(args.child), args.events, args.seed, args.repeat, Path(args.out))
        print(json.dumps(res))
        return 0
    print(f"before: {uptime()}")
    trees = {"this tree": ROOT}
    tmp = tempfile.mkdtemp(prefix="bench_observed_")
    try:
        if args.baseline:
            base = tree_at(args.baseline)
            trees = {f"baseline {args.baseline}": base, "this tree": ROOT}
        best: dict[str, dict] = {}
        for r in range(args.rounds):  # alternating, so both see the same load
            for label, root in trees.items() if r % 2 == 0 else reversed(trees.items()):
                res = run_child(root, args, Path(tmp) / f"{label.split()[0]}.npz")
                if label not in best or res["cpu"] < best[label]["cpu"]:
                    best[label] = res
        n = args.events
        print(f"after: {uptime()}")
        print(f"{n} realistic events (seed {args.seed}), CPU ms per event of EventModel.evaluate, best of {args.rounds} processes x {args.repeat} passes:")  # fmt: skip
        for label, res in best.items():
            row = ", ".join(f"{k} {1e3 * res['parts'][k] / n:.2f} ({res['calls'][k]} calls)" for k in Parts.NAMES[1:])  # fmt: skip
            print(f"  {label}: {1e3 * res['cpu'] / n:.2f} ms  [{row}]")
        if args.baseline:
            b_label, h_label = list(trees)
            b = np.load(Path(tmp) / "baseline.npz")
            h = np.load(Path(tmp) / "this.npz")
            same = np.array_equal(b["odds"], h["odds"], equal_nan=True) and np.array_equal(b["odds_i"], h["odds_i"], equal_nan=True)  # fmt: skip
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.nanmax(np.abs(h["odds"] - b["odds"]) / np.abs(b["odds"])) if n else 0.0
            print(
                f"  ratio baseline / this tree: {best[b_label]['cpu'] / best[h_label]['cpu']:.2f}x"
            )
            print(f"  odds bit-identical on {n} events (event and per neutrino): {same} (largest relative change {rel:.3g})")  # fmt: skip
        if args.pairs:
            code = load_code(ROOT)
            with active(code):
                evs = events(code, n, args.seed)
                pair_table(code, evs)  # warm: each map's first look loads
                rows = pair_table(code, evs)
            rows.sort(key=lambda r: -r[2])
            tot = sum(r[2] for r in rows)
            print(f"doublets: {len(rows)}, {1e3 * tot:.1f} ms CPU in all; costliest:")
            for r in rows[:15]:
                print(f"  {r[0]:7s} event {r[1]:3d}: {1e3 * r[2]:8.2f} ms, {r[3]:7d} nodes, sigma {r[4]:.2f}, {r[5]:.2f} deg")  # fmt: skip
    finally:
        for f in Path(tmp).glob("*.npz"):
            f.unlink()
        os.rmdir(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
