"""Fetched prompt versions kept in memory, so `GET /api/prompts/{name}?label=...` is answered
without the database or the thread pool.

Each process keeps the answers it served, per (project, name, label, version), already
serialized. They stay valid while the project's prompt change counter (`prompt_changes`,
bumped in the same transaction as every new version, label move or label removal) is
unchanged:

- a change committed in this process clears the cache at once (a session hook);
- a change committed by another process is seen within `2 * CHECK_INTERVAL` (0.5 s): the
  counter is a core.loading.LoadingCache value with that TTL, read again in the background
  while the cached answers keep serving.

A miss loads the version in a worker thread (one load per key at a time), and the answer is
kept under the counter it was fetched at.
"""

from __future__ import annotations

import weakref

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from llmdeck.core.db import Database
from llmdeck.core.loading import LoadingCache
from llmdeck.prompts import service
from llmdeck.prompts.models import PromptChanges

CHECK_INTERVAL = 0.25
# An answer is keyed by the counter it belongs to, so it never goes stale; the TTL only lets
# answers of superseded counters fall out.
ANSWER_TTL = 3600.0


class PromptCache:
    """Serialized prompt versions by (project, name, label, version); see the module doc."""

    def __init__(self, db: Database, check_interval: float = CHECK_INTERVAL):
        self.db = db
        self._counters = LoadingCache(check_interval)  # project -> change counter
        self._answers = LoadingCache(ANSWER_TTL)  # (project, name, label, version, counter)
        _caches.add(self)

    def clear(self) -> None:
        self._counters.clear()
        self._answers.clear()

    async def fetch(
        self, project_id: str, name: str, label: str | None, version: int | None
    ) -> bytes:
        """The version's JSON (as `PromptVersionPublic`); raises NotFound like the service."""
        counter = await self._counters.get(project_id, lambda: self._read(project_id))
        return await self._answers.get(
            (project_id, name, label, version, counter),
            lambda: self._load(project_id, name, label, version),
        )

    def _read(self, project_id: str) -> int:
        with self.db.session() as session:
            return _counter_of(session, project_id)

    def _load(self, project_id: str, name: str, label: str | None, version: int | None) -> bytes:
        with self.db.session() as session:
            public = service.fetch(
                session, project_id=project_id, name=name, label=label, version=version
            )
        return public.model_dump_json().encode()


def _counter_of(session: Session, project_id: str) -> int:
    return (
        session.scalar(select(PromptChanges.counter).where(PromptChanges.project_id == project_id))
        or 0
    )


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
