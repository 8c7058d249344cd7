"""Plugins: methods, tasks and datasets that other installed distributions add by entry points.

A distribution declares entry points in the group ``fetalbench.methods`` (methods),
``fetalbench.tasks`` (tasks) or ``fetalbench.datasets`` (datasets), in its ``pyproject.toml``::

    [project.entry-points."fetalbench.methods"]
    rotnet = "fetalbench_plugin_example.rotnet"

    [project.entry-points."fetalbench.datasets"]
    my_scans = "my_plugin.datasets:register"

The rule for an entry point's value (what :meth:`importlib.metadata.EntryPoint.load` returns):

- ``package.module`` names a module: importing it registers, through ``register_method``,
  ``register_two_stage``, ``register_task`` or ``register_dataset`` at module level (as the
  built-in modules do);
- ``package.module:register`` names a callable: it is called once, with no arguments, and
  registers.

The entry point's name is only a label for messages; the names that count are those the plugin
registers. Loading is lazy: a registry made with an entry-point group loads that group the first
time it is queried, once per process, as lm-evaluation-harness does. The built-in methods, tasks
and datasets (:data:`BUILT_INS`) are registered before any plugin, and whatever a plugin
registers is attributed to it (``plugin DIST (GROUP: NAME = VALUE)``), so taking a built-in's
name is an error that names both.
Name collisions are errors; a plugin that fails to load for any other reason is skipped with one
warning line on stderr (logger ``fetalbench.plugins``) and everything else keeps working.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

BUILT_INS = ("fetalbench.methods", "fetalbench.data.tasks", "fetalbench.data.sources")

LOG = logging.getLogger(__name__)
_loading: ContextVar[str | None] = ContextVar("fetalbench_loading_plugin", default=None)


@contextlib.contextmanager
def loading_built_in() -> Iterator[None]:
    """Within: what registers is fetalbench's own, even while a plugin loads (a plugin that
    looks up a declared built-in makes its module register)."""
    token = _loading.set(None)
    try:
        yield
    finally:
        _loading.reset(token)


def registering_plugin() -> str | None:
    """The plugin being loaded now, as :func:`describe` names it; None outside plugin loading."""
    return _loading.get()


def distribution_name(entry_point: EntryPoint) -> str:
    """The name of the installed distribution that declares ``entry_point``."""
    return entry_point.dist.name if entry_point.dist is not None else "(unknown distribution)"


def describe(entry_point: EntryPoint) -> str:
    """``plugin DIST (GROUP: NAME = VALUE)``: how messages and collisions name a plugin."""
    return (f"plugin {distribution_name(entry_point)} ({entry_point.group}: "
            f"{entry_point.name} = {entry_point.value})")


def load_plugins(group: str, fatal: type[Exception]) -> None:
    """Load every entry point of ``group``; ``fatal`` errors propagate, others are warnings.

    Entry points load in the order of (distribution, entry-point name), after the built-ins.
    """
    found = sorted(entry_points(group=group), key=lambda ep: (distribution_name(ep), ep.name))
    if not found:
        return
    for module in BUILT_INS:
        importlib.import_module(module)
    for entry_point in found:
        load_plugin(entry_point, fatal)


def load_plugin(entry_point: EntryPoint, fatal: type[Exception]) -> None:
    """Import the entry point's module, or call its no-argument callable (see the module doc)."""
    label = describe(entry_point)
    token = _loading.set(label)
    try:
        loaded = entry_point.load()
        if not isinstance(loaded, ModuleType):
            loaded()
    except fatal:
        raise
    except Exception as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        LOG.warning(
            "fetalbench: warning: skipped %s: %s (fix the plugin or `pip uninstall %s`)",
            label, reason, distribution_name(entry_point),
        )
    finally:
        _loading.reset(token)
