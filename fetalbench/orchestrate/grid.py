"""Run a suite's grid locally: resumable, with overall progress and ETA, failures recorded.

A run whose record exists with status ``ok`` (same spec hash) is skipped, so a killed grid picks
up where it stopped. A run that raises is written as a ``failed`` record with its error, and the
grid goes on; a failed run is tried again the next time the grid runs.

Several grids may share one results folder (several terminals, several hosts on one file
system): each run is taken under its lock (:mod:`fetalbench.storage.locks`), so a run is executed
by one process only; a grid that finds a run locked by a live process skips it and reports it as
running elsewhere, and takes over the lock of a process that died.

``workers=K`` runs K runs at once on this machine (:func:`run_in_workers`): K processes, each
taking whole pre-training groups (:func:`~fetalbench.methods.pretraining.stage_group`, as a Slurm
job does) from one queue, so two workers never wait on each other's pre-training stage; they
share the same locks as separate grids would, and on one GPU they share it. The CPU threads are
divided among them (:func:`worker_threads`).
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fetalbench.data.sources import DatasetSource, open_source
from fetalbench.methods.engine import show_progress_bars
from fetalbench.methods.execution import SINGLE_PROCESS, Execution, default_threads
from fetalbench.methods.pretraining import stage_group
from fetalbench.methods.progress import duration, time_left
from fetalbench.orchestrate.loop import (
    DONE_ALREADY,
    FAILED,
    OK,
    RUNNING_ELSEWHERE,
    Attempt,
    attempt_run,
)
from fetalbench.orchestrate.suites import Suite
from fetalbench.runs.records import read_record_status
from fetalbench.runs.spec import RunRequest, resolve_spec
from fetalbench.storage.locks import describe_holder


@dataclass(frozen=True)
class GridSummary:
    """What a grid call did."""

    total: int
    skipped: int
    succeeded: int
    failed: int
    running_elsewhere: int
    pretraining_runs: int
    pretraining_reused: int
    seconds: float


@dataclass(frozen=True)
class Finished:
    """What a grid learns of one run: its :data:`~fetalbench.orchestrate.loop.STATUSES` entry,
    the record this grid wrote (``ok``), the error's message (``failed``) or the lock holder
    (running elsewhere). Plain data, so a worker process can send it."""

    request: RunRequest
    status: str
    record: dict | None = None
    error: str = ""
    holder: dict | None = None


def worker_threads(workers: int, threads: int | None = None) -> int:
    """CPU threads of each of ``workers`` runs at once: ``threads`` when given, else the default
    (:func:`~fetalbench.methods.execution.default_threads`) divided among them, at least 1. On a
    CPU the default is 1 thread a run, so K workers use K cores and their records agree with
    those of one-thread grids; on a GPU machine they share its cores."""
    return threads if threads is not None else max(1, default_threads() // workers)


def run_grid(suite: Suite, data_root: Path | None, out_dir: Path, cache_root: Path,
             execution: Execution = SINGLE_PROCESS, quiet: bool = False,
             workers: int = 1) -> GridSummary:
    """Run every missing run of ``suite``, each with ``execution`` (its thread count), one at a
    time in order or ``workers`` at once (:func:`run_in_workers`); return what was done. Prints
    one line per finished run (and, on a terminal unless ``quiet``, an overall bar)."""
    requests = suite.requests(data_root)
    source = open_source(suite.dataset, data_root, cache_root)
    pending = [r for r in requests
               if read_record_status(resolve_spec(r, source).record_path(out_dir)) != OK]
    skipped = len(requests) - len(pending)
    show_progress_bars(False)
    counts: Counter[str] = Counter()
    pretrained = reused = 0
    started = time.perf_counter()
    # a bar on a terminal; in a log (CI, Slurm, nohup) the per-run lines carry the ETA instead
    progress = tqdm(total=len(pending), desc=f"grid {suite.name}", unit="run",
                    dynamic_ncols=True, disable=quiet or not sys.stderr.isatty())
    progress.write(f"{suite.name}: {len(requests)} runs, {skipped} already done, "
                   f"{len(pending)} to run" + (f", {workers} at once" if workers > 1 else ""))
    if workers > 1:
        finished = run_in_workers(pending, data_root, out_dir, cache_root, execution, workers,
                                  progress.write)
    else:
        finished = _run_in_order(pending, source, out_dir, cache_root, execution, progress)
    for done, run in enumerate(finished, start=1):
        request = run.request
        name = f"{request.method} {request.task} f={request.fraction:g} s={request.seed}"
        progress.update()
        counts[run.status] += 1
        if run.status == RUNNING_ELSEWHERE:
            progress.write(f"running elsewhere ({describe_holder(run.holder or {})}), "
                           f"skipped: {name}")
        elif run.status == FAILED:
            progress.write(f"FAILED {name}: {run.error}")
        elif run.status == OK:
            record = run.record
            progress.write(f"{name}: macro F1 {record['metrics']['macro_f1']:.3f} in "
                           f"{record['timings']['total_s']:.0f}s (run {record['spec_hash']}) "
                           f"[{done}/{len(pending)}, ETA "
                           f"{duration(time_left(started, done, len(pending)))}]")
            pretraining = record["method_notes"].get("pretraining")
            if pretraining is not None:
                pretrained += 1
                reused += bool(pretraining["reused"])
    progress.close()
    show_progress_bars(True)
    # done already: another process finished it since this grid started
    return GridSummary(total=len(requests), skipped=skipped + counts[DONE_ALREADY],
                       succeeded=counts[OK], failed=counts[FAILED],
                       running_elsewhere=counts[RUNNING_ELSEWHERE],
                       pretraining_runs=pretrained - reused, pretraining_reused=reused,
                       seconds=time.perf_counter() - started)


def _finished(attempt: Attempt) -> Finished:
    error = attempt.error
    if attempt.status == RUNNING_ELSEWHERE:
        return Finished(attempt.request, attempt.status, holder=getattr(error, "holder", {}))
    return Finished(attempt.request, attempt.status, attempt.record,
                    "" if error is None else str(error))


def _run_in_order(pending: list[RunRequest], source: DatasetSource, out_dir: Path, cache_root: Path,
                  execution: Execution, progress: tqdm) -> Iterator[Finished]:
    for request in pending:
        progress.set_postfix_str(f"{request.method} {request.task} f={request.fraction:g} "
                                 f"s={request.seed}")
        yield _finished(attempt_run(request, source, out_dir, cache_root, execution,
                                    log=lambda _: None, notice=progress.write))


def stage_groups(requests: list[RunRequest]) -> list[list[RunRequest]]:
    """``requests`` in groups that share a pre-training stage, in order of first appearance."""
    groups: dict[tuple, list[RunRequest]] = {}
    for request in requests:
        groups.setdefault(stage_group(request), []).append(request)
    return list(groups.values())


def run_in_workers(pending: list[RunRequest], data_root: Path | None, out_dir: Path,
                   cache_root: Path, execution: Execution, workers: int,
                   notice: Callable[[str], None]) -> Iterator[Finished]:
    """Run ``pending`` in ``workers`` spawned processes; yield each run as it finishes.

    The processes take whole :func:`stage_groups` from one queue, each run under its lock
    (:func:`~fetalbench.orchestrate.loop.attempt_run`). Spawned, not forked: a forked child of
    a process that has touched CUDA cannot use it. A worker that dies (killed, out of memory)
    leaves its unfinished runs to the next grid, which takes over their locks; they are yielded
    as failed here, and no record is written for them.
    """
    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    for group in stage_groups(pending):
        tasks.put(group)
    for _ in range(workers):
        tasks.put(None)
    processes = [context.Process(target=_worker, name=f"fetalbench-grid-worker-{k}",
                                 args=(tasks, results, data_root, out_dir, cache_root,
                                       execution))
                 for k in range(workers)]
    for process in processes:
        process.start()
    remaining = set(pending)
    try:
        while remaining:
            try:
                kind, payload = results.get(timeout=1.0)
            except queue.Empty:
                if any(process.is_alive() for process in processes):
                    continue
                break
            if kind == "notice":
                notice(payload)
                continue
            run = payload
            remaining.discard(run.request)
            yield run
        for request in remaining:
            yield Finished(request, FAILED, error="its grid worker exited before finishing it; "
                           "run the grid again")
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


def _worker(tasks, results, data_root: Path | None, out_dir: Path, cache_root: Path,
            execution: Execution) -> None:
    """One grid worker: runs the groups it takes from ``tasks`` until it takes None."""
    show_progress_bars(False)
    source = None
    while (group := tasks.get()) is not None:
        for request in group:
            source = source or open_source(request.dataset, data_root, cache_root)
            attempt = attempt_run(request, source, out_dir, cache_root, execution,
                                  log=lambda _: None,
                                  notice=lambda line: results.put(("notice", line)))
            results.put(("finished", _finished(attempt)))
