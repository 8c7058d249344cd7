"""Leaderboard from run records: tables, significance, ranking, reproducible bytes, loud errors."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from fetalbench.data.fetal_planes_db import OFFICIAL_CSV_SHA256, OFFICIAL_TEST_IMAGES
from fetalbench.errors import FetalbenchError
from fetalbench.profiles import PROFILES
from fetalbench.report.leaderboard import (
    check_leaderboard,
    render_leaderboard,
    write_leaderboard,
)
from fetalbench.report.published import TITLE as PUBLISHED_TITLE
from fetalbench.report.published import published_results
from fetalbench.report.record_table import load_records
from fetalbench.runs.learning import DID_NOT_LEARN, LEARNED, StageCheck, checked, learning_section
from fetalbench.runs.metrics import (
    classification_metrics,
    per_image_predictions,
    per_machine_metrics,
)
from fetalbench.runs.records import SCHEMA_VERSION, write_record
from fetalbench.runs.spec import RunSpec

CLASSES = {"brain": ["Trans-thalamic", "Trans-cerebellum", "Trans-ventricular"],
           "planes": ["Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax",
                      "Maternal cervix", "Other"]}
METHODS = ("supervised_imagenet", "simclr", "supervised_scratch")
FRACTIONS = (0.05, 0.25, 1.0)
SEEDS = range(5)
PHANTOM_TEST_PER_CLASS = 1000
MACHINES = np.array(["Aloka", "Voluson E6"])
CODE_VERSION = "c0de" * 4
NT_XENT_CHANCE = round(math.log(2 * 64 - 1), 6)
"""NT-Xent's chance level over 64 pairs, ln(2N - 1)."""


def fine_tuning(n_classes: int, name: str = "fine-tuning") -> StageCheck:
    """A supervised stage that learned: its loss falls from ln K well below it and levels off,
    its best validation step mid-budget."""
    chance = round(math.log(n_classes), 6)
    curve = (chance, 0.8, 0.5, 0.35, 0.3, 0.28, 0.27, 0.27, 0.27, 0.27)
    return checked(name=name, kind="supervised", steps=100, steps_run=100, loss_curve=curve,
                   final_loss=curve[-1], chance_loss=chance, chance_rule="ln K", best_step=50)


def self_supervised(name: str, final_loss: float = 3.1, probe: tuple[float, float] = (0.4, 0.6)
                    ) -> StageCheck:
    """A self-supervised stage (NT-Xent over 64 pairs) whose loss falls to ``final_loss`` and
    levels off, its k-NN probe going from ``probe[0]`` to ``probe[1]``."""
    curve = (NT_XENT_CHANCE, *np.linspace(4.5, final_loss, 5).round(6), *[final_loss] * 4)
    return checked(name=name, kind="self-supervised", steps=200, steps_run=200,
                   loss_curve=curve, final_loss=final_loss, chance_loss=NT_XENT_CHANCE,
                   chance_rule="ln(2N-1)", probe_start=probe[0], probe_end=probe[1])


def at_learning_rate_zero(stage: StageCheck) -> StageCheck:
    """``stage`` trained at learning rate 0: its loss stays at its chance level, its probe where
    it started. Its verdict is *did not learn*."""
    chance = stage.chance_loss
    probe = stage.probe_start
    return checked(**{**dataclasses.asdict(stage), "verdict": LEARNED, "reasons": (),
                      "loss_curve": (chance,) * 10, "final_loss": chance, "probe_end": probe})


def default_stages(method: str, n_classes: int) -> list[StageCheck]:
    """The stages a run of ``method`` checks, all learned: pre-training (the methods that
    pre-train with a self-supervised objective) or the dual task's two terms, then fine-tuning."""
    if method.startswith("dual_task"):
        return [fine_tuning(n_classes, "dual task: cross-entropy"),
                self_supervised("dual task: NT-Xent")]
    objective = method.removesuffix("_imagenet")
    if objective in ("simclr", "byol", "barlow_twins", "vicreg", "simsiam"):
        return [self_supervised(f"pre-training {objective}"), fine_tuning(n_classes)]
    return [fine_tuning(n_classes)]


def scored_test_set(n_classes: int, share: float, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions of ``n_test`` images spread evenly over the classes, a ``share``
    of each class right and the rest taken for the next class: every class's sensitivity and
    precision, and so macro F1, are then ``share`` (to 1/1000 with 1000 images per class)."""
    labels = np.sort(np.arange(n_test) % n_classes)
    rank = np.arange(n_test) - np.searchsorted(labels, labels)
    right = rank < np.rint(share * np.bincount(labels)[labels])
    return labels, np.where(right, labels, (labels + 1) % n_classes)


def make_record(method: str, task: str, fraction: float, seed: int, macro_f1: float = 0.5,
                dataset: str = "phantom", profile: str = "quick", protocol: str = "finetune",
                status: str = "ok", validation: str = "fixed", predicted: np.ndarray | None = None,
                with_predictions: bool = True, stages: Sequence[StageCheck] | None = None,
                code_version: str = CODE_VERSION, patient_size: int = 10,
                backbone: str | None = None, patients: int | None = None,
                **metrics: object) -> tuple[RunSpec, dict]:
    """A valid run record of the current schema (as run.py and grid.py write them) and its
    spec: its numbers come from one test set (:func:`scored_test_set`), of the official size on
    fetal_planes_db, or from ``predicted`` (one class per test image of that set), with
    per-image predictions, ``patient_size`` consecutive test images per patient, and
    per-machine scores. Its ``learning`` section checks ``stages`` (by default
    :func:`default_stages`, all learned). ``with_predictions`` is kept for callers: a record
    always has its predictions. ``backbone`` replaces the profile's (``--backbone``);
    ``patients``, a budget of k patients per class, replaces ``fraction`` (``--patients``)."""
    fingerprint = "phantom-v1" if dataset == "phantom" else "fpdb-0123"
    settings = PROFILES[profile]
    settings = settings if backbone is None else dataclasses.replace(settings, backbone=backbone)
    spec = RunSpec(method=method, task=task, dataset=dataset, dataset_fingerprint=fingerprint,
                   fraction=None if patients is not None else fraction, seed=seed,
                   protocol=protocol, pool="task", profile=settings, validation=validation,
                   patients_per_class=patients)
    record = {
        "schema": SCHEMA_VERSION, "spec": spec.to_dict(), "spec_hash": spec.hash(),
        "status": status,
        "dataset": {"name": dataset, "synthetic": dataset == "phantom",
                    "fingerprint": fingerprint, "n_images": 100,
                    "csv_sha256": "0" * 64 if dataset == "phantom" else OFFICIAL_CSV_SHA256},
        "created": "2024-01-01T00:00:00+00:00", "versions": {}, "hardware": {}, "git": {},
    }
    if status == "failed":
        return spec, {**record, "error": "RuntimeError: CUDA out of memory | try a smaller batch"}
    classes = CLASSES[task]
    n_test = (OFFICIAL_TEST_IMAGES[task] if dataset == "fetal_planes_db"
              else PHANTOM_TEST_PER_CLASS * len(classes))
    labels, predictions = scored_test_set(len(classes), macro_f1, n_test)
    predictions = predictions if predicted is None else predicted
    stages = default_stages(method, len(classes)) if stages is None else stages
    record.update(
        code_version=code_version, classes=classes, learning=learning_section(stages),
        metrics={**classification_metrics(labels, predictions, tuple(classes)), **metrics},
        method_notes={}, split={"test": n_test, "labelled": round(1000 * fraction) if patients
                                is None else 30 * patients, "validation": 200},
        timings={"total_s": 1.0},
    )
    machines = MACHINES[np.arange(n_test) % 2]
    names = [f"image{index}.png" for index in range(n_test)]
    patients = np.arange(n_test) // patient_size
    record["test_predictions"] = per_image_predictions(labels, predictions, names, patients)
    record["metrics"]["per_machine"] = per_machine_metrics(labels, predictions, machines)
    return spec, record


def write(results: Path, spec: RunSpec, record: dict) -> Path:
    path = spec.record_path(results)
    write_record(path, record)
    return path


def grid_scores() -> dict[tuple[str, str, float, int], float]:
    """``simclr`` is 0.15 above the reference on every seed; ``supervised_scratch`` is noise."""
    rng = np.random.default_rng(7)
    scores = {}
    for task in CLASSES:
        for fraction in FRACTIONS:
            for seed in SEEDS:
                reference = 0.55 + 0.1 * np.log10(fraction * 100) / 2 + rng.normal(0, 0.03)
                scores["supervised_imagenet", task, fraction, seed] = reference
                scores["simclr", task, fraction, seed] = reference + 0.15 + rng.normal(0, 0.01)
                scores["supervised_scratch", task, fraction, seed] = reference + rng.normal(0, 0.03)
    return scores


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """3 methods x 2 tasks x 3 fractions x 5 seeds of phantom records, one of them failed too."""
    root = tmp_path / "results"
    for (method, task, fraction, seed), score in grid_scores().items():
        extra = {"embedding": {"silhouette": 0.2 + score / 10, "knn_accuracy": score}} if (
            fraction == 1.0) else {}
        write(root, *make_record(method, task, fraction, seed, float(score), **extra))
    write(root, *make_record("simclr", "brain", 0.05, 9, status="failed"))
    return root


def table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """The rows (method -> cells) of the first table after ``heading``."""
    after = text.split(heading, 1)[1]
    rows = {}
    for line in after.splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            name, *cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[name] = cells
        elif rows and not line.startswith("|"):
            break
    return rows


def test_table_bolds_the_winner_marks_significance_and_the_phantom(results: Path):
    text = render_leaderboard(load_records(results), "fetalbench leaderboard", Path("figures"))
    assert text.startswith("# fetalbench leaderboard")
    assert "Generated by `fetalbench leaderboard` from 91 run records (90 ok, 1 failed" in text
    assert "### SYNTHETIC (phantom): task `brain`" in text
    assert "### SYNTHETIC (phantom): task `planes`" in text
    for task in CLASSES:
        rows = table_rows(text, f"task `{task}`")
        assert list(rows) == ["supervised_imagenet", "simclr", "supervised_scratch"]
        assert all(cell.startswith("**") and cell.endswith("(n=5) ▲") for cell in rows["simclr"])
        assert not any("**" in cell or "▲" in cell or "▼" in cell
                       for cell in rows["supervised_imagenet"])
        assert re.fullmatch(r"0\.\d{3} ± 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\] \(n=5\)",
                            rows["supervised_imagenet"][0])
    assert "Holm-corrected over the 6 comparisons in this table" in text
    assert "Representation and localisation at 100% labels" in text
    assert table_rows(text, "Representation and localisation")["simclr"][1].startswith("0.")


def test_ranking_figures_and_missing_real_data_are_reported(results: Path):
    text = render_leaderboard(load_records(results), "fetalbench leaderboard", Path("figs"))
    ranking = table_rows(text, "### Ranking across cells: SYNTHETIC (phantom)")
    assert next(iter(ranking)) == "simclr" and ranking["simclr"][0] == "1.00"
    assert "Friedman test: χ² = " in text
    assert "- simclr vs " in text
    assert "(figs/phantom_critical_difference.png)" in text
    assert "(figs/phantom_planes_label_efficiency.png)" in text
    assert "(figs/phantom_brain_per_class.png)" in text
    assert "## FETAL_PLANES_DB: no records yet" in text
    assert "`fetalbench data download --root DIR`" in text
    assert "`fetalbench grid --suite paper --data-root DIR`" in text
    assert "pull request" in text and "CI regenerates" in text


def test_failed_runs_are_listed(results: Path):
    text = render_leaderboard(load_records(results), "fetalbench leaderboard", None)
    failed = text.split("## Failed runs", 1)[1]
    assert "1 run failed" in failed
    assert "| simclr " in failed and "| 5% " in failed
    assert "`phantom/brain/simclr/finetune-f0.05-s9-" in failed
    assert "out of memory \\| try" in failed
    assert "![" not in text


def test_regenerating_gives_identical_bytes_and_check_follows_the_records(tmp_path: Path,
                                                                         results: Path):
    output, figures = tmp_path / "leaderboard.md", results / "figures"
    write_leaderboard(results, output, figures)
    first = output.read_bytes()
    pngs = {path.name: path.read_bytes() for path in figures.glob("*.png")}
    assert sorted(pngs) == sorted(
        [f"phantom_{task}_{kind}.png" for task in CLASSES
         for kind in ("label_efficiency", "per_class")] + ["phantom_critical_difference.png"])
    assert "(results/figures/phantom_brain_label_efficiency.png)" in first.decode()
    write_leaderboard(results, output, figures)
    assert output.read_bytes() == first
    assert {path.name: path.read_bytes() for path in figures.glob("*.png")} == pngs
    shutil.rmtree(figures)
    assert check_leaderboard(results, output)
    next(results.rglob("supervised_scratch/*-s3-*.json")).unlink()
    assert not check_leaderboard(results, output)
    assert not check_leaderboard(results, tmp_path / "absent.md")


def test_linear_records_get_tables_of_their_own_and_real_data_comes_second(tmp_path: Path):
    for method in METHODS:
        for protocol in ("finetune", "linear"):
            for fraction in (0.1, 1.0):
                for seed in range(2):
                    write(tmp_path, *make_record(method, "brain", fraction, seed, 0.5 + seed / 10,
                                                 protocol=protocol))
    write(tmp_path, *make_record("simclr", "planes", 1.0, 0, 0.7, dataset="fetal_planes_db"))
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    board = table_rows(text, "### SYNTHETIC (phantom): task `brain`\n")
    linear = table_rows(text, "task `brain`, linear evaluation of the frozen encoder")
    assert list(board) == list(linear) == ["supervised_imagenet", "simclr", "supervised_scratch"]
    assert "(linear)" not in text and "(finetune)" not in text
    assert text.index("### Ranking across cells: SYNTHETIC") < text.index(
        "### SYNTHETIC (phantom): other setups") < text.index("linear evaluation of the frozen")
    assert text.index("SYNTHETIC (phantom)") < text.index("## FETAL_PLANES_DB (real data)")
    assert "no records yet" not in text
    assert "there are 1 such methods and 1 such cells" in text


def _default_board(root: Path) -> None:
    """Three methods x three fractions x three seeds of fine-tuning on ``brain``."""
    for index, fraction in enumerate(FRACTIONS):
        for seed in range(3):
            reference = 0.5 + 0.1 * index + 0.01 * seed
            for method, lift in zip(METHODS, (0.0, 0.15, -0.05), strict=True):
                write(root, *make_record(method, "brain", fraction, seed, reference + lift))


def header(section: str) -> list[str]:
    """The column titles of the first table in ``section``."""
    line = next(line for line in section.splitlines() if line.startswith("| method"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _sections(text: str) -> dict[str, str]:
    """The text under each ``## `` and ``### `` heading, by heading (not the header above them,
    which counts the records)."""
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1]
            for part in re.split(r"\n(?=#{2,3} )", text)[1:]}


def test_patient_budgets_and_another_backbone_get_tables_of_their_own(tmp_path: Path):
    """Records ``fetalbench run --patients K`` and ``--backbone resnet18`` make, beside the
    board: loaded (never refused, though their profile content differs), in tables of their
    own, and the board's tables, claims and ranking byte for byte what they were."""
    _default_board(tmp_path / "board")
    before = render_leaderboard(load_records(tmp_path / "board"), "fetalbench leaderboard", None)
    shutil.copytree(tmp_path / "board", tmp_path / "more")
    for seed in range(3):
        for k, score in ((1, 0.4), (4, 0.6)):
            for method, lift in (("supervised_imagenet", 0.0), ("simclr", 0.1)):
                write(tmp_path / "more", *make_record(method, "brain", 1.0, seed,
                                                      score + lift + 0.01 * seed, patients=k))
        for fraction in (0.05, 1.0):  # one seed of the same cells, on another backbone
            write(tmp_path / "more", *make_record("supervised_imagenet", "brain", fraction, seed,
                                                  0.45 + 0.3 * fraction + 0.01 * seed,
                                                  backbone="resnet18"))
    records = load_records(tmp_path / "more")
    ok = records.ok
    assert len(ok) == 27 + 12 + 6
    patients = ok[ok["budget"] == "patients"]
    assert patients["fraction"].isna().all() and set(patients["patients"]) == {1.0, 4.0}
    assert set(ok.loc[ok["backbone"] == "resnet18", "budget"]) == {"fraction"}
    after = render_leaderboard(records, "fetalbench leaderboard", None)
    old, new = _sections(before), _sections(after)
    assert {heading: new[heading] for heading in old} == old  # claims, tables, ranking
    extra = [heading for heading in new if heading not in old]
    assert extra == ["### SYNTHETIC (phantom): other setups",
                     "### SYNTHETIC (phantom): task `brain`, backbone `resnet18`",
                     "### SYNTHETIC (phantom): task `brain`, label budgets in k patients per "
                     "class"]
    resnet = table_rows(after, "task `brain`, backbone `resnet18`")
    assert list(resnet) == ["supervised_imagenet"] and len(resnet["supervised_imagenet"]) == 2
    assert header(new[extra[1]]) == ["method", "5% labels", "100% labels"]
    by_patients = new[extra[2]]
    assert header(by_patients) == ["method", "k=1", "k=4"]
    rows = table_rows(after, "label budgets in k patients per class")
    assert list(rows) == ["supervised_imagenet", "simclr"]
    assert all(cell.endswith("(n=3) ▲") for cell in rows["simclr"])  # tested within the table
    assert "Difference to `supervised_imagenet`:" in by_patients
    assert "k=1: 30 + 200, k=4: 120 + 200" in by_patients
    assert "Label efficiency" not in by_patients
    assert "nan" not in after


def test_a_cell_on_another_backbone_is_no_duplicate_of_the_boards(tmp_path: Path):
    write(tmp_path, *make_record("simclr", "brain", 1.0, 0))
    write(tmp_path, *make_record("simclr", "brain", 1.0, 0, backbone="resnet18"))
    write(tmp_path, *make_record("simclr", "brain", 1.0, 0, patients=2))
    write(tmp_path, *make_record("simclr", "brain", 1.0, 0, protocol="linear"))
    assert len(load_records(tmp_path).ok) == 4
    write(tmp_path / "copy", *make_record("simclr", "brain", 1.0, 0, patients=2,
                                          profile="smoke"))
    with pytest.raises(FetalbenchError, match="label budget and seed 0"):
        load_records(tmp_path)


def test_single_seeds_and_empty_folders_render_without_claims(tmp_path: Path):
    for method in METHODS:
        write(tmp_path / "one", *make_record(method, "brain", 1.0, 0, 0.6))
    text = render_leaderboard(load_records(tmp_path / "one"), "fetalbench leaderboard", None)
    # One seed: its interval is the test patients' alone; three tied means bold nothing.
    assert re.fullmatch(r"0\.600 \[0\.5\d\d, 0\.6\d\d\] \(n=1\)",
                        table_rows(text, "task `brain`")["simclr"][0])
    assert "Label efficiency and claims not read: the reference `supervised_imagenet` has no " \
        "5% cell." in text
    assert "No test against `supervised_imagenet` is possible here: it needs 3" in text
    assert "Cells with fewer than" not in text
    (tmp_path / "empty").mkdir()
    empty = render_leaderboard(load_records(tmp_path / "empty"), "fetalbench leaderboard", None)
    assert "from 0 run records" in empty and "## FETAL_PLANES_DB: no records yet" in empty


def test_cells_with_two_shared_seeds_carry_no_marker_and_the_note_says_why(tmp_path: Path):
    rng = np.random.default_rng(3)
    for seed in SEEDS:
        for fraction in (0.05, 1.0):
            reference = 0.5 + rng.normal(0, 0.05)
            write(tmp_path, *make_record("supervised_imagenet", "brain", fraction, seed,
                                         reference))
            if fraction == 1.0 or seed < 2:  # two seeds at 5%: differences 0.150 and 0.151
                write(tmp_path, *make_record("simclr", "brain", fraction, seed,
                                             reference + 0.15 + seed / 1000))
    text = render_leaderboard(load_records(tmp_path), "fetalbench leaderboard", None)
    cells = table_rows(text, "task `brain`")["simclr"]
    assert cells[0].endswith("(n=2)") and "▲" not in cells[0]
    assert cells[1].endswith("(n=5) ▲")
    assert "Holm-corrected over the 1 comparisons in this table" in text
    assert "Cells with fewer than 3 seeds shared with the reference carry no test." in text


def test_hidden_and_temporary_files_are_ignored(tmp_path: Path):
    write(tmp_path, *make_record("simclr", "brain", 1.0, 0))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "junk.json").write_text("{")
    (tmp_path / "phantom" / ".r.json.abc.tmp").write_text("{")
    assert len(load_records(tmp_path).ok) == 1


def test_duplicate_records_are_refused_naming_both_files(tmp_path: Path):
    original = write(tmp_path, *make_record("simclr", "brain", 1.0, 0))
    copy = tmp_path / "copy" / "again.json"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    with pytest.raises(FetalbenchError, match="duplicate") as error:
        load_records(tmp_path)
    assert str(copy) in str(error.value) and str(original) in str(error.value)


def test_one_cell_and_seed_twice_is_refused(tmp_path: Path):
    first = write(tmp_path, *make_record("simclr", "brain", 1.0, 0, profile="quick"))
    second = write(tmp_path, *make_record("simclr", "brain", 1.0, 0, profile="smoke"))
    with pytest.raises(FetalbenchError, match="same dataset, task, method") as error:
        load_records(tmp_path)
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_mixed_profiles_in_a_cell_are_refused(tmp_path: Path):
    write(tmp_path, *make_record("simclr", "brain", 1.0, 0, profile="quick"))
    write(tmp_path, *make_record("simclr", "brain", 1.0, 1, profile="smoke"))
    with pytest.raises(FetalbenchError, match="differ in profile"):
        load_records(tmp_path)


def test_malformed_json_is_refused_naming_the_file(tmp_path: Path):
    write(tmp_path, *make_record("simclr", "brain", 1.0, 0))
    broken = tmp_path / "phantom" / "broken.json"
    broken.write_text('{"schema": 1,')
    with pytest.raises(FetalbenchError, match="not valid JSON") as error:
        load_records(tmp_path)
    assert str(broken) in str(error.value)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda r: r["metrics"].pop("macro_f1"), "metrics.macro_f1 is missing"),
        (lambda r: r["spec"].update(seed="0"), "spec.seed must be a whole number"),
        (lambda r: r["spec"].update(fraction=0.3), "spec_hash .* is not the hash of its spec"),
        (lambda r: r["dataset"].update(synthetic=False), "dataset.synthetic is False"),
        (lambda r: r.update(status="done"), "status is 'done'"),
        (lambda r: r.pop("learning"), "learning is missing"),
        (lambda r: r["learning"].update(verdict="fine"), "learning.verdict is 'fine'"),
        (lambda r: r["learning"]["stages"][0].update(final_loss=5.0),
         "fails the learning check .*says 'learned' but its numbers give 'did not learn'"),
    ],
)
def test_invalid_fields_are_refused_naming_the_field(tmp_path: Path, edit, problem: str):
    spec, record = make_record("simclr", "brain", 1.0, 0)
    edit(record)
    path = spec.record_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    with pytest.raises(FetalbenchError, match=problem) as error:
        load_records(tmp_path)
    assert str(path) in str(error.value)


def test_missing_results_folder_is_a_user_error(tmp_path: Path):
    with pytest.raises(FetalbenchError, match="fetalbench grid"):
        load_records(tmp_path / "nowhere")


def test_hash_check_agrees_with_run_specs_of_every_profile(tmp_path: Path):
    for name in ("smoke", "quick", "paper"):
        spec = dataclasses.replace(make_record("simclr", "brain", 0.01, 3)[0],
                                   profile=PROFILES[name], method=f"m_{name}")
        write(tmp_path, spec, make_record("simclr", "brain", 0.01, 3)[1] | {
            "spec": spec.to_dict(), "spec_hash": spec.hash()})
    assert sorted(load_records(tmp_path).ok["method"]) == ["m_paper", "m_quick", "m_smoke"]


def test_explain_figures_of_reference_and_best_are_linked(results: Path, tmp_path: Path):
    output = tmp_path / "leaderboard.md"
    write_leaderboard(results, output, results / "figures")
    text = output.read_text()
    for task in ("brain", "planes"):
        for method in ("supervised_imagenet", "simclr"):
            folder = f"explain/phantom_{task}_{method}_f1_s0"
            assert f"({folder}/gradcam.png)" in text.replace("results/figures/", "")
            assert f"fetalbench explain --method {method} --task {task} --fraction 1 --seed 0" \
                in text
    assert "phantom_brain_supervised_scratch_f1" not in text


def test_a_cell_that_did_not_learn_is_marked_and_kept_out_of_comparisons(tmp_path: Path):
    """``byol`` scores best everywhere but its pre-training trained at learning rate 0 (final
    loss at chance, probe unmoved); one seed of ``simclr`` at 5% fine-tuned at learning rate 0.
    Both are shown, marked, and compared with nothing; byol is never bolded or ranked."""
    n_classes = len(CLASSES["brain"])
    broken_byol = [at_learning_rate_zero(self_supervised("pre-training byol")),
                   fine_tuning(n_classes)]
    broken_simclr = [self_supervised("pre-training simclr"),
                     at_learning_rate_zero(fine_tuning(n_classes))]
    assert {stage.verdict for stage in (*broken_byol, *broken_simclr)} == {DID_NOT_LEARN,
                                                                          LEARNED}
    for index, fraction in enumerate(FRACTIONS):
        for seed in range(3):
            reference = 0.5 + 0.1 * index + 0.004 * seed
            scores = {"supervised_imagenet": (reference, None),
                      "simclr": (reference + 0.15, broken_simclr if (fraction, seed) == (0.05, 2)
                                 else None),
                      "supervised_scratch": (reference - 0.05 + 0.003 * (seed % 2), None),
                      "dual_task": (reference + 0.05, None),
                      "byol": (reference + 0.3, broken_byol)}
            for method, (score, stages) in scores.items():
                write(tmp_path, *make_record(method, "brain", fraction, seed, score,
                                             stages=stages))
    records = load_records(tmp_path)
    ok = records.ok
    assert ok.loc[ok["method"] == "byol", "learning"].eq(DID_NOT_LEARN).all()
    assert not ok.loc[ok["method"] == "byol", "learned"].any()
    assert ok.loc[ok["method"] == "supervised_imagenet", "learned"].all()
    simclr = ok[ok["method"] == "simclr"].set_index(["fraction", "seed"])
    assert simclr["learned"].sum() == 8 and not simclr.loc[(0.05, 2), "learned"]
    assert simclr["pretraining_stage"].eq("pre-training simclr").all()
    assert simclr["pretraining_chance"].eq(NT_XENT_CHANCE).all()
    assert ok.loc[ok["method"] == "supervised_scratch", "pretraining_stage"].isna().all()

    output = tmp_path / "leaderboard.md"
    write_leaderboard(tmp_path, output, tmp_path / "figures")
    text = output.read_text()
    assert (tmp_path / "figures" / "phantom_brain_label_efficiency.png").is_file()
    assert "A cell (method, protocol, validation setting, label fraction) enters comparisons " \
        "only when every seed's run learned" in text
    rows = table_rows(text, "task `brain`")
    assert all(cell.endswith("(n=3) †") and "**" not in cell for cell in rows["byol"])
    assert rows["simclr"][0].endswith("(n=3) †") and "**" not in rows["simclr"][0]
    assert all(cell.startswith("**") and cell.endswith("(n=3) ▲") for cell in rows["simclr"][1:])
    assert not any(cell.endswith("†") for method in ("supervised_imagenet", "supervised_scratch",
                                                      "dual_task") for cell in rows[method])
    assert ("† Runs that did not all learn, kept out of every comparison (verdict, seeds; "
            "stages that did not learn): `byol` at 5%: 3/3 did not learn (pre-training byol); "
            "`byol` at 25%: 3/3 did not learn (pre-training byol); `byol` at 100%: 3/3 did not "
            "learn (pre-training byol); `simclr` at 5%: 1/3 did not learn, 2/3 learned "
            "(fine-tuning).") in text
    differences = table_rows(text, "Difference to `supervised_imagenet`:")
    assert "byol" not in differences
    assert differences["simclr"][0] == "—" and differences["simclr"][1].startswith("+0.150 [")
    efficiency = table_rows(text, "Label efficiency:")
    assert "byol" not in efficiency and "simclr" in efficiency
    assert "Holm-corrected over the 8 comparisons in this table" in text

    pretraining = table_rows(text, "Pre-training loss against chance:")
    assert list(pretraining) == ["byol", "dual_task", "simclr"]
    chance = f"{NT_XENT_CHANCE:.3f} (ln(2N-1))"
    assert pretraining["byol"] == ["pre-training byol", "3", f"{NT_XENT_CHANCE:.3f}", chance,
                                   "0.400 → 0.400", "3/3 did not learn"]
    assert pretraining["simclr"] == ["pre-training simclr", "3", "3.100", chance,
                                     "0.400 → 0.600", "3/3 learned"]
    assert pretraining["dual_task"][:2] == ["dual task: NT-Xent", "9"]
    assert pretraining["dual_task"][-1] == "9/9 learned"

    machines = table_rows(text, "Macro F1 per ultrasound machine at 100% labels")
    assert "byol †" in machines and "simclr" in machines
    # The explained runs: the reference and the best whose runs learned, not byol.
    assert "--method simclr --task brain --fraction 1 --seed 0" in text
    assert "--method byol" not in text

    ranking = table_rows(text, "### Ranking across cells: SYNTHETIC (phantom)")
    assert "byol" not in ranking and "simclr" in ranking
    assert "Never ranked, no cell of theirs has runs that all learned (†): `byol`." in text
    assert "over the 2 cells (task x label fraction) where all 4 ranked methods" in text


def test_published_results_have_their_own_section_with_a_source_per_row(results: Path):
    text = render_leaderboard(load_records(results), "fetalbench leaderboard", None)
    board, published = text.split(PUBLISHED_TITLE)
    assert "FetalCLIP" not in board and "USFM" not in board  # never in a table of runs
    published_table = published.split("## Failed runs")[0]
    rows = [line for line in published_table.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(published_results()["rows"]) >= 1
    assert all("arXiv" in row for row in rows)  # every number names where it was checked
