"""Console pages of identity: the project's members and API keys."""

from __future__ import annotations

import secrets

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from llmdeck.console import flash
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import LLMDeckError, NotFound
from llmdeck.identity import service
from llmdeck.identity.models import Project
from llmdeck.identity.roles import ROLES
from llmdeck.identity.schemas import ApiKeyCreate, ApiKeyPublic, UserCreate

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


# People: the project's members ------------------------------------------------------------

pages.nav("People", "/people", section="Settings", order=89, icon="users")
MANAGE_PEOPLE = "manage this project's members"
EMAIL_RULE = "Enter an email address, such as ada@example.com."


def _people(request: Request, viewer: Viewer, *, status=200, **context):
    with request.app.state.runtime.db.session() as session:
        project = session.get(Project, viewer.project.id)
        members = [
            {"id": u.id, "email": u.email, "name": u.name, "role": r, "superuser": u.is_superuser}
            for u, r in service.list_members(session, project=project)
        ]
    context = {
        "members": members,
        "roles": ROLES,
        "can_manage": viewer.can("admin"),
        "can_create_users": viewer.principal.all_projects,
        "form": {"email": "", "name": "", "role": "builder"},
        "errors": {},
        "row_errors": {},
        **context,
    }
    return console_of(request).render(request, "identity/people.html", context, status=status)


@pages.router.get("/people")
def people_page(request: Request, viewer: Viewer = Depends(signed_in)):
    done = flash.read(request, viewer.session)
    response = _people(request, viewer, done=done)
    flash.clear(response, request, "/people")
    if done and done.get("password"):
        # The page holds a password: keep it out of caches and the back-forward cache.
        response.headers["Cache-Control"] = "no-store"
    return response


def _done(request: Request, viewer: Viewer, value: dict) -> RedirectResponse:
    # Redirected, so that a refresh of the page shown next posts nothing again.
    response = RedirectResponse("/people", status_code=303)
    flash.put(response, request, viewer.session, "/people", value)
    return response


@pages.router.post("/people", dependencies=[Depends(csrf_protected)])
def add_person(
    request: Request,
    email: str = Form(""),
    name: str = Form(""),
    role: str = Form("builder"),
    viewer: Viewer = Depends(signed_in),
):
    """Give a person a role here; a new email gets an account (superusers only, as in the
    API), whose generated password this page shows once."""
    viewer.require("admin", MANAGE_PEOPLE)
    form = {"email": email.strip(), "name": name.strip(), "role": role}
    password = None
    try:
        with request.app.state.runtime.db.session() as session:
            project = session.get(Project, viewer.project.id)
            user = service.get_user_by_email(session, email=form["email"])
            if user is None and not viewer.principal.all_projects:
                raise NotFound(
                    "No one has an account with this email yet. Ask a platform administrator "
                    f"to create it (llmdeck users create EMAIL --project {project.name}).",
                    param="email",
                )
            if user is None:
                password = secrets.token_urlsafe(12)
                data = UserCreate(email=form["email"], name=form["name"], password=password)
                user = service.create_user(session, data=data)
            service.add_member(session, user=user, project=project, role=role)
            done = {"email": user.email, "role": role, "password": password}
    except ValidationError as exc:
        fields = {e["loc"][0] for e in exc.errors()}
        errors = {"email": EMAIL_RULE} if "email" in fields else {}
        if "name" in fields:
            errors["name"] = "Keep the name under 200 characters."
        return _people(request, viewer, form=form, errors=errors)
    except LLMDeckError as exc:
        errors = {exc.param if exc.param in ("email", "role") else "email": exc.message}
        return _people(request, viewer, form=form, errors=errors)
    return _done(request, viewer, done)


def _member_change(request: Request, viewer: Viewer, user_id: str, change) -> Response:
    viewer.require("admin", MANAGE_PEOPLE)
    try:
        with request.app.state.runtime.db.session() as session:
            project = session.get(Project, viewer.project.id)
            user = service.get_user(session, user_id=user_id)
            if user is None or service.role_of(session, user=user, project=project) is None:
                raise NotFound("This person is not a member of this project.", param="user_id")
            done = change(session, user, project)
    except LLMDeckError as exc:
        return _people(request, viewer, row_errors={user_id: exc.message})
    return _done(request, viewer, done)


@pages.router.post("/people/{user_id}/role", dependencies=[Depends(csrf_protected)])
def change_role(
    request: Request, user_id: str, role: str = Form(""), viewer: Viewer = Depends(signed_in)
):
    def change(session, user, project):
        service.add_member(session, user=user, project=project, role=role)
        return {"email": user.email, "role": role}

    return _member_change(request, viewer, user_id, change)


@pages.router.post("/people/{user_id}/remove", dependencies=[Depends(csrf_protected)])
def remove_person(request: Request, user_id: str, viewer: Viewer = Depends(signed_in)):
    def change(session, user, project):
        service.remove_member(session, user=user, project=project)
        return {"email": user.email, "removed": True}

    return _member_change(request, viewer, user_id, change)
