"""Every registered method trains what it means to; pre-training is reused and reproducible."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import TINY
from fetalbench.methods import METHODS
from fetalbench.methods.api import MethodContext, TaskData
from fetalbench.profiles import Profile, fixed_steps
from fetalbench.runs.execute import execute_run
from fetalbench.runs.spec import RunRequest, RunSpec

ONE_STEP = fixed_steps(TINY, finetune=1, pretrain=1, name="one-step", validations=1,
                       batch_size=4, pretrain_batch_size=8)


def tiny_context(method: str, cache_root: Path, profile: Profile = ONE_STEP,
                 protocol: str = "finetune",
                 log: Callable[[str], None] = lambda _: None) -> MethodContext:
    """A method's context on 24 random 32 px images (8 labelled, 6 validation, all unlabelled)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(24) % 3
    data = TaskData(classes=("a", "b", "c"), labelled_images=images[:8],
                    labelled_labels=labels[:8], validation_images=images[8:14],
                    validation_labels=labels[8:14], unlabelled_images=images,
                    probe_images=images[14:], probe_labels=labels[14:])
    spec = RunSpec(method=method, task="brain", dataset="test", dataset_fingerprint="test",
                   fraction=0.5, seed=0, protocol=protocol, pool="task", profile=profile)
    return MethodContext(spec, data, cache_root, log=log)


def test_at_least_fourteen_methods_with_descriptions() -> None:
    names = METHODS.names()
    assert len(names) >= 14
    for required in ("supervised_scratch", "supervised_imagenet", "simclr", "simclr_imagenet",
                     "dual_task", "dual_task_imagenet", "byol", "barlow_twins", "vicreg",
                     "mocov3", "simsiam", "dino", "swav", "nnclr"):
        assert required in names
    assert all(METHODS.get(name).description for name in names)


class TrainingAudit(pl.Callback):
    """Watches every ``Trainer.fit``: which parameters require gradients, which the optimiser
    holds, which got a gradient (and a non-zero one) before an optimiser step, and the module's
    whole state (parameters and buffers) at the start and the end."""

    def __init__(self, fits: list[dict]):
        self.fits = fits

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        held = {id(p) for optimizer in trainer.optimizers for group in optimizer.param_groups
                for p in group["params"]}
        trainable = [name for name, p in module.named_parameters() if p.requires_grad]
        self.fits.append({
            "module": module,
            "trainable": trainable,
            "not_optimised": [name for name, p in module.named_parameters()
                              if p.requires_grad and id(p) not in held],
            "before": {k: v.detach().clone() for k, v in module.state_dict().items()},
            "got_gradient": set(),
            "got_nonzero_gradient": set(),
        })

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        fit = self.fits[-1]
        for name, p in module.named_parameters():
            if p.requires_grad and p.grad is not None:
                fit["got_gradient"].add(name)
                if bool(p.grad.ne(0).any()):
                    fit["got_nonzero_gradient"].add(name)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.fits[-1]["after"] = {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture
def audited_fits(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every trainer built during the test gets a :class:`TrainingAudit`."""
    fits: list[dict] = []
    original = pl.Trainer.__init__

    def audited(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), TrainingAudit(fits)], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", audited)
    return fits


AUDIT = fixed_steps(ONE_STEP, finetune=4, pretrain=3, name="audit", validations=2,
                    batch_size=2)
"""Validation after step 2 of an epoch of 4 batches (a frozen backbone must stay in evaluation
mode across a mid-epoch validation); 3 pre-training steps, so parameters frozen for the first
steps (SwAV's prototypes) must also move."""


@pytest.mark.parametrize("method", [name for name in METHODS.names()
                                    if "finetune" in METHODS.get(name).protocols])
def test_every_method_trains_what_it_means_to_and_nothing_else(
    method: str, audited_fits: list[dict], tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Every fit of the method puts every parameter that requires a gradient in its optimiser,
    each one gets a gradient, and each whose gradient is ever non-zero moves (a BatchNorm shift
    that the next training-mode BatchNorm subtracts again has an exactly zero gradient, e.g. at
    1x1 feature maps)."""
    cache = tmp_path_factory.getbasetemp() / f"audit-cache-{method}"
    context = tiny_context(method, cache, AUDIT, "finetune")
    pl.seed_everything(0, verbose=False)
    result = METHODS.get(method).train(context)
    assert math.isfinite(result.notes["final_train_loss"])
    assert result.notes["init"] == ("imagenet" if "imagenet" in method else "random")
    assert audited_fits, f"{method}: no Lightning fit was audited"
    for fit in audited_fits:
        kind = type(fit["module"]).__name__
        assert not fit["not_optimised"], f"{method} {kind}: not optimised {fit['not_optimised']}"
        no_gradient = [name for name in fit["trainable"] if name not in fit["got_gradient"]]
        assert not no_gradient, f"{method} {kind}: trainable but never a gradient {no_gradient}"
        unmoved = [name for name in fit["got_nonzero_gradient"]
                   if torch.equal(fit["before"][name], fit["after"][name])]
        assert not unmoved, f"{method} {kind}: a gradient but unchanged {unmoved}"
        assert len(fit["got_nonzero_gradient"]) > 0.9 * len(fit["trainable"]), kind


def test_a_two_stage_head_starts_the_same_whether_its_stage_is_trained_or_loaded(
    real_subset_root: Path, tmp_path: Path
) -> None:
    """A group's first fraction with an empty cache, then again with ``force`` against the
    cached stage: the records' metrics and selection are identical."""
    request = RunRequest(method="simclr", task="planes", dataset="fetal_planes_db",
                         data_root=real_subset_root, fraction=0.25, profile="tiny")
    cache = tmp_path / "cache"
    trained = execute_run(request, tmp_path / "out", cache, log=lambda _: None).record
    loaded = execute_run(request, tmp_path / "out", cache, log=lambda _: None, force=True).record
    assert trained["method_notes"]["pretraining"]["reused"] is False
    assert loaded["method_notes"]["pretraining"]["reused"] is True
    assert loaded["metrics"] == trained["metrics"]
    for note in ("best_step", "best_validation_macro_f1", "final_train_loss"):
        assert loaded["method_notes"][note] == trained["method_notes"][note]


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
    context = tiny_context(method, tmp_path, dataclasses.replace(ONE_STEP, channels_last=True))
    result = METHODS.get(method).train(context)
    convolutions = [p for p in result.classifier.parameters() if p.dim() == 4]
    assert convolutions
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
