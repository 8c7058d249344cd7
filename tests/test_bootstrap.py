"""The bootstrap over seeds crossed with test patients: exact on hand cases, seeded, and its
intervals cover a known difference at about the nominal rate on a test set of patients of
varying size, where resampling images as if independent does not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from fetalbench.report.bootstrap import (
    cluster_weights,
    expanded_tail,
    generator,
    minimal_detectable_difference,
    resampled_macro_f1,
    standard_interval,
)
from fetalbench.report.comparisons import table_evidence
from fetalbench.runs.metrics import encode_classes, encode_patients

CLASSES = ("a", "b", "c")
TRUE_DIFFERENCE = 0.03
SUITES = 200
COVERAGE_BAND = (0.90, 0.99)
"""Nominal 95%: with 200 suites the binomial standard error of a coverage of 0.95 is 0.015,
so the band is about three standard errors either side (the design is mildly conservative)."""
IMAGE_COVERAGE_BELOW = 0.90
"""The image bootstrap on the same suites: its intervals are too narrow for clustered images."""


def test_resampled_macro_f1_equals_scikit_learn_on_the_drawn_images():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    predicted = np.where(rng.random((4, 200)) < 0.7, labels, rng.integers(0, 3, (4, 200)))
    weights = cluster_weights(np.arange(200), 5, generator("test"))
    scores = resampled_macro_f1(labels, predicted, weights, 3)
    assert scores.shape == (5, 4)
    for resample in range(5):
        drawn = np.repeat(np.arange(200), weights[resample].astype(int))
        for record in range(4):
            assert scores[resample, record] == pytest.approx(
                f1_score(labels[drawn], predicted[record, drawn], average="macro"))
    assert weights.sum(axis=1).tolist() == [200] * 5


def test_cluster_weights_draw_whole_patients():
    patients = np.array([0, 0, 0, 1, 2, 2])  # sizes 3, 1, 2
    weights = cluster_weights(patients, 1000, generator("patients"))
    # every image of a patient weighs alike: as often as its patient was drawn
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 1] == weights[:, 2]).all()
    assert (weights[:, 4] == weights[:, 5]).all()
    drawn = weights[:, [0, 3, 4]]  # one image per patient: the patients' draw counts
    assert drawn.sum(axis=1).tolist() == [3] * 1000
    assert drawn.mean(axis=0) == pytest.approx([1, 1, 1], abs=0.1)
    # so the images per resample vary with the patients drawn (here from 3 to 9)
    assert set(weights.sum(axis=1).tolist()) <= {3, 4, 5, 6, 7, 8, 9}


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


def simulated_rows(rng: np.random.Generator, seeds: int = 5, n_patients: int = 120
                   ) -> pd.DataFrame:
    """One suite: the reference and a method at 100% labels, ``seeds`` seeds, one test set of
    ``n_patients`` patients of varying size (geometric, mean 5, at most 35 images, as
    FETAL_PLANES_DB's 1 to 35), each image of a random class.

    A run of accuracy a gets image i of patient p right when Phi(Z) < a (+ v_p for the
    method), Z = 0.7 D_p + 0.3 Z_run,p + 0.65 Z_run,i standard normal: D_p, how hard the
    patient is, is shared by every run; Z_run,p makes one run's images of a patient near
    duplicates. v_p ~ U(-0.3, 0.3), how much better the method does on this patient, has mean 0
    over patients, so the method's accuracy, and with balanced classes whose errors go to the
    next class its macro F1, is :data:`TRUE_DIFFERENCE` above the reference's on the population
    of patients; this test set's patients move the difference of every seed alike. A seed
    shifts both methods alike (0.02) and each run on its own (0.015)."""
    sizes = np.minimum(rng.geometric(1 / 5, n_patients), 35)
    patient = np.repeat(np.arange(n_patients), sizes)
    labels = rng.integers(0, len(CLASSES), patient.size)
    hardness = rng.normal(size=n_patients)[patient]
    advantage = rng.uniform(-0.3, 0.3, n_patients)[patient]
    shared = rng.normal(0, 0.02, seeds)
    rows = []
    for method, mean, gain in (("supervised_imagenet", 0.62, 0.0),
                               ("simclr", 0.62 + TRUE_DIFFERENCE, advantage)):
        for seed in range(seeds):
            accuracy = mean + shared[seed] + rng.normal(0, 0.015)
            draw = stats.norm.cdf(0.7 * hardness + 0.3 * rng.normal(size=n_patients)[patient]
                                  + math.sqrt(0.42) * rng.normal(size=patient.size))
            predicted = np.where(draw < accuracy + gain, labels, (labels + 1) % len(CLASSES))
            rows.append({
                "dataset": "phantom", "task": "brain", "method": method, "entry": method,
                "protocol": "finetune", "validation": "fixed", "fraction": 1.0, "seed": seed,
                "labelled": 300.0, "validation_labelled": 80.0,
                "macro_f1": f1_score(labels, predicted, average="macro"), "classes": CLASSES,
                "test_labels": encode_classes(labels), "test_predicted": encode_classes(predicted),
                "test_order": "same-test-set", "test_patients": encode_patients(patient)})
    return pd.DataFrame(rows)


def test_patient_intervals_cover_a_known_difference_and_image_intervals_do_not():
    rng = np.random.default_rng(2024)
    covered: dict[str, list[bool]] = {"patients": [], "images": []}
    widths: dict[str, list[float]] = {"patients": [], "images": []}
    for _ in range(SUITES):
        rows = simulated_rows(rng)
        images = encode_patients(np.arange(len(rows["test_labels"].iloc[0])))
        for name, suite in (("patients", rows), ("images", rows.assign(test_patients=images))):
            difference = table_evidence(suite, n_resamples=500).differences.iloc[0]
            covered[name].append(difference["low"] <= TRUE_DIFFERENCE <= difference["high"])
            widths[name].append(difference["high"] - difference["low"])
    coverage = {name: float(np.mean(hits)) for name, hits in covered.items()}
    print(f"coverage of the 95% interval of the paired difference over {SUITES} simulated "
          f"suites: patients resampled {coverage['patients']:.3f} (mean width "
          f"{np.mean(widths['patients']):.3f}), images resampled {coverage['images']:.3f} "
          f"(mean width {np.mean(widths['images']):.3f})")
    assert COVERAGE_BAND[0] <= coverage["patients"] <= COVERAGE_BAND[1]
    assert coverage["images"] < IMAGE_COVERAGE_BELOW


def test_records_without_predictions_fall_back_to_seeds_and_one_seed_has_no_interval():
    rows = simulated_rows(np.random.default_rng(0)).assign(test_order=None)
    evidence = table_evidence(rows, n_resamples=500)
    assert "no per-image test predictions" in evidence.test_set
    assert not math.isnan(evidence.differences.iloc[0]["low"])
    single = table_evidence(rows[rows["seed"] == 0], n_resamples=500)
    assert math.isnan(single.differences.iloc[0]["low"])
    assert math.isnan(single.cells.iloc[0]["low"])


def test_the_bootstrap_is_seeded():
    rows = simulated_rows(np.random.default_rng(5))
    first, second = table_evidence(rows, 300), table_evidence(rows, 300)
    pd.testing.assert_frame_equal(first.differences, second.differences)
    pd.testing.assert_frame_equal(first.cells, second.cells)
