"""Aggregation and significance over seeds and cells, as plain functions over arrays of runs.

Within a cell: the probability of improvement over the reference (Agarwal et al. 2021). The
intervals and tests of a cell's difference to the reference count seeds and test patients
(:mod:`fetalbench.report.bootstrap`); a paired t-test over seeds alone would ignore the test
set's sampling error, and the bootstrap's test reduces to it where records lack per-image
predictions, so the leaderboard no longer carries one. Their p-values get Holm's step-down
correction over a family of comparisons (Holm 1979, "A simple sequentially rejective multiple
test procedure", Scand. J. Statist. 6:65-70): the comparisons of one table for its markers, those
of one claim for its verdict. That a difference is negligible is shown by an equivalence test
(:func:`equivalence_p_value`; Schuirmann 1987), never by a difference test that fails to reject.
Across cells: ranks, the Friedman test and the Nemenyi post-hoc test, following Demšar (2006),
"Statistical comparisons of classifiers over multiple data sets", JMLR 7:1-30.
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

ALPHA = 0.05
"""The level of every test the report makes (after Holm's correction within its family)."""
MIN_TEST_PAIRS = 3
"""Fewest seeds shared with the reference for a cell to be marked significant or to count for a
claim: with two, the t statistic has one degree of freedom and its spread rests on two
differences, so two that happen to agree read as strong evidence; with one, nothing measures how
much another seed would change the result."""


class FriedmanResult(NamedTuple):
    """Friedman's chi-square statistic and its p-value."""

    statistic: float
    p_value: float


def probability_of_improvement(x: np.ndarray, y: np.ndarray, x_counts: np.ndarray | None = None,
                               y_counts: np.ndarray | None = None) -> np.ndarray:
    """P(X > Y): the chance that a run of X scores above a run of Y, ties counting one half,
    over every pair of runs (Agarwal et al., "Deep Reinforcement Learning at the Edge of the
    Statistical Precipice", NeurIPS 2021, eq. for the probability of improvement on one task;
    the Mann-Whitney U statistic over n·m). ``x`` (..., n) and ``y`` (..., m) are the runs' scores;
    ``x_counts`` and ``y_counts``, of the same shapes, weigh each run (a bootstrap resample's
    counts), one each by default."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x_counts = np.ones_like(x) if x_counts is None else np.asarray(x_counts, dtype=float)
    y_counts = np.ones_like(y) if y_counts is None else np.asarray(y_counts, dtype=float)
    wins = (x[..., :, None] > y[..., None, :]) + 0.5 * (x[..., :, None] == y[..., None, :])
    weights = x_counts[..., :, None] * y_counts[..., None, :]
    return (wins * weights).sum(axis=(-2, -1)) / weights.sum(axis=(-2, -1))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels ``multipletests``); NaN inputs stay NaN and are not
    counted as comparisons."""
    array = np.asarray(p_values, dtype=float)
    adjusted = array.copy()
    present = ~np.isnan(array)
    if present.sum() > 1:  # one test is its own correction
        adjusted[present] = multipletests(array[present], method="holm")[1]
    return adjusted


def equivalence_p_value(estimate: np.ndarray, se: np.ndarray, df: np.ndarray,
                        margin: float) -> np.ndarray:
    """Schuirmann's two one-sided tests (TOST) that a true difference lies within ``±margin``
    (Schuirmann 1987, "A comparison of the two one-sided tests procedure and the power approach
    for assessing the equivalence of average bioavailability", J. Pharmacokinet. Biopharm.
    15(6):657-680): the larger of the p-values of the t tests (``df`` degrees of freedom, standard
    error ``se``) of "difference ≤ -margin" and of "difference ≥ +margin". Below alpha exactly
    when the 1 - 2·alpha interval lies within ``±margin``; NaN where ``se`` is."""
    estimate, se, df = (np.asarray(value, dtype=float) for value in (estimate, se, df))
    with np.errstate(invalid="ignore", divide="ignore"):
        above_lower = stats.t.sf((estimate + margin) / se, df)
        below_upper = stats.t.cdf((estimate - margin) / se, df)
    return np.maximum(above_lower, below_upper)


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
