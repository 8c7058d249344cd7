"""What a pre-training stage depends on is defined once: a run's group (one Slurm job, one
stage) and the stage's key agree on which requests share a stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import write_suite
from fetalbench.devtools.bench import pretraining_counts
from fetalbench.methods import METHODS, pretraining
from fetalbench.methods.api import TaskData
from fetalbench.methods.execution import SINGLE_PROCESS
from fetalbench.methods.pretraining import DOWNSTREAM_ONLY, pretraining_key, stage_group
from fetalbench.orchestrate.slurm import group_requests
from fetalbench.orchestrate.suites import load_suite
from fetalbench.runs.spec import RunRequest, resolve_spec
from fetalbench.storage.digests import sha256_hex

BASE = RunRequest(method="simclr", task="planes", dataset="fetal_planes_db",
                  data_root=Path("root"), fraction=1.0, seed=0, protocol="finetune",
                  pool="task", profile="smoke")
OTHER_VALUE = {"method": "simclr_imagenet", "task": "brain", "dataset": "phantom",
               "data_root": Path("other-root"), "fraction": 0.5, "seed": 1,
               "protocol": "linear", "pool": "dataset", "profile": "quick", "validation": "scaled",
               "patients_per_class": 2, "backbone": "resnet18"}
"""For every field of a request, another value of it (a budget in patients replaces the
fraction: a request names one or the other)."""


class Captured(Exception):
    """Stops a method once its stage's key is known."""

    def __init__(self, key: dict):
        self.key = key


def capture_key(context: SimpleNamespace, name: str, objective_class: type, settings: object,
                init: str) -> None:
    raise Captured(pretraining_key(context, name, init, settings, objective_class.version,
                                   objective_class.pool_passes_scale))


def fake_source(request: RunRequest) -> SimpleNamespace:
    """An opened source as far as :func:`resolve_spec` reads it: its name and a fingerprint per
    dataset and root (the data at two roots differ here; two copies of the same data would
    share a stage while grouped apart, which costs a job no more than a wait on its lock)."""
    fingerprint = sha256_hex(f"{request.dataset}:{request.data_root}".encode())
    return SimpleNamespace(identity=SimpleNamespace(name=request.dataset, fingerprint=fingerprint))


def stage_key(request: RunRequest, cache_root: Path) -> dict:
    """The key of the stage the method of ``request`` pre-trains, as its run would compute it:
    its method is given a context of the request's spec (what a method context is)."""
    images = torch.zeros(8, 1, 16, 16, dtype=torch.uint8)
    labels = torch.zeros(8, dtype=torch.int64)
    data = TaskData(("a", "b"), images, labels, images, labels, unlabelled_images=images)
    spec = resolve_spec(request, fake_source(request))
    context = SimpleNamespace(**{field.name: getattr(spec, field.name)
                                 for field in dataclasses.fields(spec)},
                              spec=spec, data=data, cache_root=cache_root, log=lambda _: None,
                              execution=SINGLE_PROCESS)
    with pytest.raises(Captured) as captured:
        METHODS.get(request.method).train(context)
    return captured.value.key


def test_every_field_of_a_request_is_considered() -> None:
    assert set(OTHER_VALUE) == {field.name for field in dataclasses.fields(RunRequest)}
    assert set(OTHER_VALUE) > DOWNSTREAM_ONLY


@pytest.mark.parametrize("field", sorted(OTHER_VALUE))
def test_requests_share_a_group_exactly_when_they_share_a_stage(
    field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pretraining, "pretrain_backbone", capture_key)
    budget = {"fraction": None} if field == "patients_per_class" else {}
    changed = dataclasses.replace(BASE, **{field: OTHER_VALUE[field]}, **budget)
    same_group = stage_group(changed) == stage_group(BASE)
    same_stage = stage_key(changed, tmp_path) == stage_key(BASE, tmp_path)
    assert same_group == same_stage == (field in DOWNSTREAM_ONLY)
    assert len(group_requests([BASE, changed])) == (1 if same_group else 2)


def test_the_benchmark_counts_the_stages_slurm_groups(tmp_path: Path) -> None:
    suite = load_suite(str(write_suite(tmp_path / "s.toml", seeds=[0, 1],
                                       protocols=["finetune", "linear"])))
    requests = [r for r in suite.requests(None) if METHODS.get(r.method).pretrains]
    assert pretraining_counts(suite).images_per_second == len(group_requests(requests)) == 2
