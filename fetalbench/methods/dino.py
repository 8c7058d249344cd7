"""DINO: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021.

A student matches the centred, sharpened output distribution of a momentum teacher (self-
distillation with no labels). Defaults: head 2048 hidden, 256 bottleneck, 65,536 prototypes;
student temperature 0.1, teacher temperature warmed up from 0.04 to 0.07 over the first 30 of
100+ epochs; centre momentum 0.9; teacher momentum 0.996 to 1 (solo-learn: 0.99 for small runs).
Two global views only (no multi-crop). Here the head is 512 hidden / 1024 prototypes at ``quick``
and 2048 / 65,536 at ``paper``; the teacher warm-up is the first 30% of pre-training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad

from fetalbench.backbones import GrayscaleBackbone
from fetalbench.methods.objective import Objective, momentum_copy, momentum_step
from fetalbench.methods.pretraining import register_two_stage


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


class DINO(Objective):
    paper = "Caron et al., ICCV 2021"

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
        return self.criterion(teacher, student, teacher_temp=self.teacher_temperature(progress))


register_two_stage(
    "dino",
    DINO,
    {
        "quick": DINOSettings(),
        "paper": DINOSettings(hidden_dim=2048, output_dim=65536, momentum_start=0.996),
    },
    "DINO: self-distillation from a momentum teacher",
)
