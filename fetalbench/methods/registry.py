"""The method registry: what a method is to the rest of fetalbench, and how it is registered.

This module imports no torch, so listing methods (``fetalbench methods``) and parsing the command
line stay fast: the built-in methods are declared in :mod:`fetalbench.methods` by name,
description and module, and a method's module is imported the first time the method is looked
up (:meth:`fetalbench.registry.Registry.get`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetalbench.errors import FetalbenchError
from fetalbench.registry import Registry

if TYPE_CHECKING:
    from fetalbench.methods.api import MethodContext, MethodResult

PROTOCOLS = ("finetune", "linear")
"""Downstream protocols: fine-tune everything, or a linear probe on the frozen backbone."""
POOLS = ("task", "dataset")
"""Unlabelled pools a self-supervised stage may learn from: the task's training images (as in
the paper) or every training image of the dataset."""

Train = Callable[["MethodContext"], "MethodResult"]


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
