"""Console pages of the catalog: the models a project can call, and adding one by base URL."""

from __future__ import annotations

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from llmdeck.catalog import service
from llmdeck.catalog.schemas import MAX_CONTEXT_WINDOW, ModelCreate, ModelUpdate
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.forms import field_errors
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import LLMDeckError, NotFound, PermissionDenied

pages = PageSet("catalog", __file__)
pages.nav("Models", "/models", section="Build", order=20, icon="box")


def _render(request: Request, viewer: Viewer, *, form=None, errors=None, added=None):
    with request.app.state.runtime.db.session() as session:
        models = [
            service.to_public(m)
            for m in service.list_models(session)
            if m.project_id in (None, viewer.project.id)
        ]
    context = {
        "models": models,
        "manageable": {m.alias for m in models if _may_change(viewer, m)},
        "form": form or {},
        "errors": errors or {},
        "added": added,
        "can_add": viewer.can("admin"),
        "max_context_window": MAX_CONTEXT_WINDOW,
    }
    return console_of(request).render(request, "catalog/models.html", context)


@pages.router.get("/models")
def models_page(request: Request, added: str = "", viewer: Viewer = Depends(signed_in)):
    return _render(request, viewer, added=added or None)


@pages.router.post("/models", dependencies=[Depends(csrf_protected)])
def add_model(
    request: Request,
    alias: str = Form(""),
    upstream_name: str = Form(""),
    base_url: str = Form(""),
    api_key: str = Form(""),
    input_price_per_mtok: str = Form("0"),
    output_price_per_mtok: str = Form("0"),
    context_window: str = Form("8192"),
    shared: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Add an OpenAI-compatible model; its key is encrypted at rest and never shown again."""
    viewer.require("admin", "change the model catalog")
    form = {
        "alias": alias.strip(),
        "upstream_name": upstream_name.strip(),
        "base_url": base_url.strip(),
        "input_price_per_mtok": input_price_per_mtok.strip() or "0",
        "output_price_per_mtok": output_price_per_mtok.strip() or "0",
        "context_window": context_window.strip() or "8192",
        "shared": bool(shared),
    }
    # Only superusers add models for every project; a project admin adds to their project.
    project = None if (shared and viewer.is_superuser) else viewer.project.name
    try:
        data = ModelCreate(
            provider="openai",
            alias=form["alias"],
            upstream_name=form["upstream_name"],
            base_url=form["base_url"] or None,
            api_key=api_key or None,
            input_price_per_mtok=form["input_price_per_mtok"],
            output_price_per_mtok=form["output_price_per_mtok"],
            context_window=form["context_window"],
            project=project,
        )
        with request.app.state.runtime.db.session() as session:
            model = service.create(session, settings=request.app.state.runtime.settings, data=data)
            alias_added = model.alias
    except ValidationError as exc:
        errors = field_errors(exc)
        if not form["base_url"]:  # optional for other providers, required on this form
            errors["base_url"] = "Required."
        return _render(request, viewer, form=form | {"key_typed": bool(api_key)}, errors=errors)
    except LLMDeckError as exc:
        errors = {exc.param or "form": exc.message}
        return _render(request, viewer, form=form | {"key_typed": bool(api_key)}, errors=errors)
    return RedirectResponse(f"/models?added={alias_added}", status_code=303)


def _may_change(viewer: Viewer, model) -> bool:
    """Project admins change their project's models; shared ones are for superusers."""
    if not viewer.can("admin"):
        return False
    return model.project_id == viewer.project.id or (
        model.project_id is None and viewer.is_superuser
    )


@pages.router.post("/models/status", dependencies=[Depends(csrf_protected)])
def set_model_status(
    request: Request,
    alias: str = Form(...),
    status: str = Form(...),
    viewer: Viewer = Depends(signed_in),
):
    """Enable or disable a model: a disabled model answers no calls until enabled again."""
    viewer.require("admin", "change the model catalog")
    with request.app.state.runtime.db.session() as session:
        model = service.get_by_alias_or_raise(session, alias=alias)
        if model.project_id not in (None, viewer.project.id):
            raise NotFound(f"No model with alias {alias!r}.", param="alias")
        if not _may_change(viewer, model):
            raise PermissionDenied("Models shared by every project are changed by a superuser.")
        data = ModelUpdate(status="disabled" if status == "disabled" else "active")
        service.update(session, model=model, data=data)
    return RedirectResponse("/models", status_code=303)
