"""Supervised baselines: train on the labelled fraction only.

``supervised_imagenet`` is standard transfer learning, the reference of Migliorelli et al.,
Computers in Biology and Medicine 174:108430 (2024): ImageNet weights (Deng et al., "ImageNet: A
large-scale hierarchical image database", CVPR 2009) fine-tuned on the labelled images.
``supervised_scratch`` starts from random weights and shows what ImageNet initialisation is worth.
"""

from __future__ import annotations

from fetalbench.methods.api import Classifier, FrozenEncoder, MethodContext, MethodResult
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.engine import fit_classifier
from fetalbench.methods.registry import register_init_pair


def train_supervised(context: MethodContext, init: str) -> MethodResult:
    """Fine-tune a backbone from ``init``."""
    backbone = create_backbone(context.profile.backbone, init)
    classifier = Classifier(backbone, len(context.data.classes))
    notes = fit_classifier(context, classifier)
    return MethodResult(classifier, {"init": init, "weights": backbone.weights.source, **notes})


def supervised_encoder(context: MethodContext, init: str) -> FrozenEncoder:
    """The profile's backbone from ``init``, frozen: the linear evaluation of ImageNet features
    (or of random ones, the floor every representation must clear)."""
    return FrozenEncoder(create_backbone(context.profile.backbone, init), {"init": init})


register_init_pair("supervised", train_supervised, random_name="supervised_scratch",
                   encoder=supervised_encoder)
