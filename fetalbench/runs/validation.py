"""What a maintainer checks before accepting run records: ``fetalbench validate``.

A record passes when its schema is one this version reads (:data:`~fetalbench.runs.records.
READABLE_SCHEMAS`), its spec hash recomputes from its spec, its profile is the registered profile
of its name (:data:`fetalbench.profiles.PROFILES`, compared field by field but the backbone,
which ``fetalbench run --backbone NAME`` replaces there: a record made under a shortened or
edited profile that kept the real one's name is refused), it is portable (no
folder or host of the machine that made it), its numbers agree with each other (the confusion
matrix sums to the test images, and macro F1, per-class sensitivity and precision, accuracy and
balanced accuracy are what the matrix gives; the per-image test predictions give the matrix, and
the per-machine test images add up to the test set), each test image has a patient (schema 4:
in the record, with a code version; schema 3: in the committed test manifest of its dataset
version, whose image names give the record's test order,
:mod:`fetalbench.data.test_manifests`), it states whether each training stage learned with
verdicts its numbers give (:mod:`fetalbench.runs.learning`), and, on ``fetal_planes_db``,
it was measured on the official dataset (the official CSV's sha256, the official test split's
size for its task). ``fetalbench leaderboard`` refuses a record that fails
(:mod:`fetalbench.report.record_table`). Checks are plain functions from a record to its
findings; nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from fetalbench.data.fetal_planes_db import OFFICIAL_CSV_SHA256, OFFICIAL_TEST_IMAGES
from fetalbench.data.test_manifests import patient_manifest
from fetalbench.profiles import PROFILES
from fetalbench.runs.learning import check_learning_section
from fetalbench.runs.metrics import CLASS_DIGITS, confusion_metrics, decode_classes
from fetalbench.runs.records import READABLE_SCHEMAS, SCHEMA_VERSION, records_under
from fetalbench.runs.spec import spec_hash

TOLERANCE = 1e-9
MIGRATE = "run `fetalbench records migrate`"
RERUN = "rerun the run (`fetalbench run ... --force`); records are written, never edited"


@dataclass(frozen=True)
class Finding:
    """One failed check of one record: the check's name and what is wrong, in words."""

    check: str
    problem: str


@dataclass(frozen=True)
class RecordReport:
    """The findings of one record file; it passes when there are none."""

    path: Path
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def line(self) -> str:
        """``FILE: failed CHECK (problem); failed CHECK (problem)``, one line."""
        failed = "; ".join(f"failed {item.check} ({item.problem})" for item in self.findings)
        return f"{self.path}: {failed}"


@dataclass(frozen=True)
class Validation:
    """The reports of every record validated, in file order."""

    reports: tuple[RecordReport, ...]

    @property
    def failed(self) -> tuple[RecordReport, ...]:
        return tuple(report for report in self.reports if not report.ok)

    def summary(self) -> str:
        """``validated N records: K ok`` (and ``, F failed`` when some fail)."""
        total, failed = len(self.reports), len(self.failed)
        return (f"validated {total} records: {total - failed} ok"
                + (f", {failed} failed" if failed else ""))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _close(recorded: object, expected: float) -> bool:
    return _number(recorded) and math.isclose(recorded, expected, rel_tol=0.0, abs_tol=TOLERANCE)


def check_schema(record: dict) -> Iterator[Finding]:
    """The record's ``schema`` is one this version reads."""
    if record["schema"] not in READABLE_SCHEMAS:
        yield Finding("schema", f"schema {record['schema']!r} is not one this version reads "
                      f"({', '.join(map(str, READABLE_SCHEMAS))}); {RERUN}")


REPLACEABLE = ("backbone",)
"""Profile fields a run may set apart from its profile's: ``--backbone NAME`` (any timm model,
the spec naming it)."""


def check_profile(record: dict) -> Iterator[Finding]:
    """``spec.profile`` is, field by field, the registered profile of its name, but for the
    fields a run may replace (:data:`REPLACEABLE`), which must be non-empty text."""
    profile = record["spec"]["profile"]
    name = profile["name"]
    registered = PROFILES.get(name)
    if registered is None:
        yield Finding("profile", f"profile {name!r} is not registered (registered: "
                      f"{', '.join(PROFILES)}); {RERUN} under a registered profile")
        return
    expected = dataclasses.asdict(registered)
    differing = sorted(key for key in expected.keys() | profile.keys()
                       if profile.get(key) != expected.get(key) and not (
                           key in REPLACEABLE and isinstance(profile.get(key), str)
                           and profile[key]))
    if differing:
        yield Finding("profile", f"spec.profile is not the registered profile {name!r} "
                      f"({', '.join(differing)} differ): a record of a shortened or edited "
                      f"profile must not carry a registered name; {RERUN}")


def check_spec_hash(record: dict) -> Iterator[Finding]:
    """``spec_hash`` is the hash of ``spec`` (:func:`fetalbench.runs.records.spec_hash`)."""
    expected = spec_hash(record["spec"])
    if record["spec_hash"] != expected:
        yield Finding("spec_hash", f"spec_hash {record['spec_hash']!r} is not the hash of its "
                      f"spec ({expected}): the spec was edited; {RERUN}")


def _absolute(value: object) -> bool:
    return isinstance(value, str) and (PurePosixPath(value).is_absolute()
                                       or PureWindowsPath(value).is_absolute())


def check_portable(record: dict) -> Iterator[Finding]:
    """No folder or host name of the machine that made it (see :mod:`fetalbench.runs.records`)."""
    pretraining = (record.get("method_notes") or {}).get("pretraining") or {}
    found = [name for name, present in (
        ("dataset.root", "root" in (record.get("dataset") or {})),
        ("executor.host", "host" in (record.get("executor") or {})),
        ("an absolute checkpoint", _absolute(record.get("checkpoint"))),
        ("an absolute method_notes.pretraining.checkpoint",
         _absolute(pretraining.get("checkpoint"))),
    ) if present]
    if found:
        yield Finding("portable", f"it holds {', '.join(found)} of the machine that made it; "
                      f"{MIGRATE} (a checkpoint kept outside the cache stays absolute: rerun with "
                      "the default --checkpoint-dir)")


def check_numbers(record: dict) -> Iterator[Finding]:
    """A successful run's confusion matrix sums to its test images and gives its metrics."""
    if record["status"] != "ok":
        return
    classes, metrics, n_test = tuple(record["classes"]), record["metrics"], record["split"]["test"]
    confusion = metrics["confusion_matrix"]
    size = len(classes)
    if not (isinstance(confusion, list) and len(confusion) == size and all(
            isinstance(row, list) and len(row) == size
            and all(isinstance(count, int) and not isinstance(count, bool) and count >= 0
                    for count in row) for row in confusion)):
        yield Finding("confusion_matrix", f"metrics.confusion_matrix is not a {size}x{size} "
                      f"matrix of counts, one row and column per class; {RERUN}")
        return
    total = sum(map(sum, confusion))
    if total != n_test:
        yield Finding("confusion_matrix", f"metrics.confusion_matrix sums to {total}, not to the "
                      f"{n_test} test images of split.test; {RERUN}")
    if metrics.get("n_test") != n_test:
        yield Finding("n_test", f"metrics.n_test {metrics.get('n_test')!r} is not split.test "
                      f"{n_test}; {RERUN}")
    if total == 0:
        return
    with warnings.catch_warnings():  # a class absent from the test set warns, as in the run
        warnings.simplefilter("ignore")
        expected = confusion_metrics(confusion, classes)
    for key in ("macro_f1", "accuracy", "balanced_accuracy"):
        if not _close(metrics[key], expected[key]):
            yield Finding(key, f"metrics.{key} {metrics[key]!r} is not {expected[key]!r}, what "
                          f"the confusion matrix gives; {RERUN}")
    for key in ("sensitivity", "precision"):
        recorded = metrics[key]
        if sorted(recorded) != sorted(classes):
            yield Finding(key, f"metrics.{key} names {sorted(recorded)}, not the classes "
                          f"{list(classes)}; {RERUN}")
            continue
        wrong = [name for name in classes if not _close(recorded[name], expected[key][name])]
        if wrong:
            yield Finding(key, f"metrics.{key} of {wrong[0]} {recorded[wrong[0]]!r} is not "
                          f"{expected[key][wrong[0]]!r}, what the confusion matrix gives; {RERUN}")


def check_patients(record: dict) -> Iterator[Finding]:
    """A successful run's test images each have a patient: schema 4 in
    ``test_predictions.patients``, schema 3 in the committed manifest of its dataset version,
    whose image names give its ``order_sha256`` (an unreadable schema fails ``schema``)."""
    if record["status"] != "ok" or record["schema"] not in READABLE_SCHEMAS:
        return
    spec, n_test = record["spec"], record["split"]["test"]
    if record["schema"] == SCHEMA_VERSION:
        if len(record["test_predictions"]["patients"].split()) != n_test:
            yield Finding("patients", f"test_predictions.patients must name one patient per "
                          f"test image ({n_test}); {RERUN}")
        return
    manifest = patient_manifest(spec["dataset"], spec["dataset_fingerprint"], spec["task"])
    if manifest is None:
        yield Finding("patients", f"a schema-{record['schema']} record without its test "
                      f"images' patients and no committed test manifest of {spec['dataset']} "
                      f"{spec['dataset_fingerprint'][:12]} task {spec['task']} gives them; "
                      f"{RERUN}")
    elif (manifest.order_sha256 != record["test_predictions"]["order_sha256"]
          or len(manifest.images) != n_test):
        yield Finding("patients", f"the committed test manifest of {spec['dataset']} "
                      f"{spec['dataset_fingerprint'][:12]} task {spec['task']} lists another "
                      f"test set than the record's order_sha256; {RERUN}")


def check_code_version(record: dict) -> Iterator[Finding]:
    """A successful record of schema 4 names its method's code version (16 hex digits,
    :mod:`fetalbench.runs.code_version`)."""
    if record["status"] != "ok" or record["schema"] != SCHEMA_VERSION:
        return
    version = record["code_version"]
    if not (isinstance(version, str) and len(version) == 16
            and set(version) <= set("0123456789abcdef")):
        yield Finding("code_version", f"code_version {version!r:.30} is not 16 hex digits; "
                      f"{RERUN}")


def check_predictions(record: dict) -> Iterator[Finding]:
    """A successful run's per-image test predictions (one class digit per test image) give its
    confusion matrix, and its per-machine test images add up to its test images (one of an
    unreadable schema fails ``schema`` instead)."""
    if record["status"] != "ok" or record["schema"] not in READABLE_SCHEMAS:
        return
    predictions, n_test = record["test_predictions"], record["split"]["test"]
    digits = set(CLASS_DIGITS[:len(record["classes"])])
    texts = (predictions["labels"], predictions["predicted"])
    if any(len(text) != n_test or not set(text) <= digits for text in texts):
        yield Finding("test_predictions", f"test_predictions.labels and .predicted must hold one "
                      f"class digit per test image ({n_test}); {RERUN}")
        return
    size = len(record["classes"])
    confusion = [[0] * size for _ in range(size)]
    for label, predicted in zip(*map(decode_classes, texts), strict=True):
        confusion[label][predicted] += 1
    if confusion != record["metrics"]["confusion_matrix"]:
        yield Finding("test_predictions", "test_predictions do not give "
                      f"metrics.confusion_matrix; {RERUN}")
    per_machine = sum(machine["n_test"] for machine in record["metrics"]["per_machine"].values())
    if per_machine != n_test:
        yield Finding("per_machine", f"metrics.per_machine counts {per_machine} test images, not "
                      f"the {n_test} of split.test; {RERUN}")


def check_learning(record: dict) -> Iterator[Finding]:
    """A successful record states whether each of its stages learned, and every verdict is the
    one its numbers give (:func:`fetalbench.runs.learning.check_learning_section`)."""
    if record["status"] != "ok" or record["schema"] not in READABLE_SCHEMAS:
        return
    problem = check_learning_section(record.get("learning"))
    if problem is not None:
        yield Finding("learning", f"{problem}; {RERUN}")


def check_official_dataset(record: dict) -> Iterator[Finding]:
    """A ``fetal_planes_db`` record names the official CSV and the official test split's size."""
    spec = record["spec"]
    if spec["dataset"] != "fetal_planes_db":
        return
    official = ("run on the official dataset (`fetalbench data download --root DIR`, "
                "`fetalbench data verify --root DIR`)")
    csv_sha256 = record["dataset"].get("csv_sha256")
    if csv_sha256 is None:
        yield Finding("official_csv", "dataset.csv_sha256 is missing (a record made before "
                      f"records carried it), so its CSV cannot be checked; {official} and rerun")
    elif csv_sha256 != OFFICIAL_CSV_SHA256:
        yield Finding("official_csv", f"dataset.csv_sha256 {csv_sha256!r:.20} is not the sha256 "
                      f"of the official FETAL_PLANES_DB_data.csv ({OFFICIAL_CSV_SHA256[:16]}...); "
                      f"{official}")
    if record["status"] != "ok":
        return
    expected = OFFICIAL_TEST_IMAGES.get(spec["task"])
    if expected is None:
        yield Finding("official_split", f"no official test size is known for task "
                      f"{spec['task']!r}; add it to OFFICIAL_TEST_IMAGES in "
                      "fetalbench/datasets/fetal_planes_db.py")
    elif record["split"]["test"] != expected:
        yield Finding("official_split", f"split.test is {record['split']['test']}, not the "
                      f"{expected} images of the official test split for task {spec['task']}; "
                      f"{official}")


CHECKS: tuple[tuple[str, Callable[[dict], Iterator[Finding]]], ...] = (
    ("schema", check_schema),
    ("spec_hash", check_spec_hash),
    ("profile", check_profile),
    ("code_version", check_code_version),
    ("portable", check_portable),
    ("numbers", check_numbers),
    ("predictions", check_predictions),
    ("patients", check_patients),
    ("learning", check_learning),
    ("official_dataset", check_official_dataset),
)
"""Each check by the name a finding has when the record lacks a field the check reads."""


def validate_record(record: dict) -> tuple[Finding, ...]:
    """Every finding of every check on ``record`` (a parsed record); empty when it passes.

    A field a check needs that is missing or of the wrong kind is a finding of that check, so a
    damaged record is reported, never a traceback.
    """
    findings: list[Finding] = []
    for name, check in CHECKS:
        try:
            findings += check(record)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            findings.append(Finding(name, "the record lacks or mangles a field "
                                    f"this check reads ({type(error).__name__}: {error}); {RERUN}"))
    return tuple(findings)


def validate_file(path: Path) -> RecordReport:
    """The report of the record file at ``path`` (one that is not a JSON object fails ``json``)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return RecordReport(Path(path), (Finding("json", f"not readable JSON ({error})"),))
    if not isinstance(record, dict):
        return RecordReport(Path(path), (Finding("json", "the top level is not a JSON object"),))
    return RecordReport(Path(path), validate_record(record))


def validate_paths(paths: Sequence[Path]) -> Validation:
    """Validate each record file in ``paths`` and every record under each folder in it."""
    return Validation(tuple(validate_file(path) for path in records_under(paths)))
