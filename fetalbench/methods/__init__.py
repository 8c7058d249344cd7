"""Methods: registered recipes that turn a task's data into a trained classifier."""

from fetalbench.methods import supervised
from fetalbench.methods.api import METHODS, register_method

__all__ = ["METHODS", "register_method", "supervised"]
