"""A k-NN probe of a backbone's features: the learning check of a stage that trains without
labels (:mod:`fetalbench.runs.learning`), and the k-NN classifier the linear evaluation reports
beside its logistic regression (:mod:`fetalbench.methods.linear_evaluation`).

Weighted k-nearest-neighbour classification on L2-normalised features, as the k-NN evaluation of
Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination" (CVPR 2018),
used by DINO and solo-learn: the ``k`` most cosine-similar images vote for their class with weight
``exp(similarity / temperature)``. It runs on the validation carve-out, leaving each image's own
patient out of its neighbours (consecutive frames of one patient are near duplicates, so a
patient's other images would make any features look good). It reads no label a method trains on
and decides nothing about the run's model: it only tells whether a stage moved its backbone's
features towards the classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fetalbench.methods.engine import evaluating, to_float

NEIGHBOURS = 20
TEMPERATURE = 0.07


@torch.inference_mode()
def features(backbone: torch.nn.Module, images: torch.Tensor, channels_last: bool,
             precision: str, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised float32 features of uint8 images ``[N, 1, H, W]``, in evaluation mode."""
    with evaluating(backbone, precision) as device:
        parts = [backbone(to_float(images[start:start + batch_size].to(device), channels_last))
                 .float().cpu() for start in range(0, len(images), batch_size)]
    return F.normalize(torch.cat(parts), dim=1)


def knn_predict(queries: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
                n_classes: int, excluded: torch.Tensor | None = None, k: int = NEIGHBOURS,
                temperature: float = TEMPERATURE) -> torch.Tensor:
    """The class weighted k-NN predicts for each of ``queries`` from the ``bank`` (both
    L2-normalised): the ``k`` most similar bank images vote with ``exp(similarity /
    temperature)``. ``excluded[i, j]`` True keeps bank image ``j`` out of query ``i``'s
    neighbours; a query left with no neighbour is predicted -1."""
    similarity = queries @ bank.T
    if excluded is not None:
        similarity = similarity.masked_fill(excluded, float("-inf"))
    k = max(1, min(k, len(bank_labels) - (excluded is not None)))
    top, index = similarity.topk(k, dim=1)
    weights = torch.where(torch.isfinite(top), (top / temperature).exp(), torch.zeros_like(top))
    votes = torch.zeros(len(queries), n_classes).scatter_add_(1, bank_labels[index], weights)
    return torch.where(votes.sum(dim=1) > 0, votes.argmax(dim=1), -1)


def knn_accuracy(embeddings: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor,
                 n_classes: int, k: int = NEIGHBOURS, temperature: float = TEMPERATURE) -> float:
    """Accuracy of weighted k-NN on ``embeddings`` (normalised), each image classified by the
    images of other groups (patients) only; an image with no other group counts as wrong."""
    own_group = groups[:, None] == groups[None, :]
    predicted = knn_predict(embeddings, embeddings, labels, n_classes, own_group, k, temperature)
    return float((predicted == labels).float().mean())


def probe_backbone(backbone: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   groups: torch.Tensor, n_classes: int, channels_last: bool,
                   precision: str) -> float:
    """The k-NN accuracy of ``backbone`` on the labelled ``images`` (grouped by ``groups``),
    rounded to six decimals as records keep it."""
    embedded = features(backbone, images, channels_last, precision)
    return round(knn_accuracy(embedded, labels, groups, n_classes), 6)
