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
"""Downstream protocols: fine-tune everything, or a linear probe on the frozen backbone."""
POOLS = ("task", "dataset")
"""Unlabelled pools a self-supervised stage may learn from: the task's training images (as in
the paper) or every training image of the dataset."""

Train = Callable[[Any], Any]
"""A method's ``train(context: MethodContext) -> MethodResult`` (:mod:`fetalbench.methods.api`,
which builds on this module, defines both types)."""


@dataclass(frozen=True)
class Method:
    """A registered method."""

    name: str
    description: str
    train: Train
    protocols: tuple[str, ...] = PROTOCOLS
    pretrains: bool = False


METHODS: Registry[Method] = Registry("method", entry_point_group="fetalbench.methods")


def register_method(
    name: str,
    description: str | None = None,
    protocols: tuple[str, ...] = PROTOCOLS,
    pretrains: bool = False,
) -> Callable[[Train], Train]:
    """Decorator that registers ``train`` as the method ``name`` with a one-line description.

    ``protocols`` lists the downstream protocols the method supports (an end-to-end method has
    only ``finetune``); grids skip the others and ``fetalbench run`` refuses them. ``pretrains``
    says the method has a label-free stage shared across fractions (reported by benchmarks).
    ``description`` may be left out only for a built-in declared in :mod:`fetalbench.methods`,
    whose declaration holds it.
    """
    text = description if description is not None else METHODS.declared_description(name)
    if text is None:
        raise FetalbenchError(f"method {name!r} needs a one-line description: "
                              f"register_method({name!r}, \"what it does\")")

    def decorate(train: Train) -> Train:
        METHODS.register(name, Method(name, text, train, protocols, pretrains), train.__module__)
        return train

    return decorate


INITS = ("random", "imagenet")
"""Backbone initialisations a method is offered from: random weights and ImageNet weights."""


def register_init_pair(
    base: str,
    train: Callable[[Any, str], Any],
    random_name: str | None = None,
    summary: str | None = None,
    protocols: tuple[str, ...] = PROTOCOLS,
    pretrains: bool = False,
) -> None:
    """Register ``train(context, init)`` once per initialisation: from random weights as
    ``random_name`` (default ``base``) and from ImageNet weights as ``<base>_imagenet``.

    The one way every random/ImageNet pair is made (supervised, dual task, two-stage methods,
    plugins). ``summary`` describes both (``"<summary>; <init> init"``); a built-in declared in
    :mod:`fetalbench.methods` leaves it out.
    """
    for init in INITS:
        name = (random_name or base) if init == "random" else f"{base}_imagenet"

        def train_from(context: Any, init: str = init) -> Any:
            return train(context, init)

        train_from.__module__, train_from.__qualname__ = train.__module__, name
        description = None if summary is None else f"{summary}; {init} init"
        register_method(name, description, protocols, pretrains)(train_from)
