"""A k-NN probe of a backbone's features: the learning check of a stage that trains without
labels (:mod:`fetalbench.runs.learning`), and the k-NN classifier the linear evaluation reports
beside its logistic regression (:mod:`fetalbench.methods.linear_evaluation`).

The k-NN evaluation of Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (CVPR 2018), as DINO and solo-learn run it: each query image is classified by
its ``k`` most cosine-similar images of a labelled bank, which vote for their class with weight
``exp(similarity / temperature)``. The queries are the validation carve-out; the bank is the
task's training images outside it with all their labels, whatever the run's fraction, so a
pre-training stage (which does not depend on the fraction) has one probe. The carve-out is split
from the training images by patient, so no query has a frame of its own patient in the bank
(consecutive frames of one patient are near duplicates and would make any features look good).

The score is balanced accuracy (the mean of per-class recalls), whose value for any constant or
label-blind answer is ``1/K``. Plain accuracy is not used: on the phantom ``brain`` carve-out
(43/20/16 images) it scores the frozen ImageNet encoder 0.481, below the 0.544 of always
answering the majority class, and moved with the noise of a 79-image bank rather than with
the features (measured on the cached stages before this probe replaced it).

The probe reads labels no self-supervised stage trains on and decides nothing about the run's
model: it only tells whether a stage moved its backbone's features towards the classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fetalbench.methods.engine import evaluating, to_float

NEIGHBOURS = 20
TEMPERATURE = 0.07
PROBE = f"weighted {NEIGHBOURS}-NN (T={TEMPERATURE}) balanced accuracy, carve-out on training"
"""What the probe is; part of a pre-training stage's key, whose sidecar keeps the check."""


@torch.inference_mode()
def features(backbone: torch.nn.Module, images: torch.Tensor, channels_last: bool,
             precision: str, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised float32 features of uint8 images ``[N, 1, H, W]``, in evaluation mode."""
    with evaluating(backbone, precision) as device:
        parts = [backbone(to_float(images[start:start + batch_size].to(device), channels_last))
                 .float().cpu() for start in range(0, len(images), batch_size)]
    return F.normalize(torch.cat(parts), dim=1)


def knn_predict(queries: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
                n_classes: int, k: int = NEIGHBOURS,
                temperature: float = TEMPERATURE) -> torch.Tensor:
    """The weighted k-NN class of each normalised query among the normalised ``bank``."""
    similarity = queries @ bank.T
    top, index = similarity.topk(max(1, min(k, len(bank))), dim=1)
    votes = torch.zeros(len(queries), n_classes).scatter_add_(
        1, bank_labels[index], (top / temperature).exp())
    return votes.argmax(dim=1)


def balanced_accuracy(predicted: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    """The mean over the classes present in ``labels`` of the share of their images predicted
    right."""
    recalls = [(predicted[labels == c] == c).float().mean() for c in range(n_classes)
               if bool((labels == c).any())]
    return float(torch.stack(recalls).mean())


def probe_backbone(backbone: torch.nn.Module, queries: torch.Tensor, query_labels: torch.Tensor,
                   bank: torch.Tensor, bank_labels: torch.Tensor, n_classes: int,
                   channels_last: bool, precision: str) -> float:
    """The k-NN balanced accuracy of ``backbone`` on the labelled ``queries``, their neighbours
    taken from the labelled ``bank`` (see the module docstring), rounded to six decimals as
    records keep it."""
    predicted = knn_predict(features(backbone, queries, channels_last, precision),
                            features(backbone, bank, channels_last, precision),
                            bank_labels, n_classes)
    return round(balanced_accuracy(predicted, query_labels, n_classes), 6)
