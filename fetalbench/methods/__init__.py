"""Methods: registered recipes that turn a task's data into a trained classifier.

Importing this package registers the built-in methods: the supervised baselines, the paper's
SimCLR strategies (pre-training and dual task) and the solo-learn family of self-supervised
baselines, each with random and ImageNet initialisation.
"""

from fetalbench.methods import (
    barlow_twins,
    byol,
    dino,
    dual_task,
    mocov3,
    nnclr,
    simclr,
    simsiam,
    supervised,
    swav,
    vicreg,
)
from fetalbench.methods.api import METHODS, register_method

__all__ = [
    "METHODS",
    "barlow_twins",
    "byol",
    "dino",
    "dual_task",
    "mocov3",
    "nnclr",
    "register_method",
    "simclr",
    "simsiam",
    "supervised",
    "swav",
    "vicreg",
]
