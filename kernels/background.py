"""Numba kernels for O3's empirical background density B of a neutrino.

SCIENCE.md, "Background density B and the energy the signal is evaluated at": for a
neutrino of zenith theta_i [deg] and energy eps_i [GeV] and a background sample of
N_bg events (theta_bg [deg], eps_bg [GeV]),

1. band |theta_i - theta_bg| < dw (dw = 2.5 deg); eps_lo, eps_hi = min, max of eps_bg
   in the band;
2. eps = max(eps_i, eps_lo);
3. N = #{|theta_i - theta_bg| < dw and |eps - eps_bg| < eps * dE} (dE = 0.3); while
   N < 5: dE *= 1.5, dw *= 1.5, eps *= 10 if eps < median(all eps_bg) else eps /= 10,
   and recount;
4. f_E = 1; if theta_i > 80 deg and eps_i > eps: f_E = (eps_i / eps)^3.7, eps = eps_i;
5. B = N / (N_bg * Omega(theta_i, dw) * 2 dE * eps) / f_E   [sr^-1 GeV^-1].

Three kernels implement the three ways O3 ran these steps: :func:`o3_primary_terms`
(fresh windows per neutrino), :func:`o3_partner_terms` (the second neutrino of a
doublet, with O3's slip or the corrected loop) and :func:`o3_list_terms` (the
sub-threshold search: windows carried along each list). Each returns
``(density, energy_eval, energy_lo, energy_hi, count)``.

Arrays in, arrays out: no I/O and no constants module; every constant is an argument.

Speed. The sample arrives sorted by zenith, so a zenith band is one contiguous slice
found by bisection. To count the energy window inside a wide band without visiting
every event, the slice is cut into fixed blocks of ``block`` events whose energies are
stored sorted (``en_block_sorted``, made by :func:`block_sort`); a whole block is
counted by two bisections, only the ragged ends are scanned. Every comparison is the
literal ``abs(centre - x) < width`` of the spec (the bisections search for where that
predicate changes), so counts equal a plain loop's bit for bit.

Runaway loops. A sample in which no window ever holds ``min_events`` events would widen
forever; each loop stops after ``max_widen`` widenings and keeps the last count (which
may then be below ``min_events``, even 0, giving B = 0).

Examples
--------
>>> import numpy as np
>>> zen = np.linspace(0.0, 180.0, 3601); en = np.full(zen.size, 1e3)
>>> blk = block_sort(en, 64)
>>> b, eps, lo, hi, n = o3_primary_terms(np.array([90.0]), np.array([1e3]), zen, en, blk,
...     64, 1e3, 2.5, 0.3, 5, 1.5, 10.0, 80.0, 3.7, 60, False)
>>> int(n[0]), float(eps[0]), float(lo[0]), float(hi[0])
(99, 1000.0, 1000.0, 1000.0)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "block_sort",
    "solid_angle",
    "o3_primary_terms",
    "o3_partner_terms",
    "o3_partner_terms_kept",
    "o3_list_terms",
]


def block_sort(energy_by_zenith: np.ndarray, block: int) -> np.ndarray:
    """Energies [GeV] sorted within consecutive blocks of ``block`` events.

    Parameters
    ----------
    energy_by_zenith : float64 array
        Sample energies [GeV] in zenith order.
    block : int
        Block length (events); the last block may be shorter.

    Returns
    -------
    float64 array
        Same length; entries ``[b*block, (b+1)*block)`` are block ``b`` sorted ascending.

    Examples
    --------
    >>> import numpy as np
    >>> block_sort(np.array([3.0, 1.0, 2.0, 9.0, 7.0]), 2)
    array([1., 3., 2., 9., 7.])
    """
    en = np.ascontiguousarray(energy_by_zenith, dtype=np.float64)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    n = en.size
    n_blocks = -(-n // block)
    # Pad the last block with +inf: it sorts to the end and is cut off again.
    padded = np.full(n_blocks * block, np.inf)
    padded[:n] = en
    return np.ascontiguousarray(np.sort(padded.reshape(n_blocks, block), axis=1).ravel()[:n])


@njit(cache=True, nogil=True)
def _window(arr, start, stop, centre, width):
    """Index range ``[first, last)`` of sorted ``arr[start:stop]`` with ``|centre - x| < width``.

    Callers pass ``start`` as ``np.int64``, never a bare ``0``: a literal compiles a
    second specialisation.

    Bisects on the literal predicate: left of the centre ``centre - x >= width`` is
    true then false as x grows, right of it ``x - centre >= width`` false then true,
    and floating-point subtraction is monotone, so the selected set is contiguous and
    equals what a loop testing ``abs(centre - x) < width`` would select.
    """
    if not (width > 0.0):  # nothing is strictly inside a non-positive or NaN width
        return start, start
    a = start
    b = stop
    while a < b:
        m = (a + b) // 2
        x = arr[m]
        if x < centre and centre - x >= width:
            a = m + 1
        else:
            b = m
    first = a
    b = stop
    while a < b:
        m = (a + b) // 2
        x = arr[m]
        if x > centre and x - centre >= width:
            b = m
        else:
            a = m + 1
    return first, a


@njit(cache=True, nogil=True)
def _count(en_by_zen, en_blk, block, lo, hi, eps, width):
    """Number of sample events in zenith slice ``[lo, hi)`` with ``|eps - e| < width``."""
    n_bg = en_by_zen.shape[0]
    count = 0
    k = lo
    while k < hi:
        seg_end = min(k + block, n_bg)
        if k % block == 0 and seg_end <= hi:
            # A whole block inside the slice: its sorted energies answer by bisection.
            first, last = _window(en_blk, k, seg_end, eps, width)
            count += last - first
            k = seg_end
        else:
            if abs(eps - en_by_zen[k]) < width:
                count += 1
            k += 1
    return count


@njit(cache=True, nogil=True)
def _min_max(en_by_zen, en_blk, block, lo, hi):
    """Min and max energy [GeV] in zenith slice ``[lo, hi)``; NaN, NaN when empty."""
    n_bg = en_by_zen.shape[0]
    e_min = math.inf
    e_max = -math.inf
    k = lo
    while k < hi:
        seg_end = min(k + block, n_bg)
        if k % block == 0 and seg_end <= hi:
            e_min = min(e_min, en_blk[k])
            e_max = max(e_max, en_blk[seg_end - 1])
            k = seg_end
        else:
            e_min = min(e_min, en_by_zen[k])
            e_max = max(e_max, en_by_zen[k])
            k += 1
    if hi <= lo:
        return math.nan, math.nan
    return e_min, e_max


@njit(cache=True, nogil=True)
def solid_angle(theta_deg, half_deg, capped):
    """Solid angle [sr] of the zenith band ``theta +- half`` in B's normaliser.

    O3: ``2 pi |cos(theta - half) - cos(theta + half)|``, which shrinks to 0 at the
    poles although the band there is a cap of finite size. ``capped``: the band is
    cut at 0 and 180 deg, ``2 pi (cos(max(0, theta - half)) - cos(min(180, theta + half)))``.

    Parameters
    ----------
    theta_deg, half_deg : float
        Band centre and half-width [deg].
    capped : bool
        Use the capped band instead of O3's formula.

    Examples
    --------
    >>> round(solid_angle(0.0, 2.5, False), 12), round(solid_angle(0.0, 2.5, True), 6)
    (0.0, 0.00598)
    """
    deg = math.pi / 180.0
    if capped:
        top = max(0.0, theta_deg - half_deg)
        bottom = min(180.0, theta_deg + half_deg)
        return 2.0 * math.pi * (math.cos(top * deg) - math.cos(bottom * deg))
    return (
        2.0
        * math.pi
        * abs(math.cos((theta_deg - half_deg) * deg) - math.cos((theta_deg + half_deg) * deg))
    )


@njit(cache=True, nogil=True, error_model="numpy")
def _steps_4_5(count, eps, eps_own, theta, half, rel, n_bg, steep_zenith, index, capped):
    """Steps 4-5: spectral correction above ``steep_zenith`` and the normalised density.

    Returns ``(B [sr^-1 GeV^-1], eps [GeV] after step 4)``. ``error_model="numpy"`` so
    that O3's zero solid angle at a pole gives +inf (as O3's numpy did), not an
    exception.
    """
    f_e = 1.0
    if theta > steep_zenith and eps_own > eps:
        f_e = (eps_own / eps) ** index
        eps = eps_own
    norm = n_bg * solid_angle(theta, half, capped) * 2.0 * rel * eps
    return count / norm / f_e, eps


@njit(cache=True, nogil=True)
def _primary_loop(
    zen_sorted, en_by_zen, en_blk, block, theta, eps, half, rel, median, min_events,
    widen, step, max_widen, first,
):  # fmt: skip
    """Step 3: count, and while the count is short widen both windows and move eps.

    ``first``: the first pass's count where the caller knows it (else -1).
    Returns ``(count, eps, half, rel)`` after the loop.
    """
    count = 0
    for it in range(max_widen + 1):
        if it == 0 and first >= 0:
            count = first
        else:
            lo, hi = _window(zen_sorted, np.int64(0), zen_sorted.shape[0], theta, half)
            count = _count(en_by_zen, en_blk, block, lo, hi, eps, eps * rel)
        if count >= min_events or it == max_widen:
            break
        rel *= widen
        half *= widen
        # O3 moves the energy a decade towards the bulk of the sample.
        if eps < median:
            eps *= step
        else:
            eps /= step
    return count, eps, half, rel


@njit(cache=True, nogil=True)
def _slip_loop(
    zen_sorted, en_by_zen, en_blk, block, theta, eps, half, rel, median, min_events,
    widen, step, max_widen, eps_test, first,
):  # fmt: skip
    """O3's partner loop: count, then ALWAYS widen and move eps, until a count reached 5.

    Every pass widens after counting, so the count kept is the last one, paired with
    windows and energy moved once more after it; and the direction of the move (x10
    below the median, /10 above) tests ``eps_test``, the primary's energy, not the
    partner's (SCIENCE.md: "the test looked at the primary's value"). At most
    ``max_widen`` passes. ``first``: the first pass's count where the caller knows it
    (else -1).
    """
    count = 0
    for it in range(max(max_widen, 1)):
        if it == 0 and first >= 0:
            count = first
        else:
            lo, hi = _window(zen_sorted, np.int64(0), zen_sorted.shape[0], theta, half)
            count = _count(en_by_zen, en_blk, block, lo, hi, eps, eps * rel)
        rel *= widen
        half *= widen
        if eps_test < median:
            eps *= step
        else:
            eps /= step
        if count >= min_events:
            break
    return count, eps, half, rel


@njit(cache=True, nogil=True)
def o3_primary_terms(
    zen_q, en_q, zen_sorted, en_by_zen, en_blk, block, median_energy, half_zen, rel_en,
    min_events, widen, energy_step, steep_zenith, spectral_index, max_widen, capped,
):  # fmt: skip
    """Steps 1-5 for each query neutrino, windows starting fresh for each one.

    Parameters
    ----------
    zen_q, en_q : float64 arrays
        Query zenith [deg] and energy [GeV].
    zen_sorted : float64 array
        Sample zenith [deg], sorted ascending.
    en_by_zen : float64 array
        Sample energy [GeV], in the order of ``zen_sorted``.
    en_blk : float64 array
        ``block_sort(en_by_zen, block)``.
    block : int
        Block length used for ``en_blk``.
    median_energy : float
        Median of all sample energies [GeV] (decides x10 or /10).
    half_zen, rel_en : float
        Initial zenith half-width [deg] (2.5) and relative energy half-width (0.3).
    min_events : int
        Count that stops the widening (5).
    widen : float
        Widening factor of both windows (1.5).
    energy_step : float
        Factor by which eps moves per widening (10).
    steep_zenith : float
        Zenith [deg] above which the spectral correction applies (80).
    spectral_index : float
        Exponent of the correction (3.7).
    max_widen : int
        Most widenings per neutrino (guards samples where the loop never ends).
    capped : bool
        Solid angle of the band cut at the poles (``background_band = capped``).

    Returns
    -------
    density : float64 array
        B [sr^-1 GeV^-1].
    energy_eval : float64 array
        eps after steps 2-4 [GeV]: where the signal density a(eps, theta) is read.
    energy_lo, energy_hi : float64 arrays
        Min and max sample energy [GeV] in the initial band (NaN if it is empty).
    count : int64 array
        The count N entering B.

    Examples
    --------
    >>> import numpy as np
    >>> zen = np.linspace(0.0, 180.0, 3601); en = np.full(zen.size, 1e3)
    >>> r = o3_primary_terms(np.array([30.0]), np.array([10.0]), zen, en,
    ...     block_sort(en, 64), 64, 1e3, 2.5, 0.3, 5, 1.5, 10.0, 80.0, 3.7, 60, False)
    >>> float(r[1][0])  # raised to the band's minimum energy
    1000.0
    """
    # a primary is a list of one: fresh windows for every neutrino
    offsets = np.arange(zen_q.shape[0] + 1, dtype=np.int64)
    return o3_list_terms(
        zen_q, en_q, offsets, zen_sorted, en_by_zen, en_blk, block, median_energy, half_zen,
        rel_en, min_events, widen, energy_step, steep_zenith, spectral_index, max_widen,
        capped,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def o3_partner_terms(
    zen_q, en_q, lo_q, hi_q, primary_q, zen_sorted, en_by_zen, en_blk, block, median_energy,
    half_zen, rel_en, min_events, widen, energy_step, steep_zenith, spectral_index,
    max_widen, capped, fixed,
):  # fmt: skip
    """B of each doublet partner j: its energy clamped to the primary's band, then 3-5.

    Parameters
    ----------
    zen_q, en_q : float64 arrays
        Partner zenith [deg] and energy [GeV].
    lo_q, hi_q : float64 arrays
        The primary's ``energy_lo``, ``energy_hi`` [GeV], one per partner (a NaN bound
        clamps nothing).
    primary_q : float64 array
        The primary's ``energy_eval`` [GeV]: O3's slip decides the direction of each
        energy move on it (unused by the fixed rule).
    fixed : bool
        False: O3's slip (count, then always widen and move, see :func:`_slip_loop`).
        True: the corrected rule, step 3's loop exactly as for a primary.
    (others)
        As :func:`o3_primary_terms`.

    Returns
    -------
    tuple of arrays
        ``(density, energy_eval, lo_q, hi_q, count)`` as :func:`o3_primary_terms`; step
        4 compares against the clamped energy.

    Examples
    --------
    >>> import numpy as np
    >>> zen = np.linspace(0.0, 180.0, 3601); en = np.full(zen.size, 1e3)
    >>> args = (zen, en, block_sort(en, 64), 64, 1e3, 2.5, 0.3, 5, 1.5, 10.0, 80.0, 3.7,
    ...         60, False)
    >>> q = (np.array([60.0]), np.array([1e3]), np.array([1e3]), np.array([1e3]), np.array([1e3]))
    >>> slip = o3_partner_terms(*q, *args, False); fixed = o3_partner_terms(*q, *args, True)
    >>> float(slip[1][0]), float(fixed[1][0])  # slip moved eps once more after counting
    (100.0, 1000.0)
    """
    none = np.empty(0, dtype=np.int64)  # no first counts known
    return _partner_terms(
        zen_q, en_q, lo_q, hi_q, primary_q, none, none, zen_sorted, en_by_zen, en_blk, block,
        median_energy, half_zen, rel_en, min_events, widen, energy_step, steep_zenith,
        spectral_index, max_widen, capped, fixed,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def o3_partner_terms_kept(
    zen_q, en_q, lo_q, hi_q, primary_q, at_q, kept, zen_sorted, en_by_zen, en_blk, block,
    median_energy, half_zen, rel_en, min_events, widen, energy_step, steep_zenith,
    spectral_index, max_widen, capped, fixed,
):  # fmt: skip
    """:func:`o3_partner_terms` for partners that are sample events, their first counts
    kept across calls: the same numbers.

    Both rules' first pass counts the band ``half_zen`` about theta_j at the clamped
    energy with width ``rel_en`` times it. Where partner q is sample event ``at_q[q]``
    (its zenith and, after the clamp, its energy that event's own), that count depends
    on the event alone: ``kept[at_q[q]]`` holds it once counted (-1: not yet), and is
    filled here. The background trials' partners are sample events (each trial
    neutrino is one), ~700 per event at 2,000 trials and ~2 us each to count: kept per
    sample, a later event's partners are mostly counted already.

    Parameters
    ----------
    at_q : int64 array
        Each partner's sample event (its index in ``zen_sorted``), or -1.
    kept : int64 array
        One per sample event: its first-pass count, or -1 (read and written).
    (others)
        As :func:`o3_partner_terms`, whose result this returns.

    Examples
    --------
    >>> import numpy as np
    >>> zen = np.linspace(0.0, 180.0, 3601); en = np.full(zen.size, 1e3)
    >>> args = (zen, en, block_sort(en, 64), 64, 1e3, 2.5, 0.3, 5, 1.5, 10.0, 80.0, 3.7,
    ...         60, False, False)
    >>> q = (zen[[1200]], en[[1200]], np.array([1e3]), np.array([1e3]), np.array([1e3]))
    >>> kept = np.full(zen.size, -1)
    >>> r = o3_partner_terms_kept(*q, np.array([1200]), kept, *args)
    >>> int(kept[1200]), bool(r[0][0] == o3_partner_terms(*q, *args)[0][0])
    (99, True)
    """
    return _partner_terms(
        zen_q, en_q, lo_q, hi_q, primary_q, at_q, kept, zen_sorted, en_by_zen, en_blk, block,
        median_energy, half_zen, rel_en, min_events, widen, energy_step, steep_zenith,
        spectral_index, max_widen, capped, fixed,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _partner_terms(
    zen_q, en_q, lo_q, hi_q, primary_q, at_q, kept, zen_sorted, en_by_zen, en_blk, block,
    median_energy, half_zen, rel_en, min_events, widen, energy_step, steep_zenith,
    spectral_index, max_widen, capped, fixed,
):  # fmt: skip
    """The partners' loop of :func:`o3_partner_terms` and :func:`o3_partner_terms_kept`
    (``at_q`` empty: nothing kept)."""
    nq = zen_q.shape[0]
    n_bg = zen_sorted.shape[0]
    known = at_q.shape[0] == nq
    density = np.empty(nq)
    energy_eval = np.empty(nq)
    count = np.empty(nq, dtype=np.int64)
    for q in range(nq):
        theta = zen_q[q]
        eps = en_q[q]
        # Clamp to the primary's [lo, hi]; comparisons with a NaN bound are false.
        if eps < lo_q[q]:
            eps = lo_q[q]
        if eps > hi_q[q]:
            eps = hi_q[q]
        eps_clamped = eps
        first = np.int64(-1)
        if known:
            s = at_q[q]
            # the first pass is sample event s's own: its zenith, its energy
            if 0 <= s < n_bg and theta == zen_sorted[s] and eps == en_by_zen[s]:
                first = kept[s]
                if first < 0:
                    lo, hi = _window(zen_sorted, np.int64(0), n_bg, theta, half_zen)
                    first = _count(en_by_zen, en_blk, block, lo, hi, eps, eps * rel_en)
                    kept[s] = first
        if fixed:
            n, eps, half, rel = _primary_loop(
                zen_sorted, en_by_zen, en_blk, block, theta, eps, half_zen, rel_en,
                median_energy, min_events, widen, energy_step, max_widen, first,
            )  # fmt: skip
        else:
            n, eps, half, rel = _slip_loop(
                zen_sorted, en_by_zen, en_blk, block, theta, eps, half_zen, rel_en,
                median_energy, min_events, widen, energy_step, max_widen, primary_q[q],
                first,
            )  # fmt: skip
        b, eps = _steps_4_5(
            n, eps, eps_clamped, theta, half, rel, n_bg, steep_zenith, spectral_index, capped
        )
        density[q] = b
        energy_eval[q] = eps
        count[q] = n
    return density, energy_eval, lo_q.copy(), hi_q.copy(), count


@njit(cache=True, nogil=True)
def o3_list_terms(
    zen_q, en_q, offsets, zen_sorted, en_by_zen, en_blk, block, median_energy, half_zen,
    rel_en, min_events, widen, energy_step, steep_zenith, spectral_index, max_widen,
    capped,
):  # fmt: skip
    """The sub-threshold variant: steps 1-5 in list order with windows carried along.

    dw and dE start at ``half_zen``, ``rel_en`` once per list and are never reset:
    every widening applies to all later neutrinos of the same list (their band, hence
    eps_lo and eps_hi, their count and their B). eps is raised to eps_lo, not capped.

    Parameters
    ----------
    offsets : int64 array
        CSR bounds of the lists: list ``m`` is queries ``[offsets[m], offsets[m+1])``;
        ``[0, len(zen_q)]`` for one list. Each list starts with fresh windows.
    (others)
        As :func:`o3_primary_terms`; ``max_widen`` bounds the widenings per neutrino.

    Returns
    -------
    tuple of arrays
        ``(density, energy_eval, energy_lo, energy_hi, count)`` as for a primary.

    Examples
    --------
    >>> import numpy as np
    >>> zen = np.linspace(0.0, 180.0, 3601); en = np.full(zen.size, 1e3)
    >>> r = o3_list_terms(np.array([90.0, 90.0]), np.array([1e4, 1e3]), np.array([0, 2]),
    ...     zen, en, block_sort(en, 64), 64, 1e3, 2.5, 0.3, 5, 1.5, 10.0, 80.0, 3.7, 60,
    ...     False)
    >>> r[4].tolist()  # the 2nd counts in the 1st one's widened band (fresh: 99)
    [149, 149]
    """
    nq = zen_q.shape[0]
    n_bg = zen_sorted.shape[0]
    density = np.empty(nq)
    energy_eval = np.empty(nq)
    energy_lo = np.empty(nq)
    energy_hi = np.empty(nq)
    count = np.empty(nq, dtype=np.int64)
    for m in range(offsets.shape[0] - 1):
        half = half_zen
        rel = rel_en
        for q in range(offsets[m], offsets[m + 1]):
            theta = zen_q[q]
            eps_own = en_q[q]
            lo, hi = _window(zen_sorted, np.int64(0), n_bg, theta, half)
            e_lo, e_hi = _min_max(en_by_zen, en_blk, block, lo, hi)
            eps = eps_own
            if e_lo > eps:
                eps = e_lo
            n, eps, half, rel = _primary_loop(
                zen_sorted, en_by_zen, en_blk, block, theta, eps, half, rel,
                median_energy, min_events, widen, energy_step, max_widen, np.int64(-1),
            )  # fmt: skip
            b, eps = _steps_4_5(
                n, eps, eps_own, theta, half, rel, n_bg, steep_zenith, spectral_index, capped
            )
            density[q] = b
            energy_eval[q] = eps
            energy_lo[q] = e_lo
            energy_hi[q] = e_hi
            count[q] = n
    return density, energy_eval, energy_lo, energy_hi, count
