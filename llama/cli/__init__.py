"""The ``llama`` command: one module per subcommand, each with ``parser()`` and ``main()``.

Heavy imports live inside each ``main`` so that ``--help`` is instant.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

#: Subcommand -> (module, one-line description).
COMMANDS: dict[str, tuple[str, str]] = {
    "batch": ("llama.cli.batch", "run the pipeline over sweeps of events (local, HTTP, S3)"),
    "sim": ("llama.cli.sim", "write synthetic sky maps, neutrino lists and example sets"),
    "background": (
        "llama.cli.background",
        "build and show background tables of the event statistic from batch results",
    ),
    "warm": ("llama.cli.warm", "compile the Numba kernels into their cache, once after install"),
}

#: Commands whose process ends as soon as they return, without tearing down its
#: interpreter (`end_process`): ``llama batch`` holds Numba, its kernels, astropy and
#: xarray, whose teardown took 0.5-0.65 s after a ``--jobs 2`` run and 1-2.7 s after
#: ``--jobs 1`` (bench/README.md, "Realistic events end to end"); its files are
#: closed by then, its logs flushed below.
ENDS_AT_ONCE = frozenset({"batch"})


def _usage() -> str:
    lines = ["usage: llama [-h] [-V] COMMAND ...", "", "commands:"]
    lines += [f"  {name:<12}{desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Run 'llama COMMAND -h' for the options of a command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``llama COMMAND ...`` to the command's module."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from llama.version import __version__

        print(__version__)
        return 0
    if args[0] not in COMMANDS:
        print(_usage(), file=sys.stderr)
        print(f"\nllama: error: unknown command {args[0]!r}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    try:
        status = module.main(args[1:]) or 0
    except BrokenPipeError:
        # the reader went away (``llama batch --print-default-pipeline | head -1``): not
        # an error; stdout goes to /dev/null so the flush at exit cannot fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    if argv is None and args[0] in ENDS_AT_ONCE:  # the program itself, not a caller's call
        end_process(status)
    return status


def end_process(status: int) -> None:
    """End this process with ``status`` as a normal exit would, less the teardown.

    The exit handlers run (`atexit`: the logging handlers' flush and close,
    multiprocessing's and Dask's clean-ups), the standard streams are flushed, and
    the process ends without freeing every module and object one by one, which is
    all a normal exit does after that and is nothing a finished command needs.
    Returns (and the exit is a normal one) while a thread that a normal exit would
    wait for still runs.
    """
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if threading.current_thread() is not threading.main_thread() or any(
        t.is_alive() and not t.daemon for t in others
    ):
        return
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more can be said there
                pass
        logging.shutdown()  # a no-op once atexit ran it; not when a handler failed
        os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
