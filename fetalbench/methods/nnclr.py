"""NNCLR: Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive
Learning of Visual Representations", ICCV 2021.

SimCLR's positive is replaced by the nearest neighbour (by cosine) of the view's projection in a
support set (a queue of past projections), with a predictor on the other branch. Defaults:
projection 2048 hidden / 256 out, predictor 4096 hidden, support set of 98,304 (solo-learn:
65,536), temperature 0.1 (solo-learn: 0.2). Here: 512 hidden at ``quick``, 2048 at ``paper``;
temperature 0.2.

The support set is sized for the pool (:func:`nnclr_settings`): the largest power of two not
above the pool, capped at the paper's 98,304. The paper's support set holds 7.7% of ImageNet;
one larger than the pool would hold stale duplicates of every image, so that neighbours are
more and more often old copies of the query itself. Under DDP the support set is filled with the
projections of the whole global batch (gathered, as solo-learn does), so it is the same on every
process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead, NNMemoryBankModule

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import Objective, power_of_two_at_most
from fetalbench.methods.pretraining import register_two_stage
from fetalbench.profiles import Profile

PAPER_SUPPORT_SET = 98_304


@dataclass(frozen=True)
class NNCLRSettings:
    hidden_dim: int = 512
    output_dim: int = 256
    support_set: int = 1024
    temperature: float = 0.2


def nnclr_settings(profile: Profile, pool_size: int) -> NNCLRSettings:
    """NNCLR at ``profile`` on a pool of ``pool_size`` images: the support set is the largest
    power of two not above the pool (at most the paper's 98,304)."""
    return NNCLRSettings(
        hidden_dim=2048 if profile.name == "paper" else NNCLRSettings.hidden_dim,
        support_set=min(PAPER_SUPPORT_SET, power_of_two_at_most(pool_size)),
    )


class NNCLR(Objective):
    paper = "Dwibedi et al., ICCV 2021"
    version = 2

    def __init__(self, backbone: GrayscaleBackbone, settings: NNCLRSettings):
        super().__init__(backbone, settings)
        self.projection = NNCLRProjectionHead(
            backbone.num_features, settings.hidden_dim, settings.output_dim
        )
        self.prediction = NNCLRPredictionHead(
            settings.output_dim, settings.hidden_dim, settings.output_dim
        )
        self.support = NNMemoryBankModule(size=(settings.support_set, settings.output_dim))
        self.support.gather_distributed = True  # NNMemoryBankModule's constructor does not take it
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
    nnclr_settings,
)
