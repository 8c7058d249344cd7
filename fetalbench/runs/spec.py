"""What a run is: the request a user makes and the spec it resolves to, whose hash names the run.

A :class:`RunRequest` holds what a user typed (names: method, task, dataset, profile, and a
backbone when not the profile's). Resolved on an opened dataset it becomes a :class:`RunSpec`,
which holds everything that decides the outcome (the dataset's fingerprint, the whole profile with
the backbone in it); the spec's hash identifies the run and names its record. A label budget is a
``fraction`` of the labels or ``patients_per_class`` (:func:`fetalbench.data.splits.split_task`),
exactly one of them. Where the run executes (devices, threads) is not part of it
(:mod:`fetalbench.methods.execution`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fetalbench.checks import check_fraction, check_patients, check_seed
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
    """What a user asks for; resolved into a :class:`RunSpec` once the dataset is open.

    A budget of ``patients_per_class`` takes ``fraction=None``. ``backbone`` names any timm model
    in place of the profile's (None: the profile's)."""

    method: str
    task: str
    dataset: str = "phantom"
    data_root: Path | None = None
    fraction: float | None = 1.0
    seed: int = 0
    protocol: str = "finetune"
    pool: str = "task"
    profile: str = "quick"
    validation: str = "fixed"
    patients_per_class: int | None = None
    backbone: str | None = None


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides a run's outcome; its hash identifies the run."""

    method: str
    task: str
    dataset: str
    dataset_fingerprint: str
    fraction: float | None
    seed: int
    protocol: str
    pool: str
    profile: Profile
    validation: str = "fixed"
    patients_per_class: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return spec_hash(self.to_dict())

    def record_path(self, out_dir: Path) -> Path:
        """``out/<dataset>/<task>/<method>/<protocol>-<budget>-s<seed>-<hash>.json``, the
        budget ``f<fraction>`` or ``k<patients per class>``."""
        name = f"{self.protocol}-{budget_name(self.to_dict())}-s{self.seed}-{self.hash()}.json"
        return Path(out_dir) / self.dataset / self.task / self.method / name


def budget_name(spec: dict) -> str:
    """A spec's label budget in a file name: ``f0.05``, or ``k4`` for 4 patients per class."""
    patients = spec.get("patients_per_class")
    return f"f{spec['fraction']:g}" if patients is None else f"k{patients}"


def budget_option(spec: dict) -> str:
    """A spec's label budget as ``fetalbench run`` takes it: ``--fraction 0.05`` or
    ``--patients 4``."""
    patients = spec.get("patients_per_class")
    return f"--fraction {spec['fraction']:g}" if patients is None else f"--patients {patients}"


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
    if request.patients_per_class is None:
        check_fraction(request.fraction)
    else:
        check_patients(request.patients_per_class)
        if request.fraction is not None:
            raise FetalbenchError("give a label budget as a fraction or as patients per class, "
                                  "not both (--fraction or --patients)")
    check_seed(request.seed)
    if request.backbone is not None and not method.takes_backbone:
        raise FetalbenchError(f"{request.method} brings its own encoder; drop --backbone")
    if request.protocol not in PROTOCOLS:
        raise FetalbenchError(
            f"unknown protocol {request.protocol!r}; expected one of {', '.join(PROTOCOLS)}"
        )
    if request.protocol not in method.protocols:
        raise FetalbenchError(
            f"{request.method} supports only protocol {', '.join(method.protocols)}; "
            f"pass --protocol {method.protocols[0]}"
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
    """The full spec of a request on an opened source: the profile with the request's backbone
    in it, when it names one."""
    profile = get_profile(request.profile)
    if request.backbone is not None:
        profile = replace(profile, backbone=request.backbone)
    return RunSpec(
        method=request.method,
        task=request.task,
        dataset=source.identity.name,
        dataset_fingerprint=source.identity.fingerprint,
        fraction=None if request.fraction is None else float(request.fraction),
        seed=request.seed,
        protocol=request.protocol,
        pool=request.pool,
        profile=profile,
        validation=request.validation,
        patients_per_class=request.patients_per_class,
    )
