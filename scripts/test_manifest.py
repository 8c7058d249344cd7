#!/usr/bin/env python3
"""Write the committed test manifest of one dataset version (:mod:`fetalbench.data.test_manifests`):
each built-in task's official test images and their patients, in the split's test order.

Usage: python scripts/test_manifest.py DATASET ROOT

``ROOT`` is the dataset's folder in the FETAL_PLANES_DB layout (for the phantom, the
``phantom-*`` folder in the cache); only its CSV and the images' sizes (the fingerprint) are read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fetalbench.data.sources import DATASETS, folder_source
from fetalbench.data.splits import split_task
from fetalbench.data.tasks import TASKS
from fetalbench.data.test_manifests import FOLDER, manifest_name
from fetalbench.runs.metrics import encode_patients


def main(dataset: str, root: Path) -> Path:
    source = folder_source(dataset, DATASETS.get(dataset).synthetic, root)
    fingerprint = source.identity.fingerprint
    tasks = {}
    for name in sorted(TASKS):
        if TASKS.source(name) != "fetalbench":
            continue
        rows = TASKS.get(name).select(source.catalog)
        test = rows.iloc[split_task(rows, 1.0, 0, 0.2).test]
        tasks[name] = {"images": test["image_name"].tolist(),
                       "patients": encode_patients(test["patient"].to_numpy())}
    path = FOLDER / manifest_name(dataset, fingerprint)
    path.parent.mkdir(exist_ok=True)
    content = {"dataset": dataset, "fingerprint": fingerprint, "tasks": tasks}
    path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    print(main(sys.argv[1], Path(sys.argv[2])))
