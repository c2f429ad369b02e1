"""Scatter-plot handlers run through Event.generate on realistic inputs.

The builders here (a multi-order sky map, a neutrino list, a significance file, ZTF
candidates, an event holding them) are shared with test_handlers_tables.py.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from llama.event import Event
from llama.handlers import plots
from llama.science import plotting
from llama.science.skymap import SkyMap, order_ipix_to_uniq, write_hdf5

GRACEID = "S190425z"
EVENT_TIME_ISO = "2019-04-25T08:18:05.017553"
EVENT_MJD = 58598.34589140686  # EVENT_TIME_ISO as MJD (UTC)
#: Three neutrinos: two inside the GW region (one precise, one wide), one far away.
NEUTRINOS = [
    {"dt": -120.0, "ra": 176.0, "dec": 22.0, "sigma": 0.5, "energy": 2.0e3},
    {"dt": 33.0, "ra": 170.0, "dec": 15.0, "sigma": 1.5, "energy": 5.0e4},
    {"dt": 402.5, "ra": 300.0, "dec": -40.0, "sigma": 3.0, "energy": 1.0e6},
]
CANDIDATES = [
    {"ra": 174.0, "dec": 19.0, "name": "ZTF19aaaaaaa", "classification": "SN?"},
    {"ra": 178.0, "dec": 23.0, "name": "ZTF19bbbbbbb"},
    {"ra": 10.0, "dec": -5.0, "name": "ZTF19ccccccc"},
]


def moc_blob(ra: float, dec: float, sigma_deg: float, lo: int = 3, hi: int = 7) -> SkyMap:
    """A Fisher-von Mises blob as a true multi-order map: order ``hi`` near the peak,
    order ``lo`` elsewhere."""
    import healpy as hp

    nlo = 1 << lo
    centre = hp.ang2vec(ra, dec, lonlat=True)
    near = hp.query_disc(nlo, centre, np.radians(6 * sigma_deg), nest=True, inclusive=True)
    far = np.setdiff1d(np.arange(12 * nlo**2), near)
    k = 4 ** (hi - lo)
    fine = (near[:, None] * k + np.arange(k)).ravel()
    uniq = np.r_[order_ipix_to_uniq(lo, far), order_ipix_to_uniq(hi, fine)]
    vec = np.r_[
        np.array(hp.pix2vec(nlo, far, nest=True)).T,
        np.array(hp.pix2vec(1 << hi, fine, nest=True)).T,
    ]
    order = np.r_[np.full(len(far), lo), np.full(len(fine), hi)]
    density = np.exp((vec @ centre - 1) / np.radians(sigma_deg) ** 2)
    density /= (density * 4 * np.pi / (12 * 4.0**order)).sum()
    return SkyMap(probdensity=density, uniq=uniq, meta={"objid": GRACEID, "distmean": 150.0})


def neutrino_list(rows=NEUTRINOS) -> dict:
    """An icecube_neutrino_list.json object (PIPELINE.md format)."""
    triggers = [
        {
            "mjd": EVENT_MJD + r["dt"] / 86400.0,
            "ra": r["ra"],
            "dec": r["dec"],
            "sigma": r["sigma"],
            "energy": r["energy"],
            "type": "observation",
            "zenith": 90.0 + r["dec"],
            "azimuth": 10.0,
            "run": 132000 + i,
            "event": 7 + i,
        }
        for i, r in enumerate(rows)
    ]
    return {"triggers": triggers, "complete": True}


def skymap_info() -> dict:
    return {
        "graceid": GRACEID,
        "event_time_iso": EVENT_TIME_ISO,
        "notice_time_iso": "2019-04-25T08:59:52",
        "far": 4.5e-13,
        "pipeline": "GSTLAL",
        "instruments": ["L1", "V1"],
        "skymap_filename": "bayestar.multiorder.fits,2",
        "alert_type": "Initial",
    }


PER_NEUTRINO = [
    {"odds_ratio": 0.42, "p_value": 0.0123},
    {"odds_ratio": 3.1e-3, "p_value": 0.31},
    {"odds_ratio": 0.0, "p_value": 1.0},
]


def significance(rows=NEUTRINOS) -> dict:
    """significance_lvc-i3.json shaped as in SCIENCE.md."""
    triggers = [
        {
            "ra": r["ra"], "dec": r["dec"], "sigma": r["sigma"], "energy": r["energy"],
            "dt": r["dt"], "psf_overlap": 1e-3, "p_h_s1": 1e-9, "p_h_s2": 0.0,
            "p_h_c": 1e-8, "p_h_0": 0.0, **PER_NEUTRINO[i % 3],
        }
        for i, r in enumerate(rows)
    ]  # fmt: skip
    combined = {"odds_ratio": sum(t["odds_ratio"] for t in triggers), "p_value": 0.0061}
    combined.update({"method": "trials", "n_trials": 10000})
    return {
        "inputs": {"skymap_info": skymap_info(), "neutrino_list": neutrino_list(rows)},
        "outputs": {"neutrino_gw_triggers": triggers, "neutrino_gw_combined": combined},
    }


def make_event(tmp_path: Path, rows=NEUTRINOS, with_info: bool = True) -> Event:
    """An event directory holding every input the plot and table handlers read."""
    event = Event(tmp_path / GRACEID)
    write_hdf5(event.path("lvc_skymap.hdf5"), moc_blob(175.0, 20.0, 4.0))
    if with_info:
        event.path("skymap_info.json").write_text(json.dumps(skymap_info()))
    event.path("icecube_neutrino_list.json").write_text(json.dumps(neutrino_list(rows)))
    event.path("ztf_trigger_list.json").write_text(json.dumps(CANDIDATES))
    event.path("significance_lvc-i3.json").write_text(json.dumps(significance(rows)))
    return event


@pytest.fixture(scope="module")
def event(tmp_path_factory) -> Event:
    return make_event(tmp_path_factory.mktemp("plots"))


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"), dtype=float)


PNG_HANDLERS = [
    plots.CoincScatterI3LvcPng,
    plots.CoincScatterZtfLVCPng,
    plots.CoincScatterZtfI3LvcPng,
]
PDF_HANDLERS = [
    plots.CoincScatterI3LvcPdf,
    plots.CoincScatterZtfLVCPdf,
    plots.CoincScatterZtfI3LvcPdf,
]


@pytest.mark.parametrize("handler", PNG_HANDLERS, ids=lambda h: h.__name__)
def test_png(event: Event, handler) -> None:
    event.generate(handler)
    pixels = _png(event.path(handler.FILENAME))
    width, height = (round(x * plotting.DPI) for x in plotting.FIGSIZE_IN)
    assert pixels.shape == (height, width, 3)
    assert pixels.std() > 10  # not blank
    assert event.read_meta(handler.FILENAME)["inputs"].keys() == {
        d.FILENAME for d in handler.DEPENDENCIES
    }
    assert str(event.status(handler)) == "EXISTS"


@pytest.mark.parametrize("handler", PDF_HANDLERS, ids=lambda h: h.__name__)
def test_pdf(event: Event, handler) -> None:
    event.generate(handler)
    data = event.path(handler.FILENAME).read_bytes()
    assert data.startswith(b"%PDF")
    assert data.rstrip().endswith(b"%%EOF")
    assert len(data) > 10_000


def test_pdf_is_reproducible(tmp_path: Path) -> None:
    """No creation date in the PDF: same inputs, same bytes (stable checksums)."""
    event = make_event(tmp_path)
    event.generate(plots.CoincScatterI3LvcPdf)
    first = event.path(plots.CoincScatterI3LvcPdf.FILENAME).read_bytes()
    event.generate(plots.CoincScatterI3LvcPdf)
    assert event.path(plots.CoincScatterI3LvcPdf.FILENAME).read_bytes() == first


def test_neutrinos_change_the_picture(tmp_path: Path) -> None:
    """The neutrino layer is drawn: the plot differs from the map-only one."""
    with_nu = make_event(tmp_path / "a")
    without = make_event(tmp_path / "b", rows=[])
    for ev in (with_nu, without):
        ev.generate(plots.CoincScatterI3LvcPng)
    a = _png(with_nu.path(plots.CoincScatterI3LvcPng.FILENAME))
    b = _png(without.path(plots.CoincScatterI3LvcPng.FILENAME))
    assert a.shape == b.shape
    # energy colour bar and circles: many pixels differ, and b has no saturated colour
    assert (np.abs(a - b).sum(-1) > 60).sum() > 2000


def test_empty_neutrino_list_gives_a_valid_plot(tmp_path: Path) -> None:
    event = make_event(tmp_path, rows=[])
    event.generate(plots.CoincScatterI3LvcPng)
    event.generate(plots.CoincScatterZtfI3LvcPdf)
    pixels = _png(event.path(plots.CoincScatterI3LvcPng.FILENAME))
    assert pixels.std() > 10
    assert event.path(plots.CoincScatterZtfI3LvcPdf.FILENAME).read_bytes()[:4] == b"%PDF"


def test_no_skymap_info_uses_map_or_first_neutrino(tmp_path: Path) -> None:
    event = make_event(tmp_path, with_info=False)
    from llama.science.neutrinos import NeutrinoList

    nl = NeutrinoList.read(event.path("icecube_neutrino_list.json"))
    t0, what = plots.reference_time(event, neutrinos=nl)
    assert t0 == pytest.approx(nl.mjd[0]) and "first neutrino" in what
    skymap = moc_blob(0.0, 0.0, 5.0)
    skymap.meta["gps_time"] = 1240215503.0
    t0, what = plots.reference_time(event, skymap, nl)
    assert t0 == pytest.approx(EVENT_MJD, abs=1e-6) and "sky map header" in what
    event.generate(plots.CoincScatterI3LvcPng)  # still draws


def test_flat_map_and_pole_and_seam(tmp_path: Path) -> None:
    """A flat NESTED map near the pole, neutrinos straddling RA = 0 draw fine."""
    import healpy as hp

    nside = 32
    vec = np.array(hp.pix2vec(nside, np.arange(12 * nside**2), nest=True)).T
    centre = hp.ang2vec(359.0, 80.0, lonlat=True)
    density = np.exp((vec @ centre - 1) / np.radians(8.0) ** 2)
    density /= density.sum() * hp.nside2pixarea(nside)
    skymap = SkyMap(probdensity=density, nside=nside)
    rows = [
        {"dt": 1.0, "ra": 359.5, "dec": 75.0, "sigma": 2.0, "energy": 1e4},
        {"dt": 2.0, "ra": 0.5, "dec": 85.0, "sigma": 5.0, "energy": 1e5},
    ]
    event = make_event(tmp_path, rows=rows)
    write_hdf5(event.path("lvc_skymap.hdf5"), skymap)
    event.generate(plots.CoincScatterZtfI3LvcPng)
    assert _png(event.path(plots.CoincScatterZtfI3LvcPng.FILENAME)).std() > 10


def test_bad_ztf_list_fails_clearly(tmp_path: Path) -> None:
    event = make_event(tmp_path)
    event.path("ztf_trigger_list.json").write_text(json.dumps([{"name": "x"}]))
    with pytest.raises(Exception, match="ra and dec"):
        event.generate(plots.CoincScatterZtfLVCPng)
    assert not event.path(plots.CoincScatterZtfLVCPng.FILENAME).exists()


def test_read_candidates_shapes() -> None:
    wrapped = plots.read_candidates({"candidates": [{"ra": -10, "dec": 5, "objectId": "Z1"}]})
    assert wrapped == [plotting.Candidate(350.0, 5.0, "Z1")]


def test_threads_draw_safely(tmp_path: Path) -> None:
    """Two handlers drawing at once from worker threads both succeed."""
    events = [make_event(tmp_path / str(i)) for i in range(2)]
    errors: list[BaseException] = []

    def work(ev: Event) -> None:
        try:
            ev.generate(plots.CoincScatterI3LvcPng)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(ev,)) for ev in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(ev.path(plots.CoincScatterI3LvcPng.FILENAME).exists() for ev in events)


def test_lookup_rows_matches_flatten() -> None:
    """Multi-order lookup gives the same density as flattening to the finest order."""
    import healpy as hp

    skymap = moc_blob(40.0, -30.0, 3.0, lo=2, hi=5)
    rng = np.random.default_rng(1)
    ra = rng.uniform(0, 360, 500)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))
    rows = plotting.lookup_rows(skymap, ra, dec)
    flat = skymap.flatten(32)
    want = flat.probdensity[hp.ang2pix(32, ra, dec, nest=True, lonlat=True)]
    np.testing.assert_allclose(skymap.probdensity[rows], want, rtol=1e-12, atol=1e-300)


def test_credible_levels_and_zoom() -> None:
    skymap = moc_blob(175.0, 20.0, 4.0)
    levels = plotting.credible_levels(skymap)
    inside = levels <= 0.9
    assert skymap.probability()[inside].sum() == pytest.approx(0.9, abs=0.01)
    ra_c, dec_c, half = plotting.zoom_window(skymap, levels)
    assert ra_c == pytest.approx(175.0, abs=0.5) and dec_c == pytest.approx(20.0, abs=0.5)
    # r90 of a 2-D Gaussian is 2.146 sigma: the window reaches just past it
    assert 2.146 * 4.0 < half < 2 * 2.146 * 4.0


def test_small_circle_radius() -> None:
    ra, dec = plotting.small_circle(123.0, -45.0, 3.0)
    d = plotting._angular_distance(123.0, -45.0, ra, dec)
    np.testing.assert_allclose(d, 3.0, rtol=1e-9)


def _crowded_neutrinos(n: int = 12) -> list[dict]:
    """Neutrinos bunched inside and around the GW region, some far away, so that
    their number labels compete for room with each other and with the graticule."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(n):
        near = i < n - 3
        rows.append({
            "dt": float(rng.uniform(-500, 500)),
            "ra": float(175.0 + rng.normal(0, 4) if near else rng.uniform(0, 360)),
            "dec": float(20.0 + rng.normal(0, 4) if near else rng.uniform(-80, 80)),
            "sigma": float(rng.uniform(0.2, 3.0)),
            "energy": float(10 ** rng.uniform(3, 6)),
        })  # fmt: skip
    return rows


def _pole_map() -> SkyMap:
    """A flat map around the north celestial pole, straddling RA = 0."""
    import healpy as hp

    nside = 32
    vec = np.array(hp.pix2vec(nside, np.arange(12 * nside**2), nest=True)).T
    centre = hp.ang2vec(359.0, 80.0, lonlat=True)
    density = np.exp((vec @ centre - 1) / np.radians(8.0) ** 2)
    density /= density.sum() * hp.nside2pixarea(nside)
    return SkyMap(probdensity=density, nside=nside)


@pytest.mark.parametrize(
    "skymap",
    [
        moc_blob(175.0, 20.0, 4.0),
        moc_blob(300.0, -60.0, 0.4, hi=9),
        moc_blob(20.0, 5.0, 25.0, lo=2, hi=4),
        _pole_map(),
    ],
    ids=["blob-4deg", "small-south", "wide", "pole"],
)
def test_texts_do_not_overlap_and_stay_inside(tmp_path: Path, skymap: SkyMap) -> None:
    """Every visible text box (tick labels, neutrino numbers, colour bar ticks and
    label, legend, list, titles) lies inside the figure and overlaps no other, as the
    renderer measures them after a full draw."""
    from llama.science.neutrinos import NeutrinoList

    rows = _crowded_neutrinos()
    path = tmp_path / "nu.json"
    path.write_text(json.dumps(neutrino_list(rows)))
    nl = NeutrinoList.read(path)
    cands = plots.read_candidates(CANDIDATES)
    title = f"{GRACEID}: IceCube neutrinos and ZTF candidates over the GW sky map"
    note = f"Δt: neutrino arrival time relative to GW event time {EVENT_TIME_ISO} UTC"
    fig = plotting.draw_scatter(skymap, nl, nl.dt_seconds(EVENT_MJD), cands, title, note)
    plotting.save_figure(fig, tmp_path / "x.png")  # a real draw lays out the legend
    boxes = plotting.text_boxes(fig)
    texts = [b for b in boxes if b.width > 0]
    assert len(texts) > 20  # the graticule, legend, list, numbers were all measured
    width, height = fig.bbox.width, fig.bbox.height
    for b in texts:
        assert 0 <= b.x0 and b.x1 <= width and 0 <= b.y0 and b.y1 <= height, b
    clashes = [(a, b) for i, a in enumerate(texts) for b in texts[i + 1 :] if a.overlaps(b)]
    assert not clashes
    # and every neutrino got its row number somewhere (in the zoom or the all-sky panel)
    from matplotlib.text import Text

    drawn = {t.get_text() for t in fig.findobj(Text) if t.get_visible()}
    assert {str(i + 1) for i in range(len(rows))} <= drawn


def test_png_and_pdf_share_one_drawing(tmp_path: Path, monkeypatch) -> None:
    """The PDF handler saves the figure the PNG handler drew (same inputs, same thread);
    a change of inputs draws again."""
    from llama.science import skyfigure

    draws: list[str] = []
    real = skyfigure.ScatterTemplate.draw

    def counting(self, *args, **kwargs):
        draws.append(args[-2])  # the title
        return real(self, *args, **kwargs)

    monkeypatch.setattr(skyfigure.ScatterTemplate, "draw", counting)
    event = make_event(tmp_path / "a")
    event.generate(plots.CoincScatterI3LvcPng)
    event.generate(plots.CoincScatterI3LvcPdf)
    assert len(draws) == 1
    other = make_event(tmp_path / "b", rows=NEUTRINOS[:1])
    other.generate(plots.CoincScatterI3LvcPdf)
    assert len(draws) == 2
    assert event.path(plots.CoincScatterI3LvcPdf.FILENAME).read_bytes()[:4] == b"%PDF"


@pytest.mark.parametrize("n_rows", [0, 3, 25])
def test_summary_page_fits_on_one_page(tmp_path: Path, n_rows: int) -> None:
    """The summary PDF is one A4 page whose texts stay on the page and never overlap;
    rows that do not fit are counted in a line naming the text table."""
    from matplotlib.text import Text

    from llama.handlers import tables
    from llama.science.summarypage import PAGE_IN

    rows = {0: [], 3: NEUTRINOS, 25: _crowded_neutrinos(25)}[n_rows]
    event = make_event(tmp_path, rows=rows)
    event.generate(plots.CoincScatterI3LvcPng)
    event.generate(tables.CoincSummaryI3LvcPdf)
    data = event.path(tables.CoincSummaryI3LvcPdf.FILENAME).read_bytes()
    assert len(re.findall(rb"/Type\s*/Page(?![a-z])", data)) == 1  # one page
    facts, table, comments = tables.CoincSummaryI3LvcPdf(event)._load()
    png = event.path(plots.CoincScatterI3LvcPng.FILENAME)
    fig = tables.summary_figure(event.eventid, facts, table, comments, png)
    assert tuple(round(float(v), 2) for v in fig.get_size_inches()) == PAGE_IN
    boxes = plotting.text_boxes(fig)
    width, height = fig.bbox.width, fig.bbox.height
    for b in boxes:
        assert 0 <= b.x0 and b.x1 <= width and 0 <= b.y0 and b.y1 <= height, b
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    texts = [t.get_text() for t in fig.findobj(Text)]
    bold = [  # the row numbers: bold at the table's size (the result values are larger)
        t.get_text()
        for t in fig.findobj(Text)
        if t.get_fontweight() == "bold" and t.get_fontsize() < 10
    ]
    numbers = [int(t) for t in bold if t.isdigit()]
    shown = max(numbers, default=0)
    assert numbers == list(range(1, shown + 1))  # rows numbered as in the plot
    more = [t for t in texts if "more neutrinos" in t]
    if n_rows == 25:
        assert shown < 25 and more and f"{25 - shown} more" in more[0]
    else:
        assert shown == n_rows and not more
    assert any("0.0061" == t for t in texts)  # the combined p-value, in the result box


def test_zoom_density_is_smooth_and_true() -> None:
    """The zoom image's bilinear density matches the analytic density of the map it was
    made from to second order in the pixel size, closer than the nearest-pixel value
    (checked on a flat map of 1 + sin(dec)/2 and a multi-order Fisher blob)."""
    import healpy as hp

    from llama.science import skyfigure

    rng = np.random.default_rng(3)
    nside = 64
    _, dec_pix = hp.pix2ang(nside, np.arange(12 * nside**2), nest=True, lonlat=True)
    flat = SkyMap(probdensity=(1 + 0.5 * np.sin(np.radians(dec_pix))) / (4 * np.pi), nside=nside)
    ra = rng.uniform(0, 360, 2000)
    dec = np.degrees(np.arcsin(rng.uniform(-0.95, 0.95, 2000)))
    truth = (1 + 0.5 * np.sin(np.radians(dec))) / (4 * np.pi) / (180 / np.pi) ** 2
    smooth = skyfigure._smooth_density_deg2(flat, ra, dec)
    nearest = skyfigure._density_deg2(flat, ra, dec)
    # pixels ~0.9 deg: nearest-pixel values are off by ~1e-2 (first order), bilinear
    # ones by ~(0.9 deg)^2 x the curvature, ~1e-5 (measured 1.9e-5 and 7.4e-3)
    assert np.max(np.abs(smooth / truth - 1)) < 1e-4
    assert np.median(np.abs(smooth - truth)) < 0.1 * np.median(np.abs(nearest - truth))

    blob = moc_blob(175.0, 20.0, 4.0)  # order 7 (0.46 deg) near the peak
    ra = 175.0 + rng.uniform(-5, 5, 2000)
    dec = 20.0 + rng.uniform(-5, 5, 2000)
    centre = hp.ang2vec(175.0, 20.0, lonlat=True)
    vec = np.array(hp.ang2vec(ra, dec, lonlat=True))
    shape = np.exp((vec @ centre - 1) / np.radians(4.0) ** 2)
    ratio = skyfigure._smooth_density_deg2(blob, ra, dec) / shape
    # the blob's shape up to normalisation (measured 1.1e-3; nearest pixel: 3.3e-2)
    assert np.std(ratio) / np.mean(ratio) < 3e-3
    assert skyfigure._smooth_density_deg2(blob, np.array([np.nan]), np.array([0.0]))[0] == 0.0


def test_zoom_follows_the_densest_lobe_of_a_split_region() -> None:
    """Two lobes 120 deg apart: the zoom centres on the denser one and
    takes it whole, instead of the empty sky at their mean direction."""
    import healpy as hp

    nside = 32
    vec = np.array(hp.pix2vec(nside, np.arange(12 * nside**2), nest=True)).T

    def lobe(ra: float, dec: float, sigma: float) -> np.ndarray:
        d = np.exp((vec @ hp.ang2vec(ra, dec, lonlat=True) - 1) / np.radians(sigma) ** 2)
        return d / d.sum()

    prob = 0.6 * lobe(40.0, 10.0, 5.0) + 0.4 * lobe(160.0, -10.0, 5.0)
    skymap = SkyMap(probdensity=prob / hp.nside2pixarea(nside), nside=nside)
    ra_c, dec_c, half = plotting.zoom_window(skymap, plotting.credible_levels(skymap))
    assert plotting._angular_distance(ra_c, dec_c, 40.0, 10.0) < 1.0
    # the lobe's 90% radius is 2.146 sigma = 10.7 deg: inside the panel, with a margin
    assert 10.7 < half < plotting.ZOOM_MAX_HALF_DEG


@pytest.mark.parametrize(
    ("ctype", "projection"),
    [("MOL", (180.0, 0.0)), ("ZEA", (30.0, 40.0)), ("ZEA", (300.0, -85.0))],
    ids=["mollweide", "zea", "zea-south-pole"],
)
def test_projections_match_wcslib(ctype: str, projection: tuple[float, float]) -> None:
    """Mollweide and the zenithal equal-area projection agree with WCSLIB (astropy.wcs,
    the code under ligo.skymap's astro axes) to 1e-9 deg, RA increasing to the left,
    and the inverse returns the directions."""
    from astropy.wcs import WCS

    from llama.science.skyproj import Mollweide, ZenithalEqualArea

    rng = np.random.default_rng(11)
    ra = rng.uniform(0, 360, 3000)
    dec = np.degrees(np.arcsin(rng.uniform(-0.999, 0.999, 3000)))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"RA---{ctype}", f"DEC--{ctype}"]
    wcs.wcs.crval = list(projection)
    wcs.wcs.cdelt = [1.0, 1.0]
    wcs.wcs.crpix = [0.0, 0.0]
    px, py = wcs.wcs_world2pix(ra, dec, 0)
    # intermediate world coordinates [deg]; WCS's x grows with RA, the drawing's to the left
    wx, wy = -(px + 1.0), py + 1.0
    if ctype == "MOL":
        x, y = Mollweide(projection[0]).forward(ra, dec)
        x, y = np.degrees(x), np.degrees(y)  # plane units are radians on the sphere
        far = np.abs(((ra - projection[0] + 180) % 360) - 180) > 179.0  # the seam
        wx, wy, x, y = wx[~far], wy[~far], x[~far], y[~far]
        back = Mollweide(projection[0]).inverse(np.radians(x), np.radians(y))
    else:
        zea = ZenithalEqualArea(*projection)
        x, y = zea.forward(ra, dec)
        back = zea.inverse(x, y)
    np.testing.assert_allclose(x, wx, atol=1e-9)
    np.testing.assert_allclose(y, wy, atol=1e-9)
    keep = slice(None) if ctype != "MOL" else ~far
    d = plotting._angular_distance(back[0], back[1], ra[keep], dec[keep])
    assert np.nanmax(d) < 1e-6


def test_contours_are_smooth_and_at_the_analytic_radius() -> None:
    """The 50% and 90% contours of a Fisher blob (sigma 4 deg, order-7 pixels of
    0.46 deg) are circles at the analytic radius arccos(1 - ln(1/(1-p)) / kappa): their
    points scatter by < 0.03 deg about it (pixel-edge staircases scatter by ~0.1 deg)."""
    from matplotlib.collections import LineCollection

    from llama.science import skyfigure
    from llama.science.skyproj import ZenithalEqualArea

    skymap = moc_blob(175.0, 20.0, 4.0)
    template = skyfigure.ScatterTemplate(has_neutrinos=False, has_candidates=False)
    template.draw(skymap, None, None, (), "contours", "")
    contours = [
        c
        for c in template.zoom_ax.collections
        if isinstance(c, LineCollection) and c.get_zorder() == 3
    ]
    assert len(contours) == 2
    ra_c, dec_c, _ = plotting.zoom_window(skymap, plotting.credible_levels(skymap))
    zea = ZenithalEqualArea(ra_c, dec_c)
    kappa = 1.0 / np.radians(4.0) ** 2
    for lines, level in zip(contours, plotting.CONTOUR_LEVELS, strict=True):
        xy = np.concatenate(lines.get_segments())
        ra, dec = zea.inverse(xy[:, 0], xy[:, 1])
        radius = plotting._angular_distance(175.0, 20.0, ra, dec)
        want = np.degrees(np.arccos(1 - np.log(1 / (1 - level)) / kappa))
        assert len(xy) > 100
        assert radius.mean() == pytest.approx(want, abs=0.03)
        assert radius.std() < 0.03


def test_one_pixel_holding_nearly_all_still_gets_its_90_contour() -> None:
    """A coarse map (nside 4) with 99.6% in one pixel: the 90% contour is drawn around
    that pixel's centre (contouring the cumulative level, which counts the pixel's
    whole probability at its centre, drew none)."""
    import healpy as hp
    from matplotlib.collections import LineCollection
    from matplotlib.path import Path as MplPath

    from llama.science import skyfigure
    from llama.science.skyproj import ZenithalEqualArea

    density = np.full(192, 1e-3)
    density[5] = 50.0
    density /= density.sum() * hp.nside2pixarea(4)
    skymap = SkyMap(probdensity=density, nside=4)
    template = skyfigure.ScatterTemplate(has_neutrinos=False, has_candidates=False)
    template.draw(skymap, None, None, (), "one pixel", "")
    solid = [
        c
        for c in template.zoom_ax.collections
        if isinstance(c, LineCollection) and c.get_zorder() == 3 and c.get_linewidth()[0] > 1
    ]
    assert solid and solid[0].get_segments()
    ring = max(solid[0].get_segments(), key=len)
    ra_c, dec_c, _ = plotting.zoom_window(skymap, plotting.credible_levels(skymap))
    centre = ZenithalEqualArea(ra_c, dec_c).forward(*hp.pix2ang(4, 5, nest=True, lonlat=True))
    assert MplPath(ring).contains_point((float(centre[0]), float(centre[1])))


def test_summary_page_with_long_values_still_fits() -> None:
    """Long names and values are shortened, not run into the result box or off the
    page."""
    from llama.science.summarypage import summary_page

    long = "X" * 120
    facts = [("GraceID", long), ("Pipeline", "W" * 80), ("Instruments", "H1, L1, V1, K1"),
             ("Combined odds ratio", "1.23e-45"), ("Combined p-value", "0.000123"),
             ("p-value obtained from", "trials; " + "many words here " * 20)]  # fmt: skip
    rows = [(-1.0, 10.0, 5.0, 123456.0, 1.0, 0.5, 1e-300)]
    fig = summary_page("S" + "W" * 90, facts, rows, ["title", "note " * 60], None)
    boxes = plotting.text_boxes(fig)
    width, height = fig.bbox.width, fig.bbox.height
    for b in boxes:
        assert 0 <= b.x0 and b.x1 <= width and 0 <= b.y0 and b.y1 <= height, b
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]


def test_long_title_and_note_are_fitted_inside_the_figure() -> None:
    """An event name of 200 characters is shortened with an ellipsis, not clipped."""
    from matplotlib.text import Text

    skymap = moc_blob(175.0, 20.0, 4.0)
    fig = plotting.draw_scatter(skymap, None, None, (), "S" * 200 + ": title", "n" * 400)

    texts = [t for t in fig.findobj(Text) if t.get_text().endswith("…")]
    assert len(texts) == 2
    width = fig.bbox.width
    for b in plotting.text_boxes(fig):
        assert 0 <= b.x0 and b.x1 <= width, b


@pytest.mark.parametrize(
    ("png", "pdf"),
    [
        (plots.CoincScatterI3LvcPng, plots.CoincScatterI3LvcPdf),
        (plots.CoincScatterZtfI3LvcPng, plots.CoincScatterZtfI3LvcPdf),
    ],
    ids=lambda h: h.__name__,
)
def test_png_and_pdf_bytes_do_not_depend_on_which_ran_first(tmp_path: Path, png, pdf) -> None:
    """The second handler of a plot saves the drawing the first one made in this thread;
    the files are the same whichever of the two ran first, with another event's
    drawing in between, and when each is drawn from scratch in a thread of its own."""
    import threading

    png_first = make_event(tmp_path / "png-first")
    pdf_first = make_event(tmp_path / "pdf-first")
    other = make_event(tmp_path / "other", rows=NEUTRINOS[:1])
    png_first.generate(png)
    png_first.generate(pdf)
    other.generate(pdf)  # another drawing in between: it must not be served below
    pdf_first.generate(pdf)
    pdf_first.generate(png)
    alone = make_event(tmp_path / "alone")
    for handler in (pdf, png):  # a new thread each: no drawing to reuse
        worker = threading.Thread(target=alone.generate, args=(handler,))
        worker.start()
        worker.join()
    for handler in (png, pdf):
        expected = png_first.path(handler.FILENAME).read_bytes()
        assert pdf_first.path(handler.FILENAME).read_bytes() == expected, handler.__name__
        assert alone.path(handler.FILENAME).read_bytes() == expected, handler.__name__
    assert other.path(pdf.FILENAME).read_bytes() != png_first.path(pdf.FILENAME).read_bytes()


def test_a_sky_map_made_again_is_read_again(tmp_path: Path) -> None:
    """The PDF handler reuses the map the PNG handler of the same event read in this
    thread only while the file is the same: after lvc_skymap.hdf5 is made again with
    another map, the PDF shows the new map (the same bytes as an event that had that
    map from the start, drawn in a thread of its own)."""
    moved = moc_blob(60.0, -30.0, 2.0)
    event = make_event(tmp_path / "remade")
    event.generate(plots.CoincScatterI3LvcPng)
    write_hdf5(event.path("lvc_skymap.hdf5"), moved)
    event.generate(plots.CoincScatterI3LvcPdf)
    reference = make_event(tmp_path / "reference")
    write_hdf5(reference.path("lvc_skymap.hdf5"), moved)
    worker = threading.Thread(target=reference.generate, args=(plots.CoincScatterI3LvcPdf,))
    worker.start()
    worker.join()
    name = plots.CoincScatterI3LvcPdf.FILENAME
    assert event.path(name).read_bytes() == reference.path(name).read_bytes()
