"""Gateway configuration logic: routes, limits, cache policies; YAML apply and export."""

from __future__ import annotations

import os
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from llmdeck.catalog import service as catalog
from llmdeck.core import secrets
from llmdeck.core.errors import InvalidRequest, NotFound, PermissionDenied
from llmdeck.core.registry import plugins
from llmdeck.core.settings import Settings
from llmdeck.gateway.models import CachePolicy, Deployment, Limit, Route
from llmdeck.gateway.schemas import (
    ApplyResult,
    CacheSpec,
    DeploymentPublic,
    DeploymentSpec,
    GatewayConfig,
    LimitSpec,
    RoutePublic,
    RouteSpec,
)
from llmdeck.identity import service as identity
from llmdeck.identity.models import ApiKey, Project
from llmdeck.identity.schemas import Principal

# Who may change what


def require_own_project(principal: Principal, project: str | None, what: str) -> None:
    """Project admins configure their own project; shared settings need the master key."""
    if principal.all_projects:
        return
    if project != principal.project_name:
        raise PermissionDenied(
            f"You can {what} only in your own project ({principal.project_name})."
        )


def check_limit_scope(session: Session, principal: Principal, spec: LimitSpec) -> None:
    """A project admin limits only their own project and its keys."""
    if spec.key is not None and not principal.all_projects:
        key = identity.get_key_or_raise(session, key_id=spec.key)
        if key.project_id != principal.project_id:
            raise PermissionDenied("You can limit only your own project's keys.")
        return
    if spec.project is not None:
        require_own_project(principal, spec.project, "set limits")


# Routes


def list_routes(session: Session, *, project_id: str | None = None) -> list[Route]:
    """Every route, or those a project may use when `project_id` is given."""
    query = select(Route).order_by(Route.alias)
    if project_id is not None:
        query = query.where((Route.project_id.is_(None)) | (Route.project_id == project_id))
    return list(session.scalars(query))


def get_route_by_alias(session: Session, *, alias: str) -> Route | None:
    return session.scalar(select(Route).where(Route.alias == alias))


def get_route_by_alias_or_raise(session: Session, *, alias: str) -> Route:
    route = get_route_by_alias(session, alias=alias)
    if route is None:
        raise NotFound(f"No route {alias!r}. See `llmdeck gateway routes list`.", param="alias")
    return route


def put_route(session: Session, *, settings: Settings, spec: RouteSpec) -> Route:
    """Create the route, or replace its definition (stored keys survive when not restated)."""
    if spec.alias in spec.fallbacks:
        raise InvalidRequest("A route cannot fall back to itself.", param="fallbacks")
    names = [d.name for d in spec.deployments]
    if len(set(names)) != len(names):
        raise InvalidRequest("Deployment names must differ within a route.", param="deployments")
    project_id = None
    if spec.project:
        project_id = identity.get_project_by_name_or_raise(session, name=spec.project).id
    route = get_route_by_alias(session, alias=spec.alias)
    if route is None:
        route = Route(alias=spec.alias)
        session.add(route)
    kept_keys = {d.name: d.api_key_encrypted for d in route.deployments}
    for name in (
        "kind",
        "strategy",
        "retries",
        "attempt_timeout",
        "deadline",
        "context_window",
        "input_price_per_mtok",
        "output_price_per_mtok",
    ):
        setattr(route, name, getattr(spec, name))
    route.fallbacks = list(spec.fallbacks)
    route.project_id = project_id
    route.deployments.clear()
    session.flush()
    for d in spec.deployments:
        route.deployments.append(_deployment(settings, d, kept_keys.get(d.name)))
    session.flush()
    return route


def _deployment(settings: Settings, spec: DeploymentSpec, kept_key: str | None) -> Deployment:
    if spec.provider not in plugins().providers:
        known = ", ".join(plugins().providers.names())
        raise InvalidRequest(
            f"Unknown provider {spec.provider!r}; known: {known}.", param="provider"
        )
    if plugins().providers.get(spec.provider).needs_base_url and not spec.base_url:
        raise InvalidRequest(
            f"Deployment {spec.name!r} needs a base URL, e.g. http://localhost:8080/v1.",
            param="base_url",
        )
    if spec.base_url and not spec.base_url.startswith(("http://", "https://")):
        raise InvalidRequest("The base URL must start with http:// or https://.", param="base_url")
    key = spec.api_key.get_secret_value() if spec.api_key else None
    if key is None and spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
        # An export names a variable for each stored key; applied back with it unset, the
        # stored key stays, so export-then-apply changes nothing.
        if key is None and kept_key is None:
            raise InvalidRequest(
                f"Deployment {spec.name!r} reads its key from ${spec.api_key_env}, which is "
                "not set, and no key is stored for it yet. Set the variable and apply again.",
                param="api_key_env",
            )
    return Deployment(
        name=spec.name,
        provider=spec.provider,
        upstream_name=spec.upstream,
        base_url=spec.base_url,
        api_key_encrypted=secrets.encrypt(settings, key) if key else kept_key,
        weight=spec.weight,
    )


def delete_route(session: Session, *, route: Route) -> None:
    session.delete(route)
    session.flush()


def route_public(session: Session, route: Route) -> RoutePublic:
    return RoutePublic(
        alias=route.alias,
        kind=route.kind,
        project=_project_name(session, route.project_id),
        strategy=route.strategy,
        fallbacks=list(route.fallbacks or []),
        retries=route.retries,
        attempt_timeout=route.attempt_timeout,
        deadline=route.deadline,
        context_window=route.context_window,
        input_price_per_mtok=route.input_price_per_mtok,
        output_price_per_mtok=route.output_price_per_mtok,
        deployments=[
            DeploymentPublic(
                name=d.name,
                provider=d.provider,
                upstream=d.upstream_name,
                base_url=d.base_url,
                has_api_key=d.api_key_encrypted is not None,
                weight=d.weight,
            )
            for d in route.deployments
        ],
    )


def _project_name(session: Session, project_id: str | None) -> str | None:
    if project_id is None:
        return None
    project = session.get(Project, project_id)
    return project.name if project else None


# Limits and budgets


def _limit_scope(session: Session, spec: LimitSpec) -> tuple[str, str]:
    if spec.project is not None:
        return "project", identity.get_project_by_name_or_raise(session, name=spec.project).id
    return "key", identity.get_key_or_raise(session, key_id=spec.key).id


def set_limit(session: Session, *, spec: LimitSpec) -> Limit:
    """Set (replace) the limits of one project or key."""
    scope, scope_id = _limit_scope(session, spec)
    limit = session.scalar(select(Limit).where(Limit.scope == scope, Limit.scope_id == scope_id))
    if limit is None:
        limit = Limit(scope=scope, scope_id=scope_id)
        session.add(limit)
    limit.rpm, limit.tpm, limit.budget = spec.rpm, spec.tpm, spec.budget
    limit.budget_period = spec.budget_period
    session.flush()
    return limit


def list_limits(session: Session, *, project_id: str | None = None) -> list[Limit]:
    limits = list(session.scalars(select(Limit).order_by(Limit.scope, Limit.scope_id)))
    if project_id is None:
        return limits
    keys = set(session.scalars(select(ApiKey.id).where(ApiKey.project_id == project_id)))
    return [x for x in limits if x.scope_id == project_id or x.scope_id in keys]


def delete_limit(session: Session, *, spec: LimitSpec) -> None:
    scope, scope_id = _limit_scope(session, spec)
    limit = session.scalar(select(Limit).where(Limit.scope == scope, Limit.scope_id == scope_id))
    if limit is None:
        raise NotFound("No limits are set there.", param=scope)
    session.delete(limit)
    session.flush()


def limit_spec(session: Session, limit: Limit) -> LimitSpec:
    where = {"project": _project_name(session, limit.scope_id)}
    if limit.scope == "key":
        where = {"key": limit.scope_id}
    return LimitSpec(
        **where,
        rpm=limit.rpm,
        tpm=limit.tpm,
        budget=limit.budget,
        budget_period=limit.budget_period,
    )


# Cache policies


def set_cache_policy(session: Session, *, spec: CacheSpec) -> CachePolicy:
    """Set (replace) a project's cache; a semantic cache needs an embedding model it may use."""
    project = identity.get_project_by_name_or_raise(session, name=spec.project)
    if spec.semantic_threshold is not None:
        _check_embedding_model(session, alias=spec.embedding_model, project=project)
    policy = session.get(CachePolicy, project.id)
    if policy is None:
        policy = CachePolicy(project_id=project.id)
        session.add(policy)
    policy.ttl_seconds, policy.exact = spec.ttl_seconds, spec.exact
    policy.semantic_threshold, policy.embedding_model = (
        spec.semantic_threshold,
        spec.embedding_model,
    )
    session.flush()
    return policy


def _check_embedding_model(session: Session, *, alias: str, project: Project) -> None:
    """Refuse now what would fail every cached call later: the alias must resolve, as calls
    resolve it (a route first, then the catalog), to an embedding model the project may use."""
    route = get_route_by_alias(session, alias=alias)
    if route is not None:
        usable = route.project_id in (None, project.id) and bool(route.deployments)
        kind = route.kind
    else:
        model = catalog.get_by_alias(session, alias=alias)
        usable = (
            model is not None
            and model.status == "active"
            and model.project_id in (None, project.id)
        )
        kind = model.kind if model is not None else None
    if usable and kind == "embedding":
        return
    problem = (
        f"{alias!r} is a {kind} model"
        if usable
        else f"there is no model {alias!r} that project {project.name!r} may use"
    )
    choices = _embedding_models(session, project_id=project.id)
    hint = (
        f"Embedding models it may use: {', '.join(choices)}."
        if choices
        else "Add one first (`llmdeck models add NAME --kind embedding ...`)."
    )
    raise InvalidRequest(
        f"embedding_model: {problem}; the semantic cache needs an embedding model. {hint}",
        param="embedding_model",
    )


def _embedding_models(session: Session, *, project_id: str) -> list[str]:
    routes = list_routes(session, project_id=project_id)
    names = {r.alias for r in routes if r.kind == "embedding" and r.deployments}
    shadowed = {r.alias for r in list_routes(session)}  # a route hides a catalog namesake
    names |= {
        m.alias
        for m in catalog.list_models(session, project_id=project_id)
        if m.kind == "embedding" and m.alias not in shadowed
    }
    return sorted(names)


def list_cache_policies(session: Session, *, project_id: str | None = None) -> list[CachePolicy]:
    query = select(CachePolicy)
    if project_id is not None:
        query = query.where(CachePolicy.project_id == project_id)
    return list(session.scalars(query))


def delete_cache_policy(session: Session, *, project: str) -> None:
    project_row = identity.get_project_by_name_or_raise(session, name=project)
    policy = session.get(CachePolicy, project_row.id)
    if policy is None:
        raise NotFound(f"Project {project!r} has no cache policy.", param="project")
    session.delete(policy)
    session.flush()


def cache_spec(session: Session, policy: CachePolicy) -> CacheSpec:
    return CacheSpec(
        project=_project_name(session, policy.project_id) or policy.project_id,
        ttl_seconds=policy.ttl_seconds,
        exact=policy.exact,
        semantic_threshold=policy.semantic_threshold,
        embedding_model=policy.embedding_model,
    )


# The whole configuration


def apply(
    session: Session, *, settings: Settings, config: GatewayConfig, prune: bool = False
) -> ApplyResult:
    """Make the stored configuration match `config`; with `prune`, remove routes it omits."""
    for spec in config.routes:
        put_route(session, settings=settings, spec=spec)
    for limit in config.limits:
        set_limit(session, spec=limit)
    for cache in config.cache:
        set_cache_policy(session, spec=cache)
    removed = []
    if prune:
        wanted = {r.alias for r in config.routes}
        for route in list_routes(session):
            if route.alias not in wanted:
                removed.append(route.alias)
                delete_route(session, route=route)
    return ApplyResult(
        routes=len(config.routes),
        limits=len(config.limits),
        cache=len(config.cache),
        removed=removed,
    )


def export(session: Session, *, project_id: str | None = None) -> GatewayConfig:
    """The stored configuration, without secrets (keys show as `api_key_env` to fill in)."""
    routes = []
    for route in list_routes(session, project_id=project_id):
        public = route_public(session, route)
        data = public.model_dump(exclude={"deployments"})
        deployments = [
            DeploymentSpec(
                name=d.name,
                provider=d.provider,
                upstream=d.upstream,
                base_url=d.base_url,
                weight=d.weight,
                api_key_env=_key_env(route.alias, d.name) if d.has_api_key else None,
            )
            for d in public.deployments
        ]
        routes.append(RouteSpec(**data, deployments=deployments))
    return GatewayConfig(
        routes=routes,
        limits=[limit_spec(session, x) for x in list_limits(session, project_id=project_id)],
        cache=[cache_spec(session, p) for p in list_cache_policies(session, project_id=project_id)],
    )


def _key_env(alias: str, name: str) -> str:
    clean = "".join(c if c.isalnum() else "_" for c in f"{alias}_{name}").upper()
    return f"LLMDECK_KEY_{clean}"


def parse_yaml(text: str) -> GatewayConfig:
    """A configuration from YAML (safe_load only: the file is data, never code)."""
    try:
        data: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"The file is not valid YAML: {exc}") from None
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{where}: {first['msg']}", param=where) from None


def to_yaml(config: GatewayConfig) -> str:
    data = config.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    for route in data["routes"]:
        for deployment in route["deployments"]:
            deployment.pop("api_key", None)
    return yaml.safe_dump(data, sort_keys=False)
