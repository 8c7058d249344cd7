"""The interface of a self-supervised objective: a loss on two augmented views of one batch.

An objective owns the backbone being trained and whatever heads, momentum copies, memory banks or
prototypes its method needs (built from lightly's modules). The pre-training stage
(:mod:`fetalbench.methods.pretraining`) feeds it two views of each batch and the training
progress in [0, 1], for schedules such as BYOL's momentum or DINO's teacher temperature.

Each built-in objective also states its chance level (:meth:`Objective.chance_level`): the loss
it gives when its two views carry no information about each other, which a stage that learned
must end clearly below.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils import dist
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from fetalbench.methods.backbones import GrayscaleBackbone


@dataclass(frozen=True)
class ChanceLevel:
    """The loss an objective gives when its two views carry no information about each other: the
    expected loss of one step when the network's outputs for the two views are independent
    (uniform softmaxes, independent random embeddings), computed from the objective's settings
    and the batch.

    For the contrastive and clustering objectives (SimCLR, MoCo v3, NNCLR, DINO, SwAV) it is also
    the lowest expected loss that outputs independent of the pairing can reach (Jensen's
    inequality; collapse reaches it, not below), so a loss clearly below it shows that the views'
    outputs agree more than chance would have them. For the others (BYOL and SimSiam's negative
    cosine, Barlow Twins, VICReg) a collapsed network ends below it too: a loss below the chance
    level is needed but not enough, and the k-NN probe decides whether the stage learned.

    ``rule`` says how ``loss`` was computed, in words and numbers a reader can redo, e.g.
    ``"ln(2N-1) = ln(127): NT-Xent over N = 64 pairs"``.
    """

    loss: float
    rule: str


class Objective(nn.Module):
    """Base class: subclasses set ``paper`` and implement :meth:`loss`.

    ``settings`` is a frozen dataclass of the method's hyperparameters; it is written into the
    record and into the key of the cached pre-training checkpoint. ``version`` is in that key
    too: bump it with any change to the objective's code that changes what it trains, so stages
    trained by the old code are not reused. ``optimised`` False marks an objective that only
    passes over the pool (its :meth:`loss` returns None and nothing is optimised: the control of
    :mod:`fetalbench.methods.pool_statistics`). ``pool_passes_scale`` sizes its stage.
    """

    paper: ClassVar[str]
    version: ClassVar[int] = 1
    optimised: ClassVar[bool] = True
    pool_passes_scale: ClassVar[float] = 1.0
    """How many times the profile's passes over the pool this objective's stage trains, within
    the profile's floor and ceiling on steps (:func:`~fetalbench.profiles.pretrain_steps`):
    above 1 only for an objective measured to be still improving at the profile's budget, with
    the measurement in its docstring."""

    def __init__(self, backbone: GrayscaleBackbone, settings: object):
        super().__init__()
        self.backbone = backbone
        self.settings = settings

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        raise NotImplementedError

    def chance_level(self, batch_size: int) -> ChanceLevel | None:
        """The loss this objective gives at chance (:class:`ChanceLevel`) on steps of
        ``batch_size`` images per view: the global batch, the pairs of one step over all
        processes. None when the objective cannot say.

        The base class returns None: an objective that does not implement it (a plugin's, say)
        is not judged by its loss, only by the k-NN probe. Every built-in objective overrides it,
        computed from its own settings and the batch, with the derivation in its docstring.
        """
        return None

    def after_backward(self, progress: float) -> None:
        """Called after each backward pass, before the optimiser step (and after DDP has
        reduced the gradients): the place to drop gradients of parameters frozen for part of
        training. Toggling ``requires_grad`` instead would break DDP, which expects a gradient
        for every parameter it was built with."""


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` for a momentum (teacher, target) network."""
    target = copy.deepcopy(module)
    deactivate_requires_grad(target)
    return target


def momentum_step(
    online: nn.Module, target: nn.Module, progress: float, start: float, end: float = 1.0
) -> None:
    """Move ``target`` towards ``online`` with a momentum rising from ``start`` to ``end``.

    The cosine schedule of Grill et al. (BYOL, NeurIPS 2020), computed by lightly.
    """
    momentum = cosine_schedule(round(progress * 1000), 1000, start, end)
    update_momentum(online, target, m=momentum)


def power_of_two_at_most(count: int) -> int:
    """The largest power of two not above ``count`` (1 for a count below 2): the unit in which
    support sets and prototype counts are sized for a pool."""
    return 1 << (max(1, count).bit_length() - 1)


def pairs_per_process(batch_size: int) -> int:
    """The pairs one process's loss sees of a global batch of ``batch_size``, for a lightly loss
    built without ``gather_distributed``: each of the W processes of a DDP run computes it on
    its own ``batch_size // W`` pairs (W from lightly's ``dist.world_size()``, 1 outside DDP)."""
    return max(1, batch_size // dist.world_size())


def per_process_note(pairs: int, batch_size: int) -> str:
    """What a chance level's rule says about the batch a per-process loss sees."""
    if pairs == batch_size:
        return ""
    return f" per process (global batch {batch_size} over {dist.world_size()} processes)"
