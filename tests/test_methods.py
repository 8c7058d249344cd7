"""Every registered method trains: finite losses, weights that move; pre-training is reused."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import TINY
from fetalbench.backbones import create_backbone
from fetalbench.methods import METHODS
from fetalbench.methods.api import MethodContext, TaskData
from fetalbench.run import RunRequest, execute_run

ONE_STEP = TINY.__class__(**{**TINY.__dict__, "name": "one-step", "downstream_steps": 1,
                             "validations": 1, "pretrain_steps": 1, "batch_size": 4,
                             "pretrain_batch_size": 8})


def tiny_context(method: str, cache_root: Path) -> MethodContext:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(24) % 3
    data = TaskData(classes=("a", "b", "c"), labelled_images=images[:8],
                    labelled_labels=labels[:8], validation_images=images[8:14],
                    validation_labels=labels[8:14], unlabelled_images=images)
    return MethodContext(method=method, task="brain", dataset_fingerprint="test", fraction=0.5,
                         seed=0, protocol="finetune", pool="task", profile=ONE_STEP, data=data,
                         cache_root=cache_root, log=lambda _: None)


def test_at_least_fourteen_methods_with_descriptions() -> None:
    names = METHODS.names()
    assert len(names) >= 14
    for required in ("supervised_scratch", "supervised_imagenet", "simclr", "simclr_imagenet",
                     "dual_task", "dual_task_imagenet", "byol", "barlow_twins", "vicreg",
                     "mocov3", "simsiam", "dino", "swav", "nnclr"):
        assert required in names
    assert all(METHODS.get(name).description for name in names)


@pytest.mark.parametrize("method", METHODS.names())
def test_one_step_of_every_method(method: str, tmp_path: Path) -> None:
    init = "imagenet" if method.endswith("imagenet") else "random"
    pl.seed_everything(0, verbose=False)
    start = {name: p.detach().clone()
             for name, p in create_backbone(ONE_STEP.backbone, init).named_parameters()}
    pl.seed_everything(0, verbose=False)
    result = METHODS.get(method).train(tiny_context(method, tmp_path))
    notes = result.notes
    assert math.isfinite(notes["final_train_loss"])
    if "pretraining" in notes:
        assert math.isfinite(notes["pretraining"]["final_loss"])
        assert notes["pretraining"]["reused"] is False
    end = dict(result.classifier.backbone.named_parameters())
    moved = [name for name, tensor in end.items() if not torch.equal(tensor, start[name])]
    assert moved, f"{method}: no backbone weight changed"
    assert notes["init"] == init


def test_pretraining_is_reused_across_fractions(real_subset_root: Path, tmp_path: Path) -> None:
    logs: list[str] = []
    cache = tmp_path / "cache"
    requests = [RunRequest(method="simclr", task="planes", dataset="fetal_planes_db",
                           data_root=real_subset_root, fraction=fraction, profile="tiny")
                for fraction in (0.05, 0.25)]
    first = execute_run(requests[0], tmp_path / "out", cache, log=logs.append).record
    second = execute_run(requests[1], tmp_path / "out", cache, log=logs.append).record
    assert first["method_notes"]["pretraining"]["reused"] is False
    assert second["method_notes"]["pretraining"]["reused"] is True
    assert sum("reused checkpoint" in line for line in logs) == 1
    assert first["spec_hash"] != second["spec_hash"]
    linear = execute_run(
        RunRequest(**{**requests[1].__dict__, "protocol": "linear"}), tmp_path / "out", cache,
        log=logs.append,
    ).record
    assert linear["method_notes"]["pretraining"]["reused"] is True
    assert linear["spec"]["protocol"] == "linear"


def test_same_seed_same_metrics_for_a_self_supervised_method(real_subset_root, tmp_path) -> None:
    def metrics(folder: str) -> dict:
        request = RunRequest(method="byol", task="planes", dataset="fetal_planes_db",
                             data_root=real_subset_root, fraction=0.5, profile="tiny")
        outcome = execute_run(request, tmp_path / folder, tmp_path / f"cache-{folder}",
                              log=lambda _: None)
        return json.loads(outcome.record_path.read_text())["metrics"]

    assert metrics("a") == metrics("b")


@pytest.mark.parametrize("method", ["supervised_scratch", "simclr", "dual_task"])
def test_training_takes_the_profiles_memory_format(method: str, tmp_path: Path) -> None:
    context = dataclasses.replace(tiny_context(method, tmp_path),
                                  profile=dataclasses.replace(ONE_STEP, channels_last=True))
    result = METHODS.get(method).train(context)
    convolutions = [p for p in result.classifier.parameters() if p.dim() == 4]
    assert convolutions
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
