"""One small generic plug-in registry, fed by built-ins and `llmdeck.plugins` entry points.

A plug-in is a callable taking the `Plugins` hub; it registers what it brings, e.g.
`hub.providers.register("local", LocalProvider)`. Built-ins are plug-ins too, declared in
pyproject.toml under the same entry-point group. A plug-in that fails to load is a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from llmdeck.core.errors import NotFound

log = logging.getLogger(__name__)
T = TypeVar("T")
ENTRY_POINT_GROUP = "llmdeck.plugins"


class Registry(Generic[T]):
    """Named implementations of one kind of plug-in."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> None:
        self._items[name] = item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise NotFound(f"No {self.kind} named {name!r}; known: {known}.") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


@dataclass
class Plugins:
    """Every plug-in registry; domains add theirs as they arrive."""

    providers: Registry = field(default_factory=lambda: Registry("provider"))
    evaluators: Registry = field(default_factory=lambda: Registry("evaluator"))
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


_hub: Plugins | None = None


def load_plugins(extra: list[Callable[[Plugins], None]] | None = None) -> Plugins:
    """A fresh hub with every entry-point plug-in (and any `extra`) registered."""
    hub = Plugins()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()(hub)
            hub.loaded.append(ep.name)
        except Exception as exc:  # a broken plug-in must not take the platform down
            hub.failed[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("plug-in %s failed to load: %s", ep.name, exc)
    for plugin in extra or []:
        plugin(hub)
    return hub


def plugins() -> Plugins:
    """The process-wide hub, loaded on first use."""
    global _hub
    if _hub is None:
        _hub = load_plugins()
    return _hub
