"""Sequential Monte-Carlo p-values (Besag & Clifford 1991): stop the trials early.

Besag, J. & Clifford, P. (1991), "Sequential Monte Carlo p-values", Biometrika 78,
301-304. Trials are drawn one after another, and each observed statistic x stops
counting at the trial L where h of them have reached it:

    p = h / L                          (h trials reached x among the first L),
    p = (K + W) / (n + 1)              (n trials drawn, only K < h reached x),

with W ~ Uniform(0, 1). The procedure is exactly valid, P(p <= a) <= a for every a
(equality for a < h / (n + 1)): the observation and the trials are exchangeable
under the null, so the observation's rank R among the first n + 1 is uniform, the
trials stop before n exactly when R > h, and the stopped values h / L are Besag &
Clifford's. What stopping costs is precision at large p (h / L has a relative
spread of about 1 / sqrt(h)), never validity. A background event (p ~ U(0, 1)) draws
on average about h (1 + ln(n / h)) trials instead of n: 112 instead of 2,000 at
h = 20.

Ties
----
The fixed-n p-value of :mod:`llama.science.pvalue` breaks ties at random. Under
stopping the same is done trial by trial: each trial gets its own draw V ~ U(0, 1)
from the tie stream, and a trial equal to x "reaches" it when V < u, u being the
observation's own tie draw (U of the fixed-n formula). The pairs (statistic, V) are
continuous and exchangeable, so the argument above holds with ties. ``p_upper``
counts every tie (u = 1): its stopping trial comes no later, so p_upper >= p, and it
is Besag & Clifford's p-value for the conservative count.

Examples
--------
>>> import numpy as np
>>> c = SequentialCount([0.5], u=[0.5], w=[0.5], h=2, n_max=10, rng=np.random.default_rng(0))
>>> c.add(np.array([0.1, 0.9, 0.2, 0.7, 0.3]))  # trials 2 and 4 reach 0.5
True
>>> c.p_values()["p"].tolist(), c.stopped_at.tolist()
([0.5], [4])
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEQUENTIAL_CONVENTION", "SequentialCount", "expected_trials"]

#: How sequential p-values are made, as recorded in the method dict.
SEQUENTIAL_CONVENTION = (
    "sequential (Besag & Clifford 1991): trials drawn in chunks; each observed value stops "
    "at the trial L where h = stop_after trials have reached it (> it, or == it with the "
    "trial's own tie draw V < U, U ~ Uniform(0, 1) seeded by 'seed'): p = h / L; if fewer "
    "than h reach it in n_trials: p = (K + W) / (1 + n_trials), W ~ Uniform(0, 1); "
    "p_value_upper counts every tie (U = 1)"
)


def expected_trials(h: int, n_max: int) -> float:
    """Mean number of trials one p-value draws when p ~ Uniform(0, 1) (a background
    event): E[min(h / p, n_max)] = h (1 + ln(n_max / h)) for 1 <= h <= n_max, and
    n_max when h >= n_max (it never stops).

    Examples
    --------
    >>> round(expected_trials(20, 2000), 1)
    112.1
    >>> expected_trials(3000, 2000)
    2000.0
    """
    if h >= n_max:
        return float(n_max)
    return float(h * (1.0 + np.log(n_max / h)))


class SequentialCount:
    """Counts of trials reaching each observed value, chunk after chunk, with
    Besag & Clifford's stopping rule (module docstring).

    Parameters
    ----------
    thresholds : array_like (k,)
        Observed values (NaN: no p-value, never waited for).
    u, w : array_like (k,)
        Each observed value's tie draw U and the draw W of the not-stopped formula.
    h : int
        Trials that must reach a value before it stops (``stop_after``), >= 1.
    n_max : int
        Most trials drawn.
    rng : numpy.random.Generator
        The tie stream, for the trials' own draws V (one per trial, in order).

    Attributes
    ----------
    drawn : int
        Trials counted so far.
    stopped_at : ndarray of int (k,)
        L, the trial (1-based) at which h trials had reached the value; 0 while not.
    """

    def __init__(self, thresholds, u, w, h: int, n_max: int, rng: np.random.Generator):
        self.x = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        self.u = np.broadcast_to(np.asarray(u, dtype=np.float64), self.x.shape)
        self.w = np.broadcast_to(np.asarray(w, dtype=np.float64), self.x.shape)
        if int(h) != h or h < 1:
            raise ValueError(f"stop_after must be an integer >= 1, got {h!r}")
        self.h, self.n_max, self.rng = int(h), int(n_max), rng
        k = self.x.size
        self.drawn = 0
        self.count = np.zeros(k, dtype=np.int64)  # trials reaching x (ties by V < u)
        self.count_upper = np.zeros(k, dtype=np.int64)  # every tie counted
        self.stopped_at = np.zeros(k, dtype=np.int64)
        self.stopped_at_upper = np.zeros(k, dtype=np.int64)
        # counts over the trials each p-value used (up to its stop)
        self.n_greater = np.zeros(k, dtype=np.int64)
        self.n_equal = np.zeros(k, dtype=np.int64)

    @property
    def done(self) -> bool:
        """Whether every observed value (not NaN) has stopped."""
        return bool(np.all((self.stopped_at > 0) | np.isnan(self.x)))

    def add(self, lo, hi=None) -> bool:
        """Count the next trials; True once every value has stopped.

        ``lo``, ``hi``: each trial's statistic, or bounds on it that hold no observed
        value unless they are equal (``TrialBounds``); ``hi`` defaults to ``lo``.
        """
        lo = np.asarray(lo, dtype=np.float64).ravel()
        hi = lo if hi is None else np.asarray(hi, dtype=np.float64).ravel()
        v = self.rng.uniform(size=lo.size)
        x = self.x[None, :]
        greater = lo[:, None] > x
        equal = (lo[:, None] == x) & (hi[:, None] == x)
        reach = greater | (equal & (v[:, None] < self.u[None, :]))
        rows = self.drawn + np.arange(1, lo.size + 1)
        for hits, count, stop in (
            (reach, self.count, self.stopped_at),
            (greater | equal, self.count_upper, self.stopped_at_upper),
        ):
            total = count[None, :] + np.cumsum(hits, axis=0)
            first = np.argmax(total >= self.h, axis=0)
            newly = (stop == 0) & (total[-1] >= self.h) if lo.size else np.zeros_like(stop, bool)
            stop[newly] = rows[first[newly]]
            if lo.size:
                count[:] = total[-1]
        used = (self.stopped_at == 0)[None, :] | (rows[:, None] <= self.stopped_at[None, :])
        self.n_greater += np.sum(greater & used, axis=0)
        self.n_equal += np.sum(equal & used, axis=0)
        self.drawn += lo.size
        return self.done

    def p_values(self) -> dict[str, np.ndarray]:
        """``p``, ``p_upper``, ``n_greater``, ``n_equal`` (over the trials each value
        used) and ``n_used`` (its L, or all trials drawn) of every observed value."""
        n1 = self.drawn + 1.0
        stopped, stopped_up = self.stopped_at > 0, self.stopped_at_upper > 0
        with np.errstate(divide="ignore"):
            p = np.where(stopped, self.h / np.maximum(self.stopped_at, 1), (self.count + self.w) / n1)  # fmt: skip
            p_up = np.where(
                stopped_up,
                self.h / np.maximum(self.stopped_at_upper, 1),
                (self.count_upper + 1.0) / n1,
            )
        bad = np.isnan(self.x)
        return {
            "p": np.where(bad, np.nan, p),
            "p_upper": np.where(bad, np.nan, p_up),
            "n_greater": self.n_greater.copy(),
            "n_equal": self.n_equal.copy(),
            "n_used": np.where(stopped, self.stopped_at, self.drawn),
        }
