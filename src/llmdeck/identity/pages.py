"""Console pages of identity: the project's API keys."""

from __future__ import annotations

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from llmdeck.console import flash
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.identity import service
from llmdeck.identity.models import Project
from llmdeck.identity.roles import ROLES
from llmdeck.identity.schemas import ApiKeyCreate, ApiKeyPublic

pages = PageSet("identity", __file__)
pages.nav("API keys", "/keys", section="Settings", min_role="admin", order=90, icon="key")

MANAGE = "manage this project's API keys"


def _keys(request: Request, viewer: Viewer) -> list[ApiKeyPublic]:
    with request.app.state.runtime.db.session() as session:
        project = session.get(Project, viewer.project.id)
        return [ApiKeyPublic.model_validate(k) for k in service.list_keys(session, project=project)]


def _render(request: Request, viewer: Viewer, *, created=None, error=None, name=""):
    context = {
        "keys": _keys(request, viewer),
        "roles": ROLES,
        "created": created,
        "error": error,
        "name": name,
    }
    return console_of(request).render(request, "identity/keys.html", context)


@pages.router.get("/keys")
def keys_page(request: Request, viewer: Viewer = Depends(signed_in)):
    viewer.require("admin", MANAGE)
    created = flash.read(request, viewer.session)
    response = _render(request, viewer, created=created)
    flash.clear(response, request, "/keys")
    if created:
        # The page holds a secret: keep it out of caches and the back-forward cache.
        response.headers["Cache-Control"] = "no-store"
    return response


@pages.router.post("/keys", dependencies=[Depends(csrf_protected)])
def create_key(
    request: Request,
    name: str = Form(""),
    role: str = Form("builder"),
    viewer: Viewer = Depends(signed_in),
):
    """Create a key, then redirect to the list, which shows its secret this once."""
    viewer.require("admin", MANAGE)
    try:
        data = ApiKeyCreate(name=name.strip(), role=role)
        with request.app.state.runtime.db.session() as session:
            project = session.get(Project, viewer.project.id)
            key, secret = service.create_key(session, project=project, data=data)
            created = {"name": key.name, "role": key.role, "prefix": key.prefix, "secret": secret}
    except ValidationError:
        return _render(request, viewer, error="Give the key a name.", name=name)
    except LLMDeckError as exc:
        return _render(request, viewer, error=exc.message, name=name)
    # Redirected, so that a refresh of the page shown next creates no second key.
    response = RedirectResponse("/keys", status_code=303)
    flash.put(response, request, viewer.session, "/keys", created)
    return response


@pages.router.post("/keys/{key_id}/revoke", dependencies=[Depends(csrf_protected)])
def revoke_key(request: Request, key_id: str, viewer: Viewer = Depends(signed_in)):
    viewer.require("admin", MANAGE)
    with request.app.state.runtime.db.session() as session:
        project = session.get(Project, viewer.project.id)
        key = service.get_key_or_raise(session, key_id=key_id, project=project)
        service.revoke_key(session, key=key)
        public = ApiKeyPublic.model_validate(key)
    if request.headers.get("hx-request"):
        return console_of(request).render(request, "identity/_key_row.html", {"key": public})
    return RedirectResponse("/keys", status_code=303)
