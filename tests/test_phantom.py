"""Tests of the built-in phantom: FETAL_PLANES_DB layout, metadata, determinism, cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fetalbench.data.phantom import render as phantom
from fetalbench.data.phantom.render import (
    DEFINING_STRUCTURES,
    GENERATOR_VERSION,
    LEGEND,
    PhantomSettings,
    ensure_phantom,
    generate_phantom,
    phantom_name,
    plan_phantom,
    render,
)
from fetalbench.errors import FetalbenchError

SMALL = PhantomSettings(n_images=80, seed=3, width=160, height=112)
HEADER = "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train"
PLANES = {
    "Fetal abdomen",
    "Fetal brain",
    "Fetal femur",
    "Fetal thorax",
    "Maternal cervix",
    "Other",
}
BRAIN_PLANES = {"Trans-thalamic", "Trans-cerebellum", "Trans-ventricular", "Other", "Not A Brain"}
OPERATOR_MACHINES = {
    "Op. 1": {"Voluson E6"},
    "Op. 2": {"Voluson E6"},
    "Op. 3": {"Aloka"},
    "Other": {"Voluson E6", "Voluson S10", "Aloka", "Other"},
}
IDS = {name: label for label, name in LEGEND.items()}


def _read_csv(root: Path) -> pd.DataFrame:
    """The CSV with the real file's parsing rules: ';', strings, names and values stripped."""
    table = pd.read_csv(
        root / "FETAL_PLANES_DB_data.csv", sep=";", dtype=str, keep_default_na=False
    )
    table.columns = [str(name).strip() for name in table.columns]
    return table.apply(lambda column: column.str.strip())


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "small"
    generate_phantom(root, SMALL, workers=2)
    return root


def test_layout_and_raw_csv_format(small_root: Path) -> None:
    raw = (small_root / "FETAL_PLANES_DB_data.csv").read_bytes()
    assert b"\r" not in raw
    lines = raw.decode("utf-8").split("\n")
    assert lines[0] == HEADER
    assert lines[-1] == ""
    rows = lines[1:-1]
    assert len(rows) == SMALL.n_images
    assert all(row.endswith((";1 ", ";0 ")) for row in rows)
    assert (small_root / "Images").is_dir() and (small_root / "Masks").is_dir()
    legend = json.loads((small_root / "Masks" / "legend.json").read_text())
    assert legend == {str(label): name for label, name in LEGEND.items()}
    assert legend["0"] == "background"
    manifest = json.loads((small_root / "phantom.json").read_text())
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert manifest["fingerprint"] == SMALL.fingerprint()
    assert manifest["counts"]["images"] == SMALL.n_images


def test_csv_has_only_official_columns_and_names(small_root: Path) -> None:
    table = _read_csv(small_root)
    assert list(table.columns) == HEADER.split(";")
    assert set(table.Plane) <= PLANES
    assert set(table.Brain_plane) <= BRAIN_PLANES
    brain = table.Plane == "Fetal brain"
    assert (table.Brain_plane[~brain] == "Not A Brain").all()
    assert (table.Brain_plane[brain] != "Not A Brain").all()
    for operator, machine in zip(table.Operator, table.US_Machine, strict=True):
        assert machine in OPERATOR_MACHINES[operator]
    assert table.Patient_num.str.fullmatch(r"\d+").all()
    assert set(table.Train) == {"0", "1"}
    assert table.Image_name.is_unique
    pattern = re.compile(r"Patient(\d{5})_Plane[1-6]_(\d+)_of_(\d+)")
    for name, patient in zip(table.Image_name, table.Patient_num, strict=True):
        match = pattern.fullmatch(name)
        assert match is not None, name
        assert int(match[1]) == int(patient)
        assert 1 <= int(match[2]) <= int(match[3])


def test_split_is_patient_disjoint_and_halves_the_patients(small_root: Path) -> None:
    table = _read_csv(small_root)
    train = set(table.Patient_num[table.Train == "1"])
    test = set(table.Patient_num[table.Train == "0"])
    assert train and test
    assert not train & test
    assert abs(len(train) - len(test)) <= 1


def test_every_image_and_mask_exists_and_decodes(small_root: Path) -> None:
    table = _read_csv(small_root)
    assert len(list((small_root / "Images").glob("*.png"))) == len(table)
    for name in table.Image_name:
        with Image.open(small_root / "Images" / f"{name}.png") as image:
            assert image.format == "PNG" and image.mode == "L"
            assert image.size == (SMALL.width, SMALL.height)
            pixels = np.asarray(image)
        with Image.open(small_root / "Masks" / f"{name}.png") as mask_image:
            assert mask_image.mode == "L" and mask_image.size == image.size
            mask = np.asarray(mask_image)
        assert pixels.std() > 5.0
        assert set(np.unique(mask)) <= set(LEGEND)
        assert mask.any()


def test_same_seed_gives_identical_bytes(small_root: Path, tmp_path: Path) -> None:
    generate_phantom(tmp_path / "again", SMALL, workers=2)
    assert _digests(tmp_path / "again") == _digests(small_root)


def test_worker_count_does_not_change_bytes(small_root: Path, tmp_path: Path) -> None:
    generate_phantom(tmp_path / "serial", SMALL, workers=1)
    assert _digests(tmp_path / "serial") == _digests(small_root)


def test_different_seed_differs(small_root: Path, tmp_path: Path) -> None:
    other = PhantomSettings(
        n_images=SMALL.n_images, seed=SMALL.seed + 1, width=SMALL.width, height=SMALL.height
    )
    generate_phantom(tmp_path / "other", other, workers=2)
    ours, theirs = _digests(small_root), _digests(tmp_path / "other")
    assert ours["FETAL_PLANES_DB_data.csv"] != theirs["FETAL_PLANES_DB_data.csv"]
    shared = [name for name in ours if name.startswith("Images/") and name in theirs]
    assert all(ours[name] != theirs[name] for name in shared)


def test_fingerprint_is_sha256_of_sorted_settings_json() -> None:
    settings = PhantomSettings()
    text = json.dumps(
        {"height": 224, "n_images": 3000, "seed": 0, "width": 320},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert settings.fingerprint() == hashlib.sha256(text.encode()).hexdigest()
    assert phantom_name(settings) == f"phantom-v{GENERATOR_VERSION}-{settings.fingerprint()[:12]}"
    assert PhantomSettings(seed=1).fingerprint() != settings.fingerprint()
    with pytest.raises(FetalbenchError):
        PhantomSettings(n_images=0)


def test_plan_follows_the_real_statistics() -> None:
    records = plan_phantom(PhantomSettings())
    n = len(records)
    assert n == 3000
    planes = Counter(r.plane for r in records)
    real = {
        "Other": 4213,
        "Fetal brain": 3092,
        "Fetal thorax": 1718,
        "Maternal cervix": 1626,
        "Fetal femur": 1040,
        "Fetal abdomen": 711,
    }
    for plane, count in real.items():
        assert planes[plane] == pytest.approx(n * count / 12400, abs=1)
    brain = Counter(r.brain_plane for r in records if r.plane == "Fetal brain")
    assert brain["Trans-thalamic"] > brain["Trans-cerebellum"] > brain["Trans-ventricular"]
    assert 0.02 < brain["Other"] / planes["Fetal brain"] < 0.08
    per_patient = Counter(r.patient for r in records)
    sizes = np.array(list(per_patient.values()))
    assert 3 <= np.median(sizes) <= 5 and 5.5 <= sizes.mean() <= 8.5
    kinds = Counter(len({r.plane for r in records if r.patient == p}) for p in per_patient)
    assert 0.3 < kinds[1] / len(per_patient) < 0.5
    train = sum(r.train for r in records) / n
    assert 0.54 < train < 0.61


def test_masks_label_the_defining_structures() -> None:
    assert set(DEFINING_STRUCTURES) == PLANES | {
        "Trans-thalamic",
        "Trans-cerebellum",
        "Trans-ventricular",
    }
    assert all(name in IDS for names in DEFINING_STRUCTURES.values() for name in names)
    settings = PhantomSettings(n_images=600, seed=5)
    records = plan_phantom(settings)
    for cls in DEFINING_STRUCTURES:
        chosen = [r for r in records if cls in (r.plane, r.brain_plane)][:3]
        assert chosen, cls
        for record in chosen:
            image, mask = render(record, settings)
            assert image.dtype == np.uint8 and image.shape == (settings.height, settings.width)
            assert np.isin(mask, [IDS[name] for name in DEFINING_STRUCTURES[cls]]).any(), cls


def test_ensure_phantom_generates_once_then_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = ensure_phantom(tmp_path, SMALL, workers=1)
    assert root == tmp_path / phantom_name(SMALL)
    assert (root / "phantom.json").is_file()
    stamp = (root / "phantom.json").stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated an existing phantom")

    monkeypatch.setattr(phantom, "generate_phantom", fail)
    assert ensure_phantom(tmp_path, SMALL) == root
    assert (root / "phantom.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [root.name]


def test_ensure_phantom_default_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FETALBENCH_CACHE", str(tmp_path / "cache"))
    settings = PhantomSettings(n_images=3, seed=1, width=96, height=64)
    assert ensure_phantom(settings=settings, workers=1).parent == tmp_path / "cache"


def test_unfinished_folder_is_not_taken_for_a_phantom(tmp_path: Path) -> None:
    (tmp_path / phantom_name(SMALL) / "Images").mkdir(parents=True)
    with pytest.raises(FetalbenchError, match="not a finished phantom"):
        ensure_phantom(tmp_path, SMALL)


def test_killed_generation_leaves_no_finished_looking_folder(tmp_path: Path) -> None:
    settings = PhantomSettings(n_images=400, seed=2, width=96, height=64)
    script = (
        "import sys; from pathlib import Path; "
        "from fetalbench.data.phantom.render import PhantomSettings, ensure_phantom; "
        f"ensure_phantom(Path(sys.argv[1]), PhantomSettings(**{asdict(settings)!r}), workers=1)"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while not any(tmp_path.glob(".phantom-*/Images/*.png")):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    leftovers = list(tmp_path.glob(".phantom-*"))
    assert len(leftovers) == 1
    assert not (tmp_path / phantom_name(settings)).exists()
    root = ensure_phantom(tmp_path, settings, workers=1)
    assert len(_read_csv(root)) == settings.n_images
    assert len(list((root / "Images").glob("*.png"))) == settings.n_images
    assert not leftovers[0].exists()
