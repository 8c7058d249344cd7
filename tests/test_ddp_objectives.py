"""Objectives with momentum encoders, queues or parameters frozen for part of training train
under DDP: two gloo processes on the CPU, 3 steps each, no hang, finite losses, ranks in step.

A hang (DDP waiting for a gradient that never comes, a collective one rank skips) fails the test
at the timeout instead of blocking the suite; the subprocess runs in its own session, so the
rank Lightning started is killed with it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ddp_objectives import OBJECTIVES, PROFILE

SCRIPT = Path(__file__).with_name("ddp_objectives.py")
TIMEOUT = 300
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_PORT",
                      "MASTER_ADDR")


def test_objectives_train_on_two_ddp_processes(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("SLURM_") and name not in LAUNCHER_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"DDP pre-training did not finish in {TIMEOUT} s (a hang):\n{stderr[-3000:]}")
    print(f"two-process DDP pre-training of {len(OBJECTIVES)} objectives: "
          f"{time.monotonic() - started:.0f} s")
    assert process.returncode == 0, stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    for name in OBJECTIVES:
        first, second = (rank[name] for rank in ranks)
        assert first["world_size"] == second["world_size"] == 2
        for result in (first, second):
            assert len(result["losses"]) == PROFILE.pretrain_max_steps, name
            assert all(math.isfinite(loss) for loss in result["losses"]), name
        # the gradients of every trainable parameter were reduced: both ranks took the same steps
        assert first["checksum"] == pytest.approx(second["checksum"], rel=1e-6), name
