"""Shared fixtures: real FETAL_PLANES_DB material, stand-in images, a tiny compute profile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fetalbench.data.fetal_planes_db import CSV_NAME, read_metadata
from fetalbench.profiles import PROFILES, fixed_steps

# The official CSV and 57 real images (halved, grayscale), with their licence: tests/data/README.md.
REAL_DATA = Path(__file__).resolve().parent / "data" / "fetal_planes_db"
REAL_CSV = REAL_DATA / CSV_NAME
REAL_IMAGES = REAL_DATA / "images_sample"

TINY = fixed_steps(PROFILES["smoke"], finetune=4, pretrain=2, name="tiny", batch_size=8,
                   pretrain_batch_size=8)


# The tests' small grid on real CSV rows: two methods (one pre-training), two fractions.
TEST_SUITE = {
    "description": "test grid",
    "dataset": "fetal_planes_db",
    "profile": "smoke",
    "methods": ["supervised_scratch", "simclr"],
    "tasks": ["planes"],
    "fractions": [0.25, 0.5],
    "seeds": [0],
    "protocols": ["finetune"],
}


def write_suite(path: Path, slurm: dict | None = None, **changes: object) -> Path:
    """Write :data:`TEST_SUITE` with ``changes`` (and a ``[slurm]`` table) as a suite file.

    JSON's strings, numbers and lists of them are valid TOML values.
    """
    lines = [f"{key} = {json.dumps(value)}" for key, value in {**TEST_SUITE, **changes}.items()]
    if slurm:
        lines += ["[slurm]", *(f"{key} = {json.dumps(value)}" for key, value in slurm.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def pytest_configure() -> None:
    PROFILES.setdefault("tiny", TINY)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """The session's own cache folder (set before any module fixture runs); offline hub."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FETALBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("FETALBENCH_OFFLINE", "1")
        yield


def real_csv_lines() -> tuple[str, list[str]]:
    """The header and the data lines of the official CSV, verbatim (trailing spaces kept)."""
    header, *lines = REAL_CSV.read_text(encoding="utf-8").splitlines()
    return header, lines


def stand_in_png(path: Path, label_seed: int, rng: np.random.Generator) -> None:
    """A small RGB PNG whose blob position depends on the label (so a model can learn it)."""
    height, width = 66, 96
    image = rng.normal(40, 15, (height, width))
    y, x = np.mgrid[:height, :width]
    cy, cx = 15 + (label_seed * 11) % 40, 15 + (label_seed * 23) % 70
    image += 150 * (((y - cy) ** 2 + (x - cx) ** 2) < 64)
    gray = np.clip(image, 0, 255).astype(np.uint8)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(path)


def make_real_subset_root(root: Path, per_group: int = 12) -> Path:
    """A root of real CSV rows (the 57 real images plus rows of every class) and their PNGs.

    Rows of the 57 real images keep their real PNGs; every other row gets a generated stand-in
    under its official name. Rows are taken per (Plane, Brain_plane, Train) group, by patient.
    """
    header, lines = real_csv_lines()
    real_names = {path.stem for path in REAL_IMAGES.glob("*.png")}
    fields = [line.split(";") for line in lines]
    chosen: list[int] = [i for i, f in enumerate(fields) if f[0].strip() in real_names]
    groups: dict[tuple[str, str, str], int] = {}
    for i, f in enumerate(fields):
        key = (f[2].strip(), f[3].strip(), f[6].strip())
        if groups.get(key, 0) < per_group and f[0].strip() not in real_names:
            groups[key] = groups.get(key, 0) + 1
            chosen.append(i)
    chosen.sort()
    images = root / "Images"
    images.mkdir(parents=True)
    (root / CSV_NAME).write_text("\n".join([header] + [lines[i] for i in chosen]) + "\n")
    label_ids = {name: k for k, name in enumerate(sorted({f[2].strip() + f[3].strip()
                                                         for f in fields}))}
    rng = np.random.default_rng(0)
    for i in chosen:
        name = fields[i][0].strip()
        if name in real_names:
            shutil.copyfile(REAL_IMAGES / f"{name}.png", images / f"{name}.png")
        else:
            label = label_ids[fields[i][2].strip() + fields[i][3].strip()]
            stand_in_png(images / f"{name}.png", label, rng)
    return root


def make_sample_root(root: Path) -> Path:
    """A root of exactly the 57 real images and their CSV rows."""
    header, lines = real_csv_lines()
    real_names = {path.stem for path in REAL_IMAGES.glob("*.png")}
    kept = [line for line in lines if line.split(";")[0].strip() in real_names]
    (root / "Images").mkdir(parents=True)
    (root / CSV_NAME).write_text("\n".join([header, *kept]) + "\n")
    for name in real_names:
        shutil.copyfile(REAL_IMAGES / f"{name}.png", root / "Images" / f"{name}.png")
    return root


@pytest.fixture(scope="session")
def real_catalog() -> pd.DataFrame:
    """The real CSV as a catalog's task-relevant columns (no images: for split and task tests)."""
    table = read_metadata(REAL_CSV)
    return pd.DataFrame({
        "image_name": table["Image_name"], "patient": table["Patient_num"].astype(int),
        "plane": table["Plane"], "brain_plane": table["Brain_plane"],
        "machine": table["US_Machine"], "train": table["Train"] == "1",
    })


@pytest.fixture(scope="session")
def real_subset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_real_subset_root(tmp_path_factory.mktemp("fpdb") / "root")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_root(tmp_path_factory.mktemp("sample") / "root")
