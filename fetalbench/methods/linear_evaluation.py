"""The linear evaluation of a frozen encoder, with k-NN beside it.

Linear evaluation as Kolesnikov et al., "Revisiting Self-Supervised Visual Representation
Learning" (CVPR 2019), define it: an L2-regularised multinomial logistic regression (scikit-learn,
L-BFGS) on the frozen encoder's features of the labelled images, standardised with the labelled
images' mean and spread, its inverse regularisation strength ``C`` chosen from :data:`C_GRID` by
macro F1 on the validation carve-out (ties go to the smaller ``C``), never on the test set, and
then refitted at that ``C`` on the labelled and validation images together, as VTAB does after
its 800/200 selection (Zhai et al., "A Large-scale Study of Representation Learning with the
Visual Task Adaptation Benchmark", arXiv 1910.04867, 2019): the validation labels are consumed
either way (the report counts them, :mod:`fetalbench.report.label_efficiency`), and leaving them
out of the final fit wastes a fifth of the labels at 100%. Beside it, the weighted k-NN
classifier of Wu et al. (CVPR 2018), as DINO and solo-learn report it: each test image
classified by its 20 nearest images of the same labelled and validation images (cosine
similarity, temperature 0.07; :mod:`fetalbench.methods.probe`). Both read features cached once
per encoder and task (:mod:`fetalbench.methods.features`), so a run costs seconds once they
exist.

The phantom's calibration probe (:mod:`fetalbench.data.phantom.calibration`) is this evaluation
of ``supervised_imagenet``'s frozen encoder, on a run's split and cached features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from fetalbench.methods.probe import NEIGHBOURS, TEMPERATURE, knn_predict
from fetalbench.runs.learning import SUPERVISED, StageCheck, checked
from fetalbench.runs.metrics import macro_f1

C_GRID = tuple(10.0 ** exponent for exponent in range(-4, 3))
"""Inverse L2 strengths tried, 1e-4 to 100 by decades (Kolesnikov et al. search a grid of
weight decays on validation, then keep the best)."""
MAX_ITERATIONS = 2000


def fit_logistic(features: np.ndarray, labels: np.ndarray, c: float) -> Pipeline:
    """Standardised features, then an L2-regularised multinomial logistic regression of inverse
    strength ``c``, fitted on one BLAS thread (with two, the phantom's calibration moved in its
    third decimal)."""
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITERATIONS))
    with threadpool_limits(limits=1):
        return classifier.fit(features, labels)


def predict(classifier: Pipeline, features: np.ndarray) -> np.ndarray:
    """The classes ``classifier`` predicts, on one BLAS thread as it was fitted."""
    with threadpool_limits(limits=1):
        return classifier.predict(features)


@dataclass(frozen=True)
class LinearEvaluation:
    """A linear evaluation's outcome: test predictions of the logistic regression and of k-NN,
    the chosen ``c`` and the validation macro F1 of every ``c`` tried (:data:`C_GRID` order)."""

    predictions: np.ndarray
    knn_predictions: np.ndarray
    c: float
    validation_curve: tuple[float, ...]
    train_loss: float
    iterations: int

    @property
    def best_validation_macro_f1(self) -> float:
        return max(self.validation_curve)

    def check(self, n_classes: int) -> StageCheck:
        """The learning check of the logistic regression (:mod:`fetalbench.runs.learning`): its
        training cross-entropy against chance (``ln K``), the validation macro F1 of each ``c``
        as its validation curve."""
        return checked(
            name="linear evaluation", kind=SUPERVISED, steps=self.iterations,
            steps_run=self.iterations, loss_curve=(round(self.train_loss, 6),),
            final_loss=round(self.train_loss, 6), chance_loss=round(math.log(n_classes), 6),
            chance_rule=f"ln K, cross-entropy over K = {n_classes} classes",
            validation_curve=self.validation_curve,
        )

    def notes(self) -> dict:
        """What the record's ``method_notes`` say of it."""
        return {"protocol": "linear evaluation (Kolesnikov et al., CVPR 2019)",
                "c": self.c, "c_grid": list(C_GRID),
                "validation_curve": list(self.validation_curve),
                "best_validation_macro_f1": self.best_validation_macro_f1,
                "final_train_loss": self.train_loss, "iterations": self.iterations,
                "knn": {"k": NEIGHBOURS, "temperature": TEMPERATURE}}


def knn_classify(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray,
                 n_classes: int) -> np.ndarray:
    """Weighted k-NN predictions of ``queries`` from the labelled ``bank`` (features, not yet
    normalised)."""
    normalised = [F.normalize(torch.from_numpy(array).float(), dim=1) for array in (bank, queries)]
    return knn_predict(normalised[1], normalised[0], torch.from_numpy(bank_labels),
                       n_classes).numpy()


def linear_evaluation(features: np.ndarray, labels: np.ndarray, labelled: np.ndarray,
                      validation: np.ndarray, test: np.ndarray,
                      n_classes: int) -> LinearEvaluation:
    """The linear evaluation of ``features`` (one row per image; ``labelled``, ``validation``
    and ``test`` are positions into them): ``c`` chosen on validation, test predictions of the
    logistic regression refitted at it on the labelled and validation images, and of k-NN among
    them (see the module doc)."""
    curve = []
    for c in C_GRID:
        classifier = fit_logistic(features[labelled], labels[labelled], c)
        curve.append(round(macro_f1(labels[validation],
                                    predict(classifier, features[validation]), n_classes), 6))
    best = int(np.argmax(curve))
    consumed = np.concatenate([labelled, validation])
    chosen = fit_logistic(features[consumed], labels[consumed], C_GRID[best])
    with threadpool_limits(limits=1):
        probabilities = chosen.predict_proba(features[consumed])
    return LinearEvaluation(
        predictions=predict(chosen, features[test]),
        knn_predictions=knn_classify(features[consumed], labels[consumed], features[test],
                                     n_classes),
        c=C_GRID[best],
        validation_curve=tuple(curve),
        train_loss=float(log_loss(labels[consumed], probabilities,
                                  labels=np.arange(n_classes))),
        iterations=int(chosen[-1].n_iter_.max()),
    )
