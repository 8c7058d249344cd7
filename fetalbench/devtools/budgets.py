"""The budget rule's arithmetic per profile, dataset, task and label fraction (docs/budgets.md).

:mod:`fetalbench.profiles` sizes every training budget to its data; this module works out what
that means for the built-in datasets and tasks, without decoding or generating a single image:
the catalogs come from metadata alone (:func:`catalog_from_csv`: FETAL_PLANES_DB's official CSV,
and the phantom's plan written as the CSV the phantom would have), the data sizes from
:func:`fetalbench.data.splits.split_task`, and every number of a budget from the profile's own
functions, so the table follows the profiles when their numbers change.
``scripts/budget_table.py`` writes the result to ``docs/budgets.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tabulate import tabulate

from fetalbench.data.fetal_planes_db import CSV_NAME, IMAGES_DIR, catalog_frame, read_metadata
from fetalbench.data.phantom.render import PhantomSettings, _write_csv, plan_phantom
from fetalbench.data.sources import DATASETS
from fetalbench.data.splits import split_task
from fetalbench.data.tasks import TASKS
from fetalbench.errors import FetalbenchError
from fetalbench.profiles import (
    PROFILES,
    Profile,
    finetune_schedule,
    finetune_steps,
    pretrain_steps,
    warmup_steps,
)

if TYPE_CHECKING:
    from fetalbench.methods.objective import Objective

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_CSV = REPO / "tests" / "data" / "fetal_planes_db" / CSV_NAME
"""The byte-for-byte copy of the official FETAL_PLANES_DB CSV the repository carries."""
DEFAULT_OUTPUT = REPO / "docs" / "budgets.md"
DATASET_NAMES = ("phantom", "fetal_planes_db")
TASK_NAMES = ("planes", "brain", "planes_cross_machine", "brain_cross_machine")
FRACTIONS = (0.01, 0.05, 0.25, 1.0)
SEED = 0
VALIDATION = "fixed"
SECONDS_HEADING = "## Seconds per run on this machine"


# --- catalogs without images ---------------------------------------------------------------------

def catalog_from_csv(csv_path: Path) -> pd.DataFrame:
    """The catalog :func:`fetalbench.data.fetal_planes_db.load_catalog` builds from a
    FETAL_PLANES_DB-layout CSV, without looking for its images: the same columns and values,
    ``path`` being where each image would lie beside the CSV."""
    csv_path = Path(csv_path)
    return catalog_frame(read_metadata(csv_path), csv_path.resolve().parent / IMAGES_DIR)


def phantom_catalog(settings: PhantomSettings | None = None) -> pd.DataFrame:
    """The phantom's catalog from its plan (:func:`plan_phantom`), rendering nothing: the CSV
    the phantom would write (``_write_csv``) read back by the FETAL_PLANES_DB reader.
    ``settings`` defaults to ``PhantomSettings()``, the phantom ``open_source("phantom", ...)``
    opens."""
    with tempfile.TemporaryDirectory(prefix="fetalbench-budgets-") as folder:
        csv_path = Path(folder) / CSV_NAME
        _write_csv(csv_path, plan_phantom(settings or PhantomSettings()))
        return catalog_from_csv(csv_path)


@cache
def dataset_catalog(name: str) -> pd.DataFrame:
    """The catalog of a built-in dataset (``phantom`` or ``fetal_planes_db``), without images."""
    if name == "phantom":
        return phantom_catalog()
    if name == "fetal_planes_db":
        return catalog_from_csv(OFFICIAL_CSV)
    raise FetalbenchError(f"no image-free catalog for dataset {name!r}; expected one of "
                          f"{', '.join(DATASET_NAMES)}")


# --- data sizes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SplitSizes:
    """Image counts of one task split (:class:`fetalbench.data.splits.TaskSplit`)."""

    labelled: int
    validation: int
    test: int
    pool: int
    carve_out: int


@cache
def split_sizes(dataset: str, task: str, fraction: float, validation_fraction: float,
                seed: int = SEED, validation: str = VALIDATION) -> SplitSizes:
    """The sizes of ``task``'s split on ``dataset`` at ``fraction`` and ``seed``."""
    rows = TASKS.get(task).select(dataset_catalog(dataset))
    split = split_task(rows, fraction, seed, validation_fraction, validation)
    return SplitSizes(labelled=len(split.labelled), validation=len(split.validation),
                      test=len(split.test), pool=len(split.unlabelled_pool),
                      carve_out=len(split.validation_carve_out))


# --- the arithmetic ------------------------------------------------------------------------------

def used_batch(batch_size: int, n_images: int) -> int:
    """The batch a stage takes: the profile's, or the whole set when it is smaller
    (:func:`fetalbench.methods.engine.batches`, on one device)."""
    return max(1, min(batch_size, n_images))


def passes(steps: int, batch_size: int, n_images: int) -> float:
    """How many times ``steps`` steps show each of ``n_images`` images, on average."""
    return steps * used_batch(batch_size, n_images) / max(1, n_images)


@dataclass(frozen=True)
class FinetuneBudget:
    """The fine-tuning budget of one profile, dataset, task and label fraction.

    ``budget`` is :func:`fetalbench.profiles.finetune_steps` of the labelled set; ``steps`` the
    most a run trains (:func:`fetalbench.profiles.finetune_schedule`; early stopping may end it
    sooner), validated every
    ``interval`` steps; ``passes`` and ``warmup`` are of ``steps``.
    """

    profile: str
    dataset: str
    task: str
    fraction: float
    labelled: int
    validation: int
    batch: int
    budget: int
    steps: int
    interval: int
    passes: float
    warmup: int


@dataclass(frozen=True)
class PretrainBudget:
    """The pre-training budget of one profile, dataset and task on the task's unlabelled pool
    (``pool="task"``: its official training images outside the validation carve-out)."""

    profile: str
    dataset: str
    task: str
    pool: int
    test: int
    batch: int
    steps: int
    passes: float
    warmup: int


def finetune_budget(profile: Profile, dataset: str, task: str, fraction: float,
                    labelled: int, validation: int) -> FinetuneBudget:
    """The fine-tuning budget of ``profile`` for ``labelled`` labelled images."""
    budget = finetune_steps(profile, labelled)
    steps, interval = finetune_schedule(profile, labelled)
    return FinetuneBudget(
        profile=profile.name, dataset=dataset, task=task, fraction=fraction, labelled=labelled,
        validation=validation, batch=used_batch(profile.batch_size, labelled), budget=budget,
        steps=steps, interval=interval,
        passes=passes(steps, profile.batch_size, labelled),
        warmup=warmup_steps(profile, steps),
    )


def pretrain_budget(profile: Profile, dataset: str, task: str, pool: int,
                    test: int) -> PretrainBudget:
    """The pre-training budget of ``profile`` for an unlabelled pool of ``pool`` images."""
    steps = pretrain_steps(profile, pool)
    return PretrainBudget(
        profile=profile.name, dataset=dataset, task=task, pool=pool, test=test,
        batch=used_batch(profile.pretrain_batch_size, pool), steps=steps,
        passes=passes(steps, profile.pretrain_batch_size, pool),
        warmup=warmup_steps(profile, steps),
    )


def _scaled_objectives() -> str:
    """The registered objectives whose stage trains other than the profile's passes."""
    scaled = sorted((cls.__name__, cls.pool_passes_scale) for cls in _objective_classes()
                    if cls.pool_passes_scale != 1.0)
    return ", ".join(f"{name} x{scale:g}" for name, scale in scaled) or "none"


def _objective_classes() -> set[type[Objective]]:
    """Every objective class defined once the built-in methods are imported (torch is imported
    here only, when the document is written)."""
    from fetalbench.methods import BUILT_IN_METHODS
    from fetalbench.methods.objective import Objective

    for module in sorted({module for _, module, _ in BUILT_IN_METHODS}):
        importlib.import_module(f"fetalbench.methods.{module}")

    def subclasses(cls: type[Objective]) -> set[type[Objective]]:
        return {cls, *(c for sub in cls.__subclasses__() for c in subclasses(sub))}

    return subclasses(Objective)


def _profiles(profiles: Iterable[Profile] | None) -> list[Profile]:
    return list(PROFILES.values()) if profiles is None else list(profiles)


def finetune_rows(profiles: Iterable[Profile] | None = None,
                  datasets: Sequence[str] = DATASET_NAMES, tasks: Sequence[str] = TASK_NAMES,
                  fractions: Sequence[float] = FRACTIONS) -> list[FinetuneBudget]:
    """Fine-tuning budgets for every profile (default: all of them), dataset, task and fraction,
    at seed 0 with the profile's validation carve-out and ``fixed`` validation."""
    return [
        finetune_budget(profile, dataset, task, fraction, sizes.labelled, sizes.validation)
        for profile in _profiles(profiles) for dataset in datasets for task in tasks
        for fraction in fractions
        for sizes in [split_sizes(dataset, task, fraction, profile.validation_fraction)]
    ]


def pretrain_rows(profiles: Iterable[Profile] | None = None,
                  datasets: Sequence[str] = DATASET_NAMES,
                  tasks: Sequence[str] = TASK_NAMES) -> list[PretrainBudget]:
    """Pre-training budgets for every profile, dataset and task (the pool does not depend on
    the label fraction)."""
    return [
        pretrain_budget(profile, dataset, task, sizes.pool, sizes.test)
        for profile in _profiles(profiles) for dataset in datasets for task in tasks
        for sizes in [split_sizes(dataset, task, FRACTIONS[-1], profile.validation_fraction)]
    ]


# --- seconds per run -----------------------------------------------------------------------------

def read_seconds(path: Path) -> dict[str, float]:
    """A JSON object ``"profile/task/method/fraction" -> seconds``, checked."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise FetalbenchError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(data, dict):
        raise FetalbenchError(f"{path}: expected a JSON object "
                              '{"profile/task/method/fraction": seconds}')
    seconds = {}
    for key, value in data.items():
        if len(str(key).split("/")) != 4:
            raise FetalbenchError(f"{path}: key {key!r} is not profile/task/method/fraction")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value) or value < 0:
            raise FetalbenchError(f"{path}: {key!r} has {value!r}, not a number of seconds")
        seconds[str(key)] = float(value)
    return seconds


def _fraction_key(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def seconds_section(seconds: Mapping[str, float] | None) -> str:
    """The ``Seconds per run on this machine`` section: a table of the measured runs, or a
    line saying none were measured."""
    lines = [SECONDS_HEADING, ""]
    if not seconds:
        lines.append("Not measured: run `scripts/budget_table.py --seconds FILE` with a JSON "
                     'object `{"profile/task/method/fraction": seconds}` to fill this section.')
        return "\n".join(lines) + "\n"
    parsed = sorted((key.split("/") for key in seconds),
                    key=lambda p: (p[0], p[1], p[2], _fraction_key(p[3])))
    table = [[*parts, f"{seconds['/'.join(parts)]:.1f}"] for parts in parsed]
    lines.append("Wall-clock seconds of whole runs on this machine (data, training, test and "
                 "explanation: the median of the records' `timings.total_s` over seeds; a run "
                 "that trained its pre-training stage includes it), one thread per run, as the "
                 "committed records were made (the README's committed results say how many "
                 "ran at once).")
    lines.append("")
    lines.append(tabulate(table, headers=["profile", "task", "method", "fraction", "seconds"],
                          tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"


# --- the document --------------------------------------------------------------------------------

def _number(value: float) -> str:
    return f"{value:g}"


def _passes(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def rule_table(profiles: Iterable[Profile]) -> str:
    """The profile fields of the budget rule, one row per profile."""
    rows = [[f"`{p.name}`", _number(p.finetune_passes), p.finetune_min_steps,
             p.finetune_max_steps, p.batch_size, p.validations, p.patience,
             f"{p.warmup:.0%}", _number(p.validation_fraction), _number(p.pretrain_passes),
             p.pretrain_min_steps, p.pretrain_max_steps, p.pretrain_batch_size]
            for p in profiles]
    headers = ["profile", "FT passes", "FT min steps", "FT max steps", "FT batch",
               "validations", "patience", "warm-up", "validation carve-out", "PT passes",
               "PT min steps", "PT max steps", "PT batch"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _title(dataset: str) -> str:
    return DATASETS.get(dataset).title if dataset in DATASETS else dataset


def _finetune_table(rows: Sequence[FinetuneBudget]) -> str:
    table = [[_title(r.dataset), r.task, f"{r.fraction:g}", f"{r.labelled:,}",
              f"{r.validation:,}", r.batch, f"{r.budget:,}", f"{r.steps:,}", r.interval,
              _passes(r.passes), r.warmup] for r in rows]
    headers = ["dataset", "task", "fraction", "labelled", "validation", "batch", "budget",
               "steps", "interval", "passes", "warm-up"]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def _pretrain_table(rows: Sequence[PretrainBudget]) -> str:
    table = [[_title(r.dataset), r.task, f"{r.pool:,}", f"{r.test:,}", r.batch, f"{r.steps:,}",
              _passes(r.passes), r.warmup] for r in rows]
    headers = ["dataset", "task", "pool", "test", "batch", "steps", "passes", "warm-up"]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


ORIGIN = (
    "Where the numbers come from. The schedule of Migliorelli et al. (2024) itself (epochs, "
    "batch, learning rate) is not given in any source this project has (its abstract names "
    "strategies, tasks and label amounts, not budgets), so no profile claims to reproduce it. "
    "The rule follows published practice instead: self-supervised recipes pre-train for hundreds "
    "of epochs with a warm-up (SimCLR, Chen et al. 2020: 100-800 epochs on ImageNet, 10 of "
    "warm-up; solo-learn's CIFAR and ImageNet-100 configurations: 400-1,000 epochs), and "
    "fine-tuning budgets grow with the labelled set within a floor and a ceiling (the "
    "BiT-HyperRule of Kolesnikov et al., \"Big Transfer\", ECCV 2020: 500 steps below 20,000 "
    "images, 10,000 below 500,000). `gpu` and `paper` take 200 and 300 passes over the pool, and "
    "50 passes over the labelled set within 200-3,000 steps. `quick` is what two CPU cores "
    "afford for the board: 30 passes (at least 200 steps) are where the reference stopped "
    "being `still improving` on the phantom, and 60 pool passes are where SimCLR and BYOL "
    "from ImageNet weights end well below their chance levels with the k-NN probe above its "
    "start; NNCLR's loss is still falling there, so NNCLR trains twice as many. They are not "
    "enough for SimCLR from random weights, and DINO's outputs turn uniform whatever the "
    "budget tried (the README's committed results give the measurements)."
)
"""Why the profiles' numbers are what they are; the doc's second paragraph."""


def render_markdown(profiles: Sequence[Profile], finetune: Sequence[FinetuneBudget],
                    pretrain: Sequence[PretrainBudget],
                    seconds: Mapping[str, float] | None = None) -> str:
    """docs/budgets.md: the rule, its fields per profile, the budgets per profile, and the
    seconds per run when measured."""
    fractions = sorted({r.fraction for r in finetune})
    parts = [
        "# Training budgets",
        "",
        "<!-- Generated by scripts/budget_table.py from fetalbench/profiles.py; do not edit. -->",
        "",
        "Every training budget is sized to its data by one rule (`fetalbench/profiles.py`, "
        "`stage_steps`): a stage trains for `passes` over its data (fine-tuning: the labelled "
        "set; pre-training: the unlabelled pool) in full batches, at least `min steps` and at "
        "most `max steps`. Its learning rate warms up linearly over `warm-up` of its steps, "
        "then decays on a cosine to zero. Fine-tuning validates `validations` times over its "
        "budget (rounded down to whole validation intervals, so the last step is validated) "
        "and stops early after `patience` validations without a better validation macro F1 "
        "(0: never); the tables give the budget, the most a run trains.",
        "",
        rule_table(profiles),
        "",
        ORIGIN,
        "",
        "FT: fine-tuning (and linear probing), in passes over the labelled set; PT: "
        "self-supervised pre-training, in passes over the unlabelled pool; the validation "
        "carve-out is the share of the official training patients held out to select the "
        "model. An objective may train a multiple of the profile's pre-training passes, "
        "within the same floor and ceiling (`pool_passes_scale`, with its measurement in the "
        "objective's docstring); the pre-training tables give the profile's own budget, which "
        f"every other objective trains. Scaled here: {_scaled_objectives()}.",
        "",
        f"The data are each task's split at seed {SEED} with the profile's validation "
        f"carve-out and `{VALIDATION}` validation (the whole carve-out selects the model), at "
        f"label fractions {', '.join(f'{f:g}' for f in fractions)}; the pool is the task's "
        "unlabelled pool (`pool=\"task\"`: its official training images outside the "
        "validation carve-out). Catalogs come from metadata alone: FETAL_PLANES_DB's official "
        "CSV (`tests/data/fetal_planes_db/`) and the default phantom's plan.",
        "",
        "Columns: `batch` is the batch a stage takes (the profile's, or the whole set when it "
        "is smaller); `budget` the rule's steps; `steps` the most a run trains (the budget "
        "rounded down to whole validation intervals), validated every `interval` steps; "
        "`passes` = steps x batch / images, how often each image is seen; `warm-up` the "
        "learning-rate warm-up steps.",
        "",
    ]
    for profile in profiles:
        ours_f = [r for r in finetune if r.profile == profile.name]
        ours_p = [r for r in pretrain if r.profile == profile.name]
        parts += [f"## Profile `{profile.name}`", ""]
        if ours_f:
            parts += ["### Fine-tuning", "", _finetune_table(ours_f), ""]
        if ours_p:
            parts += ["### Pre-training", "", _pretrain_table(ours_p), ""]
    parts.append(seconds_section(seconds))
    return "\n".join(parts)


def write_budgets(output: Path = DEFAULT_OUTPUT, seconds_path: Path | None = None,
                  profiles: Iterable[Profile] | None = None) -> Path:
    """Compute every budget and write the markdown to ``output``."""
    chosen = _profiles(profiles)
    seconds = read_seconds(seconds_path) if seconds_path is not None else None
    text = render_markdown(chosen, finetune_rows(chosen, DATASET_NAMES, TASK_NAMES, FRACTIONS),
                           pretrain_rows(chosen, DATASET_NAMES, TASK_NAMES), seconds)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/budget_table.py [--seconds FILE] [--output PATH]``."""
    parser = argparse.ArgumentParser(description="Write docs/budgets.md: the training budgets "
                                     "of every profile, dataset, task and label fraction.")
    parser.add_argument("--seconds", type=Path, default=None, help="JSON object "
                        '{"profile/task/method/fraction": seconds} measured on this machine')
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write (default {DEFAULT_OUTPUT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    try:
        output = write_budgets(args.output, args.seconds)
    except FetalbenchError as error:
        parser.exit(1, f"error: {error}\n")
    print(f"wrote {output}")
    return 0
