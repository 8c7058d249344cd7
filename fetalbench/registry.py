"""A small typed registry keyed by name, in the manner of timm's and lm-eval-harness's.

Names are unique: registering a taken name is an error that names both sources. Looking up an
unknown name is an error that suggests the closest registered names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fetalbench.errors import FetalbenchError

T = TypeVar("T")


@dataclass
class Registry(Generic[T]):
    """Named entries of one kind (methods, tasks), each remembering where it came from."""

    kind: str
    _entries: dict[str, T] = field(default_factory=dict)
    _sources: dict[str, str] = field(default_factory=dict)

    def register(self, name: str, entry: T, source: str) -> T:
        """Add ``entry`` under ``name``; ``source`` (a module or package) is named in collisions."""
        if name in self._entries:
            raise FetalbenchError(
                f"{self.kind} {name!r} is registered twice: by {self._sources[name]} and by "
                f"{source}; rename one of them"
            )
        self._entries[name] = entry
        self._sources[name] = source
        return entry

    def get(self, name: str) -> T:
        """The entry called ``name``, or an error suggesting the closest registered names."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else "see the list"
            raise FetalbenchError(
                f"unknown {self.kind} {name!r}: {hint} (`fetalbench {self.kind}s` lists them)"
            ) from None

    def source(self, name: str) -> str:
        """Where the entry called ``name`` was registered from."""
        self.get(name)
        return self._sources[name]

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
