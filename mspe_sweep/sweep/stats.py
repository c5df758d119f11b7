"""Statistics of a confirmation: error bars over seeds, and whether two configurations differ.

A confirmation re-trains each selected configuration over a handful of seeds.
:func:`seed_stats` gives the mean, the sample standard deviation and a two-sided t-based
confidence interval for the mean. :func:`compare` asks whether a configuration's seeds are
distinguishable from the winner's: Welch's t-test when both sides have at least 5 seeds,
otherwise an exact two-sided permutation test on the difference of means, which enumerates
every split of the pooled values into groups of the original sizes.

The exact test makes no distributional assumption, but with so few seeds it has a floor: its
p-value can never go below the fraction of splits that reach the largest difference
(:attr:`Comparison.min_p`). With 3 seeds per configuration there are C(6, 3) = 20 splits and
at best 2 of them (the observed one and its mirror) are as extreme, so p >= 2/20 = 0.1: two
3-seed configurations can NEVER be called distinguishable at alpha 0.05, however far apart.
With 4 vs 4 the floor is 2/70 ~= 0.029. "Not distinguishable" there means "not enough seeds
to tell", not "equal".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

WELCH_MIN_N = 5  # both samples at least this large -> Welch's t-test, else the exact test
# Relative tolerance for float ties: differences of means summed in another order differ by
# rounding only, and must count as equal (else identical seeds would look different).
_TIE_RTOL = 1e-12


@dataclass(frozen=True)
class SeedStats:
    """Summary of one metric over seeds.

    Attributes:
        n: Number of values.
        mean: Their mean.
        std: Sample standard deviation (ddof=1); nan when n < 2.
        low: Lower end of the two-sided t-based confidence interval for the mean; nan if n < 2.
        high: Upper end of that interval; nan when n < 2.
    """

    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        """Half the confidence interval's width (``high - mean``); nan when n < 2."""
        return self.high - self.mean

    def format(self, digits: int = 4) -> str:
        """``"0.1234 ± 0.0056"`` (mean ± CI half-width), or ``"0.1234"`` when n < 2."""
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty: need at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has non-finite values: {x.tolist()}")
    return x


def seed_stats(values: Sequence[float], confidence: float = 0.95) -> SeedStats:
    """Mean, sample std and t-based confidence interval of a metric over seeds.

    Args:
        values: The metric, one value per seed.
        confidence: Coverage of the two-sided interval, in (0, 1).

    Returns:
        The :class:`SeedStats`; ``std``, ``low`` and ``high`` are nan for a single value.

    Raises:
        ValueError: ``values`` is empty or has a non-finite value, or ``confidence`` is
            outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = _as_array(values, "values")
    n, mean = x.size, float(x.mean())
    if n < 2:
        return SeedStats(n=n, mean=mean, std=math.nan, low=math.nan, high=math.nan)
    std = float(x.std(ddof=1))
    from scipy import stats as _st  # ~2 s to import: only when a table is built

    half = float(_st.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return SeedStats(n=n, mean=mean, std=std, low=mean - half, high=mean + half)


@dataclass(frozen=True)
class Comparison:
    """Whether a configuration's seeds are distinguishable from the winner's.

    Attributes:
        test: ``"welch"`` or ``"permutation"``.
        p_value: Two-sided p-value.
        alpha: Significance level.
        min_p: Smallest p-value this test can reach with these samples (0.0 for Welch).
    """

    test: str
    p_value: float
    alpha: float
    min_p: float

    @property
    def distinguishable(self) -> bool:
        """True when ``p_value < alpha``."""
        return self.p_value < self.alpha


def compare(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> Comparison:
    """Two-sided test of a difference of means between seeds ``a`` (the best) and ``b``.

    Welch's t-test when both have at least 5 values, else the exact permutation test (see the
    module docstring for its floor).

    Args:
        a: The best configuration's metric, one value per seed.
        b: The other configuration's metric.
        alpha: Significance level for :attr:`Comparison.distinguishable`.

    Returns:
        The :class:`Comparison`. Equal means (e.g. identical values) give p = 1.0, never nan.

    Raises:
        ValueError: A sample is empty or non-finite, the two have fewer than 3 values
            together, or ``alpha`` is outside (0, 1).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size + y.size < 3:
        raise ValueError(f"need at least 3 values in a and b together, got {x.size} + {y.size}")
    tol = _TIE_RTOL * max(1.0, float(np.abs(np.concatenate([x, y])).max()))
    if x.size >= WELCH_MIN_N and y.size >= WELCH_MIN_N:
        return Comparison("welch", _welch_p(x, y, tol), alpha, 0.0)
    p, min_p = _permutation_p(x, y, tol)
    return Comparison("permutation", p, alpha, min_p)


def _welch_p(x: np.ndarray, y: np.ndarray, tol: float) -> float:
    diff = float(x.mean() - y.mean())
    if abs(diff) <= tol:
        return 1.0
    vx, vy = float(x.var(ddof=1)) / x.size, float(y.var(ddof=1)) / y.size
    if vx + vy == 0.0:  # two constant samples with different values: no overlap at all
        return 0.0
    t = diff / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    from scipy import stats as _st

    return float(2.0 * _st.t.sf(abs(t), df))


def _permutation_p(x: np.ndarray, y: np.ndarray, tol: float) -> tuple[float, float]:
    pooled = np.concatenate([x, y]).tolist()
    total, k = sum(pooled), min(x.size, y.size)
    n_k, n_rest = k, len(pooled) - k
    # Enumerate the smaller group's members; by symmetry |diff| is the same either way round.
    diffs = [
        abs(s / n_k - (total - s) / n_rest)
        for s in (sum(pooled[i] for i in idx) for idx in combinations(range(len(pooled)), k))
    ]
    observed = abs(float(x.mean() - y.mean()))
    biggest = max(diffs)
    p = sum(d >= observed - tol for d in diffs) / len(diffs)
    min_p = sum(d >= biggest - tol for d in diffs) / len(diffs)
    return p, min_p
