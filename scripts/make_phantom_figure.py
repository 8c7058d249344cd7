"""Draw docs/phantom.png: real FETAL_PLANES_DB images beside phantom images of every class.

The real images (Burgos-Artizzu et al., Sci. Rep. 10:10200, 2020; CC BY 4.0) come from the
repository's test data, ``tests/data/fetal_planes_db/images_sample`` (see its README); the
phantom images are rendered in memory from the default phantom plan, the first two records of
each class, so the figure is reproducible.

Usage: python scripts/make_phantom_figure.py [--real-dir DIR] [--output PATH]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from fetalbench.data.phantom.render import PhantomRecord, PhantomSettings, plan_phantom, render

REPO = Path(__file__).resolve().parent.parent
CLASSES = (
    ("Fetal brain", "Trans-thalamic"),
    ("Fetal brain", "Trans-cerebellum"),
    ("Fetal brain", "Trans-ventricular"),
    ("Fetal brain", "Other"),
    ("Fetal abdomen", "Not A Brain"),
    ("Fetal thorax", "Not A Brain"),
    ("Fetal femur", "Not A Brain"),
    ("Maternal cervix", "Not A Brain"),
    ("Other", "Not A Brain"),
)
PER_CLASS = 2
N_REAL = 3


def _examples(settings: PhantomSettings) -> list[PhantomRecord]:
    """The first ``PER_CLASS`` records of each class, class by class (three classes a row)."""
    records = plan_phantom(settings)
    chosen = []
    for plane, brain_plane in CLASSES:
        matches = [r for r in records if (r.plane, r.brain_plane) == (plane, brain_plane)]
        chosen.extend(matches[:PER_CLASS])
    return chosen


def _label(record: PhantomRecord) -> str:
    if record.plane == "Fetal brain":
        return f"Fetal brain / {record.brain_plane}"
    return record.plane


def make_figure(real_dir: Path, output: Path) -> None:
    """Write the comparison figure to ``output``."""
    settings = PhantomSettings()
    examples = _examples(settings)
    real = sorted(real_dir.glob("*.png"))[:N_REAL]
    if len(real) < N_REAL:
        raise SystemExit(f"need {N_REAL} PNGs in {real_dir}, found {len(real)}")
    columns = 1 + len(examples) // N_REAL
    figure, axes = plt.subplots(N_REAL, columns, figsize=(2.6 * columns, 2.3 * N_REAL))
    for row, path in enumerate(real):
        axis = axes[row, 0]
        axis.imshow(np.asarray(Image.open(path).convert("L")), cmap="gray", vmin=0, vmax=255)
        axis.set_title(
            "REAL (FETAL_PLANES_DB)\nFetal brain / Trans-ventricular", fontsize=7, color="darkred"
        )
    per_row = len(CLASSES) // N_REAL
    for index, record in enumerate(examples):
        image, _ = render(record, settings)
        cls, k = divmod(index, PER_CLASS)
        axis = axes[cls // per_row, 1 + PER_CLASS * (cls % per_row) + k]
        axis.imshow(image, cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"PHANTOM (synthetic)\n{_label(record)}", fontsize=7, color="navy")
    for axis in axes.flat:
        axis.axis("off")
    figure.tight_layout(pad=0.4)
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100, facecolor="white")
    plt.close(figure)
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").quantize(colors=128).save(output, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--real-dir",
        type=Path,
        default=REPO / "tests" / "data" / "fetal_planes_db" / "images_sample",
    )
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "phantom.png")
    args = parser.parse_args()
    make_figure(args.real_dir, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
