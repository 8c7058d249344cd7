"""Property-based tests: the metadata CSV reader and the split / label-fraction logic.

The CSV reader is fed random valid tables (they must come back exactly, stripped) and random
hostile cells (they must be refused with a one-line FetalbenchError naming file and line, never
another exception). The splits are drawn on random catalogs of patients, classes and official
train flags, and must be nested, stratified, patient-grouped and deterministic.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fetalbench.data.fetal_planes_db import (
    BRAIN_PLANES,
    COLUMNS,
    CSV_NAME,
    MAX_FIELD_CHARS,
    PLANES,
    read_metadata,
)
from fetalbench.data.splits import nested_labelled_subsets, split_task
from fetalbench.errors import FetalbenchError

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
FORMULA_STARTS = "=+-@"

# Free text as a spreadsheet user might type it: any printable character but the separator.
free_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
                           blacklist_characters=";\ufeff"),
    max_size=40,
).filter(lambda text: not text.strip().startswith(tuple(FORMULA_STARTS)))
padding = st.sampled_from(["", " ", "  ", "\t"])
image_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_ .()]{0,40}", fullmatch=True).map(
    str.strip).filter(bool)


@st.composite
def valid_tables(draw: st.DrawFn) -> list[dict[str, str]]:
    """Rows of a valid metadata table, values as they should come back (stripped)."""
    names = draw(st.lists(image_names, min_size=1, max_size=15, unique=True))
    return [
        {
            "Image_name": name,
            "Patient_num": str(draw(st.integers(0, 10**9 - 1))),
            "Plane": draw(st.sampled_from(PLANES)),
            "Brain_plane": draw(st.sampled_from(BRAIN_PLANES)),
            "Operator": draw(free_text).strip(),
            "US_Machine": draw(free_text).strip(),
            "Train": draw(st.sampled_from(["0", "1"])),
        }
        for name in names
    ]


def csv_bytes(rows: list[dict[str, str]], pads: list[str], newline: str = "\n",
              bom: bool = False) -> bytes:
    """The rows as a ;-separated CSV, each cell padded with ``pads`` (cycled)."""
    lines = [";".join(COLUMNS)]
    for r, row in enumerate(rows):
        cells = [row[column] for column in COLUMNS]
        lines.append(";".join(pads[(r + c) % len(pads)] + cell + pads[(r * c) % len(pads)]
                              for c, cell in enumerate(cells)))
    text = newline.join(lines) + newline
    return ("\ufeff" if bom else "").encode() + text.encode("utf-8")


def read_bytes(data: bytes) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CSV_NAME
        path.write_bytes(data)
        return read_metadata(path)


def refusal(data: bytes) -> tuple[str, str]:
    """The message of the FetalbenchError that reading ``data`` raises, and the file's path."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CSV_NAME
        path.write_bytes(data)
        with pytest.raises(FetalbenchError) as refused:
            read_metadata(path)
        return str(refused.value), str(path)


@SETTINGS
@given(rows=valid_tables(), pads=st.lists(padding, min_size=1, max_size=4),
       newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans())
def test_valid_tables_round_trip(rows, pads, newline, bom) -> None:
    table = read_bytes(csv_bytes(rows, pads, newline, bom))
    assert table.to_dict("records") == rows
    assert list(table.columns) == list(COLUMNS)


TEXT_COLUMNS = ("Image_name", "Operator", "US_Machine")
hostile_cells = st.one_of(
    st.tuples(st.sampled_from(FORMULA_STARTS), free_text).map("".join).map(
        lambda text: ("formula", text.encode())),
    st.integers(MAX_FIELD_CHARS + 1, 3 * MAX_FIELD_CHARS).map(
        lambda n: ("huge", b"x" * n)),
    st.tuples(free_text, st.sampled_from("\x00\x01\x07\x1b\x7f\r"), free_text).map(
        lambda parts: ("control", "".join(parts).encode())),
    st.tuples(free_text, st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80"]),
              free_text).map(lambda parts: ("encoding", parts[0].encode() + parts[1]
                                            + parts[2].encode())),
    st.tuples(free_text, free_text).map(lambda parts: ("fields", f"{parts[0]};{parts[1]}"
                                                       .encode())),
)


@SETTINGS
@given(rows=valid_tables(), data=st.data(), hostile=hostile_cells)
def test_hostile_cells_are_refused_naming_file_and_line(rows, data, hostile) -> None:
    kind, cell = hostile
    row = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.sampled_from(TEXT_COLUMNS))
    marker = "\x1e"  # a placeholder that the valid strategies never produce
    rows[row] = {**rows[row], column: marker}
    clean = csv_bytes(rows, [""])
    message, path = refusal(clean.replace(marker.encode(), cell, 1))
    assert path in message
    assert f":{row + 2}:" in message, (kind, message)
    assert "\n" not in message


@SETTINGS
@given(rows=valid_tables(), data=st.data(), cell=st.binary(max_size=60))
def test_arbitrary_bytes_in_a_cell_never_raise_anything_but_fetalbench_error(
    rows, data, cell
) -> None:
    row = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.sampled_from(COLUMNS))
    marker = "\x1e"
    rows[row] = {**rows[row], column: marker}
    try:
        read_bytes(csv_bytes(rows, [""]).replace(marker.encode(), cell, 1))
    except FetalbenchError as error:
        assert "\n" not in str(error)


@st.composite
def catalogs(draw: st.DrawFn) -> pd.DataFrame:
    """Rows of a task: patients with official train flags (per patient) and labelled images."""
    n_classes = draw(st.integers(2, 4))
    n_patients = draw(st.integers(12, 40))
    rows = []
    for patient in range(n_patients):
        train = draw(st.booleans()) if patient >= 10 else patient < 7
        for _ in range(draw(st.integers(1, 5))):
            rows.append({"patient": 1000 + 7 * patient, "train": train,
                         "label": draw(st.integers(0, n_classes - 1))})
    frame = pd.DataFrame(rows)
    offset = draw(st.integers(0, 50))  # a task's rows keep catalog labels as their index
    frame.index = offset + 3 * np.arange(len(frame))
    return frame


@SETTINGS
@given(rows=catalogs(), seed=st.integers(0, 2**31 - 1))
def test_labelled_subsets_are_nested_stratified_by_patient_and_deterministic(rows, seed) -> None:
    subsets = nested_labelled_subsets(rows, FRACTIONS, seed)
    assert set(subsets) == set(FRACTIONS)
    again = nested_labelled_subsets(rows, FRACTIONS, seed)
    assert all(np.array_equal(subsets[f], again[f]) for f in FRACTIONS)
    for smaller, larger in itertools.pairwise(FRACTIONS):
        assert set(subsets[smaller]) <= set(subsets[larger])
    assert np.array_equal(subsets[1.0], np.arange(len(rows)))
    labels, patients = rows["label"].to_numpy(), rows["patient"].to_numpy()
    for fraction, positions in subsets.items():
        assert np.array_equal(positions, np.unique(positions))
        chosen = np.zeros(len(rows), bool)
        chosen[positions] = True
        for label in np.unique(labels):
            of_class = labels == label
            count, total = int(chosen[of_class].sum()), int(of_class.sum())
            largest_patient = int(pd.Series(patients[of_class]).value_counts().max())
            target = max(1, math.ceil(fraction * total - 1e-9))
            assert target <= count < target + largest_patient  # stratified, by whole patients
            picked = set(patients[of_class & chosen])
            assert np.all(chosen[of_class & np.isin(patients, list(picked))])


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
@SETTINGS
@given(rows=catalogs(), seed=st.integers(0, 2**31 - 1),
       fraction=st.sampled_from(FRACTIONS))
def test_task_split_is_patient_disjoint_and_covers_every_class(rows, seed, fraction) -> None:
    # a validation carve-out in 5 folds needs a class with 5 training images (see the xfail below)
    assume(rows.loc[rows["train"], "label"].value_counts().max() >= 5)
    split = split_task(rows, fraction, seed, validation_fraction=0.2)
    again = split_task(rows, fraction, seed, validation_fraction=0.2)
    assert all(np.array_equal(getattr(split, part), getattr(again, part))
               for part in ("labelled", "train", "validation", "test", "unlabelled_pool",
                            "validation_carve_out"))
    patients, labels = rows["patient"].to_numpy(), rows["label"].to_numpy()
    is_train = rows["train"].to_numpy()
    assert np.array_equal(split.test, np.flatnonzero(~is_train))
    # the pool is the training images outside the validation carve-out (the fixed validation)
    assert np.array_equal(split.unlabelled_pool, split.train)
    assert np.array_equal(split.validation_carve_out, split.validation)
    assert not set(split.unlabelled_pool) & set(split.validation_carve_out)
    assert np.array_equal(np.sort(np.concatenate([split.train, split.validation])),
                          np.flatnonzero(is_train))
    train_patients, validation_patients = set(patients[split.train]), set(
        patients[split.validation])
    test_patients = set(patients[split.test])
    assert not train_patients & validation_patients
    assert not (train_patients | validation_patients) & test_patients
    assert set(split.labelled) <= set(split.train)
    assert set(labels[split.labelled]) == set(labels[split.train])  # >= 1 image per class


def test_too_few_training_images_per_class_is_a_one_line_error() -> None:
    rows = pd.DataFrame({"patient": [1, 2, 3, 4, 5, 6, 7, 8, 9],
                         "train": [True] * 7 + [False] * 2,
                         "label": [0, 0, 0, 0, 1, 1, 1, 0, 1]})
    with pytest.raises(FetalbenchError, match="too few for a stratified validation"):
        split_task(rows, 0.5, 0)
