"""``fetalbench bench``: the paired loop comparison and one tiny end-to-end measurement."""

from __future__ import annotations

import dataclasses
import json
from unittest import mock

import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import TINY
from fetalbench.devtools.bench import (
    BareLoop,
    InterleavedBareLoop,
    compare_interleaved,
    run_benchmarks,
    save_measurements,
)
from fetalbench.methods.api import Classifier
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.engine import SupervisedModule, batches, make_trainer
from fetalbench.methods.registry import METHODS
from fetalbench.orchestrate.suites import load_suite
from fetalbench.paths import cache_dir


def test_compare_interleaved_pools_the_pairs_of_every_repeat() -> None:
    # seconds of (first, second) per step pair; a burst (9.0) stalls one pair
    repeats = iter([[(2.0, 1.0), (2.0, 1.0), (9.0, 9.0)],
                    [(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]])
    rate_first, rate_second, ratio, per_repeat = compare_interleaved(lambda: next(repeats), 8, 2)
    assert per_repeat == [0.5, 1.0]
    assert ratio == 1.0  # median of 0.5, 0.5, 1, 1, 1, 1
    assert (rate_first, rate_second) == (8 / 1.5, 8.0)


class _CountingLoop:
    """A bare loop whose step only advances a fake clock."""

    def __init__(self, clock: list[float], seconds: float):
        self.clock, self.seconds, self.made = clock, seconds, 0
        self.device = torch.device("cpu")

    def step(self) -> None:
        self.made += 1
        self.clock[0] += self.seconds


def test_interleaved_bare_loop_times_each_step_between_the_bare_ones() -> None:
    clock = [0.0]
    bare = _CountingLoop(clock, 0.5)
    callback = InterleavedBareLoop(bare, warmup=1)
    with mock.patch("time.perf_counter", lambda: clock[0]):
        for compute, between in [(1.0, 0.25), (2.0, 0.5), (3.0, 0.125), (4.0, 0.0)]:
            callback.on_train_batch_start(None, None, None, 0)
            clock[0] += compute
            callback.on_train_batch_end(None, None, None, None, 0)
            clock[0] += between  # the loop's work before the next step starts
    # step 0 is warm-up; the last step closes no pair (its successor never starts)
    assert callback.pairs == [(2.5, 0.5), (3.125, 0.5)]
    assert bare.made == 4


def test_bare_loop_steps_through_contiguous_batches_and_trains() -> None:
    images, labels = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    model, seen = torch.nn.Linear(1, 10), []

    def loss(batch: torch.Tensor, batch_labels: torch.Tensor) -> torch.Tensor:
        seen.append(batch_labels.tolist())
        return torch.nn.functional.cross_entropy(model(batch), batch_labels)

    before = model.weight.detach().clone()
    loop = BareLoop(model, loss, (images, labels), 0.1, TINY, 4, torch.device("cpu"))
    for _ in range(4):
        loop.step()
    # batches start at 0, 4, then 8 and 12 wrap over the 7 starts a full batch can take
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [1, 2, 3, 4], [5, 6, 7, 8]]
    assert not torch.equal(model.weight, before)


def test_bench_measures_every_row_in_one_process(tmp_path) -> None:
    rows = run_benchmarks(TINY, cache_dir(), steps=1, warmup=1, repeats=2)
    by_name = {row.name: row for row in rows}
    for label in ("supervised step (img/s)", "SimCLR step (views/s)"):
        ours = by_name[f"{label}, fetalbench (Lightning)"]
        bare = by_name[f"{label}, bare PyTorch loop"]
        assert ours.images_per_second > 0 and bare.images_per_second > 0
        low, high = ours.ratio_range
        assert low <= ours.ratio <= high
    floor = by_name["supervised step (img/s), bare loop against itself (noise floor)"]
    assert floor.ratio_range[0] <= floor.ratio <= floor.ratio_range[1]
    pipeline = by_name["data pipeline over SimCLR step"]
    simclr = by_name["SimCLR step (views/s), fetalbench (Lightning)"]
    assert abs(pipeline.ratio - pipeline.images_per_second / simclr.images_per_second) < 1e-9
    memory = by_name[f"SimCLR step (views/s), bare loop, channels_last {not TINY.channels_last}"]
    assert memory.reference == f"channels_last {TINY.channels_last}" and memory.ratio > 0
    bf16 = by_name["SimCLR step (views/s), bare loop, precision bf16-mixed"]
    assert bf16.reference == f"precision {TINY.precision}" and bf16.ratio > 0
    counts = next(row for row in rows if row.name.startswith("grid 'phantom'"))
    suite = load_suite("phantom")
    # Fractions and protocols share one pre-training stage per (method, task, seed); a method
    # runs only the suite's protocols it has
    pretrained = [METHODS.get(m) for m in suite.methods if METHODS.get(m).pretrains]
    runs_per_stage = [len(suite.fractions) * len(set(suite.protocols) & set(m.protocols))
                      for m in pretrained]
    assert max(runs_per_stage) == len(suite.fractions) * len(suite.protocols)
    assert counts.ratio == pytest.approx(len(pretrained) / sum(runs_per_stage))
    save_measurements(rows, TINY, tmp_path / "bench.json")
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert len(saved["rows"]) == len(rows) and saved["profile"]["name"] == "tiny"


def test_a_module_built_directly_trains_in_the_profiles_memory_format() -> None:
    """The benchmark builds SupervisedModule itself; it must train what the runner trains."""
    profile = dataclasses.replace(TINY, channels_last=True)
    classifier = Classifier(create_backbone(profile.backbone, "random"), 3)
    module = SupervisedModule(classifier, profile)
    images = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    loader = {"labelled": batches(TensorDataset(images, torch.arange(8) % 3), 4)}
    make_trainer(profile, 1, [], max_epochs=-1, enable_checkpointing=False,
                 enable_progress_bar=False).fit(module, loader)
    convolutions = [p for p in classifier.parameters() if p.dim() == 4]
    assert convolutions
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)


def test_gpu_check_without_a_gpu_is_a_one_line_error(tmp_path, capsys) -> None:
    from fetalbench.devtools import gpu_check

    with mock.patch.object(torch.cuda, "is_available", return_value=False):
        assert gpu_check.main([str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no CUDA GPU" in error and "--cpu" in error
    assert not (tmp_path / "out").exists()


def test_gpu_check_projects_a_suite_from_its_stages_and_runs() -> None:
    from fetalbench.devtools.gpu_check import Timing, project
    from fetalbench.profiles import get_profile

    timing = Timing("gpu", pretrain_step_s=0.036, downstream_step_s=0.02, run_fixed_s=6.0)
    suite = load_suite("phantom")
    row = project(suite, get_profile("gpu"), timing)
    # every method x task x fraction x seed x protocol the method has is a run; every method but
    # the supervised ones, FixMatch and the dual task (one stage, labels and pool together) has a
    # pre-training stage (the compute-matched control's optimises nothing, but it is a stage),
    # trained once per task and seed whatever the fraction and protocol
    without_stage = {"supervised_scratch", "supervised_imagenet", "fixmatch_imagenet",
                     "dual_task", "dual_task_imagenet"}
    assert suite.protocols == ("finetune", "linear") and without_stage <= set(suite.methods)
    cells = len(suite.tasks) * len(suite.fractions) * len(suite.seeds)
    linear = [m for m in suite.methods if "linear" in METHODS.get(m).protocols]
    assert 0 < len(linear) < len(suite.methods)  # the end-to-end methods have no frozen encoder
    finetuned, runs = len(suite.methods) * cells, (len(suite.methods) + len(linear)) * cells
    stages = (len(suite.methods) - len(without_stage)) * len(suite.tasks) * len(suite.seeds)
    assert (row["runs"], row["stages"]) == (runs, stages)
    assert row["stages"] < row["runs"]
    # each counted at the gpu profile's largest budgets: 20,000 pre-training, 3,000 fine-tuning;
    # a linear evaluation costs its fixed seconds only
    seconds = stages * 20_000 * 0.036 + finetuned * 3_000 * 0.02 + runs * 6.0
    assert row["stage_hours"] == round(stages * 20_000 * 0.036 / 3600, 2)
    assert row["run_hours"] == round((finetuned * 3_000 * 0.02 + runs * 6.0) / 3600, 2)
    assert row["hours"] == round(seconds / 3600, 2)
