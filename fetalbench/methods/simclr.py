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

import math
from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import (
    ChanceLevel,
    Objective,
    pairs_per_process,
    per_process_note,
)
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

    def chance_level(self, batch_size: int) -> ChanceLevel:
        """``ln(2N-1)`` for N pairs.

        lightly's NT-Xent scores each of the 2N embeddings against 2N-1 candidates, the other
        view of its image (the positive) and both views of the N-1 other images, and takes the
        cross-entropy of the positive. Equal logits give ``ln(2N-1)``. Outputs independent of the
        pairing do no better in expectation: every candidate's expected similarity equals the
        positive's, and the log-sum-exp is convex (Jensen), so the expected loss is at least
        ``ln(2N-1)``; collapse reaches it exactly. Independent random embeddings in D dimensions
        sit above it by about ``1/(2Dτ²)``, the variance of their logits over two.

        N is the batch one process's loss sees: the criterion is built without
        ``gather_distributed``, so under DDP each of W processes contrasts its own N/W pairs
        (:func:`~fetalbench.methods.objective.pairs_per_process`).
        """
        pairs = pairs_per_process(batch_size)
        return ChanceLevel(
            math.log(2 * pairs - 1),
            f"ln(2N-1) = ln({2 * pairs - 1}): NT-Xent over N = {pairs} pairs"
            + per_process_note(pairs, batch_size),
        )


def simclr_settings(profile: Profile, _pool_size: int = 0) -> SimCLRSettings:
    """The projection head for ``profile``: the paper's 2048-wide hidden layer at ``paper``,
    512 at the CPU profiles (their backbone features are 1280-d and a few hundred steps)."""
    return SimCLRSettings(hidden_dim=2048) if profile.name == "paper" else SimCLRSettings()


register_two_stage(
    "simclr", SimCLR, simclr_settings
)
