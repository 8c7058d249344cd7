"""prepare_run_data: the one place a run's rows, split, images and tensors are put together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fetalbench.data.prepare import prepare_run_data
from fetalbench.data.sources import open_source
from fetalbench.data.splits import split_task
from fetalbench.data.tasks import TASKS
from fetalbench.errors import FetalbenchError


def test_the_tensors_follow_the_split_and_the_pool(real_subset_root: Path, tmp_path: Path
                                                   ) -> None:
    source = open_source("fetal_planes_db", real_subset_root, tmp_path)
    task = TASKS.get("planes")
    data = prepare_run_data(source, task, 0.5, 3, 0.2, "task", 32, tmp_path)
    expected = split_task(task.select(source.catalog), 0.5, 3, 0.2)
    assert all(np.array_equal(getattr(data.split, name), getattr(expected, name))
               for name in ("labelled", "train", "validation", "test", "unlabelled_pool",
                            "validation_carve_out"))
    methods = data.task_data()
    assert methods.classes == task.classes
    assert methods.labelled_images.shape == (len(data.split.labelled), 1, 32, 32)
    assert methods.labelled_images.dtype == torch.uint8
    assert torch.equal(methods.labelled_labels, torch.from_numpy(data.labels[data.split.labelled]))
    assert len(methods.validation_images) == len(methods.validation_labels) == len(
        data.split.validation)
    assert len(methods.unlabelled_images) == len(data.split.unlabelled_pool)
    # the task's pool: its training images outside the validation carve-out
    assert torch.equal(methods.unlabelled_images[:, 0],
                       torch.from_numpy(data.images[data.split.unlabelled_pool]))
    # the probe's bank: every training image outside the carve-out with its label, whatever the
    # fraction, and no patient of the carve-out
    assert torch.equal(methods.probe_labels, torch.from_numpy(data.labels[data.split.train]))
    assert torch.equal(methods.probe_images, methods.unlabelled_images)
    patients = data.rows["patient"].to_numpy()
    assert not set(patients[data.split.train]) & set(patients[data.split.validation])
    assert torch.equal(data.test_images()[:, 0],
                       torch.from_numpy(data.images[data.split.test]))
    assert data.test_labels.dtype == np.int64 and len(data.test_labels) == len(data.split.test)
    assert (data.test_patients == data.rows.iloc[data.split.test]["patient"].to_numpy()).all()
    assert data.test_masks() is None  # FETAL_PLANES_DB has no Masks/

    # the dataset's pool: every official training image of the dataset but the task's
    # validation carve-out
    everything = prepare_run_data(source, task, 0.5, 3, 0.2, "dataset", 32, tmp_path)
    carve_out = set(everything.rows["image_name"].iloc[everything.split.validation_carve_out])
    assert len(carve_out) > 0
    catalog = source.catalog
    in_pool = (catalog["train"] & ~catalog["image_name"].isin(carve_out)).to_numpy()
    pool = everything.unlabelled_images()
    assert len(pool) == int(catalog["train"].sum()) - len(carve_out)
    assert torch.equal(pool[:, 0], torch.from_numpy(everything.all_images[in_pool]))


def test_an_unknown_pool_is_refused(real_subset_root: Path, tmp_path: Path) -> None:
    source = open_source("fetal_planes_db", real_subset_root, tmp_path)
    with pytest.raises(FetalbenchError, match="unknown unlabelled pool 'all'"):
        prepare_run_data(source, TASKS.get("brain"), 1.0, 0, 0.2, "all", 32, tmp_path)
