"""`verify_dataset` on the 57 real images and on copies with planted leaks or broken PNGs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REAL_IMAGES, make_sample_root, real_csv_lines
from fetalbench.cli import EXIT_USER_ERROR, main
from fetalbench.data.fetal_planes_db import CSV_NAME
from fetalbench.data.verify import SplitCount, format_report, verify_dataset

TEST_IMAGE = "Patient00644_Plane3_1_of_3"  # test split, patient 644
TRAIN_IMAGE = "Patient00700_Plane3_2_of_2"  # train split, patient 700


def test_real_sample_counts_and_disjoint_split(sample_root: Path) -> None:
    report = verify_dataset(sample_root)
    assert report.images == 57
    assert report.planes == (SplitCount("Fetal brain", 55, 2),)
    assert report.brain_planes == (SplitCount("Trans-ventricular", 55, 2),)
    assert sum(c.train for c in report.machines) == 55
    assert sum(c.test for c in report.operators) == 2
    assert report.test_patients == 2
    assert report.patient_disjoint and report.patients_in_both == ()
    assert report.split_crossing == () and report.class_crossing == ()
    text = format_report(report)
    assert "57 images" in text
    assert "patient-disjoint: yes" in text
    assert "0 group(s)" in text


def test_copy_across_split_and_class_is_listed(tmp_path: Path) -> None:
    root = make_sample_root(tmp_path / "root")
    train_bytes = (REAL_IMAGES / f"{TRAIN_IMAGE}.png").read_bytes()
    (root / "Images" / f"{TEST_IMAGE}.png").write_bytes(train_bytes)
    _, lines = real_csv_lines()
    other_class = lines[0]  # Patient00001_Plane1_1_of_15: Other / Not A Brain, train
    assert other_class.split(";")[2] == "Other"
    with (root / CSV_NAME).open("a") as stream:
        stream.write(other_class + "\n")
    (root / "Images" / f"{other_class.split(';')[0]}.png").write_bytes(train_bytes)

    report = verify_dataset(root)

    assert report.duplicate_groups == 1 and report.duplicate_images == 3
    (split_group,) = report.split_crossing
    assert {(i.name, i.train) for i in split_group.images} == {
        (TRAIN_IMAGE, True),
        (TEST_IMAGE, False),
        ("Patient00001_Plane1_1_of_15", True),
    }
    assert report.class_crossing == (split_group,)
    assert {i.plane for i in split_group.images} == {"Fetal brain", "Other"}
    text = format_report(report)
    assert "1 cross train/test, 1 cross classes" in text
    assert f"{TEST_IMAGE} (test, Fetal brain / Trans-ventricular)" in text
    assert "Patient00001_Plane1_1_of_15 (train, Other / Not A Brain)" in text


def test_copy_within_split_and_class_is_counted_not_listed(tmp_path: Path) -> None:
    root = make_sample_root(tmp_path / "root")
    images = sorted((root / "Images").glob("*.png"))
    train_names = [p for p in images if p.stem not in (TEST_IMAGE, "Patient00652_Plane3_1_of_1")]
    shutil.copyfile(train_names[0], train_names[1])
    report = verify_dataset(root)
    assert report.duplicate_groups == 1 and report.duplicate_images == 2
    assert report.split_crossing == () and report.class_crossing == ()


def test_patient_in_both_splits_is_reported(tmp_path: Path) -> None:
    root = make_sample_root(tmp_path / "root")
    csv = root / CSV_NAME
    text = csv.read_text()
    assert f"{TEST_IMAGE};644;" in text
    csv.write_text(text.replace(f"{TEST_IMAGE};644;", f"{TEST_IMAGE};700;"))
    report = verify_dataset(root)
    assert not report.patient_disjoint
    assert report.patients_in_both == (700,)
    assert "patient-disjoint: NO (patients in both: 700)" in format_report(report)


def test_a_clean_root_passes(sample_root: Path, capsys) -> None:
    assert verify_dataset(sample_root).undecodable == ()
    assert main(["data", "verify", "--root", str(sample_root)]) == 0
    captured = capsys.readouterr()
    assert "every image decodes" in captured.out
    assert captured.err == ""  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize("workers", [1, 2])
def test_a_truncated_png_fails_naming_the_file(tmp_path: Path, capsys, workers: int) -> None:
    root = make_sample_root(tmp_path / "root")
    truncated = root / "Images" / f"{TRAIN_IMAGE}.png"
    truncated.write_bytes(truncated.read_bytes()[:2000])  # a real PNG cut short: header intact
    (problem,) = verify_dataset(root, workers).undecodable
    assert problem.path == str(truncated) and "Truncated" in problem.error
    assert main(["data", "verify", "--root", str(root)]) == EXIT_USER_ERROR
    captured = capsys.readouterr()
    assert f"  {truncated}: OSError: Truncated File Read" in captured.out.splitlines()
    assert captured.err == (f"fetalbench: error: 1 of 57 images under {root} do not decode (listed "
                            "above); replace them with the dataset's originals, e.g. `fetalbench "
                            "data download --root DIR` into an empty folder\n")


def test_garbage_named_png_fails_and_every_bad_file_gets_a_line(tmp_path: Path, capsys) -> None:
    root = make_sample_root(tmp_path / "root")
    garbage = root / "Images" / f"{TEST_IMAGE}.png"
    garbage.write_bytes(b"<html>not found</html>")
    tail = root / "Images" / f"{TRAIN_IMAGE}.png"
    tail.write_bytes(tail.read_bytes()[:-12])  # only the end chunk is missing: pixels decode
    assert main(["data", "verify", "--root", str(root)]) == EXIT_USER_ERROR
    lines = capsys.readouterr().out.splitlines()
    assert "images that do not decode: 2" in lines
    assert f"  {garbage}: not an image (Pillow cannot identify its format)" in lines
    assert sum(line.startswith(f"  {tail}: ") for line in lines) == 1
