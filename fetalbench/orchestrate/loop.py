"""The one way a grid runs its runs, locally (:mod:`~fetalbench.orchestrate.grid`) or in a Slurm
job (:mod:`~fetalbench.orchestrate.slurm`): each request is executed under its lock
(:func:`~fetalbench.runs.execute.execute_run`) and becomes an :class:`Attempt`.

A run whose lock a live process holds is *running elsewhere* and left to it; a run that raises
gets a ``failed`` record (:func:`write_failed_record`) and the loop goes on with the next; a run
whose ``ok`` record another process wrote since the loop started is *done already*. Callers say
what they print and count; the statuses are :data:`STATUSES`.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fetalbench.data.sources import DatasetSource
from fetalbench.errors import FetalbenchError
from fetalbench.methods.execution import Execution
from fetalbench.runs.execute import execute_run
from fetalbench.runs.records import new_record, read_record_status, write_record
from fetalbench.runs.spec import RunRequest, resolve_spec
from fetalbench.storage.locks import LockedElsewhere, lock_path, locked

OK = "ok"
DONE_ALREADY = "done already"
FAILED = "failed"
RUNNING_ELSEWHERE = "running elsewhere"
STATUSES = (OK, DONE_ALREADY, FAILED, RUNNING_ELSEWHERE)
"""What can become of a run in a loop: this process ran it, another had finished it, it raised,
or another process holds its lock."""


@dataclass(frozen=True)
class Attempt:
    """What became of one request: its status (one of :data:`STATUSES`), the record this
    process wrote (``ok``), or the exception (``failed``; :class:`LockedElsewhere` when running
    elsewhere)."""

    request: RunRequest
    status: str
    record: dict | None = None
    error: Exception | None = None


def attempt_run(
    request: RunRequest,
    source: DatasetSource,
    out_dir: Path,
    cache_root: Path,
    execution: Execution,
    log: Callable[[str], None] = print,
    notice: Callable[[str], None] | None = None,
) -> Attempt:
    """Execute ``request`` (on the opened ``source``, with ``execution``; ``log`` and
    ``notice`` as :func:`~fetalbench.runs.execute.execute_run` takes them) and say what became
    of it; an exception of the run is recorded, not raised."""
    try:
        outcome = execute_run(request, out_dir, cache_root, log=log, execution=execution,
                              notice=notice)
    except LockedElsewhere as busy:
        return Attempt(request, RUNNING_ELSEWHERE, error=busy)
    except Exception as error:
        write_failed_record(request, source, out_dir, error)
        return Attempt(request, FAILED, error=error)
    if outcome.reused:
        return Attempt(request, DONE_ALREADY)
    return Attempt(request, OK, record=outcome.record)


def write_failed_record(request: RunRequest, source: DatasetSource, out_dir: Path,
                        error: Exception) -> None:
    """A record that says the run failed and why (it never enters the leaderboard's numbers).

    Written under the run's lock, and only if no process has meanwhile written a successful
    record or holds the run now.
    """
    spec = resolve_spec(request, source)
    path = spec.record_path(out_dir)
    message = str(error) if isinstance(error, FetalbenchError) else (
        f"{type(error).__name__}: {error}")
    record = new_record(spec, status=FAILED, error=message,
                        traceback=traceback.format_exception(error)[-8:],
                        dataset=source.identity.as_record())
    with contextlib.suppress(LockedElsewhere), locked(lock_path(path)):
        if read_record_status(path) != OK:
            write_record(path, record)
