"""RotNet: Gidaris, Singh and Komodakis, "Unsupervised Representation Learning by Predicting Image
Rotations", ICLR 2018.

Each unlabelled image is rotated by 0, 90, 180 or 270 degrees and the network learns to predict
which: a classifier can only tell the rotation if it recognises what the image shows and which
way up it belongs. The loss is the cross-entropy of a rotation head on the backbone's features;
its chance level (:meth:`RotNet.chance_level`) is ``ln 4``.

Here both augmented views of a batch are rotated. At ``quick`` each image gets one rotation and
every rotation gets a quarter of the batch; at ``paper`` every image appears in all four
rotations in the same batch, as the paper trains. The paper's head is the upper convolutional
blocks of a Network-In-Network; on a pooled feature vector a two-layer MLP plays that role
(``hidden_dim`` wide; 0 makes it linear).

A caveat for ultrasound: the transducer is always at the top, so the outline of the imaging sector
alone reveals the rotation; the task may be solved without looking at the anatomy inside it.
Whether the features still help is what the benchmark measures.

Registered, through :func:`fetalbench.api.register_two_stage`, as ``rotnet`` (random
initialisation) and ``rotnet_imagenet`` (ImageNet initialisation): rotation pre-training on the
unlabelled pool, cached and shared across label fractions, then fine-tuning or a linear probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fetalbench.api import GrayscaleBackbone, Objective, register_two_stage
from fetalbench.methods.objective import ChanceLevel
from torch import nn

ROTATIONS = 4


@dataclass(frozen=True)
class RotNetSettings:
    """The rotation head's hidden width (0: linear) and whether to use all four rotations."""

    hidden_dim: int = 512
    all_rotations: bool = False


def rotate_all(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image ``[B, C, H, W]`` in all four rotations, and each copy's rotation label."""
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(ROTATIONS)])
    labels = torch.arange(ROTATIONS, device=images.device).repeat_interleave(len(images))
    return rotated, labels


def rotate_balanced(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image in one rotation, drawn so that every rotation covers a quarter of the batch."""
    labels = torch.randperm(len(images), device=images.device) % ROTATIONS
    rotated = images.clone()
    for k in range(1, ROTATIONS):
        chosen = labels == k
        rotated[chosen] = torch.rot90(images[chosen], k, dims=(2, 3))
    return rotated, labels


def rotation_head(in_features: int, hidden_dim: int) -> nn.Module:
    """A linear layer (``hidden_dim=0``) or a two-layer MLP from features to four rotations."""
    if hidden_dim == 0:
        return nn.Linear(in_features, ROTATIONS)
    return nn.Sequential(
        nn.Linear(in_features, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, ROTATIONS),
    )


class RotNet(Objective):
    """Cross-entropy of predicting the rotation (0, 90, 180, 270 degrees) of each view."""

    paper = "Gidaris, Singh and Komodakis, ICLR 2018"

    def __init__(self, backbone: GrayscaleBackbone, settings: RotNetSettings):
        super().__init__(backbone, settings)
        self.head = rotation_head(backbone.num_features, settings.hidden_dim)

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        views = torch.cat([view_a, view_b])
        rotate = rotate_all if self.settings.all_rotations else rotate_balanced
        rotated, labels = rotate(views)
        return F.cross_entropy(self.head(self.backbone(rotated)), labels)

    def chance_level(self, batch_size: int) -> ChanceLevel:
        """``ln 4``, whatever the batch: the cross-entropy of a uniform prediction over the four
        rotations. The rotations are balanced in every batch (all four of each image, or a
        quarter of the images each), so a prediction that ignores the image does no better in
        expectation (Gibbs' inequality: the best such prediction is the rotations' frequencies,
        uniform). A loss clearly below it shows the rotation is recognised; on ultrasound perhaps
        from the sector's outline alone, which is why the k-NN probe is checked too."""
        return ChanceLevel(math.log(ROTATIONS),
                           f"ln 4: cross-entropy of a uniform prediction over {ROTATIONS} rotations")


register_two_stage(
    "rotnet",
    RotNet,
    {"quick": RotNetSettings(), "paper": RotNetSettings(hidden_dim=1024, all_rotations=True)},
    "RotNet rotation-prediction pre-training (plugin example)",
)
