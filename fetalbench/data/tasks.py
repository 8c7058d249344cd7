"""Classification tasks: which catalog column is the label and which of its classes count.

``planes`` has high inter-class variability (the six main planes of FETAL_PLANES_DB); ``brain``
has low inter-class variability (the three standard brain planes), as in Migliorelli et al.,
Computers in Biology and Medicine 174:108430 (2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fetalbench.data.fetal_planes_db import PLANES
from fetalbench.errors import FetalbenchError
from fetalbench.registry import Registry


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
