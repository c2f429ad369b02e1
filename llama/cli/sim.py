"""``llama sim``: write synthetic sky maps, neutrino lists and example event sets.

Examples
--------
Shell::

    llama sim skymap S1.fits --seed 1 --ra 120 --dec -30 --area90 200
    llama sim neutrinos nu.json --seed 2 --inject-from S1.fits
    llama sim examples llama/examples --seed 20190425 --n-events 8

>>> from llama.cli.sim import parser
>>> parser().parse_args(["skymap", "out.fits", "--sigma", "2"]).sigma
2.0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from llama.version import __version__

__all__ = ["parser", "main"]

EXAMPLES_SEED = 20190425
#: GPS time of GW190425, shared by every example event.
EXAMPLES_GPS = 1240215503.017


def parser() -> argparse.ArgumentParser:
    """The argparse parser of ``llama sim`` (no heavy imports)."""
    p = argparse.ArgumentParser(
        prog="llama sim",
        description="Write synthetic GW sky maps (LVK multi-order FITS), IceCube neutrino "
        "lists (icecube_neutrino_list.json format) and example event sets. Every output is "
        "reproducible from --seed.",
    )
    p.add_argument(
        "-V", "--version", action="version", version=__version__,
        help="Print the version number and exit.",
    )  # fmt: skip
    sub = p.add_subparsers(dest="what", required=True, metavar="{skymap,neutrinos,examples}")

    s = sub.add_parser(
        "skymap",
        help="a multi-order sky map of Fisher-von Mises blobs with distance layers",
        description="Write a synthetic multi-order sky map (UNIQ, PROBDENSITY, DISTMU, "
        "DISTSIGMA, DISTNORM). A path ending in .gz is compressed.",
    )
    s.add_argument("output", help="output FITS file (e.g. lvc_skymap.fits or S1.fits.gz)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    s.add_argument("--ra", type=float, help="RA of the main blob [deg] (default: random)")
    s.add_argument("--dec", type=float, help="Dec of the main blob [deg] (default: random)")
    width = s.add_mutually_exclusive_group()
    width.add_argument("--sigma", type=float, help="1-sigma radius of each blob [deg]")
    width.add_argument("--area90", type=float, help="90%% area [deg^2] (default: 100)")
    s.add_argument("--distmean", type=float, default=400.0, help="mean distance [Mpc]")
    s.add_argument("--diststd", type=float, default=120.0, help="distance std. dev. [Mpc]")
    s.add_argument("--max-order", type=int, default=8, help="finest HEALPix order")
    s.add_argument("--base-order", type=int, default=None, help="all-sky starting order")
    s.add_argument("--n-blobs", type=int, default=1, help="number of blobs")
    s.add_argument("--gps", type=float, help="event time [GPS s] for the header")
    s.add_argument("--objid", help="event id for the OBJECT header key")

    n = sub.add_parser(
        "neutrinos",
        help="a background neutrino list, optionally with a neutrino drawn from a sky map",
        description="Write an icecube_neutrino_list.json with Poisson(6.4) background "
        "neutrinos in t +- 500 s, plus one injected neutrino drawn from --inject-from.",
    )
    n.add_argument("output", help="output JSON file")
    n.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    when = n.add_mutually_exclusive_group()
    when.add_argument("--gps", type=float, help="GW time [GPS s]")
    when.add_argument("--mjd", type=float, help="GW time [MJD, UTC]")
    n.add_argument(
        "--inject-from",
        metavar="SKYMAP.fits",
        help="add one injected neutrino drawn from this map (its DATE-OBS is the default time)",
    )

    e = sub.add_parser(
        "examples",
        help="an example set: events/<graceid>/ with skymap_info.json and lvc_skymap.fits, "
        "neutrinos/<name>.json, graceids.txt, neutrinos.txt",
        description="Write N synthetic events (skymap_info.json, lvc_skymap.fits) that all "
        "happen at one GW time, background neutrino lists bg-NN.json around that time, and "
        "for each event inj-<graceid>.json (background plus one neutrino drawn from that "
        "event's map). Since every list shares the GW time, any map pairs with any list: a "
        "background and injection campaign over graceids.txt x neutrinos.txt.",
    )
    e.add_argument("outdir", help="output directory (created)")
    e.add_argument("--seed", type=int, default=EXAMPLES_SEED, help="random seed")
    e.add_argument("--n-events", type=int, default=8, help="number of events")
    e.add_argument("--n-background", type=int, default=16, help="number of background lists")
    e.add_argument("--gps", type=float, default=EXAMPLES_GPS, help="the common GW time [GPS s]")
    e.add_argument("--max-order", type=int, default=8, help="finest HEALPix order")
    e.add_argument("--base-order", type=int, default=3, help="all-sky starting order")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``llama sim``; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        if args.what == "skymap":
            _skymap(args)
        elif args.what == "neutrinos":
            _neutrinos(args)
        else:
            _examples(args)
    except (ValueError, OSError) as exc:
        print(f"llama sim {args.what}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _skymap(args) -> None:
    import numpy as np

    from llama.science.sim import simulate_skymap
    from llama.science.skymap import write_sky_map

    rng = np.random.default_rng(args.seed)
    ra = args.ra if args.ra is not None else float(rng.uniform(0, 360))
    dec = args.dec if args.dec is not None else float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
    meta = {}
    if args.gps is not None:
        meta["gps_time"] = args.gps
    if args.objid:
        meta["objid"] = args.objid
    m = simulate_skymap(
        rng,
        ra,
        dec,
        sigma_deg=args.sigma,
        area90_deg2=None if args.sigma is not None else (args.area90 or 100.0),
        distmean=args.distmean,
        diststd=args.diststd,
        max_order=args.max_order,
        n_blobs=args.n_blobs,
        base_order=args.base_order,
        meta=meta,
    )
    write_sky_map(args.output, m)
    print(f"wrote {args.output}: {len(m)} rows, max order {m.max_order}, "
          f"area90 {m.area90():.1f} deg2, centre ({ra:.3f}, {dec:.3f})")  # fmt: skip


def _neutrinos(args) -> None:
    import numpy as np

    from llama.science.sim import simulate_background_neutrinos, simulate_signal_neutrino
    from llama.science.skymap import read_sky_map
    from llama.science.times import gps_to_mjd

    skymap = read_sky_map(args.inject_from) if args.inject_from else None
    if args.mjd is not None:
        t_mjd = args.mjd
    elif args.gps is not None:
        t_mjd = gps_to_mjd(args.gps)
    elif skymap is not None and skymap.meta.get("gps_time") is not None:
        t_mjd = gps_to_mjd(skymap.meta["gps_time"])
    else:
        raise ValueError("give the GW time with --gps or --mjd (or a sky map with DATE-OBS)")
    rng = np.random.default_rng(args.seed)
    nl = simulate_background_neutrinos(rng, t_mjd)
    if skymap is not None:
        nl = nl.concatenate(simulate_signal_neutrino(rng, skymap, t_mjd))
    nl.write(args.output)
    print(f"wrote {args.output}: {len(nl)} neutrinos around MJD {t_mjd:.6f}")


_EXAMPLES_README = """\
# Example event set

Synthetic events and neutrino lists made by `llama sim examples` (all synthetic: no real
LVK or IceCube data). Regenerate exactly with:

    {command}

All events happen at the same GW time (GPS {gps}), so any sky map pairs with any
neutrino list: `graceids.txt` x `neutrinos.txt` is a background and injection campaign.

- `events/<graceid>/skymap_info.json`: the SkymapInfo input (graceid, event_time_iso,
  notice_time_iso, far [Hz], pipeline, instruments, skymap_filename, alert_type, and the
  snr and p_astro that LVCGraceDbEventData and PAstro use when GraceDB is not contacted).
- `events/<graceid>/lvc_skymap.fits`: LVK multi-order sky map (UNIQ, PROBDENSITY, DISTMU,
  DISTSIGMA, DISTNORM), gzip-compressed (readable by llama and ligo.skymap), max order {max_order}.
- `neutrinos/bg-NN.json`: background neutrinos (Poisson 6.4 in t_gw +- 500 s), in the
  icecube_neutrino_list.json format.
- `neutrinos/inj-<graceid>.json`: background plus one neutrino drawn from that event's
  sky map (type "injected"); paired with another event's map it is background.
- `graceids.txt`, `neutrinos.txt`: params files (one name per line) for `llama batch`.

| graceid | area90 [deg2] | distmean [Mpc] | snr | injected list |
|---|---|---|---|---|
{rows}
"""


def _examples(args) -> None:
    import math

    import numpy as np

    from llama.science.sim import (
        make_graceid,
        simulate_background_neutrinos,
        simulate_event,
        simulate_signal_neutrino,
    )
    from llama.science.skymap import write_sky_map
    from llama.science.times import gps_to_mjd

    if args.n_events < 1 or args.n_background < 1:
        raise ValueError("--n-events and --n-background must be at least 1")
    if args.n_events > 26:
        raise ValueError("--n-events is at most 26 (one GraceID letter each)")
    rng = np.random.default_rng(args.seed)
    events_dir = os.path.join(args.outdir, "events")
    nu_dir = os.path.join(args.outdir, "neutrinos")
    os.makedirs(events_dir, exist_ok=True)
    os.makedirs(nu_dir, exist_ok=True)
    t_mjd = gps_to_mjd(args.gps)
    names = []
    for i in range(args.n_background):
        name = f"bg-{i:02d}"
        simulate_background_neutrinos(rng, t_mjd).write(os.path.join(nu_dir, f"{name}.json"))
        names.append(name)
    graceids: list[str] = []
    rows: list[str] = []
    for i in range(args.n_events):
        # nearby sources, where the O3 energy prior admits SNRs above threshold
        distmean = float(math.exp(rng.uniform(math.log(40.0), math.log(250.0))))
        ev = simulate_event(rng, graceid=make_graceid(args.gps, i), gps_time=args.gps,
                            distmean=distmean, max_order=args.max_order,
                            base_order=args.base_order)  # fmt: skip
        graceids.append(ev.graceid)
        edir = os.path.join(events_dir, ev.graceid)
        os.makedirs(edir, exist_ok=True)
        with open(os.path.join(edir, "skymap_info.json"), "w") as f:
            json.dump(ev.skymap_info, f, indent=2)
            f.write("\n")
        # gzip content under the handler's file name: llama and ligo.skymap detect it.
        tmp = os.path.join(edir, "lvc_skymap.fits.gz")
        write_sky_map(tmp, ev.skymap)
        os.replace(tmp, os.path.join(edir, ev.skymap_info["skymap_filename"]))
        injected = simulate_background_neutrinos(rng, t_mjd).concatenate(
            simulate_signal_neutrino(rng, ev.skymap, t_mjd)
        )
        injected.write(os.path.join(nu_dir, f"inj-{ev.graceid}.json"))
        names.append(f"inj-{ev.graceid}")
        rows.append(
            f"| {ev.graceid} | {ev.skymap.area90():.0f} | {ev.skymap.meta['distmean']:.0f} "
            f"| {ev.skymap_info['snr']} | inj-{ev.graceid} |"
        )
    with open(os.path.join(args.outdir, "graceids.txt"), "w") as f:
        f.write("\n".join(graceids) + "\n")
    with open(os.path.join(args.outdir, "neutrinos.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    command = (
        f"llama sim examples {args.outdir} --seed {args.seed} --n-events {args.n_events} "
        f"--n-background {args.n_background} --gps {args.gps} "
        f"--max-order {args.max_order} --base-order {args.base_order}"
    )
    with open(os.path.join(args.outdir, "README.md"), "w") as f:
        f.write(
            _EXAMPLES_README.format(
                command=command, max_order=args.max_order, gps=args.gps, rows="\n".join(rows)
            )
        )
    print(f"wrote {len(graceids)} events and {len(names)} neutrino lists under {args.outdir}")


if __name__ == "__main__":
    sys.exit(main())
