"""Scaling out: a grid on a real single-node Slurm through submitit; one run on two DDP processes.

The Slurm tests need Slurm installed (``scripts/start_local_slurm.sh`` installs and starts it, as
root on Debian); the fixture starts it when it is not running and stops what it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import write_suite
from fetalbench.cli import main
from fetalbench.errors import FetalbenchError
from fetalbench.methods.engine import batches
from fetalbench.methods.execution import Execution, launched_rank
from fetalbench.orchestrate.grid import run_grid
from fetalbench.orchestrate.slurm import SlurmOptions, group_requests
from fetalbench.orchestrate.suites import load_suite
from fetalbench.runs.execute import execute_run
from fetalbench.runs.spec import RunRequest

FETALBENCH = Path(sys.executable).with_name("fetalbench")
START_SLURM = Path(__file__).resolve().parents[1] / "scripts" / "start_local_slurm.sh"
SLURM_DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
SLURM_PID_FILES = (Path("/run/munge/munged.pid"), Path("/run/slurmctld.pid"),
                   Path("/run/slurmd.pid"))

SLURM_TABLE = {"partition": "debug", "cpus_per_task": 1, "time": 30}


def records_in(folder: Path) -> dict[str, str]:
    """Spec hash -> status of every record under ``folder`` (each spec once)."""
    found: dict[str, str] = {}
    for path in folder.rglob("*.json"):
        record = json.loads(path.read_text())
        assert record["spec_hash"] not in found
        found[record["spec_hash"]] = record["status"]
    return found


def keys_of(value: object) -> object:
    """The nested key structure of a JSON value (leaves become None)."""
    return {key: keys_of(item) for key, item in value.items()} if isinstance(value, dict) else None


def test_runs_are_grouped_by_pretraining_group(tmp_path: Path) -> None:
    suite_file = write_suite(tmp_path / "s.toml", seeds=[0, 1], protocols=["finetune", "linear"])
    requests = load_suite(str(suite_file)).requests(None)
    groups = group_requests(requests)
    assert len(groups) == 2 * 2  # methods x seeds (one task)
    assert sum(len(group) for group in groups) == len(requests) == 2 * 2 * 2 * 2
    for group in groups:
        assert len({(r.method, r.task, r.seed, r.pool) for r in group}) == 1
        assert {(r.fraction, r.protocol) for r in group} == {
            (f, p) for f in (0.25, 0.5) for p in ("finetune", "linear")}


def test_command_line_slurm_options_override_the_suite_table() -> None:
    table = SlurmOptions.from_table({"partition": "gpu", "time": 30, "mem": 8}, "suite s")
    merged = table.overridden_by(SlurmOptions(time=240, gpus_per_node=1))
    assert merged.executor_parameters() == {"slurm_partition": "gpu", "timeout_min": 240,
                                            "mem_gb": 8, "gpus_per_node": 1}
    assert SlurmOptions().executor_parameters() == {"timeout_min": 60}


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"queue": "gpu"}, "unknown [slurm] key(s) queue"),
        ({"time": "4h"}, "time must be a whole number >= 1"),
        ({"mem": 0}, "mem must be a whole number >= 1"),
        ({"partition": 3}, "partition must be a name"),
    ],
)
def test_bad_slurm_tables_are_refused(table: dict, expected: str) -> None:
    with pytest.raises(FetalbenchError, match=re.escape(expected)):
        SlurmOptions.from_table(table, "suite s")


def test_slurm_launcher_without_sbatch_says_what_to_do(tmp_path: Path, monkeypatch, capsys):
    suite_file = write_suite(tmp_path / "s.toml")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["grid", "--suite", str(suite_file), "--launcher", "slurm"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert "sbatch" in error and "--launcher local" in error


def test_slurm_options_need_the_slurm_launcher(capsys) -> None:
    assert main(["grid", "--suite", "smoke", "--time", "20", "--wait"]) == 2
    assert "--time --wait apply only to --launcher slurm" in capsys.readouterr().err


def test_ddp_batches_keep_the_global_batch() -> None:
    images = TensorDataset(torch.zeros(100, 1))
    assert batches(images, 32).batch_size == 32
    assert batches(images, 32, world_size=2).batch_size == 16
    assert batches(TensorDataset(torch.zeros(10, 1)), 32, world_size=2).batch_size == 5
    with pytest.raises(FetalbenchError, match="devices must be a whole number"):
        Execution(devices=0)
    assert Execution(2, 3, threads=1).as_record() == {"devices": 2, "num_nodes": 3,
                                                      "strategy": "ddp", "threads": 1}
    assert Execution().as_record() == {"devices": 1, "num_nodes": 1, "strategy": "auto",
                                       "threads": 1}


@pytest.mark.parametrize(
    ("variables", "rank"),
    [
        ({}, 0),
        ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, 1),
        ({"LOCAL_RANK": "1", "NODE_RANK": "1"}, 5),
        ({"NODE_RANK": "1"}, 4),
        ({"RANK": "3", "LOCAL_RANK": "1"}, 3),
        ({"SLURM_PROCID": "6"}, 6),
        ({"SLURM_PROCID": "0", "LOCAL_RANK": "1"}, 1),
    ],
)
def test_launched_rank_reads_the_launchers_variables(variables: dict, rank: int, monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert launched_rank(devices_per_node=4) == rank


def _alive(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _stop(pid: int) -> None:
    """SIGTERM one daemon this module started, and wait (30 s) until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def local_slurm() -> Iterator[None]:
    """A single-node Slurm on localhost, started by scripts/start_local_slurm.sh only if it is
    not running (the script waits until ``sinfo`` shows the node idle); the daemons started here
    are stopped by their pids afterwards."""
    if shutil.which("sbatch") is None or not all(map(os.path.exists, SLURM_DAEMONS)):
        pytest.skip("Slurm is not installed; run scripts/start_local_slurm.sh as root (Debian "
                    "packages slurmctld slurmd slurm-client munge)")
    running_before = {pid_file for pid_file in SLURM_PID_FILES if _alive(pid_file)}
    if len(running_before) < len(SLURM_PID_FILES) and os.geteuid() != 0:
        pytest.skip("Slurm is not running and starting it needs root")
    started = subprocess.run(["bash", str(START_SLURM)], capture_output=True, text=True,
                             timeout=300)
    if started.returncode:
        pytest.fail(f"{START_SLURM.name} failed: {started.stdout[-1000:]} {started.stderr[-2000:]}")
    ours = [pid for pid_file in SLURM_PID_FILES
            if pid_file not in running_before and (pid := _alive(pid_file))]
    yield
    for pid in reversed(ours):
        _stop(pid)


def test_slurm_grid_writes_the_records_of_a_local_grid(local_slurm, real_subset_root, tmp_path):
    suite_file = write_suite(tmp_path / "scale.toml", slurm=SLURM_TABLE)
    cache = tmp_path / "cache"
    env = {**os.environ, "FETALBENCH_CACHE": str(cache)}
    command = [str(FETALBENCH), "grid", "--suite", str(suite_file), "--data-root",
               str(real_subset_root), "--out", str(tmp_path / "slurm"), "--launcher", "slurm"]
    done = subprocess.run([*command, "--time", "20", "--wait"], env=env, capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 to run in 2 job(s)" in done.stdout and "job ids: " in done.stdout
    assert "4 ran, 0 failed" in done.stdout
    (script,) = (cache / "slurm" / "scale").glob("*_submission.sh")
    sbatch = script.read_text()
    for line in ("#SBATCH --time=20", "#SBATCH --partition=debug", "#SBATCH --cpus-per-task=1",
                 "#SBATCH --array=0-1", f"export FETALBENCH_CACHE={cache}",
                 str(Path(sys.executable).parent)):
        assert line in sbatch

    run_grid(load_suite(str(suite_file)), real_subset_root, tmp_path / "local", cache)
    slurm_records = records_in(tmp_path / "slurm")
    assert slurm_records == records_in(tmp_path / "local")
    assert list(slurm_records.values()) == ["ok"] * 4

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 already done, 0 to run in 0 job(s)" in again.stdout


def test_one_run_on_two_cpu_processes_with_ddp(real_subset_root: Path, tmp_path: Path) -> None:
    launcher_variables = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_PORT")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SLURM_") and name not in launcher_variables}
    env["FETALBENCH_CACHE"] = str(tmp_path / "cache-ddp")
    command = [str(FETALBENCH), "run", "--method", "simclr", "--task", "planes", "--dataset",
               "fetal_planes_db", "--data-root", str(real_subset_root), "--fraction", "0.5",
               "--profile", "smoke", "--devices", "2", "--out", str(tmp_path / "ddp")]
    # its own session, so that on a hang the rank Lightning started is killed with it
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the 2-process DDP run did not finish in 900 s")
    assert process.returncode == 0, stderr[-3000:]
    (path,) = (tmp_path / "ddp").rglob("*.json")  # only rank 0 writes
    ddp = json.loads(path.read_text())
    single = execute_run(
        RunRequest(method="simclr", task="planes", dataset="fetal_planes_db",
                   data_root=real_subset_root, fraction=0.5, profile="smoke"),
        tmp_path / "single", tmp_path / "cache-single",
    ).record

    assert ddp["status"] == "ok"
    assert ddp["execution"] == {"devices": 2, "num_nodes": 1, "strategy": "ddp", "threads": 1}
    assert single["execution"] == {"devices": 1, "num_nodes": 1, "strategy": "auto", "threads": 1}
    assert ddp["spec_hash"] == single["spec_hash"] and ddp["spec"] == single["spec"]
    assert set(ddp) == set(single)
    assert keys_of(ddp["metrics"]) == keys_of(single["metrics"])
    assert keys_of(ddp["method_notes"]) == keys_of(single["method_notes"])
    assert ddp["split"] == single["split"]
    assert ddp["method_notes"]["steps"] == single["method_notes"]["steps"]
    assert ddp["method_notes"]["pretraining"]["steps"] == single["method_notes"]["pretraining"][
        "steps"]
    assert isinstance(ddp["method_notes"]["best_step"], int)
    tested = sum(map(sum, ddp["metrics"]["confusion_matrix"]))
    assert tested == ddp["split"]["test"]  # rank 0 tested the whole test set
    assert len(list((tmp_path / "cache-ddp" / "pretrain").glob("*.safetensors"))) == 1
