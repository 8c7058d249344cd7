"""Verified artifacts: a data file whose sha256 is kept elsewhere, checked before it is used.

Every file fetalbench caches and reads back later is written and checked here: the data file is
written atomically (:mod:`fetalbench.storage.atomic`) while its bytes are hashed, and the sha256
is kept either in a JSON sidecar beside it (:class:`Artifact`: pre-trained backbones, the image
cache) or by the caller (a run's classifier checkpoint, whose record holds it:
:func:`write_hashed` and :func:`check_data`). A reader gets the data only when the digest matches,
so a corrupt, truncated, half-replaced or foreign file is refused with a :class:`Refused` that
says why, and the caller rebuilds it (or tells the user how to) instead of trusting it.

A sidecar is the caller's metadata (which must identify what the data is: a stage's key, a
source's image names) followed by ``"sha256"``. The data is written before its sidecar, so a
process killed between the two leaves a sidecar that does not vouch for the new data, never one
that vouches for a partial file.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fetalbench.storage.atomic import write_atomic, write_bytes_atomic
from fetalbench.storage.digests import HashingWriter, file_sha256, sha256_hex

SHA256_FIELD = "sha256"
"""The sidecar's field holding the hex sha256 of the data file's bytes."""

_ABSENT = object()  # a sidecar field that is not there equals no expected value, not even None

Content = bytes | Callable[[BinaryIO], None]
"""The bytes of a data file, or a function that streams them into a writable stream."""


class Refusal(enum.Enum):
    """Why an artifact is not used."""

    MISSING = "missing"  # neither the data nor its sidecar exists: never written
    UNREADABLE = "unreadable"  # a file cannot be read, or the sidecar is not JSON
    FOREIGN = "foreign"  # the sidecar is not an object holding the expected metadata
    CORRUPT = "corrupt"  # the data's bytes do not match the sha256 that vouches for them


@dataclass(frozen=True)
class Refused:
    """A refused artifact: the :class:`Refusal` and, when unreadable, the error's type name."""

    reason: Refusal
    detail: str = ""


@dataclass(frozen=True)
class Verified:
    """A verified artifact: its parsed sidecar (the caller's metadata and the sha256)."""

    sidecar: dict


def write_hashed(path: Path, content: Content) -> str:
    """Write ``content`` to ``path`` atomically; the hex sha256 of the bytes written."""
    if isinstance(content, bytes):
        write_bytes_atomic(path, content)
        return sha256_hex(content)
    hashed: list[HashingWriter] = []

    def write(stream: BinaryIO) -> None:
        hashed.append(HashingWriter(stream))
        content(hashed[0])

    write_atomic(path, write)
    return hashed[0].hexdigest()


def check_data(path: Path, sha256: object) -> Refused | None:
    """None if the bytes of the file at ``path`` have the hex sha256 ``sha256``; else why not
    (``CORRUPT`` also when ``sha256`` is missing or not text, ``UNREADABLE`` when the file cannot
    be read). The file is streamed, not read into memory."""
    try:
        actual = file_sha256(path)
    except OSError as error:
        return Refused(Refusal.UNREADABLE, type(error).__name__)
    return None if actual == sha256 else Refused(Refusal.CORRUPT)


@dataclass(frozen=True)
class Artifact:
    """A data file and the JSON sidecar that vouches for its bytes."""

    data: Path
    sidecar: Path

    def write(self, content: Content, metadata: Mapping[str, object]) -> dict:
        """Write the data atomically, then the sidecar (``metadata`` and the data's sha256);
        returns the sidecar as written. ``metadata`` must not hold ``"sha256"``."""
        if SHA256_FIELD in metadata:
            raise ValueError(f"an artifact's metadata cannot hold {SHA256_FIELD!r}, its checksum")
        sidecar = {**metadata, SHA256_FIELD: write_hashed(self.data, content)}
        write_bytes_atomic(self.sidecar, json.dumps(sidecar, indent=2).encode())
        return sidecar

    def verify(self, expected: Mapping[str, object]) -> Verified | Refused:
        """The sidecar, if it parses, holds every item of ``expected`` and its sha256 matches the
        data's bytes (checked in that order); otherwise why the artifact is refused."""
        if not (self.data.exists() or self.sidecar.exists()):
            return Refused(Refusal.MISSING)
        try:
            sidecar = json.loads(self.sidecar.read_text())
        except (OSError, ValueError) as error:
            return Refused(Refusal.UNREADABLE, type(error).__name__)
        if not isinstance(sidecar, dict) or any(
            sidecar.get(name, _ABSENT) != value for name, value in expected.items()
        ):
            return Refused(Refusal.FOREIGN)
        refused = check_data(self.data, sidecar.get(SHA256_FIELD))
        return Verified(sidecar) if refused is None else refused
