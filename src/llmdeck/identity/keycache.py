"""Callers authenticated in the last moment, for endpoints called many times a second.

The gateway, the OTLP receiver and the SDK's prompt fetch are called far more often than
keys change; looking the key up each time (a hash, two queries, a thread hop) cost as much
as the work itself. A key's principal is kept for `ttl` seconds in a core.loading
LoadingCache (one lookup per key at a time, the old answer serving while it is renewed).
Changes to keys, memberships, users or projects committed in this process clear every
cache at once (a key revoked here is refused on the next call); changes made by another
process apply within the TTL, plus one lookup.
"""

from __future__ import annotations

import hashlib
import weakref

from llmdeck.core.db import Database, after_commit_changing
from llmdeck.core.loading import LoadingCache
from llmdeck.identity.models import ApiKey, Membership, Project, User
from llmdeck.identity.schemas import Principal
from llmdeck.identity.service import authenticate_header

_caches: weakref.WeakSet[KeyCache] = weakref.WeakSet()
_WATCHED = (ApiKey, Membership, Project, User)


class KeyCache:
    """Principals by (authorization header, project header)."""

    def __init__(self, db: Database, ttl: float):
        self.db = db
        self._principals = LoadingCache(ttl)
        _caches.add(self)

    async def principal(self, authorization: str | None, project: str | None) -> Principal:
        """The caller behind `Authorization: Bearer <key>` (and the project header)."""
        # A digest, so that the secret itself is not kept in memory beyond the request;
        # BLAKE2 (built into Python) takes half of OpenSSL's SHA-256 time on a cold cache.
        key = hashlib.blake2b((authorization or "").encode(), digest_size=32).digest(), project
        return await self._principals.get(
            key, lambda: authenticate_header(self.db, authorization, project)
        )

    def clear(self) -> None:
        self._principals.clear()


def _clear_caches() -> None:
    for cache in list(_caches):
        cache.clear()


after_commit_changing(_WATCHED, _clear_caches)
