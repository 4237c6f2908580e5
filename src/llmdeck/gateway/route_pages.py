"""The Gateway page's routes: add, change or remove a route and its deployments, on a form
page of their own (gateway/route_form.html), one row per deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.forms import say
from llmdeck.console.shell import console_of
from llmdeck.core.errors import InvalidRequest, LLMDeckError, NotFound, PermissionDenied
from llmdeck.core.registry import plugins
from llmdeck.gateway import config as service
from llmdeck.gateway.config_pages import CONFIGURE, PAGE, blank, done, may_change_route, runtime
from llmdeck.gateway.schemas import RouteSpec

router = APIRouter(include_in_schema=False)
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
    with runtime(request).db.session() as session:
        route = _visible_route(session, viewer, alias)
        public = service.route_public(session, route)
    if not may_change_route(viewer, public):
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
    optional = {k: blank(form[k]) for k in ("retries", "attempt_timeout", "deadline")}
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
    form, rows, keys, blank_rows = _read_route_form(data)
    if data.get("action") == "more":  # another empty deployment row, nothing saved
        return _render_route(request, viewer, form, editing=editing, extra=blank_rows + 1)
    return await run_in_threadpool(_save_route, request, viewer, form, rows, keys, editing)


def _save_route(request, viewer: Viewer, form, rows, keys, editing: bool):
    principal = viewer.principal
    project = None if (form["shared"] and viewer.is_superuser) else viewer.project.name
    try:
        spec = _route_spec(form, rows, keys, project)
    except ValidationError as exc:
        return _render_route(request, viewer, form, errors=_route_errors(exc), editing=editing)
    try:
        with runtime(request).db.session() as session:
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
            service.put_route(session, settings=runtime(request).settings, spec=spec)
    except LLMDeckError as exc:
        errors = {_service_error_field(exc.param): exc.message}
        return _render_route(request, viewer, form, errors=errors, editing=editing)
    verb = "Saved" if editing else "Added"
    return done(request, viewer, {"ok": f"{verb} route {spec.alias}."})


@router.post(PAGE + "/routes/delete", dependencies=[Depends(csrf_protected)])
def delete_route(request: Request, alias: str = Form(...), viewer: Viewer = Depends(signed_in)):
    """Remove a route; calls to its alias fail from then on."""
    viewer.require("admin", CONFIGURE)
    with runtime(request).db.session() as session:
        route = _visible_route(session, viewer, alias)
        service.require_own_project(
            viewer.principal, service.route_public(session, route).project, "remove routes"
        )
        service.delete_route(session, route=route)
    return done(request, viewer, {"ok": f"Deleted route {alias}."})
