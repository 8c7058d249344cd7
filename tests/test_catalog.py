"""The metadata reader and catalog on the official CSV and on broken copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REAL_CSV, real_csv_lines
from fetalbench.data.fetal_planes_db import CSV_NAME, load_catalog, read_metadata
from fetalbench.errors import FetalbenchError


def test_official_csv_parses_with_its_documented_counts() -> None:
    table = read_metadata(REAL_CSV)
    assert len(table) == 12_400
    assert table["Plane"].value_counts().to_dict() == {
        "Other": 4213, "Fetal brain": 3092, "Fetal thorax": 1718, "Maternal cervix": 1626,
        "Fetal femur": 1040, "Fetal abdomen": 711,
    }
    assert table["Brain_plane"].value_counts()["Trans-thalamic"] == 1638
    assert table["Train"].value_counts().to_dict() == {"1": 7129, "0": 5271}
    assert table["Patient_num"].nunique() == 1792
    assert not table.map(lambda value: value != value.strip()).any().any()


def write_csv(folder: Path, header: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CSV_NAME
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_trailing_space_in_header_is_accepted(tmp_path: Path) -> None:
    header, lines = real_csv_lines()
    path = write_csv(tmp_path, header.replace("Train", "Train "), lines[:20])
    assert list(read_metadata(path).columns)[-1] == "Train"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda h, ls: (h.replace(";Plane;", ";Planes;"), ls), "missing column(s) Plane"),
        (lambda h, ls: (h, [ls[0].replace("Other;Not A Brain", "Kidney;Not A Brain"), *ls[1:]]),
         ":2: unknown Plane 'Kidney'"),
        (lambda h, ls: (h, [*ls[:3], ls[3].replace(";1 ", ";yes")]), ":5: unknown Train 'yes'"),
        (lambda h, ls: (h, [*ls[:4], ls[1]]), ":6: Image_name 'Patient00001_Plane1_2_of_15' "
         "repeats line 3"),
        (lambda h, ls: (h, [ls[0].replace(";1;", ";one;", 1), *ls[1:]]), ":2: Patient_num"),
    ],
)
def test_broken_csv_names_file_and_line(tmp_path: Path, edit, expected: str) -> None:
    header, lines = edit(*real_csv_lines())
    path = write_csv(tmp_path, header, lines[:10])
    with pytest.raises(FetalbenchError) as error:
        read_metadata(path)
    assert expected in str(error.value)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_image_is_named_with_its_line(sample_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(sample_root, root)
    victim = sorted((root / "Images").glob("*.png"))[3]
    victim.unlink()
    with pytest.raises(FetalbenchError, match=f"{victim.name} is missing"):
        load_catalog(root)


def test_catalog_of_the_real_sample(sample_root: Path) -> None:
    catalog = load_catalog(sample_root)
    assert len(catalog) == 57
    assert set(catalog["brain_plane"]) == {"Trans-ventricular"}
    assert catalog["train"].sum() == 55
    assert all(Path(p).is_file() for p in catalog["path"])


def test_missing_root_says_how_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(FetalbenchError, match="fetalbench data download"):
        load_catalog(tmp_path / "nowhere")
