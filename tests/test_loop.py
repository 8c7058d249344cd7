"""One run loop: the local grid and a Slurm job make the same of each run's outcome."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import write_suite
from fetalbench.orchestrate import loop
from fetalbench.orchestrate.grid import run_grid
from fetalbench.orchestrate.slurm import RunStatus, run_group
from fetalbench.orchestrate.suites import load_suite
from fetalbench.runs.execute import RunOutcome
from fetalbench.runs.spec import RunRequest
from fetalbench.storage.locks import LockedElsewhere

HOLDER = {"pid": 1, "host": "h", "since": "2024-01-01T00:00:00+00:00"}
RECORD = {"metrics": {"macro_f1": 0.5}, "timings": {"total_s": 3.0}, "spec_hash": "0" * 16,
          "method_notes": {}}


def fake_execute_run(request: RunRequest, out_dir: Path, *_args, **_kwargs) -> RunOutcome:
    """supervised_scratch: f=0.25 runs, f=0.5 was done by another process; simclr: f=0.25 is
    held by a live process, f=0.5 crashes."""
    behaviour = (request.method, request.fraction)
    if behaviour == ("simclr", 0.25):
        raise LockedElsewhere(out_dir / "held.json.lock", HOLDER)
    if behaviour == ("simclr", 0.5):
        raise RuntimeError("simulated crash")
    reused = behaviour == ("supervised_scratch", 0.5)
    return RunOutcome(out_dir / "run.json", reused=reused, record=None if reused else RECORD)


def failed_errors(out_dir: Path) -> list[str]:
    records = [json.loads(path.read_text()) for path in out_dir.rglob("*.json")]
    assert all(record["status"] == "failed" for record in records)
    return [record["error"] for record in records]


def test_the_grid_and_a_slurm_job_make_the_same_of_each_outcome(
    real_subset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(loop, "execute_run", fake_execute_run)
    suite = load_suite(str(write_suite(tmp_path / "s.toml")))
    requests = suite.requests(real_subset_root)
    assert [(r.method, r.fraction) for r in requests] == [
        ("supervised_scratch", 0.25), ("supervised_scratch", 0.5), ("simclr", 0.25),
        ("simclr", 0.5)]

    summary = run_grid(suite, real_subset_root, tmp_path / "grid", tmp_path / "cache")
    assert (summary.total, summary.succeeded, summary.skipped, summary.running_elsewhere,
            summary.failed) == (4, 1, 1, 1, 1)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "s: 4 runs, 0 already done, 4 to run"
    assert printed[1:] == [
        f"supervised_scratch planes f=0.25 s=0: macro F1 0.500 in 3s (run {'0' * 16}) "
        f"[1/4, ETA {printed[1].rsplit('ETA ', 1)[1]}",
        "running elsewhere (pid 1 on host h since 2024-01-01T00:00:00+00:00), skipped: "
        "simclr planes f=0.25 s=0",
        "FAILED simclr planes f=0.5 s=0: simulated crash",
    ]
    assert failed_errors(tmp_path / "grid") == ["RuntimeError: simulated crash"]

    statuses = run_group(requests, tmp_path / "slurm", tmp_path / "cache")
    held = str(LockedElsewhere(tmp_path / "slurm" / "held.json.lock", HOLDER))
    assert statuses == [
        RunStatus(requests[0], "ok"), RunStatus(requests[1], "done already"),
        RunStatus(requests[2], "running elsewhere", held),
        RunStatus(requests[3], "failed", "RuntimeError: simulated crash"),
    ]
    assert failed_errors(tmp_path / "slurm") == ["RuntimeError: simulated crash"]
    assert Counter(status.status for status in statuses) == {
        loop.OK: summary.succeeded, loop.DONE_ALREADY: summary.skipped,
        loop.RUNNING_ELSEWHERE: summary.running_elsewhere, loop.FAILED: summary.failed}
    assert set(loop.STATUSES) == {status.status for status in statuses}
