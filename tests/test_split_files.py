"""Split files: `fetalbench splits` lists exactly the images a run trains, validates and tests on,
with the checksum its record carries; label budgets in patients are k patients per class, nested."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fetalbench.cli import main
from fetalbench.data.prepare import prepare_run_data
from fetalbench.data.sources import open_source
from fetalbench.data.split_files import SPLIT_PARTS, split_checksum
from fetalbench.data.splits import nested_patient_subsets, split_task
from fetalbench.data.tasks import TASKS
from fetalbench.paths import cache_dir


@pytest.mark.parametrize("budget", [("--fraction", "0.05"), ("--patients", "2")])
def test_split_files_list_a_runs_images_and_its_record_carries_their_checksum(
    budget: tuple[str, str], real_subset_root: Path, tmp_path: Path,
) -> None:
    common = ["--task", "brain", "--dataset", "fetal_planes_db", "--data-root",
              str(real_subset_root), *budget, "--seed", "0"]
    assert main(["splits", *common, "--profile", "tiny", "--out", str(tmp_path / "split")]) == 0
    assert main(["run", "--method", "supervised_scratch", *common, "--protocol", "linear",
                 "--profile", "tiny", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    (path,) = (tmp_path / "out").rglob("*.json")
    record = json.loads(path.read_text())
    summary = json.loads((tmp_path / "split" / "split.json").read_text())
    assert summary["checksum"] == record["split"]["checksum"]
    files = {part: pd.read_csv(tmp_path / "split" / f"{part}.csv") for part in SPLIT_PARTS}
    assert split_checksum(files) == record["split"]["checksum"]  # the files are the lists
    spec = record["spec"]
    source = open_source("fetal_planes_db", real_subset_root, cache_dir())
    data = prepare_run_data(source, TASKS.get("brain"), spec["fraction"], 0,
                            spec["profile"]["validation_fraction"], "task",
                            spec["profile"]["resolution"], cache_dir(), "fixed",
                            spec["patients_per_class"])
    rows = data.rows
    for part, positions in (("labelled", data.split.labelled),
                            ("validation", data.split.validation), ("test", data.split.test)):
        assert files[part]["image_name"].tolist() == rows["image_name"].iloc[positions].tolist()
        assert files[part]["patient"].tolist() == rows["patient"].iloc[positions].tolist()
    pool = source.catalog["image_name"].iloc[data.pool_positions()].tolist()
    assert files["unlabelled_pool"]["image_name"].tolist() == pool
    assert len(files["labelled"]) == record["split"]["labelled"]
    assert len(files["test"]) == record["split"]["test"]
    assert summary["images"] == {part: len(files[part]) for part in SPLIT_PARTS}


def test_another_seed_gives_other_files_and_another_checksum(real_subset_root: Path,
                                                             tmp_path: Path) -> None:
    sums = []
    for seed in ("0", "1"):
        assert main(["splits", "--task", "planes", "--dataset", "fetal_planes_db", "--data-root",
                     str(real_subset_root), "--fraction", "0.25", "--seed", seed, "--profile",
                     "tiny", "--out", str(tmp_path / seed)]) == 0
        sums.append(json.loads((tmp_path / seed / "split.json").read_text())["checksum"])
    assert sums[0] != sums[1]


def test_patient_budgets_take_k_patients_per_class_nested(real_catalog: pd.DataFrame) -> None:
    rows = TASKS.get("planes").select(real_catalog)
    train = rows[rows["train"]]
    subsets = nested_patient_subsets(train, (1, 2, 4), seed=3)
    for k, positions in subsets.items():
        chosen = train.iloc[positions]
        per_class = chosen.groupby("label")["patient"].nunique()
        available = train.groupby("label")["patient"].nunique()
        assert (per_class == np.minimum(k, available)).all()
        # every image of a chosen patient's class is labelled, none of another class of theirs
        for label, group in chosen.groupby("label"):
            of_class = train[train["label"] == label]
            assert set(group.index) == set(of_class.index[of_class["patient"].isin(
                group["patient"])])
    assert set(subsets[1]) <= set(subsets[2]) <= set(subsets[4])
    again = nested_patient_subsets(train, (2,), seed=3)[2]
    assert np.array_equal(again, subsets[2])
    assert not np.array_equal(nested_patient_subsets(train, (2,), seed=4)[2], subsets[2])


def test_a_split_takes_one_budget(real_catalog: pd.DataFrame) -> None:
    rows = TASKS.get("planes").select(real_catalog)
    with pytest.raises(Exception, match="exactly one"):
        split_task(rows, 0.5, 0, patients_per_class=2)
    with pytest.raises(Exception, match="exactly one"):
        split_task(rows, None, 0)
