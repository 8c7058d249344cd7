"""``fetalbench records migrate``: bring records up to this version's format.

A record made before records were portable names the machine that made it: the absolute paths
of its checkpoints and of its dataset folder (``dataset.root``) and the host of the process that
ran it (``executor.host``). The portable form (:mod:`fetalbench.runs.records`) names each
checkpoint relative to the cache root, as the cache lays it out
(``checkpoints/<dataset>/<task>/<method>/<record>.safetensors``, ``pretrain/<stage>.safetensors``),
and drops the folder and the host; nothing else changes.

A record of an older schema than :data:`~fetalbench.runs.records.SCHEMA_VERSION` cannot be
brought up: schemas 1 and 2 were trained under fixed step budgets and have no learning checks,
which only a rerun can give (``fetalbench validate`` says so).

Migrating a record of the current format changes nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fetalbench.errors import FetalbenchError
from fetalbench.paths import CHECKPOINTS_DIR
from fetalbench.runs.records import records_under, write_record

PRETRAIN_DIR = "pretrain"  # where fetalbench.methods.pretraining.checkpoint_paths keeps stages


@dataclass(frozen=True)
class Migration:
    """How many record files were read, and which of them were rewritten."""

    examined: int
    changed: tuple[Path, ...]


def _cache_name(path: str, folder: str, depth: int) -> str:
    """The name in the cache of an absolute ``path`` that lies ``depth`` levels below a cache's
    ``folder`` (e.g. ``/x/cache/pretrain/a.safetensors`` -> ``pretrain/a.safetensors``); any
    other path is returned unchanged (a checkpoint kept outside the cache stays absolute)."""
    parts = PurePosixPath(path).parts
    if path.startswith("/") and len(parts) > depth + 1 and parts[-depth - 1] == folder:
        return "/".join(parts[-depth - 1:])
    return path


def portable_record(record: dict) -> dict:
    """``record`` in the portable form (a copy; ``record`` itself is left as it is)."""
    migrated = copy.deepcopy(record)
    for section, key in (("dataset", "root"), ("executor", "host")):
        if isinstance(migrated.get(section), dict):
            migrated[section].pop(key, None)
    if isinstance(migrated.get("checkpoint"), str):
        migrated["checkpoint"] = _cache_name(migrated["checkpoint"], CHECKPOINTS_DIR, 4)
    pretraining = (migrated.get("method_notes") or {}).get("pretraining")
    if isinstance(pretraining, dict) and isinstance(pretraining.get("checkpoint"), str):
        pretraining["checkpoint"] = _cache_name(pretraining["checkpoint"], PRETRAIN_DIR, 1)
    return migrated


def migrate_records(paths: Sequence[Path]) -> Migration:
    """Rewrite atomically every record in ``paths`` (files, or folders of them) that is not
    portable; a portable record is not touched."""
    files = records_under(paths)
    changed = []
    for path in files:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise FetalbenchError(f"run record {path} cannot be read ({error}); fix or delete "
                                  "it, then migrate again") from None
        if not isinstance(record, dict):
            raise FetalbenchError(f"{path} is not a run record (not a JSON object); move it out "
                                  "of the results folder, then migrate again")
        migrated = portable_record(record)
        if migrated == record:
            continue
        write_record(path, migrated)
        changed.append(path)
    return Migration(len(files), tuple(changed))
