"""BYOL: Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
NeurIPS 2020.

An online network with a predictor regresses the projection of a momentum target network; no
negatives. Defaults: projection 4096 hidden / 256 out, predictor 4096 hidden, target momentum
rising from 0.99 (solo-learn; the paper's 0.996 is for 1000-epoch runs) to 1 on a cosine
schedule. Here the hidden layers are 512 wide at ``quick``, 4096 at ``paper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import ChanceLevel, Objective, momentum_copy, momentum_step
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class BYOLSettings:
    hidden_dim: int = 512
    output_dim: int = 256
    momentum_start: float = 0.99


class BYOL(Objective):
    paper = "Grill et al., NeurIPS 2020"

    def __init__(self, backbone: GrayscaleBackbone, settings: BYOLSettings):
        super().__init__(backbone, settings)
        self.projection = BYOLProjectionHead(
            backbone.num_features, settings.hidden_dim, settings.output_dim
        )
        self.prediction = BYOLPredictionHead(
            settings.output_dim, settings.hidden_dim, settings.output_dim
        )
        self.target_backbone = momentum_copy(backbone)
        self.target_projection = momentum_copy(self.projection)
        self.criterion = NegativeCosineSimilarity()

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        start = self.settings.momentum_start
        momentum_step(self.backbone, self.target_backbone, progress, start)
        momentum_step(self.projection, self.target_projection, progress, start)
        online_a = self.prediction(self.projection(self.backbone(view_a)))
        online_b = self.prediction(self.projection(self.backbone(view_b)))
        with torch.no_grad():
            target_a = self.target_projection(self.target_backbone(view_a))
            target_b = self.target_projection(self.target_backbone(view_b))
        return 0.5 * (self.criterion(online_a, target_b) + self.criterion(online_b, target_a))

    def chance_level(self, batch_size: int) -> ChanceLevel:
        """0, whatever the batch.

        The loss is the negative cosine similarity between the online network's prediction of
        one view and the target's projection of the other, averaged over the batch and the two
        directions. For outputs of the two views that are independent and centred (e.g.
        independent isotropic random vectors) the expected cosine is 0, so the expected loss is
        0. It is no floor: collapse (every output the same vector) reaches the minimum, -1, with
        nothing learned. For this objective a loss below 0 is needed but not enough: the k-NN
        probe, not the loss, decides whether the stage learned.
        """
        return ChanceLevel(0.0, "0: expected negative cosine of independent, centred outputs "
                                "(collapse reaches -1)")


register_two_stage(
    "byol",
    BYOL,
    {"quick": BYOLSettings(), "paper": BYOLSettings(hidden_dim=4096)},
)
