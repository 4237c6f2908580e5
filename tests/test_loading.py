"""core.loading.LoadingCache: one load per key at a time, the old value serving meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from llmdeck.core.loading import LoadingCache


def test_concurrent_misses_share_one_load_and_stale_values_serve_while_reloading() -> None:
    loads: list[int] = []
    release = threading.Event()

    def load() -> int:
        release.wait(5)
        loads.append(len(loads) + 1)
        return len(loads)

    async def scenario() -> None:
        cache = LoadingCache(ttl=0.2)
        release.set()
        assert await asyncio.gather(*(cache.get("k", load) for _ in range(20))) == [1] * 20
        assert loads == [1]
        await asyncio.sleep(0.25)  # stale now
        release.clear()  # the reload blocks until released
        started = time.monotonic()
        assert [await cache.get("k", load) for _ in range(5)] == [1] * 5
        assert time.monotonic() - started < 0.1  # nobody waited for the database
        release.set()
        await asyncio.sleep(0.1)
        assert await cache.get("k", load) == 2 and loads == [1, 2]

    asyncio.run(scenario())


def test_a_failed_load_reaches_its_callers_and_drops_the_old_value() -> None:
    outcomes = iter([1, PermissionError("revoked"), PermissionError("revoked")])

    def load() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def scenario() -> None:
        cache = LoadingCache(ttl=0.05)
        assert await cache.get("k", load) == 1
        await asyncio.sleep(0.07)
        assert await cache.get("k", load) == 1  # stale, while the reload fails behind it
        await asyncio.sleep(0.05)
        with pytest.raises(PermissionError):
            await cache.get("k", load)

    asyncio.run(scenario())


def test_clear_discards_a_load_that_began_before_it() -> None:
    release = threading.Event()

    def old() -> str:
        release.wait(5)
        return "before the change"

    async def scenario() -> None:
        cache = LoadingCache(ttl=60)
        pending = asyncio.ensure_future(cache.get("k", old))
        await asyncio.sleep(0.05)
        cache.clear()  # e.g. a commit in this process changed what the load reads
        release.set()
        assert await pending == "before the change"  # its caller still gets an answer
        assert await cache.get("k", lambda: "after") == "after"

    asyncio.run(scenario())


def test_each_event_loop_awaits_only_its_own_loads() -> None:
    """The server's loop and a job worker's loop share values, never futures."""
    release = threading.Event()

    def slow() -> str:
        release.wait(5)
        return "value"

    cache = LoadingCache(ttl=60)
    results: list[str] = []

    def other_loop() -> None:
        results.append(asyncio.run(cache.get("k", slow)))

    async def scenario() -> None:
        first = asyncio.ensure_future(cache.get("k", slow))
        await asyncio.sleep(0.05)  # a load is in flight on this loop
        worker = threading.Thread(target=other_loop)
        worker.start()
        await asyncio.sleep(0.05)
        release.set()
        assert await first == "value"
        await asyncio.to_thread(worker.join, 5)

    asyncio.run(scenario())
    assert results == ["value"]
