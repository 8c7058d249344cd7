"""Verified artifacts: written with their sha256, refused (saying why) when anything is off."""

from __future__ import annotations

import ast
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fetalbench.storage.artifacts import (
    Artifact,
    Refusal,
    Refused,
    Verified,
    check_data,
    write_hashed,
)
from fetalbench.storage.digests import HashingWriter, file_sha256, sha256_hex

PACKAGE = Path(__file__).resolve().parents[1] / "fetalbench"
DATA = b"weights" * 1000
METADATA = {"key": {"objective": "simclr", "steps": [1, 2]}, "seconds": 1.5}


def artifact_in(folder: Path) -> Artifact:
    return Artifact(folder / "stage.safetensors", folder / "stage.json")


def test_digests_agree_with_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(DATA)
    expected = hashlib.sha256(DATA).hexdigest()
    assert sha256_hex(DATA) == file_sha256(path) == expected
    stream = io.BytesIO()
    writer = HashingWriter(stream)
    for start in range(0, len(DATA), 999):
        writer.write(DATA[start : start + 999])
    assert writer.hexdigest() == expected and stream.getvalue() == DATA


def test_an_artifact_written_is_verified_with_its_sidecar(tmp_path: Path) -> None:
    artifact = artifact_in(tmp_path)
    sidecar = artifact.write(DATA, METADATA)
    assert sidecar == {**METADATA, "sha256": sha256_hex(DATA)}
    assert artifact.data.read_bytes() == DATA
    assert json.loads(artifact.sidecar.read_text()) == sidecar
    assert artifact.verify({"key": METADATA["key"]}) == Verified(sidecar)
    assert artifact.verify({}) == Verified(sidecar)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage.json", "stage.safetensors"]


def test_a_streamed_artifact_hashes_the_bytes_it_wrote(tmp_path: Path) -> None:
    images = np.arange(3 * 64 * 64, dtype=np.uint8).reshape(3, 64, 64)
    artifact = Artifact(tmp_path / "images.npy", tmp_path / "images.json")
    sidecar = artifact.write(lambda stream: np.save(stream, images), {"names": ["a", "b", "c"]})
    assert sidecar["sha256"] == file_sha256(artifact.data)
    assert np.array_equal(np.load(artifact.data, mmap_mode="r"), images)
    assert isinstance(artifact.verify({"names": ["a", "b", "c"]}), Verified)
    assert write_hashed(tmp_path / "again.npy", lambda s: np.save(s, images)) == sidecar["sha256"]
    assert write_hashed(tmp_path / "bytes", DATA) == sha256_hex(DATA)


def flip_a_byte(artifact: Artifact) -> None:
    data = artifact.data.read_bytes()
    artifact.data.write_bytes(data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:])


def edit_sidecar(change: Callable[[dict], object]) -> Callable[[Artifact], None]:
    def edit(artifact: Artifact) -> None:
        artifact.sidecar.write_text(json.dumps(change(json.loads(artifact.sidecar.read_text()))))
    return edit


DAMAGES: dict[str, tuple[Callable[[Artifact], None], Refused]] = {
    "neither file": (lambda a: (a.data.unlink(), a.sidecar.unlink()), Refused(Refusal.MISSING)),
    "no sidecar": (lambda a: a.sidecar.unlink(),
                   Refused(Refusal.UNREADABLE, "FileNotFoundError")),
    "no data": (lambda a: a.data.unlink(), Refused(Refusal.UNREADABLE, "FileNotFoundError")),
    "sidecar not JSON": (lambda a: a.sidecar.write_text("{half"),
                         Refused(Refusal.UNREADABLE, "JSONDecodeError")),
    "sidecar not an object": (edit_sidecar(lambda s: [s]), Refused(Refusal.FOREIGN)),
    "sidecar of another key": (edit_sidecar(lambda s: {**s, "key": {"objective": "byol"}}),
                               Refused(Refusal.FOREIGN)),
    "sidecar without the key": (edit_sidecar(lambda s: {"sha256": s["sha256"]}),
                                Refused(Refusal.FOREIGN)),
    "flip a byte": (flip_a_byte, Refused(Refusal.CORRUPT)),
    "truncate": (lambda a: a.data.write_bytes(DATA[:-1]), Refused(Refusal.CORRUPT)),
    "sidecar without checksum": (edit_sidecar(lambda s: {"key": s["key"]}),
                                 Refused(Refusal.CORRUPT)),
    "sidecar with a checksum that is no text": (edit_sidecar(lambda s: {**s, "sha256": None}),
                                                Refused(Refusal.CORRUPT)),
    "data replaced, killed before its sidecar": (lambda a: write_hashed(a.data, DATA + b"new"),
                                                 Refused(Refusal.CORRUPT)),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_artifact_is_refused_with_the_reason(damage: str, tmp_path: Path) -> None:
    artifact = artifact_in(tmp_path)
    artifact.write(DATA, METADATA)
    harm, refused = DAMAGES[damage]
    harm(artifact)
    assert artifact.verify({"key": METADATA["key"]}) == refused


def test_an_expected_field_that_is_none_is_not_met_by_its_absence(tmp_path: Path) -> None:
    artifact = artifact_in(tmp_path)
    artifact.write(DATA, {"key": None})
    assert isinstance(artifact.verify({"key": None}), Verified)
    assert artifact.verify({"other": None}) == Refused(Refusal.FOREIGN)


def test_check_data_says_whether_a_file_has_a_sha256(tmp_path: Path) -> None:
    path = tmp_path / "run.safetensors"
    digest = write_hashed(path, DATA)
    assert check_data(path, digest) is None
    assert check_data(path, sha256_hex(b"other")) == Refused(Refusal.CORRUPT)
    assert check_data(tmp_path, digest) == Refused(Refusal.UNREADABLE, "IsADirectoryError")


def test_metadata_cannot_hold_the_checksum(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        artifact_in(tmp_path).write(DATA, {"sha256": "0" * 64})
    assert not list(tmp_path.iterdir())


# Modules owned elsewhere that still call hashlib themselves; each should call
# fetalbench.storage.digests (sha256_hex, file_sha256) instead, and leave this set.
HASHLIB_FOR_OTHER_ALGORITHMS = {"data/download.py"}  # Zenodo publishes md5 checksums


def test_every_sha256_of_content_goes_through_digests() -> None:
    users = set()
    for path in PACKAGE.rglob("*.py"):
        names = {ast.unparse(node) for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "hashlib"}
        if names:
            users.add((path.relative_to(PACKAGE).as_posix(), "hashlib.sha256" in names))
    sha256_users = {name for name, sha256 in users if sha256}
    assert sha256_users == {"storage/digests.py"}
    assert {name for name, sha256 in users if not sha256} <= HASHLIB_FOR_OTHER_ALGORITHMS
