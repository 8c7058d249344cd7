"""Validation carve-out and nested label fractions, proved on the real FETAL_PLANES_DB CSV."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fetalbench.data.splits import DEFAULT_FRACTIONS, nested_labelled_subsets, split_task
from fetalbench.data.tasks import TASKS
from fetalbench.errors import FetalbenchError


@pytest.mark.parametrize("task_name", ["planes", "brain"])
@pytest.mark.parametrize("seed", [0, 3])
def test_splits_on_the_real_csv(real_catalog: pd.DataFrame, task_name: str, seed: int) -> None:
    rows = TASKS.get(task_name).select(real_catalog)
    patients = rows["patient"].to_numpy()
    labels = rows["label"].to_numpy()
    splits = {f: split_task(rows, f, seed) for f in DEFAULT_FRACTIONS}
    first = splits[DEFAULT_FRACTIONS[0]]
    # test is the official test split; validation and train are patient-disjoint from each other
    assert set(first.test) == set(np.flatnonzero(~rows["train"].to_numpy()))
    assert not set(patients[first.validation]) & set(patients[first.train])
    assert not set(patients[first.train]) & set(patients[first.test])
    # validation is stratified: every class present, shares close to the training shares
    train_share = np.bincount(labels[first.unlabelled_pool]) / len(first.unlabelled_pool)
    validation_share = np.bincount(labels[first.validation]) / len(first.validation)
    assert np.all(validation_share > 0)
    assert np.abs(validation_share - train_share).max() < 0.05
    # nested: each fraction's labelled set contains the smaller fraction's
    ordered = sorted(splits)
    for small, large in itertools.pairwise(ordered):
        assert set(splits[small].labelled) <= set(splits[large].labelled)
    # stratified by class with at least one image per class, never from validation or test
    n_classes = len(TASKS.get(task_name).classes)
    for fraction, split in splits.items():
        assert set(split.labelled) <= set(split.train)
        per_class = np.bincount(labels[split.labelled], minlength=n_classes)
        available = np.bincount(labels[split.train], minlength=n_classes)
        assert per_class.min() >= 1
        largest_patient = rows.iloc[split.train].groupby(["label", "patient"]).size().max()
        assert np.all(per_class >= np.ceil(fraction * available) - 1e-9)
        assert np.all(per_class <= fraction * available + largest_patient)
    assert np.array_equal(splits[1.0].labelled, first.train)
    # the unlabelled pool is every official training image of the task outside the validation
    # carve-out (which, under the fixed setting, is the validation set): together they partition
    # the official training images, and the pool is the training part
    official_train = set(np.flatnonzero(rows["train"].to_numpy()))
    for split in splits.values():
        pool, carve_out = set(split.unlabelled_pool), set(split.validation_carve_out)
        assert not pool & carve_out
        assert pool | carve_out == official_train
        assert np.array_equal(split.unlabelled_pool, split.train)
        assert np.array_equal(split.validation_carve_out, split.validation)
    assert len(first.unlabelled_pool) + len(first.validation_carve_out) == int(rows["train"].sum())


@pytest.mark.parametrize("task_name", ["planes", "brain"])
def test_scaled_validation_is_no_larger_than_the_labelled_set(real_catalog: pd.DataFrame,
                                                              task_name: str) -> None:
    rows = TASKS.get(task_name).select(real_catalog)
    labels, n_classes = rows["label"].to_numpy(), len(TASKS.get(task_name).classes)
    fixed = split_task(rows, 0.01, 0)
    scaled = {f: split_task(rows, f, 0, validation="scaled") for f in DEFAULT_FRACTIONS}
    for fraction, split in scaled.items():
        assert np.array_equal(split.labelled, split_task(rows, fraction, 0).labelled)
        assert set(split.validation) <= set(fixed.validation)
        # the whole carve-out stays out of the pool, also the part scaled validation leaves out
        assert np.array_equal(split.validation_carve_out, fixed.validation)
        assert not set(split.unlabelled_pool) & set(split.validation_carve_out)
        per_class = np.bincount(labels[split.validation], minlength=n_classes)
        assert per_class.min() >= 1
        assert np.all(per_class <= np.bincount(labels[split.labelled], minlength=n_classes))
    for small, large in itertools.pairwise(sorted(scaled)):
        assert set(scaled[small].validation) <= set(scaled[large].validation)
    if task_name == "brain":  # the imbalance the scaled setting removes (issue 18)
        assert (len(fixed.labelled), len(fixed.validation)) == (13, 311)
        assert len(scaled[0.01].validation) <= 13


def test_an_unknown_validation_setting_is_refused(real_catalog: pd.DataFrame) -> None:
    with pytest.raises(FetalbenchError, match="unknown validation setting 'all'; expected one of"):
        split_task(TASKS.get("brain").select(real_catalog), 0.1, 0, validation="all")


def test_labelled_subsets_are_drawn_by_patient(real_catalog: pd.DataFrame) -> None:
    rows = TASKS.get("planes").select(real_catalog)
    train = rows[rows["train"]]
    subset = nested_labelled_subsets(train, (0.05,), seed=0)[0.05]
    chosen = train.iloc[subset]
    whole = train[train["patient"].isin(chosen["patient"])]
    # a chosen patient contributes all of its images of the classes it was chosen for
    for (label, patient), count in chosen.groupby(["label", "patient"]).size().items():
        assert count == len(whole[(whole["label"] == label) & (whole["patient"] == patient)])


def test_same_seed_same_split_other_seed_other_split(real_catalog: pd.DataFrame) -> None:
    rows = TASKS.get("brain").select(real_catalog)
    assert np.array_equal(split_task(rows, 0.1, 0).labelled, split_task(rows, 0.1, 0).labelled)
    assert not np.array_equal(split_task(rows, 0.1, 0).labelled,
                              split_task(rows, 0.1, 1).labelled)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_outside_unit_interval_is_refused(real_catalog, fraction: float) -> None:
    rows = TASKS.get("brain").select(real_catalog)
    with pytest.raises(FetalbenchError, match=r"outside \(0, 1\]"):
        split_task(rows, fraction, 0)


def test_one_class_task_is_refused(sample_root) -> None:
    from fetalbench.data.fetal_planes_db import load_catalog

    with pytest.raises(FetalbenchError, match="only 'Trans-ventricular'"):
        TASKS.get("brain").select(load_catalog(sample_root))
