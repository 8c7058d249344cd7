"""Datasets by name: a registered kind, like methods and tasks, and the sources they open.

A :class:`Dataset` says what a dataset is to the rest of fetalbench: its name, whether its images
are synthetic, the title tables give it, a sentence on where its images come from, whether it is
read from a folder the user names (``--data-root``), and its opener. The built-ins are the phantom
(synthetic, generated into the cache) and the real FETAL_PLANES_DB; other installed distributions
add datasets through the entry-point group ``fetalbench.datasets`` (:mod:`fetalbench.plugins`),
calling :func:`register_dataset`. This module imports no torch, so the command line lists
datasets without it.

Opening a dataset gives a :class:`DatasetSource`: its identity and its validated catalog. Both
built-ins are folders in the FETAL_PLANES_DB layout read by one loader (:func:`folder_source`). A
source carries its identity (name, whether it is synthetic, fingerprint, the metadata CSV's
sha256) into every record, so synthetic results can never be mistaken for results on real data,
and a record on the real dataset says whether its CSV is the official one (``fetalbench
validate``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fetalbench.data.fetal_planes_db import CSV_NAME, fingerprint, load_catalog
from fetalbench.errors import FetalbenchError
from fetalbench.registry import Registry
from fetalbench.storage.digests import file_sha256

if TYPE_CHECKING:
    import pandas as pd


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


Opener = Callable[[Path | None, Path], DatasetSource]
"""``(data_root, cache_root) -> DatasetSource``: ``data_root`` is the folder the user named
(``--data-root``; None for a dataset that needs none), ``cache_root`` fetalbench's cache."""


@dataclass(frozen=True)
class Dataset:
    """A registered dataset.

    ``title`` names it in tables and figures; ``description`` is one sentence on where its images
    come from, printed under its heading in the leaderboard. ``data_root_help`` says what
    ``--data-root`` must point at, for a dataset read from a folder the user names; None for one
    that needs no ``--data-root`` (the phantom is generated into the cache). ``opener`` opens it;
    the source it returns must carry this dataset's name and ``synthetic`` flag.
    """

    name: str
    title: str
    synthetic: bool
    description: str
    opener: Opener
    data_root_help: str | None = None

    @property
    def needs_data_root(self) -> bool:
        """Whether opening it takes ``--data-root``."""
        return self.data_root_help is not None


DATASETS: Registry[Dataset] = Registry("dataset", entry_point_group="fetalbench.datasets")


def register_dataset(dataset: Dataset, source: str = "fetalbench") -> Dataset:
    """Add a dataset to the registry."""
    return DATASETS.register(dataset.name, dataset, source)


def folder_source(name: str, synthetic: bool, root: Path) -> DatasetSource:
    """The source of dataset ``name`` read from ``root``, a folder in the FETAL_PLANES_DB layout
    (``FETAL_PLANES_DB_data.csv`` and ``Images/``): its validated catalog and its identity."""
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


def open_source(name: str, data_root: Path | None, cache_root: Path) -> DatasetSource:
    """Open the dataset called ``name`` (``data_root``: its folder, for a dataset that needs one;
    the phantom is generated into ``cache_root`` if absent)."""
    if name not in DATASETS:
        raise FetalbenchError(
            f"unknown dataset {name!r}; expected one of {', '.join(DATASETS.names())}"
        )
    dataset = DATASETS.get(name)
    if dataset.needs_data_root and data_root is None:
        raise FetalbenchError(f"--dataset {name} needs --data-root DIR, {dataset.data_root_help}")
    if not dataset.needs_data_root and data_root is not None:
        from_folders = [other for other in DATASETS.names() if DATASETS.get(other).needs_data_root]
        raise FetalbenchError(
            f"--dataset {name} takes no --data-root (drop it, or name a dataset read from a "
            f"folder: --dataset {' or '.join(from_folders)})"
        )
    source = dataset.opener(data_root, cache_root)
    if (source.identity.name, source.identity.synthetic) != (name, dataset.synthetic):
        raise FetalbenchError(
            f"dataset {name!r} ({DATASETS.source(name)}) opened a source named "
            f"{source.identity.name!r} with synthetic={source.identity.synthetic}; its opener "
            f"must return its own name and synthetic={dataset.synthetic}"
        )
    return source


def _open_phantom(data_root: Path | None, cache_root: Path) -> DatasetSource:
    from fetalbench.data.phantom.render import ensure_phantom

    return folder_source("phantom", True, ensure_phantom(cache_root))


def _open_fetal_planes_db(data_root: Path | None, cache_root: Path) -> DatasetSource:
    return folder_source("fetal_planes_db", False, Path(data_root))


register_dataset(Dataset(
    name="phantom",
    title="SYNTHETIC (phantom)",
    synthetic=True,
    description="The phantom's images are generated by fetalbench.",
    opener=_open_phantom,
))
register_dataset(Dataset(
    name="fetal_planes_db",
    title="FETAL_PLANES_DB",
    synthetic=False,
    description="Burgos-Artizzu et al., Scientific Reports 10:10200 (2020): 12,400 images of "
    "1,792 patients, CC BY 4.0 (Zenodo record 3904280).",
    opener=_open_fetal_planes_db,
    data_root_help="the folder holding FETAL_PLANES_DB_data.csv and Images/ (get it with "
    "`fetalbench data download --root DIR`)",
))
