"""Benchmark suites as data files: which methods, tasks, fractions, seeds and protocols to cross.

A suite is a TOML file: the built-in ones live beside this module (``smoke``, ``phantom``,
``paper``, ``full``); ``--suite`` also takes a path to a file of the same form. ``methods = "all"``
means every registered method, plugins included.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fetalbench.errors import FetalbenchError
from fetalbench.methods import METHODS
from fetalbench.runs.spec import RunRequest, validate_request

SUITES_DIR = Path(__file__).resolve().parent / "suites"
KEYS = {"description", "dataset", "profile", "methods", "tasks", "fractions", "seeds",
        "protocols", "pool", "validation", "slurm"}


@dataclass(frozen=True)
class Suite:
    """A grid of runs."""

    name: str
    description: str
    dataset: str
    profile: str
    methods: tuple[str, ...]
    tasks: tuple[str, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    protocols: tuple[str, ...]
    pool: str
    validation: str
    slurm: dict

    def requests(self, data_root: Path | None) -> list[RunRequest]:
        """Every run of the suite, seed by seed (a grid stopped early has whole seeds of every
        method), each pre-training group's runs together (fractions and protocols vary
        fastest) so that its pre-training runs once and is reused from the cache."""
        runs = []
        for seed, task, method, protocol, fraction in itertools.product(
            self.seeds, self.tasks, self.methods, self.protocols, self.fractions
        ):
            if protocol in METHODS.get(method).protocols:
                runs.append(RunRequest(method=method, task=task, dataset=self.dataset,
                                       data_root=data_root, fraction=fraction, seed=seed,
                                       protocol=protocol, pool=self.pool, profile=self.profile,
                                       validation=self.validation))
        return runs


def available_suites() -> list[str]:
    """Names of the built-in suites."""
    return sorted(path.stem for path in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite file by path; validated before anything runs."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise FetalbenchError(
            f"unknown suite {name_or_path!r}; built-in suites: {', '.join(available_suites())}, "
            "or give the path of a .toml suite file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise FetalbenchError(f"{path} is not valid TOML ({error}); fix the file") from None
    unknown = set(data) - KEYS
    if unknown:
        raise FetalbenchError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"allowed: {', '.join(sorted(KEYS))}")
    try:
        methods = data["methods"]
        suite = Suite(
            name=path.stem,
            description=str(data.get("description", "")),
            dataset=str(data.get("dataset", "phantom")),
            profile=str(data.get("profile", "quick")),
            methods=tuple(METHODS.names() if methods == "all" else methods),
            tasks=tuple(data["tasks"]),
            fractions=tuple(float(f) for f in data["fractions"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            protocols=tuple(data.get("protocols", ["finetune"])),
            pool=str(data.get("pool", "task")),
            validation=str(data.get("validation", "fixed")),
            slurm=dict(data.get("slurm", {})),
        )
    except KeyError as missing:
        raise FetalbenchError(f"{path}: missing key {missing}; a suite needs methods, tasks, "
                              "fractions and seeds") from None
    except (TypeError, ValueError) as error:
        raise FetalbenchError(f"{path}: {error}; fix the suite file") from None
    for request in suite.requests(None):
        validate_request(request)
    return suite
