"""Cross-machine tasks, checked on the real FETAL_PLANES_DB CSV and on the phantom's plan."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fetalbench.data.phantom.render import PhantomSettings, plan_phantom, render
from fetalbench.data.splits import split_task
from fetalbench.data.tasks import TASKS, CrossMachineTask
from fetalbench.errors import FetalbenchError

STATED = {
    "planes_cross_machine": (
        {"Fetal abdomen": 199, "Fetal brain": 1129, "Fetal femur": 293, "Fetal thorax": 842,
         "Maternal cervix": 583, "Other": 410},
        {"Fetal abdomen": 91, "Fetal brain": 257, "Fetal femur": 103, "Fetal thorax": 107,
         "Maternal cervix": 295, "Other": 884},
    ),
    "brain_cross_machine": (
        {"Trans-thalamic": 588, "Trans-cerebellum": 268, "Trans-ventricular": 214},
        {"Trans-thalamic": 143, "Trans-cerebellum": 46, "Trans-ventricular": 48},
    ),
}
"""Training (Voluson E6) and test (Aloka) images per class, as the tasks' docstrings state."""


@pytest.mark.parametrize("name", sorted(STATED))
def test_cross_machine_split_on_the_real_csv(real_catalog: pd.DataFrame, name: str) -> None:
    task = TASKS.get(name)
    assert isinstance(task, CrossMachineTask)
    rows = task.select(real_catalog)
    train, test = rows[rows["train"]], rows[~rows["train"]]
    # machine-disjoint: training images of one machine, official test images of another
    assert set(train["machine"]) == {task.train_machine}
    assert set(test["machine"]) == {task.test_machine}
    assert task.train_machine != task.test_machine
    # patient-disjoint
    assert not set(train["patient"]) & set(test["patient"])
    # every class on both sides, in the numbers the docstring states
    stated_train, stated_test = STATED[name]
    assert train[task.label_column].value_counts().to_dict() == stated_train
    assert test[task.label_column].value_counts().to_dict() == stated_test
    assert set(stated_train) == set(stated_test) == set(task.classes)
    if name == "planes_cross_machine":
        assert (len(train), len(test)) == (3456, 1737)
        assert (train["patient"].nunique(), test["patient"].nunique()) == (416, 389)
    else:
        assert (len(train), len(test)) == (1070, 237)
    # the split machinery works unchanged on the selected rows: every training position
    # (validation, labelled, pool) is the training machine's, the test is the other's
    split = split_task(rows, 0.05, seed=0)
    positions = np.concatenate([split.train, split.validation, split.labelled,
                                split.unlabelled_pool, split.validation_carve_out])
    assert set(rows.iloc[positions]["machine"]) == {task.train_machine}
    assert set(rows.iloc[split.test]["machine"]) == {task.test_machine}
    # the pool is the training machine's images outside the validation carve-out
    assert len(split.test) == len(test)
    assert len(split.unlabelled_pool) + len(split.validation_carve_out) == len(train)
    assert not set(split.unlabelled_pool) & set(split.validation_carve_out)
    assert set(rows.iloc[split.validation]["label"]) == set(range(len(task.classes)))
    assert set(rows.iloc[split.labelled]["label"]) == set(range(len(task.classes)))


@pytest.mark.parametrize("name", sorted(STATED))
def test_the_phantom_has_both_machines_with_every_class(name: str) -> None:
    task = TASKS.get(name)
    plan = pd.DataFrame([dataclasses.asdict(r) for r in plan_phantom(PhantomSettings())])
    rows = task.select(plan)
    for side in (rows[rows["train"]], rows[~rows["train"]]):
        assert set(side[task.label_column]) == set(task.classes)


def test_a_class_missing_on_one_side_is_an_error(real_catalog: pd.DataFrame) -> None:
    task = TASKS.get("planes_cross_machine")
    without = real_catalog[~((real_catalog["machine"] == "Aloka")
                             & (real_catalog["plane"] == "Fetal femur"))]
    with pytest.raises(FetalbenchError, match=r"test images of Aloka.*Fetal femur"):
        task.select(without)


def test_the_phantoms_machines_render_the_same_scene_differently() -> None:
    """Rendered as an Aloka, the scenes of Voluson E6 records show coarser, less smoothed
    speckle (more fine-scale energy) and a darker far field (the time-gain curve): the shift
    the cross-machine tasks measure (bmode.MACHINE_STYLES)."""
    settings = PhantomSettings()
    records = [r for r in plan_phantom(settings) if r.machine == "Voluson E6"
               and r.plane in ("Fetal brain", "Fetal abdomen")][:4]
    for record in records:
        voluson, _ = render(record, settings)
        aloka, _ = render(dataclasses.replace(record, machine="Aloka"), settings)
        inside = (voluson > 0) & (aloka > 0)
        inside[:, :40] = inside[:, -40:] = False  # the burnt-in text and bars
        grain = [float(np.abs(np.diff(image.astype(float), axis=1))[inside[:, 1:]].mean())
                 for image in (voluson, aloka)]
        assert grain[1] > 1.5 * grain[0], record.image_name
        deep = inside.copy()
        deep[: 2 * inside.shape[0] // 3] = False
        assert aloka[deep].mean() < voluson[deep].mean(), record.image_name


@pytest.mark.parametrize("name", sorted(STATED))
def test_the_dataset_pool_of_a_cross_machine_task_stays_on_its_training_machine(
        real_catalog: pd.DataFrame, name: str) -> None:
    task = TASKS.get(name)
    pool = real_catalog[task.dataset_pool(real_catalog)]
    assert set(pool["machine"]) == {task.train_machine} and pool["train"].all()
    everything = TASKS.get("planes").dataset_pool(real_catalog)
    assert everything.sum() == real_catalog["train"].sum() > len(pool)
