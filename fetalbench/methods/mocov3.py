"""MoCo v3: Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021.

A query encoder with projector and predictor is contrasted (InfoNCE over the batch) against a
momentum key encoder, symmetrised over the two views. Defaults: projector 4096 hidden / 256 out,
predictor 4096 hidden, temperature 0.2 (solo-learn; the paper uses 1.0 for ResNet-50 with its
batch of 4096), momentum rising from 0.99 to 1 on a cosine schedule. Here the hidden layers are
512 wide at ``quick`` and 4096 at ``paper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

from fetalbench.backbones import GrayscaleBackbone
from fetalbench.methods.objective import Objective, momentum_copy, momentum_step
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class MoCoV3Settings:
    hidden_dim: int = 512
    output_dim: int = 256
    temperature: float = 0.2
    momentum_start: float = 0.99


class MoCoV3(Objective):
    paper = "Chen, Xie and He, ICCV 2021"

    def __init__(self, backbone: GrayscaleBackbone, settings: MoCoV3Settings):
        super().__init__(backbone, settings)
        self.projection = BYOLProjectionHead(
            backbone.num_features, settings.hidden_dim, settings.output_dim
        )
        self.prediction = BYOLPredictionHead(
            settings.output_dim, settings.hidden_dim, settings.output_dim
        )
        self.key_backbone = momentum_copy(backbone)
        self.key_projection = momentum_copy(self.projection)
        self.criterion = NTXentLoss(temperature=settings.temperature)

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        start = self.settings.momentum_start
        momentum_step(self.backbone, self.key_backbone, progress, start)
        momentum_step(self.projection, self.key_projection, progress, start)
        query_a = self.prediction(self.projection(self.backbone(view_a)))
        query_b = self.prediction(self.projection(self.backbone(view_b)))
        with torch.no_grad():
            key_a = self.key_projection(self.key_backbone(view_a))
            key_b = self.key_projection(self.key_backbone(view_b))
        return 0.5 * (self.criterion(query_a, key_b) + self.criterion(query_b, key_a))


register_two_stage(
    "mocov3",
    MoCoV3,
    {"quick": MoCoV3Settings(), "paper": MoCoV3Settings(hidden_dim=4096)},
    "MoCo v3: contrast queries against a momentum key encoder",
)
