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
from fetalbench.methods.objective import (
    ChanceLevel,
    Objective,
    pairs_per_process,
    per_process_note,
)
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

    def chance_level(self, batch_size: int) -> ChanceLevel | None:
        """``D·N/(N-1) + λ·D(D-1)/(N-1)`` for N pairs and a projector output of D dimensions
        (None for N < 2, where the loss is undefined).

        lightly's loss standardises each dimension over the batch (``F.batch_norm`` in training
        mode: mean 0 and *biased* variance 1, eps 1e-5) and divides ``z_aᵀz_b`` by N, so
        ``c_ij`` is the cosine between the centred columns ``a_i`` and ``b_j`` (squared norm N
        each). When the views are independent, with independent rows, ``E[c_ij] = 0`` and
        ``E[c_ij²] = 1/(N-1)`` exactly, not 1/N: a centred column has only N-1 degrees of
        freedom (``E[a_n a_m] = -1/(N-1)`` for n ≠ m, so ``E[(a·b)²] = N + N/(N-1) =
        N²/(N-1)``). The invariance term ``Σ_i (1 - c_ii)²`` then has expectation ``D(1 +
        1/(N-1)) = D·N/(N-1)`` and the redundancy term ``λ Σ_{i≠j} c_ij²`` ``λ·D(D-1)/(N-1)``.
        Nothing is scaled further; the eps moves it by a relative 1e-5 for features of unit
        scale.

        Collapse (constant features, standardised to 0, so c = 0) gives D, below this: the k-NN
        probe decides whether the stage learned. N is the batch one process's loss sees: the
        criterion is built without ``gather_distributed``, so under DDP each of W processes
        computes it on its own N/W pairs.
        """
        pairs = pairs_per_process(batch_size)
        if pairs < 2:
            return None
        d, lam = self.settings.projector_dim, self.settings.lambda_offdiagonal
        loss = d * pairs / (pairs - 1) + lam * d * (d - 1) / (pairs - 1)
        return ChanceLevel(
            loss,
            f"D*N/(N-1) + lambda*D*(D-1)/(N-1) = {loss:.4g}: cross-correlation of independent "
            f"standardised features, D = {d}, lambda = {lam:g}, N = {pairs} pairs"
            + per_process_note(pairs, batch_size),
        )


register_two_stage(
    "barlow_twins",
    BarlowTwins,
    {"quick": BarlowTwinsSettings(), "paper": BarlowTwinsSettings(projector_dim=4096)},
)
