"""`Registry`: the one mechanism behind every list of names in dplase (generator families, datasets, methods,
walks, metrics, figures, launch stages).

A registry maps a name to an entry: a ``"module:attribute"`` target (imported on first use, so reading the
names costs no import of torch, sklearn or a generator) plus a few plain fields the callers need without
importing the target (which table a figure reads, whether a metric needs walk images, ...). Everything that
lists names reads a registry: CLI choices (``click.Choice(list(REGISTRY))``), the config schema's enums (a
test checks them), the config checks, the evaluation loop, the Snakemake rules and the launcher.

Adding something is one new file with the implementation plus one line in its kind's registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One registered name: where its implementation lives and plain facts about it."""

    name: str
    target: str  # "package.module:attribute"
    info: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        """Import and return the target (a class, function or spec object)."""
        module, _, attribute = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except AttributeError:
            raise ImportError(f"{module} defines no '{attribute}' (registered as '{self.name}')") from None

    def __getitem__(self, key: str) -> Any:
        return self.info[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.info.get(key, default)


class Registry(Mapping[str, Entry]):
    """An ordered, read-only name -> `Entry` mapping of one kind ("method", "walk", ...)."""

    def __init__(self, kind: str, entries: Mapping[str, str | tuple[str, Mapping[str, Any]]]) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        for name, value in entries.items():
            target, info = (value, {}) if isinstance(value, str) else value
            self._entries[name] = Entry(name, target, dict(info))

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"

    @property
    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def unknown_message(self, name: Any) -> str:
        return f"unknown {self.kind} '{name}'; choose one of {', '.join(self._entries)}"

    def check(self, name: str) -> str:
        """``name`` if registered, else a ValueError that lists the registered names."""
        if name not in self._entries:
            raise ValueError(self.unknown_message(name))
        return name

    def load(self, name: str) -> Any:
        """The implementation registered as ``name`` (ValueError listing the names for an unknown one)."""
        return self._entries[self.check(name)].load()

    def where(self, **info: Any) -> tuple[str, ...]:
        """Names whose entries have every given info value (``FIGURES.where(table="losses")``)."""
        return tuple(n for n, e in self._entries.items() if all(e.get(k) == v for k, v in info.items()))
