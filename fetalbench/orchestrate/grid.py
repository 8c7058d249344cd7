"""Run a suite's grid locally: resumable, with overall progress and ETA, failures recorded.

A run whose record exists with status ``ok`` (same spec hash) is skipped, so a killed grid picks
up where it stopped. A run that raises is written as a ``failed`` record with its error, and the
grid goes on; a failed run is tried again the next time the grid runs.

Several grids may share one results folder (several terminals, several hosts on one file
system): each run is taken under its lock (:mod:`fetalbench.storage.locks`), so a run is executed
by one process only; a grid that finds a run locked by a live process skips it and reports it as
running elsewhere, and takes over the lock of a process that died.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fetalbench.data.sources import open_source
from fetalbench.methods.engine import show_progress_bars
from fetalbench.methods.execution import SINGLE_PROCESS, Execution
from fetalbench.methods.progress import duration, time_left
from fetalbench.orchestrate.loop import DONE_ALREADY, FAILED, OK, RUNNING_ELSEWHERE, attempt_run
from fetalbench.orchestrate.suites import Suite
from fetalbench.runs.records import read_record_status
from fetalbench.runs.spec import resolve_spec
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


def run_grid(suite: Suite, data_root: Path | None, out_dir: Path, cache_root: Path,
             execution: Execution = SINGLE_PROCESS, quiet: bool = False) -> GridSummary:
    """Run every missing run of ``suite`` in order, each with ``execution`` (its thread count);
    return what was done. Prints one line per finished run (and, on a terminal unless
    ``quiet``, an overall bar)."""
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
    progress = tqdm(pending, desc=f"grid {suite.name}", unit="run", dynamic_ncols=True,
                    disable=quiet or not sys.stderr.isatty())
    progress.write(f"{suite.name}: {len(requests)} runs, {skipped} already done, "
                   f"{len(pending)} to run")
    for done, request in enumerate(progress, start=1):
        name = f"{request.method} {request.task} f={request.fraction:g} s={request.seed}"
        progress.set_postfix_str(name)
        attempt = attempt_run(request, source, out_dir, cache_root, execution,
                              log=lambda _: None, notice=progress.write)
        counts[attempt.status] += 1
        if attempt.status == RUNNING_ELSEWHERE:
            progress.write(f"running elsewhere ({describe_holder(attempt.error.holder)}), "
                           f"skipped: {name}")
        elif attempt.status == FAILED:
            progress.write(f"FAILED {name}: {attempt.error}")
        elif attempt.status == OK:
            record = attempt.record
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
