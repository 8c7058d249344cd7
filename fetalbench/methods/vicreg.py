"""VICReg: Bardes et al., "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022.

Invariance between the views' embeddings, a variance hinge per dimension and a covariance
penalty. Defaults: expander 8192-8192-8192, weights 25 (invariance), 25 (variance), 1
(covariance), as in the paper and solo-learn. Here the expander is 1024 wide at ``quick`` and
4096 at ``paper``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead

from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.objective import (
    ChanceLevel,
    Objective,
    pairs_per_process,
    per_process_note,
)
from fetalbench.methods.pretraining import register_two_stage


@dataclass(frozen=True)
class VICRegSettings:
    expander_dim: int = 1024
    invariance_weight: float = 25.0
    variance_weight: float = 25.0
    covariance_weight: float = 1.0


def expected_variance_hinge(samples: int) -> float:
    """``E[relu(1 - S)]`` for the sample standard deviation S (N-1 denominator, as
    ``Tensor.var``) of ``samples`` independent standard normal values.

    With ``k = samples - 1``, ``X = k·S²`` is chi-squared with k degrees of freedom, and
    ``E[(1 - sqrt(X/k))·1{X < k}] = P(k/2, k/2) - sqrt(2/k)·Γ((k+1)/2)/Γ(k/2)·P((k+1)/2, k/2)``
    with P the regularised lower incomplete gamma function (``x^{1/2}`` times the chi-squared
    density of k is a multiple of that of k+1). About ``1/sqrt(4πk)`` for large k.
    """
    from scipy.special import gammainc, gammaln

    k = samples - 1
    ratio = math.exp(gammaln((k + 1) / 2) - gammaln(k / 2))
    return float(gammainc(k / 2, k / 2) - math.sqrt(2 / k) * ratio * gammainc((k + 1) / 2, k / 2))


class VICReg(Objective):
    paper = "Bardes et al., ICLR 2022"

    def __init__(self, backbone: GrayscaleBackbone, settings: VICRegSettings):
        super().__init__(backbone, settings)
        width = settings.expander_dim
        self.projection = VICRegProjectionHead(backbone.num_features, width, width)
        self.criterion = VICRegLoss(
            lambda_param=settings.invariance_weight,
            mu_param=settings.variance_weight,
            nu_param=settings.covariance_weight,
        )

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, progress: float) -> torch.Tensor:
        return self.criterion(
            self.projection(self.backbone(view_a)), self.projection(self.backbone(view_b))
        )

    def chance_level(self, batch_size: int) -> ChanceLevel | None:
        """``2·lambda + mu·h(N) + 2·nu·(D-1)/(N-1)`` for N pairs, a D-dimensional expander
        output and embeddings of unit variance, the scale the variance term asks for (None for
        N < 2, where the loss is undefined).

        lightly's loss is ``lambda·mse(z_a, z_b) + mu·(v(z_a) + v(z_b))/2 + nu·(c(z_a) +
        c(z_b))``: the variance term is averaged over the two views, the covariance term summed.
        ``v`` is the mean over dimensions of ``relu(1 - sqrt(var + eps))`` with the unbiased
        variance, ``c`` the sum of the squared off-diagonal entries of the unbiased covariance
        matrix over D. For independent views of unit variance and equal means:

        - invariance: ``E[(a - b)²] = 2``, so ``2·lambda``;
        - variance: not 0 in a finite batch: about half of the dimensions have a sample standard
          deviation below 1, and ``E[relu(1 - S)] = h(N)`` (:func:`expected_variance_hinge`,
          for Gaussian features; 0.037 at N = 64), the same for both views; the eps (1e-4
          under the square root) lowers it by less than 1e-4, ignored;
        - covariance: an off-diagonal covariance of independent dimensions has ``E[C_ij²] =
          1/(N-1)`` (the centred columns have N-1 degrees of freedom), so each view gives
          ``(D-1)/(N-1)`` and the two together ``2·nu·(D-1)/(N-1)``.

        The loss is not scale-invariant, so this is no floor: independent outputs shrunk to a
        standard deviation s < 1 give about ``2·lambda·s² + mu·(1 - s)``, least at ``s =
        mu/(4·lambda)`` (about 21.9 at the paper's weights), and collapse gives ``mu·(1 -
        sqrt(eps))`` (24.75). A loss below the chance level is needed but not enough: the k-NN
        probe decides whether the stage learned. N is the batch one process's loss sees: the
        criterion is built without ``gather_distributed``, so under DDP the variance and
        covariance of each of W processes are of its own N/W pairs.
        """
        pairs = pairs_per_process(batch_size)
        if pairs < 2:
            return None
        s, d = self.settings, self.settings.expander_dim
        hinge = expected_variance_hinge(pairs)
        loss = (2 * s.invariance_weight + s.variance_weight * hinge
                + 2 * s.covariance_weight * (d - 1) / (pairs - 1))
        return ChanceLevel(
            loss,
            f"2*lambda + mu*h(N) + 2*nu*(D-1)/(N-1) = {loss:.4g}: independent unit-variance "
            f"Gaussian embeddings, lambda = {s.invariance_weight:g}, mu = {s.variance_weight:g}, "
            f"nu = {s.covariance_weight:g}, h(N) = {hinge:.4f}, D = {d}, N = {pairs} pairs"
            + per_process_note(pairs, batch_size),
        )


register_two_stage(
    "vicreg",
    VICReg,
    {"quick": VICRegSettings(), "paper": VICRegSettings(expander_dim=4096)},
)
