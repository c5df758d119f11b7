"""Seed statistics and the best-vs-other comparison of a confirmation."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats as st

from mspe_sweep.sweep.stats import Comparison, SeedStats, compare, seed_stats

T_975_3 = 3.182446305284263  # t_{0.975} with 3 degrees of freedom
STD_1234 = math.sqrt(5 / 3)  # sample std of [1, 2, 3, 4] = 1.2909944...


def test_seed_stats_hand_computed() -> None:
    s = seed_stats([1.0, 2.0, 3.0, 4.0])
    half = T_975_3 * STD_1234 / 2.0
    assert s.n == 4
    assert s.mean == pytest.approx(2.5)
    assert s.std == pytest.approx(1.2909944487358056)
    assert s.low == pytest.approx(2.5 - half)
    assert s.high == pytest.approx(2.5 + half)
    assert s.half_width == pytest.approx(half)  # ~2.0541


def test_seed_stats_confidence_level_changes_the_interval() -> None:
    s = seed_stats([1.0, 2.0, 3.0, 4.0], confidence=0.90)
    assert s.half_width == pytest.approx(2.353363434801823 * STD_1234 / 2.0)  # t_{0.95,3}


def test_seed_stats_single_value_has_nan_spread() -> None:
    s = seed_stats([0.25])
    assert (s.n, s.mean) == (1, 0.25)
    assert math.isnan(s.std) and math.isnan(s.low) and math.isnan(s.high)
    assert math.isnan(s.half_width)


def test_seed_stats_constant_values_have_zero_width() -> None:
    s = seed_stats([0.3, 0.3, 0.3])
    assert s.std == pytest.approx(0.0, abs=1e-15)
    assert s.low == pytest.approx(0.3) and s.high == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("values", "match"),
    [([], "empty"), ([1.0, math.nan], "non-finite"), ([1.0, math.inf, 2.0], "non-finite")],
)
def test_seed_stats_rejects_bad_values(values: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        seed_stats(values)


def test_seed_stats_rejects_bad_confidence() -> None:
    with pytest.raises(ValueError, match="confidence"):
        seed_stats([1.0, 2.0], confidence=95)


def test_format() -> None:
    assert SeedStats(n=3, mean=0.12344, std=0.01, low=0.1178, high=0.12904).format() == (
        "0.1234 ± 0.0056"
    )
    assert SeedStats(n=3, mean=0.5, std=0.1, low=0.25, high=0.75).format(digits=2) == (
        "0.50 ± 0.25"
    )
    assert SeedStats(1, 0.12344, math.nan, math.nan, math.nan).format() == "0.1234"


def test_welch_matches_scipy() -> None:
    a = [0.10, 0.12, 0.11, 0.13, 0.09]
    b = [0.15, 0.18, 0.14, 0.16, 0.17, 0.20]
    c = compare(a, b)
    expected = st.ttest_ind(a, b, equal_var=False).pvalue
    assert c.test == "welch"
    assert c.p_value == pytest.approx(expected, rel=1e-10)
    assert c.min_p == 0.0 and c.alpha == 0.05
    assert c.distinguishable  # p ~ 3e-4


def test_welch_not_distinguishable_for_overlapping_seeds() -> None:
    a = [0.10, 0.14, 0.11, 0.13, 0.09]
    b = [0.12, 0.10, 0.14, 0.11, 0.13]
    c = compare(a, b)
    assert c.test == "welch"
    assert c.p_value == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-10)
    assert not c.distinguishable


def _hand_count(a: list[float], b: list[float]) -> float:
    pooled = a + b
    obs = abs(np.mean(a) - np.mean(b))
    splits = list(combinations(range(len(pooled)), len(a)))
    hits = 0
    for idx in splits:
        g1 = [pooled[i] for i in idx]
        g2 = [pooled[i] for i in range(len(pooled)) if i not in idx]
        hits += abs(np.mean(g1) - np.mean(g2)) >= obs - 1e-12
    return hits / len(splits)


def test_permutation_two_vs_two_by_hand() -> None:
    # Splits of {1, 2, 3, 5} into pairs: |diff| = 2.5 ({1,2}|{3,5} and mirror), 1.5 ({1,3}),
    # 0.5 ({1,5}|{2,3}); the observed split {1,3}|{2,5} has 1.5 -> 4 of 6 splits reach it.
    c = compare([1.0, 3.0], [2.0, 5.0])
    assert c.test == "permutation"
    assert c.p_value == pytest.approx(4 / 6)
    assert c.min_p == pytest.approx(2 / 6)


def test_permutation_matches_scipy_exact() -> None:
    a, b = [0.31, 0.29, 0.30], [0.35, 0.33, 0.30]
    c = compare(a, b)
    ref = st.permutation_test(
        (a, b),
        lambda x, y: np.mean(x) - np.mean(y),
        permutation_type="independent",
        n_resamples=np.inf,
        alternative="two-sided",
    )
    assert c.test == "permutation"
    assert c.p_value == pytest.approx(ref.pvalue)
    assert c.p_value == pytest.approx(_hand_count(a, b))


def test_permutation_unequal_sizes_matches_hand_count() -> None:
    a, b = [0.2, 0.25, 0.22, 0.21, 0.3, 0.24], [0.28, 0.31]  # 6 vs 2: permutation branch
    c = compare(a, b)
    assert c.test == "permutation"
    assert c.p_value == pytest.approx(_hand_count(a, b))
    assert c.min_p == pytest.approx(1 / 28)  # only {0.30, 0.31} in the pair is most extreme


def test_three_vs_three_floor_is_one_tenth() -> None:
    # Completely separated seeds: the most extreme split there is, still p = 2/20.
    c = compare([0.10, 0.11, 0.12], [0.50, 0.51, 0.52])
    assert c.p_value == pytest.approx(0.1)
    assert c.min_p == pytest.approx(0.1)
    assert not c.distinguishable


def test_four_vs_four_floor_is_two_seventieths() -> None:
    c = compare([0.10, 0.11, 0.12, 0.13], [0.50, 0.51, 0.52, 0.53])
    assert c.p_value == pytest.approx(2 / 70)
    assert c.min_p == pytest.approx(2 / 70)
    assert c.distinguishable
    strict = compare([0.10, 0.11, 0.12, 0.13], [0.50, 0.51, 0.52, 0.53], alpha=0.01)
    assert not strict.distinguishable


def test_one_value_side_uses_permutation() -> None:
    c = compare([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.9])
    assert c.test == "permutation"
    assert c.p_value == pytest.approx(1 / 7) and c.min_p == pytest.approx(1 / 7)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_identical_values_give_p_one(n: int) -> None:
    c = compare([0.1] * n, [0.1] * (n + 1))
    assert c.p_value == 1.0
    assert not c.distinguishable


def test_welch_constant_but_different_samples_is_not_nan() -> None:
    c = compare([0.1] * 5, [0.2] * 5)
    assert c.test == "welch"
    assert c.p_value == 0.0 and c.distinguishable


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([], [1.0, 2.0, 3.0], "a is empty"),
        ([1.0, 2.0], [], "b is empty"),
        ([1.0], [2.0], "at least 3"),
        ([1.0, math.nan], [2.0, 3.0], "non-finite"),
    ],
)
def test_compare_rejects_bad_samples(a: list[float], b: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compare(a, b)


def test_compare_rejects_bad_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        compare([1.0, 2.0], [3.0], alpha=0.0)


def test_distinguishable_is_strictly_below_alpha() -> None:
    assert not Comparison("welch", p_value=0.05, alpha=0.05, min_p=0.0).distinguishable
    assert Comparison("welch", p_value=0.0499, alpha=0.05, min_p=0.0).distinguishable
