"""How hard is the phantom? A fixed, cheap probe that any change to the generator must pass.

The probe is the linear evaluation of a run, by construction: for each task and label fraction
it is what ``fetalbench run --method supervised_imagenet --protocol linear`` at that task,
fraction and seed computes, and its score is that run's test macro F1. The same split
(:func:`~fetalbench.data.prepare.prepare_run_data`: :func:`~fetalbench.data.splits.split_task`
with the profile's validation carve-out), the same frozen encoder (the profile's backbone with
ImageNet weights, as :func:`~fetalbench.methods.supervised.supervised_encoder` builds it), the
same cached features (:func:`~fetalbench.methods.features.task_features`) and the same
:func:`~fetalbench.methods.linear_evaluation.linear_evaluation` (an L2 logistic regression whose
``C`` is chosen by validation macro F1, refitted at it on the labelled and validation images;
Kolesnikov et al., "Revisiting Self-Supervised Visual Representation Learning", CVPR 2019).
Scores are test macro F1 at 5% and 100% of the labels, for both tasks. The phantom is a fair
stand-in when the six planes are easier than the three brain planes at both label amounts, and
the brain planes sit well above chance yet below 0.90 at 100% labels, leaving room for better
representations to show.

The probe sees images at a profile's resolution (``quick``'s 64 px by default), decoded as that
profile's runs decode them. Its numbers for each generator version and resolution measured are
committed in ``calibration.json`` beside this module (:func:`committed_calibration`;
docs/calibration.md): ``fetalbench calibrate`` says whether a fresh measurement matches them, and
``fetalbench calibrate --record`` writes a new one there after a generator change. The floor,
``brain`` at 100% labels at least chance + 0.15, is fixed: a phantom whose ``brain`` task falls
below it at the CPU profile's resolution needs another resolution or a new generator version,
never a lower floor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from fetalbench.data.phantom.render import MANIFEST_NAME
from fetalbench.data.prepare import prepare_run_data
from fetalbench.data.sources import DatasetSource, open_source
from fetalbench.data.tasks import TASKS
from fetalbench.errors import FetalbenchError
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.features import task_features
from fetalbench.methods.linear_evaluation import linear_evaluation
from fetalbench.profiles import QUICK, get_profile
from fetalbench.runs.metrics import macro_f1

PROBE_TASKS = ("planes", "brain")
PROBE_FRACTIONS = (0.05, 1.0)
PROBE_INIT = "imagenet"
"""The probe's encoder: the profile's backbone from ImageNet weights (``supervised_imagenet``)."""
PROBE_POOL = "task"
"""A run's default unlabelled pool (the linear evaluation reads none)."""
DEFAULT_PROFILE = QUICK.name
"""The profile whose resolution, backbone and validation carve-out the probe uses unless told
otherwise: the CPU profile."""
FLOOR_ABOVE_CHANCE = 0.15
"""``brain`` at 100% labels must reach chance + this. Never lower it (module doc)."""
CEILING = 0.90
"""``brain`` at 100% labels must stay below this, leaving room for better representations."""
COMMITTED_FILE = Path(__file__).resolve().parent / "calibration.json"
"""The committed calibrations (package data): one per generator version, resolution and seed."""
MATCH_DECIMALS = 3


@dataclass(frozen=True)
class ProbeScore:
    """Test macro F1 of the probe on one task at one label fraction: the macro F1 of the run of
    ``supervised_imagenet`` under the linear protocol at that task, fraction and seed."""

    task: str
    fraction: float
    n_labelled: int
    """The run's labelled images (``split.labelled``)."""
    n_validation: int
    """Its validation images, which choose ``c`` and join the final fit."""
    c: float
    """The inverse L2 strength chosen on validation."""
    macro_f1: float
    chance_macro_f1: float


@dataclass(frozen=True)
class CalibrationChecks:
    """The phantom's difficulty targets, each True when met."""

    planes_easier: bool
    """``planes`` scores above ``brain`` at every label amount."""
    brain_above_floor: bool
    """``brain`` at 100% labels >= its chance macro F1 + :data:`FLOOR_ABOVE_CHANCE`."""
    brain_below_ceiling: bool
    """``brain`` at 100% labels < :data:`CEILING`."""

    @property
    def passed(self) -> bool:
        """Whether every target is met."""
        return all(self.named().values())

    def named(self) -> dict[str, bool]:
        """The verdicts by name (the field names)."""
        return asdict(self)


CHECK_DESCRIPTIONS = {
    "planes_easier": "planes easier than brain at every label amount",
    "brain_above_floor": f"brain at 100% >= chance + {FLOOR_ABOVE_CHANCE:.2f}",
    "brain_below_ceiling": f"brain at 100% < {CEILING:.2f}",
}


@dataclass(frozen=True)
class Calibration:
    """One measurement of the probe: what was measured, how, and its scores and verdicts."""

    generator_version: str
    resolution: int
    seed: int
    phantom: str
    scores: tuple[ProbeScore, ...]
    checks: CalibrationChecks
    command: str
    threads: int
    date: str
    seconds: float

    def as_json(self) -> dict:
        """The entry ``calibration.json`` holds for it."""
        entry = asdict(self)
        entry["scores"] = [asdict(score) for score in self.scores]
        entry["checks"] = self.checks.named()
        return entry

    @classmethod
    def from_json(cls, entry: dict) -> Calibration:
        """The calibration an entry of ``calibration.json`` holds."""
        for part, kind in ((entry, cls), *((score, ProbeScore) for score in entry["scores"])):
            names = {f.name for f in fields(kind)}
            if set(part) != names:
                raise FetalbenchError(f"a calibration {kind.__name__} has keys {sorted(part)}; "
                                      f"expected {sorted(names)} (recalibrate: "
                                      f"docs/calibration.md)")
        return cls(**{
            **entry,
            "scores": tuple(ProbeScore(**score) for score in entry["scores"]),
            "checks": CalibrationChecks(**entry["checks"]),
        })


def chance_macro_f1(labels: np.ndarray, n_classes: int) -> float:
    """Expected macro F1 of guessing uniformly at random (precision = prevalence, recall = 1/K)."""
    prevalence = np.bincount(labels, minlength=n_classes) / len(labels)
    recall = 1.0 / n_classes
    return float(np.mean(2 * prevalence * recall / (prevalence + recall)))


def calibration_checks(scores: list[ProbeScore] | tuple[ProbeScore, ...]) -> CalibrationChecks:
    """Whether the scores meet the phantom's difficulty targets (:class:`CalibrationChecks`)."""
    by = {(s.task, s.fraction): s for s in scores}
    brain_full = by[("brain", 1.0)]
    return CalibrationChecks(
        planes_easier=all(
            by[("planes", f)].macro_f1 > by[("brain", f)].macro_f1 for f in PROBE_FRACTIONS
        ),
        brain_above_floor=brain_full.macro_f1
        >= brain_full.chance_macro_f1 + FLOOR_ABOVE_CHANCE,
        brain_below_ceiling=brain_full.macro_f1 < CEILING,
    )


def probe_resolution(profile: str = DEFAULT_PROFILE, resolution: int | None = None) -> int:
    """The probe's image size: ``resolution`` when given, else the profile's."""
    return resolution if resolution is not None else get_profile(profile).resolution


def version_name(generator_version: int) -> str:
    """How calibrations name a phantom generator version: ``v2`` (as in ``phantom-v2-<hash>``)."""
    return f"v{generator_version}"


def phantom_version(source: DatasetSource) -> str:
    """The generator version of the phantom ``source`` was read from (its ``phantom.json``)."""
    manifest = Path(source.identity.root) / MANIFEST_NAME
    if not manifest.is_file():
        raise FetalbenchError(f"{source.identity.root} has no {MANIFEST_NAME}: not a phantom")
    return version_name(int(json.loads(manifest.read_text())["generator_version"]))


def probe(source: DatasetSource, cache_root: Path, resolution: int, seed: int = 0,
          profile: str = DEFAULT_PROFILE,
          log: Callable[[str], None] = lambda _: None) -> list[ProbeScore]:
    """The probe's four numbers (two tasks x two label fractions) on ``source``.

    Each is the linear evaluation a run of ``supervised_imagenet`` at that task, fraction and
    ``seed`` under ``profile`` (its backbone and validation carve-out) at ``resolution`` makes:
    the run's split and images (:func:`~fetalbench.data.prepare.prepare_run_data`), its cached
    features (:func:`~fetalbench.methods.features.task_features`, computed once per task and
    shared with runs) and :func:`~fetalbench.methods.linear_evaluation.linear_evaluation`. The
    logistic regression runs on one BLAS thread whatever the machine's.
    """
    settings = get_profile(profile)
    encoder = create_backbone(settings.backbone, PROBE_INIT)
    scores = []
    for task_name in PROBE_TASKS:
        task = TASKS.get(task_name)
        for fraction in PROBE_FRACTIONS:
            data = prepare_run_data(source, task, fraction, seed, settings.validation_fraction,
                                    PROBE_POOL, resolution, cache_root)
            features, _, _ = task_features(encoder, data, cache_root, log)
            split, n_classes = data.split, len(task.classes)
            evaluation = linear_evaluation(features, data.labels, split.labelled,
                                           split.validation, split.test, n_classes)
            scores.append(ProbeScore(
                task=task_name,
                fraction=fraction,
                n_labelled=len(split.labelled),
                n_validation=len(split.validation),
                c=evaluation.c,
                macro_f1=macro_f1(data.test_labels, evaluation.predictions, n_classes),
                chance_macro_f1=chance_macro_f1(data.test_labels, n_classes),
            ))
    return scores


def calibrate(cache_root: Path, resolution: int | None = None, seed: int = 0,
              profile: str = DEFAULT_PROFILE) -> list[ProbeScore]:
    """The probe's four numbers on the built-in phantom, at ``resolution`` or the profile's."""
    source = open_source("phantom", None, cache_root)
    return probe(source, cache_root, probe_resolution(profile, resolution), seed, profile)


def measure_calibration(cache_root: Path, profile: str = DEFAULT_PROFILE,
                        resolution: int | None = None, seed: int = 0,
                        command: str = "") -> Calibration:
    """:func:`calibrate` with what ``calibration.json`` records of it (version, timing, ...)."""
    source = open_source("phantom", None, cache_root)
    resolution = probe_resolution(profile, resolution)
    start = time.perf_counter()
    scores = probe(source, cache_root, resolution, seed, profile)
    return Calibration(
        generator_version=phantom_version(source),
        resolution=resolution,
        seed=seed,
        phantom=Path(source.identity.root).name,
        scores=tuple(scores),
        checks=calibration_checks(scores),
        command=command,
        threads=torch.get_num_threads(),
        date=datetime.now(UTC).date().isoformat(),
        seconds=round(time.perf_counter() - start, 1),
    )


def committed_calibrations(path: Path = COMMITTED_FILE) -> list[Calibration]:
    """Every calibration committed in ``path`` (``calibration.json``)."""
    if not path.is_file():
        return []
    return [Calibration.from_json(entry)
            for entry in json.loads(path.read_text(encoding="utf-8"))["calibrations"]]


def committed_entry(version: str, resolution: int, seed: int = 0,
                    path: Path = COMMITTED_FILE) -> Calibration | None:
    """The committed calibration of generator ``version`` (``v2``) at ``resolution``, if any."""
    return next((c for c in committed_calibrations(path)
                 if (c.generator_version, c.resolution, c.seed) == (version, resolution, seed)),
                None)


def committed_calibration(version: str, resolution: int, seed: int = 0,
                          path: Path = COMMITTED_FILE) -> list[ProbeScore] | None:
    """The committed probe scores of generator ``version`` (``v2``, :func:`phantom_version`) at
    ``resolution`` px, or None when that pair was never measured."""
    entry = committed_entry(version, resolution, seed, path)
    return None if entry is None else list(entry.scores)


def record_calibration(calibration: Calibration, path: Path = COMMITTED_FILE) -> Path:
    """Write ``calibration`` into ``path``, replacing one of the same version, resolution and
    seed; entries sorted by those."""
    key = (calibration.generator_version, calibration.resolution, calibration.seed)
    kept = [c for c in committed_calibrations(path)
            if (c.generator_version, c.resolution, c.seed) != key]
    entries = sorted([*kept, calibration],
                     key=lambda c: (int(c.generator_version.lstrip("v")), c.resolution, c.seed))
    document = {
        "about": "Scores of the phantom's calibration probe per generator version, resolution "
                 "and seed, written by `fetalbench calibrate --record` (docs/calibration.md).",
        "calibrations": [c.as_json() for c in entries],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def _rounded(value: float) -> str:
    return f"{value:.{MATCH_DECIMALS}f}"


def differences(fresh: list[ProbeScore], committed: list[ProbeScore]) -> list[str]:
    """How ``fresh`` differs from ``committed`` to :data:`MATCH_DECIMALS` decimals (empty: they
    match)."""
    old = {(s.task, s.fraction): s for s in committed}
    new = {(s.task, s.fraction): s for s in fresh}
    lines = [f"{task} {fraction:.0%}: not committed" for task, fraction in new.keys() - old.keys()]
    lines += [f"{task} {fraction:.0%}: committed, not measured"
              for task, fraction in old.keys() - new.keys()]
    for key in sorted(new.keys() & old.keys()):
        a, b = new[key], old[key]
        for name in ("n_labelled", "n_validation", "c", "macro_f1", "chance_macro_f1"):
            now, then = getattr(a, name), getattr(b, name)
            if name == "c":
                now, then = f"{now:g}", f"{then:g}"
            elif isinstance(now, float):
                now, then = _rounded(now), _rounded(then)
            if now != then:
                lines.append(f"{key[0]} {key[1]:.0%} {name}: {now} now, {then} committed")
    return sorted(lines)


def format_calibration(scores: list[ProbeScore], committed: list[ProbeScore] | None = None,
                       version: str | None = None, resolution: int | None = None) -> str:
    """A table of the probe's scores (beside the committed ones, when given) and whether the
    phantom meets its difficulty targets."""
    old = {(s.task, s.fraction): s for s in committed or ()}
    headers = ("task", "labels", "n labelled", "n validation", "C", "test macro F1", "chance")
    rows = [[s.task, f"{s.fraction:.0%}", s.n_labelled, s.n_validation, f"{s.c:g}",
             _rounded(s.macro_f1), _rounded(s.chance_macro_f1)] for s in scores]
    if committed is not None:
        headers += ("committed F1",)
        for row, s in zip(rows, scores, strict=True):
            match = old.get((s.task, s.fraction))
            row.append(_rounded(match.macro_f1) if match else "-")
    what = "phantom" + (f" {version}" if version else "")
    at = f" at {resolution} px" if resolution is not None else ""
    lines = [f"{what} (SYNTHETIC) difficulty{at}, linear evaluation of the frozen ImageNet "
             f"encoder (supervised_imagenet --protocol linear)",
             tabulate(rows, headers=headers)]
    lines += [f"{'pass' if ok else 'FAIL'}  {CHECK_DESCRIPTIONS[name]}"
              for name, ok in calibration_checks(scores).named().items()]
    if version is not None and resolution is not None:
        if committed is None:
            lines.append(f"no committed calibration of phantom {version} at {resolution} px "
                         f"(record one with --record; docs/calibration.md)")
        elif not (changed := differences(scores, committed)):
            lines.append(f"matches the committed calibration of phantom {version} at "
                         f"{resolution} px (to {MATCH_DECIMALS} decimals)")
        else:
            lines.append(f"DIFFERS from the committed calibration of phantom {version} at "
                         f"{resolution} px: " + "; ".join(changed))
    return "\n".join(lines)


def calibration_report(fresh: Calibration, path: Path = COMMITTED_FILE) -> str:
    """What ``fetalbench calibrate`` prints: :func:`format_calibration` of ``fresh`` beside the
    committed calibration of its version and resolution (none when the committed one was
    measured on a phantom of other settings), and how it was measured."""
    entry = committed_entry(fresh.generator_version, fresh.resolution, fresh.seed, path)
    other = entry is not None and entry.phantom != fresh.phantom
    committed = list(entry.scores) if entry is not None and not other else None
    text = format_calibration(list(fresh.scores), committed, fresh.generator_version,
                              fresh.resolution)
    if other:
        text += (f"\n(the committed calibration of {fresh.generator_version} at "
                 f"{fresh.resolution} px is of {entry.phantom}, not {fresh.phantom})")
    return text + f"\nmeasured in {fresh.seconds:.0f} s with {fresh.threads} torch thread(s)"
