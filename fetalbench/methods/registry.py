"""The method registry: what a method is to the rest of fetalbench, and how it is registered.

This module imports no torch, so listing methods (``fetalbench methods``) and parsing the command
line stay fast: the built-in methods are declared in :mod:`fetalbench.methods` by name,
description and module, and a method's module is imported the first time the method is looked
up (:meth:`fetalbench.registry.Registry.get`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fetalbench.errors import FetalbenchError
from fetalbench.registry import Registry

PROTOCOLS = ("finetune", "linear")
"""Downstream protocols: ``finetune``, the method trains a classifier on the labelled images;
``linear``, the linear evaluation of its frozen encoder (Kolesnikov et al., "Revisiting
Self-Supervised Visual Representation Learning", CVPR 2019): a logistic regression on the
encoder's cached features, with k-NN beside it (:mod:`fetalbench.methods.linear_evaluation`)."""
POOLS = ("task", "dataset")
"""Unlabelled pools a self-supervised stage may learn from: the task's training images (as in
the paper) or every training image of the dataset."""

Train = Callable[[Any], Any]
"""A method's ``train(context: MethodContext) -> MethodResult`` (:mod:`fetalbench.methods.api`,
which builds on this module, defines both types)."""
Encode = Callable[[Any], Any]
"""A method's ``encoder(context: MethodContext) -> FrozenEncoder``: the frozen encoder its
linear evaluation probes (ImageNet weights, a cached pre-training stage, a foundation model)."""


@dataclass(frozen=True)
class Method:
    """A registered method: ``train`` for fine-tuning, ``encoder`` for the linear evaluation
    (either may be None, not both); ``takes_backbone`` says it builds the profile's backbone,
    which ``--backbone`` replaces (a foundation model brings its own)."""

    name: str
    description: str
    train: Train | None
    pretrains: bool = False
    encoder: Encode | None = None
    takes_backbone: bool = True

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols it supports: ``finetune`` with ``train``, ``linear`` with ``encoder``."""
        return tuple(protocol for protocol, given in zip(PROTOCOLS, (self.train, self.encoder),
                                                         strict=True) if given is not None)


METHODS: Registry[Method] = Registry("method", entry_point_group="fetalbench.methods")


def _description(name: str, description: str | None) -> str:
    """``description``, or the one ``name`` was declared with; an error when neither exists."""
    text = description if description is not None else METHODS.declared_description(name)
    if text is None:
        raise FetalbenchError(f"method {name!r} needs a one-line description: "
                              f"register_method({name!r}, \"what it does\")")
    return text


def register_method(
    name: str,
    description: str | None = None,
    pretrains: bool = False,
    encoder: Encode | None = None,
) -> Callable[[Train], Train]:
    """Decorator that registers ``train`` as the method ``name`` with a one-line description.

    The method supports ``finetune``, and ``linear`` when it gives the ``encoder`` that protocol
    evaluates frozen (an end-to-end method has none); grids skip the protocols a method lacks
    and ``fetalbench run`` refuses them. ``pretrains`` says the method has a label-free stage
    shared across fractions (reported by benchmarks). ``description`` may be left out only for
    a built-in declared in :mod:`fetalbench.methods`, whose declaration holds it.
    """
    text = _description(name, description)

    def decorate(train: Train) -> Train:
        METHODS.register(name, Method(name, text, train, pretrains, encoder), train.__module__)
        return train

    return decorate


def register_encoder(name: str, encoder: Encode, description: str | None = None) -> Encode:
    """Register ``name``: a frozen encoder that brings its own weights and preprocessing (a
    foundation model), taking the linear evaluation only and no ``--backbone``."""
    text = _description(name, description)
    METHODS.register(name, Method(name, text, None, encoder=encoder, takes_backbone=False),
                     encoder.__module__)
    return encoder


INITS = ("random", "imagenet")
"""Backbone initialisations a method is offered from: random weights and ImageNet weights."""


def register_init_pair(
    base: str,
    train: Callable[[Any, str], Any],
    random_name: str | None = None,
    summary: str | None = None,
    pretrains: bool = False,
    encoder: Callable[[Any, str], Any] | None = None,
) -> None:
    """Register ``train(context, init)`` once per initialisation: from random weights as
    ``random_name`` (default ``base``) and from ImageNet weights as ``<base>_imagenet``; with
    ``encoder(context, init)``, the frozen encoder of each for the linear evaluation.

    The one way every random/ImageNet pair is made (supervised, dual task, two-stage methods,
    plugins). ``summary`` describes both (``"<summary>; <init> init"``); a built-in declared in
    :mod:`fetalbench.methods` leaves it out.
    """
    for init in INITS:
        name = (random_name or base) if init == "random" else f"{base}_imagenet"

        def train_from(context: Any, init: str = init) -> Any:
            return train(context, init)

        def encoder_from(context: Any, init: str = init) -> Any:
            return encoder(context, init)

        train_from.__module__, train_from.__qualname__ = train.__module__, name
        description = None if summary is None else f"{summary}; {init} init"
        register_method(name, description, pretrains,
                        None if encoder is None else encoder_from)(train_from)
