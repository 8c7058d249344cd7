"""Process pools for CPU-bound data work (PNG decoding, phantom rendering) inside a run.

Two rules make such a pool safe in a process that holds locks (:mod:`fetalbench.locks`):

* Workers are started by ``spawn``, never ``fork``. A forked worker inherits every open
  descriptor of its parent, the flock of the run's record lock included; if the parent is killed
  while the pool decodes, its orphaned workers keep the run locked, and a resumed grid skips the
  run as "running elsewhere" and ends without its record. (Forking a process that already runs
  torch's threads can also deadlock.)
* Workers exit when their parent dies: each starts a thread that waits on the parent's sentinel
  (:func:`multiprocessing.parent_process`), so a killed grid leaves no process behind.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


def worker_pool(
    workers: int, initializer: Callable[[], None] | None = None
) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that die with this one; ``initializer`` runs in
    each worker after the parent watch has started."""
    return ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), _start_worker,
                               (initializer,))


def _start_worker(initializer: Callable[[], None] | None) -> None:
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    if initializer is not None:
        initializer()


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    os._exit(1)
