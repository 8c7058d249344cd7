"""Saving matplotlib figures reproducibly: the same figure gives the same PNG bytes, atomically."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from fetalbench.storage.atomic import write_bytes_atomic

DPI = 110


def save_png(figure: Figure, path: Path, style: dict | None = None) -> None:
    """Write ``figure`` as a PNG without a software or date stamp, so reruns are byte-identical."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(style or {}):
        figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1,
                       metadata={"Software": None})
    write_bytes_atomic(Path(path), buffer.getvalue())
