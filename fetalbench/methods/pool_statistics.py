"""The compute-matched control: ImageNet weights that see the pool as a two-stage method does,
without its objective, then the reference's fine-tuning.

A two-stage method gives fine-tuning more than its objective: its backbone has passed over the
task's unlabelled pool for the stage's whole budget, and its batch-norm statistics were estimated
on ultrasound images instead of ImageNet's. ``pool_statistics_imagenet`` gives the reference
exactly that and nothing else: the same steps over the same pool, in batches of the same size, two
strongly augmented views of each image as a self-supervised stage makes them, with the backbone in
training mode and no loss, so the batch-norm running statistics are re-estimated on the pool
(AdaBN: Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", ICLR
Workshop 2017) and no weight changes; then the same fine-tuning as every two-stage method. A
two-stage method that beats the reference but not this control gains from in-domain adaptation
and extra passes, not from what its objective learned.

The stage is cached and reused across label fractions like any pre-training stage
(:mod:`fetalbench.methods.pretraining`). It optimises nothing, so it has no loss and no learning
check of its own; the run's fine-tuning is checked as the reference's is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from fetalbench.methods.objective import ChanceLevel, Objective
from fetalbench.methods.pretraining import register_single_two_stage


@dataclass(frozen=True)
class PoolStatisticsSettings:
    """The views the pool is seen through (those of every self-supervised stage)."""

    views: int = 2


class PoolStatistics(Objective):
    """Forward passes over the pool in training mode: batch-norm statistics, no loss."""

    paper = "Li et al., ICLR Workshop 2017 (AdaBN)"
    optimised: ClassVar[bool] = False

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> None:
        with torch.no_grad():
            self.backbone(view_a)
            self.backbone(view_b)

    def chance_level(self, batch_size: int) -> ChanceLevel | None:
        """None: nothing is optimised."""
        return None


register_single_two_stage("pool_statistics_imagenet", "pool_statistics", PoolStatistics,
                          PoolStatisticsSettings(), "imagenet")
