"""Compute profiles: how big a run is. ``quick`` fits 2 CPU cores; ``gpu`` and ``paper`` a GPU.

A profile fixes everything about a run's scale (backbone, resolution, batches, learning rates,
and the rule that sizes every training budget to its data) so that records made with one profile
are comparable with each other; the whole profile is part of every run's spec and hash.

**Budgets are sized to the data** (:func:`stage_steps`, the one place the rule lives). A stage
trains for ``passes`` over its data (fine-tuning: the labelled set; pre-training: the unlabelled
pool), at least ``min_steps`` (a tiny labelled set still gets enough optimiser steps for its head
and backbone to settle) and at most ``max_steps`` (a large set is not trained for hours). Every
stage warms its learning rate up linearly over ``warmup`` of its steps, then decays it on a
cosine to zero (Goyal et al., "Accurate, Large Minibatch SGD", 2017; the SimCLR and MoCo v3
recipes): a fresh head meets pre-trained weights with a small learning rate. Fine-tuning
validates ``validations`` times over its budget (so a small labelled set, which has few steps, is
looked at after a few steps, and a large one often enough to find its converged step) and stops
early when validation macro F1 has not improved for ``patience`` validations (0: never); the
step best on validation macro F1 is kept. ``docs/budgets.md`` gives the rule's arithmetic per
profile, dataset, task and label fraction (``scripts/budget_table.py`` writes it).

``smoke`` is a seconds-long profile that proves the pipeline runs (CI), not a result to compare.
``quick`` is the CPU profile the committed board uses (64 px, one thread per run; seconds per run
in docs/budgets.md). ``gpu`` (128 px, bf16) and ``paper`` (224 px, bf16, the paper's scale) need
a GPU. Every profile trains ``channels_last``: on this CPU ``fetalbench bench`` measures it 1.8
times faster at 64 px and 2.7 times at 32 px. CPU profiles stay fp32 because bf16 autocast
measured slower here (docs/performance.md). Self-supervised stages use AdamW at every profile
(LARS, used by the original papers, matters for batches of thousands, not for these).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

from fetalbench.errors import FetalbenchError


@dataclass(frozen=True)
class Profile:
    """The scale of a run; part of every run's spec.

    ``finetune_*`` size the downstream stage in passes over the labelled set and
    ``pretrain_*`` a self-supervised stage in passes over the unlabelled pool
    (:func:`stage_steps`); ``warmup`` is the share of a stage's steps spent warming up its
    learning rate; ``validations`` and ``patience`` schedule validation and early stopping.
    """

    name: str
    backbone: str
    resolution: int
    batch_size: int
    finetune_passes: float
    finetune_min_steps: int
    finetune_max_steps: int
    validations: int
    patience: int
    learning_rate: float
    weight_decay: float
    warmup: float
    validation_fraction: float
    precision: str
    channels_last: bool
    pretrain_passes: float
    pretrain_min_steps: int
    pretrain_max_steps: int
    pretrain_batch_size: int
    pretrain_learning_rate: float


def steps_per_pass(n_images: int, batch_size: int) -> int:
    """Optimiser steps in one pass over ``n_images`` in full batches of ``batch_size`` (one
    smaller batch when the set is smaller than a batch; :func:`fetalbench.methods.engine.batches`
    drops the last incomplete batch)."""
    return max(1, n_images // max(1, min(batch_size, n_images)))


def stage_steps(passes: float, min_steps: int, max_steps: int, n_images: int,
                batch_size: int) -> int:
    """The budget rule: ``passes`` over ``n_images`` in steps of ``batch_size``, clipped to
    ``[min_steps, max_steps]``."""
    wanted = math.ceil(passes * steps_per_pass(n_images, batch_size))
    return int(min(max_steps, max(min_steps, wanted)))


def finetune_steps(profile: Profile, n_labelled: int) -> int:
    """The fine-tuning budget of ``profile`` on ``n_labelled`` labelled images."""
    return stage_steps(profile.finetune_passes, profile.finetune_min_steps,
                       profile.finetune_max_steps, n_labelled, profile.batch_size)


def pretrain_steps(profile: Profile, n_pool: int, passes_scale: float = 1.0) -> int:
    """The pre-training budget of ``profile`` on an unlabelled pool of ``n_pool`` images, for
    an objective that needs ``passes_scale`` times the profile's passes (within the profile's
    floor and ceiling, which stay what the profile can afford)."""
    return stage_steps(profile.pretrain_passes * passes_scale, profile.pretrain_min_steps,
                       profile.pretrain_max_steps, n_pool, profile.pretrain_batch_size)


def finetune_schedule(profile: Profile, n_labelled: int) -> tuple[int, int]:
    """The steps a fine-tuning stage on ``n_labelled`` images trains at most, and the steps
    between two of its validations: :func:`finetune_steps` rounded down to whole intervals of
    a ``validations``-th of it, so that its last step is validated."""
    budget = finetune_steps(profile, n_labelled)
    interval = max(1, budget // max(1, profile.validations))
    return interval * max(1, budget // interval), interval


def warmup_steps(profile: Profile, steps: int) -> int:
    """Steps of linear learning-rate warm-up of a stage of ``steps`` steps (at least one)."""
    return max(1, round(profile.warmup * steps))


def learning_rate_factor(step: int, steps: int, warmup: int) -> float:
    """The learning rate's multiplier at ``step``: linear warm-up over ``warmup`` steps, then a
    cosine decay to zero at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def fixed_budgets(finetune: int, pretrain: int) -> dict[str, int]:
    """The profile fields that make every budget exactly ``finetune`` fine-tuning and
    ``pretrain`` pre-training steps whatever the data, without early stopping (tests,
    ``scripts/gpu_check.sh``)."""
    return {"finetune_min_steps": finetune, "finetune_max_steps": finetune,
            "pretrain_min_steps": pretrain, "pretrain_max_steps": pretrain, "patience": 0}


def fixed_steps(profile: Profile, finetune: int, pretrain: int, **changes: object) -> Profile:
    """``profile`` with :func:`fixed_budgets` and ``changes``."""
    return replace(profile, **fixed_budgets(finetune, pretrain), **changes)


QUICK = Profile(
    name="quick",
    backbone="tf_efficientnet_lite0",
    resolution=64,
    batch_size=32,
    finetune_passes=30,
    finetune_min_steps=200,
    finetune_max_steps=600,
    validations=20,
    patience=8,
    learning_rate=1e-3,
    weight_decay=1e-4,
    warmup=0.05,
    validation_fraction=0.2,
    precision="32-true",
    channels_last=True,
    pretrain_passes=60,
    pretrain_min_steps=200,
    pretrain_max_steps=400,
    pretrain_batch_size=64,
    pretrain_learning_rate=1e-3,
)

GPU = replace(QUICK, name="gpu", resolution=128, batch_size=64, finetune_passes=50,
              finetune_min_steps=200, finetune_max_steps=3000, learning_rate=3e-4,
              precision="bf16-mixed", pretrain_passes=200, pretrain_min_steps=1000,
              pretrain_max_steps=20000, pretrain_batch_size=256)

PROFILES: dict[str, Profile] = {
    "smoke": replace(QUICK, name="smoke", resolution=32, batch_size=16, finetune_passes=1,
                     finetune_min_steps=16, finetune_max_steps=16, validations=2, patience=0,
                     pretrain_passes=1, pretrain_min_steps=8, pretrain_max_steps=8,
                     pretrain_batch_size=32),
    "quick": QUICK,
    "gpu": GPU,
    "paper": replace(GPU, name="paper", resolution=224, pretrain_passes=300),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``, or a one-line error listing the others."""
    if name not in PROFILES:
        raise FetalbenchError(f"unknown profile {name!r}; expected one of {', '.join(PROFILES)}")
    return PROFILES[name]


@contextlib.contextmanager
def profile_shortened(name: str, **changes: object) -> Iterator[Profile]:
    """Within: the profile ``name`` with ``changes`` (few steps, small batches) in its place, so
    a run asked for at ``name`` takes that profile's code path (resolution, precision, memory
    format, the objective settings chosen by its name) in seconds; afterwards the real one.

    For the paper-path test and ``scripts/gpu_check.sh`` only: it is no user profile (no
    command reaches it, and a process started meanwhile, such as a grid worker, sees the real
    one). A record made within says its real steps and batches in its spec, so its hash differs
    from every run of the real profile.
    """
    real = get_profile(name)
    shortened = replace(real, **changes)
    PROFILES[name] = shortened
    try:
        yield shortened
    finally:
        PROFILES[name] = real
