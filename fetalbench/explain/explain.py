"""Explanation numbers of a run's test set, and the figures of a finished run.

``explain_test_set`` runs at the end of every run (``fetalbench.runs.execute.execute_run``):
embedding scores always, the pointing game when the dataset has structure masks.
``explain_run`` serves ``fetalbench explain``: it rebuilds the model from the run's safetensors
checkpoint, re-opens the dataset and prepares the run's data with the function the run used
(:func:`~fetalbench.data.prepare.prepare_run_data`, so the split is the run's), recomputes the
numbers and writes ``gradcam.png`` (a seeded sample of test images per class, Grad-CAM for the
true class) and ``tsne.png``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fetalbench.data.prepare import prepare_run_data
from fetalbench.data.sources import DATASETS, open_source
from fetalbench.data.tasks import TASKS
from fetalbench.errors import FetalbenchError
from fetalbench.explain.cam import grad_cam
from fetalbench.explain.embedding import (
    EmbeddingScores,
    embed_images,
    embedding_scores,
    tsne_coordinates,
)
from fetalbench.explain.figures import plot_gradcam, plot_tsne
from fetalbench.explain.pointing import (
    PointingResult,
    pointing_game,
    pointing_tolerance,
)
from fetalbench.methods.api import Classifier
from fetalbench.methods.engine import predict
from fetalbench.paths import in_cache
from fetalbench.profiles import Profile
from fetalbench.runs.checkpoints import load_classifier

GRADCAM_NAME = "gradcam.png"
TSNE_NAME = "tsne.png"
SAMPLES_PER_CLASS = 4


@dataclass(frozen=True)
class RunExplanation:
    """The test embeddings, their class separation, and the pointing game (None without masks)."""

    embeddings: np.ndarray
    embedding: EmbeddingScores
    localisation: PointingResult | None

    def metrics(self) -> dict:
        """The record's ``metrics`` entries: ``embedding`` always, ``localisation`` with masks."""
        found = {"embedding": dataclasses.asdict(self.embedding)}
        if self.localisation is not None:
            found["localisation"] = dataclasses.asdict(self.localisation)
        return found


@dataclass(frozen=True)
class ExplainOutcome:
    """What ``fetalbench explain`` wrote and the numbers it recomputed."""

    gradcam_path: Path
    tsne_path: Path
    explanation: RunExplanation


POINTING_SAMPLE = 300


def explain_test_set(
    classifier: Classifier,
    images: torch.Tensor,
    labels: np.ndarray,
    patients: np.ndarray,
    seed: int,
    channels_last: bool,
    masks: np.ndarray | None,
    precision: str = "32-true",
) -> RunExplanation:
    """Embedding scores of uint8 test ``images`` and, given ``masks``, the Grad-CAM pointing game.

    ``patients`` holds each image's patient id: the k-NN accuracy is cross-validated in folds
    that keep a patient's images together (:func:`~fetalbench.explain.embedding.embedding_scores`).

    Grad-CAM is taken for each image's true class (``labels``) at the default target layer; the
    tolerance is :func:`~fetalbench.explain.pointing.pointing_tolerance` of the resolution. The
    pointing game plays on a seeded sample of at most :data:`POINTING_SAMPLE` test images (the
    same sample for every method of a seed), which keeps its cost per run to a few seconds.
    Both passes run on the training device in the profile's ``precision``, as the test does
    (:func:`~fetalbench.methods.engine.evaluating`).
    """
    embeddings = embed_images(classifier, images, channels_last, precision=precision)
    localisation = None
    if masks is not None:
        sample = np.arange(len(images))
        if len(sample) > POINTING_SAMPLE:
            rng = np.random.default_rng([seed, 0xCA3])
            sample = np.sort(rng.choice(len(sample), POINTING_SAMPLE, replace=False))
        cams = grad_cam(classifier, images[sample], torch.tensor(labels[sample], dtype=torch.long),
                        channels_last=channels_last, precision=precision)
        localisation = pointing_game(cams.numpy(), masks[sample],
                                     pointing_tolerance(images.shape[-1]))
    return RunExplanation(embeddings, embedding_scores(embeddings, labels, patients, seed),
                          localisation)


def rerun_command(record: dict, data_root: Path | None = None) -> str:
    """The ``fetalbench run`` command that rewrites ``record``'s run (with its checkpoint); on
    real data it takes ``--data-root`` (``DIR`` when ``data_root`` is not known)."""
    spec = record["spec"]
    data_root = (f" --data-root {data_root or 'DIR'}"
                 if DATASETS.get(spec["dataset"]).needs_data_root else "")
    return (
        f"fetalbench run --method {spec['method']} --task {spec['task']} --dataset "
        f"{spec['dataset']}{data_root} --fraction {spec['fraction']:g} --seed {spec['seed']} "
        f"--protocol {spec['protocol']} --pool {spec['pool']} --profile {spec['profile']['name']} "
        f"--validation {spec['validation']} --force"
    )


def figure_folder_name(record: dict) -> str:
    """``<dataset>_<task>_<method>_f<fraction>_s<seed>``, with ``_<protocol>`` unless finetune."""
    spec = record["spec"]
    name = (f"{spec['dataset']}_{spec['task']}_{spec['method']}_f{spec['fraction']:g}"
            f"_s{spec['seed']}")
    return name if spec["protocol"] == "finetune" else f"{name}_{spec['protocol']}"


def sample_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Positions of up to ``per_class`` images of each class (seeded draw), class by class."""
    rng = np.random.default_rng([seed, 0xCA3])
    chosen = [
        np.sort(rng.choice(np.flatnonzero(labels == label),
                           min(per_class, int((labels == label).sum())), replace=False))
        for label in np.unique(labels)
    ]
    return np.concatenate(chosen)


def explain_run(
    record: dict, out_dir: Path, cache_root: Path, per_class: int = SAMPLES_PER_CLASS,
    data_root: Path | None = None,
) -> ExplainOutcome:
    """Rebuild ``record``'s model and data; write ``gradcam.png`` and ``tsne.png`` to ``out_dir``.

    The checkpoint is the one the record names, in ``cache_root``; a run on real data needs its
    dataset's folder, ``data_root`` (records name the dataset, not the folder it was in). The
    numbers are recomputed as at the end of the run and returned with the paths.
    """
    spec = record["spec"]
    if per_class < 1:
        raise FetalbenchError(f"--per-class {per_class} must be at least 1, e.g. --per-class 4")
    dataset = DATASETS.get(spec["dataset"])
    if dataset.needs_data_root and data_root is None:
        raise FetalbenchError(
            f"this run is on {dataset.name}: pass --data-root DIR, {dataset.data_root_help}"
        )
    rerun = rerun_command(record, data_root)
    if not record.get("checkpoint"):
        raise FetalbenchError(
            f"this run saved no checkpoint; rerun it with checkpoints on: {rerun}"
        )
    checkpoint = in_cache(record["checkpoint"], cache_root)
    if not checkpoint.is_file():
        raise FetalbenchError(
            f"checkpoint {checkpoint} ({record['checkpoint']} in the cache, $FETALBENCH_CACHE) "
            f"is missing; rerun the run with checkpoints on: {rerun}"
        )
    classifier = load_classifier(record, checkpoint)
    profile = Profile(**spec["profile"])
    source = open_source(spec["dataset"], data_root, cache_root)
    if source.identity.fingerprint != spec["dataset_fingerprint"]:
        raise FetalbenchError(
            f"the {spec['dataset']} dataset at {source.identity.root} is not the one this run "
            f"used (fingerprint differs); rerun it: {rerun}"
        )
    task = TASKS.get(spec["task"])
    if list(task.classes) != list(record["classes"]):
        raise FetalbenchError(
            f"task {task.name} now has classes {list(task.classes)}, the record "
            f"{record['classes']}; rerun it: {rerun}"
        )
    data = prepare_run_data(source, task, spec["fraction"], spec["seed"],
                            profile.validation_fraction, spec["pool"], profile.resolution,
                            cache_root, spec["validation"])
    test_images, labels = data.test_images(), data.test_labels
    explanation = explain_test_set(classifier, test_images, labels, data.test_patients,
                                   spec["seed"], profile.channels_last, data.test_masks(),
                                   profile.precision)
    predictions = predict(classifier, test_images, profile.channels_last,
                          precision=profile.precision)
    sample = sample_per_class(labels, per_class, spec["seed"])
    cams = grad_cam(classifier, test_images[sample], torch.tensor(labels[sample], dtype=torch.long),
                    channels_last=profile.channels_last, precision=profile.precision)
    synthetic = f" (synthetic {dataset.name})" if record["dataset"]["synthetic"] else ""
    title = (f"{spec['method']} ({spec['protocol']}) on {spec['task']}{synthetic}, "
             f"fraction {spec['fraction']:g}, seed {spec['seed']}")
    out_dir = Path(out_dir)
    gradcam_path, tsne_path = out_dir / GRADCAM_NAME, out_dir / TSNE_NAME
    plot_gradcam(test_images[sample, 0].numpy(), cams.numpy(), labels[sample],
                 predictions[sample], task.classes, f"Grad-CAM for the true class: {title}",
                 gradcam_path)
    plot_tsne(tsne_coordinates(explanation.embeddings, spec["seed"]), labels, task.classes,
              f"t-SNE of test embeddings: {title}", tsne_path)
    return ExplainOutcome(gradcam_path, tsne_path, explanation)
