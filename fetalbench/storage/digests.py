"""sha256 digests: of bytes, of a file read in chunks, of what passes through a stream.

The one place fetalbench computes a sha256 of content (cache arrays, checkpoints, dataset files,
the canonical JSON of a key), so every digest it writes or checks is the same hex text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 22


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path | str) -> str:
    """The hex sha256 of the bytes of the file at ``path``, read ``CHUNK_BYTES`` at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class HashingWriter:
    """A write-only stream that passes what it is given on to ``stream`` and into a sha256.

    A writer that streams (``np.save`` of a large array) then yields its bytes' digest without
    the file being read back (:meth:`hexdigest`).
    """

    stream: BinaryIO
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    def write(self, data: bytes) -> int:
        """Hash ``data`` and write it to the wrapped stream."""
        self._digest.update(data)
        return self.stream.write(data)

    def hexdigest(self) -> str:
        """The hex sha256 of everything written so far."""
        return self._digest.hexdigest()
