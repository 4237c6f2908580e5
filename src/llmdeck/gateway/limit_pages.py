"""The Gateway page's rate limits and budgets, of the project or of one of its API keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from pydantic import ValidationError

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.forms import field_errors
from llmdeck.core.errors import LLMDeckError
from llmdeck.gateway import config as service
from llmdeck.gateway.config_pages import CONFIGURE, PAGE, blank, done, render_page, runtime
from llmdeck.gateway.schemas import LimitSpec

router = APIRouter(include_in_schema=False)


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
    values = {"rpm": blank(rpm), "tpm": blank(tpm), "budget": blank(budget)}
    try:
        spec = LimitSpec(**_limit_target(viewer, scope, key), **values, budget_period=budget_period)
    except ValidationError as exc:
        errors = field_errors(exc, default="key")
        if "key" in errors:
            errors["key"] = "Pick the API key to limit."
        return render_page(request, viewer, forms={"limit": form}, errors={"limit": errors})
    try:
        with runtime(request).db.session() as session:
            service.check_limit_scope(session, viewer.principal, spec)
            service.set_limit(session, spec=spec)
    except LLMDeckError as exc:
        errors = {"limit": {"key" if exc.param == "key" else "form": exc.message}}
        return render_page(request, viewer, forms={"limit": form}, errors=errors)
    return done(request, viewer, {"ok": f"Saved the limits of {_limit_label(viewer, spec)}."})


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
    with runtime(request).db.session() as session:
        service.check_limit_scope(session, viewer.principal, spec)
        service.delete_limit(session, spec=spec)
    return done(request, viewer, {"ok": f"Removed the limits of {_limit_label(viewer, spec)}."})
