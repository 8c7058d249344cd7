"""Where fetalbench keeps what it can rebuild: phantom, image caches, pre-training checkpoints."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FETALBENCH_CACHE`` when set, else ``~/.cache/fetalbench``."""
    configured = os.environ.get("FETALBENCH_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "fetalbench"
