"""Run records: the format of the one JSON file each run leaves, written atomically.

A record holds the fully resolved spec and its hash, the version of the method's code (a
successful run's ``code_version``: :mod:`fetalbench.runs.code_version`), the dataset's identity
(synthetic or real), whether each training stage learned (``learning``:
:mod:`fetalbench.runs.learning`), test metrics (overall and per ultrasound machine), every test
image's label, prediction and patient, validation-based model selection, split sizes
(``split.validation``: the labelled images model selection used), timings, package versions,
hardware and git revision. The spec hash names the
file, so a grid can skip a run whose record exists.

Records are portable: they name files in the cache relative to the cache root
(:func:`fetalbench.paths.cache_relative`), the dataset by name and fingerprint (not by folder), and
the process that ran them by pid, not host. This module imports no torch, so the commands that only
read records (``validate``, ``leaderboard``) start fast.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from fetalbench.data.tasks import TASKS
from fetalbench.errors import FetalbenchError
from fetalbench.methods import METHODS
from fetalbench.runs.spec import RunSpec
from fetalbench.storage.atomic import write_bytes_atomic

SCHEMA_VERSION = 4
"""4: records keep each test image's patient (``test_predictions.patients``), so the report
resamples patients rather than images, and the method's ``code_version``; a spec's label budget
may be patients per class (``spec.patients_per_class``, with ``spec.fraction`` null);
``--protocol linear`` is the linear evaluation of a frozen encoder (no longer a frozen-backbone
head fine-tune); records name the split's checksum (``split.checksum``) and their encoder's
weights and preprocessing (``encoder``). 3: records keep ``learning``, whether each stage learned
(:mod:`fetalbench.runs.learning`), and their budgets are sized to the data
(:mod:`fetalbench.profiles`). A fine-tuning record of schema 3 is still read where a committed
test manifest gives its test images' patients (:mod:`fetalbench.data.test_manifests`); its code
version is then its git revision. A record of an older schema was trained under fixed step
budgets that let no curve rise and has no learning checks: it cannot be migrated, only rerun."""
READABLE_SCHEMAS = (3, SCHEMA_VERSION)
"""The schemas ``validate`` and the leaderboard accept."""
PACKAGES = ("fetalbench", "torch", "torchvision", "timm", "lightly", "pytorch-lightning",
            "numpy", "pandas", "scikit-learn", "scipy")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; None where it cannot be read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), None)


def hardware() -> dict:
    """The machine a run ran on: what its numbers can depend on besides the spec and the code.

    ``cpu_capability`` is the instruction set torch's CPU kernels dispatch to (``AVX512``,
    ``AVX2``, ...): two CPUs of one capability run the same kernels; another capability may
    round differently.
    """
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@functools.cache
def git_revision() -> dict:
    """The git commit of the fetalbench source, and whether the work tree had changes.

    Asked once per process, when its first run starts (the runner calls it before training), so
    a long grid keeps reporting the code it actually runs even if commits land meanwhile.
    """
    source = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=source, capture_output=True, text=True,
                                  timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if revision else None
    return {"revision": revision, "dirty": bool(status) if status is not None else None}


def record_files(results_dir: Path) -> list[Path]:
    """Every ``*.json`` under ``results_dir``, sorted, skipping hidden files and folders."""
    root = Path(results_dir)
    return sorted(
        path for path in root.rglob("*.json")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def records_under(paths: Sequence[Path]) -> list[Path]:
    """The record files ``paths`` name: a file itself, a folder every record under it."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += record_files(path)
        elif path.is_file():
            files.append(path)
        else:
            raise FetalbenchError(f"{path} does not exist; pass record files or folders of them "
                                  "(default results/)")
    return files


def read_record_status(path: Path) -> str | None:
    """The ``status`` of the record at ``path``; None when it is absent or unreadable."""
    try:
        return json.loads(Path(path).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def write_record(path: Path, record: dict) -> None:
    """Write ``record`` as JSON atomically at ``path``."""
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode())


def new_record(spec: RunSpec, **sections: object) -> dict:
    """A record of ``spec`` with the environment filled in and ``sections`` added.

    ``executor`` names the process that ran it (its pid; not the host, which records do not
    carry), so a grid shared by several processes can show that each run was executed once.
    """
    return {
        "schema": SCHEMA_VERSION,
        "spec": spec.to_dict(),
        "spec_hash": spec.hash(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "hardware": hardware(),
        "git": git_revision(),
        "executor": {"pid": os.getpid()},
        **sections,
    }


def read_ok_record(path: Path) -> dict:
    """The successful run record at ``path``, parsed (one-line errors otherwise): what
    ``fetalbench explain`` and ``fetalbench reproduce`` read."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FetalbenchError(
            f"cannot read run record {path} ({type(error).__name__}); pass the path of a "
            f"record written by `fetalbench run`"
        ) from None
    if not isinstance(record, dict) or "spec" not in record:
        raise FetalbenchError(f"{path} is not a run record; pass one written by `fetalbench run`")
    if record.get("status") != "ok":
        raise FetalbenchError(f"run record {path} is of a failed run; rerun it first")
    return record


def find_record(
    results: Path, method: str, task: str, fraction: float | None = None, seed: int | None = None,
    protocol: str | None = None,
) -> Path:
    """The one successful record of ``method`` on ``task`` under ``results`` that matches (a
    fine-tuning run and a linear evaluation of one cell differ only by ``protocol``)."""
    METHODS.get(method)
    TASKS.get(task)
    results = Path(results)
    if not results.is_dir():
        raise FetalbenchError(f"results folder {results} does not exist; pass --results DIR")
    matches = []
    for path in sorted(results.glob(f"*/{task}/{method}/*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            spec = record["spec"]
            if record.get("status") != "ok":
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if fraction is not None and not math.isclose(spec["fraction"], fraction):
            continue
        if seed is not None and spec["seed"] != seed:
            continue
        if protocol is not None and spec.get("protocol", "finetune") != protocol:
            continue
        matches.append(path)
    filters = "".join(
        [f" at fraction {fraction:g}" if fraction is not None else "",
         f" with seed {seed}" if seed is not None else "",
         f" by protocol {protocol}" if protocol is not None else ""]
    )
    if not matches:
        raise FetalbenchError(
            f"no successful record of {method} on {task}{filters} under {results}; run "
            f"`fetalbench run --method {method} --task {task}` first, or pass --results DIR"
        )
    if len(matches) > 1:
        shown = ", ".join(str(path) for path in matches[:3])
        raise FetalbenchError(
            f"{len(matches)} records of {method} on {task}{filters} under {results} ({shown}"
            f"{', ...' if len(matches) > 3 else ''}); narrow with --fraction/--seed/--protocol "
            f"or pass --record PATH"
        )
    return matches[0]
