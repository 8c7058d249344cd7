"""Process pools for CPU-bound data work (PNG decoding, phantom rendering) inside a run.

Workers are forked: they start at once and need no ``if __name__ == "__main__"`` guard in a
user's script (``spawn`` and ``forkserver`` re-import the script's top level in every worker).
A forked worker would inherit the flocks of the run's locks; :mod:`fetalbench.storage.locks` closes
its copies of them in every forked child, so a lock still dies with its holder. And a worker
exits when its parent dies: each starts a thread that watches its parent's pid, so a killed
grid leaves no process behind (an orphan is re-parented, and its ``getppid`` changes).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

ORPHAN_CHECK_SECONDS = 0.25


def worker_pool(
    workers: int, initializer: Callable[[], None] | None = None
) -> ProcessPoolExecutor:
    """A pool of ``workers`` forked processes that exit when this one dies; ``initializer``
    runs in each worker after the parent watch has started."""
    return ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), _start_worker,
                               (os.getpid(), initializer))


def _start_worker(parent: int, initializer: Callable[[], None] | None) -> None:
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="parent-watch",
                     daemon=True).start()
    if initializer is not None:
        initializer()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)
