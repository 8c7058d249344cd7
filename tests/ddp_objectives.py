"""Pre-train each objective with momentum encoders, queues or parameters frozen for part of
training for a few steps on two CPU processes (gloo DDP); run by ``test_ddp_objectives.py``.

``python tests/ddp_objectives.py OUT`` writes ``OUT/rank-R.json`` for each rank: per objective,
the loss of every step, the world size and a checksum of the objective's parameters. Lightning's
DDP launcher starts rank 1 by running this script again, so every rank builds the same modules.
Settings come from the objectives' own rules for this pool, with the frozen and queue phases
moved so that each of the 3 steps crosses one: step 0 frozen, queues filled from step 1 and used
at step 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset

from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.byol import BYOL, BYOLSettings
from fetalbench.methods.dino import DINO, dino_settings
from fetalbench.methods.engine import batches, make_trainer, show_progress_bars
from fetalbench.methods.execution import Execution
from fetalbench.methods.mocov3 import MoCoV3, MoCoV3Settings
from fetalbench.methods.nnclr import NNCLR, nnclr_settings
from fetalbench.methods.objective import Objective
from fetalbench.methods.pretraining import PretrainModule
from fetalbench.methods.swav import SwAV, swav_settings
from fetalbench.profiles import PROFILES, fixed_steps

PROFILE = fixed_steps(PROFILES["smoke"], finetune=1, pretrain=3, name="ddp",
                      pretrain_batch_size=8)
POOL = 32
PHASE = 0.3
"""Frozen before it, queues started at it: step 0 is frozen (progress 0), steps 1-2 are not."""

OBJECTIVES: dict[str, tuple[type[Objective], object]] = {
    "byol": (BYOL, BYOLSettings(hidden_dim=64, output_dim=32)),
    "mocov3": (MoCoV3, MoCoV3Settings(hidden_dim=64, output_dim=32)),
    "dino": (DINO, dataclasses.replace(dino_settings(PROFILE, POOL), hidden_dim=64,
                                       frozen_last_layer=PHASE)),
    "swav": (SwAV, dataclasses.replace(swav_settings(PROFILE, POOL), hidden_dim=64,
                                       frozen_prototypes=PHASE, queue_start=PHASE)),
    "nnclr": (NNCLR, dataclasses.replace(nnclr_settings(PROFILE, POOL), hidden_dim=64)),
}


class StepLosses(pl.Callback):
    """The loss of every training step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def pretrain(objective_class: type[Objective], settings: object) -> dict:
    """A few DDP steps of one objective: its step losses, world size and parameter checksum."""
    pl.seed_everything(0, verbose=False)
    images = torch.randint(0, 256, (POOL, 1, PROFILE.resolution, PROFILE.resolution),
                           dtype=torch.uint8)
    objective = objective_class(create_backbone(PROFILE.backbone, "random"), settings)
    losses = StepLosses()
    execution = Execution(devices=2)
    trainer = make_trainer(PROFILE, PROFILE.pretrain_max_steps, [losses], execution, max_epochs=-1,
                           enable_checkpointing=False)
    trainer.fit(PretrainModule(objective, PROFILE),
                batches(TensorDataset(images), PROFILE.pretrain_batch_size, execution.world_size))
    checksum = sum(float(p.detach().double().sum()) for p in objective.parameters())
    return {"losses": losses.losses, "world_size": trainer.world_size, "checksum": checksum,
            "rank": trainer.global_rank}


def main(out: Path) -> None:
    show_progress_bars(False)
    results = {name: pretrain(*entry) for name, entry in OBJECTIVES.items()}
    rank = results["byol"]["rank"]
    (out / f"rank-{rank}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
