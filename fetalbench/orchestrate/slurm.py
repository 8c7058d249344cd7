"""Run a suite's grid on a Slurm cluster through submitit: one job per pre-training group.

**Job grouping.** A group is the runs that share a pre-training stage
(:func:`~fetalbench.methods.pretraining.stage_group`): one method, task, seed and unlabelled pool
(a suite fixes the dataset and profile); its runs differ only in label fraction and downstream
protocol. Each group is one Slurm job that runs the group's runs in order
(:func:`run_group`): the first trains the pre-training stage and caches it under
``FETALBENCH_CACHE``, the others reuse it, so a stage is trained once and no job waits for
another. A method without pre-training is grouped the same way (one job per method, task and
seed). All the jobs of one submission form one Slurm job array (submitit's
``Executor.map_array``; submitit docs, "Examples: Job arrays"), so the cluster schedules them
independently.

**Resuming.** Runs whose record exists with status ``ok`` are not submitted and groups with
nothing left are skipped, so submitting again after jobs died or hit their time limit submits
exactly what is missing. A job checks each record again when it starts (another grid may have
finished the run meanwhile) and runs under the run's lock (:mod:`fetalbench.storage.locks`), in
the local grid's loop (:func:`fetalbench.orchestrate.loop.attempt_run`); a run that raises is
written as a ``failed`` record and the job goes on.

**Files.** Records go to ``out_dir``, which every node must see (the shared results folder).
submitit's folder of pickled jobs and logs is ``<cache>/slurm/<suite>``, and the job gets
``FETALBENCH_CACHE`` set to the submitter's cache, so the cache must be on a file system the
nodes share too (``~/.cache/fetalbench`` usually is, in a cluster home folder). The jobs run
the submitter's Python (``sys.executable``), so install fetalbench where the nodes see it.

**Options.** A suite file's ``[slurm]`` table may set ``partition``, ``gpus_per_node``, ``time``
(minutes; default 60), ``mem`` (GB) and ``cpus_per_task``; the same options on the command line
override it. They become submitit's ``slurm_partition``, ``gpus_per_node``, ``timeout_min``,
``mem_gb`` and ``cpus_per_task`` (submitit docs, "AutoExecutor" parameters). Each run of a
job trains on one device; to train one run on several GPUs use ``fetalbench run --devices``.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import submitit
from submitit.core.utils import UncompletedJobError

from fetalbench.checks import check_count
from fetalbench.data.sources import open_source
from fetalbench.errors import FetalbenchError
from fetalbench.methods.engine import show_progress_bars
from fetalbench.methods.execution import Execution
from fetalbench.methods.pretraining import stage_group
from fetalbench.orchestrate.loop import DONE_ALREADY, FAILED, OK, RUNNING_ELSEWHERE, attempt_run
from fetalbench.orchestrate.suites import Suite
from fetalbench.runs.records import read_record_status
from fetalbench.runs.spec import RunRequest, resolve_spec

DEFAULT_TIME_MIN = 60
SLURM_FOLDER = "slurm"


@dataclass(frozen=True)
class SlurmOptions:
    """Resources asked of Slurm per job; None leaves the cluster's default (time: 60 min)."""

    partition: str | None = None
    gpus_per_node: int | None = None
    time: int | None = None
    mem: int | None = None
    cpus_per_task: int | None = None

    @classmethod
    def from_table(cls, table: dict, where: str) -> SlurmOptions:
        """The options of a suite's ``[slurm]`` table (``where`` names the suite in errors)."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(table) - set(names))
        if unknown:
            raise FetalbenchError(f"{where}: unknown [slurm] key(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(names)}")
        for name, value in table.items():
            if name == "partition":
                if not isinstance(value, str) or not value:
                    raise FetalbenchError(f"{where}: [slurm] partition must be a name, e.g. "
                                          f'partition = "gpu", not {value!r}')
            else:
                check_count(value, f"{where}: [slurm] {name}")
        return cls(**table)

    def overridden_by(self, other: SlurmOptions) -> SlurmOptions:
        """These options with every option that ``other`` sets taken from ``other``."""
        given = {name: value for name, value in dataclasses.asdict(other).items()
                 if value is not None}
        return dataclasses.replace(self, **given)

    def executor_parameters(self) -> dict:
        """The options as parameters of submitit's ``AutoExecutor.update_parameters``."""
        parameters = {
            "slurm_partition": self.partition,
            "gpus_per_node": self.gpus_per_node,
            "timeout_min": self.time or DEFAULT_TIME_MIN,
            "mem_gb": self.mem,
            "cpus_per_task": self.cpus_per_task,
        }
        return {name: value for name, value in parameters.items() if value is not None}


@dataclass(frozen=True)
class RunStatus:
    """What a job did with one run: ``ok``, ``failed``, ``done already`` or
    ``running elsewhere`` (another process holds the run's lock;
    :data:`~fetalbench.orchestrate.loop.STATUSES`), with the error as text, so that it pickles
    back from the job."""

    request: RunRequest
    status: str
    error: str | None = None


@dataclass(frozen=True)
class SlurmSubmission:
    """The jobs of one ``--launcher slurm`` call, one per group of runs (same order)."""

    suite: str
    total: int
    skipped: int
    groups: list[list[RunRequest]]
    jobs: list[submitit.Job]
    folder: Path


@dataclass(frozen=True)
class SlurmGridSummary:
    """What the jobs of a submission did, once they all finished."""

    succeeded: int
    failed: int
    done_already: int
    running_elsewhere: int
    failed_jobs: list[str]
    seconds: float


def group_requests(requests: list[RunRequest]) -> list[list[RunRequest]]:
    """``requests`` split into pre-training groups, each in the given order."""
    groups: dict[tuple, list[RunRequest]] = {}
    for request in requests:
        groups.setdefault(stage_group(request), []).append(request)
    return list(groups.values())


def run_group(requests: list[RunRequest], out_dir: Path, cache_root: Path,
              threads: int | None = None) -> list[RunStatus]:
    """Run one group's runs in order (the function every Slurm job calls), each with
    ``threads`` intra-op threads (None: the default of the node it runs on, decided there);
    what happened to each.

    A run whose record is ``ok`` by now is left alone; one that raises gets a ``failed`` record
    and the group goes on.
    """
    show_progress_bars(False)
    execution = Execution() if threads is None else Execution(threads=threads)
    source = open_source(requests[0].dataset, requests[0].data_root, cache_root)
    statuses = []
    for request in requests:
        name = (f"{request.method} {request.task} {request.protocol} f={request.fraction:g} "
                f"s={request.seed}")
        attempt = attempt_run(request, source, out_dir, cache_root, execution)
        error = None
        if attempt.status == RUNNING_ELSEWHERE:
            error = str(attempt.error)
            print(f"running elsewhere, skipped: {name}: {error}", flush=True)
        elif attempt.status == FAILED:
            error = f"{type(attempt.error).__name__}: {attempt.error}"
            print(f"FAILED {name}: {attempt.error}", flush=True)
        statuses.append(RunStatus(request, attempt.status, error))
    return statuses


def submit_grid(
    suite: Suite,
    data_root: Path | None,
    out_dir: Path,
    cache_root: Path,
    options: SlurmOptions,
    threads: int | None = None,
) -> SlurmSubmission:
    """Submit one Slurm job per pre-training group with runs left to do; returns at once.

    ``options`` are the command line's; they override the suite's ``[slurm]`` table. ``threads``
    is each run's intra-op thread count (None: each node's default).
    """
    if shutil.which("sbatch") is None:
        raise FetalbenchError(
            "--launcher slurm needs Slurm's sbatch, which is not on PATH; run on a cluster login "
            "node, install the Slurm client (Debian: apt-get install slurm-client), or use "
            "--launcher local"
        )
    options = SlurmOptions.from_table(suite.slurm, f"suite {suite.name}").overridden_by(options)
    out_dir, cache_root = Path(out_dir).absolute(), Path(cache_root).absolute()
    data_root = None if data_root is None else Path(data_root).absolute()
    requests = suite.requests(data_root)
    source = open_source(suite.dataset, data_root, cache_root)
    pending = [r for r in requests
               if read_record_status(resolve_spec(r, source).record_path(out_dir)) != OK]
    groups = group_requests(pending)
    folder = cache_root / SLURM_FOLDER / suite.name
    jobs: list[submitit.Job] = []
    if groups:
        # the jobs run this very interpreter, so they import this fetalbench and its packages
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                         slurm_python=shlex.quote(sys.executable))
        executor.update_parameters(
            name=f"fetalbench-{suite.name}",
            slurm_setup=[f"export FETALBENCH_CACHE={shlex.quote(str(cache_root))}"],
            **options.executor_parameters(),
        )
        jobs = executor.map_array(run_group, groups, [out_dir] * len(groups),
                                  [cache_root] * len(groups), [threads] * len(groups))
    return SlurmSubmission(suite=suite.name, total=len(requests),
                           skipped=len(requests) - len(pending), groups=groups, jobs=jobs,
                           folder=folder)


def wait_for_jobs(submission: SlurmSubmission) -> SlurmGridSummary:
    """Block until every job of ``submission`` has finished; count what happened to the runs.

    A job that died as a whole (killed, out of time, failed to start) counts all its runs as
    failed and is named in ``failed_jobs`` with the first line of its error; its log is in
    ``submission.folder``.
    """
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    failed_jobs = []
    for job, group in zip(submission.jobs, submission.groups, strict=True):
        try:
            statuses = job.result()
        except UncompletedJobError as error:
            counts[FAILED] += len(group)
            first_line = next((line for line in str(error).splitlines() if line.strip()), "")
            failed_jobs.append(f"{job.job_id}: {first_line}")
            continue
        counts.update(status.status for status in statuses)
    return SlurmGridSummary(succeeded=counts[OK], failed=counts[FAILED],
                            done_already=counts[DONE_ALREADY],
                            running_elsewhere=counts[RUNNING_ELSEWHERE],
                            failed_jobs=failed_jobs, seconds=time.perf_counter() - started)
