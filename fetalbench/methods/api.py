"""The public interface of a method: what it receives, what it returns, how it is registered.

A method is a function ``train(context: MethodContext) -> MethodResult``. It receives the run's
spec, its profile and the task's data as tensors (labelled images, validation images, the
unlabelled pool; never the test set), and returns a classifier that maps images to logits plus
notes for the record. The runner evaluates that classifier on the test set and writes the record,
so every method is measured the same way. Register a method with
:func:`~fetalbench.methods.registry.register_method`::

    @register_method("my_method", "one line saying what it does")
    def my_method(context: MethodContext) -> MethodResult:
        classifier = Classifier(create_backbone(context.profile.backbone, "imagenet"),
                                len(context.data.classes))
        notes = fit_classifier(context, classifier)
        return MethodResult(classifier, notes)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.execution import SINGLE_PROCESS, Execution
from fetalbench.profiles import Profile
from fetalbench.runs.learning import StageCheck
from fetalbench.runs.spec import RunSpec


@dataclass(frozen=True)
class TaskData:
    """A task's images as uint8 tensors ``[N, 1, H, W]`` and integer labels; no test images.

    ``unlabelled_images`` is the pool self-supervised stages, the dual task and FixMatch learn
    from: every official training image of the task (``pool="task"``, as in the paper) or of the
    whole dataset (``pool="dataset"``) outside the validation carve-out, so no run trains on the
    images that select its model.

    ``probe_images`` and ``probe_labels`` are the task's training images outside the carve-out
    with *all* their labels, whatever the fraction: the labelled neighbours of the k-NN probe
    (:mod:`fetalbench.methods.probe`), which only checks whether a stage learned and decides
    nothing about the run's model. No method trains on them (``tests/test_methods.py`` audits
    what every method trains on); None when a caller builds data without them, and then a stage
    is not probed.
    """

    classes: tuple[str, ...]
    labelled_images: torch.Tensor
    labelled_labels: torch.Tensor
    validation_images: torch.Tensor
    validation_labels: torch.Tensor
    unlabelled_images: torch.Tensor
    probe_images: torch.Tensor | None = None
    probe_labels: torch.Tensor | None = None


@dataclass(frozen=True)
class MethodContext:
    """Everything a method receives: the run's spec, its data, a cache folder and a logger.

    The spec's fields are also read as attributes of the context (``context.seed``,
    ``context.profile``, ...). ``execution`` says on how many devices and nodes the run trains
    (Lightning DDP); pass it to :func:`~fetalbench.methods.engine.make_trainer` and the world
    size to :func:`~fetalbench.methods.engine.batches` (the engine's own helpers do).
    """

    spec: RunSpec
    data: TaskData
    cache_root: Path
    log: Callable[[str], None]
    execution: Execution = SINGLE_PROCESS
    checks: list[StageCheck] = field(default_factory=list)
    """The learning checks of the stages trained so far (:mod:`fetalbench.runs.learning`): the
    engine's helpers add one per stage they train, and the runner writes them into the record."""

    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def dataset_fingerprint(self) -> str:
        return self.spec.dataset_fingerprint

    @property
    def fraction(self) -> float:
        return self.spec.fraction

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    @property
    def pool(self) -> str:
        return self.spec.pool

    @property
    def profile(self) -> Profile:
        return self.spec.profile


class Classifier(nn.Module):
    """A backbone and a linear head; ``embed`` gives the features t-SNE and k-NN look at."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, n_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


@dataclass(frozen=True)
class FrozenEncoder:
    """What a method's ``encoder(context)`` returns for the linear evaluation: the frozen
    encoder (its ``weights`` say where they came from) and notes that go into the record."""

    encoder: GrayscaleBackbone
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodResult:
    """What a method returns: the trained classifier and notes that go into the record."""

    classifier: Classifier
    notes: dict = field(default_factory=dict)
