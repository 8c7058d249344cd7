"""Check a FETAL_PLANES_DB folder: every image decodes, class and split counts, patient overlap,
duplicate images.

The dataset is Burgos-Artizzu et al., "Evaluation of deep convolutional neural networks for
automatic classification of common maternal fetal ultrasound planes", Scientific Reports 10, 10200
(2020), doi:10.1038/s41598-020-67076-5 (CC BY 4.0). Its ``Train`` column is the official split,
said to be patient-disjoint; the published images also hold byte-identical copies (public reports
count about 190 pairs), and a copy that sits in both splits, or under two labels, leaks or
contradicts. :func:`verify_dataset` measures both from the files themselves, and decodes every
image (in forked worker processes, :mod:`fetalbench.data.worker_pool`): a truncated or corrupt PNG
found here is not found hours into a grid, when the image cache is first built.
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from fetalbench.data.fetal_planes_db import load_catalog
from fetalbench.data.worker_pool import worker_pool
from fetalbench.storage.digests import file_sha256

DECODE_CHUNK = 16  # images per task sent to a decoding worker


@dataclass(frozen=True)
class SplitCount:
    """How many images of one label (class, machine, operator) are in each official split."""

    label: str
    train: int
    test: int


@dataclass(frozen=True)
class DuplicateImage:
    """One image of a byte-identical group, with its split and labels."""

    name: str
    train: bool
    plane: str
    brain_plane: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Images whose files have the same bytes (same sha256)."""

    sha256: str
    images: tuple[DuplicateImage, ...]

    @property
    def crosses_split(self) -> bool:
        """Whether the copies sit in both the train and the test split."""
        return len({image.train for image in self.images}) > 1

    @property
    def crosses_class(self) -> bool:
        """Whether the copies carry different ``Plane`` or ``Brain_plane`` labels."""
        return len({(image.plane, image.brain_plane) for image in self.images}) > 1


@dataclass(frozen=True)
class UndecodableImage:
    """An image file that does not decode completely, and what Pillow said about it."""

    path: str
    error: str


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_dataset` found in one root."""

    root: Path
    images: int
    undecodable: tuple[UndecodableImage, ...]
    planes: tuple[SplitCount, ...]
    brain_planes: tuple[SplitCount, ...]
    machines: tuple[SplitCount, ...]
    operators: tuple[SplitCount, ...]
    train_patients: int
    test_patients: int
    patient_disjoint: bool
    patients_in_both: tuple[int, ...]
    duplicate_groups: int
    duplicate_images: int
    split_crossing: tuple[DuplicateGroup, ...]
    class_crossing: tuple[DuplicateGroup, ...]


def verify_dataset(root: Path, workers: int | None = None) -> VerifyReport:
    """Load ``root`` with :func:`load_catalog`; report the images that do not decode
    (:func:`undecodable_images`, in ``workers`` processes), counts, patient overlap and duplicates.

    Duplicates are files with identical bytes: only files sharing a size are hashed (sha256, read
    in chunks on a thread pool), so the 12,400 files of the full dataset take seconds.
    """
    root = Path(root)
    catalog = load_catalog(root)
    undecodable = undecodable_images(catalog["path"].tolist(), workers)
    train = catalog[catalog["train"]]
    test = catalog[~catalog["train"]]
    both = sorted(set(train["patient"]) & set(test["patient"]))
    groups = _duplicate_groups(catalog)
    return VerifyReport(
        root=root,
        images=len(catalog),
        undecodable=undecodable,
        planes=_split_counts(catalog, "plane"),
        brain_planes=_split_counts(catalog, "brain_plane"),
        machines=_split_counts(catalog, "machine"),
        operators=_split_counts(catalog, "operator"),
        train_patients=train["patient"].nunique(),
        test_patients=test["patient"].nunique(),
        patient_disjoint=not both,
        patients_in_both=tuple(int(patient) for patient in both),
        duplicate_groups=len(groups),
        duplicate_images=sum(len(group.images) for group in groups),
        split_crossing=tuple(group for group in groups if group.crosses_split),
        class_crossing=tuple(group for group in groups if group.crosses_class),
    )


def image_problem(path: str) -> str | None:
    """None when the image file at ``path`` decodes completely, else what is wrong with it.

    Two passes, as neither finds everything: Pillow's ``verify`` checks every chunk's checksum
    and that the file goes on to its end chunk, but decodes no pixel; ``load`` decodes every pixel
    (a file cut short fails) but reads no checksum and stops after the image data.
    """
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
    except UnidentifiedImageError:
        return "not an image (Pillow cannot identify its format)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def undecodable_images(
    paths: list[str], workers: int | None = None
) -> tuple[UndecodableImage, ...]:
    """The files of ``paths`` that fail :func:`image_problem`, in order.

    They are decoded in ``workers`` forked processes (default: all cores), with a progress bar
    on stderr when it is a terminal.
    """
    workers = max(1, min(workers or os.cpu_count() or 1, len(paths)))
    with worker_pool(workers) as pool:
        problems = list(
            tqdm(
                pool.map(image_problem, paths, chunksize=DECODE_CHUNK),
                total=len(paths),
                desc="decoding images",
                unit="img",
                disable=None,
            )
        )
    return tuple(
        UndecodableImage(path, problem)
        for path, problem in zip(paths, problems, strict=True)
        if problem is not None
    )


def _split_counts(catalog: pd.DataFrame, column: str) -> tuple[SplitCount, ...]:
    """Train/test counts per value of ``column``, largest total first."""
    counts = pd.crosstab(catalog[column], catalog["train"])
    counts = counts.reindex(columns=[True, False], fill_value=0)
    order = counts.sum(axis=1).sort_values(ascending=False, kind="stable").index
    return tuple(
        SplitCount(str(label), int(counts.at[label, True]), int(counts.at[label, False]))
        for label in order
    )


def _duplicate_groups(catalog: pd.DataFrame) -> list[DuplicateGroup]:
    """Groups of two or more catalog rows whose files are byte-identical, in catalog order."""
    sizes = catalog["path"].map(lambda path: os.stat(path).st_size)
    candidates = catalog[sizes.duplicated(keep=False)]
    workers = min(16, (os.cpu_count() or 1) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = list(
            tqdm(
                pool.map(file_sha256, candidates["path"]),
                total=len(candidates),
                desc="hashing images",
                unit="img",
                disable=None,
            )
        )
    by_hash: dict[str, list[DuplicateImage]] = defaultdict(list)
    for digest, row in zip(hashes, candidates.itertuples(index=False), strict=True):
        by_hash[digest].append(
            DuplicateImage(row.image_name, bool(row.train), row.plane, row.brain_plane)
        )
    return [
        DuplicateGroup(digest, tuple(images))
        for digest, images in by_hash.items()
        if len(images) > 1
    ]


def format_report(report: VerifyReport) -> str:
    """The report as terminal text: the images that do not decode (one line each), tables of
    counts, then the patient and duplicate checks."""
    lines = [f"FETAL_PLANES_DB at {report.root}: {report.images} images"]
    if report.undecodable:
        lines.append(f"images that do not decode: {len(report.undecodable)}")
        lines += [f"  {image.path}: {image.error}" for image in report.undecodable]
    else:
        lines.append("every image decodes")
    for title, counts in (
        ("Plane", report.planes),
        ("Brain_plane", report.brain_planes),
        ("US_Machine", report.machines),
        ("Operator", report.operators),
    ):
        lines.append(f"{title:<20s} {'train':>7s} {'test':>7s}")
        lines += [f"  {c.label:<18s} {c.train:>7d} {c.test:>7d}" for c in counts]
    lines.append(
        f"patients: {report.train_patients} train, {report.test_patients} test, "
        f"{len(report.patients_in_both)} in both"
    )
    if report.patient_disjoint:
        lines.append("official split is patient-disjoint: yes")
    else:
        shown = ", ".join(str(patient) for patient in report.patients_in_both)
        lines.append(f"official split is patient-disjoint: NO (patients in both: {shown})")
    lines.append(
        f"byte-identical images: {report.duplicate_groups} group(s) of "
        f"{report.duplicate_images} images; {len(report.split_crossing)} cross train/test, "
        f"{len(report.class_crossing)} cross classes"
    )
    for title, groups in (
        ("crossing train/test", report.split_crossing),
        ("crossing classes", report.class_crossing),
    ):
        for group in groups:
            members = "; ".join(
                f"{image.name} ({'train' if image.train else 'test'}, {image.plane} / "
                f"{image.brain_plane})"
                for image in group.images
            )
            lines.append(f"  {title} [{group.sha256[:12]}]: {members}")
    return "\n".join(lines)
