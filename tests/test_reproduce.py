"""``fetalbench reproduce`` reruns a record under its recorded conditions and finds it identical."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fetalbench.cli import main
from fetalbench.errors import FetalbenchError
from fetalbench.methods.execution import Execution, default_threads
from fetalbench.runs.execute import execute_run
from fetalbench.runs.reproduce import (
    OTHER_CPU_KIND_TOLERANCE,
    MetricDifference,
    Reproduction,
    compare_metrics,
    flatten_metrics,
    reproduce_record,
    reproduction_seconds,
    sample_cheap_records,
    stage_seconds,
)
from fetalbench.runs.spec import RunRequest


@pytest.fixture(scope="module")
def smoke_record(real_subset_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-stage run (its pre-training stage trained now) written to a fresh results folder."""
    folder = tmp_path_factory.mktemp("reproduce")
    request = RunRequest(method="simclr", task="planes", dataset="fetal_planes_db",
                         data_root=real_subset_root, fraction=0.5, profile="tiny")
    outcome = execute_run(request, folder / "out", folder / "cache", log=lambda _: None)
    return outcome.record_path


def test_a_record_names_its_thread_count_and_cpu(smoke_record: Path) -> None:
    record = json.loads(smoke_record.read_text())
    assert default_threads() == 1  # no GPU here
    assert record["execution"]["threads"] == 1 == record["hardware"]["torch_threads"]
    assert record["hardware"]["cpu_capability"]


def test_reproduce_reruns_every_stage_and_finds_every_metric_identical(
    smoke_record: Path, real_subset_root: Path, tmp_path: Path
) -> None:
    logs: list[str] = []
    cache = smoke_record.parents[4] / "cache"  # <folder>/out/<dataset>/<task>/<method>/<file>
    reproduction = reproduce_record(smoke_record, cache, real_subset_root, log=logs.append)
    assert any(line.startswith("pre-training simclr") for line in logs)  # not reused
    names = {m.name for m in reproduction.metrics}
    assert {"macro_f1", "accuracy", "confusion_matrix.0.0", "embedding.knn_accuracy"} <= names
    assert reproduction.differing() == []
    assert reproduction.largest_difference() == 0.0


def test_reproduce_reports_a_metric_that_differs_and_exits_non_zero(
    smoke_record: Path, real_subset_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    record = json.loads(smoke_record.read_text())
    record["metrics"]["macro_f1"] += 0.01
    edited = tmp_path / smoke_record.name
    edited.write_text(json.dumps(record))
    assert main(["reproduce", str(edited), "--data-root", str(real_subset_root)]) == 1
    out = capsys.readouterr().out
    assert "macro_f1" in out and "difference -0.01" in out and "FAILS: macro_f1" in out
    assert out.rstrip().endswith("reproduced 1 record(s): 0 pass, 1 fail")


def test_reproduce_refuses_what_it_cannot_rerun(smoke_record: Path, tmp_path: Path) -> None:
    record = json.loads(smoke_record.read_text())
    cases = {
        "spec_hash": lambda r: r["spec"].update(seed=7),
        "devices": lambda r: r["execution"].update(devices=2),
        "profile": lambda r: r["spec"]["profile"].update(batch_size=3),
    }
    for expected, edit in cases.items():
        changed = json.loads(json.dumps(record))
        edit(changed)
        if expected == "profile":  # keep the hash consistent, so the profile check is reached
            from fetalbench.runs.spec import spec_hash

            changed["spec_hash"] = spec_hash(changed["spec"])
        path = tmp_path / f"{expected}.json"
        path.write_text(json.dumps(changed))
        with pytest.raises(FetalbenchError, match=expected.split("_")[0]):
            reproduce_record(path, tmp_path / "cache", None)


def test_metrics_flatten_to_every_number() -> None:
    metrics = {"macro_f1": 0.5, "sensitivity": {"a": 1.0}, "confusion_matrix": [[1, 2], [3, 4]],
               "embedding": {"silhouette": None}, "n_test": 10}
    flat = flatten_metrics(metrics)
    assert flat["confusion_matrix.1.0"] == 3.0 and flat["sensitivity.a"] == 1.0
    assert math.isnan(flat["embedding.silhouette"])
    (only,) = [m for m in compare_metrics(metrics, {**metrics, "macro_f1": 0.25}) if m.difference]
    assert only.name == "macro_f1" and only.difference == -0.25


def test_execution_applies_its_thread_count() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        Execution(threads=1).apply_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_on_another_kind_of_cpu_only_the_headline_metrics_beyond_the_thread_spread_fail() -> None:
    def reproduction(same_kind: bool, macro_f1_moves: float) -> Reproduction:
        metrics = (MetricDifference("macro_f1", 0.5, 0.5 + macro_f1_moves),
                   MetricDifference("confusion_matrix.0.0", 10.0, 14.0))
        return Reproduction(Path("r.json"), metrics, ("cpu_capability AVX512 -> AVX2",), same_kind)

    within = OTHER_CPU_KIND_TOLERANCE / 2
    assert [m.name for m in reproduction(True, 0.0).failing()] == ["confusion_matrix.0.0"]
    assert reproduction(False, within).failing() == []
    assert [m.name for m in reproduction(False, 2 * OTHER_CPU_KIND_TOLERANCE).failing()] == [
        "macro_f1"]
    assert len(reproduction(False, within).differing()) == 2  # still reported


def test_the_sample_is_seeded_and_takes_only_cheap_records(smoke_record: Path,
                                                           tmp_path: Path) -> None:
    record = json.loads(smoke_record.read_text())
    for index, seconds in enumerate((10, 20, 30, 500)):
        record["timings"]["total_s"] = seconds
        (tmp_path / f"r{index}.json").write_text(json.dumps(record))
    first = sample_cheap_records([tmp_path], 2, seed=3, max_seconds=60)
    assert first == sample_cheap_records([tmp_path], 2, seed=3, max_seconds=60)
    assert len(first) == 2 and tmp_path / "r3.json" not in first
    draws = {tuple(sample_cheap_records([tmp_path], 2, seed, 60)) for seed in range(20)}
    assert len(draws) > 1
    with pytest.raises(FetalbenchError, match="only 3 reproducible record"):
        sample_cheap_records([tmp_path], 4, seed=0, max_seconds=60)


def test_a_reused_pre_training_stage_counts_in_what_a_rerun_costs(smoke_record: Path) -> None:
    record = json.loads(smoke_record.read_text())
    def with_stage(total_s: float, checkpoint: str, **pretraining) -> dict:
        return {**record, "timings": {"total_s": total_s},
                "method_notes": {"pretraining": {"checkpoint": checkpoint, **pretraining}}}

    trainer = with_stage(130.0, "pretrain/a.safetensors", reused=False, seconds=100.0)
    reuser = with_stage(20.0, "pretrain/a.safetensors", reused=True)  # as committed records are
    orphan = with_stage(20.0, "pretrain/b.safetensors", reused=True)
    stages = stage_seconds([trainer, reuser, orphan])
    assert stages == {"pretrain/a.safetensors": 100.0}
    assert reproduction_seconds(trainer, stages) == 130.0  # its stage is inside total_s
    assert reproduction_seconds(reuser, stages) == 120.0
    assert reproduction_seconds(orphan, stages) == float("inf")
    supervised = {**record, "timings": {"total_s": 20.0}, "method_notes": {}}
    assert reproduction_seconds(supervised, stages) == 20.0
