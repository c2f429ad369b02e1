"""``llama background``: build and inspect background tables of the event statistic.

A background table holds, per key population/sensitivity/instruments, the sorted
event statistics (odds) of background events: the results of a ``llama batch
--results`` run over simulated GW maps x background neutrino lists, as O3 built its
tables. ``CoincSignificanceI3Lvc`` uses one when ``LLAMA_BACKGROUND_TABLE`` names it
(``LLAMA_BACKGROUND_SENSITIVITY`` picks the sensitivity when the file holds several).
The file layout is in :mod:`llama.science.background_table`.

Examples
--------
Shell::

    llama background build campaign/llama_batch_results.nc -o background.nc --sensitivity O3
    llama background build s3://bucket/campaign.zarr -o background.nc --append --sensitivity design
    llama background show background.nc

>>> from llama.cli.background import parser
>>> a = parser().parse_args(["build", "r.nc", "-o", "t.nc", "--population", "bns"])
>>> a.results, a.output, a.sensitivity, a.population
(['r.nc'], 't.nc', 'O3', ['bns'])
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llama.version import __version__

__all__ = ["parser", "main"]

#: Below this many background events a key's p-values cannot go under ~1e-2: say so.
_FEW_EVENTS = 100
#: Quantiles that ``show`` prints for each key.
_QUANTILES = (0.5, 0.9, 0.99)


def parser() -> argparse.ArgumentParser:
    """The argparse parser of ``llama background`` (no heavy imports)."""
    p = argparse.ArgumentParser(
        prog="llama background",
        description="Build background tables (sorted event statistics keyed by population, "
        "sensitivity and instruments, as O3's) from the results of 'llama batch --results', "
        "and show what a table holds. Name a table for CoincSignificanceI3Lvc with "
        "LLAMA_BACKGROUND_TABLE=TABLE.nc (and LLAMA_BACKGROUND_SENSITIVITY=LABEL when it "
        "holds several sensitivities).",
    )
    p.add_argument(
        "-V", "--version", action="version", version=__version__,
        help="Print the version number and exit.",
    )  # fmt: skip
    sub = p.add_subparsers(dest="what", required=True, metavar="{build,show}")

    b = sub.add_parser(
        "build",
        help="turn results Datasets of 'llama batch --results' into a background table",
        description="Group the events of one or more results of 'llama batch --results' "
        "(netCDF files, or zarr stores: local or s3://.../NAME.zarr) by population and "
        "instruments and write their sorted statistics as a netCDF table any xarray user "
        "opens. Failed, vetoed and incomplete events are skipped and counted.",
    )
    b.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="results of 'llama batch --results': NAME.nc files or NAME.zarr stores (local or URL)",
    )
    b.add_argument("-o", "--output", required=True, metavar="TABLE.nc", help="table to write")
    b.add_argument(
        "--sensitivity",
        default="O3",
        metavar="LABEL",
        help="sensitivity label of the keys built, e.g. O3 or design (default: %(default)s)",
    )
    b.add_argument(
        "--population",
        nargs="+",
        choices=("bns", "bbh"),
        help="keep only these populations; with one, events that record none take it",
    )
    b.add_argument(
        "--instruments",
        nargs="+",
        metavar="NETWORK",
        help="keep only these networks (e.g. H1,L1,V1); with one, events that record none take it",
    )
    b.add_argument(
        "--statistic",
        default="odds_ratio",
        choices=("odds_ratio", "subthreshold_odds_ratio"),
        help="results variable holding the event statistic (default: %(default)s)",
    )
    b.add_argument(
        "--append",
        action="store_true",
        help="add the new keys to an existing TABLE.nc (a key already there is an error)",
    )

    s = sub.add_parser(
        "show",
        help="print a table's keys, sizes and quantiles",
        description="Print each key of a background table with its number of events, the "
        "fraction at odds 0 (ties), a few quantiles and where it came from.",
    )
    s.add_argument("table", metavar="TABLE.nc", help="background table (.nc, or older .npz)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``llama background``; returns the exit status (0 fine, 1 error)."""
    args = parser().parse_args(argv)
    try:
        if args.what == "build":
            _build(args)
        else:
            _show(args)
    except BrokenPipeError:
        # the reader went away (``llama background show t.nc | head``): not an error
        sys.stderr.close()
        return 0
    except (ValueError, OSError) as exc:
        print(f"llama background {args.what}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _build(args) -> None:
    from pathlib import Path

    from llama.science.background_table import (
        merge_background_tables,
        open_background_table,
        table_from_results,
        write_background_table,
    )

    table, report = table_from_results(
        args.results,
        sensitivity=args.sensitivity,
        populations=args.population,
        instruments=args.instruments,
        statistic=args.statistic,
    )
    output = Path(args.output)
    if args.append and output.exists():
        old = open_background_table(output)
        clash = sorted(set(map(str, old.key.values)) & set(map(str, table.key.values)))
        if clash:
            raise ValueError(f"{output} already has key(s) {', '.join(clash)}")
        table = merge_background_tables(old, table)
    write_background_table(table, output)
    skipped = report["n_read"] - report["n_used"]
    if skipped:
        # Loud on purpose: a campaign with many failures gives a biased background.
        reasons = ", ".join(f"{why}: {n}" for why, n in sorted(report["skipped"].items()))
        print(
            f"WARNING: skipped {skipped} of {report['n_read']} events ({reasons})",
            file=sys.stderr,
        )
    for key, n in report["keys"].items():
        note = f"  (few events: p >= {1 / (n + 1):.2g})" if n < _FEW_EVENTS else ""
        print(f"{key}: {n} event{'s' if n != 1 else ''}{note}")
    print(f"wrote {output}: {len(report['keys'])} keys from {report['n_used']} events", end="")
    print(f" ({table.sizes['key']} in all)" if args.append else "")


def _show(args) -> None:
    import numpy as np

    from llama.science.background_table import background_odds, open_background_table

    table = open_background_table(args.table)
    print(f"{args.table}: {table.sizes['key']} keys (population/sensitivity/instruments)")
    names = "".join(f"{f'q{round(q * 100)}':>11}" for q in _QUANTILES)
    width = max([24, *(len(str(k)) + 1 for k in table.key.values)])  # '/subthreshold' keys
    print(f"{'key':<{width}}{'n_events':>9}{'at 0':>7}{names}{'max':>11}")
    for key in map(str, table.key.values):
        odds = background_odds(table, key)
        quantiles = "".join(f"{v:>11.3g}" for v in np.quantile(odds, _QUANTILES))
        zero = f"{np.mean(odds == 0):.0%}"
        print(f"{key:<{width}}{odds.size:>9}{zero:>7}{quantiles}{odds[-1]:>11.3g}")
    for key in map(str, table.key.values):
        row = table.sel(key=key)
        source = str(row.sources.values) if "sources" in table else ""
        when = str(row.created.values) if "created" in table else ""
        print(f"  {key}: built {when or '?'} from {source or '?'}")
