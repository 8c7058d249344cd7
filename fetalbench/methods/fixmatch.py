"""FixMatch: Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence", NeurIPS 2020; the baseline of the USB benchmark (Wang et al., NeurIPS 2022).

Semi-supervised fine-tuning: beside each labelled batch of ``B`` images, a batch of ``mu * B``
unlabelled images from the pool is seen twice. The prediction on a weakly augmented view becomes
a hard pseudo-label where its confidence reaches the threshold ``tau``, and the strongly augmented
view is trained towards it:

    L = CE(labelled batch) + lambda_u * mean over the unlabelled batch of
        1[max softmax(weak) >= tau] * CE(strong, argmax softmax(weak))

``fixmatch`` starts from random weights, ``fixmatch_imagenet`` from ImageNet weights, and
``simclr_imagenet_fixmatch`` from the SimCLR-from-ImageNet backbone of ``simclr_imagenet``, whose
cached pre-training stage it reuses (the same stage key: :func:`pretrain_backbone` with SimCLR's
name, settings and init).

Settings (:class:`FixMatchSettings`, recorded with every run as ``fixmatch_settings``):

- From the paper: ``tau = 0.95``, ``lambda_u = 1``, ``mu = 7``, hard pseudo-labels from the weak
  view with no gradient through them.
- ``mu`` is capped so that the unlabelled batch ``mu * B`` does not exceed the pool (the brain
  planes of one machine on the phantom are a pool of 180 images).
- Weak view: the ``LIGHT`` augmentation (the paper's flip and translation, here flip, crop and a
  small rotation, the views supervised fine-tuning trains on); strong view: ``STRONG`` (the
  paper's RandAugment and Cutout have no place in grayscale B-mode; ``STRONG`` is the
  ultrasound-specific strong augmentation every self-supervised method here uses).
- Optimisation is the profile's, as supervised fine-tuning's (AdamW, warm-up and cosine decay
  over the labelled set's budget, model selection on validation macro F1), not the paper's SGD
  with Nesterov momentum, learning rate 0.03 and ``cos(7 pi k / 16 K)`` decay over 2^20 steps:
  FixMatch then differs from ``supervised_*`` only by its unlabelled term, at the same budget.
- Evaluation, as published: validation, model selection and the test use an exponential moving
  average of the weights (the paper's "exponential moving average of model parameters", decay
  0.999 in the authors' code and USB). A decay of 0.999 averages over about a thousand steps,
  more than a CPU budget has, so the decay warms up with the step ``t`` as
  ``min(0.999, (1 + t) / (10 + t))`` (TensorFlow's ``ExponentialMovingAverage`` with
  ``num_updates``, timm's ``ModelEmaV3`` warm-up): the average spans a growing share of the
  steps taken, and reaches the paper's decay after about 9,000 steps. Batch-norm statistics
  are averaged the same way. The pseudo-labels come from the trained weights, as in the paper.
- The unlabelled pool holds no image of the validation carve-out (:mod:`fetalbench.data.splits`).
- The labelled and unlabelled batches pass through the network separately (USB's
  ``use_cat=False``) and the pseudo-labels are predicted in evaluation mode, as inference: the
  weak view then leaves the batch-norm statistics alone. When no pseudo-label reaches the
  threshold, the unlabelled term is exactly zero and the strong view is not computed. The
  unlabelled batches and their augmentations draw from their own seeded random streams. So the
  unlabelled branch changes nothing (weights, batch-norm statistics, or the labelled batches'
  random draws) unless a pseudo-label is confident: at ``tau = 1`` a FixMatch run is exactly
  supervised training (tests/test_fixmatch.py).

semilearn (USB, on PyPI) was read first and is not used: its FixMatch is an ``AlgorithmBase``
subclass driven by its own trainer and hooks, and importing any of its modules (its losses
included) imports the whole package, whose requirements include transformers, torchaudio,
wandb and aim. What would be reused is the masked cross-entropy (:func:`fixmatch_loss`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from fetalbench.methods.api import Classifier, MethodContext, MethodResult
from fetalbench.methods.augment import STRONG, UltrasoundAugment
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.engine import SupervisedModule, fit_module, to_float
from fetalbench.methods.pretraining import pretrain_backbone
from fetalbench.methods.registry import register_init_pair, register_method
from fetalbench.methods.simclr import SimCLR, simclr_settings
from fetalbench.profiles import Profile

PAPER = "Sohn et al., NeurIPS 2020"
AVERAGE_DECAY = 0.999
"""The decay of the evaluated weight average (the authors' code and USB)."""


@dataclass(frozen=True)
class FixMatchSettings:
    """FixMatch's settings for one run (see the module docstring for each choice)."""

    threshold: float
    unlabelled_weight: float
    ratio: int
    unlabelled_batch_size: int
    paper_ratio: int = 7
    weak_view: str = "light"
    strong_view: str = "strong"
    pseudo_labels: str = "hard, argmax of the weak view in evaluation mode, no gradient"
    optimiser: str = "the profile's: AdamW, warm-up and cosine decay over the labelled budget"
    evaluated: str = "moving average of the weights, decay min(0.999, (1 + t) / (10 + t))"


def fixmatch_settings(profile: Profile, pool_size: int) -> FixMatchSettings:
    """The paper's ``tau``, ``lambda_u`` and ``mu``, with ``mu`` capped so that ``mu * B``
    (``B`` the profile's labelled batch) fits in a pool of ``pool_size`` images."""
    paper_ratio = FixMatchSettings.paper_ratio
    ratio = max(1, min(paper_ratio, pool_size // profile.batch_size))
    return FixMatchSettings(threshold=0.95, unlabelled_weight=1.0, ratio=ratio,
                            unlabelled_batch_size=min(ratio * profile.batch_size, pool_size))


def fixmatch_loss(
    weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch's unlabelled loss and its mask: the cross-entropy of each strong view towards
    the weak view's argmax, kept where the weak view's softmax reaches ``threshold``, averaged
    over the whole unlabelled batch (the paper's ``1 / (mu B)``). No gradient reaches the weak
    logits."""
    confidence, pseudo_labels = weak_logits.detach().softmax(dim=1).max(dim=1)
    mask = confidence.ge(threshold).to(strong_logits.dtype)
    loss = F.cross_entropy(strong_logits, pseudo_labels, reduction="none") * mask
    return loss.mean(), mask


class PoolBatches:
    """Unlabelled batches from the pool: shuffled passes, a global batch at a time, from a
    generator of their own. Every DDP rank draws the same order and takes its share of each
    batch, so the global unlabelled batch is the same on any number of devices."""

    def __init__(self, pool: torch.Tensor, batch_size: int, seed: int):
        self.pool = pool
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)

    def next(self, rank: int, world_size: int) -> torch.Tensor:
        """The rank's uint8 images of the next unlabelled batch (on the CPU)."""
        if len(self._order) < self.batch_size:
            self._order = torch.randperm(len(self.pool), generator=self.generator)
        batch, self._order = self._order[:self.batch_size], self._order[self.batch_size:]
        return self.pool[batch[rank::world_size]]


def _stream_seed(*entropy: int) -> int:
    """A 63-bit seed from integers (numpy's ``SeedSequence``)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(2, np.uint64)[0] >> 1)


class FixMatchModule(SupervisedModule):
    """Supervised fine-tuning plus FixMatch's unlabelled term (the module docstring says how the
    unlabelled branch is kept from touching anything when no pseudo-label is confident)."""

    stage_name = "fixmatch"

    def __init__(self, classifier: Classifier, profile: Profile, settings: FixMatchSettings,
                 pool: torch.Tensor, seed: int):
        super().__init__(classifier, profile)
        self.settings = settings
        self.strong_augment = UltrasoundAugment(STRONG)
        self.pool_batches = PoolBatches(pool, settings.unlabelled_batch_size,
                                        _stream_seed(seed, 0xF1C, 0))
        self.seed = seed
        self.confident = 0
        self.seen = 0
        self.average = copy.deepcopy(classifier).requires_grad_(False)

    def evaluated_classifier(self) -> Classifier:
        """The moving average of the weights (see the module docstring)."""
        return self.average

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        """Move the average towards the weights of the step just taken."""
        step = self.global_step
        decay = min(AVERAGE_DECAY, (1 + step) / (10 + step))
        with torch.no_grad():
            for average, current in zip(self.average.state_dict().values(),
                                        self.classifier.state_dict().values(), strict=True):
                if average.dtype.is_floating_point:
                    average.lerp_(current, 1.0 - decay)
                else:
                    average.copy_(current)

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        supervised = self.supervised_loss(batch["labelled"])
        unlabelled, mask = self.unlabelled_loss()
        loss = supervised + self.settings.unlabelled_weight * unlabelled
        self.confident += int(mask.sum())
        self.seen += len(mask)
        self.record_terms(ce=supervised, unlabelled=unlabelled, mask=mask.mean())
        return loss

    def unlabelled_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The unlabelled term of this step and its mask, drawn from the step's own random
        stream (the global one is restored afterwards, so the labelled batches draw as in
        supervised training)."""
        rank, world_size = self.global_rank, self.trainer.world_size
        images = self.pool_batches.next(rank, world_size).to(self.device)
        images = to_float(images, self.profile.channels_last)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_stream_seed(self.seed, 0xF1C, 1, rank, self.global_step))
            weak = self.augment(images)
            strong = self.strong_augment(images)
        with torch.no_grad():
            self.classifier.eval()
            weak_logits = self.classifier(weak)
            self.classifier.train()
        confidence = weak_logits.softmax(dim=1).amax(dim=1)
        if not bool(confidence.ge(self.settings.threshold).any()):
            return weak_logits.new_zeros(()), torch.zeros_like(confidence)
        return fixmatch_loss(weak_logits, self.classifier(strong), self.settings.threshold)

    def pseudo_label_rate(self) -> float:
        """The share of unlabelled images (on this rank) whose pseudo-label was confident."""
        return self.confident / max(1, self.seen)


def fit_fixmatch(context: MethodContext, classifier: Classifier,
                 settings: FixMatchSettings) -> dict:
    """Fine-tune ``classifier`` with FixMatch (seeded as
    :func:`~fetalbench.methods.engine.fit_classifier` seeds supervised fine-tuning); notes for
    the record: the settings, the share of confident pseudo-labels and the selection's."""
    pl.seed_everything(context.seed, workers=True, verbose=False)
    module = FixMatchModule(classifier, context.profile, settings, context.data.unlabelled_images,
                            context.seed)
    notes = fit_module(context, module, {})
    return {"fixmatch_paper": PAPER, "fixmatch_settings": asdict(settings),
            "pseudo_label_rate": round(module.pseudo_label_rate(), 6), **notes}


def train_fixmatch(context: MethodContext, init: str,
                   settings: FixMatchSettings | None = None) -> MethodResult:
    """FixMatch fine-tuning of a backbone from ``init`` (the paper's settings unless
    ``settings`` are given)."""
    settings = settings or fixmatch_settings(context.profile, len(context.data.unlabelled_images))
    backbone = create_backbone(context.profile.backbone, init)
    classifier = Classifier(backbone, len(context.data.classes))
    notes = fit_fixmatch(context, classifier, settings)
    return MethodResult(classifier, {"init": init, "weights": backbone.weights.source, **notes})


register_init_pair("fixmatch", train_fixmatch)


@register_method("simclr_imagenet_fixmatch", pretrains=True)
def train_simclr_imagenet_fixmatch(context: MethodContext) -> MethodResult:
    """FixMatch fine-tuning of ``simclr_imagenet``'s pre-trained backbone (its cached stage)."""
    pool_size = len(context.data.unlabelled_images)
    simclr = simclr_settings(context.profile, pool_size)
    backbone, pretraining = pretrain_backbone(context, "simclr", SimCLR, simclr, "imagenet")
    # the head starts from the seed alone, as a two-stage method's does
    pl.seed_everything(context.seed, workers=True, verbose=False)
    classifier = Classifier(backbone, len(context.data.classes))
    notes = fit_fixmatch(context, classifier, fixmatch_settings(context.profile, pool_size))
    return MethodResult(classifier, {
        "init": "imagenet", "weights": backbone.weights.source, "objective": "simclr",
        "objective_paper": SimCLR.paper, "objective_settings": asdict(simclr),
        "pretraining": pretraining, **notes,
    })

