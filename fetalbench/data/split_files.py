"""A run's split as files, for code outside fetalbench: image lists and their checksum.

Users of benchmarks such as VTAB and MedFMC ask for the ids of a split, not its seed: a model
trained elsewhere must see exactly the images a run of fetalbench saw. For a task, a label budget
(a fraction, or patients per class) and a seed, ``fetalbench splits`` writes one CSV per part of
the split (:data:`SPLIT_PARTS`: the labelled images, the validation images that select the model,
the unlabelled pool self-supervised stages learn from, the official test images), each listing
image names and patients (and the class of the labelled parts), and ``split.json`` with what the
split was drawn from and the lists' sha256 (:func:`split_checksum`). A run's record carries the
same checksum (``split.checksum``), so a result made elsewhere on the written lists can be
matched with the records made here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fetalbench.data.splits import TaskSplit, budget_text, split_task
from fetalbench.data.tasks import TASKS, Task
from fetalbench.storage.atomic import write_bytes_atomic
from fetalbench.storage.digests import sha256_hex

if TYPE_CHECKING:
    import pandas as pd

    from fetalbench.data.sources import DatasetSource

SPLIT_PARTS = ("labelled", "validation", "unlabelled_pool", "test")
"""The parts of a run's split, in the order files, lists and the checksum take them."""
SUMMARY_NAME = "split.json"


def pool_positions(source: DatasetSource, task: Task, rows: pd.DataFrame, split: TaskSplit,
                   pool: str) -> np.ndarray:
    """Catalog positions of the pool unlabelled training learns from: the task's official
    training images (``pool="task"``) or the dataset's (``"dataset"``,
    :meth:`~fetalbench.data.tasks.Task.dataset_pool`: every official training image; a
    cross-machine task's training machine only), never an image of the validation carve-out
    (which selects the model) nor of the test set."""
    if pool == "task":
        return rows.index.to_numpy()[split.unlabelled_pool]
    in_pool = task.dataset_pool(source.catalog).to_numpy().copy()
    in_pool[rows.index.to_numpy()[split.validation_carve_out]] = False
    return np.flatnonzero(in_pool)


def split_lists(source: DatasetSource, task: Task, rows: pd.DataFrame, split: TaskSplit,
                pool: str) -> dict[str, pd.DataFrame]:
    """The images of each part of a split (:data:`SPLIT_PARTS`) in the split's order: their
    names and patients, and the class of the labelled parts (the pool is unlabelled)."""
    columns = ["image_name", "patient"]
    lists = {name: rows.iloc[positions][columns].assign(
                 label=[task.classes[label] for label in rows["label"].to_numpy()[positions]])
             for name, positions in (("labelled", split.labelled),
                                     ("validation", split.validation), ("test", split.test))}
    lists["unlabelled_pool"] = source.catalog.iloc[pool_positions(source, task, rows, split,
                                                                  pool)][columns]
    return {name: lists[name].reset_index(drop=True) for name in SPLIT_PARTS}


def split_csv(part: pd.DataFrame) -> str:
    """A part's list as the CSV text its file holds (comma-separated, ``\\n`` line ends)."""
    return part.to_csv(index=False, lineterminator="\n")


def split_checksum(lists: dict[str, pd.DataFrame]) -> str:
    """The sha256 of a split's lists: of each part's name and CSV text (:func:`split_csv`), in
    :data:`SPLIT_PARTS` order."""
    return sha256_hex("".join(f"# {name}\n{split_csv(lists[name])}"
                              for name in SPLIT_PARTS).encode())


@dataclass(frozen=True)
class WrittenSplit:
    """The files ``fetalbench splits`` wrote and the split's checksum."""

    files: tuple[Path, ...]
    checksum: str


def write_split_files(
    out: Path, task_name: str, dataset: str, data_root: Path | None, fraction: float | None,
    patients_per_class: int | None, seed: int, validation: str, pool: str, profile: str,
    cache_root: Path,
) -> WrittenSplit:
    """Write the split of ``task_name`` on ``dataset`` for a label budget and ``seed``, as a run
    with these settings at ``profile`` draws it (its validation carve-out), into ``out``: one
    ``<part>.csv`` per part and ``split.json`` (see the module doc). No image is decoded."""
    from fetalbench.data.sources import open_source
    from fetalbench.errors import FetalbenchError
    from fetalbench.methods.registry import POOLS
    from fetalbench.profiles import get_profile

    if pool not in POOLS:
        raise FetalbenchError(f"unknown unlabelled pool {pool!r}; expected one of "
                              f"{', '.join(POOLS)}")
    source = open_source(dataset, data_root, cache_root)
    task = TASKS.get(task_name)
    validation_fraction = get_profile(profile).validation_fraction
    rows = task.select(source.catalog)
    split = split_task(rows, fraction, seed, validation_fraction, validation, patients_per_class)
    lists = split_lists(source, task, rows, split, pool)
    out = Path(out)
    files = []
    for name in SPLIT_PARTS:
        files.append(out / f"{name}.csv")
        write_bytes_atomic(files[-1], split_csv(lists[name]).encode())
    checksum = split_checksum(lists)
    summary = {
        "dataset": dataset, "dataset_fingerprint": source.identity.fingerprint,
        "synthetic": source.identity.synthetic, "task": task_name, "fraction": fraction,
        "patients_per_class": patients_per_class,
        "budget": budget_text(fraction, patients_per_class), "seed": seed,
        "validation": validation, "validation_fraction": validation_fraction, "pool": pool,
        "images": {name: len(lists[name]) for name in SPLIT_PARTS},
        "patients": {name: int(lists[name]["patient"].nunique()) for name in SPLIT_PARTS},
        "checksum": checksum,
    }
    files.append(out / SUMMARY_NAME)
    write_bytes_atomic(files[-1], (json.dumps(summary, indent=2) + "\n").encode())
    return WrittenSplit(tuple(files), checksum)
