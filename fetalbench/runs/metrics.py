"""Classification metrics from scikit-learn, as the paper reports them.

Migliorelli et al. (2024) judge methods by F1, sensitivity (recall) and precision; we add accuracy,
balanced accuracy and the confusion matrix. Macro averages weigh every class equally, which matters
for the imbalanced planes of FETAL_PLANES_DB.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)


def classification_metrics(
    labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...]
) -> dict:
    """Macro F1, per-class sensitivity and precision, accuracy, balanced accuracy, confusion."""
    indices = list(range(len(classes)))
    sensitivity = recall_score(labels, predictions, labels=indices, average=None, zero_division=0)
    precision = precision_score(
        labels, predictions, labels=indices, average=None, zero_division=0
    )
    return {
        "macro_f1": float(
            f1_score(labels, predictions, labels=indices, average="macro", zero_division=0)
        ),
        "accuracy": float(accuracy_score(labels, predictions)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predictions)),
        "sensitivity": {c: float(v) for c, v in zip(classes, sensitivity, strict=True)},
        "precision": {c: float(v) for c, v in zip(classes, precision, strict=True)},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
        "n_test": len(labels),
    }


def macro_f1(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> float:
    """Macro F1 over ``n_classes`` classes (model selection on validation uses it)."""
    return float(
        f1_score(labels, predictions, labels=list(range(n_classes)), average="macro",
                 zero_division=0)
    )


def confusion_metrics(confusion: list[list[int]], classes: tuple[str, ...]) -> dict:
    """What :func:`classification_metrics` gives for the test set a confusion matrix describes.

    ``confusion[i][j]`` counts images of class ``i`` predicted as ``j``; the matrix is expanded
    into one (label, prediction) pair per image, so every number comes from the same code a run
    used (``fetalbench validate`` checks a record's numbers against its matrix this way).
    """
    counts = np.asarray(confusion, dtype=np.int64)
    pairs = np.indices(counts.shape).reshape(2, -1)
    labels, predictions = (np.repeat(axis, counts.ravel()) for axis in pairs)
    return classification_metrics(labels, predictions, classes)
