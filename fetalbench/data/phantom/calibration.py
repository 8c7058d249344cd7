"""How hard is the phantom? A fixed, cheap probe that any change to the generator must pass.

Frozen ImageNet features (EfficientNet-Lite0 with the offline weights) and scikit-learn's logistic
regression, macro F1 on the official test split at 5% and 100% of the training labels, for both
tasks. The phantom is a fair stand-in when the six planes are easier than the three brain planes
at both label amounts, and the brain planes sit well above chance yet below 0.90 at 100% labels,
leaving room for better representations to show (the linear-evaluation protocol of Kolesnikov et
al., "Revisiting Self-Supervised Visual Representation Learning", CVPR 2019).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tabulate import tabulate

from fetalbench.data.prepare import prepare_run_data
from fetalbench.data.sources import open_source
from fetalbench.data.splits import nested_labelled_subsets
from fetalbench.data.tasks import TASKS
from fetalbench.methods.backbones import create_backbone
from fetalbench.profiles import QUICK
from fetalbench.runs.metrics import macro_f1

PROBE_FRACTIONS = (0.05, 1.0)
PROBE_BACKBONE = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class ProbeScore:
    """Test macro F1 of the probe on one task at one label fraction."""

    task: str
    fraction: float
    n_labelled: int
    macro_f1: float
    chance_macro_f1: float


def chance_macro_f1(labels: np.ndarray, n_classes: int) -> float:
    """Expected macro F1 of guessing uniformly at random (precision = prevalence, recall = 1/K)."""
    prevalence = np.bincount(labels, minlength=n_classes) / len(labels)
    recall = 1.0 / n_classes
    return float(np.mean(2 * prevalence * recall / (prevalence + recall)))


@torch.inference_mode()
def frozen_features(images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """ImageNet EfficientNet-Lite0 features of uint8 images ``[N, H, W]``."""
    backbone = create_backbone(PROBE_BACKBONE, "imagenet").eval()
    batches = [
        backbone(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))
                 .unsqueeze(1).float().div(255.0))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(batches).numpy()


def calibrate(cache_root: Path, resolution: int = 128, seed: int = 0) -> list[ProbeScore]:
    """The probe's four numbers (two tasks x two label fractions) on the phantom.

    Each task's images come from :func:`~fetalbench.data.prepare.prepare_run_data`, as a run's
    do. The probe selects no model, so it has no validation carve-out: its label fractions are
    drawn from every official training image of the task (the split's ``unlabelled_pool``).
    """
    source = open_source("phantom", None, cache_root)
    scores = []
    for task_name in ("planes", "brain"):
        task = TASKS.get(task_name)
        data = prepare_run_data(source, task, 1.0, seed, QUICK.validation_fraction, "task",
                                resolution, cache_root)
        features = frozen_features(data.images)
        labels, train, test = data.labels, data.split.unlabelled_pool, data.split.test
        subsets = nested_labelled_subsets(data.rows.iloc[train], PROBE_FRACTIONS, seed)
        for fraction, positions in subsets.items():
            labelled = train[positions]
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            probe.fit(features[labelled], labels[labelled])
            predicted = probe.predict(features[test])
            scores.append(ProbeScore(
                task=task_name,
                fraction=fraction,
                n_labelled=len(labelled),
                macro_f1=macro_f1(labels[test], predicted, len(task.classes)),
                chance_macro_f1=chance_macro_f1(labels[test], len(task.classes)),
            ))
    return scores


def format_calibration(scores: list[ProbeScore]) -> str:
    """A table of the probe's scores and whether the phantom meets its difficulty targets."""
    table = tabulate(
        [(s.task, f"{s.fraction:.0%}", s.n_labelled, f"{s.macro_f1:.3f}",
          f"{s.chance_macro_f1:.3f}") for s in scores],
        headers=("task", "labels", "n labelled", "test macro F1", "chance"),
    )
    by = {(s.task, s.fraction): s for s in scores}
    brain_full = by[("brain", 1.0)]
    checks = {
        "planes easier than brain at every label amount": all(
            by[("planes", f)].macro_f1 > by[("brain", f)].macro_f1 for f in PROBE_FRACTIONS
        ),
        "brain at 100% >= chance + 0.15": brain_full.macro_f1
        >= brain_full.chance_macro_f1 + 0.15,
        "brain at 100% < 0.90": brain_full.macro_f1 < 0.90,
    }
    lines = [f"{'pass' if ok else 'FAIL'}  {name}" for name, ok in checks.items()]
    return "phantom (SYNTHETIC) difficulty, frozen ImageNet probe\n" + table + "\n" + "\n".join(
        lines
    )
