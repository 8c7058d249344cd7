"""A run's data, prepared by one function: task rows, split, decoded images, method tensors.

``source -> catalog -> task split -> image cache``: :func:`prepare_run_data` takes an opened
source and a run's settings (task, label fraction, seed, validation carve-out, unlabelled pool,
resolution) and returns :class:`RunData`. ``fetalbench run`` trains and tests on it
(:mod:`fetalbench.runs.execute`), ``fetalbench explain`` rebuilds a finished run's test set with
it (:mod:`fetalbench.explain.explain`), and the phantom's calibration probe and ``fetalbench
bench`` read their images through it; so explain sees the split the run saw by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fetalbench.data.image_cache import load_images
from fetalbench.data.sources import DatasetSource
from fetalbench.data.split_files import pool_positions, split_lists
from fetalbench.data.splits import TaskSplit, split_task
from fetalbench.data.tasks import Task
from fetalbench.errors import FetalbenchError
from fetalbench.explain.pointing import defining_masks, has_masks
from fetalbench.methods.api import TaskData
from fetalbench.methods.registry import POOLS


def _image_tensor(images: np.ndarray, positions: np.ndarray) -> torch.Tensor:
    """The uint8 ``images[positions]`` as a contiguous tensor ``[N, 1, H, W]``."""
    return torch.from_numpy(np.ascontiguousarray(images[positions])).unsqueeze(1)


@dataclass(frozen=True, eq=False)
class RunData:
    """The data of one run: the task's rows and split, and their images decoded at one resolution.

    ``rows`` is the task's frame (``Task.select``: the catalog rows of its classes with an integer
    ``label``); ``split`` holds positions into it. ``images`` and ``labels`` are the rows' uint8
    images ``[N, H, W]`` and int64 labels, in row order; ``all_images`` every image of the
    catalog, which the ``"dataset"`` pool draws from. The tensors a method or the test receives
    are made on request (:meth:`task_data`, :meth:`test_images`), so a caller pays only for the
    ones it uses.
    """

    source: DatasetSource
    task: Task
    pool: str
    resolution: int
    rows: pd.DataFrame
    split: TaskSplit
    all_images: np.ndarray
    images: np.ndarray
    labels: np.ndarray

    def pool_positions(self) -> np.ndarray:
        """Catalog positions of the unlabelled pool
        (:func:`~fetalbench.data.split_files.pool_positions`)."""
        return pool_positions(self.source, self.task, self.rows, self.split, self.pool)

    def unlabelled_images(self) -> torch.Tensor:
        """The images of the unlabelled pool (:meth:`pool_positions`)."""
        return _image_tensor(self.all_images, self.pool_positions())

    def split_lists(self) -> dict[str, pd.DataFrame]:
        """The image lists of the run's split (:func:`~fetalbench.data.split_files.split_lists`),
        as ``fetalbench splits`` writes them."""
        return split_lists(self.source, self.task, self.rows, self.split, self.pool)

    def task_data(self) -> TaskData:
        """The tensors a method receives: labelled, validation and unlabelled images; no test."""
        return TaskData(
            classes=self.task.classes,
            labelled_images=_image_tensor(self.images, self.split.labelled),
            labelled_labels=torch.from_numpy(self.labels[self.split.labelled]),
            validation_images=_image_tensor(self.images, self.split.validation),
            validation_labels=torch.from_numpy(self.labels[self.split.validation]),
            unlabelled_images=self.unlabelled_images(),
            probe_images=_image_tensor(self.images, self.split.train),
            probe_labels=torch.from_numpy(self.labels[self.split.train]),
        )

    @property
    def test_rows(self) -> pd.DataFrame:
        """The rows of the official test split."""
        return self.rows.iloc[self.split.test]

    def test_images(self) -> torch.Tensor:
        """The official test split's uint8 images ``[N, 1, H, W]``."""
        return _image_tensor(self.images, self.split.test)

    @property
    def test_labels(self) -> np.ndarray:
        """The test images' int64 labels."""
        return self.labels[self.split.test]

    @property
    def test_machines(self) -> np.ndarray:
        """The test images' ultrasound machines (the record's per-machine metrics)."""
        return self.test_rows["machine"].to_numpy()

    @property
    def test_names(self) -> list[str]:
        """The test images' file names, in the split's fixed order."""
        return self.test_rows["image_name"].tolist()

    @property
    def test_patients(self) -> np.ndarray:
        """The test images' patient ids (the embedding scores' k-NN folds keep them together)."""
        return self.test_rows["patient"].to_numpy()

    def test_masks(self) -> np.ndarray | None:
        """The test images' defining-structure masks for the pointing game
        (:mod:`fetalbench.explain.pointing`), or None when the dataset has no ``Masks/``."""
        root = Path(self.source.identity.root)
        if not has_masks(root):
            return None
        names = [self.task.classes[label] for label in self.test_rows["label"]]
        return defining_masks(root, self.test_rows["image_name"].tolist(), names, self.resolution)


def prepare_run_data(
    source: DatasetSource,
    task: Task,
    fraction: float | None,
    seed: int,
    validation_fraction: float,
    pool: str,
    resolution: int,
    cache_root: Path,
    validation: str = "fixed",
    patients_per_class: int | None = None,
) -> RunData:
    """The data of a run of ``task`` on ``source``: the split of its rows for ``seed`` and a label
    budget, ``fraction`` or ``patients_per_class`` (:func:`~fetalbench.data.splits.split_task`,
    with a ``validation_fraction`` carve-out under the ``validation`` setting), and the
    catalog's images decoded at ``resolution`` (read from the image cache in ``cache_root``,
    decoded into it the first time)."""
    if pool not in POOLS:
        raise FetalbenchError(f"unknown unlabelled pool {pool!r}; expected one of "
                              f"{', '.join(POOLS)}")
    rows = task.select(source.catalog)
    split = split_task(rows, fraction, seed, validation_fraction, validation, patients_per_class)
    all_images = load_images(source.catalog, source.identity.fingerprint, resolution, cache_root)
    return RunData(
        source=source,
        task=task,
        pool=pool,
        resolution=resolution,
        rows=rows,
        split=split,
        all_images=all_images,
        images=all_images[rows.index.to_numpy()],
        labels=rows["label"].to_numpy(dtype=np.int64),
    )
