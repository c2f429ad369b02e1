"""The doublet partners' O3 background with each sample event's first count kept
(kernels.background.o3_partner_terms_kept, background_trials.partner_terms): the
numbers of o3_partner_terms / EventModel.pair_terms bit for bit, whatever is kept."""

from __future__ import annotations

import numpy as np
import pytest
from bayestar_events import bayestar_model

import llama.science.background_trials as BT
from kernels.background import block_sort, o3_partner_terms, o3_partner_terms_kept
from llama.science.background_trials import BackgroundTrials
from llama.science.pvalue import _background_draws, _sample_terms

HALF, REL = 2.5, 0.3


def _sample(rng, n):
    """n events sorted by zenith: a dense band, a sparse one (counts below 5, so the
    loops widen), repeated zeniths and energies."""
    zen = np.concatenate([rng.uniform(60, 120, n - n // 10), rng.uniform(150, 180, n // 10)])
    zen[:50] = zen[50]  # ties
    en = 10.0 ** rng.uniform(2, 6, zen.size)
    en[100:140] = en[140]
    order = np.argsort(zen, kind="stable")
    return np.ascontiguousarray(zen[order]), np.ascontiguousarray(en[order])


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("capped", [False, True])
def test_kept_first_counts_give_the_partner_terms(fixed, capped):
    """Partners that are sample events (clamped or not), that carry another event's
    index, none (-1) or one past the sample: o3_partner_terms' numbers with nothing
    kept, then with what the first call kept; each kept count is the brute-force count
    of the event's own band and energy window."""
    rng = np.random.default_rng(3)
    zen, en = _sample(rng, 3000)
    block = 64
    args = (zen, en, block_sort(en, block), block, float(np.median(en)), HALF, REL, 5, 1.5, 10.0, 80.0, 3.7, 60, capped, fixed)  # fmt: skip
    m = 2000
    at = rng.integers(0, zen.size, m)
    zq, eq = zen[at].copy(), en[at].copy()
    lo = np.where(rng.uniform(size=m) < 0.2, eq * 2.0, eq / 10.0)  # a fifth clamped up
    hi = np.where(rng.uniform(size=m) < 0.1, eq / 3.0, eq * 10.0)
    lo[::17] = np.nan  # a NaN bound clamps nothing
    prim = 10.0 ** rng.uniform(2, 6, m)
    at_q = at.copy()
    at_q[::13] = -1
    at_q[5::13] = (at[5::13] + 1) % zen.size  # another event's index
    at_q[7::29] = zen.size
    want = o3_partner_terms(zq, eq, lo, hi, prim, *args)
    kept = np.full(zen.size, -1, dtype=np.int64)
    for _ in range(2):
        got = o3_partner_terms_kept(zq, eq, lo, hi, prim, at_q, kept, *args)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    assert (kept >= 0).sum() > 500
    for s in np.flatnonzero(kept >= 0)[::20]:
        band = np.abs(zen[s] - zen) < HALF
        assert kept[s] == np.sum(band & (np.abs(en[s] - en) < en[s] * REL))
    assert np.any(want[4] < 5) or np.any(want[1] != np.clip(eq, lo, hi))  # loops widened


@pytest.mark.parametrize("name", ["bns-1", "bbh-6"])
def test_trial_partners_are_pair_terms_own(name):
    """2,000 background lists: the partners' (B_j, eps_j) that _parts computes from the
    sample events' kept counts are pair_terms' own, the doublets' terms identical, on
    a fresh kept table and on a filled one."""
    model = bayestar_model(name)
    bt = BackgroundTrials(model, [10.0], [0.0], [1.0], [1e3], [0.0], [90.0])
    sample = model.background
    lists, pick = _background_draws(sample)(np.random.default_rng(9), 2000)
    pool = _sample_terms(model, sample)
    bg = type(pool)(*(a[pick] for a in pool))
    rows = model.tables.dec_rows(bg.energy_eval)
    ra, dec, sig, energy, dt, zen, off = lists
    BT._FIRST_COUNTS.pop(sample, None)
    seen = []
    for _ in range(2):
        out, az, off_, parts = bt._lists(ra, dec, sig, energy, dt, zen, off, bg, rows, at=pick)
        partners = parts[-1]
        assert partners.own is not None and partners.key.size > 300
        first, value = model.pair_terms(*out, az, bg, off_, partner=partners.of(np.arange(ra.size)))  # fmt: skip
        first0, value0 = model.pair_terms(*out, az, bg, off_)
        np.testing.assert_array_equal(first, first0)
        np.testing.assert_array_equal(value, value0)
        # the kept values are those pair_terms' own partner background gives
        pi, pj = partners.key // ra.size, partners.key % ra.size
        t = sample.o3_partner(out[5][pj], energy[pj], bg.energy_lo[pi], bg.energy_hi[pi], bg.energy_eval[pi], band=model.choices["background_band"])  # fmt: skip
        np.testing.assert_array_equal(partners.values[0], t.density)
        np.testing.assert_array_equal(partners.values[1], t.energy_eval)
        seen.append(int((BT._FIRST_COUNTS[sample][1] >= 0).sum()))
    assert seen[0] > 300 and seen[1] == seen[0]


def test_partner_terms_refuse_an_unknown_band_as_o3_partner_does():
    """One check of the band option (llama.science.background's), the same message."""

    class Model:
        background = bayestar_model("bns-1").background
        choices = {"background_band": "wide"}

    z = np.zeros(1)
    i = np.zeros(1, dtype=np.int64)
    terms = type("T", (), {"energy_lo": z, "energy_hi": z, "energy_eval": z})
    with pytest.raises(ValueError, match="band must be one of 'o3', 'capped'; got 'wide'"):
        BT.partner_terms(Model, z, z, terms, i, i, i)
    with pytest.raises(ValueError, match="band must be one of 'o3', 'capped'; got 'wide'"):
        Model.background.o3_partner(z, z, z, z, z, band="wide")
