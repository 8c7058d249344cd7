"""Classification metrics from scikit-learn, as the paper reports them.

Migliorelli et al. (2024) judge methods by F1, sensitivity (recall) and precision; we add accuracy,
balanced accuracy and the confusion matrix. Macro averages weigh every class equally, which matters
for the imbalanced planes of FETAL_PLANES_DB.

A record also keeps every test image's label, prediction and patient
(:func:`per_image_predictions`), so the report can resample test patients (a paired bootstrap
over seeds and patients), and macro F1 on
each ultrasound machine's test images (:func:`per_machine_metrics`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from fetalbench.storage.digests import sha256_hex


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


CLASS_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
"""One character per class index in a record's predictions: tasks of up to 36 classes."""


def encode_classes(indices: np.ndarray) -> str:
    """Class indices as a string of one base-36 digit per image (``[0, 2, 1] -> "021"``)."""
    array = np.asarray(indices, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() >= len(CLASS_DIGITS)):
        raise ValueError(f"class indices must lie in [0, {len(CLASS_DIGITS)})")
    return "".join(CLASS_DIGITS[i] for i in array.tolist())


def decode_classes(text: str) -> np.ndarray:
    """The int64 class indices :func:`encode_classes` wrote."""
    return np.array([int(character, 36) for character in text], dtype=np.int64)


def encode_patients(patients: np.ndarray) -> str:
    """Patient ids as one string, separated by spaces (``[12, 12, 40] -> "12 12 40"``)."""
    texts = [str(patient) for patient in np.asarray(patients).tolist()]
    if any(not text or text.split() != [text] for text in texts):
        raise ValueError("patient ids must be non-empty and hold no whitespace")
    return " ".join(texts)


def decode_patients(text: str) -> np.ndarray:
    """The patient ids :func:`encode_patients` wrote, as strings."""
    return np.array(text.split(), dtype=object)


def per_image_predictions(
    labels: np.ndarray, predictions: np.ndarray, names: list[str], patients: np.ndarray
) -> dict:
    """A record's ``test_predictions``: every test image's label and prediction, one base-36
    digit each in the split's fixed order, its patient (:func:`encode_patients`: the report
    resamples patients, whose images are not independent), and ``order_sha256``, the sha256 of
    the images' names joined by newlines, so records are paired image by image only when their
    test sets match."""
    return {
        "labels": encode_classes(labels),
        "predicted": encode_classes(predictions),
        "patients": encode_patients(patients),
        "order_sha256": sha256_hex("\n".join(names).encode()),
    }


def per_machine_metrics(labels: np.ndarray, predictions: np.ndarray, machines: np.ndarray) -> dict:
    """Macro F1 and the number of test images of each ultrasound machine, by machine name.

    A machine's macro F1 averages over the classes among its test images (a machine that
    imaged no trans-ventricular plane is not scored zero on that class).
    """
    frame = pd.DataFrame({"label": labels, "predicted": predictions, "machine": machines})
    scores = {}
    for machine, group in frame.groupby("machine", sort=True):
        present = np.unique(group["label"].to_numpy()).tolist()
        scores[str(machine)] = {
            "macro_f1": float(f1_score(group["label"], group["predicted"], labels=present,
                                       average="macro", zero_division=0)),
            "n_test": len(group),
        }
    return scores


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
