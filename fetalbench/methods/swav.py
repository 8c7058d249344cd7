"""SwAV: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020.

Each view predicts the other's assignment to learnable prototypes, the assignments balanced by
Sinkhorn-Knopp. Defaults: projection 2048 hidden / 128 out, 3,000 prototypes, temperature 0.1,
3 Sinkhorn iterations with epsilon 0.05, prototypes frozen for the first epoch. Two views only
(no multi-crop). Here: 512 hidden and 256 prototypes at ``quick`` (a phantom pool has a few
thousand images), the paper's sizes at ``paper``; prototypes frozen for the first 5% of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

from fetalbench.backbones import GrayscaleBackbone
from fetalbench.methods.objective import Objective
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class SwAVSettings:
    hidden_dim: int = 512
    output_dim: int = 128
    prototypes: int = 256
    temperature: float = 0.1
    sinkhorn_iterations: int = 3
    sinkhorn_epsilon: float = 0.05
    frozen_prototypes: float = 0.05


class SwAV(Objective):
    paper = "Caron et al., NeurIPS 2020"

    def __init__(self, backbone: GrayscaleBackbone, settings: SwAVSettings):
        super().__init__(backbone, settings)
        self.projection = SwaVProjectionHead(
            backbone.num_features, settings.hidden_dim, settings.output_dim
        )
        self.prototypes = SwaVPrototypes(settings.output_dim, settings.prototypes)
        self.criterion = SwaVLoss(
            temperature=settings.temperature,
            sinkhorn_iterations=settings.sinkhorn_iterations,
            sinkhorn_epsilon=settings.sinkhorn_epsilon,
        )

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        self.prototypes.normalize()
        frozen = progress < self.settings.frozen_prototypes
        self.prototypes.requires_grad_(not frozen)
        scores = [
            self.prototypes(
                torch.nn.functional.normalize(self.projection(self.backbone(v)), dim=1)
            )
            for v in (view_a, view_b)
        ]
        return self.criterion(scores, [])


register_two_stage(
    "swav",
    SwAV,
    {"quick": SwAVSettings(), "paper": SwAVSettings(hidden_dim=2048, prototypes=3000)},
    "SwAV: swapped prediction of Sinkhorn-balanced prototype assignments",
)
