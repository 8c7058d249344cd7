"""Grad-CAM class activation maps of a :class:`~fetalbench.methods.api.Classifier`.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017. For a target class ``c`` and a feature map ``A`` of a convolutional
layer, each channel ``k`` is weighted by the spatial mean of the gradient of the class score:
``alpha_k = mean_ij d y_c / d A_k[i, j]``, and the map is ``ReLU(sum_k alpha_k A_k)``, upsampled
bilinearly to the input size and scaled to [0, 1] per image.

The feature map is captured by a forward hook on the target layer of the timm model inside the
backbone; its gradient is taken with ``torch.autograd.grad`` on that captured tensor (the role a
backward hook plays), which leaves the parameters' ``.grad`` untouched and works when the
backbone is frozen (linear protocol) because the input is marked as requiring a gradient.

Default target layer: among the outputs of timm's feature stages (``model.feature_info``) and the
model's top-level children, the last one computed whose output is a feature map of at least 4 x 4
at the run's resolution. At 224 px this is EfficientNet-Lite0's final ``bn2`` (7 x 7); at 64 px the
last stage is only 2 x 2, so it is ``blocks.4`` (stride 16, 4 x 4); at 32 px ``blocks.2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fetalbench.errors import FetalbenchError
from fetalbench.methods.api import Classifier
from fetalbench.methods.engine import evaluating, to_float

MIN_CAM_SIZE = 4


def candidate_layers(model: nn.Module) -> list[str]:
    """Names of the modules whose outputs may hold the CAM: timm feature stages, top children."""
    stages = [info["module"] for info in getattr(model, "feature_info", [])]
    children = [name for name, _ in model.named_children()]
    return list(dict.fromkeys([*stages, *children]))


@torch.no_grad()
def feature_map_sizes(model: nn.Module, resolution: int) -> dict[str, tuple[int, int]]:
    """Spatial size of every candidate layer's output at ``resolution``, in the order computed."""
    modules = dict(model.named_modules())
    sizes: dict[str, tuple[int, int]] = {}
    handles = []
    for name in candidate_layers(model):
        def record(_: nn.Module, __: object, output: object, name: str = name) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                sizes.pop(name, None)
                sizes[name] = (int(output.shape[2]), int(output.shape[3]))
        handles.append(modules[name].register_forward_hook(record))
    parameter = next(model.parameters())
    training = model.training
    try:
        model.eval()
        model(torch.zeros(1, 3, resolution, resolution, dtype=parameter.dtype,
                          device=parameter.device))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return sizes


def default_target_layer(classifier: Classifier, resolution: int) -> str:
    """The deepest candidate layer with a feature map of at least 4 x 4 (see the module doc)."""
    sizes = feature_map_sizes(classifier.backbone.model, resolution)
    large = [name for name, (h, w) in sizes.items() if min(h, w) >= MIN_CAM_SIZE]
    if not large:
        raise FetalbenchError(
            f"no layer of the backbone keeps a {MIN_CAM_SIZE}x{MIN_CAM_SIZE} feature map at "
            f"{resolution}px; use a profile with a larger resolution"
        )
    return large[-1]


def grad_cam(
    classifier: Classifier,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: str | None = None,
    channels_last: bool = False,
    batch_size: int = 128,
    precision: str = "32-true",
) -> torch.Tensor:
    """Grad-CAM maps ``[N, H, W]`` in [0, 1] of uint8 images ``[N, 1, H, W]`` for ``targets``.

    ``targets`` holds one class index per image. ``layer`` names a module of the timm model
    (``classifier.backbone.model``); by default :func:`default_target_layer`. A map whose
    activations are all zero for its class (no positive evidence) is all zeros. Runs in
    evaluation mode on the training device in the profile's ``precision``
    (:func:`~fetalbench.methods.engine.evaluating`); the map itself is computed in float32 from
    the captured activations and gradients. Returns a float32 CPU tensor.
    """
    if len(images) != len(targets):
        raise FetalbenchError(f"{len(images)} images but {len(targets)} target classes")
    height, width = images.shape[-2:]
    if len(images) == 0:
        return torch.zeros(0, height, width)
    layer = layer or default_target_layer(classifier, int(height))
    modules = dict(classifier.backbone.model.named_modules())
    if layer not in modules:
        raise FetalbenchError(f"the backbone has no layer {layer!r}; pick one of its modules")
    captured: list[torch.Tensor] = []
    handle = modules[layer].register_forward_hook(
        lambda _module, _inputs, output: captured.append(output)
    )
    maps = []
    try:
        with evaluating(classifier, precision) as device:
            for start in range(0, len(images), batch_size):
                batch = to_float(images[start : start + batch_size].to(device), channels_last)
                chosen = targets[start : start + batch_size].to(device)
                captured.clear()
                with torch.enable_grad():
                    logits = classifier(batch.requires_grad_(True))
                    score = logits.gather(1, chosen.view(-1, 1)).sum()
                    (activations,) = captured
                    (gradients,) = torch.autograd.grad(score, activations)
                weights = gradients.mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights.float() * activations.detach().float())
                             .sum(dim=1, keepdim=True))
                cam = F.interpolate(cam, size=(height, width), mode="bilinear",
                                    align_corners=False).squeeze(1)
                low = cam.amin(dim=(1, 2), keepdim=True)
                span = cam.amax(dim=(1, 2), keepdim=True) - low
                maps.append(torch.where(span > 0, (cam - low) / span.clamp_min(1e-12), 0.0).cpu())
    finally:
        handle.remove()
    return torch.cat(maps)
