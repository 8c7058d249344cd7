"""Supervised baselines: train on the labelled fraction only.

``supervised_imagenet`` is standard transfer learning, the reference of Migliorelli et al.,
Computers in Biology and Medicine 174:108430 (2024): ImageNet weights (Deng et al., "ImageNet: A
large-scale hierarchical image database", CVPR 2009) fine-tuned on the labelled images.
``supervised_scratch`` starts from random weights and shows what ImageNet initialisation is worth.
"""

from __future__ import annotations

from fetalbench.methods.api import Classifier, MethodContext, MethodResult
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.engine import fit_classifier
from fetalbench.methods.registry import register_init_pair


def train_supervised(context: MethodContext, init: str) -> MethodResult:
    """Fine-tune (or, with the linear protocol, train a head on) a backbone from ``init``."""
    backbone = create_backbone(context.profile.backbone, init)
    classifier = Classifier(backbone, len(context.data.classes))
    notes = fit_classifier(context, classifier, freeze_backbone=context.protocol == "linear")
    return MethodResult(classifier, {"init": init, "weights": backbone.weights_source, **notes})


register_init_pair("supervised", train_supervised, random_name="supervised_scratch")
