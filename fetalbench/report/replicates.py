"""One table's records under the bootstrap: every record's macro F1 on each resample of the test
patients, shared by the whole table (:mod:`fetalbench.report.bootstrap`), and lookups by
(entry, fraction, seed).

A table is one (dataset, task); an *arm* is a (protocol, validation setting) within it, and each
entry is compared with the reference ``supervised_imagenet`` of its own arm. Pairs are by seed (a
seed fixes the split and the label subset for every method) and by test patient (one resample of
the patients serves every record of the table).

Only cells whose runs all learned are compared (:func:`comparable_cells`): a cell (entry,
fraction) one of whose seeds' runs has a learning verdict other than ``learned``
(:mod:`fetalbench.runs.learning`) is no reference cell for others and no point of any curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fetalbench.report.bootstrap import (
    cluster_weights,
    generator,
    resampled_macro_f1,
    seed_counts,
)
from fetalbench.runs.metrics import decode_classes, decode_patients

REFERENCE = "supervised_imagenet"
ARM = ("protocol", "validation")


def comparable_cells(rows: pd.DataFrame) -> set[tuple[str, float]]:
    """The (entry, fraction) cells every seed's run of which learned (a ``learned`` column;
    rows without one count as learned)."""
    learned = rows["learned"].astype(bool) if "learned" in rows else pd.Series(True, rows.index)
    every = learned.groupby([rows["entry"], rows["fraction"]]).all()
    return {cell for cell, ok in every.items() if ok}


def record_replicates(rows: pd.DataFrame, n_resamples: int, key: str
                      ) -> tuple[np.ndarray, str | None]:
    """(resamples, rows) macro F1 of each record under each resample of the test patients, and
    None; or the records' own macro F1 repeated, and why the test set could not be resampled."""
    observed = rows["macro_f1"].to_numpy(float)
    unchanged = np.broadcast_to(observed, (n_resamples, len(rows)))
    missing = int((rows["test_order"].isna() | rows["test_patients"].isna()).sum())
    if missing:
        return unchanged, (f"{missing} of its {len(rows)} records have no per-image test "
                           "predictions and patients")
    if rows[["test_order", "test_labels", "test_patients"]].nunique().max() > 1:
        return unchanged, ("its records were tested on different test sets (test orders, "
                           "labels or patients differ)")
    labels = decode_classes(rows["test_labels"].iloc[0])
    patients = pd.factorize(decode_patients(rows["test_patients"].iloc[0]))[0]
    weights = cluster_weights(patients, n_resamples, generator(f"{key}/patients"))
    predicted = np.stack([decode_classes(text) for text in rows["test_predicted"]])
    return resampled_macro_f1(labels, predicted, weights, len(rows["classes"].iloc[0])), None


class TableReplicates:
    """The rows of one table (with an ``entry`` column), their bootstrap replicates, each
    entry's arm's reference entry (``reference_of``, None without one) and lookups by (entry,
    fraction, seed). ``test_set`` is None when test patients were resampled, else why not."""

    def __init__(self, rows: pd.DataFrame, n_resamples: int) -> None:
        self.rows = rows.reset_index(drop=True)
        self.key = f"{self.rows['dataset'].iloc[0]}/{self.rows['task'].iloc[0]}"
        self.n_resamples = n_resamples
        self.scores, self.test_set = record_replicates(self.rows, n_resamples, self.key)
        self.position = pd.Series(self.rows.index, index=pd.MultiIndex.from_frame(
            self.rows[["entry", "fraction", "seed"]])).sort_index()
        self.comparable = comparable_cells(self.rows)
        self.reference_of: dict[str, str | None] = {}
        references = self.rows[self.rows["method"] == REFERENCE]
        arms = self.rows.drop_duplicates("entry")
        for entry, *arm in arms[["entry", *ARM]].itertuples(index=False):
            match = references[(references[list(ARM)] == arm).all(axis=1)]["entry"]
            self.reference_of[entry] = None if match.empty else match.iloc[0]

    def seeds(self, entry: str, fraction: float) -> set[int]:
        return set(self.position.loc[(entry, fraction)].index)

    def all_fractions(self, entry: str) -> list[float]:
        """Every fraction of ``entry``, learned or not."""
        return sorted(self.rows.loc[self.rows["entry"] == entry, "fraction"].unique())

    def fractions(self, entry: str) -> list[float]:
        """The fractions of ``entry``'s cells that learned: the ones compared."""
        return [f for f in self.all_fractions(entry) if (entry, f) in self.comparable]

    def arm_rows(self, entry: str) -> pd.DataFrame:
        """The rows of ``entry``'s arm (its protocol and validation setting)."""
        arm = self.rows.loc[self.rows["entry"] == entry, list(ARM)].iloc[0]
        return self.rows[(self.rows[list(ARM)] == arm).all(axis=1)]

    def values(self, entry: str, fractions: list[float], seeds: list[int]
               ) -> tuple[np.ndarray, np.ndarray]:
        """Observed (seeds, fractions) and replicate (resamples, seeds, fractions) macro F1."""
        positions = np.array([[self.position[(entry, f, s)] for f in fractions] for s in seeds],
                             dtype=int).reshape(len(seeds), len(fractions))
        observed = self.rows["macro_f1"].to_numpy(float)[positions]
        return observed, self.scores[:, positions]

    def counts(self, n_seeds: int, what: str) -> np.ndarray:
        """(resamples, seeds) counts of a resample of ``n_seeds`` seeds for ``what``."""
        return seed_counts(n_seeds, self.n_resamples, generator(f"{self.key}/{what}"))

    def varies(self, n_seeds: int) -> bool:
        """Whether anything varies across resamples with ``n_seeds`` seeds."""
        return n_seeds >= 2 or self.test_set is None
