"""The crossed bootstrap over seeds and test images: exact on hand cases, seeded, and its
intervals cover a known difference at about the nominal rate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from fetalbench.report.bootstrap import (
    expanded_tail,
    generator,
    image_weights,
    minimal_detectable_difference,
    resampled_macro_f1,
    standard_interval,
)
from fetalbench.report.comparisons import table_evidence
from fetalbench.runs.metrics import encode_classes

CLASSES = ("a", "b", "c")
TRUE_DIFFERENCE = 0.03
SUITES = 200
COVERAGE_BAND = (0.90, 0.99)
"""Nominal 95%: with 200 suites the binomial standard error of a coverage of 0.95 is 0.015,
so the band is about three standard errors either side (the design is mildly conservative)."""


def test_resampled_macro_f1_equals_scikit_learn_on_the_drawn_images():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    predicted = np.where(rng.random((4, 200)) < 0.7, labels, rng.integers(0, 3, (4, 200)))
    weights = image_weights(200, 5, generator("test"))
    scores = resampled_macro_f1(labels, predicted, weights, 3)
    assert scores.shape == (5, 4)
    for resample in range(5):
        drawn = np.repeat(np.arange(200), weights[resample].astype(int))
        for record in range(4):
            assert scores[resample, record] == pytest.approx(
                f1_score(labels[drawn], predicted[record, drawn], average="macro"))
    assert weights.sum(axis=1).tolist() == [200] * 5


def test_standard_interval_adds_the_shared_test_image_error_to_the_seed_variance():
    observed = np.array([0.10, 0.12, 0.08, 0.11, 0.09])
    shared = np.random.default_rng(0).normal(0, 0.02, 4000)
    interval = standard_interval(observed, observed + shared[:, None])  # moves all seeds alike
    seed_part = observed.var(ddof=1) / 5
    variance = seed_part + shared.var(ddof=1)
    df = variance**2 / (seed_part**2 / 4)
    assert interval.se == pytest.approx(math.sqrt(variance))
    assert interval.df == pytest.approx(df)
    assert interval.high - interval.estimate == pytest.approx(
        stats.t.ppf(0.975, df) * math.sqrt(variance))
    assert minimal_detectable_difference(interval) == pytest.approx(
        (stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * math.sqrt(variance))


def test_standard_interval_is_the_paired_t_test_without_per_image_predictions():
    differences = np.array([0.10, 0.12, 0.08, 0.11, 0.09])
    interval = standard_interval(differences, np.broadcast_to(differences, (100, 5)))
    assert interval.df == 4
    assert interval.p_value == pytest.approx(stats.ttest_1samp(differences, 0).pvalue)
    assert math.isnan(standard_interval(differences[:1], np.full((100, 1), 0.1)).low)


def test_expanded_tail_widens_for_few_seeds_and_is_nominal_for_images_only():
    assert expanded_tail(1) == pytest.approx(0.025)
    assert expanded_tail(5) < expanded_tail(20) < 0.025
    assert expanded_tail(20) == pytest.approx(0.025, abs=0.01)


def simulated_rows(rng: np.random.Generator, seeds: int = 5, n_test: int = 600) -> pd.DataFrame:
    """One suite: the reference and a method at 100% labels, ``seeds`` seeds, one test set.

    A run of accuracy a gets image i right when Phi(0.6 Z_i + 0.8 Z_run,i) < a (Z_i: the
    image's difficulty, shared by every run), else predicts the next class; with balanced
    classes every class's sensitivity and precision, and so the population macro F1, are a. A
    seed shifts both methods alike (0.02) and each run on its own (0.015); the method's mean
    accuracy is :data:`TRUE_DIFFERENCE` above the reference's."""
    labels = np.arange(n_test) % len(CLASSES)
    difficulty = rng.normal(size=n_test)
    shared = rng.normal(0, 0.02, seeds)
    rows = []
    for method, mean in (("supervised_imagenet", 0.70), ("simclr", 0.70 + TRUE_DIFFERENCE)):
        for seed in range(seeds):
            accuracy = mean + shared[seed] + rng.normal(0, 0.015)
            draw = stats.norm.cdf(0.6 * difficulty + 0.8 * rng.normal(size=n_test))
            predicted = np.where(draw < accuracy, labels, (labels + 1) % len(CLASSES))
            rows.append({
                "dataset": "phantom", "task": "brain", "method": method, "entry": method,
                "protocol": "finetune", "validation": "fixed", "fraction": 1.0, "seed": seed,
                "macro_f1": f1_score(labels, predicted, average="macro"), "classes": CLASSES,
                "test_labels": encode_classes(labels), "test_predicted": encode_classes(predicted),
                "test_order": "same-test-set"})
    return pd.DataFrame(rows)


def test_intervals_cover_a_known_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(2024)
    covered, widths = [], []
    for _ in range(SUITES):
        evidence = table_evidence(simulated_rows(rng), n_resamples=1000)
        difference = evidence.differences.iloc[0]
        covered.append(difference["low"] <= TRUE_DIFFERENCE <= difference["high"])
        widths.append(difference["high"] - difference["low"])
    coverage = float(np.mean(covered))
    print(f"coverage of the 95% interval of the paired difference over {SUITES} simulated "
          f"suites: {coverage:.3f} (mean width {np.mean(widths):.3f})")
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1]


def test_records_without_predictions_fall_back_to_seeds_and_one_seed_has_no_interval():
    rows = simulated_rows(np.random.default_rng(0)).assign(test_order=None)
    evidence = table_evidence(rows, n_resamples=500)
    assert "no per-image test predictions" in evidence.images
    assert not math.isnan(evidence.differences.iloc[0]["low"])
    single = table_evidence(rows[rows["seed"] == 0], n_resamples=500)
    assert math.isnan(single.differences.iloc[0]["low"])
    assert math.isnan(single.cells.iloc[0]["low"])


def test_the_bootstrap_is_seeded():
    rows = simulated_rows(np.random.default_rng(5))
    first, second = table_evidence(rows, 300), table_evidence(rows, 300)
    pd.testing.assert_frame_equal(first.differences, second.differences)
    pd.testing.assert_frame_equal(first.cells, second.cells)
