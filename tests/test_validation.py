"""Portable records, `fetalbench records migrate` and `fetalbench validate` (and the leaderboard's
refusal of records that fail it)."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REAL_CSV
from fetalbench.cli import main
from fetalbench.data.fetal_planes_db import (
    OFFICIAL_CSV_SHA256,
    OFFICIAL_TEST_IMAGES,
)
from fetalbench.data.tasks import TASKS
from fetalbench.data.test_manifests import patient_manifest
from fetalbench.runs.code_version import method_code_version
from fetalbench.runs.execute import execute_run
from fetalbench.runs.migration import portable_record
from fetalbench.runs.records import SCHEMA_VERSION, record_files, write_record
from fetalbench.runs.spec import RunRequest, spec_hash
from fetalbench.runs.validation import validate_record
from fetalbench.storage.digests import file_sha256

REPOSITORY = Path(__file__).resolve().parents[1]
COMMITTED = REPOSITORY / "results"


def strings(value: object) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        return [*value, *(text for item in value.values() for text in strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [value] if isinstance(value, str) else []


def committed_record() -> tuple[Path, dict]:
    """A committed record (of a two-stage method when there is one) and its contents."""
    paths = record_files(COMMITTED)
    assert paths, "results/ holds no record"
    records = [(path, json.loads(path.read_text())) for path in paths]
    return next(((path, record) for path, record in records
                 if "pretraining" in record["method_notes"]), records[0])


def checks(record: dict) -> set[str]:
    return {finding.check for finding in validate_record(record)}


@pytest.fixture(scope="module")
def fresh_run(real_subset_root: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[dict, Path, Path]:
    """A run with a pre-training stage, written now: its record, results folder and cache."""
    out, cache = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("cache")
    request = RunRequest(method="simclr", task="planes", dataset="fetal_planes_db",
                         data_root=real_subset_root, profile="tiny")
    return execute_run(request, out, cache, log=lambda _: None).record, out, cache


# --- portable records ---------------------------------------------------------------------------


def test_a_fresh_record_names_nothing_of_the_machine_that_made_it(fresh_run, real_subset_root):
    record, out, cache = fresh_run
    (path,) = out.rglob("*.json")
    text = path.read_text()
    machine = [str(cache), str(cache.resolve()), str(real_subset_root),
               str(real_subset_root.resolve()), tempfile.gettempdir(), str(Path.home())]
    assert not [text for text in strings(json.loads(text)) if text.startswith("/")]
    assert not [place for place in machine if place in text]
    assert socket.gethostname() not in strings(record)
    assert "root" not in record["dataset"] and "host" not in record["executor"]
    assert record["dataset"]["csv_sha256"] == file_sha256(real_subset_root / REAL_CSV.name)
    # the cache root resolves what the record names
    assert record["checkpoint"].startswith("checkpoints/fetal_planes_db/planes/simclr/")
    assert (cache / record["checkpoint"]).is_file()
    pretrained = record["method_notes"]["pretraining"]["checkpoint"]
    assert pretrained.startswith("pretrain/") and (cache / pretrained).is_file()


def test_migrate_rewrites_old_records_once_and_keeps_everything_else(tmp_path: Path, capsys):
    path, portable = committed_record()
    old = copy.deepcopy(portable)
    old["checkpoint"] = f"/home/someone/.cache/fetalbench/{portable['checkpoint']}"
    if "pretraining" in portable["method_notes"]:
        old["method_notes"]["pretraining"]["checkpoint"] = (
            f"/scratch/c/{portable['method_notes']['pretraining']['checkpoint']}")
    old["dataset"]["root"] = "/home/someone/.cache/fetalbench/phantom-v1-0123"
    old["executor"]["host"] = "node17"
    results = tmp_path / "results"
    old_path = results / path.relative_to(COMMITTED)
    write_record(old_path, old)
    write_record(results / "portable.json", portable)
    assert checks(old) == {"portable"} and portable_record(old) == portable
    assert main(["validate", str(results)]) == 1
    assert "failed portable (it holds dataset.root, executor.host" in capsys.readouterr().out
    assert main(["records", "migrate", str(results)]) == 0
    assert capsys.readouterr().out.startswith("migrated 1 of 2 records")
    assert old_path.read_bytes() == path.read_bytes()
    assert main(["records", "migrate", str(old_path)]) == 0
    assert capsys.readouterr().out.startswith("migrated 0 of 1 records")
    assert main(["validate", str(results)]) == 0


def test_a_record_of_an_older_schema_is_refused_and_cannot_be_migrated(tmp_path: Path, capsys):
    """Schema 2 was trained under fixed step budgets and has no learning checks: only a rerun
    can give them, so validation refuses it and migration leaves it as it is."""
    _, current = committed_record()
    old = copy.deepcopy(current)
    del old["learning"]
    old["schema"] = 2
    write_record(tmp_path / "old.json", old)
    assert checks(old) == {"schema"}
    assert main(["records", "migrate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("migrated 0 of 1 records")
    assert main(["validate", str(tmp_path)]) == 1
    assert "schema 2 is not one this version reads (3, 4)" in capsys.readouterr().out


def test_a_learning_verdict_that_its_numbers_do_not_give_is_refused():
    _, record = committed_record()
    stage = record["learning"]["stages"][0]
    stage["final_loss"] = stage["chance_loss"] + 1.0  # at chance, yet still called what it was
    assert checks(record) == {"learning"}
    del record["learning"]
    assert checks(record) == {"learning"}


def test_a_fresh_record_keeps_every_test_prediction_and_its_machines(fresh_run):
    record, _, _ = fresh_run
    predictions, n_test = record["test_predictions"], record["split"]["test"]
    assert len(predictions["labels"]) == len(predictions["predicted"]) == n_test
    assert "migrated_from" not in record and checks(record) == {"official_csv", "official_split"}
    flipped = copy.deepcopy(record)
    wrong = "1" if predictions["predicted"][0] == "0" else "0"
    flipped["test_predictions"]["predicted"] = wrong + predictions["predicted"][1:]
    assert "test_predictions" in checks(flipped)
    short = copy.deepcopy(record)
    short["test_predictions"]["labels"] = predictions["labels"][1:]
    assert "test_predictions" in checks(short)
    machine = next(iter(record["metrics"]["per_machine"]))
    miscounted = copy.deepcopy(record)
    miscounted["metrics"]["per_machine"][machine]["n_test"] += 1
    assert "per_machine" in checks(miscounted)


def test_a_fresh_record_names_each_test_images_patient_and_its_code_version(fresh_run):
    record, _, _ = fresh_run
    assert record["schema"] == SCHEMA_VERSION
    patients = record["test_predictions"]["patients"].split()
    assert len(patients) == record["split"]["test"]
    assert record["code_version"] == method_code_version("simclr")
    assert method_code_version("simclr") != method_code_version("byol")
    missing = copy.deepcopy(record)
    missing["test_predictions"]["patients"] = " ".join(patients[1:])
    assert "patients" in checks(missing)
    unnamed = copy.deepcopy(record)
    unnamed["code_version"] = "v1"
    assert "code_version" in checks(unnamed)


def as_schema_3(record: dict) -> dict:
    """``record`` as schema 3 wrote it: no test patients, no code version (its ``git`` names
    the code), no weight change in its learning checks."""
    old = copy.deepcopy(record)
    old["schema"] = 3
    del old["test_predictions"]["patients"], old["code_version"]
    for stage in old["learning"]["stages"]:
        del stage["weight_change"]
    return old


def test_a_schema_3_record_reads_its_patients_from_the_committed_test_manifest():
    _, committed = committed_record()
    record = as_schema_3(committed)
    assert checks(record) == set()
    manifest = patient_manifest(record["spec"]["dataset"], record["spec"]["dataset_fingerprint"],
                             record["spec"]["task"])
    assert manifest.order_sha256 == record["test_predictions"]["order_sha256"]
    other = copy.deepcopy(record)
    other["test_predictions"]["order_sha256"] = "0" * 64
    assert checks(other) == {"patients"}
    unknown = copy.deepcopy(record)
    unknown["spec"]["dataset_fingerprint"] = unknown["dataset"]["fingerprint"] = "f" * 64
    unknown["spec_hash"] = spec_hash(unknown["spec"])
    assert checks(unknown) == {"patients"}


def test_a_profile_whose_content_is_not_the_registered_one_of_its_name_is_refused():
    """A record made under a shortened profile that kept the real one's name (its spec hash
    consistent) is refused; so is an unregistered profile name."""
    _, record = committed_record()
    record["spec"]["profile"]["finetune_max_steps"] = 10
    record["spec_hash"] = spec_hash(record["spec"])
    assert checks(record) == {"profile"}
    (finding,) = [f for f in validate_record(record) if f.check == "profile"]
    assert "is not the registered profile 'quick' (finetune_max_steps differ)" in finding.problem
    record["spec"]["profile"]["name"] = "mine"
    record["spec_hash"] = spec_hash(record["spec"])
    assert checks(record) == {"profile"}


def test_a_backbone_named_by_the_run_is_no_edited_profile():
    """``fetalbench run --backbone resnet18`` writes the backbone into the spec's profile: its
    record passes (the leaderboard puts it in tables of its own); an empty name does not."""
    _, record = committed_record()
    record["spec"]["profile"]["backbone"] = "resnet18"
    record["spec_hash"] = spec_hash(record["spec"])
    assert "profile" not in checks(record)
    record["spec"]["profile"]["backbone"] = ""
    record["spec_hash"] = spec_hash(record["spec"])
    assert checks(record) == {"profile"}


def test_a_checkpoint_outside_the_cache_stays_absolute_and_fails_validation():
    _, record = committed_record()
    record["checkpoint"] = "/elsewhere/run.safetensors"
    assert portable_record(record) == record
    assert checks(record) == {"portable"}


# --- fetalbench validate ------------------------------------------------------------------------


def test_committed_records_pass(tmp_path: Path, capsys):
    paths = record_files(COMMITTED)
    for path in paths:
        copy_path = tmp_path / path.relative_to(COMMITTED)
        copy_path.parent.mkdir(parents=True, exist_ok=True)
        copy_path.write_bytes(path.read_bytes())
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"validated {len(paths)} records: {len(paths)} ok\n"


def edited(tmp_path: Path, edit) -> Path:
    """A copy of a committed record with ``edit`` applied."""
    _, record = committed_record()
    edit(record)
    path = tmp_path / "results" / "edited.json"
    write_record(path, record)
    return path


@pytest.mark.parametrize(
    ("edit", "check"),
    [
        (lambda r: r["metrics"].update(macro_f1=r["metrics"]["macro_f1"] + 0.01), "macro_f1"),
        (lambda r: r["metrics"]["precision"].update(
            {r["classes"][0]: r["metrics"]["precision"][r["classes"][0]] / 2}), "precision"),
        (lambda r: r["metrics"].update(balanced_accuracy=1.0), "balanced_accuracy"),
        (lambda r: r["spec"].update(seed=r["spec"]["seed"] + 100), "spec_hash"),
        (lambda r: r["spec"]["profile"].update(finetune_max_steps=1), "spec_hash"),
        (lambda r: r["metrics"]["confusion_matrix"][0].__setitem__(
            0, r["metrics"]["confusion_matrix"][0][0] + 1), "confusion_matrix"),
        (lambda r: r["metrics"].update(confusion_matrix=[[1, 2], [3, 4]]), "confusion_matrix"),
        (lambda r: r.update(schema=5), "schema"),
        (lambda r: r.pop("split"), "numbers"),
    ],
)
def test_an_edited_record_is_refused_naming_the_check(tmp_path: Path, capsys, edit, check: str):
    path = edited(tmp_path, edit)
    assert main(["validate", str(path.parent)]) == 1
    failing, summary = capsys.readouterr().out.splitlines()
    assert failing.startswith(f"{path}: failed {check} (")
    assert summary == "validated 1 records: 0 ok, 1 failed"


def test_a_test_set_off_by_one_image_fails_only_the_counts(tmp_path: Path):
    _, record = committed_record()
    record["split"]["test"] += 1
    record["metrics"]["n_test"] += 1
    # the matrix, the per-image predictions and the test manifest's patients no longer add up
    # to it; the metrics themselves still agree with the matrix
    assert checks(record) == {"confusion_matrix", "test_predictions", "patients"}


def test_fetal_planes_db_records_must_be_on_the_official_csv_and_split(fresh_run):
    record, _, _ = fresh_run
    assert record["dataset"]["csv_sha256"] != OFFICIAL_CSV_SHA256  # a subset of the real CSV
    assert checks(record) == {"official_csv", "official_split"}
    official_csv = copy.deepcopy(record)
    official_csv["dataset"]["csv_sha256"] = OFFICIAL_CSV_SHA256
    assert checks(official_csv) == {"official_split"}
    official_size = copy.deepcopy(record)
    official_size["split"]["test"] = OFFICIAL_TEST_IMAGES["planes"]
    assert "official_split" not in checks(official_size)
    del official_csv["dataset"]["csv_sha256"]
    assert "official_csv" in checks(official_csv)


def test_validate_and_leaderboard_import_no_torch():
    code = ("import sys, fetalbench.runs.validation, fetalbench.runs.migration, "
            "fetalbench.report.leaderboard; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_official_constants_are_those_of_the_real_csv(real_catalog):
    assert file_sha256(REAL_CSV) == OFFICIAL_CSV_SHA256
    built_in = [name for name in TASKS if TASKS.source(name) == "fetalbench"]
    assert sorted(OFFICIAL_TEST_IMAGES) == sorted(built_in)
    for name in built_in:
        rows = TASKS.get(name).select(real_catalog)
        assert (~rows["train"]).sum() == OFFICIAL_TEST_IMAGES[name], name


# --- the leaderboard refuses what validate refuses ----------------------------------------------


def test_leaderboard_refuses_a_results_folder_with_a_bad_record(tmp_path: Path, capsys):
    results = tmp_path / "results"
    good, record = committed_record()
    write_record(results / good.relative_to(COMMITTED), record)
    output = tmp_path / "leaderboard.md"
    assert main(["leaderboard", "--results", str(results), "--output", str(output)]) == 0
    capsys.readouterr()
    bad = copy.deepcopy(record)
    bad["spec"]["seed"] += 100
    bad["spec_hash"] = spec_hash(bad["spec"])  # a consistent spec, but numbers edited
    bad["metrics"]["accuracy"] = 0.99
    bad_path = results / "phantom" / "bad.json"
    write_record(bad_path, bad)
    assert main(["leaderboard", "--results", str(results), "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert str(bad_path) in error and "fails the accuracy check" in error
    assert f"run `fetalbench validate {results}`" in error
    assert main(["leaderboard", "--check", "--results", str(results), "--output",
                 str(output)]) == 2
