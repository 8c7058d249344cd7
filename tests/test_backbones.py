"""Backbones: the offline ImageNet weights are real, and a missing hub fails in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fetalbench.errors import FetalbenchError
from fetalbench.methods import backbones

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_offline_weights_see_a_cat() -> None:
    data = pytest.importorskip("skimage.data")
    model, weights = backbones.imagenet_model("tf_efficientnet_lite0")
    assert weights.source == "offline-package"
    image = torch.from_numpy(np.ascontiguousarray(data.chelsea())).permute(2, 0, 1).float() / 255
    image = F.interpolate(image[None], size=(224, 224), mode="bilinear", antialias=True)
    with torch.inference_mode():
        probabilities = model.eval()((image - 0.5) / 0.5).softmax(dim=1)[0]
    assert int(probabilities.argmax()) in IMAGENET_CATS
    assert float(probabilities[list(IMAGENET_CATS)].sum()) > 0.5


def test_random_init_differs_from_imagenet() -> None:
    imagenet = backbones.create_backbone("tf_efficientnet_lite0", "imagenet")
    random = backbones.create_backbone("tf_efficientnet_lite0", "random")
    assert imagenet.weights.source == "offline-package" and random.weights.source == "random"
    stem = "model.conv_stem.weight"
    assert not torch.equal(imagenet.state_dict()[stem], random.state_dict()[stem])
    features = imagenet(torch.rand(2, 1, 32, 32))
    assert features.shape == (2, imagenet.num_features)


def test_backbone_without_offline_weights_fails_in_one_line() -> None:
    with pytest.raises(FetalbenchError) as error:
        backbones.create_backbone("resnet18", "imagenet")
    assert "FETALBENCH_OFFLINE is set" in str(error.value)
    assert "\n" not in str(error.value)


def test_position_mapping_checks_shapes() -> None:
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    with pytest.raises(FetalbenchError, match="has shape"):
        backbones.map_by_position(target, {"x": torch.zeros(3, 2), "y": torch.zeros(4)})
