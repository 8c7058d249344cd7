"""The interface of a self-supervised objective: a loss on two augmented views of one batch.

An objective owns the backbone being trained and whatever heads, momentum copies, memory banks or
prototypes its method needs (built from lightly's modules). The pre-training stage
(:mod:`fetalbench.methods.pretraining`) feeds it two views of each batch and the training
progress in [0, 1], for schedules such as BYOL's momentum or DINO's teacher temperature.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from fetalbench.methods.backbones import GrayscaleBackbone


class Objective(nn.Module):
    """Base class: subclasses set ``paper`` and implement :meth:`loss`.

    ``settings`` is a frozen dataclass of the method's hyperparameters; it is written into the
    record and into the key of the cached pre-training checkpoint. ``version`` is in that key
    too: bump it with any change to the objective's code that changes what it trains, so stages
    trained by the old code are not reused.
    """

    paper: ClassVar[str]
    version: ClassVar[int] = 1

    def __init__(self, backbone: GrayscaleBackbone, settings: object):
        super().__init__()
        self.backbone = backbone
        self.settings = settings

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        raise NotImplementedError

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
