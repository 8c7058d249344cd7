"""FETAL_PLANES_DB: the metadata CSV, its parsing rules and the validated image catalog.

The dataset is Burgos-Artizzu et al., "Evaluation of deep convolutional neural networks for
automatic classification of common maternal fetal ultrasound planes", Scientific Reports 10, 10200
(2020), doi:10.1038/s41598-020-67076-5; 12,400 PNGs from 1,792 patients, CC BY 4.0. A source root
holds ``FETAL_PLANES_DB_data.csv`` and ``Images/<Image_name>.png``. The built-in phantom writes the
same layout, so this one reader serves both.

Parsing rules the official CSV needs: ``;``-separated; values (and, in some copies, header names)
carry trailing spaces; ``Image_name`` has no ``.png`` extension; ``Train`` is ``1``/``0`` and is the
official, patient-disjoint train/test split. Labels come from the CSV only (the ``PlaneN`` part of
a file name is not the class).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

from fetalbench.errors import FetalbenchError
from fetalbench.storage.digests import sha256_hex

if TYPE_CHECKING:  # pandas is imported where a table is read, so listing tasks starts fast
    import pandas as pd

CSV_NAME = "FETAL_PLANES_DB_data.csv"
IMAGES_DIR = "Images"
COLUMNS = ("Image_name", "Patient_num", "Plane", "Brain_plane", "Operator", "US_Machine", "Train")
PLANES = (
    "Fetal abdomen",
    "Fetal brain",
    "Fetal femur",
    "Fetal thorax",
    "Maternal cervix",
    "Other",
)
BRAIN_PLANES = ("Trans-thalamic", "Trans-cerebellum", "Trans-ventricular", "Other", "Not A Brain")
# The sha256 of the official FETAL_PLANES_DB_data.csv (Zenodo record 3904280, 12,400 rows), as
# computed from the byte-for-byte copy in tests/data/fetal_planes_db/; `fetalbench validate`
# refuses a fetal_planes_db record whose dataset.csv_sha256 differs.
OFFICIAL_CSV_SHA256 = "2d1fc8c8716ce247dc354db4420d12d76e47f67154ab8a7b6aed797ead1b489f"
# Test images (Train 0) of each built-in task (fetalbench.data.tasks) in that CSV: planes counts
# every row, brain the Trans-thalamic, Trans-cerebellum and Trans-ventricular ones
# (tests/test_validation.py recounts them from the CSV).
OFFICIAL_TEST_IMAGES = {"planes": 5271, "brain": 1406, "planes_cross_machine": 1737,
                        "brain_cross_machine": 237}
MAX_CSV_BYTES = 64 << 20
MAX_FIELD_CHARS = 1000
FORMULA_START = r"[=+\-@]"
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
TEXT_COLUMNS = ("Image_name", "Plane", "Brain_plane", "Operator", "US_Machine")
CATALOG_COLUMNS = (
    "image_name",
    "path",
    "patient",
    "plane",
    "brain_plane",
    "operator",
    "machine",
    "train",
)


def _csv_line(index: int) -> int:
    """The 1-based line of the CSV that holds data row ``index`` (line 1 is the header)."""
    return index + 2


def read_metadata(csv_path: Path) -> pd.DataFrame:
    """Read and validate the metadata CSV with the official parsing rules.

    Returns one row per image with the official columns, every value stripped. Raises
    :class:`FetalbenchError` naming the file and line for a missing column, an unknown label, a
    non-integer patient, a ``Train`` value other than 0/1, or a duplicate image name; and, as the
    file may come from anywhere, for hostile content (see :func:`_check_untrusted_bytes` and
    :func:`_check_untrusted_cells`) before anything else looks at it.
    """
    if not csv_path.is_file():
        raise FetalbenchError(
            f"{csv_path} not found: a FETAL_PLANES_DB root holds {CSV_NAME} and {IMAGES_DIR}/; "
            "get it with `fetalbench data download --root DIR`"
        )
    import pandas as pd

    text = _check_untrusted_bytes(csv_path)
    try:
        table = pd.read_csv(io.StringIO(text), sep=";", dtype=str, keep_default_na=False,
                            quoting=csv.QUOTE_NONE)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FetalbenchError(
            f"{csv_path} is not a readable ;-separated UTF-8 CSV ({first_line}); "
            "replace it with the official FETAL_PLANES_DB_data.csv"
        ) from None
    table.columns = [str(name).strip() for name in table.columns]
    repeated = table.columns[table.columns.duplicated()]
    if len(repeated):
        raise FetalbenchError(f"{csv_path}:1: column {repeated[0]!r} appears twice in the "
                              "header; remove one")
    missing = [name for name in COLUMNS if name not in table.columns]
    if missing:
        raise FetalbenchError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; the header must be "
            f"{';'.join(COLUMNS)}"
        )
    table = table[list(COLUMNS)].apply(lambda column: column.str.strip())
    _check_untrusted_cells(csv_path, table)
    _check_values(csv_path, table, "Plane", PLANES)
    _check_values(csv_path, table, "Brain_plane", BRAIN_PLANES)
    _check_values(csv_path, table, "Train", ("0", "1"))
    not_integer = ~table["Patient_num"].str.fullmatch(r"[0-9]{1,9}")
    if not_integer.any():
        index = int(not_integer.idxmax())
        raise FetalbenchError(
            f"{csv_path}:{_csv_line(index)}: Patient_num {table.at[index, 'Patient_num']!r} is "
            "not a whole number (at most 9 digits); fix that row"
        )
    empty_name = table["Image_name"] == ""
    if empty_name.any():
        index = int(empty_name.idxmax())
        raise FetalbenchError(f"{csv_path}:{_csv_line(index)}: empty Image_name; fix that row")
    duplicated = table["Image_name"].duplicated(keep="first")
    if duplicated.any():
        index = int(duplicated.idxmax())
        name = table.at[index, "Image_name"]
        first = int((table["Image_name"] == name).idxmax())
        raise FetalbenchError(
            f"{csv_path}:{_csv_line(index)}: Image_name {name!r} repeats line "
            f"{_csv_line(first)}; remove the duplicate row"
        )
    return table


def _check_untrusted_bytes(csv_path: Path) -> str:
    """The CSV's text, once its size, encoding, characters and shape are known to be harmless.

    Refused, naming file and line: a file over :data:`MAX_CSV_BYTES`, bytes that are not UTF-8,
    a NUL or other control character (tab aside), a carriage return inside a line, a line with
    another number of ``;``-separated fields than the header. A UTF-8 byte-order mark is dropped.
    Quotes have no special meaning (the official CSV has none), so a line is a row.
    """
    size = csv_path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise FetalbenchError(
            f"{csv_path} is {size} bytes, over the {MAX_CSV_BYTES} a metadata CSV can be (the "
            "official one is under 1 MB); replace it with the official FETAL_PLANES_DB_data.csv"
        )
    data = csv_path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise FetalbenchError(
            f"{csv_path}:{line}: not UTF-8 (byte {data[error.start]:#04x}); save the file as "
            "UTF-8 or replace it with the official FETAL_PLANES_DB_data.csv"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    header_fields = lines[0].count(";") + 1 if lines else 0
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        control = CONTROL_CHARACTER.search(line)
        if control:
            raise FetalbenchError(
                f"{csv_path}:{number}: control character {control.group()!r} (a binary or "
                "damaged file); remove it or replace the file with the official CSV"
            )
        if line.count(";") + 1 != header_fields:
            raise FetalbenchError(
                f"{csv_path}:{number}: {line.count(';') + 1} ;-separated fields, not the "
                f"header's {header_fields}; fix that row"
            )
    return text


def _check_untrusted_cells(csv_path: Path, table: pd.DataFrame) -> None:
    """Refuse huge cells and formula-like text (CSV injection).

    A text cell starting with ``=``, ``+``, ``-`` or ``@`` would run as a formula if a table
    built from this one were opened in a spreadsheet; no value of the official CSV does
    (``Patient_num`` and ``Train`` are checked as numbers instead).
    """
    for column in table.columns:
        values = table[column]
        checks = [(values.str.len() > MAX_FIELD_CHARS, f"is over {MAX_FIELD_CHARS} characters")]
        if column in TEXT_COLUMNS:
            checks.append((values.str.match(FORMULA_START),
                           "starts like a spreadsheet formula (=, +, -, @)"))
        for bad, problem in checks:
            if bad.any():
                index = int(bad.idxmax())
                raise FetalbenchError(
                    f"{csv_path}:{_csv_line(index)}: {column} {values[index]!r:.60} {problem}; "
                    "fix that cell or replace the file with the official CSV"
                )


def _check_values(csv_path: Path, table: pd.DataFrame, column: str, allowed: tuple) -> None:
    unknown = ~table[column].isin(allowed)
    if unknown.any():
        index = int(unknown.idxmax())
        raise FetalbenchError(
            f"{csv_path}:{_csv_line(index)}: unknown {column} {table.at[index, column]!r}; "
            f"expected one of {', '.join(allowed)}"
        )


def load_catalog(root: Path) -> pd.DataFrame:
    """The validated catalog of a FETAL_PLANES_DB-layout root: one row per image.

    Columns are :data:`CATALOG_COLUMNS`; ``path`` is absolute and every image file exists (a
    missing one is an error naming it and its CSV line). Images are decoded later, by the image
    cache, which names any file that does not decode.
    """
    root = Path(root)
    if not root.is_dir():
        raise FetalbenchError(
            f"data root {root} does not exist; pass the folder holding {CSV_NAME} "
            "(or get the data with `fetalbench data download --root DIR`)"
        )
    csv_path = root / CSV_NAME
    table = read_metadata(csv_path)
    images = root / IMAGES_DIR
    present = {path.stem for path in images.glob("*.png")} if images.is_dir() else set()
    absent = ~table["Image_name"].isin(present)
    if absent.any():
        index = int(absent.idxmax())
        raise FetalbenchError(
            f"{images / (table.at[index, 'Image_name'] + '.png')} is missing "
            f"({int(absent.sum())} image(s) of {csv_path} in all, first at line "
            f"{_csv_line(index)}); restore the images or remove their rows"
        )
    return catalog_frame(table, images.resolve())


def catalog_frame(table: pd.DataFrame, images: Path) -> pd.DataFrame:
    """The catalog of a read CSV (:func:`read_metadata`) whose images lie in ``images``:
    :data:`CATALOG_COLUMNS`, ``path`` where each image is (or would be)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "image_name": table["Image_name"],
            "path": [str(images / f"{name}.png") for name in table["Image_name"]],
            "patient": table["Patient_num"].astype(int),
            "plane": table["Plane"],
            "brain_plane": table["Brain_plane"],
            "operator": table["Operator"],
            "machine": table["US_Machine"],
            "train": table["Train"] == "1",
        }
    )


def fingerprint(root: Path, catalog: pd.DataFrame) -> str:
    """A cheap identity of a source: the CSV's bytes plus every image's name and size.

    Changing a label, adding or removing an image, or replacing one by a file of another size gives
    a new fingerprint (and so a new image cache). Reading sizes rather than bytes keeps it fast on
    the 2 GB real dataset.
    """
    sizes = "".join(f"{name}:{Path(path).stat().st_size}\n"
                    for name, path in zip(catalog["image_name"], catalog["path"], strict=True))
    return sha256_hex((Path(root) / CSV_NAME).read_bytes() + sizes.encode())
