"""The overlap kernels' calls of real background significances, replayed on this tree's
kernels and on an older commit's, each side in a process of its own: what a kernel
change costs per call.

The calls are recorded from ``trial_pvalues`` at the default 2,000 background trials
on the events of ``bench_looks.py`` (event k: map k mod the sorted maps, list seed
8 + k, trial seed k; default the 6 hard maps): every ``psf_overlap_targets``,
``psf_overlap_prepared``, ``psf_pair_overlap_targets`` and
``psf_pair_overlap_prepared`` with its arguments, and the maps prepared for them, saved
once to a temporary file. Each side then replays them in a worker process of its own:
this tree's ``kernels/overlap/`` and the one ``--against`` had, both loaded alike as
packages of their own (``bench_looks.kernels_at``: their own Numba caches), each with
its own prepared maps; every call once untimed, then ``--rounds`` times timed, the two
processes taking turns (one runs while the other waits), CPU measured inside each: a
turn is all the calls (``--turn round``, the default: each side's caches and branch
history its own through a round) or one call (``--turn call``: the other side runs
between any two calls, as other work does between the kernel calls of an event);
which side goes first alternates per turn and per round. A worker keeps a speed of its
own for its life (the same code against itself: 0.91x in one pair of processes, 1.06x
in the next), so ``--processes`` pairs of fresh workers run one after another. Per
kernel function: calls, CPU of each side (process_time, summed over the rounds and
pairs), the ratio then/now and the largest relative difference of their results (0
where the kernels compute the same numbers). One Numba thread.

Why not one process: Numba's dispatcher types a tuple argument by a fingerprint of its
items only (``numba/_typeof.cpp``, ``compute_fingerprint``), and one table per process
maps a fingerprint to the first Numba type made for it. Copies of the package have
``PreparedMap`` classes of the same items, so the records of every copy but the one
whose kernel was called first get that copy's type, match none of their kernel's
compiled signatures, and every call goes through ``Dispatcher._compile_for_args``
(Python ``typeof`` of each of the record's ~25 arrays, ~0.35-0.5 ms a call) before
finding its compiled code. In one process the tree's ``kernels.overlap`` (the
recording) came first, so both loaded sides paid that on every call: ratios pulled
toward 1. Each worker counts such calls in its timed turns (:func:`fallbacks_counted`)
and the bench fails if any.

Run: ``python bench/bench_look_replay.py --against REV [--now REV2] [--events 48]
[--maps ...] [--rounds 3] [--processes 4] [--turn round|call] [--recording FILE]
[--drop-keyword sides]`` (``--now``: the
newer side a commit's instead of the working tree's; the calls are recorded on the
working tree's kernels either way; ``--recording``: record once, replay it in later
runs; ``--drop-keyword NAME``: replay every call without that keyword argument on both
sides, for a side whose functions do not take it: since e28cbdd background trials
call ``psf_overlap_targets(..., sides=True)``, which older commits lack, so ``--drop-keyword
sides`` compares both sides' two-sided looks).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# one Numba thread: set_num_threads(1) in main and in each worker (whose environment
# also says so), not NUMBA_NUM_THREADS here: importing this module (its tests do)
# must leave the importing process's Numba configuration alone
from numba import set_num_threads  # noqa: E402

import kernels.overlap as KO  # noqa: E402
from llama.science.pvalue import DEFAULT_N_TRIALS, trial_pvalues  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_looks import HARD, kernels_at  # noqa: E402
from bench_trials import LOCAL, SHARED, observed_event  # noqa: E402

CALLS = ("psf_overlap_targets", "psf_overlap_prepared", "psf_pair_overlap_targets", "psf_pair_overlap_prepared")  # fmt: skip
PREPARE = ("prepare_map", "prepare_map_flat")


def record(events: int, maps: set[str]):
    """(calls, maps prepared): the kernel calls of the events' significances, each
    (function name, args, kwargs), and per prepared map's id (function name, args)."""
    calls: list = []
    prepared: dict = {}
    originals = {name: getattr(KO, name) for name in CALLS + PREPARE}

    def recording(name):
        f = originals[name]

        def inner(*a, **k):
            out = f(*a, **k)
            if name in PREPARE:
                prepared[id(out)] = (name, a, k, out)
            else:
                calls.append((name, a, k))
            return out

        return inner

    where = SHARED if (SHARED / "events.json").exists() else LOCAL
    names = sorted(json.loads((where / "events.json").read_text()))
    names = [m for m in names if (where / f"{m}.fits").exists()]
    for name in originals:
        setattr(KO, name, recording(name))
    try:
        for k in range(events):
            name = names[k % len(names)]
            if name not in maps:
                continue
            model, obs = observed_event(where, name, k)
            trial_pvalues(model, obs, DEFAULT_N_TRIALS, seed=k)
    finally:
        for name, f in originals.items():
            setattr(KO, name, f)
    return calls, prepared


def without_keywords(calls: list, names) -> list:
    """The recorded calls (as :func:`save` writes them) without the keyword arguments
    ``names``.

    Examples
    --------
    >>> without_keywords([("f", 1, (2,), {"sides": True, "rtol": 0.01})], ["sides"])
    [('f', 1, (2,), {'rtol': 0.01})]
    """
    drop = set(names)
    return [(name, key, a, {x: v for x, v in k.items() if x not in drop}) for name, key, a, k in calls]  # fmt: skip


def save(calls, prepared, path: Path) -> None:
    """Write what :func:`record` gave to ``path`` (pickle) for the workers: the maps to
    prepare, each (key, function name, args, kwargs), and the calls, each (function
    name, key of its map, its other args, kwargs); a map is named by its key, each side
    preparing its own."""
    maps = [(key, name, a, k) for key, (name, a, k, _) in prepared.items()]
    rows = [(name, id(a[0]), a[1:], k) for name, a, k in calls]
    with open(path, "wb") as f:
        pickle.dump({"maps": maps, "calls": rows}, f, protocol=pickle.HIGHEST_PROTOCOL)


@contextlib.contextmanager
def fallbacks_counted():
    """Count (in the list of one int it yields) the calls into any Numba kernel of this
    process that went through ``Dispatcher._compile_for_args``, Numba's Python path for
    arguments whose types match no compiled signature by typecode: a kernel's first call
    (compiled or loaded then), and every call of a second copy's kernel on that copy's
    own records (see the module's docstring). None in a timed round means each call took
    the compiled dispatch."""
    from numba.core.dispatcher import Dispatcher

    original = Dispatcher._compile_for_args
    count = [0]

    def counting(self, *a, **k):
        count[0] += 1
        return original(self, *a, **k)

    Dispatcher._compile_for_args = counting
    try:
        yield count
    finally:
        Dispatcher._compile_for_args = original


def replay(mod, maps: dict, calls: list, outputs: list | None = None) -> tuple[dict, int]:
    """Run ``calls`` (as :func:`save` wrote them) once on the kernels of package ``mod``
    with its prepared ``maps`` (by key). Returns the CPU of each function's calls
    (process_time, s) and how many calls took Numba's fallback; each call's result is
    appended to ``outputs`` when given."""
    cpu: dict[str, float] = {}
    with fallbacks_counted() as slow:
        for name, key, rest, k in calls:
            f = getattr(mod, name)
            a = (maps[key], *rest)
            t0 = time.process_time()
            out = f(*a, **k)
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - t0
            if outputs is not None:
                outputs.append(out)
    return cpu, slow[0]


TAG = "@@replay "  # a worker's answers on its stdout start with this


def serve(side: str, against: str, path: Path, now: str | None = None) -> int:
    """A worker: load one side's ``kernels/overlap`` (``now``: commit ``now``'s, None:
    this tree's; ``then``: commit ``against``'s), prepare the recorded maps with it,
    then answer commands read from stdin, one a line: ``warm`` (every call once, untimed; the results pickled to
    ``path.<side>``), ``round`` (every call once, timed: CPU per function and the
    fallbacks taken, as JSON), ``call I`` (the recorded call I alone, the same),
    anything else ends it."""
    set_num_threads(1)
    mod = kernels_at(now, "kernels.overlap_now") if side == "now" else kernels_at(against)
    with open(path, "rb") as f:
        rec = pickle.load(f)
    maps = {key: getattr(mod, name)(*a, **k) for key, name, a, k in rec["maps"]}
    print(TAG + "{}", flush=True)
    for line in sys.stdin:
        if line.strip() == "warm":
            outs: list = []
            replay(mod, maps, rec["calls"], outs)
            with open(f"{path}.{side}", "wb") as f:
                pickle.dump(outs, f, protocol=pickle.HIGHEST_PROTOCOL)
            answer = {}
        elif line.strip() == "round":
            cpu, slow = replay(mod, maps, rec["calls"])
            answer = {"cpu": cpu, "fallbacks": slow}
        elif line.startswith("call "):
            i = int(line.split()[1])
            cpu, slow = replay(mod, maps, rec["calls"][i : i + 1])
            answer = {"cpu": cpu, "fallbacks": slow}
        else:
            break
        print(TAG + json.dumps(answer), flush=True)
    return 0


class Worker:
    """One side's worker process (:func:`serve`), started and ready."""

    def __init__(self, side: str, against: str, path: Path, now: str | None = None):
        self.side = side
        cmd = [sys.executable, str(Path(__file__).resolve()), "--against", against,
               "--worker", side, "--replay", str(path)] + (["--now", now] if now else [])  # fmt: skip
        env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.ask(None)

    def ask(self, command: str | None) -> dict:
        """Send ``command`` (None: none, wait for the next answer) and return the answer."""
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])
        raise RuntimeError(f"the {self.side} worker ended (exit {self.proc.wait()})")

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="commit of the older kernels/overlap")
    ap.add_argument(
        "--now", help="commit of the newer kernels/overlap (default: the working tree's)"
    )
    ap.add_argument("--events", type=int, default=48, help="events drawn (k = 0 .. N - 1)")
    ap.add_argument("--maps", default=HARD, help="record only the events on these maps")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per pair of processes")
    ap.add_argument("--processes", type=int, default=4, help="pairs of worker processes, one after another")  # fmt: skip
    ap.add_argument("--turn", choices=("round", "call"), default="round",
                    help="what one side runs while the other waits: all the calls (round) or one")  # fmt: skip
    ap.add_argument("--recording", type=Path,
                    help="the recorded calls: read from this file if it exists, else saved to it")  # fmt: skip
    ap.add_argument("--drop-keyword", action="append", default=[], metavar="NAME",
                    help="replay the calls without this keyword argument (both sides)")  # fmt: skip
    ap.add_argument("--worker", choices=("now", "then"), help=argparse.SUPPRESS)
    ap.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return serve(args.worker, args.against, args.replay, args.now)
    set_num_threads(1)
    cpu: dict = {}
    diff: dict = {}
    slow = 0
    with tempfile.TemporaryDirectory(prefix="look-replay-") as tmp:
        path = Path(tmp) / "calls.pickle"
        if args.recording and args.recording.is_file():
            shutil.copyfile(args.recording, path)
        else:
            calls, prepared = record(args.events, set(args.maps.split(",")))
            save(calls, prepared, path)
            if args.recording:
                shutil.copyfile(path, args.recording)
        if args.drop_keyword:  # both workers read the calls from path
            with open(path, "rb") as f:
                rec = pickle.load(f)
            rec["calls"] = without_keywords(rec["calls"], args.drop_keyword)
            with open(path, "wb") as f:
                pickle.dump(rec, f, protocol=pickle.HIGHEST_PROTOCOL)
        with open(path, "rb") as f:
            calls = pickle.load(f)["calls"]
        # a worker keeps a speed of its own for its life (memory layout, likely): the
        # same code against itself gave 0.91x in one pair of processes, 1.06x in the
        # next, whether or not both were pinned to one core; several pairs average it
        turns = ["round"] if args.turn == "round" else [f"call {i}" for i in range(len(calls))]
        for pair in range(args.processes):
            order = ("now", "then") if pair % 2 == 0 else ("then", "now")
            sides: dict = {}
            try:
                # started one after the other: each may copy a tree and load its cache
                for which in order:
                    sides[which] = Worker(which, args.against, path, args.now)
                outs = {}
                for which, worker in sides.items():  # untimed: each side loads its code
                    worker.ask("warm")
                    with open(f"{path}.{which}", "rb") as f:
                        outs[which] = pickle.load(f)
                for (name, *_), now, then in zip(calls, outs["now"], outs["then"], strict=True):  # fmt: skip
                    for x, y in zip(now, then, strict=True):
                        x, y = np.asarray(x, float), np.asarray(y, float)
                        d = np.abs(x - y) / np.maximum(np.abs(y), 1e-300)
                        diff[name] = max(diff.get(name, 0.0), float(d.max()) if d.size else 0.0)  # fmt: skip
                # turn by turn, the side going first alternating per turn and per round;
                # the first turn is the side warmed first's (the other's caches are fresh)
                for r in range(args.rounds):
                    for i, turn in enumerate(turns):
                        for which in order[::-1] if (i + r) % 2 else order:
                            answer = sides[which].ask(turn)
                            slow += answer["fallbacks"]
                            for name, t in answer["cpu"].items():
                                cpu.setdefault(name, {"now": 0.0, "then": 0.0})[which] += t
            finally:
                for worker in sides.values():
                    worker.close()
    print(f"{len(calls)} calls recorded, {args.processes} pairs of processes x {args.rounds} rounds each side (turn: {args.turn}), load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'function':26s} {'calls':>6s} {'then ms':>9s} {'now ms':>9s} {'then/now':>8s} {'max rel diff':>12s}")  # fmt: skip
    tot = [0.0, 0.0]
    for name in CALLS:
        if name not in cpu:
            continue
        e = cpu[name]
        tot[0] += e["then"]
        tot[1] += e["now"]
        n = sum(c[0] == name for c in calls)
        print(f"{name:26s} {n:6d} {e['then'] * 1e3:9.1f} {e['now'] * 1e3:9.1f} {e['then'] / e['now']:7.3f}x {diff[name]:12.2e}")  # fmt: skip
    print(f"{'all':26s} {len(calls):6d} {tot[0] * 1e3:9.1f} {tot[1] * 1e3:9.1f} {tot[0] / tot[1]:7.3f}x")  # fmt: skip
    if slow:
        print(f"{slow} timed calls took Numba's typeof fallback: the figures are biased", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
