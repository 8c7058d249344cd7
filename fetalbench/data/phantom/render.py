"""The built-in phantom: synthetic B-mode fetal ultrasound in the FETAL_PLANES_DB layout.

FETAL_PLANES_DB (Burgos-Artizzu et al., "Evaluation of deep convolutional neural networks for
automatic classification of common maternal fetal ultrasound planes", Scientific Reports 10, 10200,
2020) is 12,400 images of 1,792 patients. The phantom copies its layout, so the same loader reads
both: ``FETAL_PLANES_DB_data.csv`` (``;``-separated, ``Train`` written ``1 ``/``0 `` with the real
file's trailing space), ``Images/<Image_name>.png`` (8-bit grey) and, beyond the real data,
``Masks/<Image_name>.png`` (label map of the structures drawn; ids in ``Masks/legend.json``) and
``phantom.json`` (settings, generator version, counts).

The metadata follows the real statistics: class shares of ``Plane`` and ``Brain_plane``; images
come in runs of one plane per patient (run lengths per plane, planes per patient as in the real
CSV, about 40% of patients with a single plane); operator/machine pairs as in the real data (Op. 1
and Op. 2 on the Voluson E6, Op. 3 on the Aloka, other operators on any machine); a
patient-disjoint split with half the patients on each side and about 57% of the images in train.
Each patient has a gestational-age scale and a gain preference, each operator a gain and zoom
style, each machine its probe geometry, burnt-in screen layout, grey map, time-gain curve, speckle
size and speckle reduction (:data:`~fetalbench.data.phantom.bmode.MACHINE_STYLES`; generator
version 2, so that a model trained on one machine meets a real shift on another); each image
varies in position, rotation, zoom, probe geometry, settings and speckle.

Anatomy is drawn by :mod:`~fetalbench.data.phantom.anatomy`, the B-mode image formed by
:mod:`~fetalbench.data.phantom.bmode`. Every image uses its own random generator seeded by
``(seed, stream, index)`` (and its patient's by ``(seed, stream, patient)``), all arithmetic is
float64 numpy/scipy and PNGs carry no metadata, so the same settings give the same files whatever
the number of worker processes. The PNG bytes also depend on the zlib that Pillow links (the same
for a given Pillow wheel); the pixels do not.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fetalbench.data.fetal_planes_db import COLUMNS, CSV_NAME, IMAGES_DIR, PLANES
from fetalbench.data.phantom.anatomy import STRUCTURES, draw_scene
from fetalbench.data.phantom.bmode import BeamGeometry, burn_in, form_bmode, sample_acquisition
from fetalbench.data.worker_pool import worker_pool
from fetalbench.errors import FetalbenchError
from fetalbench.paths import cache_dir as default_cache_dir
from fetalbench.storage.digests import sha256_hex

GENERATOR_VERSION = 2
MASKS_DIR = "Masks"
LEGEND_NAME = "legend.json"
MANIFEST_NAME = "phantom.json"

LEGEND: dict[int, str] = {0: "background", **dict(enumerate(STRUCTURES, start=1))}
"""Mask label id -> structure name (written to ``Masks/legend.json``)."""

_HEAD = STRUCTURES[:STRUCTURES.index("choroid_plexus") + 1]  # skull .. choroid plexus
DEFINING_STRUCTURES: dict[str, tuple[str, ...]] = {
    "Fetal brain": _HEAD,
    "Fetal abdomen": ("abdomen", "stomach", "umbilical_vein", "spine"),
    "Fetal femur": ("femur", "thigh"),
    "Fetal thorax": ("thorax", "heart", "ribs", "spine"),
    "Maternal cervix": ("cervix", "cervix_canal"),
    "Other": ("limb", "face", "kidney", "umbilical_cord"),
    "Trans-thalamic": ("thalami", "csp"),
    "Trans-cerebellum": ("cerebellum", "cisterna_magna"),
    "Trans-ventricular": ("ventricle", "choroid_plexus"),
}
"""Class name (``Plane`` classes and the three brain planes) -> mask structures that define it.

For a ``Plane`` class the whole part (e.g. every intracranial structure for ``Fetal brain``); for a
brain plane only the small structures that tell it apart from the other two.
"""

# Statistics of the real FETAL_PLANES_DB_data.csv.
_PLANE_COUNTS = {
    "Other": 4213,
    "Fetal brain": 3092,
    "Fetal thorax": 1718,
    "Maternal cervix": 1626,
    "Fetal femur": 1040,
    "Fetal abdomen": 711,
}
_BRAIN_PLANE_COUNTS = {
    "Trans-thalamic": 1638,
    "Trans-cerebellum": 714,
    "Trans-ventricular": 597,
    "Other": 143,
}
# Images per (patient, plane) run: share of single-image runs, mean extra images of longer runs.
_RUN_LENGTHS = {
    "Fetal abdomen": (0.84, 1.25),
    "Fetal brain": (0.20, 2.32),
    "Fetal femur": (0.72, 1.36),
    "Fetal thorax": (0.45, 2.30),
    "Maternal cervix": (0.70, 2.53),
    "Other": (0.65, 13.6),
}
_PLANES_PER_PATIENT = (723, 188, 256, 266, 248, 111)
_OPERATOR_MACHINE = {
    ("Op. 1", "Voluson E6"): 2792,
    ("Op. 2", "Voluson E6"): 2435,
    ("Op. 3", "Aloka"): 3560,
    ("Other", "Aloka"): 1554,
    ("Other", "Other"): 342,
    ("Other", "Voluson E6"): 635,
    ("Other", "Voluson S10"): 1082,
}
_TRAIN_IMAGE_FRACTION = 7129 / 12400
# File names carry a PlaneN index like the real ones (not used as a label by the loader).
_PLANE_FILE_INDEX = {
    "Other": 1,
    "Fetal abdomen": 2,
    "Fetal brain": 3,
    "Maternal cervix": 4,
    "Fetal femur": 5,
    "Fetal thorax": 6,
}
# Operator style: display gain offset (dB) and zoom.
_OPERATOR_STYLE = {
    "Op. 1": (1.5, 1.06),
    "Op. 2": (-1.5, 0.96),
    "Op. 3": (0.0, 1.0),
    "Other": (0.0, 1.0),
}
_PLAN_STREAM, _PATIENT_STREAM, _IMAGE_STREAM = 0, 1, 2


@dataclass(frozen=True)
class PhantomSettings:
    """What determines a phantom's content; equal settings give byte-identical folders."""

    n_images: int = 3000
    seed: int = 0
    width: int = 320
    height: int = 224

    def __post_init__(self) -> None:
        if self.n_images < 1 or self.width < 64 or self.height < 64:
            raise FetalbenchError(
                f"phantom settings need n_images >= 1 and width, height >= 64 (got {self})"
            )

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the settings as sorted JSON."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return sha256_hex(text.encode("utf-8"))


@dataclass(frozen=True)
class PhantomRecord:
    """One image's metadata row, and its position in the phantom."""

    index: int
    image_name: str
    patient: int
    plane: str
    brain_plane: str
    operator: str
    machine: str
    train: bool


def phantom_name(settings: PhantomSettings) -> str:
    """Folder name of a phantom in the cache: generator version and settings fingerprint."""
    return f"phantom-v{GENERATOR_VERSION}-{settings.fingerprint()[:12]}"


# --- metadata -----------------------------------------------------------------------------------


def _quotas(counts: dict[str, int], total: int) -> dict[str, int]:
    """Split ``total`` in proportion to ``counts`` (largest remainder, ties by order)."""
    scale = total / sum(counts.values())
    exact = {name: count * scale for name, count in counts.items()}
    quota = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: quota[name] - exact[name])
    for name in by_remainder[: total - sum(quota.values())]:
        quota[name] += 1
    return quota


def _run_lengths(rng: np.random.Generator, total: int, single: float, extra: float) -> list[int]:
    """Split ``total`` images into runs: one image with probability ``single``, else geometric."""
    runs: list[int] = []
    while total > 0:
        length = 1 if rng.random() < single else 1 + int(rng.geometric(1.0 / extra))
        runs.append(min(length, total))
        total -= runs[-1]
    return runs


def _group_runs(
    rng: np.random.Generator, runs: dict[str, list[int]]
) -> list[list[tuple[str, int]]]:
    """Deal the runs to patients: each patient gets runs of distinct planes."""
    planes_per_patient = np.array(_PLANES_PER_PATIENT, dtype=np.float64)
    planes_per_patient /= planes_per_patient.sum()
    patients = []
    while any(runs.values()):
        available = [plane for plane in runs if runs[plane]]
        k = min(int(rng.choice(len(planes_per_patient), p=planes_per_patient)) + 1, len(available))
        weights = np.array([len(runs[plane]) for plane in available], dtype=np.float64)
        chosen = rng.choice(len(available), size=k, replace=False, p=weights / weights.sum())
        patients.append([(available[i], runs[available[i]].pop()) for i in chosen])
    return patients


def _split_patients(rng: np.random.Generator, sizes: np.ndarray) -> np.ndarray:
    """Patient-disjoint split: half the patients train, about 57% of the images train.

    Patients are paired at random, one of each pair goes to train; pair assignments are then
    flipped where that brings the train share closer to the real one.
    """
    order = rng.permutation(len(sizes))
    train = np.zeros(len(sizes), dtype=bool)
    pairs = list(zip(order[0::2], order[1::2], strict=False))
    for first, second in pairs:
        train[first if rng.random() < 0.5 else second] = True
    target = _TRAIN_IMAGE_FRACTION * sizes.sum()
    current = sizes[train].sum()
    for pair in rng.permutation(len(pairs)):
        first, second = pairs[pair]
        gain = (sizes[second] - sizes[first]) * (1 if train[first] else -1)
        if abs(current + gain - target) < abs(current - target):
            train[first], train[second] = train[second], train[first]
            current += gain
    return train


def plan_phantom(settings: PhantomSettings) -> list[PhantomRecord]:
    """The metadata of every image, in CSV order (patients in order, one plane's run at a time)."""
    rng = np.random.default_rng([settings.seed, _PLAN_STREAM])
    plane_quota = _quotas(_PLANE_COUNTS, settings.n_images)
    runs = {plane: _run_lengths(rng, plane_quota[plane], *_RUN_LENGTHS[plane]) for plane in PLANES}
    patients = _group_runs(rng, runs)
    sizes = np.array([sum(length for _, length in patient) for patient in patients])
    train = _split_patients(rng, sizes)
    pairs = list(_OPERATOR_MACHINE)
    pair_p = np.array(list(_OPERATOR_MACHINE.values()), dtype=np.float64)
    staff = rng.choice(len(pairs), size=len(patients), p=pair_p / pair_p.sum())
    brain_quota = _quotas(_BRAIN_PLANE_COUNTS, plane_quota["Fetal brain"])
    brain_labels = iter(rng.permutation([b for b, n in brain_quota.items() for _ in range(n)]))
    records = []
    for number, patient in enumerate(patients, start=1):
        operator, machine = pairs[staff[number - 1]]
        for plane, length in patient:
            for k in range(1, length + 1):
                brain = str(next(brain_labels)) if plane == "Fetal brain" else "Not A Brain"
                name = f"Patient{number:05d}_Plane{_PLANE_FILE_INDEX[plane]}_{k}_of_{length}"
                records.append(
                    PhantomRecord(
                        len(records),
                        name,
                        number,
                        plane,
                        brain,
                        operator,
                        machine,
                        bool(train[number - 1]),
                    )
                )
    return records


# --- images -------------------------------------------------------------------------------------


def render(record: PhantomRecord, settings: PhantomSettings) -> tuple[np.ndarray, np.ndarray]:
    """The 8-bit B-mode image and the uint8 structure mask of one record."""
    patient_rng = np.random.default_rng([settings.seed, _PATIENT_STREAM, record.patient])
    gestational_scale = patient_rng.uniform(0.82, 1.12)
    patient_gain = patient_rng.normal(0.0, 1.5)
    rng = np.random.default_rng([settings.seed, _IMAGE_STREAM, record.index])
    operator_gain, operator_zoom = _OPERATOR_STYLE[record.operator]
    zoom = operator_zoom * rng.uniform(0.88, 1.12)
    shape = (settings.height, settings.width)
    acq = sample_acquisition(
        rng,
        record.machine,
        record.plane == "Maternal cervix",
        shape,
        operator_gain + patient_gain,
        zoom,
    )
    geometry = BeamGeometry(acq.probe, *shape)
    size = gestational_scale * zoom * rng.uniform(0.93, 1.07)
    scene = draw_scene(record.plane, record.brain_plane, rng, geometry.depth, size)
    image = form_bmode(scene.log_echo, scene.spec, scene.atten, geometry, acq, rng)
    burn_in(image, record.machine, acq, rng)
    mask = np.where(geometry.inside, scene.label, 0).astype(np.uint8)
    return image, mask


def _save_png(pixels: np.ndarray, path: Path) -> None:
    """Write an 8-bit greyscale PNG without metadata (no timestamps)."""
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)


def _write_record(job: tuple[PhantomRecord, PhantomSettings, Path]) -> None:
    """Render one record and write its image and mask."""
    record, settings, root = job
    image, mask = render(record, settings)
    _save_png(image, root / IMAGES_DIR / f"{record.image_name}.png")
    _save_png(mask, root / MASKS_DIR / f"{record.image_name}.png")


def _tune_allocator() -> None:
    """Pool initializer: let glibc keep freed image-sized buffers instead of unmapping them.

    Otherwise every temporary array is a fresh mmap and its page faults double a worker's time.
    Has no effect on the output; a no-op where glibc is absent.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD


def _write_csv(path: Path, records: Iterable[PhantomRecord]) -> None:
    """The metadata CSV as the real one: ``;``, LF, ``Train`` with a trailing space."""
    lines = [";".join(COLUMNS)]
    for r in records:
        values = (r.image_name, str(r.patient), r.plane, r.brain_plane, r.operator, r.machine)
        lines.append(";".join(values) + f";{int(r.train)} ")
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def _manifest(settings: PhantomSettings, records: list[PhantomRecord]) -> dict:
    """Contents of ``phantom.json``: generator version, settings and counts."""
    train = [r for r in records if r.train]
    return {
        "generator_version": GENERATOR_VERSION,
        "fingerprint": settings.fingerprint(),
        "settings": asdict(settings),
        "counts": {
            "images": len(records),
            "patients": len({r.patient for r in records}),
            "train_images": len(train),
            "test_images": len(records) - len(train),
            "train_patients": len({r.patient for r in train}),
            "plane": {p: n for p, n in sorted(Counter(r.plane for r in records).items())},
            "brain_plane": {
                b: n for b, n in sorted(Counter(r.brain_plane for r in records).items())
            },
        },
    }


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def generate_phantom(root: Path, settings: PhantomSettings, workers: int | None = None) -> None:
    """Write a phantom into ``root`` (created if needed), ``phantom.json`` last.

    ``workers`` processes render the images (default: all CPUs); the files do not depend on it.
    Use :func:`ensure_phantom` for an atomic, cached folder.
    """
    root = Path(root)
    for folder in (root, root / IMAGES_DIR, root / MASKS_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    records = plan_phantom(settings)
    _write_csv(root / CSV_NAME, records)
    legend = {str(label): name for label, name in LEGEND.items()}
    (root / MASKS_DIR / LEGEND_NAME).write_bytes(_json_bytes(legend))
    jobs = [(record, settings, root) for record in records]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for job in jobs:
            _write_record(job)
    else:
        with worker_pool(workers, _tune_allocator) as pool:
            chunk = max(1, min(32, len(jobs) // (4 * workers)))
            for _ in pool.map(_write_record, jobs, chunksize=chunk):
                pass
    (root / MANIFEST_NAME).write_bytes(_json_bytes(_manifest(settings, records)))


# --- cache --------------------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (POSIX)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(cache: Path, name: str) -> None:
    """Delete temporary folders of ``name`` left by generations whose process is gone."""
    for folder in cache.glob(f".{name}.tmp-*"):
        pid = folder.name.removeprefix(f".{name}.tmp-").split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def ensure_phantom(
    cache_dir: Path | None = None,
    settings: PhantomSettings = PhantomSettings(),
    workers: int | None = None,
) -> Path:
    """The folder ``cache_dir/phantom-v<version>-<fingerprint[:12]>``, generated if absent.

    ``cache_dir`` defaults to ``$FETALBENCH_CACHE`` or ``~/.cache/fetalbench``. Generation writes a
    hidden temporary sibling and renames it into place when complete, so a killed run never
    leaves a folder that looks finished; temporaries of dead processes are removed on the next
    call.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = phantom_name(settings)
    root = cache / name
    if (root / MANIFEST_NAME).is_file():
        return root
    if root.exists():
        raise FetalbenchError(
            f"{root} exists but has no {MANIFEST_NAME}: it is not a finished phantom; delete it"
        )
    cache.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(cache, name)
    temporary = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=cache))
    try:
        generate_phantom(temporary, settings, workers)
        os.replace(temporary, root)
    except OSError:
        if not (root / MANIFEST_NAME).is_file():
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return root
