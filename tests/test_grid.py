"""Suites and the local grid: resumable after a kill, failures recorded, nothing duplicated."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_suite
from fetalbench.errors import FetalbenchError
from fetalbench.methods import METHODS
from fetalbench.orchestrate.grid import run_grid
from fetalbench.orchestrate.suites import available_suites, load_suite
from fetalbench.runs.validation import validate_record


def test_built_in_suites_load_and_meet_their_brief() -> None:
    assert {"smoke", "phantom", "paper", "full"} <= set(available_suites())
    phantom = load_suite("phantom")
    assert {"supervised_imagenet", "simclr", "simclr_imagenet", "dual_task_imagenet",
            "supervised_scratch"} <= set(phantom.methods)
    assert len(set(phantom.methods)) >= 16
    assert set(phantom.tasks) == {"brain", "planes"}
    assert len(phantom.fractions) >= 3 and len(phantom.seeds) >= 5
    claims = load_suite("phantom_board_claims")
    assert set(claims.methods) < set(phantom.methods) and len(claims.seeds) >= 3
    assert load_suite("full").methods == tuple(METHODS.names())
    assert load_suite("paper").dataset == "fetal_planes_db"



def test_the_committed_boards_suites_are_parts_of_the_full_phantom_board() -> None:
    """Every run of a ``phantom_*`` suite on the full board's tasks is a run of ``phantom``, so
    ``grid --suite phantom`` resumes from the records they committed instead of running beside
    them; the cross-machine suite adds the tasks the full board does not have."""
    full = load_suite("phantom")
    parts = [name for name in available_suites() if name.startswith("phantom_")]
    assert {"phantom_stage_checks", "phantom_board_claims", "phantom_board_baselines",
            "phantom_board_cross_machine", "phantom_board_baselines_planes"} <= set(parts)
    for name in parts:
        requests = load_suite(name).requests(None)
        on_board = {r for r in requests if r.task in full.tasks}
        assert on_board <= set(full.requests(None)), name
        assert on_board or name == "phantom_board_cross_machine", name
    cross = load_suite("phantom_board_cross_machine")
    assert set(cross.tasks) == {"brain_cross_machine", "planes_cross_machine"}


def test_end_to_end_method_gets_no_linear_runs(tmp_path: Path) -> None:
    suite_file = write_suite(tmp_path / "s.toml", methods=["supervised_scratch", "dual_task"],
                             protocols=["finetune", "linear"])
    requests = load_suite(str(suite_file)).requests(None)
    assert {r.protocol for r in requests if r.method == "dual_task"} == {"finetune"}
    assert len(requests) == 2 * 2 + 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("methods = ['nope']\ntasks=['brain']\nfractions=[0.1]\nseeds=[0]", "unknown method"),
        ("methods = ['simclr']\ntasks=['brain']\nfractions=[2.0]\nseeds=[0]", "outside (0, 1]"),
        ("methods = ['simclr']\ntasks=['brain']\nseeds=[0]", "missing key 'fractions'"),
        ("methods = ['simclr'\n", "not valid TOML"),
        ("method = ['simclr']", "unknown key(s) method"),
    ],
)
def test_bad_suite_files_are_refused(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(FetalbenchError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_suite(str(path))


def records_in(folder: Path) -> dict[str, str]:
    found = {}
    for path in folder.rglob("*.json"):
        record = json.loads(path.read_text())
        assert record["spec_hash"] not in found
        found[record["spec_hash"]] = record["status"]
    return found


def test_failed_run_is_recorded_and_the_grid_goes_on(real_subset_root, tmp_path, monkeypatch):
    suite_file = write_suite(tmp_path / "s.toml")
    suite = load_suite(str(suite_file))
    simclr = METHODS.get("simclr")

    def broken(context):
        raise RuntimeError("simulated crash")

    monkeypatch.setitem(METHODS._entries, "simclr", dataclasses.replace(simclr, train=broken))
    summary = run_grid(suite, real_subset_root, tmp_path / "out", tmp_path / "cache")
    assert (summary.succeeded, summary.failed) == (2, 2)
    statuses = records_in(tmp_path / "out")
    assert sorted(statuses.values()) == ["failed", "failed", "ok", "ok"]
    failed = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("*.json")]
    assert any("simulated crash" in r.get("error", "") for r in failed)
    monkeypatch.undo()
    again = run_grid(suite, real_subset_root, tmp_path / "out", tmp_path / "cache")
    assert (again.skipped, again.succeeded, again.failed) == (2, 2, 0)
    assert sorted(records_in(tmp_path / "out").values()) == ["ok"] * 4


def grid_command(suite_file: Path, root: Path, out: Path) -> list[str]:
    return [str(Path(sys.executable).with_name("fetalbench")), "grid", "--suite",
            str(suite_file), "--data-root", str(root), "--out", str(out)]


def test_killed_grid_resumes_to_the_same_records(real_subset_root: Path, tmp_path: Path) -> None:
    suite_file = write_suite(tmp_path / "s.toml", protocols=["finetune", "linear"])
    env = {**os.environ, "FETALBENCH_CACHE": str(tmp_path / "cache")}
    reference = tmp_path / "reference"
    subprocess.run(grid_command(suite_file, real_subset_root, reference), env=env, check=True,
                   capture_output=True)
    expected = records_in(reference)
    assert len(expected) == 8 and set(expected.values()) == {"ok"}

    out = tmp_path / "interrupted"
    for wait_for in (1, 4):
        process = subprocess.Popen(grid_command(suite_file, real_subset_root, out), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while len(list(out.rglob("*.json"))) < wait_for and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert len(records_in(out)) < 8
    subprocess.run(grid_command(suite_file, real_subset_root, out), env=env, check=True,
                   capture_output=True)
    assert records_in(out) == expected
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".json"]


def test_two_workers_run_every_run_exactly_once(real_subset_root: Path, tmp_path: Path) -> None:
    suite_file = write_suite(tmp_path / "s.toml")
    env = {**os.environ, "FETALBENCH_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "out"
    done = subprocess.run([*grid_command(suite_file, real_subset_root, out), "--workers", "2"],
                          env=env, check=True, capture_output=True, text=True)
    assert "4 to run, 2 at once" in done.stdout + done.stderr
    assert "4 ran, 0 failed, 0 running elsewhere, 1 pre-training stage(s) trained" in done.stdout
    assert sorted(records_in(out).values()) == ["ok"] * 4
    records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    assert {record["execution"]["threads"] for record in records} == {1}
    # valid but for being made on a subset of the real dataset's rows
    findings = {f.check for record in records for f in validate_record(record)}
    assert findings <= {"official_csv", "official_split"}
    again = subprocess.run([*grid_command(suite_file, real_subset_root, out), "--workers", "2"],
                           env=env, check=True, capture_output=True, text=True)
    assert "4 already done, 0 to run" in again.stdout + again.stderr
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".json"]


def test_workers_divide_the_default_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from fetalbench.orchestrate import grid

    monkeypatch.setattr(grid, "default_threads", lambda: 16)
    assert [grid.worker_threads(k) for k in (1, 2, 4, 32)] == [16, 8, 4, 1]
    assert grid.worker_threads(4, threads=3) == 3
