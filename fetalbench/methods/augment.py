"""One augmentation definition for grayscale B-mode ultrasound, applied to whole batches.

Every method draws its views from :class:`UltrasoundAugment`; self-supervised methods use the
``strong`` setting (two views per image, as in SimCLR: Chen et al., "A Simple Framework for
Contrastive Learning of Visual Representations", ICML 2020), supervised fine-tuning the ``light``
one. The transforms run on batched tensors (on the GPU when there is one): one ``grid_sample`` does
crop, flip and rotation together, so there is no per-image PIL work.

Why each transform, and why not others:

- Random resized crop: SimCLR's most important augmentation; crops of a plane still show parts of
  its defining anatomy. The area range keeps most of the field of view because the structures that
  tell brain planes apart are small.
- Horizontal flip: the fetus lies either way round in the uterus; left/right is not a label cue.
  No vertical flip: the transducer is always at the top, so depth runs downwards.
- Small rotation (+-15 degrees): probe angle varies between operators; larger angles would put the
  near field at the side, which never happens.
- Brightness, contrast and gamma: overall gain, dynamic range and the machine's grey map differ
  between operators and machines (Voluson, Aloka). Grayscale input, so no hue or saturation jitter
  (they would do nothing or invent colour that B-mode does not have).
- Gaussian blur: the point-spread function varies with depth, frequency and machine.
- Multiplicative speckle-like noise: ultrasound noise is multiplicative (Wagner et al., "Statistics
  of speckle in ultrasound B-scans", IEEE Trans. Sonics Ultrason. 30(3), 1983), so it is scaled by
  the local intensity rather than added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges and probabilities of :class:`UltrasoundAugment`."""

    crop_area: tuple[float, float]
    crop_ratio: tuple[float, float]
    flip_probability: float
    rotation_degrees: float
    intensity_probability: float
    brightness: float
    contrast: float
    gamma: float
    blur_probability: float
    blur_sigma: tuple[float, float]
    noise_probability: float
    noise_std: float


STRONG = AugmentSettings(
    crop_area=(0.35, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    flip_probability=0.5,
    rotation_degrees=15.0,
    intensity_probability=0.8,
    brightness=0.25,
    contrast=0.4,
    gamma=0.4,
    blur_probability=0.5,
    blur_sigma=(0.1, 1.5),
    noise_probability=0.5,
    noise_std=0.2,
)

LIGHT = AugmentSettings(
    crop_area=(0.7, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    flip_probability=0.5,
    rotation_degrees=10.0,
    intensity_probability=0.5,
    brightness=0.1,
    contrast=0.2,
    gamma=0.2,
    blur_probability=0.0,
    blur_sigma=(0.1, 1.0),
    noise_probability=0.0,
    noise_std=0.0,
)


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def _chance(n: int, probability: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) < probability


class UltrasoundAugment(nn.Module):
    """Random views of a batch ``[B, 1, H, W]`` of images in [0, 1] (see the module docstring).

    Blur sigma is in pixels of a 224-pixel image and scaled to the batch's resolution, so one
    setting means the same physical blur at every profile.
    """

    def __init__(self, settings: AugmentSettings):
        super().__init__()
        self.settings = settings

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = self._geometry(images)
        views = self._intensity(views)
        if self.settings.blur_probability > 0:
            views = self._blur(views)
        if self.settings.noise_probability > 0:
            views = self._speckle(views)
        return views.clamp_(0.0, 1.0)

    def _geometry(self, images: torch.Tensor) -> torch.Tensor:
        s, n, device = self.settings, images.shape[0], images.device
        area = _uniform(n, *s.crop_area, device)
        log_ratio = _uniform(n, math.log(s.crop_ratio[0]), math.log(s.crop_ratio[1]), device)
        ratio = log_ratio.exp()
        width = (area * ratio).sqrt().clamp(max=1.0)
        height = (area / ratio).sqrt().clamp(max=1.0)
        centre_x = (1 - width) * _uniform(n, -1.0, 1.0, device)
        centre_y = (1 - height) * _uniform(n, -1.0, 1.0, device)
        angle = torch.deg2rad(_uniform(n, -s.rotation_degrees, s.rotation_degrees, device))
        flip = torch.where(_chance(n, s.flip_probability, device), -1.0, 1.0)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack(
            [
                torch.stack([cos * width * flip, -sin * height, centre_x], dim=1),
                torch.stack([sin * width * flip, cos * height, centre_y], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)

    def _intensity(self, images: torch.Tensor) -> torch.Tensor:
        s, n, device = self.settings, images.shape[0], images.device
        apply = _chance(n, s.intensity_probability, device).view(n, 1, 1, 1)
        brightness = _uniform(n, -s.brightness, s.brightness, device).view(n, 1, 1, 1)
        contrast = _uniform(n, 1 - s.contrast, 1 + s.contrast, device).view(n, 1, 1, 1)
        gamma = _uniform(n, math.log(1 - s.gamma), math.log(1 + s.gamma), device).exp()
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        adjusted = ((images - mean) * contrast + mean + brightness).clamp(0.0, 1.0)
        adjusted = adjusted.pow(gamma.view(n, 1, 1, 1))
        return torch.where(apply, adjusted, images)

    def _blur(self, images: torch.Tensor) -> torch.Tensor:
        s, (n, _, height, width), device = self.settings, images.shape, images.device
        scale = height / 224.0
        sigma = _uniform(n, *s.blur_sigma, device) * scale
        sigma = torch.where(_chance(n, s.blur_probability, device), sigma, 1e-3)
        radius = max(1, math.ceil(3 * s.blur_sigma[1] * scale))
        offsets = torch.arange(-radius, radius + 1, device=device, dtype=images.dtype)
        kernels = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
        kernels = (kernels / kernels.sum(dim=1, keepdim=True)).view(n, 1, 1, -1)
        flat = images.view(1, n, height, width)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernels, groups=n)
        flat = F.conv2d(
            F.pad(flat, (0, 0, radius, radius), mode="reflect"),
            kernels.transpose(2, 3),
            groups=n,
        )
        return flat.view(n, 1, height, width)

    def _speckle(self, images: torch.Tensor) -> torch.Tensor:
        s, n, device = self.settings, images.shape[0], images.device
        std = _uniform(n, 0.0, s.noise_std, device)
        std = torch.where(_chance(n, s.noise_probability, device), std, 0.0).view(n, 1, 1, 1)
        return images * (1.0 + std * torch.randn_like(images))
