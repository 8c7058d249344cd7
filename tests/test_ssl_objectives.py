"""Each self-supervised objective does what its paper says, checked on tiny random tensors.

Momentum schedules, stop-gradients, DINO's centre, NNCLR's neighbours and loss, MoCo v3's loss and
heads, SwAV's frozen prototypes and queue, every objective's chance level against its loss on
independent outputs, and the rules that size support sets, prototypes and queues for the
unlabelled pool. A tiny convolutional backbone stands in for EfficientNet-Lite0: the
mechanisms under test live in the heads, banks and losses, not in the backbone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fetalbench.methods import objective as objective_module
from fetalbench.methods.barlow_twins import BarlowTwins, BarlowTwinsSettings
from fetalbench.methods.byol import BYOL, BYOLSettings
from fetalbench.methods.dino import DINO, DINOSettings, dino_settings
from fetalbench.methods.mocov3 import MoCoV3, MoCoV3Settings, mocov3_contrastive_loss
from fetalbench.methods.nnclr import (
    NNCLR,
    NNCLRSettings,
    nnclr_loss,
    nnclr_settings,
    nnclr_support_set,
)
from fetalbench.methods.objective import ChanceLevel, Objective
from fetalbench.methods.pretraining import PretrainModule
from fetalbench.methods.simclr import SimCLR, SimCLRSettings
from fetalbench.methods.simsiam import SimSiam, SimSiamSettings
from fetalbench.methods.swav import SwAV, SwAVSettings, swav_settings
from fetalbench.methods.vicreg import VICReg, VICRegSettings
from fetalbench.profiles import PROFILES

BATCH = 8
IMAGENET_POOL = 1_281_167
CIFAR_POOL = 50_000


class TinyBackbone(nn.Module):
    """A one-convolution stand-in for :class:`~fetalbench.methods.backbones.GrayscaleBackbone`."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, self.num_features, 3, stride=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images).mean(dim=(2, 3))


def views(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(BATCH, 1, 32, 32, generator=generator),
            torch.rand(BATCH, 1, 32, 32, generator=generator))


def build(objective_class: type[Objective], settings: object) -> Objective:
    torch.manual_seed(0)
    return objective_class(TinyBackbone(), settings)


def outputs_of(module: nn.Module) -> list[torch.Tensor]:
    """Every output ``module`` produces from now on, in order."""
    seen: list[torch.Tensor] = []
    module.register_forward_hook(lambda _module, _inputs, output: seen.append(output))
    return seen


def inputs_of(module: nn.Module) -> list[tuple]:
    """The positional arguments of every call of ``module`` from now on, in order."""
    seen: list[tuple] = []
    module.register_forward_hook(lambda _module, inputs, _output: seen.append(inputs))
    return seen


def state(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


# ---------------------------------------------------------------------------- momentum encoders

MOMENTUM_PAIRS: dict[str, tuple[Callable[[], Objective], list[tuple[str, str]]]] = {
    "byol": (lambda: build(BYOL, BYOLSettings(hidden_dim=32, output_dim=16)),
             [("backbone", "target_backbone"), ("projection", "target_projection")]),
    "mocov3": (lambda: build(MoCoV3, MoCoV3Settings(hidden_dim=32, output_dim=16)),
               [("backbone", "key_backbone"), ("projection", "key_projection")]),
    "dino": (lambda: build(DINO, DINOSettings(hidden_dim=32, bottleneck_dim=8, output_dim=16)),
             [("backbone", "teacher_backbone"), ("head", "teacher_head")]),
}


def moved_online(objective: Objective, pairs: list[tuple[str, str]]) -> None:
    """Shift every online parameter so that online and target differ."""
    with torch.no_grad():
        for online, _ in pairs:
            for p in getattr(objective, online).parameters():
                p.add_(torch.randn_like(p))


@pytest.mark.parametrize("method", MOMENTUM_PAIRS)
def test_the_target_moves_with_the_start_momentum_at_the_start(method: str) -> None:
    make, pairs = MOMENTUM_PAIRS[method]
    objective = make()
    moved_online(objective, pairs)
    online = {name: state(getattr(objective, name)) for name, _ in pairs}
    target = {name: state(getattr(objective, name)) for _, name in pairs}
    objective.loss(*views(), progress=0.0)
    m = objective.settings.momentum_start
    for online_name, target_name in pairs:
        after = state(getattr(objective, target_name))
        for new, old, source in zip(after, target[target_name], online[online_name], strict=True):
            torch.testing.assert_close(new, m * old + (1 - m) * source)


@pytest.mark.parametrize("method", MOMENTUM_PAIRS)
def test_the_target_stands_still_at_the_end(method: str) -> None:
    make, pairs = MOMENTUM_PAIRS[method]
    objective = make()
    moved_online(objective, pairs)
    target = {name: state(getattr(objective, name)) for _, name in pairs}
    objective.loss(*views(), progress=0.9999)
    for _, target_name in pairs:
        for new, old in zip(state(getattr(objective, target_name)), target[target_name],
                            strict=True):
            torch.testing.assert_close(new, old, rtol=0, atol=0)


# ------------------------------------------------------------------------------ stop-gradients

def test_byols_target_gets_no_gradient_and_is_not_optimised() -> None:
    objective = build(BYOL, BYOLSettings(hidden_dim=32, output_dim=16))
    targets = outputs_of(objective.target_projection)
    objective.loss(*views(), progress=0.5).backward()
    target = [*objective.target_backbone.parameters(), *objective.target_projection.parameters()]
    assert target and all(not p.requires_grad and p.grad is None for p in target)
    assert all(not t.requires_grad for t in targets)
    assert all(p.grad is not None for p in objective.backbone.parameters())
    optimizer = PretrainModule(objective, PROFILES["smoke"]).configure_optimizers()["optimizer"]
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in target}


class ConstantPrediction(nn.Module):
    """A predictor whose output does not depend on its input (a zero gradient flows back)."""

    def __init__(self, width: int):
        super().__init__()
        self.value = torch.linspace(-1, 1, width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.value.expand_as(z) + 0 * z


def test_simsiam_stops_the_gradient_of_the_other_branchs_projection() -> None:
    """With a constant predictor, the only path left into the backbone is through the regressed
    projections, which SimSiam detaches: the backbone's gradient is exactly zero."""
    settings = SimSiamSettings(projector_dim=16, predictor_hidden_dim=4)
    objective = build(SimSiam, settings)
    objective.loss(*views(), progress=0.5).backward()
    assert any(bool(p.grad.ne(0).any()) for p in objective.backbone.parameters())

    objective = build(SimSiam, settings)
    objective.prediction = ConstantPrediction(settings.projector_dim)
    objective.loss(*views(), progress=0.5).backward()
    for p in objective.backbone.parameters():
        assert p.grad is None or not bool(p.grad.ne(0).any())


# -------------------------------------------------------------------------------------- DINO

def test_dinos_centre_moves_towards_the_mean_of_the_teacher_outputs() -> None:
    settings = DINOSettings(hidden_dim=32, bottleneck_dim=8, output_dim=16, center_momentum=0.8)
    objective = build(DINO, settings)
    teacher = outputs_of(objective.teacher_head)
    old = torch.randn_like(objective.criterion.center)
    objective.criterion.center.copy_(old)
    objective.loss(*views(), progress=0.5)
    mean = torch.cat(teacher).mean(dim=0)
    torch.testing.assert_close(objective.criterion.center.flatten(), 0.8 * old.flatten()
                               + 0.2 * mean)


def test_dinos_last_layer_gets_no_gradient_while_frozen() -> None:
    objective = build(DINO, DINOSettings(hidden_dim=32, bottleneck_dim=8, output_dim=16,
                                         frozen_last_layer=0.5))
    last = objective.head.last_layer.weight_v
    for progress, frozen in ((0.1, True), (0.6, False)):
        objective.zero_grad(set_to_none=True)
        objective.loss(*views(), progress=progress).backward()
        objective.after_backward(progress)
        assert (last.grad is None) is frozen
        assert last.requires_grad
        assert all(p.grad is not None for p in objective.backbone.parameters())


# ------------------------------------------------------------------------------------- NNCLR

def test_nnclrs_positives_are_the_nearest_rows_of_the_support_set() -> None:
    settings = NNCLRSettings(hidden_dim=32, output_dim=16, support_set=2 * BATCH)
    objective = build(NNCLR, settings)
    projections = outputs_of(objective.projection)
    neighbours = outputs_of(objective.support)
    for seed in (1, 2):  # two batches fill the support set with the second views' projections
        objective.loss(*views(seed), progress=0.5)
    bank = objective.support.bank.clone()
    torch.testing.assert_close(bank, torch.cat([projections[1], projections[3]]).detach())

    objective.loss(*views(3), progress=0.5)
    z_a, z_b = projections[4], projections[5]
    neighbour_a, neighbour_b = neighbours[-2:]
    for z, neighbour in ((z_a, neighbour_a), (z_b, neighbour_b)):
        nearest = (F.normalize(z, dim=1) @ F.normalize(bank, dim=1).t()).argmax(dim=1)
        torch.testing.assert_close(neighbour, bank[nearest], rtol=0, atol=0)


def nnclr_by_hand(neighbours: torch.Tensor, predictions: torch.Tensor, tau: float) -> float:
    """``-(1/N) Σ_i log softmax_k(NN_i·p_k/τ)_i`` with normalised rows, in Python floats."""
    nn_rows = [[x / math.sqrt(sum(y * y for y in row)) for x in row]
               for row in neighbours.tolist()]
    p_rows = [[x / math.sqrt(sum(y * y for y in row)) for x in row]
              for row in predictions.tolist()]
    total = 0.0
    for i, neighbour in enumerate(nn_rows):
        logits = [sum(a * b for a, b in zip(neighbour, p, strict=True)) / tau for p in p_rows]
        total -= logits[i] - math.log(sum(math.exp(logit) for logit in logits))
    return total / len(nn_rows)


def test_nnclr_loss_is_the_papers_cross_view_cross_entropy() -> None:
    """Only the other view's predictions are candidates: no negatives from the same view."""
    generator = torch.Generator().manual_seed(0)
    nn_a, p_b = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator)
    loss = nnclr_loss(nn_a, p_b, temperature=0.2)
    assert float(loss) == pytest.approx(nnclr_by_hand(nn_a, p_b, 0.2), rel=1e-5)
    # two pairs written out: (row 0) -log(e^{1/τ} / (e^{1/τ} + e^0)), (row 1) the same
    two = nnclr_loss(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[3.0, 0.0], [0.0, 1.0]]),
                     temperature=0.5)
    assert float(two) == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)


def test_nnclr_objective_symmetrises_neighbours_against_the_other_views_predictions() -> None:
    settings = NNCLRSettings(hidden_dim=32, output_dim=16, support_set=2 * BATCH,
                             temperature=0.5)
    objective = build(NNCLR, settings)
    predictions = outputs_of(objective.prediction)
    neighbours = outputs_of(objective.support)
    loss = objective.loss(*views(), progress=0.5)
    (p_a, p_b), (nn_a, nn_b) = predictions, neighbours
    expected = 0.5 * (nnclr_by_hand(nn_a, p_b, 0.5) + nnclr_by_hand(nn_b, p_a, 0.5))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------------- MoCo v3

def ctr_by_hand(q: torch.Tensor, k: torch.Tensor, tau: float) -> float:
    """``2τ · CE(q·kᵀ/τ, arange(N))`` written out with Python floats."""
    q = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in q.tolist()]
    k = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in k.tolist()]
    total = 0.0
    for i, query in enumerate(q):
        logits = [sum(a * b for a, b in zip(query, key, strict=True)) / tau for key in k]
        total -= logits[i] - math.log(sum(math.exp(logit) for logit in logits))
    return 2 * tau * total / len(q)


def test_mocov3_loss_is_2_tau_cross_entropy_of_queries_against_keys() -> None:
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator)
    loss = mocov3_contrastive_loss(q, k, temperature=0.2)
    assert float(loss) == pytest.approx(ctr_by_hand(q, k, 0.2), rel=1e-5)


def test_mocov3_objective_symmetrises_predicted_queries_against_momentum_keys() -> None:
    settings = MoCoV3Settings(hidden_dim=32, output_dim=16, temperature=0.5)
    objective = build(MoCoV3, settings)
    queries = outputs_of(objective.prediction)
    keys = outputs_of(objective.key_projection)
    loss = objective.loss(*views(), progress=0.5)
    (q_a, q_b), (k_a, k_b) = queries, keys
    expected = ctr_by_hand(q_a, k_b, 0.5) + ctr_by_hand(q_b, k_a, 0.5)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_mocov3_heads_are_the_papers() -> None:
    objective = build(MoCoV3, MoCoV3Settings(hidden_dim=32, output_dim=16))
    projector = list(objective.projection.modules())
    linear = [m for m in projector if isinstance(m, nn.Linear)]
    norms = [m for m in projector if isinstance(m, nn.BatchNorm1d)]
    assert len(linear) == 3
    assert [m.num_features for m in norms] == [32, 32, 16]  # hidden layers and the output
    assert isinstance(objective.projection.layers[-1], nn.BatchNorm1d)
    predictor = list(objective.prediction.modules())
    assert len([m for m in predictor if isinstance(m, nn.Linear)]) == 2
    assert [m.num_features for m in predictor if isinstance(m, nn.BatchNorm1d)] == [32]


# -------------------------------------------------------------------------------------- SwAV

SWAV = SwAVSettings(hidden_dim=32, output_dim=16, prototypes=4)


def test_swavs_prototypes_get_no_update_while_frozen_and_stay_trainable() -> None:
    objective = build(SwAV, SwAVSettings(**{**SWAV.__dict__, "frozen_prototypes": 0.5}))
    optimizer = torch.optim.AdamW(objective.parameters(), lr=0.1, weight_decay=0.1)
    prototypes = objective.prototypes.weight
    for progress, frozen in ((0.1, True), (0.6, False)):
        optimizer.zero_grad(set_to_none=True)
        objective.loss(*views(), progress=progress).backward()
        objective.after_backward(progress)
        assert prototypes.requires_grad  # DDP was built expecting its gradient
        assert (prototypes.grad is None) is frozen
        before = prototypes.detach().clone()
        optimizer.step()
        assert torch.equal(prototypes, before) is frozen


def test_swavs_queue_is_used_once_started() -> None:
    objective = build(SwAV, SwAVSettings(**{**SWAV.__dict__, "queue": 2 * BATCH,
                                             "queue_start": 0.5}))
    projections = outputs_of(objective.projection)
    criterion_inputs = inputs_of(objective.criterion)
    objective.loss(*views(1), progress=0.2)
    objective.loss(*views(2), progress=0.5)  # starts filling the queue, which is still empty
    assert [inputs[2] for inputs in criterion_inputs] == [None, None]
    assert objective.queued == BATCH

    objective.loss(*views(3), progress=0.6)
    queued = criterion_inputs[-1][2]
    assert queued is not None
    previous = [F.normalize(z, dim=1) for z in projections[2:4]]  # the second call's views
    for scores, features in zip(queued, previous, strict=True):
        torch.testing.assert_close(scores, objective.prototypes(features).detach())


# ------------------------------------------------------------------------------ sizing rules

QUICK, PAPER = PROFILES["quick"], PROFILES["paper"]
PAPER_SHARE = 98_304 / IMAGENET_POOL
"""NNCLR's support set in the paper: 98,304 entries for ImageNet's training images (7.7%)."""


@pytest.mark.parametrize("pool", [24, 300, 7000, 12_400])
@pytest.mark.parametrize("profile", [QUICK, PAPER], ids=["quick", "paper"])
def test_sizes_follow_the_pool(pool: int, profile) -> None:
    batch = min(profile.pretrain_batch_size, pool)
    support = nnclr_settings(profile, pool).support_set
    assert support == nnclr_support_set(batch, pool)
    assert support % batch == 0 and support >= batch  # whole batches, at least one
    assert support == batch or abs(support - PAPER_SHARE * pool) <= batch / 2
    assert dino_settings(profile, pool).output_dim <= pool // 8 < 2 * dino_settings(
        profile, pool).output_dim
    swav = swav_settings(profile, pool)
    assert swav.queue % batch == 0 and swav.queue + batch <= pool
    assert swav.queue <= 15 * batch
    assert swav.prototypes <= min(pool // 8, batch + swav.queue)


def test_sizes_give_back_the_reference_configurations() -> None:
    """ImageNet at the paper's batch of 256: the papers' sizes; CIFAR: solo-learn's."""
    assert nnclr_settings(PAPER, IMAGENET_POOL).support_set == 98_304
    assert dino_settings(PAPER, IMAGENET_POOL).output_dim == 65_536
    assert dino_settings(PAPER, CIFAR_POOL).output_dim == 4096
    imagenet = swav_settings(PAPER, IMAGENET_POOL)
    assert (imagenet.prototypes, imagenet.queue) == (3000, 3840)
    assert swav_settings(PAPER, CIFAR_POOL).prototypes == 3000


def test_a_small_pool_gets_small_sizes() -> None:
    assert nnclr_settings(QUICK, 300).support_set == QUICK.pretrain_batch_size  # one batch
    assert dino_settings(QUICK, 300).output_dim == 32
    swav = swav_settings(QUICK, 300)
    assert (swav.prototypes, swav.queue) == (32, 192)


@pytest.mark.parametrize(("batch", "pool", "support"), [
    (24, 24, 24),  # a pool smaller than a batch is one batch (of the whole pool)
    (64, 386, 64),  # the brain task: 7.7% is 30 images, less than the batch that fills the queue
    (64, 7000, 512),  # 537 images: 8 batches
    (64, 12_400, 960),  # 955 images: 15 batches
    (256, CIFAR_POOL, 3840),  # 3,837 images: 15 batches
    (256, IMAGENET_POOL, 98_304),  # the paper's 384 batches of 256
    (256, 10 * IMAGENET_POOL, 98_304),  # at most the paper's
    (4096, IMAGENET_POOL, 98_304),  # the paper's own batch: 24 batches
])
def test_nnclrs_support_set_is_the_papers_share_of_the_pool_in_whole_batches(
    batch: int, pool: int, support: int,
) -> None:
    assert nnclr_support_set(batch, pool) == support


# ------------------------------------------------------------------------------ chance levels
#
# Each objective's criterion (the loss function, not the network) fed outputs of the two views
# that are independent of each other, shaped as the objective makes them, against its stated
# chance level; and identical views, which every objective scores clearly below it.

PAIRS = 16
WIDE = 8192
"""Embedding width for the contrastive losses: random embeddings in D dimensions give logits of
variance 1/(Dτ²), which lifts the loss above its equal-logit chance level by about 1/(2Dτ²)
(0.0015 here), well inside the tolerance that still tells ln(2N-1) from ln(2N)."""


def mean_loss(loss: Callable[[], torch.Tensor], draws: int) -> float:
    torch.manual_seed(0)
    return sum(float(loss()) for _ in range(draws)) / draws


def embeddings(width: int = WIDE, pairs: int = PAIRS) -> torch.Tensor:
    return torch.randn(pairs, width)


def simclr_case(aligned: bool) -> tuple[Objective, Callable[[], torch.Tensor]]:
    objective = build(SimCLR, SimCLRSettings(hidden_dim=32, output_dim=16))

    def loss() -> torch.Tensor:
        z_a = embeddings()
        return objective.criterion(z_a, z_a if aligned else embeddings())
    return objective, loss


def mocov3_case(aligned: bool) -> tuple[Objective, Callable[[], torch.Tensor]]:
    objective = build(MoCoV3, MoCoV3Settings(hidden_dim=32, output_dim=16))
    tau = objective.settings.temperature

    def loss() -> torch.Tensor:
        q_a, q_b = embeddings(), embeddings()
        k_a, k_b = (q_b, q_a) if aligned else (embeddings(), embeddings())
        return mocov3_contrastive_loss(q_a, k_b, tau) + mocov3_contrastive_loss(q_b, k_a, tau)
    return objective, loss


def nnclr_case(aligned: bool) -> tuple[Objective, Callable[[], torch.Tensor]]:
    objective = build(NNCLR, NNCLRSettings(hidden_dim=32, output_dim=16, support_set=PAIRS))
    tau = objective.settings.temperature

    def loss() -> torch.Tensor:
        nn_a, nn_b = embeddings(), embeddings()
        p_a, p_b = (nn_b, nn_a) if aligned else (embeddings(), embeddings())
        return 0.5 * (nnclr_loss(nn_a, p_b, tau) + nnclr_loss(nn_b, p_a, tau))
    return objective, loss


def cosine_case(objective_class: type[Objective], settings: object, aligned: bool,
                ) -> tuple[Objective, Callable[[], torch.Tensor]]:
    objective = build(objective_class, settings)

    def loss() -> torch.Tensor:
        online_a, online_b = embeddings(256), embeddings(256)
        target_a, target_b = (online_b, online_a) if aligned else (embeddings(256),
                                                                    embeddings(256))
        criterion = objective.criterion
        return 0.5 * (criterion(online_a, target_b) + criterion(online_b, target_a))
    return objective, loss


def dino_case(aligned: bool) -> tuple[Objective, Callable[[], torch.Tensor]]:
    """Independent: a random teacher, a uniform student. Aligned: one set of logits for both
    views, teacher and student."""
    objective = build(DINO, DINOSettings(hidden_dim=32, bottleneck_dim=8, output_dim=16))
    k = objective.settings.output_dim

    def loss() -> torch.Tensor:
        objective.criterion.center.zero_()
        if aligned:
            logits = torch.randn(PAIRS, k)
            return objective.criterion([logits, logits], [logits, logits], teacher_temp=0.04)
        teacher = [torch.randn(PAIRS, k), torch.randn(PAIRS, k)]
        student = [torch.zeros(PAIRS, k), torch.zeros(PAIRS, k)]
        return objective.criterion(teacher, student, teacher_temp=0.04)
    return objective, loss


def swav_case(aligned: bool) -> tuple[Objective, Callable[[], torch.Tensor]]:
    """Independent: uniform scores. Aligned: both views' scores those of one set of features."""
    objective = build(SwAV, SWAV)
    k = objective.settings.prototypes

    def loss() -> torch.Tensor:
        if not aligned:
            return objective.criterion([torch.zeros(PAIRS, k), torch.zeros(PAIRS, k)], [])
        scores = swav_scores(objective)
        return objective.criterion([scores, scores], [])
    return objective, loss


def swav_scores(objective: SwAV) -> torch.Tensor:
    """Prototype scores of random unit features, as the objective computes them."""
    with torch.no_grad():
        return objective.prototypes(F.normalize(embeddings(objective.settings.output_dim), dim=1))


def barlow_case(aligned: bool, pairs: int = PAIRS, width: int = 64,
                weight: float = 0.005) -> tuple[Objective, Callable[[], torch.Tensor]]:
    objective = build(BarlowTwins, BarlowTwinsSettings(projector_dim=width,
                                                       lambda_offdiagonal=weight))

    def loss() -> torch.Tensor:
        z_a = embeddings(width, pairs)
        return objective.criterion(z_a, z_a if aligned else embeddings(width, pairs))
    return objective, loss


def vicreg_case(aligned: bool, weights: tuple[float, float, float] = (25.0, 25.0, 1.0),
                ) -> tuple[Objective, Callable[[], torch.Tensor]]:
    invariance, variance, covariance = weights
    objective = build(VICReg, VICRegSettings(expander_dim=32, invariance_weight=invariance,
                                             variance_weight=variance,
                                             covariance_weight=covariance))

    def loss() -> torch.Tensor:
        z_a = embeddings(32)
        return objective.criterion(z_a, z_a if aligned else embeddings(32))
    return objective, loss


CHANCE_CASES: dict[str, tuple[Callable[[bool], tuple[Objective, Callable]], int, float, float,
                              int]] = {
    # name: (case, draws, absolute tolerance, relative tolerance, pairs)
    "simclr": (simclr_case, 64, 0.01, 0, PAIRS),  # ln(2N-1) = 3.434; ln(2N) would be 3.466
    "mocov3": (mocov3_case, 64, 0.01, 0, PAIRS),
    "nnclr": (nnclr_case, 64, 0.01, 0, PAIRS),  # ln N = 2.773; NT-Xent's ln(2N-1) would fail
    "byol": (lambda aligned: cosine_case(BYOL, BYOLSettings(hidden_dim=32, output_dim=16),
                                         aligned), 64, 0.02, 0, PAIRS),
    "simsiam": (lambda aligned: cosine_case(SimSiam, SimSiamSettings(projector_dim=16,
                                                                     predictor_hidden_dim=4),
                                            aligned), 64, 0.02, 0, PAIRS),
    "dino": (dino_case, 4, 1e-5, 0, PAIRS),  # exact: a uniform student gives ln K
    "swav": (swav_case, 1, 1e-5, 0, PAIRS),  # exact: uniform scores give ln K
    # N = 4 parts 1/(N-1) from 1/N clearly (92.1 against 85.0)
    "barlow_twins": (lambda aligned: barlow_case(aligned, pairs=4), 300, 0, 0.03, 4),
    "barlow_twins_16": (barlow_case, 300, 0, 0.02, PAIRS),
    # weight on the off-diagonal term, to check it on its own: 373 against 288 with 1/N
    "barlow_twins_offdiagonal": (lambda aligned: barlow_case(aligned, pairs=4, width=32,
                                                             weight=1.0), 300, 0, 0.03, 4),
    "vicreg": (vicreg_case, 300, 0, 0.02, PAIRS),
    # weight on the covariance term: 41.3 of 45.4, against 19.4 if only one view counted
    "vicreg_covariance": (lambda aligned: vicreg_case(aligned, (1.0, 25.0, 10.0)), 300, 0, 0.02,
                          PAIRS),
}


@pytest.mark.parametrize("name", CHANCE_CASES)
def test_independent_views_give_the_stated_chance_level(name: str) -> None:
    case, draws, absolute, relative, pairs = CHANCE_CASES[name]
    objective, loss = case(False)
    chance = objective.chance_level(pairs)
    assert isinstance(chance, ChanceLevel) and chance.rule
    assert mean_loss(loss, draws) == pytest.approx(chance.loss, abs=absolute, rel=relative)


FORMULA_VARIANTS = ("barlow_twins_offdiagonal", "vicreg_covariance")
"""Weights chosen to test one term of a formula; identical views leave that term as it is."""


@pytest.mark.parametrize("name", [name for name in CHANCE_CASES if name not in FORMULA_VARIANTS])
def test_identical_views_give_a_loss_clearly_below_chance(name: str) -> None:
    case, _, _, _, pairs = CHANCE_CASES[name]
    objective, loss = case(True)
    chance = objective.chance_level(pairs).loss
    assert mean_loss(loss, 2) < chance - max(0.2 * abs(chance), 0.5)


def test_dino_and_swav_outputs_independent_of_the_other_view_do_no_better_than_chance() -> None:
    """Their chance level is a floor (Jensen, then Gibbs): random independent outputs, as the
    objectives make them, score above it."""
    swav = build(SwAV, SWAV)
    swav_loss = mean_loss(lambda: swav.criterion([swav_scores(swav), swav_scores(swav)], []), 8)
    assert swav_loss > swav.chance_level(PAIRS).loss
    dino = build(DINO, DINOSettings(hidden_dim=32, bottleneck_dim=8, output_dim=16))

    def dino_loss() -> torch.Tensor:
        dino.criterion.center.zero_()
        teacher = [torch.randn(PAIRS, 16), torch.randn(PAIRS, 16)]
        student = [0.1 * torch.randn(PAIRS, 16), 0.1 * torch.randn(PAIRS, 16)]
        return dino.criterion(teacher, student, teacher_temp=0.04)
    assert mean_loss(dino_loss, 8) > dino.chance_level(PAIRS).loss


def test_chance_levels_follow_the_settings_and_the_batch() -> None:
    """The formulas, at the settings of the runs: a wrong factor would not pass unnoticed."""
    simclr = build(SimCLR, SimCLRSettings(hidden_dim=32, output_dim=16))
    assert simclr.chance_level(64).loss == pytest.approx(math.log(127))
    mocov3 = build(MoCoV3, MoCoV3Settings(hidden_dim=32, output_dim=16, temperature=0.2))
    assert mocov3.chance_level(64).loss == pytest.approx(0.8 * math.log(64))
    nnclr = build(NNCLR, NNCLRSettings(hidden_dim=32, output_dim=16, support_set=64))
    assert nnclr.chance_level(64).loss == pytest.approx(math.log(64))
    dino = build(DINO, DINOSettings(hidden_dim=32, bottleneck_dim=8, output_dim=32))
    assert dino.chance_level(64).loss == pytest.approx(math.log(32))
    swav = build(SwAV, SwAVSettings(hidden_dim=32, output_dim=16, prototypes=8))
    assert swav.chance_level(64).loss == pytest.approx(math.log(8))
    barlow = build(BarlowTwins, BarlowTwinsSettings(projector_dim=16))
    assert barlow.chance_level(64).loss == pytest.approx(16 * 64 / 63 + 0.005 * 16 * 15 / 63)
    assert barlow.chance_level(1) is None
    vicreg = build(VICReg, VICRegSettings(expander_dim=16))
    assert vicreg.chance_level(64).loss == pytest.approx(50 + 25 * 0.037520 + 2 * 15 / 63,
                                                         abs=1e-4)


def test_every_built_in_objective_states_a_chance_level_and_the_base_class_cannot() -> None:
    assert Objective(TinyBackbone(), None).chance_level(64) is None
    for objective_class in (SimCLR, BYOL, BarlowTwins, VICReg, MoCoV3, SimSiam, DINO, SwAV,
                            NNCLR):
        assert objective_class.chance_level is not Objective.chance_level, objective_class


def test_per_process_losses_state_the_chance_level_of_their_share(monkeypatch) -> None:
    """SimCLR's NT-Xent (built without gather_distributed) sees N/W pairs per process under
    DDP; NNCLR gathers the predictions, so it sees the global batch."""
    monkeypatch.setattr(objective_module.dist, "world_size", lambda: 4)
    chance = build(SimCLR, SimCLRSettings(hidden_dim=32, output_dim=16)).chance_level(64)
    assert chance.loss == pytest.approx(math.log(31))
    assert "N = 16 pairs per process" in chance.rule
    nnclr = build(NNCLR, NNCLRSettings(hidden_dim=32, output_dim=16, support_set=64))
    assert nnclr.chance_level(64).loss == pytest.approx(math.log(64))

