"""``fetalbench reproduce``: rerun recorded runs under their recorded conditions; compare metrics.

What a record is reproducible from, and where the record keeps it:

- the spec (method, task, dataset and its fingerprint, fraction, seed, protocol, pool, profile,
  validation setting):
  ``spec``, checked against ``spec_hash``;
- the code: ``git.revision`` (and ``git.dirty``, false for committed records);
- the intra-op CPU thread count: ``execution.threads`` (older records: ``hardware.torch_threads``).
  On a CPU, 1 and 2 threads give other numbers for one spec (a convolution's backward sums in
  another order), so a run fixes its thread count and the reproduction uses the recorded one;
- the device and, on the CPU, the instruction set torch's kernels dispatch to:
  ``hardware.cuda`` and ``hardware.cpu_capability``;
- the versions of the packages that compute: ``versions``.

A reproduction trains every stage again in a scratch cache: pre-training stages and checkpoints
are not reused, while the phantom and decoded images (checked by their fingerprints) are shared
with the user's cache. On the same kind of machine, at the same revision and versions, every metric
is expected identical; a condition that differs is listed beside the differences it may explain.

On another kind of CPU (another ``cpu_capability``, or a GPU on one side) the kernels round
otherwise and a rerun is one more draw of training noise, as another thread count is: there the
headline metrics must agree within :data:`OTHER_CPU_KIND_TOLERANCE`, the largest macro F1
difference measured between 1 and 2 threads (``docs/reproducibility.md``), and every other
difference is reported, not failed. CI reruns a seeded sample of cheap committed records
(:func:`sample_cheap_records`) this way, so the committed leaderboard is shown on every change to
come from the code.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fetalbench.data.sources import DATASETS
from fetalbench.errors import FetalbenchError
from fetalbench.profiles import PROFILES, Profile
from fetalbench.runs.records import (
    git_revision,
    hardware,
    package_versions,
    read_ok_record,
    records_under,
)
from fetalbench.runs.spec import spec_hash

OTHER_CPU_KIND_TOLERANCE = 0.162
"""How far a headline metric may move on another kind of CPU: the largest macro F1 difference
between 1 and 2 intra-op threads over 9 runs (mean 0.040; docs/reproducibility.md)."""
HEADLINE = ("macro_f1", "accuracy", "balanced_accuracy")

REBUILT_IN_SCRATCH = ("pretrain", "checkpoints")
"""Cache folders a reproduction must not reuse: what training made. Everything else in the cache
(phantom, decoded images) is derived from the data alone and verified by fingerprint."""


@dataclass(frozen=True)
class MetricDifference:
    """One metric of a record and of its reproduction (NaN where one side lacks it)."""

    name: str
    recorded: float
    reproduced: float

    @property
    def difference(self) -> float:
        """``reproduced - recorded``; infinite when only one side has the metric."""
        if math.isnan(self.recorded) != math.isnan(self.reproduced):
            return math.inf
        if math.isnan(self.recorded):
            return 0.0
        return self.reproduced - self.recorded


@dataclass(frozen=True)
class Reproduction:
    """A record rerun: every metric side by side, and the conditions that differed."""

    record_path: Path
    metrics: tuple[MetricDifference, ...]
    changed_conditions: tuple[str, ...]
    same_kind: bool
    """Whether the rerun ran on the kind of machine that made the record (CPU instruction set,
    GPU): only then is every metric expected identical."""

    def largest_difference(self) -> float:
        """The largest absolute difference over all metrics."""
        return max((abs(m.difference) for m in self.metrics), default=0.0)

    def differing(self, tolerance: float = 0.0) -> list[MetricDifference]:
        """The metrics whose absolute difference exceeds ``tolerance``."""
        return [m for m in self.metrics if abs(m.difference) > tolerance]

    def failing(self, tolerance: float = 0.0) -> list[MetricDifference]:
        """The differences that fail the reproduction: on the same kind of machine every metric
        beyond ``tolerance``; on another, the headline metrics beyond
        :data:`OTHER_CPU_KIND_TOLERANCE` (or ``tolerance``, when larger)."""
        if self.same_kind:
            return self.differing(tolerance)
        return [m for m in self.differing(max(tolerance, OTHER_CPU_KIND_TOLERANCE))
                if m.name in HEADLINE]


def flatten_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Every number of a record's ``metrics``, keyed by a dotted path (``sensitivity.TT``,
    ``confusion_matrix.1.2``); None becomes NaN."""
    flat: dict[str, float] = {}
    items = metrics.items() if isinstance(metrics, dict) else enumerate(metrics)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, dict | list):
            flat.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, bool) or not isinstance(value, int | float | type(None)):
            continue
        else:
            flat[name] = math.nan if value is None else float(value)
    return flat


def compare_metrics(recorded: dict, reproduced: dict) -> tuple[MetricDifference, ...]:
    """Every recorded metric against the rerun's, in a stable order (one the rerun lacks reads
    NaN and differs; one only the rerun has, as ``metrics.per_machine`` beside a schema-1
    record, has nothing to be compared with and is left out)."""
    old, new = flatten_metrics(recorded), flatten_metrics(reproduced)
    return tuple(MetricDifference(name, value, new.get(name, math.nan))
                 for name, value in sorted(old.items()))


def recorded_threads(record: dict) -> int:
    """The intra-op thread count the record ran with."""
    threads = record.get("execution", {}).get("threads") or record["hardware"]["torch_threads"]
    return int(threads)


def same_machine_kind(record: dict) -> bool:
    """Whether this machine is of the kind that made ``record``: the same GPU (or none) and the
    same CPU instruction set (a record without ``cpu_capability`` counts as another kind)."""
    recorded, here = record.get("hardware", {}), hardware()
    return (recorded.get("cuda") == here["cuda"]
            and recorded.get("cpu_capability") == here["cpu_capability"])


def stage_seconds(records: list[dict]) -> dict[str, float]:
    """How long each pre-training stage took, by checkpoint, from the records that trained it
    (a record that reused a stage names its checkpoint only)."""
    trained = {}
    for record in records:
        pretraining = (record.get("method_notes") or {}).get("pretraining") or {}
        if pretraining and not pretraining.get("reused"):
            trained[pretraining["checkpoint"]] = pretraining["seconds"]
    return trained


def reproduction_seconds(record: dict, stages: dict[str, float]) -> float:
    """What rerunning ``record`` costs: the run's own seconds, plus, for a record that reused a
    pre-training stage, that stage's seconds from ``stages`` (:func:`stage_seconds`), since a
    reproduction trains it again; unbounded when no record among them trained it."""
    seconds = record.get("timings", {}).get("total_s", math.inf)
    pretraining = (record.get("method_notes") or {}).get("pretraining") or {}
    if pretraining.get("reused"):
        seconds += stages.get(pretraining.get("checkpoint"), math.inf)
    return seconds


def sample_cheap_records(paths: list[Path], count: int, seed: int,
                         max_seconds: float) -> list[Path]:
    """A seeded random sample of ``count`` reproducible records among ``paths`` (files or
    folders) whose rerun costs at most ``max_seconds`` (:func:`reproduction_seconds`), in file
    order."""
    reproducible = {}
    for path in records_under(paths):
        try:
            reproducible[path] = read_reproducible_record(path)
        except FetalbenchError:
            continue
    stages = stage_seconds(list(reproducible.values()))
    cheap = [path for path, record in reproducible.items()
             if reproduction_seconds(record, stages) <= max_seconds]
    if len(cheap) < count:
        raise FetalbenchError(f"only {len(cheap)} reproducible record(s) rerun in at most "
                              f"{max_seconds:g} s; raise --max-seconds or lower --sample")
    chosen = set(random.Random(seed).sample(cheap, count))
    return [path for path in cheap if path in chosen]


def changed_conditions(record: dict) -> tuple[str, ...]:
    """The recorded conditions this process does not share (revision, device, CPU, versions)."""
    here_git, here_hardware, here_versions = git_revision(), hardware(), package_versions()
    changes = []
    recorded_git = record.get("git", {})
    if recorded_git.get("revision") != here_git["revision"]:
        changes.append(f"revision {recorded_git.get('revision')} -> {here_git['revision']}")
    if here_git["dirty"]:
        changes.append("the work tree has uncommitted changes")
    for key in ("cuda", "cpu_capability", "cpu_model"):
        before = record.get("hardware", {}).get(key)
        if key in record.get("hardware", {}) and before != here_hardware[key]:
            changes.append(f"{key} {before} -> {here_hardware[key]}")
    for package, version in record.get("versions", {}).items():
        if package != "fetalbench" and here_versions.get(package) != version:
            changes.append(f"{package} {version} -> {here_versions.get(package)}")
    return tuple(changes)


def read_reproducible_record(path: Path) -> dict:
    """The record at ``path``, checked to be a single-process ``ok`` run of a known profile."""
    record = read_ok_record(path)
    if spec_hash(record["spec"]) != record.get("spec_hash"):
        raise FetalbenchError(f"{path}: its spec does not hash to its spec_hash (edited?); run "
                              "`fetalbench validate` on it")
    profile = Profile(**record["spec"]["profile"])
    if PROFILES.get(profile.name) != profile:
        raise FetalbenchError(
            f"{path}: its profile {profile.name!r} is not this version's {profile.name!r} "
            f"profile; check out revision {record.get('git', {}).get('revision')} to reproduce it"
        )
    execution = record.get("execution", {})
    if execution.get("devices", 1) * execution.get("num_nodes", 1) != 1:
        raise FetalbenchError(
            f"{path} trained on {execution['devices']} device(s) x {execution['num_nodes']} "
            "node(s); reproduce reruns single-process runs: rerun its command with --devices "
            "and --num-nodes instead"
        )
    return record


def scratch_cache(cache_root: Path, scratch: Path) -> Path:
    """A cache under ``scratch`` sharing every folder of ``cache_root`` but
    :data:`REBUILT_IN_SCRATCH`, by symbolic links."""
    cache = scratch / "cache"
    cache.mkdir(parents=True)
    if Path(cache_root).is_dir():
        for entry in Path(cache_root).iterdir():
            if entry.is_dir() and entry.name not in REBUILT_IN_SCRATCH:
                (cache / entry.name).symlink_to(entry.absolute(), target_is_directory=True)
    return cache


def reproduce_record(
    path: Path, cache_root: Path, data_root: Path | None = None,
    log: Callable[[str], None] = print,
) -> Reproduction:
    """Rerun the record at ``path`` with its spec and thread count in a scratch folder and
    compare every metric with the recorded one."""
    from fetalbench.methods.execution import Execution
    from fetalbench.runs.execute import execute_run
    from fetalbench.runs.spec import RunRequest

    record = read_reproducible_record(path)
    spec = record["spec"]
    needs_root = DATASETS.get(spec["dataset"]).needs_data_root
    if needs_root and data_root is None:
        raise FetalbenchError(f"{path} was made on {spec['dataset']}; pass its folder with "
                              "--data-root")
    request = RunRequest(
        method=spec["method"], task=spec["task"], dataset=spec["dataset"],
        data_root=data_root if needs_root else None,
        fraction=spec["fraction"], seed=spec["seed"], protocol=spec["protocol"],
        pool=spec["pool"], profile=spec["profile"]["name"], validation=spec["validation"],
    )
    execution = Execution(threads=recorded_threads(record))
    with tempfile.TemporaryDirectory(prefix="fetalbench-reproduce-") as folder:
        scratch = Path(folder)
        outcome = execute_run(request, scratch / "out", scratch_cache(cache_root, scratch),
                              log=log, force=True, checkpoint_dir=None, execution=execution)
    if outcome.record["spec_hash"] != record["spec_hash"]:
        raise FetalbenchError(
            f"{path}: this version resolves its request to spec {outcome.record['spec_hash']}, "
            f"not {record['spec_hash']} (the dataset differs?); nothing to compare"
        )
    return Reproduction(Path(path), compare_metrics(record["metrics"], outcome.record["metrics"]),
                        changed_conditions(record), same_machine_kind(record))


def format_reproduction(reproduction: Reproduction, tolerance: float = 0.0) -> str:
    """The headline metrics, every metric that differs, the conditions that changed, and what
    fails (:meth:`Reproduction.failing`)."""
    lines = [f"{reproduction.record_path}:"]
    by_name = {m.name: m for m in reproduction.metrics}
    shown = [by_name[name] for name in HEADLINE if name in by_name]
    shown += [m for m in reproduction.differing(tolerance) if m.name not in HEADLINE]
    for metric in shown:
        lines.append(f"  {metric.name:40s} recorded {metric.recorded:.6g}  reproduced "
                     f"{metric.reproduced:.6g}  difference {metric.difference:+.3g}")
    differing = len(reproduction.differing(tolerance))
    lines.append(f"  {len(reproduction.metrics) - differing} of {len(reproduction.metrics)} "
                 f"metrics identical{'' if tolerance == 0 else f' within {tolerance:g}'}, "
                 f"largest difference {reproduction.largest_difference():.3g}")
    for change in reproduction.changed_conditions:
        lines.append(f"  condition differs: {change}")
    if not reproduction.same_kind:
        lines.append(f"  another kind of machine: only {', '.join(HEADLINE)} must agree, within "
                     f"{max(tolerance, OTHER_CPU_KIND_TOLERANCE):g}")
    failing = reproduction.failing(tolerance)
    lines.append(f"  {'FAILS: ' + ', '.join(m.name for m in failing) if failing else 'passes'}")
    return "\n".join(lines)
