"""A small typed registry keyed by name, in the manner of timm's and lm-eval-harness's.

Names are unique: registering a taken name is an error that names both sources. Looking up an
unknown name is an error that suggests the closest registered names.

A registry made with an ``entry_point_group`` also holds what installed plugins register: the
first time it is queried (:meth:`Registry.get`, :meth:`Registry.source`, :meth:`Registry.names`,
``in``, iteration) it loads that group's entry points, once per process (see
:mod:`fetalbench.plugins`). Registering never loads plugins, so built-in modules register at
import time without side effects.

Built-in entries may be *declared* (:meth:`Registry.declare`): a name, its description and the
module that registers it. A declared entry is listed and described without importing anything;
:meth:`Registry.get` imports its module on first use. So listing methods needs no torch, and the
declaration is the one place a built-in's description is written.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fetalbench.errors import FetalbenchError
from fetalbench.plugins import load_plugins, loading_built_in, registering_plugin

T = TypeVar("T")


class NameCollisionError(FetalbenchError):
    """Two sources registered the same name: always an error, from a plugin too."""


@dataclass
class Registry(Generic[T]):
    """Named entries of one kind (methods, tasks), each remembering where it came from."""

    kind: str
    entry_point_group: str | None = None
    _entries: dict[str, T] = field(default_factory=dict)
    _sources: dict[str, str] = field(default_factory=dict)
    _declared: dict[str, tuple[str, str]] = field(default_factory=dict)
    _plugins_loaded: bool = field(default=False, init=False, repr=False)

    def declare(self, name: str, module: str, description: str) -> None:
        """Declare the built-in ``name``, registered by importing ``module`` on first use."""
        if name in self._declared or name in self._entries:
            raise NameCollisionError(f"{self.kind} {name!r} is declared twice")
        self._declared[name] = (module, description)

    def declared_description(self, name: str) -> str | None:
        """The description ``name`` was declared with; None for an undeclared name."""
        return self._declared[name][1] if name in self._declared else None

    def register(self, name: str, entry: T, source: str) -> T:
        """Add ``entry`` under ``name``; ``source`` (a module or package) is named in collisions.

        While a plugin loads, the plugin (distribution and entry point) is the source instead. A
        declared name may be registered only by the module it was declared with.
        """
        source = registering_plugin() or source
        owner = self._declared.get(name, (source, ""))[0]
        if name in self._entries or owner != source:
            first = self._sources.get(name, owner)
            raise NameCollisionError(
                f"{self.kind} {name!r} is registered twice: by {first} and by "
                f"{source}; rename one of them"
            )
        self._entries[name] = entry
        self._sources[name] = source
        return entry

    def get(self, name: str) -> T:
        """The entry called ``name`` (importing a declared built-in's module the first time), or
        an error suggesting the closest registered names."""
        self._load_plugins()
        if name not in self._entries and name in self._declared:
            with loading_built_in():
                importlib.import_module(self._declared[name][0])
            if name not in self._entries:
                raise FetalbenchError(f"{self._declared[name][0]} did not register the declared "
                                      f"{self.kind} {name!r}")
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else "see the list"
            raise FetalbenchError(
                f"unknown {self.kind} {name!r}: {hint} (`fetalbench {self.kind}s` lists them)"
            ) from None

    def source(self, name: str) -> str:
        """Where the entry called ``name`` was registered from."""
        self.get(name)
        return self._sources[name]

    def names(self) -> list[str]:
        """Declared and registered names: built-ins in declaration order, then the others in
        registration order (plugins last)."""
        self._load_plugins()
        return list(dict.fromkeys([*self._declared, *self._entries]))

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries or name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_plugins(self) -> None:
        """Load the entry-point group's plugins, the first time only; collisions propagate."""
        if self.entry_point_group is None or self._plugins_loaded:
            return
        self._plugins_loaded = True
        load_plugins(self.entry_point_group, fatal=NameCollisionError)
