"""Each self-supervised objective does what its paper says, checked on tiny random tensors.

Momentum schedules, stop-gradients, DINO's centre, NNCLR's neighbours, MoCo v3's loss and heads,
SwAV's frozen prototypes and queue, and the rules that size support sets, prototypes and queues
for the unlabelled pool. A tiny convolutional backbone stands in for EfficientNet-Lite0: the
mechanisms under test live in the heads, banks and losses, not in the backbone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fetalbench.methods.byol import BYOL, BYOLSettings
from fetalbench.methods.dino import DINO, DINOSettings, dino_settings
from fetalbench.methods.mocov3 import MoCoV3, MoCoV3Settings, mocov3_contrastive_loss
from fetalbench.methods.nnclr import NNCLR, NNCLRSettings, nnclr_settings
from fetalbench.methods.objective import Objective
from fetalbench.methods.pretraining import PretrainModule
from fetalbench.methods.simsiam import SimSiam, SimSiamSettings
from fetalbench.methods.swav import SwAV, SwAVSettings, swav_settings
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
    criterion_inputs = inputs_of(objective.criterion)
    for seed in (1, 2):  # two batches fill the support set with the second views' projections
        objective.loss(*views(seed), progress=0.5)
    bank = objective.support.bank.clone()
    torch.testing.assert_close(bank, torch.cat([projections[1], projections[3]]).detach())

    objective.loss(*views(3), progress=0.5)
    z_a, z_b = projections[4], projections[5]
    (neighbour_a, _), (neighbour_b, _) = criterion_inputs[-2:]
    for z, neighbour in ((z_a, neighbour_a), (z_b, neighbour_b)):
        nearest = (F.normalize(z, dim=1) @ F.normalize(bank, dim=1).t()).argmax(dim=1)
        torch.testing.assert_close(neighbour, bank[nearest], rtol=0, atol=0)


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


@pytest.mark.parametrize("pool", [24, 300, 7000, 12_400])
@pytest.mark.parametrize("profile", [QUICK, PAPER], ids=["quick", "paper"])
def test_sizes_follow_the_pool(pool: int, profile) -> None:
    support = nnclr_settings(profile, pool).support_set
    assert support <= pool < 2 * support
    assert dino_settings(profile, pool).output_dim <= pool // 8 < 2 * dino_settings(
        profile, pool).output_dim
    swav = swav_settings(profile, pool)
    batch = min(profile.pretrain_batch_size, pool)
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
    assert nnclr_settings(QUICK, 300).support_set == 256
    assert dino_settings(QUICK, 300).output_dim == 32
    swav = swav_settings(QUICK, 300)
    assert (swav.prototypes, swav.queue) == (32, 192)
