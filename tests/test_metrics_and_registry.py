"""Metrics agree with hand-computed values; registry lookups suggest close names."""

from __future__ import annotations

import numpy as np
import pytest

from fetalbench.errors import FetalbenchError
from fetalbench.methods import METHODS
from fetalbench.registry import Registry
from fetalbench.runs.metrics import classification_metrics


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
