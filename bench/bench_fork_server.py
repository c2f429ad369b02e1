"""The fork server's start: what ``--jobs 2`` waits for before its workers exist.

A ``llama batch`` run on worker processes starts one fork server
(`llama.batch.worker_processes.worker_context`): a fresh interpreter that imports
`llama.batch.worker_preload` (the engine, Numba, the science modules, the kernels that
earlier runs' workers called, loaded from Numba's cache) before it forks any worker.
Nothing else of the run's first event can start before it ends, so its CPU is the
fixed part that ``--jobs 2`` has and ``--jobs 1`` has not (bench/README.md,
"Realistic events end to end").

Each case is a fresh interpreter started as the fork server is (``NUMBA_NUM_THREADS=1``,
``PYTHONHASHSEED`` as the pool sets it, the environment's own bytecode setting),
that imports the preload and reports its CPU time since it started (``getrusage``:
the interpreter, the imports, the kernels), the kernels it then holds and whether it
is still one thread. ``--baseline REV`` runs the same with the ``llama`` and
``kernels`` of git revision REV (or of a source tree: a directory), alternated with
this tree's round by round in this one process, so that the ratio holds under
whatever load the machine has. Each tree loads the kernels its own version records
(``$XDG_CACHE_HOME/llama``) from its own Numba cache: run a ``llama batch`` on
worker processes with each first (``bench_realistic.py --baseline`` does).

Run: ``python bench/bench_fork_server.py [--repeat N] [--tree DIR] [--baseline REV]``
(``--tree``: time another source tree as this one, a commit's tree whose kernels are
cached, say, while the working tree's are being edited); prints one line per case and
the medians; a revision's tree is kept by ``bench/revisions.py`` for the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the fork server's work, in a fresh interpreter; prints one JSON line
_CHILD = """
import json, resource, sys, threading
import llama.batch.worker_preload as preload
from llama.batch import worker_kernels
held = getattr(worker_kernels, "_held", worker_kernels.used_kernels)()
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu": use.ru_utime + use.ru_stime, "kernels": len(held),
                  "threads": threading.active_count(),
                  "modules": sum(m.split(".")[0] in ("llama", "kernels") for m in sys.modules)}))
"""


def run_case(tree: Path) -> dict:
    """One fork server's preload with the sources of ``tree``; its figures."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NUMBA_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "6640"}  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD], cwd=tree, env=env,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{tree}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall": wall}


def source_tree(rev: str) -> Path:
    """The directory ``rev``, or the ``llama`` and ``kernels`` of git revision ``rev``
    (kept by ``bench/revisions.py`` with its Numba cache for the next run)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from revisions import tree_at

    return tree_at(rev, ["llama", "kernels"])


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "(uptime not available)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds (median; 5)")
    ap.add_argument("--tree", type=Path, default=ROOT,
                    help="the source tree timed as 'this tree' (default: this one)")  # fmt: skip
    ap.add_argument("--baseline", metavar="REV",
                    help="also time git revision REV, or the source tree in directory REV")  # fmt: skip
    args = ap.parse_args(argv)
    print(f"before: {uptime()}", flush=True)
    trees = {"this tree": args.tree.resolve()}
    if args.baseline:
        trees[args.baseline] = source_tree(args.baseline)
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(args.repeat):
        for name, tree in trees.items():
            res = run_case(tree)
            runs[name].append(res)
            print(f"round {r + 1} {name:12s}: CPU {res['cpu']:.3f} s, wall "
                  f"{res['wall']:.3f} s, {res['kernels']} kernels, {res['modules']} "
                  f"llama/kernels modules, {res['threads']} thread(s)", flush=True)  # fmt: skip
    print(f"after: {uptime()}")
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in ("cpu", "wall")}
               for name, rs in runs.items()}  # fmt: skip
    for name, m in medians.items():
        print(f"median {name:12s}: CPU {m['cpu']:.3f} s, wall {m['wall']:.3f} s")
    if args.baseline:
        new, old = medians["this tree"], medians[args.baseline]
        pairs = [
            a["cpu"] / b["cpu"] for a, b in zip(runs["this tree"], runs[args.baseline], strict=True)
        ]
        print(f"this tree / {args.baseline}: CPU {new['cpu'] / old['cpu']:.2f}x (pairs "
              f"{min(pairs):.2f}-{max(pairs):.2f}x), wall {new['wall'] / old['wall']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
