"""Figures of one run: Grad-CAM overlays and a t-SNE map (matplotlib Agg, no pyplot state).

The qualitative evidence Migliorelli et al. (2024) show beside their F1 tables. PNGs carry no
software or date metadata and are written atomically, so equal inputs give equal bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from fetalbench.report.plotting import save_png

STYLE = {"font.size": 7}
CAM_ALPHA = 0.45
TITLE_SIZE = 6


def plot_gradcam(
    images: np.ndarray,
    cams: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    classes: Sequence[str],
    title: str,
    path: Path,
) -> None:
    """One row per class: each sample as its image and its Grad-CAM overlay, true/predicted label.

    ``images`` uint8 ``[M, H, W]``, ``cams`` ``[M, H, W]`` in [0, 1], ``labels`` and
    ``predictions`` class indices ``[M]``; samples keep their order within a row.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    per_row = max(1, int(np.bincount(labels, minlength=len(classes)).max()))
    with matplotlib.rc_context(STYLE):
        height = 1.3 * len(classes) + 0.4
        figure = Figure(figsize=(2.2 * per_row, height))
        grid = figure.subplots(len(classes), 2 * per_row, squeeze=False,
                               gridspec_kw={"wspace": 0.12, "hspace": 0.3})
        figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / height)
        for axes in grid.flat:
            axes.set_axis_off()
        filled = np.zeros(len(classes), dtype=int)
        for image, cam, label, predicted in zip(images, cams, labels, predictions, strict=True):
            column = 2 * filled[label]
            filled[label] += 1
            plain, overlay = grid[label, column], grid[label, column + 1]
            plain.imshow(image, cmap="gray", vmin=0, vmax=255)
            plain.set_title(f"true: {classes[label]}", fontsize=TITLE_SIZE)
            overlay.imshow(image, cmap="gray", vmin=0, vmax=255)
            overlay.imshow(cam, cmap="jet", alpha=CAM_ALPHA, vmin=0.0, vmax=1.0)
            overlay.set_title(f"pred: {classes[predicted]}", fontsize=TITLE_SIZE,
                              color="darkgreen" if predicted == label else "darkred")
        figure.suptitle(title)
        save_png(figure, path, STYLE)


def plot_tsne(
    coordinates: np.ndarray, labels: np.ndarray, classes: Sequence[str], title: str, path: Path
) -> None:
    """Scatter of 2-D t-SNE ``coordinates`` ``[N, 2]`` coloured by true class index ``labels``."""
    palette = matplotlib.colormaps["tab10"]
    labels = np.asarray(labels)
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(5.0, 4.2), layout="constrained")
        axes = figure.add_subplot()
        for index, name in enumerate(classes):
            points = coordinates[labels == index]
            axes.scatter(points[:, 0], points[:, 1], s=8, color=palette(index % 10),
                         label=f"{name} ({len(points)})", linewidths=0)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.legend(loc="best", markerscale=2, frameon=False)
        axes.set_title(title)
        save_png(figure, path, STYLE)
