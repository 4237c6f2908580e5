"""Fetched prompt versions kept in memory, so `GET /api/prompts/{name}?label=...` is answered
without the database or the thread pool.

Each process keeps the answers it served, per (project, name, label, version), already
serialized. They stay valid while the project's prompt change counter (`prompt_changes`,
bumped in the same transaction as every new version, label move or label removal) is
unchanged:

- a change committed in this process clears the cache at once (a session hook);
- a change committed by another process is seen within `2 * CHECK_INTERVAL` (0.5 s): the
  counter is read at most every `CHECK_INTERVAL` per project, by one background task, while
  the cached answers keep serving; a counter older than twice that makes the request wait
  for a fresh read.

A miss loads the version in a worker thread (one load per key at a time).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any

import anyio
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from llmdeck.core.db import Database
from llmdeck.prompts import service
from llmdeck.prompts.models import PromptChanges

CHECK_INTERVAL = 0.25
MAX_KEYS = 10_000
Key = tuple[str, str, str | None, int | None]


class PromptCache:
    """Serialized prompt versions by (project, name, label, version); see the module doc."""

    def __init__(self, db: Database, check_interval: float = CHECK_INTERVAL):
        self.db = db
        self.check_interval = check_interval
        self._answers: dict[Key, tuple[int, bytes]] = {}  # key -> (counter it was read at, json)
        self._counters: dict[str, tuple[float, int]] = {}  # project -> (checked at, counter)
        self._checking: dict[str, asyncio.Future] = {}
        self._loading: dict[Key, asyncio.Future] = {}
        self._generation = 0  # bumped by clear(): loads begun before a change are not kept
        _caches.add(self)

    def clear(self) -> None:
        self._generation += 1
        self._answers, self._counters, self._checking, self._loading = {}, {}, {}, {}

    async def fetch(
        self, project_id: str, name: str, label: str | None, version: int | None
    ) -> bytes:
        """The version's JSON (as `PromptVersionPublic`); raises NotFound like the service."""
        counter = await self._counter(project_id)
        key = (project_id, name, label, version)
        hit = self._answers.get(key)
        if hit is not None and hit[0] == counter:
            return hit[1]
        return await self._single(self._loading, key, lambda: self._load(key))

    async def _counter(self, project_id: str) -> int:
        known = self._counters.get(project_id)
        age = time.monotonic() - known[0] if known is not None else None
        if age is not None and age <= self.check_interval:
            return known[1]
        pending = self._single(self._checking, project_id, lambda: self._read(project_id))
        if age is not None and age <= 2 * self.check_interval:
            # Serve what we have; the check runs in the background for the next requests.
            pending.add_done_callback(_retrieve)
            return known[1]
        return await pending

    def _single(self, inflight: dict, key, load: Callable[[], Any]) -> asyncio.Future:
        """One load per key at a time; every caller awaits the same future."""
        pending = inflight.get(key)
        if pending is None:
            generation = self._generation
            pending = asyncio.ensure_future(anyio.to_thread.run_sync(load))

            def done(future: asyncio.Future, key=key) -> None:
                if generation == self._generation:
                    inflight.pop(key, None)

            pending.add_done_callback(done)
            pending.add_done_callback(_retrieve)
            inflight[key] = pending
        return asyncio.shield(pending)

    def _read(self, project_id: str) -> int:
        generation = self._generation
        with self.db.session() as session:
            counter = _counter_of(session, project_id)
        if generation == self._generation:
            self._counters[project_id] = (time.monotonic(), counter)
        return counter

    def _load(self, key: Key) -> bytes:
        generation = self._generation
        project_id, name, label, version = key
        with self.db.session() as session:
            # The counter first: the version read after it is at least as new as it says.
            counter = _counter_of(session, project_id)
            public = service.fetch(
                session, project_id=project_id, name=name, label=label, version=version
            )
        body = public.model_dump_json().encode()
        if generation == self._generation:
            if len(self._answers) >= MAX_KEYS:
                self._answers = {}
            self._answers[key] = (counter, body)
            known = self._counters.get(project_id)
            if known is None or known[1] != counter:
                self._counters[project_id] = (time.monotonic(), counter)
        return body


def _counter_of(session: Session, project_id: str) -> int:
    return (
        session.scalar(select(PromptChanges.counter).where(PromptChanges.project_id == project_id))
        or 0
    )


def _retrieve(future: asyncio.Future) -> None:
    """Mark a background check's failure as seen (the next caller retries it)."""
    if not future.cancelled():
        future.exception()


_caches: weakref.WeakSet[PromptCache] = weakref.WeakSet()
_by_db: weakref.WeakKeyDictionary[Database, PromptCache] = weakref.WeakKeyDictionary()


def cache_for(db: Database) -> PromptCache:
    """This process's cache for a database."""
    cache = _by_db.get(db)
    if cache is None:
        cache = _by_db[db] = PromptCache(db)
    return cache


@event.listens_for(Session, "after_commit")
def _invalidate(session: Session) -> None:
    if session.info.pop(service.CHANGED_FLAG, False):
        for cache in list(_caches):
            cache.clear()
