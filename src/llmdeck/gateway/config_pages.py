"""The console's Gateway page: routes with their deployments and health, limits and budgets,
the response cache, and the whole configuration as YAML.

Each section's forms post to a module of their own (route_pages, limit_pages, cache_pages,
yaml_pages); this one renders the page they come back to, with their errors or a notice.
Every change goes through the service functions and schemas the REST API uses, and through
the API's own permission checks, so the console and the API refuse the same things.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.from_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from llmdeck.console import flash
from llmdeck.console.auth import Viewer, signed_in
from llmdeck.console.shell import console_of
from llmdeck.gateway import api
from llmdeck.gateway import config as service
from llmdeck.gateway.schemas import CacheSpec
from llmdeck.identity import service as identity
from llmdeck.identity.models import Project

router = APIRouter(include_in_schema=False)
PAGE = "/gateway"
CONFIGURE = "configure the gateway"


def blank(value: str) -> str | None:
    """A form value, or None when nothing but spaces was typed."""
    value = value.strip()
    return value or None


def runtime(request: Request):
    return request.app.state.runtime


def may_change_route(viewer: Viewer, route) -> bool:
    """Project admins change their project's routes; shared ones are for superusers."""
    return viewer.can("admin") and (viewer.is_superuser or route.project == viewer.project.name)


def _health(request: Request, viewer: Viewer) -> dict[tuple[str, str], Any]:
    """Breaker state per (route, deployment), exactly as GET /api/gateway/deployments/health."""
    endpoint = partial(
        api.list_gateway_deployment_health, principal=viewer.principal, runtime=runtime(request)
    )
    return {(row.alias, row.name): row for row in anyio.from_thread.run(endpoint)}


def render_page(
    request: Request, viewer: Viewer, *, forms=None, errors=None, notice=None, status=200
):
    """The page, with the forms of its sections as typed and their errors, keyed by section."""
    with runtime(request).db.session() as session:
        pid = viewer.project.id
        routes = [
            service.route_public(session, r) for r in service.list_routes(session, project_id=pid)
        ]
        limits = [
            service.limit_spec(session, x) for x in service.list_limits(session, project_id=pid)
        ]
        policy = next(
            (
                service.cache_spec(session, p)
                for p in service.list_cache_policies(session, project_id=pid)
            ),
            None,
        )
        project = session.get(Project, pid)
        keys = [
            {"id": k.id, "name": k.name, "prefix": k.prefix}
            for k in identity.list_keys(session, project=project)
            if k.revoked_at is None
        ]
    forms = forms or {}
    if "cache" not in forms:
        forms["cache"] = _cache_form(policy or CacheSpec(project=viewer.project.name))
    context = {
        "routes": routes,
        "manageable": {r.alias for r in routes if may_change_route(viewer, r)},
        "health": _health(request, viewer),
        "limits": limits,
        "keys": keys,
        "key_names": {k["id"]: f"{k['name']} ({k['prefix']}…)" for k in keys},
        "policy": policy,
        "forms": forms,
        "errors": errors or {},
        "notice": notice,
        "can_change": viewer.can("admin"),
        "can_apply": viewer.can("admin") and viewer.is_superuser,
    }
    return console_of(request).render(request, "gateway/config.html", context, status=status)


def _cache_form(policy: CacheSpec) -> dict[str, Any]:
    return {
        "ttl_seconds": str(policy.ttl_seconds),
        "exact": policy.exact,
        "semantic_threshold": ""
        if policy.semantic_threshold is None
        else str(policy.semantic_threshold),
        "embedding_model": policy.embedding_model,
    }


def done(request: Request, viewer: Viewer, notice: dict[str, Any]) -> RedirectResponse:
    """Redirect to the page (so a refresh posts nothing again), which shows `notice` once."""
    response = RedirectResponse(PAGE, status_code=303)
    flash.put(response, request, viewer.session, PAGE, notice)
    return response


@router.get(PAGE)
def gateway_page(request: Request, viewer: Viewer = Depends(signed_in)):
    """Routes with their deployments and health, limits and budgets, the cache, YAML."""
    notice = flash.read(request, viewer.session)
    response = render_page(request, viewer, notice=notice)
    flash.clear(response, request, PAGE)
    return response
