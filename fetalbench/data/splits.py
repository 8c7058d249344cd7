"""Task splits: official test set, a validation carve-out, and nested label fractions.

- Test is the official test split of FETAL_PLANES_DB (``Train == 0``); it is never used for model
  selection.
- Validation is a seeded, patient-grouped, class-stratified carve-out of the official training
  patients (scikit-learn's ``StratifiedGroupKFold``, first fold). Under the ``fixed`` setting
  (:data:`VALIDATION_SETTINGS`) model selection sees the whole carve-out, whatever the label
  fraction: on FETAL_PLANES_DB ``brain`` at 1%, 311 labelled validation images against 13
  labelled training images. Under ``scaled`` it sees a subset of the carve-out no larger than the
  labelled set (:func:`scaled_validation`), the realistic setting of Oliver et al., "Realistic
  Evaluation of Deep Semi-Supervised Learning Algorithms", NeurIPS 2018.
- Labelled subsets are drawn by patient and stratified by class: for each class, patients are
  taken in one seeded order until the class has at least ``ceil(fraction * n_class)`` images (one
  image at the least). The order does not depend on the fraction, so subsets are nested: for one
  seed the 5% subset lies inside the 10% subset.
- A label budget may instead be counted in patients (:func:`nested_patient_subsets`): the images
  of ``k`` patients per class, nested across ``k`` for one seed, as FetalCLIP counts few labels.
- The unlabelled pool is every official training image of the task outside the validation
  carve-out: no run, self-supervised or semi-supervised, trains on the images that select its
  model (``TaskSplit.validation_carve_out`` is the whole carve-out, of which ``scaled``
  validation uses a part).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fetalbench.checks import check_fraction, check_patients
from fetalbench.errors import FetalbenchError

if TYPE_CHECKING:  # pandas and scikit-learn are imported where a split is drawn, so the command
    import pandas as pd  # line (which reads VALIDATION_SETTINGS) starts fast

DEFAULT_FRACTIONS = (0.01, 0.05, 0.10, 0.25, 0.50, 1.0)
VALIDATION_SETTINGS = ("fixed", "scaled")
"""How many labelled images model selection uses: ``fixed``, the whole validation carve-out;
``scaled``, a subset no larger than the labelled set (:func:`scaled_validation`)."""


@dataclass(frozen=True)
class TaskSplit:
    """Positional indices into a task's rows (the frame returned by ``Task.select``)."""

    labelled: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    unlabelled_pool: np.ndarray
    validation_carve_out: np.ndarray


def carve_validation(
    train_rows: pd.DataFrame, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows into (train, validation) positions, grouped by patient, stratified."""
    n_splits = max(2, round(1.0 / validation_fraction))
    patients = train_rows["patient"].to_numpy()
    if len(np.unique(patients)) < n_splits:
        raise FetalbenchError(
            f"only {len(np.unique(patients))} training patients: a validation carve-out of "
            f"{validation_fraction:.0%} needs at least {n_splits}; use a larger dataset"
        )
    labels = train_rows["label"].to_numpy()
    if np.bincount(labels).max() < n_splits:
        raise FetalbenchError(
            f"no class has {n_splits} training images, too few for a stratified validation "
            f"carve-out of {validation_fraction:.0%}; use a larger dataset"
        )
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train, validation = next(folds.split(np.zeros(len(labels)), labels, groups=patients))
    return np.sort(train), np.sort(validation)


def _class_patients(rows: pd.DataFrame, seed: int) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """Per class of ``rows`` (by label): its rows and its image count per patient, the patients
    in one seeded order shared by every class and every budget (so budgets are nested)."""
    import pandas as pd

    rng = np.random.default_rng([seed, 0x1AB])
    patient_order = rng.permutation(np.unique(rows["patient"].to_numpy()))
    rank = pd.Series(np.arange(len(patient_order)), index=patient_order)
    for _, group in rows.groupby("label", sort=True):
        by_patient = group.groupby("patient").size()
        yield group, by_patient.iloc[np.argsort(rank[by_patient.index].to_numpy())]


def _positions(rows: pd.DataFrame, parts: list[pd.Index]) -> np.ndarray:
    """The sorted positions in ``rows`` of the rows labelled ``parts``."""
    return np.sort(rows.index.get_indexer(np.concatenate(parts)))


def nested_labelled_subsets(
    rows: pd.DataFrame, fractions: tuple[float, ...], seed: int
) -> dict[float, np.ndarray]:
    """Positions of the labelled subset of ``rows`` for each fraction (nested, see module doc)."""
    subsets: dict[float, list[pd.Index]] = {check_fraction(f): [] for f in fractions}
    for group, by_patient in _class_patients(rows, seed):
        cumulative = by_patient.cumsum().to_numpy()
        for fraction in subsets:
            target = max(1, math.ceil(fraction * len(group) - 1e-9))
            chosen = by_patient.index[: int(np.searchsorted(cumulative, target)) + 1]
            subsets[fraction].append(group.index[group["patient"].isin(chosen)])
    return {f: _positions(rows, parts) for f, parts in subsets.items()}


def nested_patient_subsets(
    rows: pd.DataFrame, budgets: tuple[int, ...], seed: int
) -> dict[int, np.ndarray]:
    """Positions of the labelled subset of ``rows`` for each budget of ``k`` patients per class:
    for each class, that class's images of the first ``k`` of its patients in the seeded order
    (every patient it has, when it has fewer). The few-label protocol of FetalCLIP (Maani et al.,
    arXiv 2502.14807), which counts budgets in patients; nested across budgets as fractions are."""
    subsets: dict[int, list[pd.Index]] = {check_patients(k): [] for k in budgets}
    for group, by_patient in _class_patients(rows, seed):
        for k in subsets:
            subsets[k].append(group.index[group["patient"].isin(by_patient.index[:k])])
    return {k: _positions(rows, parts) for k, parts in subsets.items()}


def scaled_validation(
    rows: pd.DataFrame, fraction: float, labelled_per_class: np.ndarray, seed: int
) -> np.ndarray:
    """Positions of the validation subset of ``rows`` (the validation carve-out) at ``fraction``.

    Class by class, ``max(1, min(ceil(fraction * n_class), labelled_c))`` images, where
    ``labelled_c`` is the class's labelled training images: so the subset is stratified, holds
    at least one image of every class and is no larger than the labelled set. Images are taken
    patient by patient in one seeded order (all of a patient's images before the next patient's;
    only the last patient of a class may be cut), so the subset is as patient-grouped as its size
    allows, and, for one seed, nested across fractions. The carve-out's patients are disjoint
    from the training patients either way.
    """
    import pandas as pd

    fraction = check_fraction(fraction)
    rng = np.random.default_rng([seed, 0x5CA1ED])
    patient_rank = pd.Series(rng.permutation(rows["patient"].nunique()),
                             index=np.unique(rows["patient"].to_numpy()))
    order = np.lexsort((np.arange(len(rows)), patient_rank[rows["patient"]].to_numpy()))
    labels = rows["label"].to_numpy()[order]
    chosen = []
    for label in np.unique(labels):
        of_class = order[labels == label]
        size = max(1, min(math.ceil(fraction * len(of_class) - 1e-9),
                          int(labelled_per_class[label])))
        chosen.append(of_class[:size])
    return np.sort(np.concatenate(chosen))


def split_task(
    rows: pd.DataFrame,
    fraction: float | None,
    seed: int,
    validation_fraction: float = 0.2,
    validation: str = "fixed",
    patients_per_class: int | None = None,
) -> TaskSplit:
    """The split of a task's rows for one label budget and seed, with the ``validation``
    setting's validation set (:data:`VALIDATION_SETTINGS`). The budget is a ``fraction`` of the
    labels or ``patients_per_class`` (:func:`nested_patient_subsets`): exactly one of them."""
    if (fraction is None) == (patients_per_class is None):
        raise FetalbenchError("give a label budget as a fraction or as patients per class, "
                              "exactly one of them")
    if validation not in VALIDATION_SETTINGS:
        raise FetalbenchError(f"unknown validation setting {validation!r}; expected one of "
                              f"{', '.join(VALIDATION_SETTINGS)}")
    is_train = rows["train"].to_numpy()
    train_all = np.flatnonzero(is_train)
    test = np.flatnonzero(~is_train)
    if len(test) == 0:
        raise FetalbenchError("the task has no official test images (Train == 0); check the CSV")
    train_pos, validation_pos = carve_validation(rows.iloc[train_all], validation_fraction, seed)
    train, carved = train_all[train_pos], train_all[validation_pos]
    held_out = carved
    if patients_per_class is None:
        fraction = check_fraction(fraction)
        labelled_pos = nested_labelled_subsets(rows.iloc[train], (fraction,), seed)[fraction]
    else:
        labelled_pos = nested_patient_subsets(rows.iloc[train], (patients_per_class,),
                                              seed)[patients_per_class]
    labelled = train[labelled_pos]
    if validation == "scaled":
        per_class = np.bincount(rows["label"].to_numpy()[labelled],
                                minlength=int(rows["label"].max()) + 1)
        held_out = held_out[scaled_validation(rows.iloc[held_out], fraction or 1.0, per_class,
                                              seed)]
    return TaskSplit(
        labelled=labelled,
        train=train,
        validation=held_out,
        test=test,
        unlabelled_pool=train,
        validation_carve_out=carved,
    )


def budget_text(fraction: float | None, patients_per_class: int | None) -> str:
    """A label budget in words: ``fraction 0.05`` or ``4 patients per class``."""
    if patients_per_class is not None:
        return f"{patients_per_class} patient{'s' if patients_per_class > 1 else ''} per class"
    return f"fraction {fraction:g}"
