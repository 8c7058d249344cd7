"""Classification tasks: which catalog column is the label and which of its classes count.

``planes`` has high inter-class variability (the six main planes of FETAL_PLANES_DB); ``brain``
has low inter-class variability (the three standard brain planes), as in Migliorelli et al.,
Computers in Biology and Medicine 174:108430 (2024). Beyond the paper, ``planes_cross_machine`` and
``brain_cross_machine`` ask whether a model trained on one ultrasound machine works on another
(:class:`CrossMachineTask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetalbench.data.fetal_planes_db import PLANES
from fetalbench.errors import FetalbenchError
from fetalbench.registry import Registry

if TYPE_CHECKING:  # tasks work on the catalog's frames; listing them needs no pandas
    import pandas as pd


@dataclass(frozen=True)
class Task:
    """A label column of the catalog and the classes, in label-index order, that make the task."""

    name: str
    label_column: str
    classes: tuple[str, ...]
    description: str

    def select(self, catalog: pd.DataFrame) -> pd.DataFrame:
        """The task's images with an integer ``label`` column; a task needs two classes or more."""
        rows = catalog[catalog[self.label_column].isin(self.classes)].copy()
        rows["label"] = rows[self.label_column].map({c: i for i, c in enumerate(self.classes)})
        present = sorted(set(rows[self.label_column]))
        if len(present) < 2:
            found = f"only {present[0]!r}" if present else "none of its classes"
            raise FetalbenchError(
                f"task {self.name!r} has {found} in this dataset ({len(rows)} images); it needs "
                f"at least two of {', '.join(self.classes)}: point --data-root at the full dataset"
            )
        return rows

    def dataset_pool(self, catalog: pd.DataFrame) -> pd.Series:
        """Which catalog images the ``"dataset"`` unlabelled pool holds: every official training
        image, of any class."""
        return catalog["train"]


@dataclass(frozen=True)
class CrossMachineTask(Task):
    """A task trained on one machine's images and tested on another machine's.

    Its rows are the official training images of ``train_machine`` (so training, the validation
    carve-out, the labelled fractions and the unlabelled pool all come from that machine) and the
    official test images of ``test_machine``; the split machinery
    (:func:`~fetalbench.data.splits.split_task`) then works on them unchanged. The official split
    is patient-disjoint, so training and test patients differ too. Every class must be present
    on both sides, or the test would measure a class the model never saw (or none at all).
    """

    train_machine: str
    test_machine: str

    def select(self, catalog: pd.DataFrame) -> pd.DataFrame:
        """The task's training images of ``train_machine`` and test images of ``test_machine``."""
        machine, train = catalog["machine"], catalog["train"]
        kept = (train & (machine == self.train_machine)) | (~train & (machine == self.test_machine))
        rows = super().select(catalog[kept])
        for side, machine_name, on_side in (("training", self.train_machine, rows["train"]),
                                            ("test", self.test_machine, ~rows["train"])):
            present = set(rows.loc[on_side, self.label_column])
            missing = [name for name in self.classes if name not in present]
            if missing:
                raise FetalbenchError(
                    f"task {self.name!r} needs every class in the {side} images of "
                    f"{machine_name}; this dataset has none of {', '.join(missing)} there: point "
                    "--data-root at the full dataset"
                )
        return rows

    def dataset_pool(self, catalog: pd.DataFrame) -> pd.Series:
        """The ``"dataset"`` pool stays on ``train_machine``: its official training images, of
        any class (no image of the test machine is seen, labelled or not)."""
        return catalog["train"] & (catalog["machine"] == self.train_machine)


TASKS: Registry[Task] = Registry("task", entry_point_group="fetalbench.tasks")


def register_task(task: Task, source: str = "fetalbench") -> Task:
    """Add a task to the registry."""
    return TASKS.register(task.name, task, source)


register_task(
    Task(
        name="planes",
        label_column="plane",
        classes=PLANES,
        description="the six main planes (high inter-class variability)",
    )
)
register_task(
    Task(
        name="brain",
        label_column="brain_plane",
        classes=("Trans-thalamic", "Trans-cerebellum", "Trans-ventricular"),
        description="trans-thalamic / trans-cerebellum / trans-ventricular (low variability)",
    )
)
register_task(
    CrossMachineTask(
        name="planes_cross_machine",
        label_column="plane",
        classes=PLANES,
        description="the six main planes, trained on Voluson E6 and tested on Aloka",
        train_machine="Voluson E6",
        test_machine="Aloka",
    )
)
"""On the real FETAL_PLANES_DB CSV: 3,456 training images of Voluson E6 (abdomen 199, brain
1,129, femur 293, thorax 842, cervix 583, other 410; 416 patients) and 1,737 test images of Aloka
(91, 257, 103, 107, 295, 884; 389 patients). The two are the large machines of two vendors (GE
and Aloka) with every plane on both sides; Voluson S10 has too few training images (11) and
shares a vendor with the E6 (tests/test_cross_machine.py recounts them)."""
register_task(
    CrossMachineTask(
        name="brain_cross_machine",
        label_column="brain_plane",
        classes=("Trans-thalamic", "Trans-cerebellum", "Trans-ventricular"),
        description="the three brain planes, trained on Voluson E6 and tested on Aloka",
        train_machine="Voluson E6",
        test_machine="Aloka",
    )
)
"""On the real FETAL_PLANES_DB CSV: 1,070 training images of Voluson E6 (trans-thalamic 588,
trans-cerebellum 268, trans-ventricular 214) and 237 test images of Aloka (143, 46, 48)."""
