"""Forked children neither keep their parent's locks nor outlive it (a resumed grid needs both)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fetalbench.storage.locks import LockedElsewhere, acquire

PARENT = textwrap.dedent("""
    import os, sys, time
    from fetalbench.storage.locks import acquire
    from fetalbench.data.worker_pool import worker_pool

    def pid_after(seconds):
        time.sleep(seconds)
        return os.getpid()

    if __name__ == "__main__":
        lock = acquire(sys.argv[1])  # as a run holds its record lock while the cache decodes
        pool = worker_pool(2)
        pids = set()
        while len(pids) < 2:  # both workers booted and took a job
            pids |= {future.result() for future in [pool.submit(pid_after, 2) for _ in range(2)]}
        for _ in range(2):
            pool.submit(time.sleep, 120)
        print(*pids, flush=True)
        time.sleep(120)
""")


FORKING_HOLDER = textwrap.dedent("""
    import os, sys, time
    from fetalbench.storage.locks import acquire

    lock = acquire(sys.argv[1])
    child = os.fork()
    if child == 0:  # a child that outlives its parent, as a stuck worker would
        time.sleep(120)
        os._exit(0)
    print(child, flush=True)
    time.sleep(120)
""")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for a reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def test_a_killed_parent_leaves_no_worker_and_no_held_lock(tmp_path: Path) -> None:
    script, lock_file = tmp_path / "parent.py", tmp_path / "record.json.lock"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(lock_file)],
                              stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2 and all(map(running, workers))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        deadline = time.monotonic() + 20
        while any(map(running, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(running, workers)), "workers outlived their killed parent"
        try:
            acquire(lock_file).release()
        except LockedElsewhere:
            raise AssertionError("a worker still holds the lock its parent held") from None
    finally:  # a failing run leaves no sleeper behind
        for pid in filter(running, workers):
            os.kill(pid, signal.SIGKILL)


def test_a_forked_child_does_not_keep_its_killed_parents_lock(tmp_path: Path) -> None:
    lock_file = tmp_path / "record.json.lock"
    parent = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, str(lock_file)],
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        with pytest.raises(LockedElsewhere):  # held while its holder lives
            acquire(lock_file)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert running(child)
        acquire(lock_file).release()
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_script_without_a_main_guard_can_decode_in_a_pool(tmp_path: Path) -> None:
    """``spawn`` would re-run this script's top level in every worker and break the pool."""
    script = tmp_path / "unguarded.py"
    script.write_text("from fetalbench.data.worker_pool import worker_pool\n"
                      "with worker_pool(2) as pool:\n"
                      "    print(sum(pool.map(abs, range(-50, 50))))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2500"]
