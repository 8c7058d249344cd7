"""The sha256 of a file, read in chunks (cache arrays, checkpoints and dataset images alike)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 22


def file_sha256(path: Path | str) -> str:
    """The hex sha256 of the bytes of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
