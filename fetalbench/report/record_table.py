"""Run records -> pandas: every record under a results folder, validated, one row per run.

A cell of the benchmark is (dataset, task, method, protocol, backbone, validation setting, label
budget); its seeds are the repeated runs that the leaderboard aggregates (a record made
before the spec had a validation setting used the whole carve-out: ``fixed``). The backbone is
the spec's profile's (``--backbone`` replaces it there). The label budget is a fraction
(``budget`` ``fraction``: ``fraction`` in (0, 1], ``patients`` NaN) or k patients per class
(``budget`` ``patients``, ``fetalbench run --patients K``: ``patients`` k, ``fraction`` NaN).
Loading refuses
anything that would make a cell ambiguous: a malformed record, two records of one spec or of one
cell and seed, or records of one cell made with different settings (profile, unlabelled pool,
dataset fingerprint); and a record that fails a check of ``fetalbench validate``
(:mod:`fetalbench.runs.validation`). Every error names the file(s) and what to do. A record's
dataset must be registered (:data:`fetalbench.data.sources.DATASETS`) and its
``dataset.synthetic`` flag the registered one.
The dataset is part of every key, so synthetic (the phantom) and real (FETAL_PLANES_DB) rows never
share a cell.

Besides the metrics, a row carries what the report needs beyond them: the labelled training and
validation images of the run (``labelled``, ``validation_labelled``: the validation images choose
the checkpoint), each test image's label and prediction as the record's base-36 strings
(``test_labels``, ``test_predicted``) with the sha256 of the test set's order (``test_order``)
and its patient (``test_patients``, from the record or, for schema 3, the committed test manifest
of its dataset version: :mod:`fetalbench.data.test_manifests`), and macro F1 per ultrasound
machine (``per_machine``: machine -> (macro F1, test images)), with None there where a record
lacks them and NaN image counts where its split lacks them. ``profile_digest`` names the
profile by content (the first 12 hex digits of the sha256 of its canonical JSON) and a
successful row's ``code_version`` the method's code (:mod:`fetalbench.runs.code_version`; for
schema 3, ``git`` and the record's revision), so a table can hold one setup
(:mod:`fetalbench.report.setup`).

A row also carries whether its run learned (:mod:`fetalbench.runs.learning`): ``learning``, the
run's verdict (``learned``, ``still improving``, ``did not learn`` or ``not checked``), and
``learned``, whether that verdict is ``learned``; ``unlearned_stages``, the names of the stages
whose verdict is not ``learned``; and, for a method with a self-supervised stage (a pre-training
stage, named ``pre-training <objective>``, or the dual task's ``dual task: NT-Xent`` term), that
stage's name, final loss, chance level (and its rule), k-NN probe balanced accuracy before and
after, and verdict (``pretraining_*``; None or NaN for a method without one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fetalbench.data.sources import DATASETS
from fetalbench.data.splits import VALIDATION_SETTINGS
from fetalbench.data.test_manifests import patient_manifest
from fetalbench.errors import FetalbenchError
from fetalbench.methods.registry import PROTOCOLS
from fetalbench.runs.learning import LEARNED, NOT_CHECKED, VERDICTS
from fetalbench.runs.records import READABLE_SCHEMAS, SCHEMA_VERSION, record_files
from fetalbench.runs.spec import spec_hash
from fetalbench.runs.validation import validate_record

FRACTION, PATIENTS = "fraction", "patients"
"""The kinds of label budget (a row's ``budget``)."""
CELL = ("dataset", "task", "method", "protocol", "backbone", "validation", "budget", "fraction",
        "patients")
EXTRA_METRICS = {"silhouette": "embedding", "knn_accuracy": "embedding",
                 "pointing_game": "localisation"}
RUN_COLUMNS = ("method", "task", "dataset", "synthetic", "budget", "fraction", "patients", "seed",
               "protocol", "backbone", "validation", "pool", "profile", "profile_digest",
               "dataset_fingerprint", "spec_hash", "path")
LEARNING_COLUMNS = ("learning", "learned", "unlearned_stages", "pretraining_stage",
                    "pretraining_loss", "pretraining_chance", "pretraining_chance_rule",
                    "pretraining_probe_start", "pretraining_probe_end", "pretraining_verdict")
"""What a successful row says of its run's learning checks (see the module docstring)."""
OK_COLUMNS = (*RUN_COLUMNS, "macro_f1", "accuracy", "balanced_accuracy", "sensitivity",
              "precision", "classes", *EXTRA_METRICS, "labelled", "validation_labelled",
              "test_labels", "test_predicted", "test_order", "test_patients", "code_version",
              "per_machine", *LEARNING_COLUMNS)
SELF_SUPERVISED_TERMS = ("dual task: NT-Xent",)
"""Stages that train a backbone without labels besides those named ``pre-training ...``."""
FAILED_COLUMNS = (*RUN_COLUMNS, "error")


@dataclass(frozen=True, eq=False)
class RecordSet:
    """The records of a results folder: successful runs (``ok``) and failed runs (``failed``).

    Rows are sorted by cell and seed; ``path`` is the record's path relative to the results folder.
    """

    ok: pd.DataFrame
    failed: pd.DataFrame


@dataclass(frozen=True)
class _Loaded:
    """One validated record: its table row and what the duplicate checks compare."""

    file: Path
    row: dict
    setup: str


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_KINDS = {
    "a number": _is_number,
    "a whole number": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "text": lambda value: isinstance(value, str),
    "true or false": lambda value: isinstance(value, bool),
    "an object": lambda value: isinstance(value, dict),
    "a list": lambda value: isinstance(value, list),
}


class _RecordReader:
    """Validates one record's fields; every problem is a one-line error naming the file."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, problem: str) -> FetalbenchError:
        return FetalbenchError(
            f"malformed run record {self.file}: {problem}; fix or delete the file "
            f"(rerunning the run writes it again)"
        )

    def field(self, mapping: dict, key: str, kind: str, where: str) -> object:
        """``mapping[key]``, which must be of ``kind`` (a key of :data:`_KINDS`)."""
        if key not in mapping:
            raise self.fail(f"{where}{key} is missing")
        value = mapping[key]
        if not _KINDS[kind](value):
            raise self.fail(f"{where}{key} must be {kind}, got {value!r:.60}")
        return value

    def choice(self, mapping: dict, key: str, choices: tuple[str, ...], where: str) -> str:
        value = self.field(mapping, key, "text", where)
        if value not in choices:
            raise self.fail(f"{where}{key} is {value!r}; expected one of {', '.join(choices)}")
        return value

    def optional_metric(self, metrics: dict, section: str, key: str) -> float:
        block = metrics.get(section)
        if block is None:
            return math.nan
        if not isinstance(block, dict):
            raise self.fail(f"metrics.{section} must be an object")
        if block.get(key) is None:
            return math.nan
        return float(self.field(block, key, "a number", f"metrics.{section}."))

    def per_class(self, metrics: dict, key: str, classes: list[str]) -> dict[str, float]:
        values = self.field(metrics, key, "an object", "metrics.")
        if sorted(values) != sorted(classes) or not all(map(_is_number, values.values())):
            raise self.fail(f"metrics.{key} must map each of the classes {classes} to a number")
        return {name: float(values[name]) for name in classes}

    def read(self, root: Path) -> _Loaded:
        try:
            record = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise self.fail(f"cannot be read ({error})") from None
        except json.JSONDecodeError as error:
            raise self.fail(f"not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise self.fail("the top level must be a JSON object")
        schema = self.field(record, "schema", "a whole number", "")
        if schema not in READABLE_SCHEMAS:
            raise self.fail(f"schema {schema} is not one this version reads "
                            f"({', '.join(map(str, READABLE_SCHEMAS))})")
        spec = self.field(record, "spec", "an object", "")
        row = {
            "method": self.field(spec, "method", "text", "spec."),
            "task": self.field(spec, "task", "text", "spec."),
            "dataset": self.choice(spec, "dataset", tuple(DATASETS.names()), "spec."),
            **self.budget(spec),
            "seed": self.field(spec, "seed", "a whole number", "spec."),
            "protocol": self.choice(spec, "protocol", PROTOCOLS, "spec."),
            "validation": (self.choice(spec, "validation", VALIDATION_SETTINGS, "spec.")
                           if "validation" in spec else "fixed"),
            "pool": self.field(spec, "pool", "text", "spec."),
            "dataset_fingerprint": self.field(spec, "dataset_fingerprint", "text", "spec."),
        }
        profile = self.field(spec, "profile", "an object", "spec.")
        row["profile"] = self.field(profile, "name", "text", "spec.profile.")
        row["profile_digest"] = spec_hash(profile)[:12]
        row["backbone"] = self.field(profile, "backbone", "text", "spec.profile.")
        row["spec_hash"] = self.field(record, "spec_hash", "text", "")
        row["path"] = self.file.relative_to(root).as_posix()
        dataset = self.field(record, "dataset", "an object", "")
        row["synthetic"] = self.field(dataset, "synthetic", "true or false", "dataset.")
        if self.field(dataset, "name", "text", "dataset.") != row["dataset"]:
            raise self.fail(f"dataset.name {dataset['name']!r} differs from spec.dataset")
        if row["synthetic"] != DATASETS.get(row["dataset"]).synthetic:
            raise self.fail(f"dataset.synthetic is {row['synthetic']} for {row['dataset']!r}")
        if self.field(dataset, "fingerprint", "text", "dataset.") != row["dataset_fingerprint"]:
            raise self.fail("dataset.fingerprint differs from spec.dataset_fingerprint")
        status = self.choice(record, "status", ("ok", "failed"), "")
        if status == "failed":
            row["error"] = self.field(record, "error", "text", "")
        else:
            row.update(self.metrics(record))
            row["test_patients"] = self.patients(record, row)
            row["code_version"] = (self.field(record, "code_version", "text", "")
                                   if schema == SCHEMA_VERSION else self.git_version(record))
        self.refuse_invalid(record, root)
        setup = json.dumps([profile, row["pool"], row["dataset_fingerprint"]], sort_keys=True)
        return _Loaded(self.file, row, setup)

    def budget(self, spec: dict) -> dict:
        """The label budget: a fraction in (0, 1], or k patients per class (``fraction``
        null)."""
        if spec.get("patients_per_class") is None:
            fraction = float(self.field(spec, "fraction", "a number", "spec."))
            if not 0 < fraction <= 1:
                raise self.fail(f"spec.fraction {fraction} is not in (0, 1]")
            return {"budget": FRACTION, "fraction": fraction, "patients": math.nan}
        patients = self.field(spec, "patients_per_class", "a whole number", "spec.")
        if patients < 1 or spec.get("fraction") is not None:
            raise self.fail(f"spec.patients_per_class {patients} needs to be at least 1 with "
                            "spec.fraction null")
        return {"budget": PATIENTS, "fraction": math.nan, "patients": float(patients)}

    def git_version(self, record: dict) -> str:
        """A schema-3 record's code version: ``git`` and its revision (``-dirty`` when the work
        tree had changes), the finest it can say."""
        git = record.get("git")
        revision = git.get("revision") if isinstance(git, dict) else None
        if not isinstance(revision, str):
            return "git unknown"
        return f"git {revision[:12]}" + ("-dirty" if git.get("dirty") else "")

    def patients(self, record: dict, row: dict) -> str:
        """The test images' patients: the record's (schema 4) or its test manifest's."""
        if record["schema"] == SCHEMA_VERSION:
            return self.field(record["test_predictions"], "patients", "text",
                              "test_predictions.")
        manifest = patient_manifest(row["dataset"], row["dataset_fingerprint"], row["task"])
        if manifest is None:
            raise self.fail(f"schema {record['schema']} without a committed test manifest of "
                            f"its dataset version")
        return manifest.patients

    def refuse_invalid(self, record: dict, root: Path) -> None:
        """Raise naming the first check of :func:`~fetalbench.runs.validation.validate_record` that
        the (well-formed) record fails."""
        findings = validate_record(record)
        if findings:
            raise FetalbenchError(
                f"run record {self.file} fails the {findings[0].check} check "
                f"({findings[0].problem}); run `fetalbench validate {root}` to list every "
                f"failing record, then fix or remove them"
            )

    def metrics(self, record: dict) -> dict:
        classes = self.field(record, "classes", "a list", "")
        if not classes or not all(isinstance(name, str) for name in classes):
            raise self.fail("classes must be a non-empty list of class names")
        metrics = self.field(record, "metrics", "an object", "")
        values = {key: float(self.field(metrics, key, "a number", "metrics."))
                  for key in ("macro_f1", "accuracy", "balanced_accuracy")}
        return {
            **values,
            "sensitivity": self.per_class(metrics, "sensitivity", classes),
            "precision": self.per_class(metrics, "precision", classes),
            "classes": tuple(classes),
            **{key: self.optional_metric(metrics, section, key)
               for key, section in EXTRA_METRICS.items()},
            **self.split_sizes(record),
            **self.predictions(record),
            "per_machine": self.per_machine(metrics),
            **self.learning(record),
        }

    def learning(self, record: dict) -> dict:
        """The run's learning verdict and its self-supervised stage's numbers (the first stage
        of kind ``self-supervised`` named ``pre-training ...`` or a listed term)."""
        section = self.field(record, "learning", "an object", "")
        verdict = self.choice(section, "verdict", (*VERDICTS, NOT_CHECKED), "learning.")
        stages = self.field(section, "stages", "a list", "learning.")
        unlearned, pretraining = [], None
        for index, stage in enumerate(stages):
            where = f"learning.stages[{index}]."
            if not isinstance(stage, dict):
                raise self.fail(f"{where[:-1]} must be an object")
            name = self.field(stage, "name", "text", where)
            kind = self.field(stage, "kind", "text", where)
            if self.choice(stage, "verdict", VERDICTS, where) != LEARNED:
                unlearned.append(name)
            if pretraining is None and kind == "self-supervised" and (
                    name.startswith("pre-training") or name in SELF_SUPERVISED_TERMS):
                pretraining = (stage, where)
        row = {"learning": verdict, "learned": verdict == LEARNED,
               "unlearned_stages": tuple(unlearned), "pretraining_stage": None,
               "pretraining_loss": math.nan, "pretraining_chance": math.nan,
               "pretraining_chance_rule": None, "pretraining_probe_start": math.nan,
               "pretraining_probe_end": math.nan, "pretraining_verdict": None}
        if pretraining is None:
            return row
        stage, where = pretraining

        def number(key: str) -> float:
            value = stage.get(key)
            return math.nan if value is None else float(self.field(stage, key, "a number", where))

        rule = stage.get("chance_rule")
        return row | {
            "pretraining_stage": stage["name"], "pretraining_loss": number("final_loss"),
            "pretraining_chance": number("chance_loss"),
            "pretraining_chance_rule": rule if isinstance(rule, str) else None,
            "pretraining_probe_start": number("probe_start"),
            "pretraining_probe_end": number("probe_end"),
            "pretraining_verdict": stage["verdict"],
        }

    def split_sizes(self, record: dict) -> dict[str, float]:
        split = record.get("split")
        split = split if isinstance(split, dict) else {}
        return {column: float(self.field(split, key, "a whole number", "split."))
                if key in split else math.nan
                for column, key in (("labelled", "labelled"), ("validation_labelled",
                                                              "validation"))}

    def predictions(self, record: dict) -> dict[str, str | None]:
        block = record.get("test_predictions")
        if block is None:
            return {"test_labels": None, "test_predicted": None, "test_order": None}
        if not isinstance(block, dict):
            raise self.fail("test_predictions must be an object")
        return {column: self.field(block, key, "text", "test_predictions.")
                for column, key in (("test_labels", "labels"), ("test_predicted", "predicted"),
                                    ("test_order", "order_sha256"))}

    def per_machine(self, metrics: dict) -> dict[str, tuple[float, int]] | None:
        block = metrics.get("per_machine")
        if block is None:
            return None
        if not isinstance(block, dict):
            raise self.fail("metrics.per_machine must be an object")
        scores = {}
        for machine, values in sorted(block.items()):
            where = f"metrics.per_machine.{machine}."
            if not isinstance(values, dict):
                raise self.fail(f"{where[:-1]} must be an object")
            scores[machine] = (float(self.field(values, "macro_f1", "a number", where)),
                               self.field(values, "n_test", "a whole number", where))
        return scores


def _refuse_duplicates(loaded: list[_Loaded]) -> None:
    """Two records of one spec, or of one cell and seed, or one cell with mixed settings."""
    by_hash: dict[str, Path] = {}
    by_run: dict[tuple, Path] = {}
    by_cell: dict[tuple, _Loaded] = {}
    for item in loaded:
        row = item.row
        other = by_hash.setdefault(row["spec_hash"], item.file)
        if other != item.file:
            raise FetalbenchError(
                f"duplicate run records {other} and {item.file} (same spec_hash "
                f"{row['spec_hash']}); delete one of them"
            )
        cell = tuple(None if _is_number(row[key]) and math.isnan(row[key]) else row[key]
                     for key in CELL)
        other = by_run.setdefault((*cell, row["seed"]), item.file)
        if other != item.file:
            raise FetalbenchError(
                f"duplicate run records {other} and {item.file} (same dataset, task, method, "
                f"protocol, backbone, validation, label budget and seed {row['seed']}); delete "
                "the one you do not want"
            )
        first = by_cell.setdefault(cell, item)
        if first.setup != item.setup:
            raise FetalbenchError(
                f"run records {first.file} and {item.file} are one cell "
                f"({', '.join(str(key) for key in cell if key is not None)}) but differ in "
                "profile, unlabelled pool or dataset fingerprint; keep one setting per cell "
                "(delete or move the others)"
            )


def load_records(results_dir: Path) -> RecordSet:
    """Read and validate every run record under ``results_dir``; see the module docstring."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FetalbenchError(
            f"results folder {root} does not exist; run `fetalbench grid` to write records there "
            f"or pass --results DIR"
        )
    loaded = [_RecordReader(path).read(root) for path in record_files(root)]
    _refuse_duplicates(loaded)
    rows = [item.row for item in loaded]
    order = [*CELL, "seed"]

    def table(selected: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
        frame = pd.DataFrame(selected, columns=list(columns))
        return frame.sort_values(order, kind="stable").reset_index(drop=True)

    return RecordSet(
        ok=table([row for row in rows if "error" not in row], OK_COLUMNS),
        failed=table([row for row in rows if "error" in row], FAILED_COLUMNS),
    )
