"""NNCLR: Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive
Learning of Visual Representations", ICCV 2021.

SimCLR's positive is replaced by the nearest neighbour of the view's projection in a support set
(a queue of past projections), with a predictor on the other branch. Defaults: projection 2048
hidden / 256 out, predictor 4096 hidden, support set of 98,304 (solo-learn: 65,536),
temperature 0.1 (solo-learn: 0.2). Here: 512 hidden, a support set of 1,024 at ``quick`` (the
phantom pool is a few thousand images) and 65,536 at ``paper``; temperature 0.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead, NNMemoryBankModule

from fetalbench.backbones import GrayscaleBackbone
from fetalbench.methods.objective import Objective
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class NNCLRSettings:
    hidden_dim: int = 512
    output_dim: int = 256
    support_set: int = 1024
    temperature: float = 0.2


class NNCLR(Objective):
    paper = "Dwibedi et al., ICCV 2021"

    def __init__(self, backbone: GrayscaleBackbone, settings: NNCLRSettings):
        super().__init__(backbone, settings)
        self.projection = NNCLRProjectionHead(
            backbone.num_features, settings.hidden_dim, settings.output_dim
        )
        self.prediction = NNCLRPredictionHead(
            settings.output_dim, settings.hidden_dim, settings.output_dim
        )
        self.support = NNMemoryBankModule(size=(settings.support_set, settings.output_dim))
        self.criterion = NTXentLoss(temperature=settings.temperature)

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        z_a = self.projection(self.backbone(view_a))
        z_b = self.projection(self.backbone(view_b))
        p_a, p_b = self.prediction(z_a), self.prediction(z_b)
        neighbour_a = self.support(z_a.detach(), update=False)
        neighbour_b = self.support(z_b.detach(), update=True)
        return 0.5 * (self.criterion(neighbour_a, p_b) + self.criterion(neighbour_b, p_a))


register_two_stage(
    "nnclr",
    NNCLR,
    {"quick": NNCLRSettings(), "paper": NNCLRSettings(hidden_dim=2048, support_set=65536)},
    "NNCLR: nearest neighbours from a support set as positives",
)
