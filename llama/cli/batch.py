"""``llama batch``: process large sets of events, with inputs and outputs local or remote.

Batch process large sets of organized data using LLAMA. Input and output files can be
stored locally or on cloud data (HTTP(S) for reading, S3). Good for large-scale
simulations of injected or randomized data. Source/destination paths are Python
format strings whose ``{fields}`` are filled from the parameter lists given as
``params`` (``name=FILE``) or, for names not given there, from the environment.

Put the positional ``params`` first (or after ``--``): options such as ``--get`` take
any number of values and would otherwise swallow them.

Examples
--------
``llama batch graceid=ids.txt --eventdir 'runs/{graceid}' --get
skymap_info.json=s3://bucket/{graceid}/skymap_info.json -p LLAMA2_REVIEW_PIPELINE``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "parser"]

_PIPELINES = ["DEFAULT_PIPELINE", "SUBTHRESHOLD_PIPELINE", "LLAMA2_REVIEW_PIPELINE"]
_LEVELS = ["debug", "info", "warning", "error", "critical", "none"]


def default_logfile() -> Path:
    """The archival log file, under the XDG data directory."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "llama" / "logs" / "llama.batch.log"


def _handler_names() -> list[str]:
    from llama.handler import REGISTRY
    from llama.pipeline import _registry

    _registry()
    return sorted(REGISTRY)


class _Assignments(argparse.Action):
    """``NAME=VALUE`` pairs into an ordered dict (``--get``, ``--put``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        result = dict(getattr(namespace, self.dest) or {})
        for item in values:
            name, sep, value = item.partition("=")
            if not sep or not name or not value:
                parser.error(
                    f"{option_string} expects FILENAME=PATH pairs, got {item!r} "
                    f"(e.g. {option_string} skymap_info.json=s3://bucket/{{graceid}}/skymap_info.json)"
                )
            result[name] = value
        setattr(namespace, self.dest, result)


#: What ``--help`` prints first: plain text, since argparse shows markup as it is.
_DESCRIPTION = (
    "Batch process large sets of organized data using LLAMA. Input and output files can "
    "be stored locally or on cloud data (HTTP(S) for reading, S3). Good for large-scale "
    "simulations of injected or randomized data. Source/destination paths are Python "
    "format strings whose {fields} are filled from the parameter lists given as params "
    "(NAME=FILE) or, for names not given there, from the environment. A run needs "
    "somewhere to keep what it makes: --eventdir, --put and/or --results."
)


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``llama batch`` (the reference page's options)."""
    handlers = _handler_names()
    p = argparse.ArgumentParser(
        prog="llama batch",
        description=_DESCRIPTION,
        prefix_chars="-+",
        fromfile_prefix_chars="@",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Put params before the options, or after '--'. Example (the main job of "
        "README.md): llama batch @llama/examples/review.args. "
        "Exit status: 0 all events fine, 1 some events failed, 2 bad input (and a run "
        "with no arguments), 130 after Ctrl-C.",
    )
    p.add_argument(
        "-V", "--version", action="store_true", help="Print the version number and exit."
    )
    p.add_argument(
        "-D", "--dev-mode", action="store_true",
        help="Allow running a build whose version is not a release (X.Y.Z) or whose source "
        "has local changes; without it such a build refuses to run.",
    )  # fmt: skip
    p.add_argument(
        "--err-alert", action="store_true",
        help="Alert maintainers to unhandled exceptions (POST to the webhook in LLAMA_ERR_ALERT_URL).",
    )  # fmt: skip
    p.add_argument(
        "--flags", nargs="*", metavar="FLAGNAME=value",
        help="A flag preset (see --flag-presets) and/or FLAGNAME=value settings for the events. "
        "Omitted flags keep their existing values (new events: the defaults). Without --flags you "
        "are asked on a terminal; otherwise the defaults/existing flags are used and the log says so. "
        "Give --flags with no value to accept them silently.",
    )  # fmt: skip
    p.add_argument("--flag-presets", action="store_true", help="Print available flag presets.")
    p.add_argument(
        "--dry-run-flags", action="store_true", help="Print flags parsed by the CLI and exit."
    )
    g = p.add_argument_group("choose pipeline (see llama.pipeline)")
    g.add_argument(
        "-f", "--filehandlers", nargs="*", choices=handlers, default=[], metavar="FILEHANDLER",
        help="FileHandler class names to include. Missing dependencies are not made unless "
        "listed too (their absence fails the file). Choices: " + ", ".join(handlers),
    )  # fmt: skip
    g.add_argument(
        "+f", "++filehandlers", dest="plus_filehandlers", nargs="*", choices=handlers,
        default=[], metavar="FILEHANDLER",
        help="Like -f, but all ancestors of these handlers are included too.",
    )  # fmt: skip
    g.add_argument(
        "-p", "--pipeline", choices=_PIPELINES,
        help="A named pipeline; with -f/+f the union is used.",
    )  # fmt: skip
    g.add_argument(
        "--analysis", action="extend", nargs="+", default=[], metavar="NAME=VALUE",
        help="Analysis options of the significance for this run, e.g. trial_stop_after=20 "
        "(sequential p-values: an event's trials stop once 20 of them reach its "
        "statistic; docs/science.md, 'Stopping early (sequential trials)'). Names: "
        + ", ".join(_analysis_names()) + ". Each sets its LLAMA_<NAME> environment "
        "variable for this run, over the environment and ~/.config/llama/config.json "
        "(the workers of a running scheduler given by address do not see it: set the "
        "variable where they run); "
        "the files made record the options they were made with, so a later run with "
        "other values makes them again. May be given more than once. Default: O3's "
        "analysis (2,000 trials).",
    )  # fmt: skip
    g.add_argument(
        "--print-default-pipeline", action="store_true",
        help="Print the contents of the default pipeline and quit.",
    )  # fmt: skip
    g.add_argument(
        "--dry-run-pipeline", action="store_true",
        help="Print the pipeline selected by the user and quit.",
    )  # fmt: skip
    g = p.add_argument_group("logging settings")
    g.add_argument(
        "-l", "--logfile", default=str(default_logfile()),
        help="File where logs are written, always at DEBUG level; /dev/null suppresses it. "
        "(default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "-v", "--verbosity", choices=_LEVELS, default="info",
        help="Level of the logs printed to the terminal (stderr); 'none' prints none. (default: info)",
    )  # fmt: skip
    # the raw formatter keeps this description as written: wrap it here to stay readable
    g = p.add_argument_group(
        "simulation configuration",
        textwrap.fill(
            "Paths may be local, http(s):// (read only) or s3://BUCKET/KEY (configured by the "
            "standard AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL variables). "
            "In --get, --put, --errdump and --eventdir each {field} must receive one plain name: "
            "a value (from the params or the environment) that contains '/' or '\\', is '.' or "
            "'..', is empty, starts with '~' or holds a control character is refused before any "
            "event runs, so values cannot lead outside the directories you name (see "
            "--allow-path-values). The environment never fills a {field} (here or in --format "
            "files) with a credential: AWS_* variables, names containing SECRET, TOKEN, "
            "PASSWORD, KEY or CREDENTIAL, LLAMA_*_URL and LLAMA_*_WEBHOOK, anything in "
            "~/.config/llama/config.json, or a URL with a query string or user:password@; "
            "such a field is an error naming it. Messages, logs and error dumps show URLs "
            "with their tokens and passwords replaced by ***.",
            width=78,
        ),
    )
    g.add_argument(
        "params", nargs="*", metavar="params",
        help="NAME=FILE: a JSON or newline-separated list of values of variable NAME (local, "
        "HTTP or S3). The run goes through the Cartesian product of all lists, or --random N draws.",
    )  # fmt: skip
    g.add_argument(
        "--get", nargs="*", action=_Assignments, default={}, metavar="GET",
        help="FILENAME=PATH: load an input file of each event from PATH (a format string), "
        "e.g. skymap_info.json=s3://llama/sim/{graceid}/skymap_info.json. Files already in "
        "the event are kept.",
    )  # fmt: skip
    g.add_argument(
        "--put", nargs="*", action=_Assignments, default={}, metavar="PUT",
        help="FILENAME=PATH: save an event's file to PATH (a format string; local or S3).",
    )  # fmt: skip
    g.add_argument(
        "--errdump", nargs="*", default=[], metavar="ERRDUMP",
        help="Directories (format strings, local or S3) where a failed event's directory and "
        "an ERRDUMP.log with the traceback are copied.",
    )  # fmt: skip
    g.add_argument(
        "--format", nargs="*", default=[], metavar="FORMAT",
        help="Event files whose contents are format strings, filled from the params and the "
        "environment after --get.",
    )  # fmt: skip
    g.add_argument(
        "--eventdir",
        help="Directory of each event (a format string, e.g. ~/sim/{graceid}-{neutrinos}). "
        "Without it, events live in temporary directories deleted after --put.",
    )
    g.add_argument(
        "--allow-path-values", action="store_true",
        help="Let values inserted into --get, --put, --errdump and --eventdir contain '/', "
        "'..' and the like, so they can name subdirectories (and any other place: use only "
        "with params you trust). Control characters stay refused.",
    )  # fmt: skip
    g.add_argument(
        "--random", type=int, metavar="N",
        help="Run N random draws from the params instead of their Cartesian product: "
        "each draw takes every params value uniformly and independently, WITH replacement, "
        "so a draw can repeat an earlier one (its event is then up to date); N draws over "
        "M combinations give M(1-(1-1/M)^N) distinct events on average (100 over 192: ~78). "
        "N < 0 runs until stopped.",
    )  # fmt: skip
    g.add_argument(
        "--seed", type=int,
        help="Seed of --random draws (default: a fresh seed, always logged).",
    )  # fmt: skip
    g.add_argument(
        "--public", action="store_true",
        help="Make files uploaded to S3 publicly readable (default: private).",
    )  # fmt: skip
    g = p.add_argument_group(
        "execution",
        textwrap.fill(
            "Waits are bounded by environment variables (or the same names in lower case, "
            "without LLAMA_, in ~/.config/llama/config.json): LLAMA_CONNECT_TIMEOUT_S "
            "(default 10) to connect to an HTTP or S3 server, LLAMA_READ_TIMEOUT_S (60) for "
            "each answer of a server, LLAMA_RETRY_BUDGET_S (60) during which transient "
            "failures are retried with exponential backoff (0: no retries), and "
            "LLAMA_BATCH_LOCK_WAIT_S (10). Two runs may work on the same event directories at "
            "once: each event is locked by the run working on it (the lock dies with its "
            "process, even after kill -9); an event in use by another run is logged as 'in "
            "use by PID n (host h)', waits up to LLAMA_BATCH_LOCK_WAIT_S while the batch goes "
            "on, then is counted as skipped (exit status 1). The --results file gets the rows "
            "of both runs. Ctrl-C stops the run within a second or two (exit status 130); run "
            "the same command again to resume. Each process keeps the sky maps it met, and "
            "what is built from them, for the events that use the same map again, up to "
            "LLAMA_MAP_STORE_MIB (default 256; 0 keeps none).",
            width=78,
        ),
    )
    g.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1,
        help="Number of events processed at once, one per worker (thread, process or Dask "
        "worker), from 1 to 64 per CPU: --jobs N uses N cores, since the Numba kernels of "
        "each event run on its worker's thread alone (--jobs 1 keeps to one core). At most "
        "1024 events are queued at once, whatever --jobs is. (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--scheduler", default="auto",
        help="Where events run: auto (the default: threads for --jobs 1 or fewer than 10 "
        "events per job, processes otherwise), threads (one process; the least CPU per "
        "event, but the events' Python code takes turns on the interpreter lock, so two "
        "threads reached only ~1.5x one on realistic events), processes (--jobs worker "
        "processes forked from one fork server that imports the engine once; --jobs 2 "
        "~1.9x --jobs 1 once started), synchronous (one event at a time, in this thread), distributed (a "
        "local Dask cluster of --jobs worker processes) or the address of a running "
        "scheduler (tcp://HOST:PORT). bench/README.md, 'Realistic events end to end', "
        "has the figures. (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--results",
        help="Where the results Dataset is written: a zarr store (NAME.zarr, local or any "
        "URL such as s3://bucket/run.zarr) updated as events finish and readable with "
        "xarray.open_zarr while the run goes on (the same command fills what a killed run "
        "left), or a netCDF file written at the end (default: llama_batch_results.nc beside "
        "the event directories, when --eventdir is given).",
    )
    return p


# -- helpers of main -------------------------------------------------------------------
_NO_ARGUMENTS = (
    "no arguments: give the params (NAME=FILE, e.g. graceid=ids.txt) and where to keep "
    "the events (--eventdir DIR, --put FILE=PATH and/or --results FILE); "
    "'llama batch --help' lists every option, and 'llama batch @llama/examples/review.args' "
    "runs the example of README.md"
)
_NOTHING_KEPT = (
    "nothing would be kept: without --eventdir each event lives in a temporary directory "
    "that is deleted after --put; give --eventdir DIR, --put FILE=PATH and/or --results FILE"
)


class UsageError(Exception):
    """A mistake in the command line or its inputs: one clear message, exit status 2."""


def _analysis_names() -> list[str]:
    from llama.config import ANALYSIS_OPTIONS

    return list(ANALYSIS_OPTIONS)


#: Analysis options that are numbers (checked as such before any event runs).
_NUMERIC_OPTIONS = {"n_trials": int, "trial_stop_after": int, "overlap_rtol": float}


@contextlib.contextmanager
def _analysis_options(entries: Sequence[str]):
    """Set the environment variables of ``--analysis NAME=VALUE`` entries while the
    run goes on (worker processes inherit them), checked first; restored after."""
    from llama.config import ANALYSIS_OPTIONS, analysis_number, analysis_option

    wanted: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or name.strip() not in ANALYSIS_OPTIONS:
            raise UsageError(
                f"--analysis {entry!r}: give NAME=VALUE with NAME one of "
                f"{', '.join(ANALYSIS_OPTIONS)} (e.g. trial_stop_after=20)"
            )
        wanted[ANALYSIS_OPTIONS[name.strip()][0]] = value.strip()
    saved = {var: os.environ.get(var) for var in wanted}
    os.environ.update(wanted)
    try:
        for entry in entries:
            name = entry.partition("=")[0].strip()
            try:
                if name in _NUMERIC_OPTIONS:
                    number = analysis_number(name, _NUMERIC_OPTIONS[name])
                    if number is not None and not number > 0:
                        raise ValueError(f"{ANALYSIS_OPTIONS[name][0]}={number} must be > 0")
                else:
                    analysis_option(name)
            except ValueError as err:
                raise UsageError(f"--analysis {entry!r}: {err}") from None
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _setup_logging(logfile: str, verbosity: str) -> None:
    root = logging.getLogger("llama")
    root.setLevel(logging.DEBUG)
    root.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    from llama.storage import RedactingFilter

    # on the handlers, not the logger: they see the records of every llama.* logger
    redacting = RedactingFilter()
    if verbosity != "none":
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(getattr(logging, verbosity.upper()))
        console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        console.addFilter(redacting)
        root.addHandler(console)
    path = Path(logfile).expanduser()
    if path.resolve() != Path(os.devnull).resolve():
        from llama.batch.preflight import check_writable

        check_writable(path, "-l/--logfile")
        handler = logging.FileHandler(path)
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(fmt)
        handler.addFilter(redacting)
        root.addHandler(handler)


def _choose_flags(args) -> dict[str, str] | None:
    from llama.flags import PRESETS, parse_flag_args

    if args.flags is not None:
        return dict(parse_flag_args(args.flags)) if args.flags else None
    if sys.stdin.isatty() and not args.dry_run_flags:
        answer = input(
            f"Flags for these events: a preset ({', '.join(PRESETS)}) and/or NAME=value pairs; "
            "empty keeps existing flags (new events: DEFAULT): "
        ).split()
        return dict(parse_flag_args(answer)) if answer else None
    logging.getLogger("llama.batch").info(
        "no --flags given: existing events keep their flags, new events get the DEFAULT preset"
    )
    return None


def _check_templates(args, params: dict[str, list[str]]) -> None:
    """Fail before any work when a template names a field nobody provides."""
    from llama.batch import template

    known = set(params) | set(os.environ)
    for tmpl in _path_templates(args):
        for name in template.fields(tmpl):
            if name not in known:
                raise UsageError(
                    f"template {tmpl!r} uses {{{name}}}, which is neither a params name "
                    f"({', '.join(sorted(params)) or 'none given'}) nor an environment variable; "
                    f"add {name}=FILE to the params or set ${name}"
                )


def _path_templates(args) -> list[str]:
    """The templates that become paths or URLs (not --format, whose files are text)."""
    templates = [*args.get.values(), *args.put.values(), *args.errdump]
    if args.eventdir:
        templates.append(args.eventdir)
    return templates


def _check_values(args, params) -> None:
    """Refuse, before any event runs, a value that would lead out of its directory.

    Every value of every params list used by a path template is checked, which
    covers every vector of the Cartesian product and every possible --random draw.
    """
    from llama.batch import template

    mode = "path" if args.allow_path_values else "name"
    origin = getattr(params, "origin", None)
    template.check_values(_path_templates(args), params, os.environ, mode=mode, origin=origin)


def _check_waits() -> None:
    """Refuse, before any work, a timeout or retry budget that is not a number of seconds,
    or a map store bound that is not a size."""
    from llama.config import NETWORK_OPTIONS, map_store_bytes, network_option

    for check in [*(lambda n=name: network_option(n) for name in NETWORK_OPTIONS), map_store_bytes]:
        try:
            check()
        except ValueError as err:
            raise UsageError(str(err)) from None


def _check_event_names(args) -> None:
    from llama import storage

    for opt, names in (("--get", args.get), ("--put", args.put), ("--format", args.format)):
        for name in names:
            try:
                storage.safe_join("/event", name)
            except storage.UnsafePathError as err:
                raise UsageError(f"{opt} {name}: {err}") from None


def _results_path(args) -> str | Path | None:
    if args.results:
        from llama.results import is_zarr

        if "://" in args.results and not args.results.startswith("file://"):
            if not is_zarr(args.results):
                raise UsageError(
                    f"--results {args.results}: netCDF results are written locally; give a "
                    "local file, or a zarr store (a URL ending in .zarr) for a remote place"
                )
            return args.results
        return Path(args.results.removeprefix("file://")).expanduser()
    if not args.eventdir:
        return None
    fixed = Path(os.path.expanduser(args.eventdir.split("{")[0]))
    folder = fixed if args.eventdir.split("{")[0].endswith("/") else fixed.parent
    return folder / "llama_batch_results.nc"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``llama batch``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        # the reference page makes every argument optional, but a run with none has no
        # events to read and nowhere to keep them: say what to give instead of running
        print(parser().format_usage().rstrip(), file=sys.stderr)
        print(f"llama batch: error: {_NO_ARGUMENTS}", file=sys.stderr)
        return 2
    previous = _catch_sigint()
    try:
        p = parser()
        args = p.parse_args(argv)
        return _main(args)
    except _user_errors() as err:
        from llama.storage import redact

        print(f"llama batch: error: {redact(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C before or after the events ran (reading params, writing results): the
        # run loop handles the one during the events
        print("llama batch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _catch_sigint():
    """Make the first Ctrl-C a KeyboardInterrupt and any later one an immediate exit.

    The first one stops the run cleanly (results of the finished events written);
    a second one, while that happens, must not print a traceback from wherever it
    lands. Returns the previous handler, None where none can be set (not the main
    thread) or where SIGINT is ignored (a background job of a shell).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        return None

    def first(signum, frame):
        signal.signal(signal.SIGINT, _exit_at_once)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)
    return previous


def _user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean bad input: reported in one line, never as a traceback."""
    from llama.batch.preflight import PreflightError
    from llama.batch.sweep import ParamsError
    from llama.batch.template import TemplateError
    from llama.flags import FlagError
    from llama.storage import StorageError, UnsafePathError

    return (
        UsageError,
        PreflightError,
        ParamsError,
        TemplateError,
        FlagError,
        StorageError,
        UnsafePathError,
    )


def _main(args) -> int:
    from llama.version import __version__, release_problem

    if args.version:
        print(__version__)
        return 0
    if args.flag_presets:
        from llama.flags import PRESETS

        for name, preset in PRESETS.items():
            print(f"{name}: {dict(preset)}")
        return 0
    if args.print_default_pipeline:
        from llama.pipeline import DEFAULT_PIPELINE

        print("\n".join(DEFAULT_PIPELINE.names()))
        return 0
    from llama.batch.preflight import check_no_nul

    check_no_nul(vars(args))
    _setup_logging(args.logfile, args.verbosity)
    log = logging.getLogger("llama.batch")
    problem = release_problem()
    if problem and not args.dev_mode:
        raise UsageError(f"{problem}; refusing to run. Use -D/--dev-mode to run anyway.")
    if problem:
        log.warning("dev mode: %s", problem)
    pipeline = _pipeline(args)
    if args.dry_run_pipeline:
        print("\n".join(pipeline.names()))
        return 0
    flags = _flags(args)
    if args.dry_run_flags:
        from llama.flags import DEFAULT_FLAGS

        print(
            dict(flags)
            if flags is not None
            else f"existing flags, new events: {dict(DEFAULT_FLAGS)}"
        )
        return 0
    with _analysis_options(args.analysis):
        if args.analysis:
            log.info("analysis options of this run: %s", " ".join(args.analysis))
        return _run(args, pipeline, flags, __version__, log)


def _pipeline(args):
    from llama.pipeline import select_pipeline

    try:
        return select_pipeline(args.pipeline, args.filehandlers, args.plus_filehandlers)
    except KeyError as err:
        raise UsageError(err.args[0]) from None


def _flags(args):
    from llama.flags import FlagError

    try:
        return _choose_flags(args)
    except FlagError as err:
        raise UsageError(str(err)) from None


def _run(args, pipeline, flags, version, log) -> int:
    from llama import storage
    from llama.batch import preflight, sweep, template
    from llama.batch.runner import BatchConfig, check_jobs, run_batch
    from llama.batch.worker_processes import restore_environment

    try:  # before the params are read: a bad --jobs needs no downloads to be found
        check_jobs(args.jobs)
    except ValueError as err:
        raise UsageError(str(err)) from None
    # before any event: these used to surface after every event had run
    preflight.check_seed(args.seed)
    preflight.check_put_destinations(args.put)
    _check_event_names(args)
    try:
        params = sweep.parse_params(args.params)
    except (sweep.ParamsError, storage.StorageError) as err:
        raise UsageError(str(err)) from None
    _check_templates(args, params)
    _check_values(args, params)
    _check_waits()
    if not (args.eventdir or args.put or args.results):
        raise UsageError(_NOTHING_KEPT)
    results = _results_path(args)  # last check: it makes the results folder
    if results is not None:
        where = "--results" if args.results else "the results file (default: beside --eventdir)"
        preflight.check_writable(results, where)
    from llama.sweep_api import plan_sweep

    # the one path shared with llama.sweep: same vectors, same results layout
    plan = plan_sweep(params, args.random, args.seed)
    total = plan.total
    environ = _start_early(args, total, results, pipeline)
    log.info("pipeline %s: %d handlers; %s events", pipeline.name or "custom", len(pipeline),
             total if total is not None else "endless")  # fmt: skip
    config = BatchConfig(
        pipeline=pipeline, get=args.get, put=args.put, format=args.format,
        errdump=args.errdump, eventdir=args.eventdir, flags=flags, public=args.public,
        jobs=args.jobs, scheduler=args.scheduler, version=version,
        err_alert=args.err_alert, allow_path_values=args.allow_path_values,
    )  # fmt: skip
    started = time.time()  # results written by another run after this are merged
    try:
        writer = _results_writer(args, plan)
        summary = run_batch(plan.vectors(), config, total=total, progress=args.verbosity != "none",
                            keep_outcomes=total is not None, on_outcome=writer)  # fmt: skip
    except (template.TemplateError, storage.UnsafePathError, ValueError) as err:
        raise UsageError(str(err)) from None
    finally:
        restore_environment(environ)  # Numba's thread count, set for a run on threads
    summary.seed = plan.seed
    _write_results(args, summary, log, started, plan, writer)
    log.debug("%s", summary.line())  # printed to stdout just below; the log file keeps it
    print(summary.line(), file=sys.stderr if args.verbosity == "none" else sys.stdout)
    for note in summary.notes():
        log.debug("%s", note)
        print(note, file=sys.stderr)
    if summary.interrupted:
        _exit_now(130)
    return 0 if summary.ok else 1


def _start_early(args, total: int | None, results, pipeline) -> dict[str, str | None]:
    """Start what the run's end and its worker processes need while the driver is idle.

    Where the events run in worker processes, the fork server starts importing the
    engine now (`start_workers_early`), before the rest of the set-up; and with
    ``--jobs 2`` or more and a netCDF results file, a thread of the driver imports and
    runs the results writer once on a tiny file (`llama.results.warm_netcdf_writer`:
    h5netcdf and h5py, ~0.1 s since the file is written without xarray) while the
    driver waits for the workers' first events, so that after the last event only
    the file's own writing is left. On threads or with ``--jobs 1``
    nothing is warmed: the driver's cores are the events' (``--jobs 1`` keeps to one),
    and the memory an event frees is kept for the next (`keep_freed_memory`, as the
    fork server does for its workers). On threads, for a kind of run whose earlier runs
    loaded kernels, the kernels recorded are loaded now, without Numba's registries
    (`kernels_for_threads`: 0.3-0.5 s less CPU before the first event's end, as in
    the fork server). The run's kind (`_run_kind`) is set in the environment first,
    so that the fork server, the workers and this process load and record the
    kernels of this kind of run (`llama.batch.worker_kernels.RUN_VARIABLE`). Returns
    the environment variables set for the run, to put back after it.
    """
    from llama.batch.schedulers import start_workers_early
    from llama.batch.worker_kernels import RUN_VARIABLE

    previous = {RUN_VARIABLE: os.environ.get(RUN_VARIABLE)}
    os.environ[RUN_VARIABLE] = _run_kind(pipeline)
    chosen = start_workers_early(args.scheduler, args.jobs, total)
    in_workers = chosen in ("processes", "distributed") or "://" in chosen
    if not in_workers:  # the events run on this process's threads
        from llama.batch.worker_processes import keep_freed_memory, kernels_for_threads

        keep_freed_memory()
        return {**kernels_for_threads(), **previous}
    if args.jobs < 2 or results is None:
        return previous
    from llama.results import is_zarr, warm_netcdf_writer

    if is_zarr(results):  # written as events finish, by the driver: nothing to warm
        return previous

    def warm() -> None:
        log = logging.getLogger("llama.batch")
        start = time.monotonic()
        try:
            warm_netcdf_writer()
        except Exception as err:  # the real file reports any problem of its own
            log.debug("results writer not warmed: %s", err)
        else:
            log.debug("results writer warmed in %.1f s", time.monotonic() - start)

    threading.Thread(target=warm, name="llama-results-warm", daemon=True).start()
    return previous


def _run_kind(pipeline) -> str:
    """What decides which kernels a run's events use: its handlers and the analysis
    options set in the environment (``--analysis``, or set by the caller), one line.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> _run_kind(SimpleNamespace(names=lambda: ["SkymapInfo", "CoincSignificanceI3Lvc"])).split()[0]
    'CoincSignificanceI3Lvc,SkymapInfo'
    """
    from llama.config import ANALYSIS_OPTIONS

    variables = sorted({variable for variable, *_ in ANALYSIS_OPTIONS.values()})
    options = [f"{v}={os.environ[v]}" for v in variables if os.environ.get(v)]
    return " ".join([",".join(sorted(set(pipeline.names()))), *options])


def _exit_at_once(signum, frame) -> None:
    """The handler of a second Ctrl-C: one line, no traceback, exit status 130."""
    os.write(2, b"llama batch: interrupted again; exiting now\n")
    _exit_now(130)


def _exit_now(status: int) -> None:
    """End the process now, without waiting for the tasks still running.

    After Ctrl-C, Dask's worker threads may still wait on a server that never
    answers; a normal exit joins them (minutes) and a second Ctrl-C during that join
    printed a traceback. Everything that must survive is already on disk: finished
    events, their locks' release (the kernel drops them with the process), the
    results. Worker processes (``--scheduler processes``) are ended first.
    """
    try:
        # no import here: a second Ctrl-C landing while the first's call imported
        # multiprocessing found it half-initialised (no active_children) and raised
        mp = sys.modules.get("multiprocessing")  # imported by whoever started workers
        for child in getattr(mp, "active_children", list)():
            child.terminate()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe; or, from a second Ctrl-C's handler, the
                pass  # stream this process was writing ("reentrant call"): end anyway
        try:
            logging.shutdown()
        except Exception:  # as above, in a log handler's stream
            pass
    finally:
        # whatever the above raised, the process ends here: raised on, it reached the
        # normal exit, which joined the threads still waiting on a silent server (a CI
        # run waited past 10 s; tests/test_waits_and_locks.py)
        os._exit(status)


def _results_writer(args, plan):
    """The zarr store of ``--results NAME.zarr``, opened before any event runs."""
    from llama.sweep_api import results_writer

    try:
        return results_writer(_results_path(args), plan)
    except (OSError, ValueError) as err:
        raise UsageError(f"--results {args.results}: {err}") from None


def _write_results(args, summary, log, started: float, plan, writer) -> None:
    from llama.storage import redact
    from llama.sweep_api import finish_results

    path = finish_results(_results_path(args), summary, plan, writer, merge_since=started)
    if path is not None:
        log.info("results of %d events in %s", summary.total, redact(str(path)))


if __name__ == "__main__":
    sys.exit(main())
