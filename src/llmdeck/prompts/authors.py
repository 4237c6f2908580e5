"""Who made a prompt version or moved a label, as people read it: a user's email, an API
key's name, or "CLI" (the CLI acts with the local admin's rights and has no user)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmdeck.identity.models import ApiKey, User
from llmdeck.identity.schemas import Principal

CLI = "CLI"


def of(session: Session, principal: Principal) -> str | None:
    """The author to store for a change made by `principal` through the API."""
    if principal.user_id:
        user = session.get(User, principal.user_id)
        if user is not None:
            return user.email
    if principal.api_key_id:
        key = session.get(ApiKey, principal.api_key_id)
        if key is not None:
            return f"API key {key.name}"
    return principal.user_id or principal.api_key_id


def names(session: Session, stored: Iterable[str | None]) -> dict[str, str]:
    """Readable names for stored authors that are ids (versions made through the API before
    authors were stored readably held the user's or the key's id)."""
    ids = {s for s in stored if s and len(s) == 26 and "@" not in s and " " not in s}
    if not ids:
        return {}
    found = {u.id: u.email for u in session.scalars(select(User).where(User.id.in_(ids)))}
    for key in session.scalars(select(ApiKey).where(ApiKey.id.in_(ids))):
        found[key.id] = f"API key {key.name}"
    return found
