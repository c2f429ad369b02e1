"""The ``llama`` command: one module per subcommand, each with ``parser()`` and ``main()``.

Heavy imports live inside each ``main`` so that ``--help`` is instant.
"""

from __future__ import annotations

import importlib
import sys
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
        return module.main(args[1:]) or 0
    except BrokenPipeError:
        # the reader went away (``llama batch --print-default-pipeline | head -1``): not
        # an error; stdout goes to /dev/null so the flush at exit cannot fail again
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
