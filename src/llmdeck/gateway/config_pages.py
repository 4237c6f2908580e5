"""Console pages of the gateway's configuration: routes, limits and budgets, the response cache,
deployment health, and the whole configuration as YAML.

Every change goes through the service functions and schemas the REST API uses, and through
the API's own permission checks, so the console and the API refuse the same things.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.from_thread
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, RedirectResponse
from pydantic import ValidationError

from llmdeck.console import flash
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.forms import say
from llmdeck.console.shell import console_of
from llmdeck.core.errors import InvalidRequest, LLMDeckError, NotFound, PermissionDenied
from llmdeck.core.registry import plugins
from llmdeck.gateway import api
from llmdeck.gateway import config as service
from llmdeck.gateway.schemas import CacheSpec, LimitSpec, RouteSpec
from llmdeck.identity import service as identity
from llmdeck.identity.models import Project

router = APIRouter(include_in_schema=False)
PAGE = "/gateway"
CONFIGURE = "configure the gateway"
ROUTE_FIELDS = (
    "alias",
    "kind",
    "strategy",
    "retries",
    "attempt_timeout",
    "deadline",
    "context_window",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "fallbacks",
)
DEPLOYMENT_FIELDS = ("name", "provider", "upstream", "base_url", "weight")


def _blank(value: str) -> str | None:
    value = value.strip()
    return value or None


def _runtime(request: Request):
    return request.app.state.runtime


# The page


def _health(request: Request, viewer: Viewer) -> dict[tuple[str, str], Any]:
    """Breaker state per (route, deployment), exactly as GET /api/gateway/deployments/health."""
    endpoint = partial(
        api.list_gateway_deployment_health, principal=viewer.principal, runtime=_runtime(request)
    )
    return {(row.alias, row.name): row for row in anyio.from_thread.run(endpoint)}


def _may_change_route(viewer: Viewer, route) -> bool:
    """Project admins change their project's routes; shared ones are for superusers."""
    return viewer.can("admin") and (viewer.is_superuser or route.project == viewer.project.name)


def _render(request: Request, viewer: Viewer, *, forms=None, errors=None, notice=None, status=200):
    with _runtime(request).db.session() as session:
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
        "manageable": {r.alias for r in routes if _may_change_route(viewer, r)},
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


def _done(request: Request, viewer: Viewer, notice: dict[str, Any]) -> RedirectResponse:
    """Redirect to the page (so a refresh posts nothing again), which shows `notice` once."""
    response = RedirectResponse(PAGE, status_code=303)
    flash.put(response, request, viewer.session, PAGE, notice)
    return response


@router.get(PAGE)
def gateway_page(request: Request, viewer: Viewer = Depends(signed_in)):
    """Routes with their deployments and health, limits and budgets, the cache, YAML."""
    notice = flash.read(request, viewer.session)
    response = _render(request, viewer, notice=notice)
    flash.clear(response, request, PAGE)
    return response


# Routes


def _route_form(route) -> dict[str, Any]:
    data = route.model_dump()
    form = {k: "" if data[k] is None else str(data[k]) for k in ROUTE_FIELDS}
    form["fallbacks"] = ", ".join(route.fallbacks)
    form["shared"] = route.project is None
    form["deployments"] = [
        {
            **{k: "" if d[k] is None else str(d[k]) for k in DEPLOYMENT_FIELDS},
            "has_api_key": d["has_api_key"],
        }
        for d in data["deployments"]
    ]
    return form


def _render_route(
    request: Request, viewer: Viewer, form: dict, *, errors=None, editing=False, extra=1, status=200
):
    # Empty rows to add deployments in; the form's "More rows" button asks for one more.
    form.setdefault("deployments", []).extend(
        {"provider": "openai", "weight": "1"} for _ in range(extra)
    )
    context = {
        "form": form,
        "errors": errors or {},
        "editing": editing,
        "providers": plugins().providers.names(),
    }
    return console_of(request).render(request, "gateway/route_form.html", context, status=status)


@router.get(PAGE + "/routes/new")
def new_route_page(request: Request, viewer: Viewer = Depends(signed_in)):
    viewer.require("admin", CONFIGURE)
    form = {"kind": "chat", "strategy": "weighted", "context_window": "8192"}
    form |= {"input_price_per_mtok": "0", "output_price_per_mtok": "0"}
    return _render_route(request, viewer, form)


@router.get(PAGE + "/routes/edit")
def edit_route_page(request: Request, alias: str, viewer: Viewer = Depends(signed_in)):
    viewer.require("admin", CONFIGURE)
    with _runtime(request).db.session() as session:
        route = _visible_route(session, viewer, alias)
        public = service.route_public(session, route)
    if not _may_change_route(viewer, public):
        raise PermissionDenied("Routes shared by every project are changed by a superuser.")
    return _render_route(request, viewer, _route_form(public), editing=True)


def _visible_route(session, viewer: Viewer, alias: str):
    route = service.get_route_by_alias_or_raise(session, alias=alias)
    if route.project_id not in (None, viewer.project.id):
        raise NotFound(f"No route {alias!r}.", param="alias")  # as if it did not exist
    return route


def _read_route_form(data) -> tuple[dict, list[dict], list[str | None], int]:
    """The typed values (to show again), each deployment row typed in with its typed key,
    and how many rows were left empty."""
    form: dict[str, Any] = {k: str(data.get(k, "")).strip() for k in ROUTE_FIELDS}
    form["shared"] = bool(data.get("shared"))
    rows, keys = [], []
    i = 0
    while f"d-{i}-name" in data:
        row = {k: str(data.get(f"d-{i}-{k}", "")).strip() for k in DEPLOYMENT_FIELDS}
        row["has_api_key"] = data.get(f"d-{i}-has_api_key") == "1"
        key = str(data.get(f"d-{i}-api_key", "")).strip() or None
        typed = any(row[k] for k in ("name", "upstream", "base_url")) or key
        if typed:  # rows left empty are not deployments
            rows.append(row)
            keys.append(key)
        i += 1
    form["deployments"] = rows
    return form, rows, keys, i - len(rows)


def _route_spec(form: dict, rows: list[dict], keys: list[str | None], project: str | None):
    deployments = [
        {
            "name": r["name"],
            "provider": r["provider"] or "openai",
            "upstream": r["upstream"],
            "base_url": r["base_url"] or None,
            "api_key": key,  # None keeps the key stored under this deployment's name
            "weight": r["weight"] or "1",
        }
        for r, key in zip(rows, keys, strict=True)
    ]
    fallbacks = [f.strip() for f in form["fallbacks"].replace("\n", ",").split(",") if f.strip()]
    optional = {k: _blank(form[k]) for k in ("retries", "attempt_timeout", "deadline")}
    return RouteSpec.model_validate(
        {
            **{k: form[k] for k in ROUTE_FIELDS if k not in optional and k != "fallbacks"},
            **optional,
            "fallbacks": fallbacks,
            "project": project,
            "deployments": deployments,
        }
    )


def _route_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for e in exc.errors(include_url=False):
        loc = e["loc"]
        if loc[:1] == ("deployments",) and len(loc) >= 3:
            name = f"d-{loc[1]}-{loc[2]}"
        elif loc:
            name = str(loc[0])
        else:
            name = "form"
        errors.setdefault(name, say(e))
    return errors


def _service_error_field(param: str | None) -> str:
    if param in ROUTE_FIELDS or param == "deployments":
        return param
    if param in ("provider", "base_url", "api_key_env"):
        return "deployments"  # the message names the deployment
    return "form"


@router.post(PAGE + "/routes", dependencies=[Depends(csrf_protected)])
async def save_route(request: Request, viewer: Viewer = Depends(signed_in)):
    """Create or change a route; a stored API key stays unless a new one is typed."""
    viewer.require("admin", CONFIGURE)
    data = await request.form()
    editing = data.get("editing") == "1"
    form, rows, keys, blank = _read_route_form(data)
    if data.get("action") == "more":  # another empty deployment row, nothing saved
        return _render_route(request, viewer, form, editing=editing, extra=blank + 1)
    return await run_in_threadpool(_save_route, request, viewer, form, rows, keys, editing)


def _save_route(request, viewer: Viewer, form, rows, keys, editing: bool):
    principal = viewer.principal
    project = None if (form["shared"] and viewer.is_superuser) else viewer.project.name
    try:
        spec = _route_spec(form, rows, keys, project)
    except ValidationError as exc:
        return _render_route(request, viewer, form, errors=_route_errors(exc), editing=editing)
    try:
        with _runtime(request).db.session() as session:
            existing = service.get_route_by_alias(session, alias=spec.alias)
            if existing is not None and not editing:
                raise InvalidRequest(
                    f"A route {spec.alias!r} exists already; pick another alias, or edit it.",
                    param="alias",
                )
            # The API's own checks: project admins configure only their own project.
            service.require_own_project(principal, spec.project, "add routes")
            if existing is not None and not principal.all_projects:
                service.require_own_project(
                    principal, service.route_public(session, existing).project, "change routes"
                )
            service.put_route(session, settings=_runtime(request).settings, spec=spec)
    except LLMDeckError as exc:
        errors = {_service_error_field(exc.param): exc.message}
        return _render_route(request, viewer, form, errors=errors, editing=editing)
    verb = "Saved" if editing else "Added"
    return _done(request, viewer, {"ok": f"{verb} route {spec.alias}."})


@router.post(PAGE + "/routes/delete", dependencies=[Depends(csrf_protected)])
def delete_route(request: Request, alias: str = Form(...), viewer: Viewer = Depends(signed_in)):
    """Remove a route; calls to its alias fail from then on."""
    viewer.require("admin", CONFIGURE)
    with _runtime(request).db.session() as session:
        route = _visible_route(session, viewer, alias)
        service.require_own_project(
            viewer.principal, service.route_public(session, route).project, "remove routes"
        )
        service.delete_route(session, route=route)
    return _done(request, viewer, {"ok": f"Deleted route {alias}."})


# Limits and budgets


def _limit_target(viewer: Viewer, scope: str, key: str) -> dict[str, str | None]:
    if scope == "key":
        return {"project": None, "key": key or None}
    return {"project": viewer.project.name, "key": None}


@router.post(PAGE + "/limits", dependencies=[Depends(csrf_protected)])
def save_limit(
    request: Request,
    scope: str = Form("project"),
    key: str = Form(""),
    rpm: str = Form(""),
    tpm: str = Form(""),
    budget: str = Form(""),
    budget_period: str = Form("month"),
    viewer: Viewer = Depends(signed_in),
):
    """Set the requests/min, tokens/min and spend budget of the project or one of its keys."""
    viewer.require("admin", CONFIGURE)
    form = {"scope": scope, "key": key, "rpm": rpm, "tpm": tpm, "budget": budget}
    form["budget_period"] = budget_period
    values = {"rpm": _blank(rpm), "tpm": _blank(tpm), "budget": _blank(budget)}
    try:
        spec = LimitSpec(**_limit_target(viewer, scope, key), **values, budget_period=budget_period)
    except ValidationError as exc:
        errors = {}
        for e in exc.errors(include_url=False):
            errors.setdefault(str(e["loc"][0]) if e["loc"] else "key", say(e))
        if "key" in errors:
            errors["key"] = "Pick the API key to limit."
        return _render(request, viewer, forms={"limit": form}, errors={"limit": errors})
    try:
        with _runtime(request).db.session() as session:
            service.check_limit_scope(session, viewer.principal, spec)
            service.set_limit(session, spec=spec)
    except LLMDeckError as exc:
        errors = {"limit": {"key" if exc.param == "key" else "form": exc.message}}
        return _render(request, viewer, forms={"limit": form}, errors=errors)
    return _done(request, viewer, {"ok": f"Saved the limits of {_limit_label(viewer, spec)}."})


def _limit_label(viewer: Viewer, spec: LimitSpec) -> str:
    return f"project {spec.project}" if spec.project else f"key {spec.key}"


@router.post(PAGE + "/limits/delete", dependencies=[Depends(csrf_protected)])
def delete_limit(
    request: Request,
    scope: str = Form("project"),
    key: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Remove the limits of the project or one of its keys: it is unlimited again."""
    viewer.require("admin", CONFIGURE)
    spec = LimitSpec(**_limit_target(viewer, scope, key))
    with _runtime(request).db.session() as session:
        service.check_limit_scope(session, viewer.principal, spec)
        service.delete_limit(session, spec=spec)
    return _done(request, viewer, {"ok": f"Removed the limits of {_limit_label(viewer, spec)}."})


# The response cache


@router.post(PAGE + "/cache", dependencies=[Depends(csrf_protected)])
def save_cache(
    request: Request,
    ttl_seconds: str = Form(""),
    exact: str = Form(""),
    semantic_threshold: str = Form(""),
    embedding_model: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Turn on (or change) the project's exact and semantic response cache."""
    viewer.require("admin", CONFIGURE)
    form = {
        "ttl_seconds": ttl_seconds,
        "exact": bool(exact),
        "semantic_threshold": semantic_threshold,
        "embedding_model": embedding_model,
    }
    values = {
        "ttl_seconds": _blank(ttl_seconds),
        "semantic_threshold": _blank(semantic_threshold),
        "embedding_model": _blank(embedding_model),
    }
    given = {k: v for k, v in values.items() if v is not None or k == "semantic_threshold"}
    try:
        spec = CacheSpec(project=viewer.project.name, exact=bool(exact), **given)
    except ValidationError as exc:
        errors = {}
        for e in exc.errors(include_url=False):
            errors.setdefault(str(e["loc"][0]) if e["loc"] else "form", say(e))
        return _render(request, viewer, forms={"cache": form}, errors={"cache": errors})
    try:
        with _runtime(request).db.session() as session:
            service.require_own_project(viewer.principal, spec.project, "configure the cache")
            service.set_cache_policy(session, spec=spec)
    except LLMDeckError as exc:
        field = exc.param if exc.param in form else "form"
        return _render(
            request,
            viewer,
            forms={"cache": form},
            errors={"cache": {field: exc.message}},
        )
    return _done(request, viewer, {"ok": "Saved the response cache of this project."})


@router.post(PAGE + "/cache/delete", dependencies=[Depends(csrf_protected)])
def delete_cache(request: Request, viewer: Viewer = Depends(signed_in)):
    """Turn the project's response cache off."""
    viewer.require("admin", CONFIGURE)
    project = viewer.project.name
    with _runtime(request).db.session() as session:
        service.require_own_project(viewer.principal, project, "configure the cache")
        service.delete_cache_policy(session, project=project)
    return _done(request, viewer, {"ok": "Turned the response cache off."})


# The whole configuration as YAML


@router.get(PAGE + "/config.yaml")
def export_config(request: Request, viewer: Viewer = Depends(signed_in)):
    """The configuration as YAML, without keys: every project's for a superuser."""
    viewer.require("admin", "export the gateway configuration")
    project_id = None if viewer.is_superuser else viewer.project.id
    with _runtime(request).db.session() as session:
        text = service.to_yaml(service.export(session, project_id=project_id))
    headers = {"Content-Disposition": 'attachment; filename="llmdeck-gateway.yaml"'}
    return PlainTextResponse(text, media_type="application/yaml", headers=headers)


@router.post(PAGE + "/config", dependencies=[Depends(csrf_protected)])
def apply_config(
    request: Request,
    text: str = Form(""),
    file: UploadFile | None = File(None),
    prune: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Apply a YAML configuration: all of it, or (on any error) none of it."""
    viewer.require("admin", CONFIGURE)
    if not viewer.is_superuser:  # as PUT /api/gateway/config, which needs the master key
        raise PermissionDenied("Applying a whole gateway configuration needs a superuser.")
    if file is not None and file.filename:
        raw = file.file.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            errors = {"yaml": {"text": f"{file.filename} is not a UTF-8 text file."}}
            return _render(request, viewer, forms={"yaml": {"prune": bool(prune)}}, errors=errors)
    form = {"text": text, "prune": bool(prune)}
    try:
        if not text.strip():
            raise InvalidRequest("Paste a YAML configuration, or choose a file.")
        config = service.parse_yaml(text)
        with _runtime(request).db.session() as session:  # rolls back on any error
            result = service.apply(
                session, settings=_runtime(request).settings, config=config, prune=bool(prune)
            )
    except LLMDeckError as exc:
        message = f"Nothing was changed. {exc.message}"
        return _render(request, viewer, forms={"yaml": form}, errors={"yaml": {"text": message}})
    return _done(request, viewer, {"applied": result.model_dump()})
