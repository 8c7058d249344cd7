"""The pointing game: does a saliency map's peak fall on the anatomy that defines the class?

Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016. For each image, the
maximum of the map for the image's true class is a *hit* when it lies within a tolerance of the
ground-truth region, else a *miss*; the score is hits / (hits + misses). The original game allows
15 pixels at the network's 224 px input; here the tolerance scales with the run's resolution,
``15 * resolution / 224`` pixels (about 4.3 px at 64 px), measured as a Euclidean distance.

The ground truth is the phantom's structure masks (``Masks/<Image_name>.png`` label maps with ids
in ``Masks/legend.json``): the union of the structures that define the image's class
(:data:`fetalbench.data.phantom.render.DEFINING_STRUCTURES`), resized to the run's resolution with
nearest-neighbour interpolation like the images' square resize. An image whose defining
structures are absent from its mask is not counted; a constant map has no peak and is a miss.
Real FETAL_PLANES_DB has no masks, so the game is only played where ``Masks/`` exists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fetalbench.data.phantom.render import DEFINING_STRUCTURES, LEGEND_NAME, MASKS_DIR
from fetalbench.errors import FetalbenchError

REFERENCE_TOLERANCE_PX = 15
REFERENCE_RESOLUTION = 224


@dataclass(frozen=True)
class PointingResult:
    """Share of counted images whose map peak hits the defining structures, and how many counted.

    ``pointing_game`` is None when no image could be counted (``n == 0``).
    """

    pointing_game: float | None
    n: int


def pointing_tolerance(resolution: int) -> float:
    """The hit tolerance in pixels at ``resolution``: 15 px at 224 px, scaled linearly."""
    return REFERENCE_TOLERANCE_PX * resolution / REFERENCE_RESOLUTION


def pointing_hits(cams: np.ndarray, masks: np.ndarray, tolerance: float) -> np.ndarray:
    """Per image, whether the peak of ``cams[i]`` lies within ``tolerance`` px of ``masks[i]``.

    ``cams`` is ``[N, H, W]`` (any real values), ``masks`` boolean ``[N, H, W]``. Vectorised: the
    disc of offsets around each peak is gathered from the masks at once.
    """
    cams, masks = np.asarray(cams), np.asarray(masks, dtype=bool)
    if cams.shape != masks.shape or cams.ndim != 3:
        raise FetalbenchError(f"maps {cams.shape} and masks {masks.shape} must both be [N, H, W]")
    n, height, width = cams.shape
    flat = cams.reshape(n, -1)
    rows, cols = np.divmod(flat.argmax(axis=1), width)
    radius = math.floor(tolerance)
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = dy**2 + dx**2 <= tolerance**2
    y = rows[:, None] + dy[disc][None, :]
    x = cols[:, None] + dx[disc][None, :]
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    touched = masks[np.arange(n)[:, None], y.clip(0, height - 1), x.clip(0, width - 1)] & inside
    has_peak = flat.max(axis=1, initial=-np.inf) > flat.min(axis=1, initial=np.inf)
    return touched.any(axis=1) & has_peak


def pointing_game(cams: np.ndarray, masks: np.ndarray, tolerance: float) -> PointingResult:
    """The pointing game over the images whose mask is not empty (see the module doc)."""
    masks = np.asarray(masks, dtype=bool)
    counted = masks.reshape(len(masks), -1).any(axis=1)
    n = int(counted.sum())
    if n == 0:
        return PointingResult(None, 0)
    hits = pointing_hits(np.asarray(cams)[counted], masks[counted], tolerance)
    return PointingResult(float(hits.mean()), n)


def has_masks(root: Path) -> bool:
    """Whether the dataset at ``root`` carries structure masks (the phantom does)."""
    return (Path(root) / MASKS_DIR).is_dir()


def defining_masks(
    root: Path, image_names: Sequence[str], class_names: Sequence[str], resolution: int
) -> np.ndarray:
    """Boolean ``[N, resolution, resolution]``: the structures that define each image's class.

    ``class_names[i]`` is the true class of ``image_names[i]``; see
    :data:`~fetalbench.data.phantom.render.DEFINING_STRUCTURES`.
    """
    folder = Path(root) / MASKS_DIR
    try:
        legend = json.loads((folder / LEGEND_NAME).read_text())
    except (OSError, ValueError) as error:
        raise FetalbenchError(
            f"{folder / LEGEND_NAME} cannot be read ({type(error).__name__}); regenerate the "
            f"dataset's masks or remove {folder}"
        ) from None
    ids_of = {name: int(label) for label, name in legend.items()}
    unknown = sorted(set(class_names) - set(DEFINING_STRUCTURES))
    if unknown:
        raise FetalbenchError(
            f"no defining structures are known for class(es) {', '.join(unknown)}; add them to "
            f"DEFINING_STRUCTURES in fetalbench/datasets/phantom.py"
        )
    wanted = {
        name: np.array([ids_of[s] for s in structures if s in ids_of], dtype=np.uint8)
        for name, structures in DEFINING_STRUCTURES.items()
    }
    masks = np.zeros((len(image_names), resolution, resolution), dtype=bool)
    for i, (image_name, class_name) in enumerate(zip(image_names, class_names, strict=True)):
        path = folder / f"{image_name}.png"
        try:
            with Image.open(path) as mask:
                labels = np.asarray(
                    mask.resize((resolution, resolution), Image.Resampling.NEAREST)
                )
        except OSError as error:
            raise FetalbenchError(
                f"mask {path} cannot be read ({type(error).__name__}); regenerate the dataset's "
                f"masks or remove {folder}"
            ) from None
        masks[i] = np.isin(labels, wanted[class_name])
    return masks
