"""Metrics agree with hand-computed values; registry lookups suggest close names."""

from __future__ import annotations

import numpy as np
import pytest

from fetalbench.errors import FetalbenchError
from fetalbench.methods import METHODS
from fetalbench.registry import Registry
from fetalbench.runs.metrics import (
    classification_metrics,
    decode_classes,
    decode_patients,
    encode_classes,
    encode_patients,
    per_image_predictions,
    per_machine_metrics,
)


def test_metrics_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1, 2, 0])
    metrics = classification_metrics(labels, predictions, ("a", "b", "c"))
    assert metrics["sensitivity"] == {"a": 0.5, "b": 1.0, "c": 0.5}
    assert metrics["precision"] == {"a": 0.5, "b": 2 / 3, "c": 1.0}
    f1 = [0.5, 0.8, 2 / 3]
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(FetalbenchError, match="did you mean supervised_imagenet"):
        METHODS.get("supervised_imagenett")


def test_collision_names_both_sources() -> None:
    registry: Registry[int] = Registry("method")
    registry.register("x", 1, "package_a")
    with pytest.raises(FetalbenchError, match="by package_a and by package_b"):
        registry.register("x", 2, "package_b")


def test_predictions_are_kept_one_digit_per_image_and_read_back() -> None:
    labels, predicted = np.array([0, 2, 1, 11]), np.array([0, 1, 1, 35])
    patients = np.array([17, 17, 4, 230])
    kept = per_image_predictions(labels, predicted, ["a.png", "b.png", "c.png", "d.png"],
                                 patients)
    assert (kept["labels"], kept["predicted"]) == ("021b", "011z")
    assert np.array_equal(decode_classes(kept["predicted"]), predicted)
    assert kept["patients"] == "17 17 4 230"
    assert decode_patients(kept["patients"]).tolist() == ["17", "17", "4", "230"]
    reordered = per_image_predictions(labels, predicted, list("abdc"), patients)
    assert kept["order_sha256"] != reordered["order_sha256"]
    with pytest.raises(ValueError, match="class indices must lie in"):
        encode_classes(np.array([36]))
    with pytest.raises(ValueError, match="no whitespace"):
        encode_patients(np.array(["Patient 1"]))


def test_per_machine_macro_f1_averages_over_the_classes_each_machine_imaged() -> None:
    labels = np.array([0, 1, 0, 0, 2])
    predicted = np.array([0, 1, 1, 0, 2])
    machines = np.array(["A", "A", "B", "B", "B"])
    scores = per_machine_metrics(labels, predicted, machines)
    assert scores["A"] == {"macro_f1": 1.0, "n_test": 2}
    # B imaged classes 0 and 2 only: F1 2/3 on class 0, 1 on class 2; class 1 is not averaged in
    assert scores["B"]["n_test"] == 3
    assert scores["B"]["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
