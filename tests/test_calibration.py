"""Tests of the phantom's calibration probe: end to end on a small phantom, where it must score
exactly what a run of supervised_imagenet under the linear protocol scores; its checks, the
default resolution, and the committed numbers (fetalbench/data/phantom/calibration.json)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fetalbench import cli
from fetalbench.data.phantom import calibration
from fetalbench.data.phantom.calibration import (
    COMMITTED_FILE,
    FLOOR_ABOVE_CHANCE,
    PROBE_FRACTIONS,
    CalibrationChecks,
    ProbeScore,
    calibration_checks,
    chance_macro_f1,
    committed_calibration,
    committed_calibrations,
    committed_entry,
    differences,
    format_calibration,
    phantom_version,
    probe,
    probe_resolution,
    record_calibration,
    version_name,
)
from fetalbench.data.phantom.render import (
    GENERATOR_VERSION,
    PhantomSettings,
    ensure_phantom,
    plan_phantom,
)
from fetalbench.data.sources import DatasetSource, folder_source
from fetalbench.data.tasks import TASKS
from fetalbench.methods.execution import Execution
from fetalbench.profiles import get_profile
from fetalbench.runs import execute
from fetalbench.runs.execute import execute_run
from fetalbench.runs.spec import RunRequest

# 300 small images (37 patients, 18 on the training side): enough patients for the probe's
# validation carve-out in both tasks, generated in about 3 s.
SMALL = PhantomSettings(n_images=300, seed=3, width=96, height=64)
SMALL_PROFILE = "smoke"
SMALL_RESOLUTION = get_profile(SMALL_PROFILE).resolution
CURRENT = version_name(GENERATOR_VERSION)


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetSource, Path]:
    cache = tmp_path_factory.mktemp("calibration-cache")
    return folder_source("phantom", True, ensure_phantom(cache, SMALL, workers=1)), cache


@pytest.fixture(scope="module")
def small_scores(small_source: tuple[DatasetSource, Path]) -> list[ProbeScore]:
    source, cache = small_source
    return probe(source, cache, SMALL_RESOLUTION, seed=0, profile=SMALL_PROFILE)


def _score(task: str, fraction: float, f1: float, chance: float = 0.3) -> ProbeScore:
    return ProbeScore(task=task, fraction=fraction, n_labelled=10, n_validation=5, c=1.0,
                      macro_f1=f1, chance_macro_f1=chance)


def _scores(planes: tuple[float, float], brain: tuple[float, float],
            chance: float = 0.3) -> list[ProbeScore]:
    return [_score("planes", f, s, chance) for f, s in zip(PROBE_FRACTIONS, planes, strict=True)] \
        + [_score("brain", f, s, chance) for f, s in zip(PROBE_FRACTIONS, brain, strict=True)]


# --- end to end on a small phantom ---------------------------------------------------------------


def test_probe_gives_four_sane_scores(small_source, small_scores: list[ProbeScore]) -> None:
    source, _ = small_source
    assert [(s.task, s.fraction) for s in small_scores] == [
        ("planes", 0.05), ("planes", 1.0), ("brain", 0.05), ("brain", 1.0)
    ]
    catalog = source.catalog
    for s in small_scores:
        task = TASKS.get(s.task)
        rows = task.select(catalog)
        assert 0.0 <= s.macro_f1 <= 1.0 and 0.0 < s.chance_macro_f1 < 1.0
        # chance from the task's official test labels, recomputed here by hand
        test_labels = rows.loc[~rows["train"], "label"].to_numpy()
        prevalence = np.bincount(test_labels, minlength=len(task.classes)) / len(test_labels)
        k = len(task.classes)
        expected = np.mean([2 * p / k / (p + 1 / k) for p in prevalence])
        assert s.chance_macro_f1 == pytest.approx(expected)
        # a run's split: 100% labels are the official training images outside the validation
        # carve-out, which the fixed validation setting keeps whole
        n_train = int(rows["train"].sum())
        assert 0 < s.n_validation < n_train
        if s.fraction == 1.0:
            assert s.n_labelled + s.n_validation == n_train
        else:
            assert k <= s.n_labelled < n_train - s.n_validation
    assert len(TASKS.get("planes").classes) == 6 and len(TASKS.get("brain").classes) == 3
    by = {(s.task, s.fraction): s for s in small_scores}
    # the frozen ImageNet probe learns the six planes even from 173 small images
    assert by[("planes", 1.0)].macro_f1 > by[("planes", 1.0)].chance_macro_f1 + 0.2
    assert set(calibration_checks(small_scores).named()) == {
        "planes_easier", "brain_above_floor", "brain_below_ceiling"
    }


@pytest.mark.parametrize("task", ["planes", "brain"])
def test_calibrate_scores_what_a_linear_run_scores(
    task: str, small_source, small_scores: list[ProbeScore], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One code path: at each fraction the probe's score is the macro F1 of the run of
    supervised_imagenet under the linear protocol at that task, fraction, seed and profile, on
    the same split, from the same cached features, with the same C."""
    source, cache = small_source
    monkeypatch.setattr(execute, "open_source", lambda name, root, cache_root: source)
    by = {(s.task, s.fraction): s for s in small_scores}
    for fraction in PROBE_FRACTIONS:
        request = RunRequest(method="supervised_imagenet", task=task, fraction=fraction, seed=0,
                             protocol="linear", profile=SMALL_PROFILE)
        record = execute_run(request, tmp_path, cache, log=lambda _: None,
                             execution=Execution(threads=torch.get_num_threads())).record
        score = by[(task, fraction)]
        assert record["metrics"]["macro_f1"] == score.macro_f1
        assert record["method_notes"]["c"] == score.c
        assert (record["split"]["labelled"], record["split"]["validation"]) == (
            score.n_labelled, score.n_validation)
        assert record["method_notes"]["features_reused"] is True  # the probe's features


def test_phantom_version_is_read_from_the_phantom(small_source) -> None:
    source, _ = small_source
    assert phantom_version(source) == CURRENT == f"v{GENERATOR_VERSION}"
    assert Path(source.identity.root).name.startswith(f"phantom-{CURRENT}-")


def test_format_says_whether_fresh_numbers_match_the_committed_ones(
    small_scores: list[ProbeScore],
) -> None:
    same = format_calibration(small_scores, list(small_scores), "v2", 32)
    assert "matches the committed calibration of phantom v2 at 32 px" in same
    assert "committed F1" in same and "SYNTHETIC" in same
    moved = [dataclasses.replace(s, macro_f1=s.macro_f1 + 0.002) if s.task == "brain" else s
             for s in small_scores]
    text = format_calibration(moved, list(small_scores), "v2", 32)
    assert "DIFFERS" in text and "brain 100% macro_f1" in text and "planes" not in text.split(
        "DIFFERS")[1]
    assert "no committed calibration of phantom v9 at 32 px" in format_calibration(
        small_scores, None, "v9", 32)
    # a change below the third decimal is a match
    tiny = [dataclasses.replace(s, macro_f1=round(s.macro_f1, 3)) for s in small_scores]
    assert differences(tiny, list(small_scores)) == []


def test_cli_defaults_to_the_profile_resolution(
    small_source, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    source, cache = small_source
    args = cli.build_parser().parse_args(["calibrate"])
    assert (args.profile, args.resolution, args.record) == ("quick", None, False)
    monkeypatch.setattr(calibration, "open_source", lambda name, root, cache_root: source)
    monkeypatch.setattr(cli, "cache_dir", lambda: cache)
    assert cli.main(["calibrate", "--profile", SMALL_PROFILE]) == 0
    output = capsys.readouterr().out
    assert f"phantom {CURRENT} (SYNTHETIC) difficulty at 32 px" in output
    assert "thread" in output
    # the committed 32-px numbers are of the default phantom, not this small one: no comparison
    assert "matches" not in output and "DIFFERS" not in output
    assert f"is of {committed_entry(CURRENT, 32).phantom}" in output


# --- pieces --------------------------------------------------------------------------------------


def test_probe_resolution_follows_the_profile() -> None:
    assert probe_resolution() == get_profile("quick").resolution == 64
    assert probe_resolution("smoke") == get_profile("smoke").resolution == 32
    assert probe_resolution("gpu") == 128
    assert probe_resolution("quick", 48) == 48


def test_chance_macro_f1() -> None:
    assert chance_macro_f1(np.repeat(np.arange(6), 5), 6) == pytest.approx(1 / 6)
    # prevalences 3/4, 1/4, 0 with K = 3: mean of 2pr/(p+r), r = 1/3
    labels = np.array([0, 0, 0, 1])
    terms = [2 * p / 3 / (p + 1 / 3) for p in (0.75, 0.25, 0.0)]
    assert chance_macro_f1(labels, 3) == pytest.approx(sum(terms) / 3)


def test_checks_are_named_booleans_with_the_fixed_floor() -> None:
    good = calibration_checks(_scores((0.8, 0.9), (0.4, 0.6)))
    assert good == CalibrationChecks(True, True, True) and good.passed
    # floor: brain at 100% >= chance + 0.15, inclusive
    assert FLOOR_ABOVE_CHANCE == 0.15
    assert calibration_checks(_scores((0.8, 0.9), (0.4, 0.45))).brain_above_floor
    below = calibration_checks(_scores((0.8, 0.9), (0.4, 0.449)))
    assert not below.brain_above_floor and not below.passed
    assert not calibration_checks(_scores((0.8, 0.95), (0.4, 0.91))).brain_below_ceiling
    assert not calibration_checks(_scores((0.3, 0.9), (0.4, 0.6))).planes_easier


def test_record_then_read_back(tmp_path: Path, small_scores: list[ProbeScore]) -> None:
    path = tmp_path / "calibration.json"
    entry = calibration.Calibration(
        generator_version="v2", resolution=32, seed=0, phantom="phantom-v2-x",
        scores=tuple(small_scores), checks=calibration_checks(small_scores),
        command="fetalbench calibrate --profile smoke", threads=1, date="2025-01-01",
        seconds=1.0,
    )
    record_calibration(entry, path)
    record_calibration(dataclasses.replace(entry, resolution=64), path)
    record_calibration(dataclasses.replace(entry, date="2025-02-02"), path)  # replaces
    assert [(c.resolution, c.date) for c in committed_calibrations(path)] == [
        (32, "2025-02-02"), (64, "2025-01-01")
    ]
    assert committed_calibration("v2", 32, path=path) == list(small_scores)
    assert committed_calibration("v2", 128, path=path) is None
    assert committed_calibration("v3", 32, path=path) is None


# --- the committed numbers -----------------------------------------------------------------------


def test_committed_file_holds_the_cpu_profiles_with_checks_passing() -> None:
    document = json.loads(COMMITTED_FILE.read_text(encoding="utf-8"))
    assert set(document) == {"about", "calibrations"}
    for resolution in (get_profile("quick").resolution, get_profile("smoke").resolution):
        entry = committed_entry(CURRENT, resolution)
        assert entry is not None, f"phantom {CURRENT} at {resolution} px is not calibrated"
        assert entry.command.startswith("fetalbench calibrate")
        assert entry.threads >= 1 and len(entry.date) == 10 and entry.seconds > 0
        assert entry.checks == calibration_checks(entry.scores)
        assert committed_calibration(CURRENT, resolution) == list(entry.scores)
    quick = committed_entry(CURRENT, 64)
    assert quick.checks.passed and quick.checks.brain_above_floor
    # at 100% a run's labelled and validation images: every official training image of the
    # default phantom
    records = plan_phantom(PhantomSettings())
    by = {(s.task, s.fraction): s for s in quick.scores}
    assert by[("planes", 1.0)].n_labelled + by[("planes", 1.0)].n_validation == sum(
        r.train for r in records)
    assert by[("brain", 1.0)].n_labelled + by[("brain", 1.0)].n_validation == sum(
        r.train and r.brain_plane in TASKS.get("brain").classes for r in records)
    for s in quick.scores:
        assert 0.0 <= s.chance_macro_f1 < s.macro_f1 <= 1.0
