"""Committed test manifests: which patient each official test image belongs to, per dataset
version, for records made before records kept it (schema 3).

Images of one patient are not independent (in FETAL_PLANES_DB consecutive frames of one patient
are near duplicates), so the report resamples test patients, not images, and needs each test
image's patient. A record of schema 4 carries them (``test_predictions.patients``); for one of
schema 3, the manifest of its dataset version (dataset name and fingerprint) gives them for its
task, in the split's test order: ``fetalbench validate`` checks that the manifest's image names
give the record's ``test_predictions.order_sha256`` and its test set's size.

A manifest is ``test_manifests/<dataset>-<fingerprint[:12]>.json``: ``{"dataset", "fingerprint",
"tasks": {task: {"images": [names in test order], "patients": "id id ..."}}}``, written by
``scripts/test_manifest.py`` from the dataset's catalog (no images are read).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from fetalbench.storage.digests import sha256_hex

FOLDER = Path(__file__).resolve().parent / "test_manifests"


@dataclass(frozen=True)
class PatientManifest:
    """One task's test set in one dataset version: its images' names and patients, in order."""

    images: tuple[str, ...]
    patients: str

    @property
    def order_sha256(self) -> str:
        """The sha256 of the names joined by newlines, as records' ``order_sha256``."""
        return sha256_hex("\n".join(self.images).encode())


def manifest_name(dataset: str, fingerprint: str) -> str:
    """The file name of a dataset version's manifest."""
    return f"{dataset}-{fingerprint[:12]}.json"


@functools.cache
def patient_manifest(dataset: str, fingerprint: str, task: str) -> PatientManifest | None:
    """The committed manifest of ``task``'s test set in the dataset version, or None."""
    path = FOLDER / manifest_name(dataset, fingerprint)
    if not path.is_file():
        return None
    content = json.loads(path.read_text(encoding="utf-8"))
    if content["dataset"] != dataset or content["fingerprint"] != fingerprint:
        return None
    entry = content["tasks"].get(task)
    return None if entry is None else PatientManifest(tuple(entry["images"]), entry["patients"])
