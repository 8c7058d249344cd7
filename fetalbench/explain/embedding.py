"""How well the backbone's features separate the classes: silhouette, k-NN accuracy, t-SNE.

Migliorelli et al. (Computers in Biology and Medicine 174:108430, 2024) show t-SNE maps of the
learnt features next to their F1 tables; these numbers make that evidence comparable across runs:

- silhouette (Rousseeuw, J. Comput. Appl. Math. 20:53-65, 1987) of the L2-normalised test
  embeddings grouped by true class, cosine distance (scikit-learn ``silhouette_score``);
- k-NN accuracy: 5-fold stratified, patient-grouped, seeded cross-validation
  (``StratifiedGroupKFold``) of ``KNeighborsClassifier(k=5, cosine)`` within the test embeddings
  (the k-NN monitor of Wu et al., CVPR 2018, used by self-supervised learning papers), predictions
  pooled over folds. Folds keep each patient's images together: a patient's images are often one
  plane and look alike, so with ungrouped folds an embedding that merely recognises the patient
  would find its neighbours in the same patient's other images and score high;
- t-SNE (van der Maaten & Hinton, JMLR 9:2579-2605, 2008) coordinates for the figure, seeded,
  PCA-initialised.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.metrics import accuracy_score, silhouette_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

from fetalbench.methods.api import Classifier
from fetalbench.methods.engine import evaluating, to_float

KNN_NEIGHBOURS = 5
KNN_FOLDS = 5


@dataclass(frozen=True)
class EmbeddingScores:
    """Class separation of embeddings; None where the test set has fewer than two classes, and
    k-NN accuracy None too where it has fewer than two patients."""

    silhouette: float | None
    knn_accuracy: float | None


@torch.inference_mode()
def embed_images(
    classifier: Classifier, images: torch.Tensor, channels_last: bool, batch_size: int = 256,
    precision: str = "32-true",
) -> np.ndarray:
    """``classifier.embed`` of uint8 images ``[N, 1, H, W]`` as float32 ``[N, D]``, in
    evaluation mode on the training device in the profile's ``precision``
    (:func:`~fetalbench.methods.engine.evaluating`)."""
    with evaluating(classifier, precision) as device:
        parts = [
            classifier.embed(to_float(images[start : start + batch_size].to(device),
                                      channels_last))
            .float()
            .cpu()
            for start in range(0, len(images), batch_size)
        ]
    return torch.cat(parts).numpy()


def embedding_scores(
    embeddings: np.ndarray, labels: np.ndarray, patients: np.ndarray, seed: int
) -> EmbeddingScores:
    """Silhouette (cosine) and k-NN accuracy of ``embeddings`` by ``labels``, the k-NN accuracy
    cross-validated in folds that never split a patient (``patients``: one id per embedding)."""
    labels = np.asarray(labels)
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2 or len(labels) <= len(counts) or counts.max() < 2:
        return EmbeddingScores(None, None)
    unit = normalize(np.asarray(embeddings, dtype=np.float64))
    silhouette = float(silhouette_score(unit, labels, metric="cosine"))
    n_patients = len(np.unique(patients))
    if n_patients < 2:
        return EmbeddingScores(silhouette, None)
    folds = StratifiedGroupKFold(min(KNN_FOLDS, int(counts.max()), n_patients), shuffle=True,
                                 random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        # The greedy assignment of patients to folds can leave a fold without any.
        splits = [(train, test) for train, test in folds.split(unit, labels, patients)
                  if len(test)]
    smallest_train = min(len(train) for train, _ in splits)
    knn = KNeighborsClassifier(min(KNN_NEIGHBOURS, smallest_train), metric="cosine")
    predicted = cross_val_predict(knn, unit, labels, cv=splits)
    return EmbeddingScores(silhouette, float(accuracy_score(labels, predicted)))


def tsne_coordinates(embeddings: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE of the L2-normalised embeddings ``[N, 2]`` (seeded, ``init="pca"``)."""
    unit = normalize(np.asarray(embeddings, dtype=np.float64))
    perplexity = min(30.0, max(1.0, (len(unit) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(unit)
