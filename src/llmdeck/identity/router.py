"""REST API of the identity domain: /api/projects, /api/users, /api/members, /api/keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy.orm import Session

from llmdeck.core.errors import NotFound, PermissionDenied
from llmdeck.identity import service
from llmdeck.identity.deps import get_principal, get_session, requires
from llmdeck.identity.models import Project
from llmdeck.identity.roles import check_role
from llmdeck.identity.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    Principal,
    ProjectCreate,
    ProjectPublic,
    UserCreate,
    UserPublic,
)

router = APIRouter(prefix="/api", tags=["identity"])
admin = requires("admin", "manage this project's members and keys")


class Page(BaseModel):
    next_cursor: str | None = None


class ProjectPage(Page):
    data: list[ProjectPublic]


class ApiKeyPage(Page):
    data: list[ApiKeyPublic]


class MemberSet(BaseModel):
    email: str
    role: str


class MemberPublic(BaseModel):
    email: str
    project: str
    role: str


class Me(BaseModel):
    project: str
    role: str
    api_key_id: str | None
    all_projects: bool


def _platform_admin(principal: Principal) -> None:
    if not principal.all_projects:
        raise PermissionDenied(
            "Only the master key can do this; project keys act within their own project."
        )


@router.get("/me", operation_id="get_me", response_model=Me)
def get_me(principal: Principal = Depends(get_principal)):
    """Who this key is: its project and role."""
    return Me(
        project=principal.project_name,
        role=principal.role,
        api_key_id=principal.api_key_id,
        all_projects=principal.all_projects,
    )


@router.get("/projects", operation_id="list_projects", response_model=ProjectPage)
def list_projects(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    """The projects this key can act in."""
    if principal.all_projects:
        projects = service.list_projects(session)
    else:
        projects = [session.get(Project, principal.project_id)]
    return {"data": projects, "next_cursor": None}


@router.post(
    "/projects", operation_id="create_project", response_model=ProjectPublic, status_code=201
)
def create_project(
    body: ProjectCreate,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """Create a project (master key only)."""
    _platform_admin(principal)
    return service.create_project(session, data=body)


@router.post("/users", operation_id="create_user", response_model=UserPublic, status_code=201)
def create_user(
    body: UserCreate,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """Create a user who signs in to the console (master key only)."""
    _platform_admin(principal)
    return service.create_user(session, data=body)


@router.put("/members", operation_id="set_member", response_model=MemberPublic)
def set_member(
    body: MemberSet, principal: Principal = Depends(admin), session: Session = Depends(get_session)
):
    """Give a user a role in this project (or change it)."""
    check_role(body.role)
    user = service.get_user_by_email(session, email=body.email)
    if user is None:
        raise NotFound(f"No user with email {body.email!r}.", param="email")
    project = session.get(Project, principal.project_id)
    service.add_member(session, user=user, project=project, role=body.role)
    return MemberPublic(email=user.email, project=project.name, role=body.role)


@router.get("/members", operation_id="list_members", response_model=list[MemberPublic])
def list_members(principal: Principal = Depends(admin), session: Session = Depends(get_session)):
    """This project's members and their roles."""
    project = session.get(Project, principal.project_id)
    return [
        MemberPublic(email=user.email, project=project.name, role=role)
        for user, role in service.list_members(session, project=project)
    ]


@router.delete("/members/{email}", operation_id="remove_member", status_code=204)
def remove_member(
    email: str, principal: Principal = Depends(admin), session: Session = Depends(get_session)
):
    """Take a user out of this project (their account stays; the last admin cannot go)."""
    user = service.get_user_by_email(session, email=email)
    if user is None:
        raise NotFound(f"No user with email {email!r}.", param="email")
    service.remove_member(session, user=user, project=session.get(Project, principal.project_id))


@router.get("/keys", operation_id="list_api_keys", response_model=ApiKeyPage)
def list_api_keys(principal: Principal = Depends(admin), session: Session = Depends(get_session)):
    """This project's API keys (prefixes only; secrets are never stored)."""
    project = session.get(Project, principal.project_id)
    return {"data": service.list_keys(session, project=project), "next_cursor": None}


@router.post("/keys", operation_id="create_api_key", response_model=ApiKeyCreated, status_code=201)
def create_api_key(
    body: ApiKeyCreate,
    principal: Principal = Depends(admin),
    session: Session = Depends(get_session),
):
    """Create a key for this project; the response is the only time the secret is shown."""
    project = session.get(Project, principal.project_id)
    key, secret = service.create_key(session, project=project, data=body)
    return ApiKeyCreated.model_validate(
        {**ApiKeyPublic.model_validate(key).model_dump(), "key": secret}
    )


@router.delete("/keys/{key_id}", operation_id="revoke_api_key", response_model=ApiKeyPublic)
def revoke_api_key(
    key_id: str, principal: Principal = Depends(admin), session: Session = Depends(get_session)
):
    """Revoke a key by id or prefix; it stops working at once."""
    project = session.get(Project, principal.project_id)
    key = service.get_key_or_raise(session, key_id=key_id, project=project)
    return service.revoke_key(session, key=key)
