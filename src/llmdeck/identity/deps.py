"""FastAPI dependencies: the runtime, a database session and the calling principal."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from llmdeck.identity import service
from llmdeck.identity.roles import require
from llmdeck.identity.schemas import Principal
from llmdeck.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_session(runtime: Runtime = Depends(get_runtime)) -> Iterator[Session]:
    with runtime.db.session() as session:
        yield session


def get_principal(
    request: Request,
    authorization: str | None = Header(default=None, include_in_schema=False),
    x_llmdeck_project: str | None = Header(
        default=None, description="Project to act in, for keys valid in every project."
    ),
) -> Principal:
    """The caller behind the bearer API key."""
    return service.authenticate_header(get_runtime(request).db, authorization, x_llmdeck_project)


async def known_principal(
    request: Request,
    authorization: str | None = Header(default=None, include_in_schema=False),
    x_llmdeck_project: str | None = Header(
        default=None, description="Project to act in, for keys valid in every project."
    ),
) -> Principal:
    """The caller behind the bearer API key, from the runtime's key cache: for endpoints
    called many times a second (a key seen in the last moment costs no query, no thread)."""
    return await get_runtime(request).keys.principal(authorization, x_llmdeck_project)


def requires(role: str, action: str):
    """A dependency giving the principal if its role is at least `role`."""

    def dependency(principal: Principal = Depends(get_principal)) -> Principal:
        require(principal.role, role, action)
        return principal

    return dependency
