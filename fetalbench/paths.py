"""Where fetalbench keeps what it can rebuild: phantom, image caches, pre-training checkpoints.

Records name files of the cache relative to its root (:func:`cache_relative`), so a record says
nothing about the machine that made it and reads the same on any other; :func:`in_cache` finds the
file again under the reader's cache.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKPOINTS_DIR = "checkpoints"


def cache_dir() -> Path:
    """``$FETALBENCH_CACHE`` when set, else ``~/.cache/fetalbench``."""
    configured = os.environ.get("FETALBENCH_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "fetalbench"


def cache_relative(path: Path, cache_root: Path) -> str:
    """How a record names ``path``: relative to ``cache_root`` with ``/`` separators (e.g.
    ``checkpoints/phantom/brain/simclr/finetune-f1-s0-<hash>.safetensors``) when it lies in the
    cache; a file kept outside the cache (``--checkpoint-dir``) is named by its absolute path."""
    resolved, root = Path(path).resolve(), Path(cache_root).resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)


def in_cache(name: str, cache_root: Path) -> Path:
    """The file a record names ``name``, under ``cache_root`` (an absolute name stays itself)."""
    return Path(cache_root) / name
