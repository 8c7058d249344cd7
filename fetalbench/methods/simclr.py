"""SimCLR: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020.

Two views of each image are pulled together and pushed away from every other image of the batch
by the NT-Xent loss on a projection head. This is the method Migliorelli et al. (2024) study,
from random initialisation (``simclr``) and from ImageNet weights (``simclr_imagenet``).

Defaults: the paper uses a 2-layer MLP projection (2048 hidden, 128 out) and temperature 0.1-0.5
with batches of 4096; solo-learn's configs use temperature 0.2. Here: 128-d output and
temperature 0.2 at every profile; the hidden layer is 512 wide at ``quick`` and 2048 at ``paper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import Objective
from fetalbench.methods.pretraining import register_two_stage
from fetalbench.profiles import Profile


@dataclass(frozen=True)
class SimCLRSettings:
    hidden_dim: int = 512
    output_dim: int = 128
    temperature: float = 0.2


class SimCLR(Objective):
    paper = "Chen et al., ICML 2020"

    def __init__(self, backbone: GrayscaleBackbone, settings: SimCLRSettings):
        super().__init__(backbone, settings)
        self.projection = SimCLRProjectionHead(
            backbone.num_features, settings.hidden_dim, settings.output_dim
        )
        self.criterion = NTXentLoss(temperature=settings.temperature)

    def project(self, views: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(views))

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        return self.criterion(self.project(view_a), self.project(view_b))


def simclr_settings(profile: Profile, _pool_size: int = 0) -> SimCLRSettings:
    """The projection head for ``profile``: the paper's 2048-wide hidden layer at ``paper``,
    512 at the CPU profiles (their backbone features are 1280-d and a few hundred steps)."""
    return SimCLRSettings(hidden_dim=2048) if profile.name == "paper" else SimCLRSettings()


register_two_stage(
    "simclr", SimCLR, simclr_settings
)
