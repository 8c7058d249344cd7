"""docs/budgets.md's arithmetic (fetalbench.devtools.budgets), on metadata alone: no image."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest

from fetalbench.data.fetal_planes_db import CSV_NAME, IMAGES_DIR, OFFICIAL_TEST_IMAGES, load_catalog
from fetalbench.data.phantom.render import PhantomSettings, _write_csv, ensure_phantom, plan_phantom
from fetalbench.devtools import budgets
from fetalbench.errors import FetalbenchError
from fetalbench.profiles import (
    PROFILES,
    finetune_schedule,
    finetune_steps,
    pretrain_steps,
    warmup_steps,
)

SHOWN = ("smoke", "quick", "gpu", "paper")
"""The profiles docs/budgets.md shows (the tests' ``tiny`` aside)."""


def test_the_image_free_catalog_is_load_catalogs(tmp_path: Path) -> None:
    records = plan_phantom(PhantomSettings(n_images=40))
    _write_csv(tmp_path / CSV_NAME, records)
    (tmp_path / IMAGES_DIR).mkdir()
    for record in records:  # load_catalog only checks that the files are there
        (tmp_path / IMAGES_DIR / f"{record.image_name}.png").touch()
    expected = load_catalog(tmp_path)
    assert budgets.catalog_from_csv(tmp_path / CSV_NAME).equals(expected)


def test_the_phantom_catalog_is_the_phantom_the_benchmark_opens() -> None:
    # open_source("phantom", ...) opens ensure_phantom(cache) with its default settings
    default = inspect.signature(ensure_phantom).parameters["settings"].default
    assert default == PhantomSettings()
    catalog = budgets.dataset_catalog("phantom")
    assert len(catalog) == PhantomSettings().n_images
    assert catalog["train"].any() and (~catalog["train"]).any()
    assert len(budgets.dataset_catalog("fetal_planes_db")) == 12400


@pytest.mark.parametrize("task", sorted(OFFICIAL_TEST_IMAGES))
def test_fetal_planes_db_split_sizes_are_the_official_ones(task: str) -> None:
    sizes = budgets.split_sizes("fetal_planes_db", task, 1.0, 0.2)
    assert sizes.test == OFFICIAL_TEST_IMAGES[task]
    assert sizes.labelled == sizes.pool  # 100%: every training image outside the carve-out
    assert sizes.validation == sizes.carve_out  # fixed validation: the whole carve-out


def test_finetune_rows_follow_the_profiles_rule() -> None:
    profiles = [PROFILES[name] for name in SHOWN]
    rows = budgets.finetune_rows(profiles, datasets=("fetal_planes_db",), tasks=("brain",))
    assert len(rows) == len(profiles) * len(budgets.FRACTIONS)
    labelled = [row.labelled for row in rows[: len(budgets.FRACTIONS)]]
    assert labelled == sorted(labelled) and labelled[-1] == 1232
    for row in rows:
        profile = PROFILES[row.profile]
        assert row.budget == finetune_steps(profile, row.labelled)
        assert (row.steps, row.interval) == finetune_schedule(profile, row.labelled)
        assert row.interval == max(1, row.budget // profile.validations)
        assert row.steps % row.interval == 0 and 0 <= row.budget - row.steps < row.interval
        assert row.batch == min(profile.batch_size, row.labelled)
        assert row.passes * row.labelled / row.batch == pytest.approx(row.steps)
        assert row.warmup == warmup_steps(profile, row.steps)
        assert row.validation == budgets.split_sizes("fetal_planes_db", "brain", 1.0,
                                                     profile.validation_fraction).carve_out


@pytest.mark.parametrize("name", SHOWN)
def test_tiny_and_huge_labelled_sets_are_clipped(name: str) -> None:
    profile = PROFILES[name]
    tiny = budgets.finetune_budget(profile, "d", "t", 0.01, labelled=3, validation=10)
    huge = budgets.finetune_budget(profile, "d", "t", 1.0, labelled=10_000_000, validation=10)
    assert tiny.budget == profile.finetune_min_steps and tiny.batch == 3
    assert huge.budget == profile.finetune_max_steps
    assert tiny.passes == pytest.approx(tiny.steps)  # the whole set in every step
    assert huge.passes < profile.finetune_passes <= tiny.passes
    between = budgets.finetune_budget(profile, "d", "t", 0.5,
                                      labelled=profile.batch_size * 7 + 5, validation=10)
    wanted = math.ceil(profile.finetune_passes * 7)
    assert between.budget == min(profile.finetune_max_steps,
                                 max(profile.finetune_min_steps, wanted))


@pytest.mark.parametrize("name", SHOWN)
def test_pretrain_rows_follow_the_profiles_rule(name: str) -> None:
    profile = PROFILES[name]
    rows = budgets.pretrain_rows([profile], datasets=("fetal_planes_db",), tasks=("brain",))
    (row,) = rows
    assert row.pool == budgets.split_sizes("fetal_planes_db", "brain", 0.01, 0.2).pool == 1232
    assert row.test == OFFICIAL_TEST_IMAGES["brain"]
    assert row.steps == pretrain_steps(profile, row.pool)
    assert row.passes * row.pool / row.batch == pytest.approx(row.steps)
    assert row.warmup == warmup_steps(profile, row.steps)
    tiny = budgets.pretrain_budget(profile, "d", "t", pool=5, test=1)
    huge = budgets.pretrain_budget(profile, "d", "t", pool=100_000_000, test=1)
    assert (tiny.steps, huge.steps) == (profile.pretrain_min_steps, profile.pretrain_max_steps)


def test_an_objective_scale_multiplies_the_passes_within_floor_and_ceiling() -> None:
    profile = PROFILES["quick"]
    pool = 192  # three batches: 180 steps, under the floor; 360 scaled, under the ceiling
    assert pretrain_steps(profile, pool) == profile.pretrain_min_steps
    assert pretrain_steps(profile, pool, 2.0) == 2 * profile.pretrain_passes * 3
    assert pretrain_steps(profile, 100_000_000, 2.0) == profile.pretrain_max_steps
    finetune = budgets.finetune_rows([profile], datasets=("phantom",), tasks=("brain",),
                                     fractions=(1.0,))
    pretrain = budgets.pretrain_rows([profile], datasets=("phantom",), tasks=("brain",))
    assert "Scaled here: NNCLR x2." in budgets.render_markdown([profile], finetune, pretrain)


def test_markdown_shows_every_profile_and_the_seconds() -> None:
    profiles = list(PROFILES.values())
    finetune = budgets.finetune_rows(profiles, datasets=("fetal_planes_db",), tasks=("brain",),
                                     fractions=(0.01, 1.0))
    pretrain = budgets.pretrain_rows(profiles, datasets=("fetal_planes_db",), tasks=("brain",))
    text = budgets.render_markdown(profiles, finetune, pretrain)
    for profile in profiles:
        assert f"## Profile `{profile.name}`" in text
        assert f"| `{profile.name}` " in text  # its row of the rule's table
    assert budgets.SECONDS_HEADING in text and "Not measured" in text
    measured = budgets.render_markdown(profiles, finetune, pretrain,
                                       {"quick/brain/simclr/0.01": 123.4})
    section = measured.split(budgets.SECONDS_HEADING)[1]
    assert "123.4" in section and "simclr" in section and "Not measured" not in section


def test_the_script_writes_the_doc_with_seconds(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budgets, "DATASET_NAMES", ("fetal_planes_db",))  # kept fast
    monkeypatch.setattr(budgets, "TASK_NAMES", ("brain",))
    seconds = tmp_path / "seconds.json"
    seconds.write_text(json.dumps({"smoke/brain/supervised_scratch/1.0": 2.5}))
    output = tmp_path / "budgets.md"
    assert budgets.main(["--seconds", str(seconds), "--output", str(output)]) == 0
    assert str(output) in capsys.readouterr().out
    text = output.read_text()
    assert "supervised_scratch" in text and all(f"`{name}`" in text for name in SHOWN)


@pytest.mark.parametrize("content", ['{"quick/brain": 1}', '{"a/b/c/d": "fast"}', "[1]",
                                     '{"a/b/c/d": -1}'])
def test_bad_seconds_files_are_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "seconds.json"
    path.write_text(content)
    with pytest.raises(FetalbenchError):
        budgets.read_seconds(path)
