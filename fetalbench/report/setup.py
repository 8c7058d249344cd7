"""One table, one setup: what must be equal across the records a table compares.

A table is one (dataset, task, setup): the setup, its protocol, backbone and kind of label
budget (:func:`fetalbench.report.leaderboard.setup_label`), puts records the CLI can make outside
the board's setup in tables of their own instead of refusing them. Its key also holds the dataset
version (its fingerprint: one test set), the profile *by content* (``profile_digest``, so a
profile edited under its old name is another setup), the unlabelled pool, and, per arm, the
validation setting (:mod:`fetalbench.report.replicates`; each entry is compared with the
reference of its own arm, which therefore shares the whole key). So a curve never joins
a ``quick`` 5% cell to a ``paper`` 100% cell, and a method is never compared with a reference
trained at another scale or on another pool. And each method's code version
(:mod:`fetalbench.runs.code_version`) is one per table: a grid resumed after a code change keeps
the old code's records under the same spec hashes, and two versions of one method never meet.

:func:`refuse_mixed_setups` raises a one-line error naming two records that differ, and what to
do; the leaderboard calls it on every table before computing anything.
"""

from __future__ import annotations

import pandas as pd

from fetalbench.errors import FetalbenchError

TABLE_KEY = ("profile_digest", "pool", "dataset_fingerprint")
"""What every record of a table shares (protocol and validation setting define its arms)."""
ONE_PER_METHOD = ("code_version",)
"""What every record of one method in a table shares."""


def _two(rows: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    values = list(dict.fromkeys(rows[column]))
    return (rows[rows[column] == values[0]].iloc[0], rows[rows[column] == values[1]].iloc[0])


def _setting(row: pd.Series, column: str) -> str:
    if column == "profile_digest":
        return f"profile `{row['profile']}` (content {row[column]}) in {row['path']}"
    return f"{column} `{row[column]}` in {row['path']}"


def refuse_mixed_setups(rows: pd.DataFrame) -> None:
    """Raise when the records of one table (one dataset and task) differ in :data:`TABLE_KEY`,
    or one method's records in :data:`ONE_PER_METHOD`."""
    where = f"{rows['dataset'].iloc[0]}/{rows['task'].iloc[0]}"
    for column in TABLE_KEY:
        if rows[column].nunique() > 1:
            first, second = _two(rows, column)
            what = {"profile_digest": "profiles", "pool": "unlabelled pools",
                    "dataset_fingerprint": "dataset versions"}[column]
            raise FetalbenchError(
                f"one table holds one setup, but the records of {where} were made under two "
                f"{what} ({_setting(first, column)}; {_setting(second, column)}); keep one "
                "setup per results folder (move the others to another folder)")
    for method, group in rows.groupby("method", sort=True):
        for column in ONE_PER_METHOD:
            if group[column].nunique() > 1:
                first, second = _two(group, column)
                raise FetalbenchError(
                    f"two code versions of {method} meet in the table {where} "
                    f"({first[column]} in {first['path']}, {second[column]} in "
                    f"{second['path']}): its code changed between runs; rerun the older "
                    "records with the current code (`fetalbench grid --force` or `fetalbench "
                    "run ... --force`) or move them to another folder")
