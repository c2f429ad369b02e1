"""O3's signal tables (llama/science/signal_tables.py) against the rules of their source."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llama.science.signal_tables import (
    DEFAULT_SIGNAL_TABLES,
    SINDEC_EDGES,
    SignalTablesError,
    energy_density_integral,
    load_signal_tables,
)

RAW = json.loads(DEFAULT_SIGNAL_TABLES.read_text())


def by_hand(eps: float, theta: float) -> float:
    """O3's rule, step by step from the file's own description."""
    x = math.log10(eps)
    if x >= 8:
        row = RAW["aeff"]["rows"]["high_e"]
        k = 15  # the high_e row is constant in energy (its exponents are 0)
    else:
        k = next(k for k in range(4, 16) if x < (k + 1) / 2)
        row = RAW["aeff"]["rows"][str(k)]
    j = int(theta / 10)
    return 10 ** (row["factor"][j] + (x - (k + 1) / 2 + 0.5) * 2 * row["exponent"][j])


@pytest.mark.parametrize("eps", [50.0, 100.0, 316.0, 317.0, 1e3, 4.2e4, 1e6, 9.9e7, 2e8])
@pytest.mark.parametrize("theta", [0.0, 9.99, 10.0, 45.0, 89.0, 91.0, 135.0, 179.9, 180.0])
def test_energy_density_follows_o3_rule(eps, theta):
    got = float(load_signal_tables().energy_density(eps, theta))
    assert got == pytest.approx(by_hand(eps, theta), rel=1e-12)


def test_rows_per_dec_band_match_point_lookups():
    t = load_signal_tables()
    eps = np.array([120.0, 3e3, 5e5, 2e8])
    rows = t.dec_rows(eps)
    assert rows.shape == (4, 18) and rows.flags.c_contiguous
    dec_centres = np.degrees(np.arcsin(0.5 * (SINDEC_EDGES[1:] + SINDEC_EDGES[:-1])))
    for i, e in enumerate(eps):
        np.testing.assert_allclose(rows[i], [by_hand(e, 90.0 + d) for d in dec_centres], rtol=1e-12)  # fmt: skip
    # each call's rows are the caller's own: writing to them changes no later answer
    rows[:] = 0.0
    assert t.dec_rows(eps).tolist() == t.dec_rows(eps.copy()).tolist() != rows.tolist()
    assert t.dec_rows(eps[1]).tolist() == [t.dec_rows(eps)[1].tolist()]
    # and they are a(ε, θ) at each band's zenith, to the bit
    band_zenith = 90.0 + dec_centres
    assert rows.dtype == np.float64
    for e in eps:
        assert t.dec_rows(e)[0].tolist() == t.energy_density(np.full(18, e), band_zenith).tolist()


def test_density_is_normalised_like_o3_says():
    """A_eff ε⁻² / N_ε integrates to 0.8-1.0 over 1e2-1e9 GeV in each band (the file's
    doc); allow the table's rounding: 0.7-1.0 in every 10-degree band."""
    t = load_signal_tables()
    for theta in np.arange(5.0, 180.0, 10.0):
        assert 0.7 < energy_density_integral(t, theta) < 1.0, theta


def test_zenith_weight_bins_and_peak():
    t = load_signal_tables()
    w = RAW["zenith_weight"]["values"]
    assert t.zenith_weight([0.0, 4.999, 5.0, 92.0, 179.0, 180.0]).tolist() == [w[0], w[0], w[1], w[18], w[35], w[35]]  # fmt: skip
    assert max(w) == pytest.approx(2.66636028) and w[0] == pytest.approx(0.064912)


def test_zenith_bins_are_the_exact_floor_at_every_edge():
    """Zeniths a few ulps either side of each 5° / 10° edge (where the rounded quotient
    θ / 5 lands on the edge's integer) take the bin of the exact quotient's floor,
    computed with fractions; NaN and ±inf take the first bin, as ``//``'s NaN did."""
    from fractions import Fraction

    t = load_signal_tables()
    w, a = np.asarray(RAW["zenith_weight"]["values"]), t.energy_density
    theta = [np.float64(v) for v in np.arange(0.0, 185.0, 5.0)]
    for _ in range(6):
        theta += [np.nextafter(v, -np.inf) for v in theta[-37:]]
    theta += [np.nextafter(np.float64(v), np.inf) for v in np.arange(0.0, 185.0, 5.0)]
    theta = np.array(theta)
    exact = [math.floor(Fraction(float(v)) / 5) for v in theta]
    assert t.zenith_weight(theta).tolist() == w[np.clip(exact, 0, w.size - 1)].tolist()
    col = np.clip([math.floor(Fraction(float(v)) / 10) for v in theta], 0, t.factor.shape[1] - 1)
    eps = np.full(theta.size, 1e3)
    assert a(eps, theta).tolist() == a(eps, 10.0 * col + 5.0).tolist()  # the bin's centre
    with np.errstate(invalid="ignore"):  # the cast of NaN warns, as it did after `//`
        assert t.zenith_weight([np.nan, np.inf, -np.inf]).tolist() == [w[0]] * 3


def test_replacement_file_and_clear_errors(tmp_path):
    doubled = json.loads(DEFAULT_SIGNAL_TABLES.read_text())
    doubled["zenith_weight"]["values"] = [2 * v for v in doubled["zenith_weight"]["values"]]
    path = tmp_path / "tables.json"
    path.write_text(json.dumps(doubled))
    assert float(load_signal_tables(path).zenith_weight(92.0)) == pytest.approx(2 * 2.66636028)
    del doubled["aeff"]["rows"]["7"]
    path.write_text(json.dumps(doubled))
    with pytest.raises(SignalTablesError, match=r"aeff.rows\['7'\]"):
        load_signal_tables(path)
    with pytest.raises(SignalTablesError, match="no such signal-tables file"):
        load_signal_tables(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SignalTablesError, match="not a signal-tables file"):
        load_signal_tables(tmp_path / "bad.json")
