"""What a model alias resolves to, kept in memory for a moment so calls skip the database.

Routes, limits and cache policies are small: the whole set is loaded at once and reloaded
after `gateway_lookup_ttl` seconds; catalog lookups are kept per (alias, project, kind) for
the same time. Changes committed in this process apply at once (a session hook clears the
caches); changes made by another process apply within the TTL, plus one reload.

Each is a core.loading.LoadingCache: loaded once per key at a time, the old value serving
while a new one loads, so no request waits for the database once a value exists.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from llmdeck.catalog import service as catalog
from llmdeck.catalog.models import Model
from llmdeck.core import secrets
from llmdeck.core.db import Database, after_commit_changing
from llmdeck.core.errors import LLMDeckError, NotFound
from llmdeck.core.loading import LoadingCache
from llmdeck.core.settings import Settings
from llmdeck.gateway import models as tables
from llmdeck.identity.schemas import Principal
from llmdeck.providers.base import Connection

CATALOG_PREFIX = "catalog:"  # the id of a catalog model's one deployment: catalog:MODEL_ID


@dataclass(frozen=True)
class Deployment:
    """One place calls can go: a provider connection and the upstream model it serves."""

    id: str
    name: str
    provider: str
    upstream_name: str
    connection: Connection = field(repr=False)
    weight: float = 1.0
    # The alias it serves and the project that alone may use it (None: every project).
    alias: str = ""
    project_id: str | None = None


@dataclass(frozen=True)
class Target:
    """An alias ready to call: its profile (prices, window), deployments and policy."""

    alias: str
    kind: str
    model: Model
    deployments: tuple[Deployment, ...]
    strategy: str = "weighted"
    fallbacks: tuple[str, ...] = ()
    retries: int = 2
    attempt_timeout: float = 30.0
    deadline: float = 120.0
    project_id: str | None = None


@dataclass(frozen=True)
class LimitRule:
    scope: str  # project | key
    scope_id: str
    rpm: int | None
    tpm: int | None
    budget: float | None
    budget_period: str


@dataclass(frozen=True)
class CacheRule:
    ttl_seconds: int
    exact: bool
    semantic_threshold: float | None
    embedding_model: str


@dataclass
class Snapshot:
    routes: dict[str, Target]
    limits: dict[tuple[str, str], LimitRule]
    cache: dict[str, CacheRule]


_directories: weakref.WeakSet[Directory] = weakref.WeakSet()
_WATCHED = (Model, tables.Route, tables.Deployment, tables.Limit, tables.CachePolicy)


class Directory:
    """Resolves aliases to targets and finds the limits and cache policy of a call."""

    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.settings = settings
        self.ttl = settings.gateway_lookup_ttl
        self._snapshot = LoadingCache(self.ttl)
        self._catalog = LoadingCache(self.ttl)
        _directories.add(self)

    def invalidate(self) -> None:
        self._snapshot.clear()
        self._catalog.clear()

    async def snapshot(self) -> Snapshot:
        return await self._snapshot.get(None, self.load)

    def load(self) -> Snapshot:
        """Read every route, limit and cache policy."""
        with self.db.session() as session:
            routes = session.scalars(
                select(tables.Route).options(selectinload(tables.Route.deployments))
            ).all()
            limits = session.scalars(select(tables.Limit)).all()
            policies = session.scalars(select(tables.CachePolicy)).all()
            return Snapshot(
                routes={r.alias: self._route_target(r) for r in routes},
                limits={
                    (x.scope, x.scope_id): LimitRule(
                        x.scope, x.scope_id, x.rpm, x.tpm, x.budget, x.budget_period
                    )
                    for x in limits
                },
                cache={
                    p.project_id: CacheRule(
                        p.ttl_seconds, p.exact, p.semantic_threshold, p.embedding_model
                    )
                    for p in policies
                },
            )

    async def target(self, alias: str, principal: Principal, kind: str) -> Target:
        """The target behind `alias` for this project, or NotFound / InvalidRequest."""
        snap = await self.snapshot()
        route = snap.routes.get(alias)
        if route is not None:
            if route.project_id not in (None, principal.project_id) or not route.deployments:
                raise _not_found(alias)
            if route.kind != kind:
                raise catalog.wrong_kind(alias, route.kind, kind)
            return route
        key = (alias, principal.project_id, kind)
        found = await self._catalog.get(key, lambda: self._catalog_target(*key))
        if isinstance(found, LLMDeckError):
            raise found.with_traceback(None)
        return found

    def _catalog_target(self, alias: str, project_id: str, kind: str) -> Target | LLMDeckError:
        try:
            with self.db.session() as session:
                model = catalog.get_for_project_or_raise(
                    session, alias=alias, project_id=project_id
                )
                connection = catalog.connection(model, self.settings)
        except LLMDeckError as exc:
            return exc
        if model.kind != kind:
            return catalog.wrong_kind(alias, model.kind, kind)
        deployment = Deployment(
            id=f"{CATALOG_PREFIX}{model.id}",
            name=model.alias,
            provider=model.provider,
            upstream_name=model.upstream_name,
            connection=connection,
            alias=model.alias,
            project_id=model.project_id,
        )
        return Target(
            alias=alias,
            kind=model.kind,
            model=model,
            deployments=(deployment,),
            retries=self.settings.gateway_retries,
            attempt_timeout=self.settings.gateway_attempt_timeout,
            deadline=self.settings.gateway_deadline,
            project_id=model.project_id,
        )

    def _route_target(self, route: tables.Route) -> Target:
        deployments = tuple(
            Deployment(
                id=d.id,
                name=d.name,
                provider=d.provider,
                upstream_name=d.upstream_name,
                connection=Connection(
                    base_url=d.base_url,
                    api_key=(
                        secrets.decrypt(self.settings, d.api_key_encrypted)
                        if d.api_key_encrypted
                        else None
                    ),
                ),
                weight=d.weight,
                alias=route.alias,
                project_id=route.project_id,
            )
            for d in route.deployments
        )
        # A profile for cost and context checks; never added to a session.
        profile = Model(
            alias=route.alias,
            provider=deployments[0].provider if deployments else "openai",
            upstream_name=route.alias,
            kind=route.kind,
            context_window=route.context_window,
            input_price_per_mtok=route.input_price_per_mtok,
            output_price_per_mtok=route.output_price_per_mtok,
            project_id=route.project_id,
        )
        s = self.settings
        return Target(
            alias=route.alias,
            kind=route.kind,
            model=profile,
            deployments=deployments,
            strategy=route.strategy,
            fallbacks=tuple(route.fallbacks or ()),
            retries=s.gateway_retries if route.retries is None else route.retries,
            attempt_timeout=route.attempt_timeout or s.gateway_attempt_timeout,
            deadline=route.deadline or s.gateway_deadline,
            project_id=route.project_id,
        )


def _not_found(alias: str) -> NotFound:
    return NotFound(
        f"The model {alias!r} does not exist or is not available to this project. "
        "GET /v1/models lists the ones you may use.",
        param="model",
        code="model_not_found",
    )


def _invalidate() -> None:
    """Changes committed in this process clear every directory's caches at once."""
    for directory in list(_directories):
        directory.invalidate()


after_commit_changing(_WATCHED, _invalidate)
