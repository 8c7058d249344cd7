"""One run end to end: data, split, method, test metrics, record.

Under the ``finetune`` protocol the method trains a classifier, which is tested, explained and
saved; under ``linear`` the method gives its frozen encoder, whose cached features are evaluated
linearly with k-NN beside it (:mod:`fetalbench.methods.linear_evaluation`; no checkpoint: the
encoder's weights are named in the record's ``encoder`` section, the head is refitted in
seconds). Every record names its split's checksum (``split.checksum``, what ``fetalbench
splits`` writes beside the image lists)."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl

from fetalbench.data.prepare import RunData, prepare_run_data
from fetalbench.data.sources import DatasetSource, open_source
from fetalbench.data.split_files import split_checksum
from fetalbench.data.tasks import TASKS
from fetalbench.explain.embedding import embedding_scores
from fetalbench.explain.explain import explain_test_set
from fetalbench.methods import METHODS
from fetalbench.methods.api import FrozenEncoder, MethodContext, MethodResult
from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.engine import predict
from fetalbench.methods.execution import SINGLE_PROCESS, Execution, launched_rank
from fetalbench.methods.features import task_features
from fetalbench.methods.linear_evaluation import linear_evaluation
from fetalbench.paths import cache_relative
from fetalbench.runs.checkpoints import CHECKPOINTS_DIR, checkpoint_path, save_classifier
from fetalbench.runs.code_version import method_code_version
from fetalbench.runs.learning import learning_section
from fetalbench.runs.metrics import (
    classification_metrics,
    per_image_predictions,
    per_machine_metrics,
)
from fetalbench.runs.records import git_revision, new_record, read_record_status, write_record
from fetalbench.runs.spec import RunRequest, RunSpec, resolve_spec, validate_request
from fetalbench.storage.locks import describe_holder, lock_path, locked


@dataclass(frozen=True)
class RunOutcome:
    """Where the record is, and whether this call wrote it or found it already there."""

    record_path: Path
    reused: bool
    record: dict | None


def execute_run(
    request: RunRequest,
    out_dir: Path,
    cache_root: Path,
    log: Callable[[str], None] = print,
    force: bool = False,
    checkpoint_dir: Path | Literal["cache"] | None = "cache",
    execution: Execution = SINGLE_PROCESS,
    notice: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run ``request`` and write its record under ``out_dir``; reuse an existing record.

    A successful record already written for the same spec is left untouched and returned,
    unless ``force``; a failed one is run again. The trained classifier is saved as safetensors
    under ``checkpoint_dir`` (``"cache"``: ``<cache_root>/checkpoints``; None: not saved) and the
    record's ``checkpoint`` says where. Besides the classification metrics, the record gets
    ``metrics.embedding`` (silhouette, k-NN accuracy of the test embeddings) and, when the dataset
    has structure masks, ``metrics.localisation`` (Grad-CAM pointing game); see
    :mod:`fetalbench.explain`.

    The run holds the lock ``<record>.lock`` (:mod:`fetalbench.storage.locks`) from the record
    check to the record write, so two processes never run one spec at once: a run locked by a
    live process raises :class:`~fetalbench.storage.locks.LockedElsewhere`; one left by a dead
    process is taken over, which is said through ``notice`` (default: ``log``), so a grid that
    silences ``log`` still shows it. The record's ``checkpoint_sha256`` lets loaders detect a
    corrupt checkpoint.

    ``execution`` trains on several devices or nodes (Lightning DDP; the record's ``execution``
    section says how, outside the spec hash). Every rank calls this function; a rank other than
    0 trains beside rank 0 and returns ``record=None``: only rank 0 takes the lock, tests, saves
    the checkpoint and writes the record.
    """
    validate_request(request)
    git_revision()
    method_code_version(request.method)
    execution.apply_threads()
    started = time.perf_counter()
    source = open_source(request.dataset, request.data_root, cache_root)
    identity = source.identity
    if identity.synthetic:
        log(f"dataset: phantom (SYNTHETIC images, not FETAL_PLANES_DB) at {identity.root}")
    else:
        log(f"dataset: {identity.name} at {identity.root} ({identity.n_images} images)")
    spec = resolve_spec(request, source)
    record_path = spec.record_path(out_dir)
    if launched_rank(execution.devices) != 0:
        if force or read_record_status(record_path) != "ok":
            _train_and_record(spec, source, cache_root, log, None, started, execution)
        return RunOutcome(record_path, reused=False, record=None)
    with locked(lock_path(record_path)) as lock:
        if lock.took_over:
            (notice or log)(f"taking over the lock of {describe_holder(lock.took_over)}, which "
                            f"is no longer running: {record_path}")
        if read_record_status(record_path) == "ok" and not force:
            log(f"record exists for this spec, not rerun (use --force to rerun): {record_path}")
            return RunOutcome(record_path, reused=True, record=None)
        log(f"executing run {spec.hash()} in pid {os.getpid()} on {socket.gethostname()}")
        record = _train_and_record(spec, source, cache_root, log, checkpoint_dir, started,
                                   execution)
        write_record(record_path, record)
    return RunOutcome(record_path, reused=False, record=record)


def _train_and_record(
    spec: RunSpec,
    source: DatasetSource,
    cache_root: Path,
    log: Callable[[str], None],
    checkpoint_dir: Path | Literal["cache"] | None,
    started: float,
    execution: Execution,
) -> dict | None:
    """Train and test the run of ``spec`` (its lock held by the caller); its record (None on a
    DDP rank other than 0, which only trains)."""
    method, task, identity = METHODS.get(spec.method), TASKS.get(spec.task), source.identity
    prepared = prepare_run_data(source, task, spec.fraction, spec.seed,
                                spec.profile.validation_fraction, spec.pool,
                                spec.profile.resolution, cache_root, spec.validation,
                                spec.patients_per_class)
    rows, split, data = prepared.rows, prepared.split, prepared.task_data()
    pool = data.unlabelled_images
    log(
        f"{spec.method} on {spec.task}: {len(split.labelled)} labelled, "
        f"{len(split.validation)} validation ({spec.validation}), {len(pool)} unlabelled "
        f"({spec.pool} pool), "
        f"{len(split.test)} test images at {spec.profile.resolution}px"
    )
    data_seconds = time.perf_counter() - started
    context = MethodContext(spec, data, cache_root, log, execution)
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    if spec.protocol == "linear":
        frozen = method.encoder(context)
        trained = time.perf_counter()
        tested = _evaluate_frozen(frozen, context, prepared)
    else:
        result = method.train(context)
        if launched_rank(execution.devices) != 0:
            return None
        trained = time.perf_counter()
        tested = _fine_tune(result, context, prepared, checkpoint_dir)
    finished = time.perf_counter()
    predictions = tested.predictions
    metrics = classification_metrics(prepared.test_labels, predictions, task.classes)
    metrics["per_machine"] = per_machine_metrics(prepared.test_labels, predictions,
                                                 prepared.test_machines)
    metrics.update(tested.metrics)
    return new_record(
        spec,
        status="ok",
        code_version=method_code_version(spec.method),
        dataset=identity.as_record(),
        classes=list(task.classes),
        metrics=metrics,
        test_predictions=per_image_predictions(prepared.test_labels, predictions,
                                               prepared.test_names, prepared.test_patients),
        checkpoint=(None if tested.checkpoint is None
                    else cache_relative(tested.checkpoint, cache_root)),
        checkpoint_sha256=tested.checkpoint_sha256,
        method_notes=tested.notes,
        encoder=tested.encoder,
        learning=learning_section(context.checks),
        execution=execution.as_record(),
        split={
            "labelled": len(split.labelled),
            "train": len(split.train),
            "validation": len(split.validation),
            "test": len(split.test),
            "unlabelled_pool": len(pool),
            "labelled_patients": int(rows.iloc[split.labelled]["patient"].nunique()),
            "checksum": split_checksum(prepared.split_lists()),
        },
        timings={
            "data_s": round(data_seconds, 3),
            "train_s": round(trained - started - data_seconds, 3),
            **tested.timings,
            "total_s": round(finished - started, 3),
        },
    )


@dataclass(frozen=True)
class _Tested:
    """What a protocol hands the record: test predictions, metrics beyond the classification
    metrics, notes, the encoder it started from or evaluated, its checkpoint, its timings."""

    predictions: np.ndarray
    metrics: dict
    notes: dict
    encoder: dict
    checkpoint: Path | None
    checkpoint_sha256: str | None
    timings: dict


def _encoder_section(backbone: GrayscaleBackbone, resolution: int) -> dict:
    """The record's ``encoder``: the weights a run starts from (fine-tuning) or evaluates
    (linear), and how images reach them."""
    return {"weights": backbone.weights.as_record(),
            "preprocessing": backbone.preprocessing(resolution)}


def _fine_tune(result: MethodResult, context: MethodContext, prepared: RunData,
               checkpoint_dir: Path | Literal["cache"] | None) -> _Tested:
    """Test, explain and save the classifier a method trained."""
    spec, started = context.spec, time.perf_counter()
    test_images = prepared.test_images()
    predictions = predict(result.classifier, test_images, spec.profile.channels_last,
                          precision=spec.profile.precision)
    tested = time.perf_counter()
    explanation = explain_test_set(result.classifier, test_images, prepared.test_labels,
                                   prepared.test_patients, spec.seed,
                                   spec.profile.channels_last, prepared.test_masks(),
                                   spec.profile.precision)
    explained = time.perf_counter()
    if checkpoint_dir == "cache":
        checkpoint_dir = Path(context.cache_root) / CHECKPOINTS_DIR
    checkpoint = None if checkpoint_dir is None else checkpoint_path(spec, checkpoint_dir)
    checkpoint_sha256 = None
    if checkpoint is not None:
        checkpoint_sha256 = save_classifier(result.classifier, checkpoint, spec.hash())
        context.log(f"checkpoint: {checkpoint}")
    backbone = result.classifier.backbone
    encoder = (_encoder_section(backbone, spec.profile.resolution)
               if isinstance(backbone, GrayscaleBackbone) else {})
    return _Tested(predictions, explanation.metrics(), result.notes, encoder, checkpoint,
                   checkpoint_sha256, {"test_s": round(tested - started, 3),
                                       "explain_s": round(explained - tested, 3)})


def _evaluate_frozen(frozen: FrozenEncoder, context: MethodContext, prepared: RunData) -> _Tested:
    """The linear evaluation of a method's frozen encoder
    (:mod:`fetalbench.methods.linear_evaluation`) on features of the task's images at the
    encoder's resolution (the profile's when it has none), cached once per encoder and task
    (:mod:`fetalbench.methods.features`)."""
    spec, split, started = context.spec, prepared.split, time.perf_counter()
    encoder = frozen.encoder
    features, key, reused = task_features(encoder, prepared, context.cache_root, context.log)
    resolution = encoder.resolution or prepared.resolution
    embedded = time.perf_counter()
    classes = prepared.task.classes
    evaluation = linear_evaluation(features, prepared.labels, split.labelled, split.validation,
                                   split.test, len(classes))
    context.checks.append(evaluation.check(len(classes)))
    knn = classification_metrics(prepared.test_labels, evaluation.knn_predictions, classes)
    scores = embedding_scores(features[split.test], prepared.test_labels,
                              prepared.test_patients, spec.seed)
    fitted = time.perf_counter()
    notes = {**frozen.notes, "weights": encoder.weights.source, "features_reused": reused,
             "encoder_state_sha256": key["encoder_sha256"], **evaluation.notes()}
    metrics = {"knn": {name: knn[name] for name in ("macro_f1", "accuracy", "balanced_accuracy")},
               "embedding": dataclasses.asdict(scores)}
    return _Tested(evaluation.predictions, metrics, notes, _encoder_section(encoder, resolution),
                   None, None, {"features_s": round(embedded - started, 3),
                                "test_s": round(fitted - embedded, 3)})
