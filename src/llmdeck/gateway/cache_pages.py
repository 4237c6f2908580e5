"""The Gateway page's response cache: the project's exact and semantic cache policy."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from pydantic import ValidationError

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.forms import field_errors
from llmdeck.core.errors import LLMDeckError
from llmdeck.gateway import config as service
from llmdeck.gateway.config_pages import CONFIGURE, PAGE, blank, done, render_page, runtime
from llmdeck.gateway.schemas import CacheSpec

router = APIRouter(include_in_schema=False)


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
        "ttl_seconds": blank(ttl_seconds),
        "semantic_threshold": blank(semantic_threshold),
        "embedding_model": blank(embedding_model),
    }
    given = {k: v for k, v in values.items() if v is not None or k == "semantic_threshold"}
    try:
        spec = CacheSpec(project=viewer.project.name, exact=bool(exact), **given)
    except ValidationError as exc:
        errors = field_errors(exc)
        return render_page(request, viewer, forms={"cache": form}, errors={"cache": errors})
    try:
        with runtime(request).db.session() as session:
            service.require_own_project(viewer.principal, spec.project, "configure the cache")
            service.set_cache_policy(session, spec=spec)
    except LLMDeckError as exc:
        field = exc.param if exc.param in form else "form"
        return render_page(
            request,
            viewer,
            forms={"cache": form},
            errors={"cache": {field: exc.message}},
        )
    return done(request, viewer, {"ok": "Saved the response cache of this project."})


@router.post(PAGE + "/cache/delete", dependencies=[Depends(csrf_protected)])
def delete_cache(request: Request, viewer: Viewer = Depends(signed_in)):
    """Turn the project's response cache off."""
    viewer.require("admin", CONFIGURE)
    project = viewer.project.name
    with runtime(request).db.session() as session:
        service.require_own_project(viewer.principal, project, "configure the cache")
        service.delete_cache_policy(session, project=project)
    return done(request, viewer, {"ok": "Turned the response cache off."})
