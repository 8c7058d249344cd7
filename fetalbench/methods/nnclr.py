"""NNCLR: Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive
Learning of Visual Representations", ICCV 2021.

The positive of a view's prediction is the nearest neighbour (by cosine) of the other view's
projection in a support set (a queue of past projections), contrasted against the predictions of
the other images of the batch (:func:`nnclr_loss`: the paper's loss, symmetrised over the two
views as its pseudo-code does). There are no negatives from the same view, as there are in
SimCLR's NT-Xent, which this module used up to version 2. Defaults: projection 2048 hidden / 256
out, predictor 4096 hidden, support set of 98,304 (solo-learn: 65,536), temperature 0.1
(solo-learn: 0.2). Here: 512 hidden at ``quick``, 2048 at ``paper``; temperature 0.2.

The support set is sized for the pool (:func:`nnclr_support_set`): the paper's share of the
pool, 98,304 of ImageNet's 1,281,167 training images (7.7%), in whole global batches, at least
one batch (the support set is a queue filled with one batch per step), at most the paper's
98,304. The share is what matters: an image appears once per pass, so a support set holding a
small share of the pool seldom holds a stale copy of the query's own image, and the neighbour
is another image, as the method intends (a pool of one or two batches is too small for that: one
batch is then a large share). A support set sized like the pool (the largest power of
two not above it, up to version 2: 256 of the brain task's ~386 images) held the query's own
projection from the previous pass most of the time, and its nearest neighbour was then that copy.
The stage trains twice the profile's passes over the pool (``pool_passes_scale``, within the
profile's ceiling on steps: 400 on that pool at ``quick``): at the
``quick`` profile's 60 passes (240 steps on the phantom ``brain`` pool, ImageNet init, seed 0)
its loss was still falling steadily, 4.19 to 3.48 against a chance level of 4.16, 0.16 of it in
the last three tenths, while SimCLR's had levelled off: its positives are neighbours found in a
support set that the stage itself fills and improves, so it starts slower than a method whose
positives are the two views (the paper trains 1,000 epochs, as SimCLR's does).

Under DDP the support set is filled with the projections of the whole global batch (gathered, as
solo-learn does), so it is the same on every process, and the predictions are gathered too, so
each neighbour is contrasted against the predictions of the global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead, NNMemoryBankModule
from lightly.utils import dist

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import ChanceLevel, Objective
from fetalbench.methods.pretraining import register_two_stage
from fetalbench.profiles import Profile

PAPER_SUPPORT_SET = 98_304
IMAGENET_IMAGES = 1_281_167
"""ImageNet's training images, the pool the paper's support set was sized for (7.7% of it)."""


@dataclass(frozen=True)
class NNCLRSettings:
    hidden_dim: int = 512
    output_dim: int = 256
    support_set: int = 1024
    temperature: float = 0.2


def nnclr_loss(
    neighbours: torch.Tensor, predictions: torch.Tensor, temperature: float
) -> torch.Tensor:
    """NNCLR's loss for one direction (Dwibedi et al., ICCV 2021, Sec. 3.2):
    ``-(1/N) Σ_i log( exp(NN(z_i, Q)·p_i⁺/τ) / Σ_k exp(NN(z_i, Q)·p_k⁺/τ) )``.

    ``neighbours`` (``[N, D]``) are the nearest neighbours ``NN(z_i, Q)`` of one view's
    projections in the support set Q, ``predictions`` the predictions ``p⁺`` of the other view;
    both are L2-normalised. It is a cross-entropy whose logits are ``NN(z) @ p⁺ᵀ / τ`` and whose
    targets are the diagonal: the only negatives are the other images' predictions of the other
    view (``L(nn, p)`` of the paper's pseudo-code, which symmetrises as ``L(NN1, p2)/2 +
    L(NN2, p1)/2``). Under DDP the predictions of every process are gathered first, keeping their
    gradient (lightly's ``dist.gather``, as solo-learn's ``nnclr_loss_func``), and neighbour
    ``i`` of rank ``r`` is labelled ``i + N·r``, so the negatives are those of the global batch.
    """
    neighbours = F.normalize(neighbours, dim=1)
    predictions = F.normalize(predictions, dim=1)
    if dist.world_size() > 1:
        predictions = torch.cat(dist.gather(predictions.contiguous()), dim=0)
    logits = neighbours @ predictions.t() / temperature
    labels = torch.arange(len(neighbours), device=neighbours.device) + len(neighbours) * dist.rank()
    return F.cross_entropy(logits, labels)


def nnclr_support_set(batch_size: int, pool_size: int) -> int:
    """The support set for steps of ``batch_size`` images on a pool of ``pool_size``.

    The whole number of batches nearest the paper's share of the pool (98,304 of 1,281,167,
    7.7%), at least one batch, at most the paper's 98,304. At least one batch because the
    support set is a queue filled with the global batch at every step; whole batches because
    lightly's queue, when a batch runs past its end, keeps only the rows that fit and drops the
    rest. The share gives back the paper's 98,304 on ImageNet (384 batches of 256).
    """
    batch = max(1, batch_size)
    nearest = (2 * PAPER_SUPPORT_SET * pool_size + IMAGENET_IMAGES * batch) // (
        2 * IMAGENET_IMAGES * batch)
    return batch * max(1, min(nearest, PAPER_SUPPORT_SET // batch))


def nnclr_settings(profile: Profile, pool_size: int) -> NNCLRSettings:
    """NNCLR at ``profile`` on a pool of ``pool_size`` images: the support set holds the paper's
    share of the pool in whole batches, at least one (:func:`nnclr_support_set`)."""
    batch = min(profile.pretrain_batch_size, pool_size)
    return NNCLRSettings(
        hidden_dim=2048 if profile.name == "paper" else NNCLRSettings.hidden_dim,
        support_set=nnclr_support_set(batch, pool_size),
    )


class NNCLR(Objective):
    paper = "Dwibedi et al., ICCV 2021"
    version = 3
    pool_passes_scale = 2.0

    def __init__(self, backbone: GrayscaleBackbone, settings: NNCLRSettings):
        super().__init__(backbone, settings)
        self.projection = NNCLRProjectionHead(
            backbone.num_features, settings.hidden_dim, settings.output_dim
        )
        self.prediction = NNCLRPredictionHead(
            settings.output_dim, settings.hidden_dim, settings.output_dim
        )
        self.support = NNMemoryBankModule(size=(settings.support_set, settings.output_dim))
        self.support.gather_distributed = True  # NNMemoryBankModule's constructor does not take it

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        z_a = self.projection(self.backbone(view_a))
        z_b = self.projection(self.backbone(view_b))
        p_a, p_b = self.prediction(z_a), self.prediction(z_b)
        neighbour_a = self.support(z_a.detach(), update=False)
        neighbour_b = self.support(z_b.detach(), update=True)
        temperature = self.settings.temperature
        return 0.5 * (nnclr_loss(neighbour_a, p_b, temperature)
                      + nnclr_loss(neighbour_b, p_a, temperature))

    def chance_level(self, batch_size: int) -> ChanceLevel:
        """``ln N`` for N pairs.

        Each direction of :func:`nnclr_loss` is a cross-entropy over the N predictions of the
        global batch (gathered under DDP); equal logits give ``ln N``, and neighbours independent
        of the predictions do no better in expectation (every prediction's expected similarity
        equals the positive's, and the log-sum-exp is convex). The two directions are averaged.
        """
        return ChanceLevel(math.log(batch_size),
                           f"ln N = ln({batch_size}): cross-entropy of each neighbour over the "
                           f"N = {batch_size} predictions of the other view")


register_two_stage(
    "nnclr",
    NNCLR,
    nnclr_settings,
)
