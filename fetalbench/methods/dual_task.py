"""Dual task: supervised and contrastive learning in one end-to-end stage.

The end-to-end strategy of Migliorelli et al., Computers in Biology and Medicine 174:108430
(2024): one shared backbone carries a classification head and SimCLR's projection head (Chen et
al., ICML 2020), and each step minimises

    L = CE(labelled batch) + contrastive_weight * NT-Xent(two strong views of an unlabelled batch)

with one optimiser over the backbone and both heads.

Where the contrastive pairs come from, and why: each step draws its own batch of the profile's
pre-training batch size from the unlabelled pool (every training image of the task outside the
validation carve-out, so no image that selects the model is trained on), independently of the
labelled batch, and makes two strong views of each image (SimCLR's positives; the other images'
views are the negatives). The pool rather than the labelled batch: the paper's point is that
the contrastive task uses images without labels, and the labelled batch at a small fraction is
a handful of images, too few negatives for NT-Xent. The projection head and temperature are
SimCLR pre-training's at the same profile (:func:`fetalbench.methods.simclr.simclr_settings`), so
the contrastive half of the dual task sees what SimCLR pre-training sees. ``contrastive_weight``
is 1.0: the unweighted sum of the two losses, the joint objective as the paper describes it (it
gives no other weighting); it is a setting, recorded with the run, so another weight is another
run. The budget is fine-tuning's (the labelled set's passes), and model selection is on
validation macro F1, as for every method.

The two terms are recorded separately: each has its own learning check
(:mod:`fetalbench.runs.learning`): the cross-entropy against ``ln K``, NT-Xent against its chance
level ``ln(2N-1)`` with the k-NN probe of the backbone (:mod:`fetalbench.methods.probe`) before
training and at its last step (the step the loss curve ends on; the selected checkpoint can be
an early one, whose backbone the contrastive term has barely moved).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset

from fetalbench.methods.api import Classifier, MethodContext, MethodResult
from fetalbench.methods.augment import STRONG, UltrasoundAugment
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.engine import SupervisedModule, batches, fit_module, to_float
from fetalbench.methods.objective import ChanceLevel
from fetalbench.methods.pretraining import stage_probe
from fetalbench.methods.registry import register_init_pair
from fetalbench.methods.simclr import SimCLR, SimCLRSettings, simclr_settings
from fetalbench.profiles import Profile
from fetalbench.runs.learning import SELF_SUPERVISED, SUPERVISED


@dataclass(frozen=True)
class DualTaskSettings:
    """The weight of NT-Xent against cross-entropy, and SimCLR's head and temperature."""

    contrastive_weight: float
    simclr: SimCLRSettings


def dual_task_settings(profile: Profile) -> DualTaskSettings:
    """The dual task's settings at ``profile``: equal weights, SimCLR's head at that profile."""
    return DualTaskSettings(contrastive_weight=1.0, simclr=simclr_settings(profile))


class DualTaskModule(SupervisedModule):
    """Cross-entropy on labelled batches plus weighted NT-Xent on unlabelled batches; the
    optimiser (:meth:`SupervisedModule.configure_optimizers`) takes every trainable parameter
    of the module, the projection head's included."""

    def __init__(self, classifier: Classifier, profile: Profile, settings: DualTaskSettings):
        super().__init__(classifier, profile)
        self.contrastive = SimCLR(classifier.backbone, settings.simclr)
        self.contrastive_weight = settings.contrastive_weight
        self.strong_augment = UltrasoundAugment(STRONG)
        self.contrastive_pairs = 0

    stage_name = "dual task"

    def checked_terms(self) -> dict[str, tuple[str, str, ChanceLevel | None]]:
        """Both terms: the cross-entropy (supervised) and NT-Xent (self-supervised)."""
        (_, _, chance), = super().checked_terms().values()
        batch = self.contrastive_pairs
        return {"ce": ("dual task: cross-entropy", SUPERVISED, chance),
                "nt_xent": ("dual task: NT-Xent", SELF_SUPERVISED,
                            self.contrastive.chance_level(batch))}

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        supervised = self.supervised_loss(batch["labelled"])
        (images,) = batch["unlabelled"]
        self.contrastive_pairs = len(images) * self.trainer.world_size  # NT-Xent's global N
        images = to_float(images, self.profile.channels_last)
        contrastive = self.contrastive.loss(
            self.strong_augment(images), self.strong_augment(images), 0.0
        )
        loss = supervised + self.contrastive_weight * contrastive
        self.record_terms(ce=supervised, nt_xent=contrastive)
        return loss


def train_dual_task(context: MethodContext, init: str) -> MethodResult:
    """One end-to-end stage of cross-entropy plus NT-Xent, the backbone initialised by ``init``."""
    settings = dual_task_settings(context.profile)
    pl.seed_everything(context.seed, workers=True, verbose=False)
    backbone = create_backbone(context.profile.backbone, init)
    classifier = Classifier(backbone, len(context.data.classes))
    module = DualTaskModule(classifier, context.profile, settings)
    unlabelled = batches(TensorDataset(context.data.unlabelled_images),
                         context.profile.pretrain_batch_size, context.execution.world_size)
    notes = fit_module(context, module, {"unlabelled": unlabelled},
                       probe=stage_probe(context, backbone))
    return MethodResult(classifier, {"init": init, "weights": backbone.weights.source,
                                     "dual_task_settings": asdict(settings), **notes})


register_init_pair("dual_task", train_dual_task)
