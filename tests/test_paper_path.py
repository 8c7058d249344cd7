"""The paper profile's code path on the CPU: every registered method, every protocol it supports.

Each run goes through ``execute_run`` at the ``paper`` profile (bf16-mixed, channels_last, the
objective settings chosen for ``paper``: queue, prototype and support-set sizes, momenta)
shortened to 2 steps per stage and batches of 2 (:func:`~fetalbench.profiles.profile_shortened`,
test-only), on the brain task of the fewest real FETAL_PLANES_DB rows that split
(:func:`make_minimal_brain_root`: 9 training images, 6 test images).

Every method runs at 32 px; one run (the dual task from ImageNet: a supervised and a contrastive
loss through one backbone) runs at the paper's 224 px. On this CPU (AVX2, no AVX-512) bf16
convolutions take PyTorch's slow path, about ten times fp32: at 224 px the 45 runs took 24 min,
at 32 px about 3 min, so the paper's resolution is exercised once. Resolution changes no branch
of the code (augmentations and heads are sized relative to the image), the precision does. The
objectives whose losses are sensitive to precision compute them in float32 under autocast, and
the test and explanation passes run in the profile's precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_ssl_objectives import TinyBackbone
from torch import nn

from conftest import REAL_CSV, real_csv_lines, stand_in_png
from fetalbench.explain.explain import explain_test_set
from fetalbench.methods import METHODS
from fetalbench.methods.api import Classifier
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.barlow_twins import BarlowTwins, BarlowTwinsSettings
from fetalbench.methods.dino import DINO, DINOSettings
from fetalbench.methods.engine import autocast_dtype, evaluating, predict
from fetalbench.profiles import PROFILES, profile_shortened
from fetalbench.runs.execute import execute_run
from fetalbench.runs.spec import RunRequest

SHORT = {"pretrain_min_steps": 2, "pretrain_max_steps": 2, "finetune_min_steps": 2,
         "finetune_max_steps": 2, "patience": 0, "validations": 1, "batch_size": 2,
         "pretrain_batch_size": 2, "validation_fraction": 0.5}
BRAIN_PLANES = ("Trans-thalamic", "Trans-cerebellum", "Trans-ventricular")
RUNS = [(name, protocol) for name in METHODS.names() for protocol in METHODS.get(name).protocols
        if METHODS.get(name).takes_backbone]  # foundation encoders: tests/test_foundation.py


def make_minimal_brain_root(root: Path, train: int = 3, test: int = 2) -> Path:
    """Real CSV rows of the brain planes, ``train`` training and ``test`` test images per plane,
    each training image of its own patient (so a 50% validation carve-out can split them), with
    stand-in PNGs under their official names."""
    header, lines = real_csv_lines()
    wanted = {(plane, split): count for plane in BRAIN_PLANES
              for split, count in (("1", train), ("0", test))}
    chosen, patients = [], set()
    for line in lines:
        fields = [field.strip() for field in line.split(";")]
        key = (fields[3], fields[6])
        if wanted.get(key, 0) > 0 and (key[1] == "0" or fields[1] not in patients):
            wanted[key] -= 1
            patients.add(fields[1])
            chosen.append(line)
    assert not any(wanted.values()), f"{REAL_CSV} lacks rows for {wanted}"
    (root / "Images").mkdir(parents=True)
    (root / REAL_CSV.name).write_text("\n".join([header, *chosen]) + "\n")
    rng = np.random.default_rng(0)
    for line in chosen:
        fields = [field.strip() for field in line.split(";")]
        stand_in_png(root / "Images" / f"{fields[0]}.png", BRAIN_PLANES.index(fields[3]), rng)
    return root


@pytest.fixture(scope="module")
def minimal_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_minimal_brain_root(tmp_path_factory.mktemp("minimal") / "root")


@pytest.fixture(scope="module")
def paper_short():
    with profile_shortened("paper", resolution=32, **SHORT) as profile:
        yield profile


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paper-path")


def run_paper_path(results: Path, minimal_root: Path, method: str, protocol: str) -> dict:
    """The record of ``method`` under ``protocol`` at the (shortened) paper profile."""
    request = RunRequest(method=method, task="brain", dataset="fetal_planes_db",
                         data_root=minimal_root, protocol=protocol, profile="paper")
    cache = Path(str(results) + "-cache")
    outcome = execute_run(request, results, cache, log=lambda _: None, checkpoint_dir=None)
    return outcome.record


def test_the_paper_resolution_runs_end_to_end(results: Path, minimal_root: Path) -> None:
    with profile_shortened("paper", **SHORT):
        record = run_paper_path(results, minimal_root, "dual_task_imagenet", "finetune")
    assert record["status"] == "ok" and record["spec"]["profile"]["resolution"] == 224
    assert record["spec"]["profile"]["precision"] == "bf16-mixed"


@pytest.mark.parametrize(("method", "protocol"), RUNS, ids=[f"{m}-{p}" for m, p in RUNS])
def test_every_method_runs_the_paper_path(paper_short, results: Path, minimal_root: Path,
                                          method: str, protocol: str) -> None:
    record = run_paper_path(results, minimal_root, method, protocol)
    profile = record["spec"]["profile"]
    assert record["status"] == "ok"
    assert (profile["name"], profile["precision"],
            profile["channels_last"]) == ("paper", "bf16-mixed", True)
    assert profile["pretrain_max_steps"] == profile["finetune_max_steps"] == 2
    assert 0.0 <= record["metrics"]["macro_f1"] <= 1.0
    assert record["metrics"]["embedding"]["silhouette"] is not None
    pretraining = record["method_notes"].get("pretraining")
    if METHODS.get(method).pretrains:
        assert pretraining["steps"] == 2


def test_the_override_lasts_only_within() -> None:
    before = PROFILES["paper"]
    with profile_shortened("paper", finetune_max_steps=1) as short:
        assert PROFILES["paper"] is short and short.finetune_max_steps == 1
        assert short.resolution == before.resolution and short.precision == before.precision
    assert PROFILES["paper"] is before


class CriterionSpy(nn.Module):
    """Wraps a loss; records, per call, whether autocast was on and the inputs' dtypes."""

    def __init__(self, criterion: nn.Module):
        super().__init__()
        self.criterion = criterion
        self.calls: list[tuple[bool, set[torch.dtype]]] = []

    def forward(self, *inputs, **options):
        tensors = [t for x in inputs for t in (x if isinstance(x, list) else [x])]
        self.calls.append((torch.is_autocast_enabled("cpu"), {t.dtype for t in tensors}))
        return self.criterion(*inputs, **options)


@pytest.mark.parametrize("objective", [
    lambda: BarlowTwins(TinyBackbone(), BarlowTwinsSettings(projector_dim=64)),
    lambda: DINO(TinyBackbone(), DINOSettings(hidden_dim=32, bottleneck_dim=16,
                                              output_dim=32)),
], ids=["barlow_twins", "dino"])
def test_precision_sensitive_losses_run_in_float32_under_bf16(objective) -> None:
    torch.manual_seed(0)
    model = objective()
    model.criterion = CriterionSpy(model.criterion)
    views = torch.rand(2, 8, 1, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(views[0], views[1], 0.5)
    assert model.criterion.calls == [(False, {torch.float32})]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_test_and_explanation_passes_run_in_the_profile_precision() -> None:
    torch.manual_seed(0)
    classifier = Classifier(create_backbone("tf_efficientnet_lite0", "random"), 3)
    seen: list[torch.dtype] = []
    classifier.head.register_forward_hook(lambda _m, _i, output: seen.append(output.dtype))
    images = torch.randint(0, 256, (6, 1, 224, 224), dtype=torch.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    masks = np.zeros((6, 224, 224), dtype=bool)
    masks[:, 100:124, 100:124] = True
    predictions = predict(classifier, images, True, precision="bf16-mixed")
    explanation = explain_test_set(classifier, images, labels, np.arange(6), 0, True, masks,
                                   "bf16-mixed")
    assert seen and set(seen) == {torch.bfloat16}
    assert predictions.shape == (6,) and explanation.localisation is not None
    assert next(classifier.parameters()).device.type == "cpu"
    assert autocast_dtype("32-true") is None and autocast_dtype("16-mixed") == torch.float16
    with evaluating(classifier, "32-true") as device:
        assert device.type == "cpu" and not classifier.training
