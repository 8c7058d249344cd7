"""DINO: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021.

A student matches the centred, sharpened output distribution of a momentum teacher (self-
distillation with no labels). Defaults: head 2048 hidden, 256 bottleneck, 65,536 prototypes;
student temperature 0.1, teacher temperature warmed up from 0.04 to 0.07 over the first 30 of
100 epochs; centre momentum 0.9; the student's last layer frozen during the first epoch. Two
global views only (no multi-crop). Here the head is 512 hidden at ``quick`` and 2048 at
``paper``; the teacher warm-up is the first 30% of pre-training and the last layer is frozen for
the first 1% (1 of the same 100 epochs), its gradient dropped after each backward pass.

Teacher momentum rises to 1 on a cosine schedule from 0.99 at ``quick`` (solo-learn's value for
short runs) and from 0.9995 at ``paper``, whose batch is 256: the authors' code recommends 0.9995
for batches of 256 instead of the default 0.996 (``--momentum_teacher`` in ``main_dino.py``).
The loss (softmaxes, centring, the cross-entropy einsum) is computed in float32 under mixed
precision: lightly's cross-entropy is an einsum, which autocast would run in bf16.

The number of prototypes is sized for the pool (:func:`dino_settings`): the largest power of two
not above an eighth of the pool, capped at the paper's 65,536: 8 to 16 pool images per
prototype, near the ratios of the two reference configurations, which the rule gives back: 20
for the paper's 65,536 prototypes on ImageNet's 1.28 million images (the authors' code says large
values "work well" for "complex and large datasets") and 12 for solo-learn's 4,096 on CIFAR's
50,000. 65,536 prototypes for a pool of a few thousand images would leave most of them without
an image.

Measured: on the phantom ``brain`` pool at the ``quick`` profile (64 px, ImageNet init) the
loss stays at its chance level ``ln K`` (the record says *did not learn*). DINO bootstraps from
the agreement of its teacher's outputs on two views of one image, and there is almost none to
start from: the centred cosine of the ImageNet features of two strong views of one image is
0.05 against 0.01 for two different images (0.14 for light views). Under AdamW the bottleneck
outputs of all images turn to one direction within 30 steps (mean pairwise cosine 0.16 to
0.99, with the backbone frozen as well), which centring turns into uniform outputs; with the
authors' ResNet recipe (LARS, a batch-normalised head) they stay apart but the loss does not
leave ``ln K`` in 120 steps. Also tried, all at ``ln K``: 32 to 1,024 prototypes, the last layer
normalised or not, teacher temperature 0.01 to 0.04 fixed or warmed up to 0.07, teacher
momentum 0.99 and 0.996, learning rate 1e-3 and 1.25e-4; the light fine-tuning views instead of
the strong ones (3.435 to 3.443 over steps 96 to 168 of 240: below ``ln 32 = 3.466`` by less
than 1%), and with them the teacher's BatchNorm in evaluation mode (3.465).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import (
    ChanceLevel,
    Objective,
    momentum_copy,
    momentum_step,
    power_of_two_at_most,
)
from fetalbench.methods.pretraining import register_two_stage
from fetalbench.profiles import Profile

PAPER_PROTOTYPES = 65_536
POOL_IMAGES_PER_PROTOTYPE = 8


@dataclass(frozen=True)
class DINOSettings:
    hidden_dim: int = 512
    bottleneck_dim: int = 256
    output_dim: int = 1024
    student_temperature: float = 0.1
    teacher_temperature_start: float = 0.04
    teacher_temperature: float = 0.07
    teacher_warmup: float = 0.3
    center_momentum: float = 0.9
    momentum_start: float = 0.99
    frozen_last_layer: float = 0.01


def dino_settings(profile: Profile, pool_size: int) -> DINOSettings:
    """DINO at ``profile`` on a pool of ``pool_size`` images: the largest power of two not above
    an eighth of the pool as the number of prototypes (at most the paper's 65,536)."""
    prototypes = min(PAPER_PROTOTYPES,
                     power_of_two_at_most(pool_size // POOL_IMAGES_PER_PROTOTYPE))
    if profile.name == "paper":
        return DINOSettings(hidden_dim=2048, output_dim=prototypes, momentum_start=0.9995)
    return DINOSettings(output_dim=prototypes)


class DINO(Objective):
    paper = "Caron et al., ICCV 2021"
    version = 2

    def __init__(self, backbone: GrayscaleBackbone, settings: DINOSettings):
        super().__init__(backbone, settings)
        self.head = self.make_head(backbone.num_features, settings)
        self.teacher_backbone = momentum_copy(backbone)
        # weight-normalised layers cannot be deep-copied: build the teacher head, then copy
        self.teacher_head = self.make_head(backbone.num_features, settings)
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(
            output_dim=settings.output_dim,
            student_temp=settings.student_temperature,
            center_momentum=settings.center_momentum,
        )

    @staticmethod
    def make_head(input_dim: int, settings: DINOSettings) -> DINOProjectionHead:
        return DINOProjectionHead(
            input_dim, settings.hidden_dim, settings.bottleneck_dim, settings.output_dim
        )

    def teacher_temperature(self, progress: float) -> float:
        s = self.settings
        warm = min(1.0, progress / s.teacher_warmup) if s.teacher_warmup > 0 else 1.0
        return s.teacher_temperature_start + warm * (
            s.teacher_temperature - s.teacher_temperature_start
        )

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        start = self.settings.momentum_start
        momentum_step(self.backbone, self.teacher_backbone, progress, start)
        momentum_step(self.head, self.teacher_head, progress, start)
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone(v)) for v in (view_a, view_b)]
        student = [self.head(self.backbone(v)) for v in (view_a, view_b)]
        with torch.autocast(view_a.device.type, enabled=False):
            return self.criterion([t.float() for t in teacher], [s.float() for s in student],
                                  teacher_temp=self.teacher_temperature(progress))

    def chance_level(self, batch_size: int) -> ChanceLevel:
        """``ln K`` for K prototypes (``output_dim``), whatever the batch.

        lightly's loss is the mean, over the two cross-view pairs (teacher of one view, student
        of the other) and the batch, of the cross-entropy ``H(p_t, p_s) = -Σ_k p_t,k log
        p_s,k`` (the sum over pairs is divided by their number, 2, not summed). A uniform student
        gives ``ln K`` for any teacher. A student independent of the teacher does no better in
        expectation: ``E[H] = -Σ_k E[p_t,k] E[log p_s,k] ≥ -Σ_k t_k log s_k ≥ H(t)`` with t and
        s the mean outputs (Jensen, then Gibbs), and ``H(t) = ln K`` when the teacher's mean
        output is uniform, which its centring aims at. Collapse to a uniform output gives ``ln
        K``; only a teacher collapsed onto one prototype, which centring prevents, would let the
        loss fall to 0.
        """
        k = self.settings.output_dim
        return ChanceLevel(math.log(k), f"ln K = ln({k}): cross-entropy of a uniform student "
                                        f"over K = {k} prototypes")

    def after_backward(self, progress: float) -> None:
        """Drop the gradient of the student's last layer while it is frozen (DINO's
        ``cancel_gradients_last_layer``)."""
        if progress < self.settings.frozen_last_layer:
            for parameter in self.head.last_layer.parameters():
                parameter.grad = None


register_two_stage(
    "dino",
    DINO,
    dino_settings,
)
