"""Readable progress: a few lines per stage in a log, result lines only with --quiet."""

from __future__ import annotations

import io
from pathlib import Path
from typing import ClassVar

import pytest

from conftest import write_suite
from fetalbench.cli import main
from fetalbench.methods.progress import LINES_PER_STAGE


def run_command(root: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--method", "simclr", "--task", "planes", "--dataset", "fetal_planes_db",
            "--data-root", str(root), "--profile", "tiny", "--fraction", "0.5", "--out",
            str(out), "--force", *extra]


def test_a_run_in_a_log_prints_a_few_lines_per_stage_in_optimiser_steps(
    real_subset_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(run_command(real_subset_root, tmp_path)) == 0
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    stage_lines = [line for line in lines if ": step " in line]
    assert any(line.startswith("pre-training simclr: step 2/2, loss ") for line in stage_lines)
    assert any(line.startswith("fine-tuning: step 4/4, loss ") and "val macro F1" in line
               and "ETA 0s" in line for line in stage_lines)
    assert len(stage_lines) <= 2 * LINES_PER_STAGE
    assert "\r" not in captured.err  # no carriage-return bars in a log
    assert len(lines) < 20, lines


def test_quiet_prints_only_the_result_lines(
    real_subset_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(run_command(real_subset_root, tmp_path, "--quiet")) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    # the result line, the learning check (the run's verdict, then one line per stage) and
    # the record's path
    first, verdict, *stages, last = captured.out.splitlines()
    assert "test macro F1" in first and "1 CPU thread(s)" in first
    assert verdict.startswith("learning check: ")
    assert [line.split(":")[0] for line in stages] == ["  pre-training simclr", "  fine-tuning"]
    assert last.startswith("record: ")


def test_a_grid_prints_one_line_per_finished_run(
    real_subset_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    suite = write_suite(tmp_path / "suite.toml", profile="tiny", methods=["supervised_scratch"])
    assert main(["grid", "--suite", str(suite), "--data-root", str(real_subset_root),
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    lines = (out.out + out.err).splitlines()
    finished = [line for line in lines if "macro F1" in line and "ETA" in line]
    assert [line.split(":")[0] for line in finished] == [
        "supervised_scratch planes f=0.25 s=0", "supervised_scratch planes f=0.5 s=0"]
    assert not any(": step " in line for line in lines)  # no stage progress inside a grid
    assert len(lines) == 4, lines  # header, two runs, summary


def test_stage_progress_on_a_terminal_is_one_bar() -> None:
    from fetalbench.methods.progress import StageProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    class FakeTrainer:
        is_global_zero = True
        max_steps = 3
        global_step = 0
        callback_metrics: ClassVar[dict] = {}

    stream, trainer = Terminal(), FakeTrainer()
    progress = StageProgress("fine-tuning", stream)
    progress.on_train_start(trainer, None)
    for step in (1, 2, 3):
        trainer.global_step = step
        progress.on_train_batch_end(trainer, None, {"loss": 0.5}, None, step)
    progress.on_train_end(trainer, None)
    text = stream.getvalue()
    assert "3/3" in text and "loss 0.500" in text and "fine-tuning: 3 steps in" in text


def test_durations_read_as_seconds_minutes_or_hours() -> None:
    from fetalbench.methods.progress import duration

    assert [duration(v) for v in (4.4, 185, 4800)] == ["4s", "3m05s", "1h20m"]
