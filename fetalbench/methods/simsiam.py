"""SimSiam: Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

A predictor on one branch regresses the other branch's projection under stop-gradient; no
negatives, no momentum encoder. Defaults: projector 2048-2048-2048, predictor bottleneck 512 (the
paper and solo-learn). Here the projector is 512 wide with a 128 bottleneck at ``quick``, the
paper's sizes at ``paper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import ChanceLevel, Objective
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class SimSiamSettings:
    projector_dim: int = 512
    predictor_hidden_dim: int = 128


class SimSiam(Objective):
    paper = "Chen and He, CVPR 2021"

    def __init__(self, backbone: GrayscaleBackbone, settings: SimSiamSettings):
        super().__init__(backbone, settings)
        width = settings.projector_dim
        self.projection = SimSiamProjectionHead(backbone.num_features, width, width)
        self.prediction = SimSiamPredictionHead(width, settings.predictor_hidden_dim, width)
        self.criterion = NegativeCosineSimilarity()

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        z_a = self.projection(self.backbone(view_a))
        z_b = self.projection(self.backbone(view_b))
        p_a, p_b = self.prediction(z_a), self.prediction(z_b)
        return 0.5 * (self.criterion(p_a, z_b.detach()) + self.criterion(p_b, z_a.detach()))

    def chance_level(self, batch_size: int) -> ChanceLevel:
        """0, whatever the batch.

        The loss is the negative cosine similarity between the prediction of one view and the
        (stop-gradient) projection of the other, averaged over the batch and the two directions.
        For outputs of the two views that are independent and centred (e.g. independent
        isotropic random vectors) the expected cosine is 0, so the expected loss is 0. It is no
        floor: collapse (every output the same vector) reaches the minimum, -1, with nothing
        learned. For this objective a loss below 0 is needed but not enough: the k-NN probe, not
        the loss, decides whether the stage learned.
        """
        return ChanceLevel(0.0, "0: expected negative cosine of independent, centred outputs "
                                "(collapse reaches -1)")


register_two_stage(
    "simsiam",
    SimSiam,
    {
        "quick": SimSiamSettings(),
        "paper": SimSiamSettings(projector_dim=2048, predictor_hidden_dim=512),
    },
)
