"""A frozen encoder's features, computed once and cached as a checksummed artifact.

The linear evaluation (:mod:`fetalbench.methods.linear_evaluation`) reads every image of a task
through a frozen encoder. The features depend on the encoder's weights, the dataset version, the
resolution and preprocessing, the task's images and where they were computed (device and intra-op
threads, whose kernels round differently), never on the label budget, seed or validation
setting: so they are computed once per (encoder weights, dataset fingerprint, resolution, task)
and every run of that encoder on that task reuses them, whatever its labels. They are kept as a
``.npy`` file under ``<cache>/features/`` beside a sidecar holding the key and the file's sha256
(:class:`~fetalbench.storage.artifacts.Artifact`); a file that does not match is computed again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fetalbench.data.image_cache import load_images
from fetalbench.methods.backbones import GrayscaleBackbone
from fetalbench.methods.engine import evaluating, training_device
from fetalbench.storage.artifacts import Artifact, Refusal, Refused
from fetalbench.storage.digests import sha256_hex

if TYPE_CHECKING:
    from fetalbench.data.prepare import RunData

FEATURES_DIR = "features"
BATCH = 128
FULL_PRECISION = "32-true"
"""Features are computed in full precision whatever the profile trains in."""


def weights_digest(encoder: torch.nn.Module) -> str:
    """The sha256 of an encoder's state: every tensor's name, dtype, shape and bytes, in order.
    Two encoders with one digest compute the same features (at one preprocessing)."""
    digest = []
    for name, tensor in encoder.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        header = f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode()
        digest.append(sha256_hex(header + tensor.reshape(-1).view(torch.uint8).numpy().tobytes()))
    return sha256_hex("".join(digest).encode())


@torch.inference_mode()
def embed(encoder: torch.nn.Module, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """float32 features ``[N, D]`` of uint8 images ``[N, H, W]``, in evaluation mode and full
    precision on the training device, ``batch_size`` images at a time."""
    with evaluating(encoder, FULL_PRECISION) as device:
        parts = [encoder(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
                         .unsqueeze(1).to(device).float().div(255.0)).float().cpu()
                 for start in range(0, len(images), batch_size)]
    return torch.cat(parts).numpy()


def features_key(encoder: GrayscaleBackbone, dataset_fingerprint: str, task: str,
                 resolution: int, n_images: int) -> dict:
    """Everything the features of a task's images depend on (see the module doc)."""
    return {
        "encoder_sha256": weights_digest(encoder),
        "encoder_weights": encoder.weights.as_record(),
        "preprocessing": encoder.preprocessing(resolution),
        "dataset_fingerprint": dataset_fingerprint,
        "task": task,
        "images": n_images,
        "device": training_device().type,
        "threads": torch.get_num_threads(),
    }


def features_paths(cache_root: Path, key: dict) -> tuple[Path, Path]:
    """The features (``.npy``) and sidecar of ``key`` under ``<cache_root>/features/``."""
    digest = sha256_hex(json.dumps(key, sort_keys=True).encode())[:20]
    resolution = key["preprocessing"]["resolution"]
    stem = Path(cache_root) / FEATURES_DIR / f"{key['task']}-{resolution}px-{digest}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def cached_features(encoder: GrayscaleBackbone, images: Callable[[], np.ndarray], key: dict,
                    cache_root: Path, log: Callable[[str], None]) -> tuple[np.ndarray, bool]:
    """The features of ``key`` from the cache, or computed from ``images()`` (uint8
    ``[N, H, W]``, decoded only when needed) and cached; and whether they were reused."""
    key = json.loads(json.dumps(key))  # as the sidecar reads it back: tuples become lists
    artifact = Artifact(*features_paths(cache_root, key))
    verdict = artifact.verify({"key": key})
    if not isinstance(verdict, Refused):
        return np.load(artifact.data, allow_pickle=False), True
    if verdict.reason is not Refusal.MISSING:
        log(f"cached features {artifact.data} refused ({verdict.reason.value}); computing them "
            "again")
    features = embed(encoder, images())
    buffer = io.BytesIO()
    np.save(buffer, features, allow_pickle=False)
    artifact.write(buffer.getvalue(), {"key": key})
    log(f"features: {features.shape[0]} images x {features.shape[1]} cached in {artifact.data}")
    return features, False


def task_features(encoder: GrayscaleBackbone, prepared: RunData, cache_root: Path,
                  log: Callable[[str], None]) -> tuple[np.ndarray, dict, bool]:
    """The features of every image of ``prepared``'s task (one row per task row) at the
    encoder's resolution (``prepared``'s when it has none), from the cache or computed and
    cached (:func:`cached_features`); their key; and whether they were reused. The one way the
    linear evaluation gets its features: a run's (:mod:`fetalbench.runs.execute`) and the
    phantom's calibration probe (:mod:`fetalbench.data.phantom.calibration`)."""
    resolution = encoder.resolution or prepared.resolution

    def images() -> np.ndarray:
        if resolution == prepared.resolution:
            return prepared.images
        source = prepared.source
        return load_images(source.catalog, source.identity.fingerprint, resolution,
                           cache_root)[prepared.rows.index.to_numpy()]

    key = features_key(encoder, prepared.source.identity.fingerprint, prepared.task.name,
                       resolution, len(prepared.rows))
    features, reused = cached_features(encoder, images, key, cache_root, log)
    return features, key, reused
