"""Barlow Twins: Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", ICML 2021.

The cross-correlation matrix of the two views' embeddings is driven towards the identity.
Defaults: a 3-layer projector 8192-8192-8192 and off-diagonal weight lambda = 0.005 (the paper;
solo-learn keeps it). Here the projector is 1024 wide at ``quick`` and 4096 at ``paper``.
The loss is computed in float32 under mixed precision: in bf16 the batch normalisation and the
cross-correlation matrix keep 8 bits of mantissa, too few for the off-diagonal sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules import BarlowTwinsProjectionHead

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import Objective
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class BarlowTwinsSettings:
    projector_dim: int = 1024
    lambda_offdiagonal: float = 0.005


class BarlowTwins(Objective):
    paper = "Zbontar et al., ICML 2021"

    def __init__(self, backbone: GrayscaleBackbone, settings: BarlowTwinsSettings):
        super().__init__(backbone, settings)
        width = settings.projector_dim
        self.projection = BarlowTwinsProjectionHead(backbone.num_features, width, width)
        self.criterion = BarlowTwinsLoss(lambda_param=settings.lambda_offdiagonal)

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        z_a, z_b = (self.projection(self.backbone(view)) for view in (view_a, view_b))
        with torch.autocast(z_a.device.type, enabled=False):
            return self.criterion(z_a.float(), z_b.float())


register_two_stage(
    "barlow_twins",
    BarlowTwins,
    {"quick": BarlowTwinsSettings(), "paper": BarlowTwinsSettings(projector_dim=4096)},
)
