"""MoCo v3: Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021.

A query encoder (backbone, projector, predictor) is contrasted against a momentum key encoder
(backbone, projector): each query's positive is the key of the other view of its image, its
negatives the keys of every other image, symmetrised over the two views (the paper's
Algorithm 1, :func:`mocov3_contrastive_loss`). There are no query-query or key-key negatives, as
there are in SimCLR's NT-Xent.

Heads as in the paper's appendix ("MLP heads"): a 3-layer projector and a 2-layer predictor,
4096 hidden and 256 out, BN on every hidden layer and on the projector's output (without
affine parameters, as ``_build_mlp`` in the authors' code; the predictor's output has no BN, as
their ResNet predictor). The authors' code uses the 3-layer projector for ViT and a 2-layer one
for ResNet-50; the paper describes the 3-layer one, which is kept here. Hidden layers are 512
wide at ``quick``, 4096 at ``paper``.

Temperature 0.2: the paper's ResNet-50 value, 1.0, goes with its batch of 4096 and LARS; its ViT
value and solo-learn's configs for ResNet-18 at batch 256 (CIFAR, ImageNet-100) are 0.2, closer
to the batches of 32 to 256 here. Momentum rises from 0.99 to 1 on a cosine schedule (the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.models.modules import BYOLPredictionHead
from lightly.models.modules.heads import ProjectionHead
from lightly.models.utils import concat_all_gather
from lightly.utils import dist
from torch import nn

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import (
    ChanceLevel,
    Objective,
    momentum_copy,
    momentum_step,
)
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class MoCoV3Settings:
    hidden_dim: int = 512
    output_dim: int = 256
    temperature: float = 0.2
    momentum_start: float = 0.99


def mocov3_contrastive_loss(
    query: torch.Tensor, key: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``ctr(q, k)`` of Chen, Xie and He (ICCV 2021, Algorithm 1): ``2τ · CE(q·kᵀ/τ, i)``.

    ``query`` and ``key`` (``[N, D]``) are L2-normalised; query ``i`` has key ``i`` as its
    positive and every other key as a negative. Under DDP the keys of every process are gathered
    first (no gradient flows through keys) and query ``i`` of rank ``r`` is labelled
    ``i + N·r``, as in the authors' code, so the negatives are those of the global batch.
    """
    query = F.normalize(query, dim=1)
    key = F.normalize(key, dim=1)
    if dist.world_size() > 1:
        key = concat_all_gather(key.contiguous())
    logits = query @ key.t() / temperature
    labels = torch.arange(len(query), device=query.device) + len(query) * dist.rank()
    return F.cross_entropy(logits, labels) * (2 * temperature)


def projector(input_dim: int, hidden_dim: int, output_dim: int) -> ProjectionHead:
    """MoCo v3's 3-layer projection MLP (``_build_mlp(3, ...)`` of the authors' code)."""
    return ProjectionHead([
        (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()),
        (hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()),
        (hidden_dim, output_dim, nn.BatchNorm1d(output_dim, affine=False), None),
    ])


class MoCoV3(Objective):
    paper = "Chen, Xie and He, ICCV 2021"
    version = 2

    def __init__(self, backbone: GrayscaleBackbone, settings: MoCoV3Settings):
        super().__init__(backbone, settings)
        self.projection = projector(backbone.num_features, settings.hidden_dim,
                                    settings.output_dim)
        self.prediction = BYOLPredictionHead(
            settings.output_dim, settings.hidden_dim, settings.output_dim
        )
        self.key_backbone = momentum_copy(backbone)
        self.key_projection = momentum_copy(self.projection)

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        start = self.settings.momentum_start
        momentum_step(self.backbone, self.key_backbone, progress, start)
        momentum_step(self.projection, self.key_projection, progress, start)
        query_a = self.prediction(self.projection(self.backbone(view_a)))
        query_b = self.prediction(self.projection(self.backbone(view_b)))
        with torch.no_grad():
            key_a = self.key_projection(self.key_backbone(view_a))
            key_b = self.key_projection(self.key_backbone(view_b))
        temperature = self.settings.temperature
        return (mocov3_contrastive_loss(query_a, key_b, temperature)
                + mocov3_contrastive_loss(query_b, key_a, temperature))

    def chance_level(self, batch_size: int) -> ChanceLevel:
        """``2 · 2τ · ln N`` for N pairs.

        Each direction is ``ctr(q, k) = 2τ · CE(q·kᵀ/τ)`` over the N keys of the global batch
        (:func:`mocov3_contrastive_loss` gathers the keys under DDP); equal logits make the
        cross-entropy ``ln N``, and queries independent of the keys do no better in expectation
        (every key's expected similarity equals the positive's, and the log-sum-exp is convex).
        The loss sums the two directions (the paper's Algorithm 1), hence the factor 2.
        """
        tau = self.settings.temperature
        return ChanceLevel(
            4 * tau * math.log(batch_size),
            f"2 * 2tau * ln N = 4 * {tau:g} * ln({batch_size}): ctr(q, k) over N = {batch_size} "
            "keys, summed over the two directions",
        )


register_two_stage(
    "mocov3",
    MoCoV3,
    {"quick": MoCoV3Settings(), "paper": MoCoV3Settings(hidden_dim=4096)},
)
