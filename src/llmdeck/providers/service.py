"""Provider instances, one per connection, built from the plug-in registry."""

from __future__ import annotations

import threading

from llmdeck.core.registry import plugins
from llmdeck.core.settings import Settings
from llmdeck.providers.base import Connection, Provider

_instances: dict[tuple[str, str | None, str | None], Provider] = {}
_lock = threading.Lock()


def provider_class(name: str) -> type[Provider]:
    return plugins().providers.get(name)


def get_provider(name: str, connection: Connection, settings: Settings) -> Provider:
    """The shared instance for this provider and connection (connections are reused)."""
    # Keyed by the key itself: the instance keeps its connection, key included, anyway.
    cache_key = (name, connection.base_url, connection.api_key)
    provider = _instances.get(cache_key)  # on every gateway call: no lock to find one
    if provider is not None:
        return provider
    with _lock:
        provider = _instances.get(cache_key)
        if provider is None:
            provider = provider_class(name)(connection, settings)
            _instances[cache_key] = provider
        return provider


async def close_providers() -> None:
    with _lock:
        instances = list(_instances.values())
        _instances.clear()
    for provider in instances:
        await provider.aclose()
