"""The Gateway page's configuration as YAML: download it, or apply one (superusers only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.core.errors import InvalidRequest, LLMDeckError, PermissionDenied
from llmdeck.gateway import config as service
from llmdeck.gateway.config_pages import CONFIGURE, PAGE, done, render_page, runtime

router = APIRouter(include_in_schema=False)


@router.get(PAGE + "/config.yaml")
def export_config(request: Request, viewer: Viewer = Depends(signed_in)):
    """The configuration as YAML, without keys: every project's for a superuser."""
    viewer.require("admin", "export the gateway configuration")
    project_id = None if viewer.is_superuser else viewer.project.id
    with runtime(request).db.session() as session:
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
            forms = {"yaml": {"prune": bool(prune)}}
            return render_page(request, viewer, forms=forms, errors=errors)
    form = {"text": text, "prune": bool(prune)}
    try:
        if not text.strip():
            raise InvalidRequest("Paste a YAML configuration, or choose a file.")
        config = service.parse_yaml(text)
        with runtime(request).db.session() as session:  # rolls back on any error
            result = service.apply(
                session, settings=runtime(request).settings, config=config, prune=bool(prune)
            )
    except LLMDeckError as exc:
        errors = {"yaml": {"text": f"Nothing was changed. {exc.message}"}}
        return render_page(request, viewer, forms={"yaml": form}, errors=errors)
    return done(request, viewer, {"applied": result.model_dump()})
