"""Synthetic GW sky maps, neutrino lists and whole events, reproducible from a seed.

Every function takes a :class:`numpy.random.Generator`, so a seed reproduces the
output exactly (``np.random.default_rng(seed)``).

* Sky maps: a Fisher-von Mises blob (or several) on an adaptive NESTED grid, written
  as a multi-order map: coarse where the probability is low, refined (up to
  ``max_order``) where it is high, as BAYESTAR does.  Distance layers follow the
  ansatz of :func:`llama.science.skymap.moments_to_parameters`.
* Background neutrinos: N ~ Poisson(6.4 mHz x 1000 s) in t_gw +- 500 s, uniform in time
  and RA, sin(dec) from a horizon-peaked density, sigma log-uniform in [0.2, 3] deg,
  log10(E/GeV) ~ N(3.0, 0.25) in the north (up-going) and N(4.5, 0.25) in the south.
* Signal neutrinos: a direction drawn from the GW map, smeared by the neutrino's sigma.

Examples
--------
>>> import numpy as np
>>> from llama.science.sim import simulate_skymap, simulate_background_neutrinos
>>> rng = np.random.default_rng(1)
>>> m = simulate_skymap(rng, 120.0, -30.0, sigma_deg=3.0, max_order=7)
>>> m.is_moc, m.max_order, round(float(m.probability().sum()), 12)
(True, 7, 1.0)
>>> len(simulate_background_neutrinos(np.random.default_rng(2), 58598.0)) >= 0
True
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any

import numpy as np

from llama.science import constants as C
from llama.science.neutrinos import NeutrinoList
from llama.science.skymap import SkyMap, moments_to_parameters, order_ipix_to_uniq
from llama.science.times import SECONDS_PER_DAY, gps_to_iso, gps_to_mjd

__all__ = [
    "simulate_skymap",
    "simulate_background_neutrinos",
    "simulate_background_sample",
    "simulate_signal_neutrino",
    "simulate_event",
    "make_graceid",
    "SimulatedEvent",
    "sigma_from_area90",
    "write_background_sample",
]

#: Scale of the horizon-peaked sin(dec) density p(s) ~ exp(-|s| / S0) of background.
BACKGROUND_SINDEC_SCALE = 0.3
#: Mean and spread of log10(E / GeV) of background neutrinos, north and south.
BACKGROUND_LOG10E_NORTH = 3.0
BACKGROUND_LOG10E_SOUTH = 4.5
BACKGROUND_LOG10E_SPREAD = 0.25
#: Width of the north/south transition of the background energy [deg of dec].
BACKGROUND_TRANSITION_DEG = 5.0
#: Range of the neutrino angular errors drawn (log-uniform) [deg].
SIGMA_RANGE_DEG = (C.SIGMA_FLOOR_DEG, 3.0)
#: Range of log10(E / GeV) of injected signal neutrinos (uniform).
SIGNAL_LOG10E_RANGE = (4.0, 5.5)
#: O3 ran from 2019-04-01 to 2020-03-27 (GPS s); random event times fall inside.
O3_GPS_RANGE = (1238166018.0, 1269363618.0)


# --- sky maps ------------------------------------------------------------------------


def sigma_from_area90(area90_deg2: float) -> float:
    """1-sigma radius [deg] of a circular 2-D Gaussian with this 90% area [deg^2].

    r90 = R90_PER_SIGMA * sigma and area90 = pi r90^2 (flat-sky approximation).

    Examples
    --------
    >>> round(sigma_from_area90(100.0), 4)
    2.629
    """
    return math.sqrt(area90_deg2 / math.pi) / C.R90_PER_SIGMA


def _unit_vector(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _fvm_density(xyz: np.ndarray, centres: np.ndarray, kappas, weights) -> np.ndarray:
    """Mixture of Fisher-von Mises densities [sr^-1] at unit vectors xyz (n, 3)."""
    out = np.zeros(len(xyz))
    for c, k, w in zip(centres, kappas, weights, strict=True):
        # exp(kappa (cos psi - 1)) with the normalisation written to avoid overflow
        norm = k / (2 * np.pi * -np.expm1(-2 * k))
        out += w * norm * np.exp(k * (xyz @ c - 1.0))
    return out


def _offset(ra_deg, dec_deg, psi_deg, pa_deg) -> tuple[np.ndarray, np.ndarray]:
    """Point at angular distance psi and position angle pa from (ra, dec) [deg]."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    psi, pa = np.radians(psi_deg), np.radians(pa_deg)
    sin_dec2 = np.sin(dec) * np.cos(psi) + np.cos(dec) * np.sin(psi) * np.cos(pa)
    dec2 = np.arcsin(np.clip(sin_dec2, -1, 1))
    dra = np.arctan2(np.sin(pa) * np.sin(psi) * np.cos(dec), np.cos(psi) - np.sin(dec) * sin_dec2)
    return np.degrees(ra + dra) % 360.0, np.degrees(dec2)


def simulate_skymap(
    rng: np.random.Generator,
    ra_deg: float,
    dec_deg: float,
    sigma_deg: float | None = None,
    area90_deg2: float | None = None,
    distmean: float = 400.0,
    diststd: float = 120.0,
    max_order: int = 8,
    n_blobs: int = 1,
    base_order: int | None = None,
    meta: dict[str, Any] | None = None,
) -> SkyMap:
    """A multi-order GW sky map made of Fisher-von Mises blobs.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the positions, widths and weights of extra blobs (none for n_blobs=1).
    ra_deg, dec_deg : float
        Centre of the main blob [deg].
    sigma_deg, area90_deg2 : float
        Width of each blob: 1-sigma radius [deg], or the 90% area [deg^2] of the main
        blob (converted with :func:`sigma_from_area90`).  Give one.
    distmean, diststd : float
        Mean and standard deviation of the distance [Mpc]; the layers are
        ``moments_to_parameters(distmean, diststd)`` in every pixel.
    max_order : int
        Finest HEALPix order (NSIDE = 2**max_order).
    n_blobs : int
        Number of blobs; extra ones lie 2 sigma to 60 deg + 2 sigma from the main one,
        with weights 0.2-0.8 of it.
    base_order : int, optional
        Order of the all-sky starting grid (default 4, or max_order if smaller).  Each
        level refines the most probable quarter of the pixels, so a map has
        ``12 * 4**base_order * (1 + 0.75 * (max_order - base_order))`` rows:
        12,288 for (4, 8), 19,200 for (4, 11), 3,648 for (3, 8).
    meta : dict, optional
        Extra header metadata (objid, gps_time, instruments ...).

    Returns
    -------
    SkyMap
        Multi-order, normalised, with distance layers and DISTMEAN/DISTSTD in meta.

    Examples
    --------
    >>> m = simulate_skymap(np.random.default_rng(0), 10.0, 20.0, area90_deg2=100.0,
    ...                     max_order=8)
    >>> len(m), 70 < m.area90() < 130
    (12288, True)
    """
    if (sigma_deg is None) == (area90_deg2 is None):
        raise ValueError("give exactly one of sigma_deg or area90_deg2")
    sigma = float(sigma_deg) if sigma_deg is not None else sigma_from_area90(float(area90_deg2))
    if not sigma > 0:
        raise ValueError(f"blob width must be positive, got sigma = {sigma} deg")
    if not 0 <= max_order <= 29:
        raise ValueError(f"max_order must be in [0, 29], got {max_order}")
    base = min(max_order, 4 if base_order is None else int(base_order))

    ras, decs, sigmas, weights = [float(ra_deg)], [float(dec_deg)], [sigma], [1.0]
    for _ in range(int(n_blobs) - 1):
        psi = min(2 * sigma + rng.uniform(0, 60.0), 180.0)
        ra2, dec2 = _offset(ra_deg, dec_deg, psi, rng.uniform(0, 360))
        ras.append(float(ra2))
        decs.append(float(dec2))
        sigmas.append(sigma * rng.uniform(0.7, 1.3))
        weights.append(rng.uniform(0.2, 0.8))
    centres = _unit_vector(np.array(ras), np.array(decs)).reshape(-1, 3)
    kappas = 1.0 / np.radians(np.array(sigmas)) ** 2
    weights = np.array(weights) / np.sum(weights)

    uniq, dens = _adaptive_grid(centres, kappas, weights, base, int(max_order))
    area = 4 * np.pi / (12 * 4.0 ** _orders(uniq))
    dens /= np.sum(dens * area)  # exact normalisation of the sampled density
    mu, sig, norm = moments_to_parameters(float(distmean), float(diststd))
    n = len(uniq)
    full_meta = {"distmean": float(distmean), "diststd": float(diststd)}
    full_meta.update(creator="llama.science.sim", origin="LLAMA simulation")
    full_meta.update(meta or {})
    return SkyMap(
        probdensity=dens,
        uniq=uniq,
        distmu=np.full(n, mu),
        distsigma=np.full(n, sig),
        distnorm=np.full(n, norm),
        meta=full_meta,
    )


def _orders(uniq: np.ndarray) -> np.ndarray:
    from llama.science.skymap import uniq_to_order_ipix

    return uniq_to_order_ipix(uniq)[0].astype(float)


def _adaptive_grid(centres, kappas, weights, base: int, max_order: int):
    """BAYESTAR-style adaptive refinement: split the most probable quarter each level."""
    import healpy as hp

    ipix = np.arange(12 * 4**base, dtype=np.int64)
    n_split = max(len(ipix) // 4, 1)
    out_uniq, out_dens = [], []
    for order in range(base, max_order + 1):
        xyz = np.stack(hp.pix2vec(2**order, ipix, nest=True), axis=-1)
        dens = _fvm_density(xyz, centres, kappas, weights)
        if order == max_order:
            keep = np.ones(len(ipix), dtype=bool)
        else:
            # Same order => same area, so ranking by density ranks by probability.
            top = np.argsort(-dens, kind="stable")[:n_split]
            keep = np.ones(len(ipix), dtype=bool)
            keep[top] = False
        out_uniq.append(order_ipix_to_uniq(order, ipix[keep]))
        out_dens.append(dens[keep])
        if order < max_order:
            ipix = (ipix[~keep][:, None] * 4 + np.arange(4)).ravel()
    uniq = np.concatenate(out_uniq)
    dens = np.concatenate(out_dens)
    return uniq, dens


# --- neutrinos ---------------------------------------------------------------------------


def _draw_background(rng: np.random.Generator, n: int):
    """Declination [deg], sigma [deg] and energy [GeV] of n background neutrinos."""
    # |sin dec| from a truncated exponential (inverse CDF), sign uniform: most of the
    # realtime stream arrives near the horizon.
    s0 = BACKGROUND_SINDEC_SCALE
    u = rng.uniform(size=n)
    abs_s = -s0 * np.log1p(-u * -np.expm1(-1.0 / s0))
    sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    dec = np.degrees(np.arcsin(np.clip(sign * abs_s, -1, 1)))
    lo, hi = np.log(SIGMA_RANGE_DEG[0]), np.log(SIGMA_RANGE_DEG[1])
    sigma = np.exp(rng.uniform(lo, hi, size=n))
    # Up-going (north) events are mostly atmospheric neutrinos at ~TeV; down-going
    # (south) ones survive only at high energy.  A smooth step avoids an edge at dec 0.
    south = 1.0 / (1.0 + np.exp(dec / BACKGROUND_TRANSITION_DEG))
    mean = BACKGROUND_LOG10E_NORTH + (BACKGROUND_LOG10E_SOUTH - BACKGROUND_LOG10E_NORTH) * south
    energy = 10 ** rng.normal(mean, BACKGROUND_LOG10E_SPREAD)
    return dec, sigma, energy


def simulate_background_neutrinos(
    rng: np.random.Generator,
    t_gw_mjd: float,
    rate_hz: float = C.NU_BACKGROUND_RATE_HZ,
    half_window_s: float = C.SEARCH_HALF_WINDOW_S,
    type: str = "unspecified",
) -> NeutrinoList:
    """A background neutrino list around t_gw (see the module docstring).

    Parameters
    ----------
    rng : numpy.random.Generator
    t_gw_mjd : float
        GW time, MJD (UTC).
    rate_hz : float
        All-sky background rate [Hz]; default NU_BACKGROUND_RATE_HZ (6.4 mHz).
    half_window_s : float
        Half-width of the window [s]; default SEARCH_HALF_WINDOW_S (500 s).
    type : str
        The triggers' type field.

    Returns
    -------
    NeutrinoList
        Sorted by time, ``complete`` True, zenith = 90 + dec.
    """
    n = int(rng.poisson(rate_hz * 2 * half_window_s))
    dt = rng.uniform(-half_window_s, half_window_s, size=n)
    ra = rng.uniform(0.0, 360.0, size=n)
    dec, sigma, energy = _draw_background(rng, n)
    order = np.argsort(dt, kind="stable")
    return NeutrinoList(
        mjd=(t_gw_mjd + dt / SECONDS_PER_DAY)[order],
        ra=ra[order],
        dec=dec[order],
        sigma=sigma[order],
        energy=energy[order],
        type=np.full(n, type, dtype=object),
        zenith=(90.0 + dec)[order],
        complete=True,
    )


def simulate_background_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(zenith [deg], energy [GeV]) of n background neutrinos, for B_i.

    The same distributions as :func:`simulate_background_neutrinos` (zenith = 90 + dec).
    The shipped ``data/background_neutrinos.npz`` is ``simulate_background_sample(20000,
    seed=20190425)``; regenerate it with ``python -m llama.science.sim``.

    Examples
    --------
    >>> zen, en = simulate_background_sample(1000, seed=1)
    >>> zen.shape, bool(zen.min() >= 0 and zen.max() <= 180 and en.min() > 0)
    ((1000,), True)
    """
    rng = np.random.default_rng(seed)
    dec, _, energy = _draw_background(rng, int(n))
    return 90.0 + dec, energy


#: Size and seed of the shipped background sample.
BACKGROUND_SAMPLE_SIZE = 20000
BACKGROUND_SAMPLE_SEED = 20190425


def write_background_sample(path=None, n: int = BACKGROUND_SAMPLE_SIZE, seed=None) -> str:
    """Write ``simulate_background_sample(n, seed)`` as an .npz with ``zenith``, ``energy``.

    Also records ``seed`` and ``generator`` in the file.  Returns the path written.
    """
    from pathlib import Path

    path = Path(path) if path else Path(__file__).parent / "data" / "background_neutrinos.npz"
    seed = BACKGROUND_SAMPLE_SEED if seed is None else int(seed)
    zenith, energy = simulate_background_sample(n, seed)
    np.savez_compressed(
        path,
        zenith=zenith,
        energy=energy,
        seed=np.int64(seed),
        generator=np.str_(f"llama.science.sim.simulate_background_sample({n}, seed={seed})"),
    )
    return str(path)


def simulate_signal_neutrino(
    rng: np.random.Generator,
    skymap: SkyMap,
    t_gw_mjd: float,
    sigma_deg: float | None = None,
    dt_s: float | None = None,
) -> NeutrinoList:
    """One injected neutrino drawn from the GW map.

    The true direction is a random point of a pixel drawn with the map's probability;
    the reported direction is that point smeared by a 2-D Gaussian of the neutrino's
    sigma (log-uniform in [0.2, 3] deg unless given).  The time is uniform within the
    emission window t_gw +- 250 s unless ``dt_s`` is given; the energy is log-uniform in
    10^4..10^5.5 GeV.  Type "injected".

    Examples
    --------
    >>> rng = np.random.default_rng(4)
    >>> m = simulate_skymap(rng, 50.0, 10.0, sigma_deg=1.0, max_order=8)
    >>> nu = simulate_signal_neutrino(rng, m, 58598.0)
    >>> len(nu), nu.type[0]
    (1, 'injected')
    """
    import healpy as hp

    from llama.science.skymap import uniq_to_order_ipix

    moc = skymap.to_moc()
    prob = moc.probability()
    k = int(rng.choice(len(prob), p=prob / prob.sum()))
    order, ipix = uniq_to_order_ipix(moc.uniq[k : k + 1])
    # A uniformly random sub-pixel at order 29 is a uniformly random point of the pixel.
    shift = 2 * (29 - int(order[0]))
    sub = (int(ipix[0]) << shift) + int(rng.integers(0, 1 << shift)) if shift else int(ipix[0])
    ra_true, dec_true = hp.pix2ang(2**29, sub, nest=True, lonlat=True)
    lo, hi = np.log(SIGMA_RANGE_DEG[0]), np.log(SIGMA_RANGE_DEG[1])
    sigma = float(sigma_deg) if sigma_deg is not None else float(np.exp(rng.uniform(lo, hi)))
    psi = sigma * math.sqrt(-2.0 * math.log1p(-rng.uniform()))  # Rayleigh(sigma)
    ra, dec = _offset(ra_true, dec_true, psi, rng.uniform(0, 360))
    if dt_s is None:
        dt_s = rng.uniform(-C.EMISSION_HALF_WINDOW_S, C.EMISSION_HALF_WINDOW_S)
    energy = 10 ** rng.uniform(*SIGNAL_LOG10E_RANGE)
    return NeutrinoList(
        mjd=[t_gw_mjd + dt_s / SECONDS_PER_DAY],
        ra=[float(ra)],
        dec=[float(dec)],
        sigma=[sigma],
        energy=[energy],
        type=np.array(["injected"], dtype=object),
        zenith=[90.0 + float(dec)],
    )


# --- whole events --------------------------------------------------------------------------


def make_graceid(gps_time: float, index: int = 0, prefix: str = "S") -> str:
    """A GraceDB-style superevent id: prefix + yymmdd (UTC) + letters (a..z, aa..).

    Examples
    --------
    >>> make_graceid(1240215503.0, 25)
    'S190425z'
    >>> make_graceid(1240215503.0, 26)
    'S190425aa'
    """
    day = gps_to_iso(gps_time)
    yymmdd = day[2:4] + day[5:7] + day[8:10]
    letters, i = "", int(index)
    while True:
        letters = string.ascii_lowercase[i % 26] + letters
        i = i // 26 - 1
        if i < 0:
            break
    return f"{prefix}{yymmdd}{letters}"


@dataclass
class SimulatedEvent:
    """A synthetic event: its sky map, skymap_info.json content and neutrino list."""

    graceid: str
    skymap: SkyMap
    skymap_info: dict[str, Any]
    neutrinos: NeutrinoList
    injected: bool


_NETWORKS = (("H1", "L1"), ("H1", "L1", "V1"), ("L1", "V1"), ("H1", "V1"))
_PIPELINES = ("GSTLAL", "PYCBC", "MBTAOnline", "SPIIR", "CWB")


def simulate_event(
    rng: np.random.Generator,
    graceid: str | None = None,
    gps_time: float | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    area90_deg2: float | None = None,
    distmean: float | None = None,
    max_order: int = 8,
    base_order: int | None = None,
    inject: bool = False,
    skymap_filename: str = "lvc_skymap.fits",
) -> SimulatedEvent:
    """A synthetic GW event with background neutrinos (and optionally one injected).

    Unset parameters are drawn: time uniform in O3, direction isotropic, 90% area
    log-uniform in [10, 3000] deg^2 (one or two blobs), distance log-uniform in
    [40, 1500] Mpc with std 20-45% of it, a random detector network, pipeline and FAR
    log-uniform in [1e-10, 1e-7] Hz.

    Returns
    -------
    SimulatedEvent
        ``skymap_info`` holds graceid, event_time_iso, notice_time_iso, far [Hz],
        pipeline, instruments, skymap_filename, alert_type, and the preferred event's
        snr and p_astro (used when GraceDB is not contacted).

    Examples
    --------
    >>> ev = simulate_event(np.random.default_rng(7), max_order=6, inject=True)
    >>> sorted(ev.skymap_info) == sorted(['graceid', 'event_time_iso', 'notice_time_iso',
    ...     'far', 'pipeline', 'instruments', 'skymap_filename', 'alert_type', 'snr', 'p_astro'])
    True
    >>> 'injected' in list(ev.neutrinos.type)
    True
    """
    if gps_time is None:
        gps_time = float(np.round(rng.uniform(*O3_GPS_RANGE), 3))
    if graceid is None:
        graceid = make_graceid(gps_time, int(rng.integers(0, 26)))
    if ra_deg is None:
        ra_deg = float(rng.uniform(0, 360))
    if dec_deg is None:
        dec_deg = float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
    if area90_deg2 is None:
        area90_deg2 = float(10 ** rng.uniform(1, math.log10(3000)))
    if distmean is None:
        distmean = float(10 ** rng.uniform(math.log10(40), math.log10(1500)))
    diststd = distmean * float(rng.uniform(0.2, 0.45))
    n_blobs = 2 if rng.uniform() < 0.3 else 1
    instruments = list(_NETWORKS[int(rng.integers(len(_NETWORKS)))])
    pipeline = _PIPELINES[int(rng.integers(len(_PIPELINES)))]
    far = float(10 ** rng.uniform(-10, -7))
    notice_delay = float(rng.uniform(30, 600))
    skymap = simulate_skymap(
        rng,
        ra_deg,
        dec_deg,
        area90_deg2=area90_deg2,
        distmean=distmean,
        diststd=diststd,
        max_order=max_order,
        n_blobs=n_blobs,
        base_order=base_order,
        meta={"objid": graceid, "gps_time": gps_time, "instruments": instruments},
    )
    t_mjd = gps_to_mjd(gps_time)
    neutrinos = simulate_background_neutrinos(rng, t_mjd)
    if inject:
        neutrinos = neutrinos.concatenate(simulate_signal_neutrino(rng, skymap, t_mjd))
    info = {
        "graceid": graceid,
        "event_time_iso": gps_to_iso(gps_time),
        "notice_time_iso": gps_to_iso(gps_time + notice_delay),
        "far": far,
        "pipeline": pipeline,
        "instruments": instruments,
        "skymap_filename": skymap_filename,
        "alert_type": "Preliminary",
        "snr": simulate_snr(rng, distmean),
        "p_astro": simulate_p_astro(rng),
    }
    return SimulatedEvent(graceid, skymap, info, neutrinos, bool(inject))


def simulate_snr(rng: np.random.Generator, distmean_mpc: float) -> float:
    """A network SNR for a source at ``distmean_mpc``, inside the search's energy prior.

    The statistic pins E_gw = (r rho / K0)^2 and gives it zero prior outside
    [E_GW_MIN, E_GW_MAX]; an SNR is drawn log-uniformly between RHO_MIN and the
    largest value that keeps E_gw in range (RHO_MIN when none does).

    Examples
    --------
    >>> from llama.science import constants as C
    >>> rho = simulate_snr(np.random.default_rng(1), 100.0)
    >>> C.RHO_MIN <= rho and (100.0 * rho / C.K0) ** 2 <= C.E_GW_MAX
    True
    """
    from llama.science import constants as C

    rho_max = 0.95 * C.K0 * math.sqrt(C.E_GW_MAX) / distmean_mpc
    rho_max = min(max(rho_max, C.RHO_MIN), 50.0)
    return round(float(math.exp(rng.uniform(math.log(C.RHO_MIN), math.log(rho_max)))), 2)


def simulate_p_astro(rng: np.random.Generator) -> dict[str, float]:
    """Source-class probabilities (BNS, NSBH, BBH, MassGap, Terrestrial) summing to 1.

    Examples
    --------
    >>> p = simulate_p_astro(np.random.default_rng(2))
    >>> sorted(p), round(sum(p.values()), 6)
    (['BBH', 'BNS', 'MassGap', 'NSBH', 'Terrestrial'], 1.0)
    """
    weights = rng.dirichlet([1.0, 0.5, 1.5, 0.2, 0.5])
    keys = ("BNS", "NSBH", "BBH", "MassGap", "Terrestrial")
    p = {k: round(float(w), 4) for k, w in zip(keys, weights, strict=True)}
    p["Terrestrial"] = round(1.0 - sum(v for k, v in p.items() if k != "Terrestrial"), 4)
    return p


if __name__ == "__main__":
    print("wrote", write_background_sample())
