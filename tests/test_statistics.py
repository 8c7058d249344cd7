"""Aggregation and significance: hand computations, and the tests react to real differences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fetalbench.report.statistics import (
    cell_ranks,
    equivalence_p_value,
    friedman,
    holm,
    posthoc,
    probability_of_improvement,
)


def test_probability_of_improvement_counts_pairs_and_halves_ties():
    # Of the 4 pairs x wins 2 (0.6 > 0.5, 0.6 > 0.55), ties 1 (0.5 = 0.5), loses 1.
    assert probability_of_improvement([0.6, 0.5], [0.5, 0.55]) == pytest.approx(2.5 / 4)
    assert probability_of_improvement([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert probability_of_improvement([0.1], [0.9]) == 0.0


def test_probability_of_improvement_weighs_resampled_runs_and_broadcasts():
    x = np.array([[0.6, 0.4], [0.6, 0.4]])
    y = np.array([[0.5, 0.5], [0.5, 0.5]])
    counts = np.array([[2.0, 0.0], [0.0, 2.0]])  # resample 1: the 0.6 run twice; 2: the 0.4 run
    assert probability_of_improvement(x, y, counts, np.ones((2, 2))).tolist() == [1.0, 0.0]


def test_holm_matches_a_hand_example_and_keeps_nan():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    adjusted = holm([0.04, np.nan, 0.01, 0.03])
    assert adjusted[[0, 2, 3]] == pytest.approx([0.06, 0.03, 0.06])
    assert math.isnan(adjusted[1])
    assert holm([np.nan, 0.02]).tolist()[1] == 0.02  # one test is its own correction


def test_equivalence_p_value_is_schuirmanns_two_one_sided_tests():
    # the larger of P(T > (d + m) / se) and P(T < (d - m) / se)
    assert equivalence_p_value(0.0, 0.01, 10, 0.02) == pytest.approx(stats.t.sf(2, 10))
    assert equivalence_p_value(0.015, 0.01, 10, 0.02) == pytest.approx(stats.t.cdf(-0.5, 10))
    assert equivalence_p_value(-0.015, 0.01, 10, 0.02) == pytest.approx(stats.t.cdf(-0.5, 10))
    # below 0.05 exactly when the 90% interval lies within the margin
    for estimate in np.linspace(-0.03, 0.03, 13):
        half = stats.norm.ppf(0.95) * 0.005
        inside = estimate - half > -0.02 and estimate + half < 0.02
        assert (equivalence_p_value(estimate, 0.005, np.inf, 0.02) < 0.05) == inside
    assert math.isnan(equivalence_p_value(0.0, np.nan, np.nan, 0.02))


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
