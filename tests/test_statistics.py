"""Aggregation and significance: hand computations, and the tests react to real differences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fetalbench.report.statistics import (
    MIN_TEST_PAIRS,
    cell_ranks,
    friedman,
    holm,
    mean_ci,
    paired_test,
    posthoc,
)


def test_mean_ci_matches_a_hand_computation():
    values = [0.70, 0.72, 0.74, 0.76, 0.78]
    mean, std, low, high = mean_ci(values)
    # mean 0.74; std = sqrt(sum of squared deviations 0.004 / 4) = sqrt(0.001);
    # t_{0.975, 4} = 2.776445105; half width = t * std / sqrt(5).
    half = 2.776445105 * math.sqrt(0.001) / math.sqrt(5)
    assert mean == pytest.approx(0.74)
    assert std == pytest.approx(math.sqrt(0.001))
    assert (low, high) == pytest.approx((0.74 - half, 0.74 + half))


def test_mean_ci_of_one_seed_has_no_interval():
    mean, std, low, high = mean_ci([0.5])
    assert mean == 0.5
    assert math.isnan(std) and math.isnan(low) and math.isnan(high)


def test_paired_test_separates_a_consistent_shift_from_noise():
    seeds = range(5)
    reference = pd.Series([0.60, 0.64, 0.58, 0.66, 0.62], index=seeds)
    shifted = reference + pd.Series([0.10, 0.11, 0.09, 0.105, 0.095], index=seeds)
    noisy = reference + pd.Series([0.02, -0.03, 0.01, -0.01, 0.015], index=seeds)
    assert paired_test(shifted, reference) < 0.001
    assert paired_test(noisy, reference) > 0.5


def test_paired_test_pairs_by_seed_not_by_position():
    reference = pd.Series([0.5, 0.6, 0.7, 0.8], index=[0, 1, 2, 3])
    method = pd.Series([0.91, 0.79, 0.7, 0.6], index=[3, 2, 1, 0])  # +0.1ish, reversed order
    assert paired_test(method, reference) < 0.01


def test_paired_test_is_nan_without_three_pairs_or_without_spread():
    reference = pd.Series([0.5, 0.6, 0.7], index=[0, 1, 2])
    assert math.isnan(paired_test(pd.Series([0.9], index=[0]), reference))
    assert math.isnan(paired_test(pd.Series([0.9, 0.9], index=[7, 8]), reference))
    assert math.isnan(paired_test(reference + 0.1, reference))


def test_paired_test_needs_three_seed_pairs_even_for_a_clear_shift():
    reference = pd.Series([0.5, 0.6, 0.7, 0.8], index=[0, 1, 2, 3])
    shift = pd.Series([0.150, 0.151, 0.149, 0.152], index=[0, 1, 2, 3])
    assert MIN_TEST_PAIRS == 3
    # Two pairs: one degree of freedom, the t statistic is ~300 and p ~0.002, but no test.
    assert math.isnan(paired_test((reference + shift)[:2], reference))
    assert math.isnan(paired_test((reference + shift)[[1, 3]], reference[[0, 1, 3]]))
    assert paired_test((reference + shift)[:3], reference) < 0.001


def test_holm_matches_a_hand_example_and_keeps_nan():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    adjusted = holm([0.04, np.nan, 0.01, 0.03])
    assert adjusted[[0, 2, 3]] == pytest.approx([0.06, 0.03, 0.06])
    assert math.isnan(adjusted[1])


def winner_scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.6, (8, 1))
    noise = rng.normal(0, 0.02, (8, 2))
    columns = [base + noise[:, :1], base + 0.3, base + noise[:, 1:], base - 0.2]
    return pd.DataFrame(np.hstack(columns), columns=["a", "winner", "c", "loser"])


def test_ranks_put_a_clear_winner_first_and_average_ties():
    ranks = cell_ranks(winner_scores())
    assert (ranks["winner"] == 1).all()
    assert (ranks["loser"] == 4).all()
    tied = cell_ranks(pd.DataFrame({"x": [0.5], "y": [0.5], "z": [0.1]}))
    assert tied.iloc[0].tolist() == [1.5, 1.5, 3.0]


def test_friedman_and_posthoc_detect_the_winner():
    scores = winner_scores()
    statistic, p_value = friedman(scores)
    assert statistic > 0 and p_value < 0.001
    p_values = posthoc(scores)
    assert p_values.shape == (4, 4)
    assert list(p_values.index) == list(p_values.columns) == list(scores.columns)
    assert p_values.loc["winner", "loser"] < 0.01
    assert p_values.loc["a", "c"] > 0.05


def test_friedman_needs_three_methods_and_two_cells():
    assert all(math.isnan(v) for v in friedman(winner_scores()[["a", "winner"]]))
    assert all(math.isnan(v) for v in friedman(winner_scores().iloc[:1]))
    assert posthoc(winner_scores().iloc[:1]).isna().all().all()
