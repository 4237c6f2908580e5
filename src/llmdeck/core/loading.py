"""A cache for values read from the database on the request path.

Under load, a cache that simply expires sends every request in flight to the database at
the same moment (each through the thread pool): that stampede, once per TTL, was most of the
gateway's p99. Here each key is loaded by one task at a time, and while a value is reloaded
the old one keeps serving (for at most another TTL), so no request waits for the database
once a value exists. A load that fails drops the old value: a key revoked elsewhere stops
working at the next reload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import Any

import anyio


class LoadingCache:
    """Values loaded in a worker thread and kept `ttl` seconds (see the module docstring)."""

    MAX_KEYS = 10_000

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._values: dict[Hashable, tuple[float, Any]] = {}
        # Loads in flight, per event loop: a job worker's loop cannot await the server's.
        self._loading: dict[tuple[int, Hashable], asyncio.Future] = {}
        # Bumped by clear(): a load that started before a change must not store its result.
        self._generation = 0

    def clear(self) -> None:
        self._generation += 1
        self._values = {}
        self._loading = {}

    async def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        found = self._values.get(key)
        age = time.monotonic() - found[0] if found is not None else None
        if age is not None and age <= self.ttl:
            return found[1]
        flight = (id(asyncio.get_running_loop()), key)
        pending = self._loading.get(flight)
        if pending is None:
            pending = asyncio.ensure_future(self._load(flight, load, self._generation))
            pending.add_done_callback(_retrieve)
            self._loading[flight] = pending
        if age is not None and age <= 2 * self.ttl:
            return found[1]
        return await asyncio.shield(pending)

    async def _load(
        self, flight: tuple[int, Hashable], load: Callable[[], Any], generation: int
    ) -> Any:
        key = flight[1]
        try:
            value = await anyio.to_thread.run_sync(load)
        except BaseException:
            if generation == self._generation:
                self._values.pop(key, None)  # e.g. a key revoked elsewhere: stop serving it
            raise
        finally:
            if generation == self._generation:
                self._loading.pop(flight, None)
        if generation == self._generation:
            if len(self._values) >= self.MAX_KEYS:
                self._values = {}
            self._values[key] = (time.monotonic(), value)
        return value


def _retrieve(future: asyncio.Future) -> None:
    """Mark a background reload's failure as seen (a caller that awaited it got it raised)."""
    if not future.cancelled():
        future.exception()
