"""API keys checked in the last moment, for endpoints called many times a second.

The OTLP receiver answers exporters that post a batch every few milliseconds; looking the key
up each time (a hash, two queries, a thread hop) cost as much as storing the spans. A key is
trusted for `ttl` seconds after a successful check. Changes to keys, users or projects
committed in this process clear every cache at once (a key revoked here is refused on the
next call); changes made by another process apply within the TTL.
"""

from __future__ import annotations

import hashlib
import time
import weakref

from sqlalchemy import event
from sqlalchemy.orm import Session

from llmdeck.identity.models import ApiKey, Membership, Project, User
from llmdeck.identity.schemas import Principal

_caches: weakref.WeakSet[KeyCache] = weakref.WeakSet()
_WATCHED = (ApiKey, Membership, Project, User)


class KeyCache:
    """Principals by (authorization header, project header), each kept `ttl` seconds."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[tuple[bytes, str | None], tuple[float, Principal]] = {}
        _caches.add(self)

    @staticmethod
    def _key(authorization: str | None, project: str | None) -> tuple[bytes, str | None]:
        # A digest, so that the secret itself is not kept in memory longer than the request.
        return hashlib.sha256((authorization or "").encode()).digest(), project

    def get(self, authorization: str | None, project: str | None) -> Principal | None:
        if self.ttl <= 0:
            return None
        found = self._entries.get(self._key(authorization, project))
        if found is not None and time.monotonic() - found[0] <= self.ttl:
            return found[1]
        return None

    def put(self, authorization: str | None, project: str | None, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries = {}
        self._entries[self._key(authorization, project)] = (time.monotonic(), principal)

    def clear(self) -> None:
        self._entries = {}


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _context) -> None:
    if any(isinstance(o, _WATCHED) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info["llmdeck_keycache_dirty"] = True


@event.listens_for(Session, "after_commit")
def _clear(session: Session) -> None:
    if session.info.pop("llmdeck_keycache_dirty", False):
        for cache in list(_caches):
            cache.clear()
