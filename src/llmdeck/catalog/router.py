"""REST API of the catalog: /api/models."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy.orm import Session

from llmdeck.catalog import service
from llmdeck.catalog.schemas import ModelCreate, ModelPublic, ModelUpdate
from llmdeck.core.errors import NotFound, PermissionDenied
from llmdeck.identity.deps import get_principal, get_runtime, get_session, requires
from llmdeck.identity.schemas import Principal
from llmdeck.runtime import Runtime

router = APIRouter(prefix="/api/models", tags=["catalog"])
admin = requires("admin", "change the model catalog")


class ModelPage(BaseModel):
    data: list[ModelPublic]
    next_cursor: str | None = None


@router.get("", operation_id="list_models", response_model=ModelPage)
def list_models(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    """The catalog models this project may use."""
    models = service.list_models(session, project_id=principal.project_id)
    return {"data": [service.to_public(m) for m in models], "next_cursor": None}


@router.post("", operation_id="create_model", response_model=ModelPublic, status_code=201)
def create_model(
    body: ModelCreate,
    principal: Principal = Depends(admin),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
):
    """Add a model (e.g. OpenAI-compatible by base URL); its key is stored encrypted."""
    if body.project is None and not principal.all_projects:
        # A project admin adds models for their own project; shared ones need the master key.
        body = body.model_copy(update={"project": principal.project_name})
    elif body.project not in (None, principal.project_name) and not principal.all_projects:
        raise PermissionDenied("You can add models only to your own project.")
    return service.to_public(service.create(session, settings=runtime.settings, data=body))


def _visible(session: Session, alias: str, principal: Principal):
    model = service.get_by_alias_or_raise(session, alias=alias)
    if model.project_id not in (None, principal.project_id):
        raise NotFound(f"No model with alias {alias!r}.", param="alias")
    if model.project_id is None and not principal.all_projects:
        raise PermissionDenied("Shared models are changed with the master key.")
    return model


@router.patch("/{alias:path}", operation_id="update_model", response_model=ModelPublic)
def update_model(
    alias: str,
    body: ModelUpdate,
    principal: Principal = Depends(admin),
    session: Session = Depends(get_session),
):
    """Change a model's status, prices or context window."""
    model = _visible(session, alias, principal)
    return service.to_public(service.update(session, model=model, data=body))


@router.delete("/{alias:path}", operation_id="delete_model", status_code=204)
def delete_model(
    alias: str, principal: Principal = Depends(admin), session: Session = Depends(get_session)
):
    """Remove a model from the catalog."""
    service.delete(session, model=_visible(session, alias, principal))
