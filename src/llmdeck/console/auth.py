"""Who is using the console: the signed-in user, the open project and their role there."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from llmdeck.console.session import COOKIE, CSRF_FIELD, CSRF_HEADER, SessionData, csrf_ok
from llmdeck.console.shell import console_of
from llmdeck.core.errors import PermissionDenied
from llmdeck.identity import service as identity
from llmdeck.identity.models import User
from llmdeck.identity.roles import at_least, require
from llmdeck.identity.schemas import Principal


class SignInRequired(Exception):
    """No valid session: the console sends the browser to the sign-in page."""


@dataclass(frozen=True)
class ProjectChoice:
    id: str
    name: str
    role: str


@dataclass(frozen=True)
class Viewer:
    """The signed-in user, in the project they have open."""

    user_id: str
    email: str
    name: str
    is_superuser: bool
    project: ProjectChoice
    projects: tuple[ProjectChoice, ...]
    session: SessionData

    @property
    def role(self) -> str:
        return self.project.role

    @property
    def display_name(self) -> str:
        return self.name or self.email

    @property
    def principal(self) -> Principal:
        """The identity the gateway and the services see for this user's calls."""
        return Principal(
            project_id=self.project.id,
            project_name=self.project.name,
            role=self.role,
            user_id=self.user_id,
            all_projects=self.is_superuser,
        )

    def can(self, role: str) -> bool:
        return at_least(self.role, role)

    def require(self, role: str, action: str) -> None:
        require(self.role, role, action)


def read_session(request: Request) -> SessionData | None:
    return console_of(request).signer.loads(request.cookies.get(COOKIE))


def signed_in(request: Request) -> Viewer:
    """The viewer behind the session cookie; sends the browser to sign in when there is none."""
    data = read_session(request)
    if data is None or data.user_id is None:
        raise SignInRequired()
    request.state.csrf = data.csrf
    with request.app.state.runtime.db.session() as session:
        user = session.get(User, data.user_id)
        if user is None or not identity.session_is_current(user, data.issued_at):
            raise SignInRequired()
        choices = tuple(
            ProjectChoice(p.id, p.name, role)
            for p, role in identity.projects_of(session, user=user)
        )
        viewer_fields = dict(
            user_id=user.id, email=user.email, name=user.name, is_superuser=user.is_superuser
        )
    if not choices:
        raise PermissionDenied(
            "You are not a member of any project yet. Ask an administrator to add you to one."
        )
    project = next((c for c in choices if c.id == data.project_id), choices[0])
    viewer = Viewer(**viewer_fields, project=project, projects=choices, session=data)
    request.state.viewer = viewer
    return viewer


async def check_csrf(request: Request, expected: str) -> None:
    """Refuse a state-changing request that lacks this session's CSRF token."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not csrf_ok(expected, sent):
        raise PermissionDenied(
            "This form has expired or did not come from the console. Reload the page and try "
            "again.",
            code="csrf_failed",
        )


async def csrf_protected(request: Request) -> None:
    """Dependency for POST routes of signed-in pages."""
    data = read_session(request)
    if data is None or data.user_id is None:
        raise SignInRequired()
    await check_csrf(request, data.csrf)
