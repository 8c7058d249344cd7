"""The k-NN probe of a stage's learning check: balanced accuracy of neighbours drawn from the
labelled training images, so label-blind features score 1/K however unbalanced the classes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fetalbench.methods.probe import balanced_accuracy, knn_predict, probe_backbone

CLASSES = 3


def clustered(labels: torch.Tensor, spread: float, generator: torch.Generator) -> torch.Tensor:
    """Normalised 8-d embeddings around one direction per class, ``spread`` of noise."""
    centres = torch.eye(CLASSES, 8)
    return F.normalize(centres[labels] + spread * torch.randn(len(labels), 8,
                                                              generator=generator), dim=1)


def unbalanced(n: int) -> torch.Tensor:
    """Labels 0, 1, 2 in proportions 4:1:1, as unbalanced as the phantom's brain classes."""
    return torch.tensor([0, 0, 0, 0, 1, 2]).repeat(n // 6)


def test_separated_classes_score_one_and_label_blind_features_score_chance() -> None:
    generator = torch.Generator().manual_seed(0)
    bank_labels, query_labels = unbalanced(300), unbalanced(60)
    separated = knn_predict(clustered(query_labels, 0.1, generator),
                            clustered(bank_labels, 0.1, generator), bank_labels, CLASSES)
    assert balanced_accuracy(separated, query_labels, CLASSES) == 1.0
    # features that carry nothing of the class: majority votes win, plain accuracy would be 4/6
    blind = knn_predict(F.normalize(torch.randn(60, 8, generator=generator), dim=1),
                        F.normalize(torch.randn(300, 8, generator=generator), dim=1),
                        bank_labels, CLASSES)
    assert (blind == query_labels).float().mean() > 0.5
    assert abs(balanced_accuracy(blind, query_labels, CLASSES) - 1 / CLASSES) < 0.15


def test_a_constant_answer_scores_one_over_k() -> None:
    labels = unbalanced(60)
    constant = torch.zeros_like(labels)
    assert balanced_accuracy(constant, labels, CLASSES) == pytest.approx(1 / CLASSES)


def test_the_probe_runs_a_backbone_on_uint8_images() -> None:
    class Quadrants(torch.nn.Module):  # a feature per quadrant: tells bright corners apart
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.scale * F.adaptive_avg_pool2d(images, 2).flatten(1) + 1e-3

    def images(labels: torch.Tensor) -> torch.Tensor:
        batch = torch.zeros(len(labels), 1, 8, 8, dtype=torch.uint8)
        for index, label in enumerate(labels.tolist()):
            row, column = divmod(label, 2)
            batch[index, 0, row * 4:(row + 1) * 4, column * 4:(column + 1) * 4] = 255
        return batch

    bank_labels, query_labels = unbalanced(60), unbalanced(12)
    score = probe_backbone(Quadrants(), images(query_labels), query_labels, images(bank_labels),
                           bank_labels, CLASSES, channels_last=False, precision="32-true")
    assert score == 1.0
