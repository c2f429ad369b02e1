"""Two ``--jobs 1`` commands at once against one ``--jobs 2`` command (issue 8, item 3).

Does an event cost more CPU in a ``--jobs 2`` worker because both vCPUs of this VM are
busy, or because of our worker processes? And what does a ``--jobs 2`` command lose
against two independent commands? Per round, on the same 200 realistic events
(``bench_realistic.py``'s: BAYESTAR maps, IceCube-like lists, ``+f
CoincSignificanceI3Lvc``), each a ``llama batch`` command timed from start to exit:

* ``one --jobs 1``: threads, the first 100 events alone;
* ``two --jobs 1 at once``: the same command on the first 100 and on the other 100,
  started together;
* ``--jobs 2``: processes, all 200;
* ``one --jobs 1, processes``: the first 100 on one forked worker.

For each: CPU per event of the process tree, events/s, CPU%. Ratios: the two commands
at once and ``--jobs 2`` against one command alone, in the same round (``--jobs 2`` runs
200 events to the others' 100 per command, so its start counts half as much per event).

Run: ``python bench/bench_two_commands.py [--trials 2000] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_realistic import (  # noqa: E402
    BAYESTAR,
    TreeCPU,
    cli_command,
    uptime,
    write_cli_sources,
    write_realistic_inputs,
)


def run(commands: list[list[str]], n: int) -> tuple[float, float, float]:
    """(ms CPU per event, events/s, CPU %) of ``commands`` started together."""
    cpu = TreeCPU()
    t0 = time.time()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]  # fmt: skip
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"exit {p.returncode}: {err.decode()[-2000:]}")
    wall = time.time() - t0
    used = cpu.stop()
    return 1e3 * used / n, n / wall, 100 * used / wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", default="2000", help="LLAMA_N_TRIALS (2000)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds (2)")
    ap.add_argument("--maps", type=Path, default=BAYESTAR)
    ap.add_argument("--tmp", default="/var/tmp", help="parent of the work directory")
    args = ap.parse_args(argv)
    os.environ["LLAMA_N_TRIALS"] = args.trials
    with tempfile.TemporaryDirectory(dir=args.tmp) as work:
        tmp = Path(work)
        src = tmp / "src"
        params = write_cli_sources(src, args.maps, write_realistic_inputs(src, 200, args.maps, 8))
        names = params.read_text().split()
        halves = [src / "first.txt", src / "second.txt"]
        for half, part in zip(halves, (names[:100], names[100:]), strict=True):
            half.write_text("\n".join(part) + "\n")
        roots = iter(range(10**6))

        def command(events: Path, scheduler: str, jobs: int) -> list[str]:
            root = tmp / f"run{next(roots)}"
            root.mkdir()
            return cli_command(src, events, root, scheduler, jobs)

        print(f"before: {uptime()}; LLAMA_N_TRIALS={args.trials}", flush=True)
        subprocess.run(command(halves[0], "threads", 1), check=True, capture_output=True)  # warm-up
        for k in range(1, args.repeat + 1):
            alone = run([command(halves[0], "threads", 1)], 100)
            both = run([command(h, "threads", 1) for h in halves], 200)
            jobs2 = run([command(params, "processes", 2)], 200)
            forked = run([command(halves[0], "processes", 1)], 100)
            for name, (ms, rate, pct) in (
                ("one --jobs 1", alone),
                ("two --jobs 1 at once", both),
                ("--jobs 2", jobs2),
                ("one --jobs 1, processes", forked),
            ):
                print(f"round {k} {name:24s} {ms:6.1f} ms CPU/event {rate:6.2f} events/s {pct:4.0f}% CPU")  # fmt: skip
            print(f"round {k} ratios: two at once / one {both[1] / alone[1]:.2f}x, --jobs 2 / one "
                  f"{jobs2[1] / alone[1]:.2f}x; CPU per event two at once / one "
                  f"{both[0] / alone[0]:.2f}x, --jobs 2 / one {jobs2[0] / alone[0]:.2f}x", flush=True)  # fmt: skip
        print(f"after: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
