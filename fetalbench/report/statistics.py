"""Aggregation and significance over seeds and cells, as plain functions over arrays of runs.

Over the seeds of one cell: a mean with a t confidence interval, and a two-sided paired t-test
against a reference method (seeds matched, since a seed fixes the split and label subset; at least
:data:`MIN_TEST_PAIRS` pairs), with Holm's step-down correction over the comparisons of one table
(Holm 1979, "A simple sequentially rejective multiple test procedure", Scand. J. Statist.
6:65-70). Across cells: ranks, the Friedman test and the Nemenyi post-hoc test, following Demšar
(2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7:1-30.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats
from statsmodels.stats.multitest import multipletests

MIN_TEST_PAIRS = 3
"""Fewest seed pairs :func:`paired_test` tests: with two, the t statistic has one degree of
freedom and its spread rests on two differences, so two that happen to agree read as strong
evidence."""


class MeanInterval(NamedTuple):
    """Mean, sample standard deviation (ddof=1) and a two-sided confidence interval."""

    mean: float
    std: float
    low: float
    high: float


class FriedmanResult(NamedTuple):
    """Friedman's chi-square statistic and its p-value."""

    statistic: float
    p_value: float


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> MeanInterval:
    """Mean of ``values`` (one per seed) with a Student-t interval; std and CI are NaN for one.

    The interval is ``mean ± t_{(1+confidence)/2, n-1} · std / sqrt(n)``.
    """
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(array.mean())
    if array.size == 1:
        return MeanInterval(mean, math.nan, math.nan, math.nan)
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, array.size - 1)) * std / math.sqrt(array.size)
    return MeanInterval(mean, std, mean - half, mean + half)


def seed_pairs(method_scores: pd.Series, reference_scores: pd.Series) -> pd.DataFrame:
    """The seeds present (and not NaN) in both series, one row per seed: method, reference."""
    return pd.concat([method_scores, reference_scores], axis=1, join="inner").dropna()


def paired_test(method_scores: pd.Series, reference_scores: pd.Series) -> float:
    """Two-sided paired t-test p-value of ``method_scores`` vs ``reference_scores``.

    Both are indexed by seed; only :func:`seed_pairs` are paired. The p-value is NaN when fewer
    than :data:`MIN_TEST_PAIRS` pairs remain, or when every difference is the same (zero variance
    of the differences: the t statistic is undefined, so no claim is made either way).
    """
    pairs = seed_pairs(method_scores, reference_scores)
    if len(pairs) < MIN_TEST_PAIRS:
        return math.nan
    differences = pairs.iloc[:, 0].to_numpy(float) - pairs.iloc[:, 1].to_numpy(float)
    if np.allclose(differences, differences[0], rtol=0.0, atol=1e-12):
        return math.nan
    return float(stats.ttest_rel(pairs.iloc[:, 0], pairs.iloc[:, 1]).pvalue)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels ``multipletests``); NaN inputs stay NaN and are not
    counted as comparisons."""
    array = np.asarray(p_values, dtype=float)
    adjusted = np.full(array.shape, np.nan)
    present = ~np.isnan(array)
    if present.any():
        adjusted[present] = multipletests(array[present], method="holm")[1]
    return adjusted


def cell_ranks(scores: pd.DataFrame) -> pd.DataFrame:
    """Rank of each method (column) within each cell (row): 1 = highest score, ties averaged."""
    return scores.rank(axis=1, ascending=False, method="average")


def _enough_for_ranking(scores: pd.DataFrame) -> bool:
    return scores.shape[1] >= 3 and scores.shape[0] >= 2


def friedman(scores: pd.DataFrame) -> FriedmanResult:
    """Friedman test that all methods (columns) rank equally over the cells (rows).

    ``scores`` must be complete (no NaN). Needs at least 3 methods and 2 cells, else NaN; NaN too
    when every cell is a complete tie.
    """
    if not _enough_for_ranking(scores):
        return FriedmanResult(math.nan, math.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = stats.friedmanchisquare(*(scores[column] for column in scores.columns))
    return FriedmanResult(float(result.statistic), float(result.pvalue))


def posthoc(scores: pd.DataFrame) -> pd.DataFrame:
    """Nemenyi post-hoc p-values for every pair of methods (scikit-posthocs), methods x methods.

    Same input as :func:`friedman`; all NaN when that has too little data.
    """
    if not _enough_for_ranking(scores):
        return pd.DataFrame(np.nan, index=scores.columns, columns=scores.columns)
    return scikit_posthocs.posthoc_nemenyi_friedman(scores.reset_index(drop=True))
