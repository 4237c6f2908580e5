"""REST API of the gateway's configuration: /api/gateway (routes, limits, cache, YAML)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest, NotFound, PermissionDenied, invalid_fields
from llmdeck.gateway import config as service
from llmdeck.gateway.schemas import (
    ApplyResult,
    CacheSpec,
    GatewayConfig,
    LimitSpec,
    RoutePublic,
    RoutePut,
    RouteSpec,
)
from llmdeck.identity.deps import get_principal, get_runtime, get_session, requires
from llmdeck.identity.schemas import Principal
from llmdeck.runtime import Runtime

router = APIRouter(prefix="/api/gateway", tags=["gateway"])
admin = requires("admin", "configure the gateway")


class RoutePage(BaseModel):
    data: list[RoutePublic]
    next_cursor: str | None = None


class LimitPage(BaseModel):
    data: list[LimitSpec]
    next_cursor: str | None = None


class CachePage(BaseModel):
    data: list[CacheSpec]
    next_cursor: str | None = None


class DeploymentHealth(BaseModel):
    alias: str = Field(description="The route (or catalog model) the deployment serves.")
    name: str = Field(description="The deployment's name within its route.")
    deployment: str = Field(description="The deployment's id.")
    state: Literal["closed", "open", "half_open"] = Field(
        description="closed: calls go; open: calls fail fast; half_open: a probe may go."
    )
    consecutive_failures: int
    in_flight: int


def _route_spec(alias: str, body: RoutePut) -> RouteSpec:
    """The route the path names; the path's alias is checked like any other field."""
    if body.alias is not None and body.alias != alias:
        raise InvalidRequest(
            f"The path names the route {alias!r} but the body's `alias` is {body.alias!r}. "
            "Leave `alias` out of the body or make it match the path (to rename a route, "
            "PUT the new alias and DELETE the old one).",
            param="alias",
            code="invalid_value",
        )
    try:
        return RouteSpec.model_validate({**body.model_dump(), "alias": alias})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors[0]["loc"] == ("alias",) and errors[0]["type"] == "string_pattern_mismatch":
            raise InvalidRequest(
                f"The alias {alias!r} is not valid: use letters, digits and _ . : / - only, "
                "starting with a letter or digit.",
                param="alias",
                code="invalid_value",
            ) from None
        raise invalid_fields(errors) from None


@router.get("/routes", operation_id="list_gateway_routes", response_model=RoutePage)
def list_gateway_routes(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    """The routes (aliases with deployments) this project may use."""
    routes = service.list_routes(session, project_id=principal.project_id)
    return {"data": [service.route_public(session, r) for r in routes], "next_cursor": None}


@router.get("/routes/{alias:path}", operation_id="get_gateway_route", response_model=RoutePublic)
def get_gateway_route(
    alias: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """One route with its deployments (keys are never shown)."""
    route = service.get_route_by_alias_or_raise(session, alias=alias)
    if route.project_id not in (None, principal.project_id):
        raise NotFound(f"No route {alias!r}.", param="alias")  # as if it did not exist
    return service.route_public(session, route)


@router.put("/routes/{alias:path}", operation_id="put_gateway_route", response_model=RoutePublic)
def put_gateway_route(
    alias: str,
    body: RoutePut,
    principal: Principal = Depends(admin),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
):
    """Create or replace a route: deployments, weights, strategy, retries, fallbacks."""
    body = _route_spec(alias, body)
    if body.project is None and not principal.all_projects:
        body = body.model_copy(update={"project": principal.project_name})
    service.require_own_project(principal, body.project, "add routes")
    existing = service.get_route_by_alias(session, alias=alias)
    if existing is not None and not principal.all_projects:
        service.require_own_project(
            principal, service.route_public(session, existing).project, "change routes"
        )
    route = service.put_route(session, settings=runtime.settings, spec=body)
    return service.route_public(session, route)


@router.delete("/routes/{alias:path}", operation_id="delete_gateway_route", status_code=204)
def delete_gateway_route(
    alias: str, principal: Principal = Depends(admin), session: Session = Depends(get_session)
):
    """Remove a route."""
    route = service.get_route_by_alias_or_raise(session, alias=alias)
    service.require_own_project(
        principal, service.route_public(session, route).project, "remove routes"
    )
    service.delete_route(session, route=route)


@router.get("/limits", operation_id="list_gateway_limits", response_model=LimitPage)
def list_gateway_limits(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    """Rate limits and budgets of this project and its keys."""
    limits = service.list_limits(session, project_id=principal.project_id)
    return {"data": [service.limit_spec(session, x) for x in limits], "next_cursor": None}


@router.put("/limits", operation_id="set_gateway_limit", response_model=LimitSpec)
def set_gateway_limit(
    body: LimitSpec, principal: Principal = Depends(admin), session: Session = Depends(get_session)
):
    """Set the requests/min, tokens/min and spend budget of a project or an API key."""
    service.check_limit_scope(session, principal, body)
    return service.limit_spec(session, service.set_limit(session, spec=body))


@router.delete("/limits", operation_id="delete_gateway_limit", status_code=204)
def delete_gateway_limit(
    project: str | None = Query(default=None),
    key: str | None = Query(default=None),
    principal: Principal = Depends(admin),
    session: Session = Depends(get_session),
):
    """Remove the limits of a project or an API key."""
    if (project is None) == (key is None):
        raise InvalidRequest(
            "Name exactly one of the query parameters project or key, "
            "e.g. DELETE /api/gateway/limits?project=default.",
            param="project" if project is None else "key",
            code="invalid_value",
        )
    spec = LimitSpec(project=project, key=key)
    service.check_limit_scope(session, principal, spec)
    service.delete_limit(session, spec=spec)


@router.get("/cache", operation_id="list_gateway_cache_policies", response_model=CachePage)
def list_gateway_cache_policies(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    """This project's response cache policy."""
    policies = service.list_cache_policies(session, project_id=principal.project_id)
    return {"data": [service.cache_spec(session, p) for p in policies], "next_cursor": None}


@router.put("/cache", operation_id="set_gateway_cache_policy", response_model=CacheSpec)
def set_gateway_cache_policy(
    body: CacheSpec, principal: Principal = Depends(admin), session: Session = Depends(get_session)
):
    """Turn on (or change) a project's exact and semantic response cache."""
    service.require_own_project(principal, body.project, "configure the cache")
    return service.cache_spec(session, service.set_cache_policy(session, spec=body))


@router.delete("/cache", operation_id="delete_gateway_cache_policy", status_code=204)
def delete_gateway_cache_policy(
    project: str = Query(...),
    principal: Principal = Depends(admin),
    session: Session = Depends(get_session),
):
    """Turn a project's response cache off."""
    service.require_own_project(principal, project, "configure the cache")
    service.delete_cache_policy(session, project=project)


@router.get(
    "/config",
    operation_id="export_gateway_config",
    response_model=GatewayConfig,
    responses={200: {"content": {"application/yaml": {}}}},
)
def export_gateway_config(
    format: str = Query(default="json", pattern="^(json|yaml)$"),
    principal: Principal = Depends(admin),
    session: Session = Depends(get_session),
):
    """The gateway configuration (routes, limits, cache), as JSON or YAML, without keys."""
    project_id = None if principal.all_projects else principal.project_id
    config = service.export(session, project_id=project_id)
    if format == "yaml":
        return PlainTextResponse(service.to_yaml(config), media_type="application/yaml")
    return config


@router.put("/config", operation_id="apply_gateway_config", response_model=ApplyResult)
def apply_gateway_config(
    body: GatewayConfig = Body(...),
    prune: bool = Query(default=False, description="Also remove routes the config omits."),
    principal: Principal = Depends(requires("admin", "configure the gateway")),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
):
    """Apply a whole configuration (the JSON form of the YAML file)."""
    if not principal.all_projects:
        raise PermissionDenied("Applying a whole gateway configuration needs the master key.")
    return service.apply(session, settings=runtime.settings, config=body, prune=prune)


@router.get(
    "/deployments/health",
    operation_id="list_gateway_deployment_health",
    response_model=list[DeploymentHealth],
)
async def list_gateway_deployment_health(
    principal: Principal = Depends(get_principal), runtime: Runtime = Depends(get_runtime)
):
    """Circuit breaker state and calls in flight per deployment of the routes (and catalog
    models) this project may use, as this process sees them."""
    snapshot = await runtime.gateway.directory.snapshot()
    routed = [d for target in snapshot.routes.values() for d in target.deployments]
    return [
        DeploymentHealth(
            alias=row.deployment.alias,
            name=row.deployment.name,
            deployment=row.deployment.id,
            state=row.state,
            consecutive_failures=row.consecutive_failures,
            in_flight=row.in_flight,
        )
        for row in runtime.gateway.balancer.health(routed)
        if principal.all_projects or row.deployment.project_id in (None, principal.project_id)
    ]
