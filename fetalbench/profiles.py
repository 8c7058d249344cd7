"""Compute profiles: how big a run is. ``quick`` fits 2 CPU cores; ``gpu`` and ``paper`` a GPU.

``smoke`` is a seconds-long profile that proves the pipeline runs (CI), not a result to compare.
``quick`` takes 50 fine-tuning steps of 32 images and 40 pre-training steps of 64 image pairs
at 64 px. On this 2-core CPU with one thread a ``brain`` run of ``supervised_imagenet`` trains
in about 55 s and a SimCLR stage in about 120 s (measured with a second run beside it, at the
commit of phantom v2); ``phantom_core`` and ``phantom_core_planes`` (72 runs, 12 stages) take
about an hour as two one-thread workers, and the full ``phantom`` suite (480 runs, 110 stages)
about 11 hours as two workers, from the measured runs. That is a small budget, above all for
self-supervised pre-training from random weights; read quick-profile results as what these
methods achieve with minutes of CPU, and use ``paper`` on a GPU for the paper's scale.

``gpu`` lies between: 128 px, bf16, 500 pre-training steps of 256 pairs and 300 fine-tuning
steps of 64 images, sized so that the full ``phantom`` suite (480 runs, 110 stages) takes about
an hour on one GPU with ``grid --workers 4``. Not yet measured on a GPU: the estimate
(docs/performance.md, "The gpu profile") assumes EfficientNet-Lite0 trains at about 15,000
images/s at 128 px in bf16 (about 6,000 at 224 px, as published B0 figures scale to an
H100-class GPU) and that a small step costs about 20 ms in all; then a stage takes about 18 s
(33 minutes for 110) and a run about 12 s with its data, test and explanation (96 minutes for
480): 2.1 hours one run at a time, about an hour if four workers on the GPU double the
throughput (issue 20's goal for ``--workers``). ``scripts/gpu_check.sh`` times one stage and one
run and prints the projection that is to replace this estimate.

A profile fixes everything about a run's scale (backbone, resolution, batch, optimisation budget)
so that records made with one profile are comparable with each other. Every profile trains
``channels_last``: on this CPU ``fetalbench bench`` measures it 1.8 times faster at 64 px and 2.7
times at 32 px (GPUs not measured). CPU profiles stay fp32 because bf16 autocast
measured slower here (docs/performance.md).
Budgets are numbers of optimiser steps, not epochs, so a 1% label fraction is not trained for a
handful of steps while 100% gets thousands. Self-supervised stages use AdamW with cosine decay at
every profile (LARS, used by the original papers, matters for batches of thousands, not for
these).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from fetalbench.errors import FetalbenchError


@dataclass(frozen=True)
class Profile:
    """The scale of a run; part of every run's spec."""

    name: str
    backbone: str
    resolution: int
    batch_size: int
    downstream_steps: int
    validations: int
    learning_rate: float
    weight_decay: float
    validation_fraction: float
    precision: str
    channels_last: bool
    pretrain_steps: int
    pretrain_batch_size: int
    pretrain_learning_rate: float


QUICK = Profile(
    name="quick",
    backbone="tf_efficientnet_lite0",
    resolution=64,
    batch_size=32,
    downstream_steps=50,
    validations=5,
    learning_rate=1e-3,
    weight_decay=1e-4,
    validation_fraction=0.2,
    precision="32-true",
    channels_last=True,
    pretrain_steps=40,
    pretrain_batch_size=64,
    pretrain_learning_rate=1e-3,
)

GPU = replace(QUICK, name="gpu", resolution=128, batch_size=64, downstream_steps=300,
              validations=10, learning_rate=3e-4, precision="bf16-mixed", pretrain_steps=500,
              pretrain_batch_size=256)

PROFILES: dict[str, Profile] = {
    "smoke": replace(QUICK, name="smoke", resolution=32, batch_size=16, downstream_steps=16,
                     validations=2, pretrain_steps=8, pretrain_batch_size=32),
    "quick": QUICK,
    "gpu": GPU,
    "paper": replace(QUICK, name="paper", resolution=224, batch_size=64, downstream_steps=6000,
                     validations=30, learning_rate=3e-4, precision="bf16-mixed",
                     pretrain_steps=20000, pretrain_batch_size=256),
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
