"""Datasets are a registered kind: built-ins, plugin datasets, and what opening one checks.

A third dataset comes from a fake distribution (as in ``tests/test_plugins.py``) whose entry
point in ``fetalbench.datasets`` registers a folder in the FETAL_PLANES_DB layout; one run on it
goes through the command line, and its record and leaderboard section are checked. The dataset
registry is copied for each test and restored after it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from test_plugins import fake_distribution

from fetalbench.cli import main
from fetalbench.data.sources import DATASETS, Dataset, open_source, register_dataset
from fetalbench.errors import FetalbenchError
from fetalbench.registry import NameCollisionError
from fetalbench.report.leaderboard import render_leaderboard
from fetalbench.report.record_table import load_records

PLUGIN_MODULE = "fake_plugin_dataset"
TITLE = "STAND-IN (test)"
DESCRIPTION = "Stand-in images in the FETAL_PLANES_DB layout, made by the tests."

DATASET_PLUGIN = """
    from pathlib import Path

    from fetalbench.api import Dataset, folder_source, register_dataset

    ROOT = Path({root!r})


    def open_stand_in(data_root, cache_root):
        return folder_source("stand_in", True, ROOT)


    def register():
        register_dataset(Dataset(name="stand_in", title={title!r}, synthetic=True,
                                 description={description!r}, opener=open_stand_in))
"""


@pytest.fixture
def fresh_datasets(monkeypatch: pytest.MonkeyPatch):
    """A copy of the dataset registry whose plugins are not loaded yet."""
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    monkeypatch.setattr(DATASETS, "_sources", dict(DATASETS._sources))
    monkeypatch.setattr(DATASETS, "_plugins_loaded", False)
    yield
    sys.modules.pop(PLUGIN_MODULE, None)


def install_stand_in(root: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put a fake distribution registering the dataset ``stand_in`` (the folder ``data``) on
    ``sys.path``."""
    source = DATASET_PLUGIN.format(root=str(data), title=TITLE, description=DESCRIPTION)
    fake_distribution(root, "fetalbench-dataset-fake",
                      {"fetalbench.datasets": {"stand_in": f"{PLUGIN_MODULE}:register"}},
                      {PLUGIN_MODULE: source})
    monkeypatch.syspath_prepend(str(root))


def test_the_built_ins_are_registered_with_their_flags_and_titles() -> None:
    assert DATASETS.names()[:2] == ["phantom", "fetal_planes_db"]
    phantom, real = DATASETS.get("phantom"), DATASETS.get("fetal_planes_db")
    assert (phantom.synthetic, phantom.needs_data_root, phantom.title) == (
        True, False, "SYNTHETIC (phantom)")
    assert (real.synthetic, real.needs_data_root, real.title) == (
        False, True, "FETAL_PLANES_DB")
    assert DATASETS.source("phantom") == DATASETS.source("fetal_planes_db") == "fetalbench"


def test_a_plugin_dataset_runs_and_enters_the_leaderboard_under_its_title(
    fresh_datasets: None, real_subset_root: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_stand_in(tmp_path / "plugin", real_subset_root, monkeypatch)
    results = tmp_path / "results"
    assert main(["run", "--method", "supervised_scratch", "--task", "planes", "--dataset",
                 "stand_in", "--profile", "tiny", "--fraction", "0.5", "--out", str(results),
                 "--no-checkpoint", "--quiet"]) == 0
    assert DATASETS.source("stand_in") == (
        f"plugin fetalbench-dataset-fake (fetalbench.datasets: stand_in = "
        f"{PLUGIN_MODULE}:register)")
    [path] = sorted(results.glob("stand_in/planes/supervised_scratch/*.json"))
    record = json.loads(path.read_text())
    assert record["spec"]["dataset"] == record["dataset"]["name"] == "stand_in"
    assert record["dataset"]["synthetic"] is True
    assert record["status"] == "ok"

    records = load_records(results)
    assert records.ok["dataset"].tolist() == ["stand_in"]
    text = render_leaderboard(records, "fetalbench leaderboard", None)
    assert (f"## {TITLE}: synthetic images, not fetal ultrasound\n\n{DESCRIPTION} These tables "
            "check the pipeline") in text
    assert f"### {TITLE}: task `planes`" in text
    assert f"### Ranking across cells: {TITLE}" in text
    assert "## FETAL_PLANES_DB: no records yet" in text  # a synthetic dataset is no real result


def test_a_plugin_taking_a_built_in_dataset_name_is_an_error_naming_both(
    fresh_datasets: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(
        tmp_path, "fetalbench-dataset-clash",
        {"fetalbench.datasets": {"clash": f"{PLUGIN_MODULE}:register"}},
        {PLUGIN_MODULE: """
            from fetalbench.api import DATASETS, register_dataset

            def register():
                register_dataset(DATASETS.get("fetal_planes_db"))
        """},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(NameCollisionError, match="dataset 'fetal_planes_db' is registered twice: "
                       "by fetalbench and by plugin fetalbench-dataset-clash"):
        DATASETS.names()


def test_opening_checks_the_data_root_and_the_openers_identity(
    fresh_datasets: None, real_subset_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(FetalbenchError, match=r"--dataset phantom takes no --data-root .* "
                       "--dataset fetal_planes_db"):
        open_source("phantom", real_subset_root, tmp_path)
    with pytest.raises(FetalbenchError, match=re.escape(
            "--dataset fetal_planes_db needs --data-root DIR, the folder holding "
            "FETAL_PLANES_DB_data.csv")):
        open_source("fetal_planes_db", None, tmp_path)
    with pytest.raises(FetalbenchError, match="unknown dataset 'nope'; expected one of phantom, "
                       "fetal_planes_db"):
        open_source("nope", None, tmp_path)
    real = open_source("fetal_planes_db", real_subset_root, tmp_path)
    register_dataset(Dataset(name="impostor", title="IMPOSTOR", synthetic=True,
                             description="Opens another dataset.",
                             opener=lambda data_root, cache_root: real), "tests")
    with pytest.raises(FetalbenchError, match="opened a source named 'fetal_planes_db' with "
                       "synthetic=False; its opener must return its own name"):
        open_source("impostor", None, tmp_path)
