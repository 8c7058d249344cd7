"""Dataset sources by name: the built-in phantom (synthetic) or the real FETAL_PLANES_DB.

Both are folders in the FETAL_PLANES_DB layout read by one loader. A source carries its identity
(name, whether it is synthetic, fingerprint, the metadata CSV's sha256) into every record, so
phantom results can never be mistaken for results on real data, and a record on the real dataset
says whether its CSV is the official one (``fetalbench validate``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fetalbench.data.fetal_planes_db import CSV_NAME, fingerprint, load_catalog
from fetalbench.errors import FetalbenchError
from fetalbench.storage.digests import file_sha256

DATASETS = ("phantom", "fetal_planes_db")


@dataclass(frozen=True)
class DatasetIdentity:
    """The data a run was measured on; :meth:`as_record` is what its record says of it."""

    name: str
    synthetic: bool
    fingerprint: str
    n_images: int
    csv_sha256: str
    root: str

    def as_record(self) -> dict:
        """The identity without ``root``, a folder of this machine that no record carries."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "root"}


@dataclass(frozen=True)
class DatasetSource:
    """A loaded source: its identity and its validated catalog."""

    identity: DatasetIdentity
    catalog: pd.DataFrame


def open_source(name: str, data_root: Path | None, cache_root: Path) -> DatasetSource:
    """Open the dataset called ``name``; the phantom is generated into ``cache_root`` if absent."""
    if name == "phantom":
        from fetalbench.data.phantom.render import ensure_phantom

        if data_root is not None:
            raise FetalbenchError(
                "--data-root is for --dataset fetal_planes_db; the phantom lives in the cache "
                "(drop --data-root, or add --dataset fetal_planes_db)"
            )
        root = ensure_phantom(cache_root)
        synthetic = True
    elif name == "fetal_planes_db":
        if data_root is None:
            raise FetalbenchError(
                "--dataset fetal_planes_db needs --data-root DIR, the folder holding "
                "FETAL_PLANES_DB_data.csv and Images/ (get it with `fetalbench data download "
                "--root DIR`)"
            )
        root = Path(data_root)
        synthetic = False
    else:
        raise FetalbenchError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    catalog = load_catalog(root)
    identity = DatasetIdentity(
        name=name,
        synthetic=synthetic,
        fingerprint=fingerprint(root, catalog),
        n_images=len(catalog),
        csv_sha256=file_sha256(Path(root) / CSV_NAME),
        root=str(Path(root).resolve()),
    )
    return DatasetSource(identity=identity, catalog=catalog)
