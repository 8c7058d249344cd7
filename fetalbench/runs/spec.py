"""What a run is: the request a user makes and the spec it resolves to, whose hash names the run.

A :class:`RunRequest` holds what a user typed (names: method, task, dataset, profile). Resolved on
an opened dataset it becomes a :class:`RunSpec`, which holds everything that decides the outcome
(the dataset's fingerprint, the whole profile); the spec's hash identifies the run and names its
record. Where the run executes (devices, threads) is not part of it
(:mod:`fetalbench.methods.execution`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fetalbench.checks import check_fraction, check_seed
from fetalbench.data.splits import VALIDATION_SETTINGS
from fetalbench.data.tasks import TASKS
from fetalbench.errors import FetalbenchError
from fetalbench.methods import METHODS
from fetalbench.methods.registry import POOLS, PROTOCOLS
from fetalbench.profiles import Profile, get_profile
from fetalbench.storage.digests import sha256_hex

if TYPE_CHECKING:
    from fetalbench.data.sources import DatasetSource


@dataclass(frozen=True)
class RunRequest:
    """What a user asks for; resolved into a :class:`RunSpec` once the dataset is open."""

    method: str
    task: str
    dataset: str = "phantom"
    data_root: Path | None = None
    fraction: float = 1.0
    seed: int = 0
    protocol: str = "finetune"
    pool: str = "task"
    profile: str = "quick"
    validation: str = "fixed"


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides a run's outcome; its hash identifies the run."""

    method: str
    task: str
    dataset: str
    dataset_fingerprint: str
    fraction: float
    seed: int
    protocol: str
    pool: str
    profile: Profile
    validation: str = "fixed"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return spec_hash(self.to_dict())

    def record_path(self, out_dir: Path) -> Path:
        """``out/<dataset>/<task>/<method>/<protocol>-f<fraction>-s<seed>-<hash>.json``."""
        name = f"{self.protocol}-f{self.fraction:g}-s{self.seed}-{self.hash()}.json"
        return Path(out_dir) / self.dataset / self.task / self.method / name


def spec_hash(spec: dict) -> str:
    """The hash of a spec as :meth:`RunSpec.to_dict` gives it (or a record's ``spec`` holds it):
    the first 16 hex digits of the sha256 of its canonical JSON."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return sha256_hex(canonical.encode())[:16]


def validate_request(request: RunRequest) -> None:
    """Check every user-typed field before any work starts (one-line errors)."""
    method = METHODS.get(request.method)
    TASKS.get(request.task)
    get_profile(request.profile)
    check_fraction(request.fraction)
    check_seed(request.seed)
    if request.protocol not in PROTOCOLS:
        raise FetalbenchError(
            f"unknown protocol {request.protocol!r}; expected one of {', '.join(PROTOCOLS)}"
        )
    if request.protocol not in method.protocols:
        raise FetalbenchError(
            f"{request.method} supports only protocol {', '.join(method.protocols)}; "
            f"drop --protocol {request.protocol}"
        )
    if request.pool not in POOLS:
        raise FetalbenchError(
            f"unknown unlabelled pool {request.pool!r}; expected one of {', '.join(POOLS)}"
        )
    if request.validation not in VALIDATION_SETTINGS:
        raise FetalbenchError(
            f"unknown validation setting {request.validation!r}; expected one of "
            f"{', '.join(VALIDATION_SETTINGS)}"
        )


def resolve_spec(request: RunRequest, source: DatasetSource) -> RunSpec:
    """The full spec of a request on an opened source."""
    return RunSpec(
        method=request.method,
        task=request.task,
        dataset=source.identity.name,
        dataset_fingerprint=source.identity.fingerprint,
        fraction=float(request.fraction),
        seed=request.seed,
        protocol=request.protocol,
        pool=request.pool,
        profile=get_profile(request.profile),
        validation=request.validation,
    )
