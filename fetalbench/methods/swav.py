"""SwAV: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020.

Each view predicts the other's assignment to learnable prototypes, the assignments balanced by
Sinkhorn-Knopp. Defaults: projection 2048 hidden / 128 out, 3,000 prototypes, temperature 0.1,
3 Sinkhorn iterations with epsilon 0.05. Two views only (no multi-crop). Here the projection is
512 hidden at ``quick`` and 2048 at ``paper``. Prototypes are a bias-free linear layer
renormalised every step, so scores are cosine similarities (the authors' ``prototypes =
nn.Linear(output_dim, nmb_prototypes, bias=False)``; lightly's ``SwaVPrototypes`` has a bias).

Schedule, from the authors' recipe for batches of 256 (``swav_200ep_bs256_pretrain.sh``: 200
epochs, the queue from epoch 15, prototypes frozen for 5,005 iterations, one epoch): the queue
starts after 7.5% of pre-training and the prototypes are frozen for the first 0.5%. Freezing
keeps the prototypes trainable, so DDP sees the same parameters on every step, and drops their
gradient after the backward pass (:meth:`SwAV.after_backward`), as the authors' code does.

Sizes for the pool (:func:`swav_settings`):

- **Queue.** The paper keeps a queue of 3,840 features, 15 batches of 256, when batches are small
  ("Working with small batches", Sec. 3.1), so that Sinkhorn partitions enough
  features. Here it holds 15 of the run's batches, as lightly's SwAV benchmark does
  (``n_batches_in_queue``), and no more than the pool less one batch, so that it holds no stale
  copy of an image of the current batch. Until the queue is full only its filled rows are used.
  Under DDP it holds the features of the whole global batch (gathered) and each process passes
  its share of it to the Sinkhorn iterations, which run over all processes (as the authors'
  ``distributed_sinkhorn``), so they see every queued feature once.
- **Prototypes.** The largest power of two not above an eighth of the pool, nor above the
  features Sinkhorn partitions (batch plus queue; the paper stores features "in the same range as
  the number of code vectors" because fewer cannot be partitioned equally), capped at the
  paper's 3,000. That gives back both reference configurations (3,000 on ImageNet, the paper;
  3,000 on CIFAR's 50,000 images, solo-learn) and keeps at least 8 pool images per prototype;
  the paper's ablation of the number of prototypes finds it matters little as long as
  there are enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import normalize_weight
from lightly.utils import dist
from torch import nn

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import ChanceLevel, Objective, power_of_two_at_most
from fetalbench.methods.pretraining import register_two_stage
from fetalbench.profiles import Profile

PAPER_PROTOTYPES = 3000
QUEUE_BATCHES = 15
POOL_IMAGES_PER_PROTOTYPE = 8


@dataclass(frozen=True)
class SwAVSettings:
    hidden_dim: int = 512
    output_dim: int = 128
    prototypes: int = 256
    temperature: float = 0.1
    sinkhorn_iterations: int = 3
    sinkhorn_epsilon: float = 0.05
    frozen_prototypes: float = 0.005
    queue: int = 0
    queue_start: float = 0.075


def swav_settings(profile: Profile, pool_size: int) -> SwAVSettings:
    """SwAV at ``profile`` on a pool of ``pool_size`` images: a queue of 15 batches (at most the
    pool less one batch) and prototypes sized by the pool and by batch plus queue."""
    batch = min(profile.pretrain_batch_size, pool_size)
    queue = batch * min(QUEUE_BATCHES, (pool_size - batch) // batch)
    prototypes = min(PAPER_PROTOTYPES, power_of_two_at_most(
        min(pool_size // POOL_IMAGES_PER_PROTOTYPE, batch + queue)))
    hidden_dim = 2048 if profile.name == "paper" else SwAVSettings.hidden_dim
    return SwAVSettings(hidden_dim=hidden_dim, prototypes=prototypes, queue=queue)


class SwAV(Objective):
    paper = "Caron et al., NeurIPS 2020"
    version = 2

    def __init__(self, backbone: GrayscaleBackbone, settings: SwAVSettings):
        super().__init__(backbone, settings)
        self.projection = SwaVProjectionHead(
            backbone.num_features, settings.hidden_dim, settings.output_dim
        )
        self.prototypes = nn.Linear(settings.output_dim, settings.prototypes, bias=False)
        self.queues = nn.ModuleList(
            MemoryBankModule((settings.queue, settings.output_dim), gather_distributed=True,
                             feature_dim_first=False)
            for _ in range(2 if settings.queue else 0)
        )
        self.queued = 0
        self.criterion = SwaVLoss(
            temperature=settings.temperature,
            sinkhorn_iterations=settings.sinkhorn_iterations,
            sinkhorn_epsilon=settings.sinkhorn_epsilon,
            sinkhorn_gather_distributed=True,
        )

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        normalize_weight(self.prototypes.weight)
        features = [F.normalize(self.projection(self.backbone(v)), dim=1)
                    for v in (view_a, view_b)]
        scores = [self.prototypes(f) for f in features]
        return self.criterion(scores, [], self.queued_scores(features, progress))

    def chance_level(self, batch_size: int) -> ChanceLevel:
        """``ln K`` for K prototypes, whatever the batch.

        lightly's SwaVLoss, for the two views here: for each view i, the codes q of its batch
        (Sinkhorn-Knopp over the batch and the queue; each image's code sums to 1 and the
        prototypes share the batch equally) are predicted from the other view's scores by the
        cross-entropy ``-Σ_k q_k log softmax(z/τ)_k``; each view's term is divided by the
        ``n_crops - 1 = 1`` other crops and the two are averaged (divided by the 2 views), not
        summed. Uniform scores give ``ln K``. Scores independent of the codes do no better in
        expectation (Jensen, then Gibbs, with the codes' mean uniform), and collapse cannot go
        below it either: Sinkhorn spreads identical scores evenly over the prototypes.
        """
        k = self.settings.prototypes
        return ChanceLevel(math.log(k), f"ln K = ln({k}): cross-entropy of uniform scores over "
                                        f"K = {k} prototypes, averaged over the two views")

    @torch.no_grad()
    def queued_scores(
        self, features: list[torch.Tensor], progress: float
    ) -> list[torch.Tensor] | None:
        """Prototype scores of the features queued from earlier batches, one tensor per view
        (this process's share under DDP), then this batch's features queued; None before the
        queue starts or while it is empty."""
        if not self.queues or progress < self.settings.queue_start:
            return None
        queued = [queue(f, update=True)[1] for queue, f in zip(self.queues, features, strict=True)]
        filled = self.queued
        self.queued = min(self.settings.queue, filled + len(features[0]) * dist.world_size())
        if filled == 0:
            return None
        share = slice(dist.rank(), filled, dist.world_size())
        return [self.prototypes(q[share]) for q in queued]

    def after_backward(self, progress: float) -> None:
        """Drop the prototypes' gradient while they are frozen (the authors' ``p.grad = None``
        for the first ``freeze_prototypes_niters`` iterations)."""
        if progress < self.settings.frozen_prototypes:
            self.prototypes.weight.grad = None


register_two_stage(
    "swav",
    SwAV,
    swav_settings,
)
