"""The prepared GPU check (``scripts/gpu_check.sh OUT_DIR [--cpu]``): what a GPU session measures.

In one process, on the phantom: every registered method for a few steps at the ``paper`` profile
(:func:`~fetalbench.profiles.profile_shortened`); ``fetalbench bench`` at ``paper`` with the
device's peak memory; one pre-training stage and one fine-tuning run timed at ``paper`` and at
``gpu``, and from them the projected time of ``grid --suite paper`` and of the ``phantom`` suite
at the ``gpu`` profile (:func:`project`). Writes ``gpu_check.json`` and ``gpu_check.md``.

``--cpu`` runs a small version on the CPU (two methods, 32 px, a few steps), so CI runs the same
code; without it, a machine without CUDA is a one-line error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from fetalbench.devtools.bench import format_measurements, run_benchmarks
from fetalbench.errors import FetalbenchError
from fetalbench.methods import METHODS
from fetalbench.methods.engine import show_progress_bars
from fetalbench.methods.pretraining import stage_group
from fetalbench.orchestrate.suites import Suite, load_suite
from fetalbench.paths import cache_dir
from fetalbench.profiles import Profile, fixed_budgets, get_profile, profile_shortened
from fetalbench.runs.execute import execute_run
from fetalbench.runs.spec import RunRequest
from fetalbench.storage.atomic import write_bytes_atomic


@dataclass(frozen=True)
class Scale:
    """How big the check is: the methods run, their steps, the timed steps, bench's repeats."""

    methods: tuple[str, ...]
    method_changes: dict
    timed_pretrain_steps: int
    timed_downstream_steps: int
    bench_steps: int
    bench_repeats: int
    small: dict  # what the CPU version changes in every profile it runs (resolution, batches)


GPU_SCALE = Scale(methods=(), method_changes=fixed_budgets(3, 3),
                  timed_pretrain_steps=60, timed_downstream_steps=120, bench_steps=10,
                  bench_repeats=3, small={})
CPU_SCALE = Scale(methods=("supervised_imagenet", "simclr_imagenet"),
                  method_changes=fixed_budgets(2, 2),
                  timed_pretrain_steps=4, timed_downstream_steps=4, bench_steps=2,
                  bench_repeats=1, small={"resolution": 32, "batch_size": 8,
                                          "pretrain_batch_size": 8, "precision": "32-true"})
"""``--cpu``: the same code at 32 px, batches of 8 and fp32 (a CPU without AVX-512 has no native
bf16 convolution: about 10 times slower; tests/test_paper_path.py covers bf16), two methods, a
few steps."""


@dataclass(frozen=True)
class Timing:
    """Seconds a step of a pre-training stage and of fine-tuning take at a profile, and the
    seconds of a run that are not steps (data, validation, test, explanation)."""

    profile: str
    pretrain_step_s: float
    downstream_step_s: float
    run_fixed_s: float


def device_description(cpu: bool) -> dict:
    """The device the check runs on; a one-line error when a GPU is wanted and there is none."""
    if not cpu and not torch.cuda.is_available():
        raise FetalbenchError("no CUDA GPU is visible (torch.cuda.is_available() is False); run "
                              "on a GPU machine, or pass --cpu for the small CPU version")
    return {
        "cuda": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
    }


def _run(request: RunRequest, out: Path, cache: Path) -> dict:
    record = execute_run(request, out, cache, log=lambda _: None, checkpoint_dir=None).record
    if record is None:
        raise FetalbenchError(f"{out} already holds this run's record; use an empty OUT_DIR")
    return record


def check_methods(scale: Scale, out: Path, cache: Path) -> list[dict]:
    """Every method of ``scale`` (all registered when empty) for a few steps at ``paper``."""
    rows = []
    changes = {**scale.method_changes, **scale.small}
    with profile_shortened("paper", **changes):
        for name in scale.methods or tuple(METHODS.names()):
            started = time.perf_counter()
            try:
                record = _run(RunRequest(method=name, task="brain", profile="paper"), out, cache)
                rows.append({"method": name, "status": "ok", "timings": record["timings"],
                             "macro_f1": record["metrics"]["macro_f1"]})
            except Exception as error:  # the check reports every method, failed or not
                rows.append({"method": name, "status": "failed",
                             "error": f"{type(error).__name__}: {error}"[:500],
                             "seconds": round(time.perf_counter() - started, 1)})
    return rows


def time_profile(name: str, scale: Scale, out: Path, cache: Path) -> Timing:
    """A step of pre-training (SimCLR, ImageNet init) and of fine-tuning (supervised ImageNet)
    at profile ``name``, from a stage and a run of a few steps; the run's other seconds too."""
    with profile_shortened(name, **fixed_budgets(scale.timed_downstream_steps,
                                                 scale.timed_pretrain_steps), **scale.small):
        stage = _run(RunRequest(method="simclr_imagenet", task="brain", profile=name), out, cache)
        run = _run(RunRequest(method="supervised_imagenet", task="brain", profile=name), out,
                   cache)
    timings = run["timings"]
    pretraining = stage["method_notes"]["pretraining"]
    return Timing(name, pretraining["seconds"] / scale.timed_pretrain_steps,
                  timings["train_s"] / scale.timed_downstream_steps,
                  timings["data_s"] + timings["test_s"] + timings["explain_s"])


def project(suite: Suite, profile: Profile, timing: Timing) -> dict:
    """Hours of ``suite`` at ``profile``, one run at a time: its stages (one per pre-training
    group) at the measured seconds a step, and its runs at the measured seconds a step and
    the run's fixed seconds. Every stage is counted at its largest budget (the profile's
    ``max_steps``) and validations not at all: a rough bound, not a plan (docs/budgets.md gives
    each cell's steps). A fine-tuning run costs its steps and its fixed seconds; a run of another
    protocol (the linear evaluation fits on frozen features) costs its fixed seconds only."""
    requests = suite.requests(None)
    stages = len({stage_group(r) for r in requests if METHODS.get(r.method).pretrains})
    stage_s = stages * profile.pretrain_max_steps * timing.pretrain_step_s
    finetuned = sum(r.protocol == "finetune" for r in requests)
    runs_s = (finetuned * profile.finetune_max_steps * timing.downstream_step_s
              + len(requests) * timing.run_fixed_s)
    return {"suite": suite.name, "profile": profile.name, "runs": len(requests),
            "stages": stages, "stage_hours": round(stage_s / 3600, 2),
            "run_hours": round(runs_s / 3600, 2), "hours": round((stage_s + runs_s) / 3600, 2)}


def peak_memory_gib() -> float | None:
    """The device's peak allocated memory since the last reset, in GiB (None on the CPU)."""
    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def run_check(out_dir: Path, cpu: bool) -> dict:
    """The whole check; its result as the JSON it writes."""
    device = device_description(cpu)
    scale = CPU_SCALE if cpu else GPU_SCALE
    out_dir = Path(out_dir)
    cache, runs = cache_dir(), out_dir / "runs"
    show_progress_bars(False)
    started = time.perf_counter()
    methods = check_methods(scale, runs, cache)
    methods_s = time.perf_counter() - started
    bench_profile = replace(get_profile("paper"), **scale.small)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    bench = run_benchmarks(bench_profile, cache, steps=scale.bench_steps,
                           warmup=1 if cpu else 3, repeats=scale.bench_repeats)
    bench_memory = peak_memory_gib()
    timings = {name: time_profile(name, scale, runs, cache) for name in ("paper", "gpu")}
    result = {
        "mode": "cpu" if cpu else "gpu",
        "device": device,
        "methods": methods,
        "methods_failed": [row["method"] for row in methods if row["status"] != "ok"],
        "methods_seconds": round(methods_s, 1),
        "bench": {"profile": asdict(bench_profile), "peak_memory_gib": bench_memory,
                  "rows": [asdict(row) for row in bench],
                  "table": format_measurements(bench, bench_profile)},
        "timings": {name: asdict(timing) for name, timing in timings.items()},
        "projections": [project(load_suite("paper"), get_profile("paper"), timings["paper"]),
                        project(load_suite("phantom"), get_profile("gpu"), timings["gpu"])],
        "seconds": round(time.perf_counter() - started, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_dir / "gpu_check.json", (json.dumps(result, indent=2) + "\n").encode())
    write_bytes_atomic(out_dir / "gpu_check.md", summary_markdown(result).encode())
    return result


def summary_markdown(result: dict) -> str:
    """The check's result for a person: device, methods, bench table, timings, projections."""
    device = result["device"]
    lines = [f"# GPU check ({result['mode']} mode), {result['seconds']:.0f} s", "",
             f"Device: {device['device_name'] or 'CPU'}; torch {device['torch']}, CUDA "
             f"{device['cuda_version']}, {device['cpu_threads']} CPU threads.", "",
             f"Methods at the paper profile, a few steps: {len(result['methods'])} run, "
             f"failed: {', '.join(result['methods_failed']) or 'none'} "
             f"({result['methods_seconds']:.0f} s).", "",
             f"Bench (peak memory {result['bench']['peak_memory_gib']} GiB):", "", "```",
             result["bench"]["table"], "```", "", "Seconds a step, and a run's other seconds:",
             ""]
    for timing in result["timings"].values():
        lines.append(f"- {timing['profile']}: pre-training {timing['pretrain_step_s']:.4f} s, "
                     f"fine-tuning {timing['downstream_step_s']:.4f} s, fixed "
                     f"{timing['run_fixed_s']:.1f} s a run")
    lines += ["", "Projected, one run at a time:", ""]
    for row in result["projections"]:
        lines.append(f"- suite {row['suite']} at {row['profile']}: {row['runs']} runs, "
                     f"{row['stages']} stages: {row['hours']} h ({row['stage_hours']} h "
                     f"pre-training, {row['run_hours']} h runs)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--cpu", action="store_true", help="the small CPU version (CI)")
    args = parser.parse_args(argv)
    try:
        result = run_check(args.out_dir, args.cpu)
    except FetalbenchError as error:
        print(f"gpu_check: error: {error}", file=sys.stderr)
        return 2
    print(summary_markdown(result))
    return 1 if result["methods_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
