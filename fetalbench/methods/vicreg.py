"""VICReg: Bardes et al., "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022.

Invariance between the views' embeddings, a variance hinge per dimension and a covariance
penalty. Defaults: expander 8192-8192-8192, weights 25 (invariance), 25 (variance), 1
(covariance), as in the paper and solo-learn. Here the expander is 1024 wide at ``quick`` and
4096 at ``paper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import Objective
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class VICRegSettings:
    expander_dim: int = 1024
    invariance_weight: float = 25.0
    variance_weight: float = 25.0
    covariance_weight: float = 1.0


class VICReg(Objective):
    paper = "Bardes et al., ICLR 2022"

    def __init__(self, backbone: GrayscaleBackbone, settings: VICRegSettings):
        super().__init__(backbone, settings)
        width = settings.expander_dim
        self.projection = VICRegProjectionHead(backbone.num_features, width, width)
        self.criterion = VICRegLoss(
            lambda_param=settings.invariance_weight,
            mu_param=settings.variance_weight,
            nu_param=settings.covariance_weight,
        )

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        return self.criterion(
            self.projection(self.backbone(view_a)), self.projection(self.backbone(view_b))
        )


register_two_stage(
    "vicreg",
    VICReg,
    {"quick": VICRegSettings(), "paper": VICRegSettings(expander_dim=4096)},
)
