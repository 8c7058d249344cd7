"""Frozen foundation-model encoders, taking the linear evaluation: FetalCLIP, BiomedCLIP, DINOv2.

Each is a registered method whose encoder brings its own weights, resolution and normalisation
(so it takes no ``--backbone``); the linear evaluation (:mod:`fetalbench.methods.linear_evaluation`)
reads its image embeddings. Weight files come from the Hugging Face hub, or offline from the hub
cache, sha256 checked (:mod:`fetalbench.methods.hub`); a record names the repository, the file
and its sha256, and the preprocessing (the grayscale image repeated to RGB, resized to the
encoder's size by the image cache, normalised with the encoder's mean and std).

- ``fetalclip``: FetalCLIP (Maani et al., "FetalCLIP: A Visual-Language Foundation Model for Fetal
  Ultrasound Image Analysis", arXiv 2502.14807), a CLIP ViT-L/14 trained on 210,035 fetal
  ultrasound images with captions. Its open_clip configuration is the published
  ``FetalCLIP_config.json`` (``open_clip_configs/FetalCLIP.json`` beside this module), registered
  with ``open_clip.add_model_config``; its weights are ``FetalCLIP_weights.pt`` of the hub
  repository ``numansaeed/fetalclip-model``, loaded by ``open_clip.create_model``. Image
  embeddings are the visual tower's projected 768-d output at 224 px, CLIP's normalisation.
- ``biomedclip``: BiomedCLIP (Zhang et al., "BiomedCLIP", arXiv 2303.00915), a ViT-B/16 CLIP
  trained on PMC-15M, from its open_clip hub repository
  ``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``; its PubMedBERT text tower needs
  ``transformers`` to be built.
- ``dinov2_vits14``: DINOv2 ViT-S/14 (Oquab et al., "DINOv2", TMLR 2024), timm's
  ``vit_small_patch14_dinov2.lvd142m`` at 224 px (timm resamples its position embeddings).

open_clip and transformers are in the optional extra ``foundation``
(``pip install 'fetalbench[foundation]'``); without them, one line says so.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import timm

from fetalbench.errors import FetalbenchError
from fetalbench.methods.api import FrozenEncoder, MethodContext
from fetalbench.methods.backbones import EncoderWeights, GrayscaleBackbone, imagenet_model
from fetalbench.methods.hub import hub_file
from fetalbench.methods.registry import register_encoder

EXTRA = "pip install 'fetalbench[foundation]'"
"""How to install what these encoders need (pyproject's optional extra ``foundation``)."""


def require(module: str, encoder: str) -> None:
    """A one-line error naming the extra when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise FetalbenchError(f"{encoder} needs the package {module}, in fetalbench's optional "
                              f"extra 'foundation': {EXTRA}")


@dataclass(frozen=True)
class ClipWeights:
    """An open_clip model: its architecture's JSON configuration (named by the file's stem) and
    its weights file in a hub repository."""

    config: Path
    repository: str
    file: str

    @property
    def name(self) -> str:
        return self.config.stem


FETALCLIP = ClipWeights(Path(__file__).resolve().parent / "open_clip_configs" / "FetalCLIP.json",
                        "numansaeed/fetalclip-model", "FetalCLIP_weights.pt")
BIOMEDCLIP_REPOSITORY = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDCLIP_FILES = ("open_clip_config.json", "open_clip_pytorch_model.bin")
DINOV2 = "vit_small_patch14_dinov2.lvd142m"
FOUNDATION_RESOLUTION = 224


def clip_image_encoder(clip: object, weights: EncoderWeights) -> GrayscaleBackbone:
    """The visual tower of an open_clip model, fed grayscale images, with the model's own image
    size, mean and std."""
    import open_clip

    visual = clip.visual
    preprocess = open_clip.get_model_preprocess_cfg(clip)
    size = preprocess["size"]
    return GrayscaleBackbone(visual, tuple(preprocess["mean"]), tuple(preprocess["std"]),
                             weights, num_features=visual.output_dim,
                             resolution=size if isinstance(size, int) else size[0])


def fetalclip_encoder(context: MethodContext) -> FrozenEncoder:
    """FetalCLIP's image encoder (see the module doc)."""
    require("open_clip", "FetalCLIP")
    import open_clip

    spec = FETALCLIP
    weights = hub_file(spec.repository, (spec.file,), "FetalCLIP's weights")
    open_clip.add_model_config(spec.config)
    try:
        clip = open_clip.create_model(spec.name, pretrained=str(weights.path))
    except (RuntimeError, KeyError, ValueError) as error:
        raise FetalbenchError(f"{weights.path} does not load into FetalCLIP's architecture "
                              f"({type(error).__name__}); delete it and download it again"
                              ) from None
    return FrozenEncoder(clip_image_encoder(clip, EncoderWeights(
        "hub", spec.repository, spec.file, weights.sha256)), {"config": spec.config.name})


def biomedclip_encoder(context: MethodContext) -> FrozenEncoder:
    """BiomedCLIP's image encoder (see the module doc)."""
    require("open_clip", "BiomedCLIP")
    require("transformers", "BiomedCLIP")
    import open_clip

    files = [hub_file(BIOMEDCLIP_REPOSITORY, (name,), "BiomedCLIP") for name in BIOMEDCLIP_FILES]
    folder = files[0].path.parent
    try:
        clip = open_clip.create_model(f"local-dir:{folder}")
    except (OSError, RuntimeError, ValueError) as error:
        raise FetalbenchError(f"BiomedCLIP in {folder} does not build ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:120]}); its text tower's "
                              "configuration must be in the hub cache too") from None
    weights = files[1]
    return FrozenEncoder(clip_image_encoder(clip, EncoderWeights(
        "hub", BIOMEDCLIP_REPOSITORY, weights.file, weights.sha256)),
        {"config_sha256": files[0].sha256})


def dinov2_encoder(context: MethodContext) -> FrozenEncoder:
    """DINOv2 ViT-S/14's CLS embedding at 224 px (see the module doc)."""
    model, weights = imagenet_model(DINOV2, "DINOv2 weights", img_size=FOUNDATION_RESOLUTION)
    model.reset_classifier(0)
    config = timm.models.get_pretrained_cfg(DINOV2)
    return FrozenEncoder(GrayscaleBackbone(model, config.mean, config.std, weights,
                                           resolution=FOUNDATION_RESOLUTION))


register_encoder("fetalclip", fetalclip_encoder)
register_encoder("biomedclip", biomedclip_encoder)
register_encoder("dinov2_vits14", dinov2_encoder)
