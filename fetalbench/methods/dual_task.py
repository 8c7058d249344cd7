"""Dual task: supervised and contrastive learning in one end-to-end stage.

The end-to-end strategy of Migliorelli et al., Computers in Biology and Medicine 174:108430
(2024): each step minimises the cross-entropy of a labelled batch plus ``contrastive_weight``
times SimCLR's NT-Xent loss (Chen et al., ICML 2020) on two views of a batch from the unlabelled
pool (every training image of the task), through one shared backbone. Model selection is on
validation macro F1, as for every method. Defaults: the SimCLR head and temperature of
:mod:`fetalbench.methods.simclr`; contrastive weight 1.0 (equal balance of the two losses).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset

from fetalbench.augment import STRONG, UltrasoundAugment
from fetalbench.backbones import create_backbone
from fetalbench.engine import SupervisedModule, batches, fit_module, to_float
from fetalbench.methods.api import Classifier, MethodContext, MethodResult, register_method
from fetalbench.methods.simclr import SimCLR, SimCLRSettings
from fetalbench.profiles import Profile


@dataclass(frozen=True)
class DualTaskSettings:
    contrastive_weight: float = 1.0
    simclr: SimCLRSettings = field(default_factory=SimCLRSettings)


class DualTaskModule(SupervisedModule):
    """Cross-entropy on labelled batches plus weighted NT-Xent on unlabelled batches."""

    def __init__(self, classifier: Classifier, profile: Profile, settings: DualTaskSettings):
        super().__init__(classifier, profile, freeze_backbone=False)
        self.contrastive = SimCLR(classifier.backbone, settings.simclr)
        self.contrastive_weight = settings.contrastive_weight
        self.strong_augment = UltrasoundAugment(STRONG)

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        supervised = self.supervised_loss(batch["labelled"])
        (images,) = batch["unlabelled"]
        images = to_float(images, self.profile.channels_last)
        contrastive = self.contrastive.loss(
            self.strong_augment(images), self.strong_augment(images), 0.0
        )
        loss = supervised + self.contrastive_weight * contrastive
        self.log_dict({"train_loss": loss, "ce": supervised, "nt_xent": contrastive},
                      prog_bar=True)
        return loss


def train_dual_task(context: MethodContext, init: str) -> MethodResult:
    """One end-to-end stage of cross-entropy plus NT-Xent, the backbone initialised by ``init``."""
    settings = DualTaskSettings()
    pl.seed_everything(context.seed, workers=True, verbose=False)
    backbone = create_backbone(context.profile.backbone, init)
    classifier = Classifier(backbone, len(context.data.classes))
    module = DualTaskModule(classifier, context.profile, settings)
    unlabelled = batches(TensorDataset(context.data.unlabelled_images),
                         context.profile.batch_size, context.execution.world_size)
    notes = fit_module(context, module, {"unlabelled": unlabelled})
    return MethodResult(classifier, {"init": init, "weights": backbone.weights_source,
                                     "dual_task_settings": asdict(settings), **notes})


@register_method(
    "dual_task", "end-to-end cross-entropy + SimCLR NT-Xent (dual task); random init",
    protocols=("finetune",),
)
def dual_task(context: MethodContext) -> MethodResult:
    return train_dual_task(context, "random")


@register_method(
    "dual_task_imagenet", "end-to-end cross-entropy + SimCLR NT-Xent (dual task); ImageNet init",
    protocols=("finetune",),
)
def dual_task_imagenet(context: MethodContext) -> MethodResult:
    return train_dual_task(context, "imagenet")
