"""The shell's own pages: sign-in, sign-out, the project switcher and the home redirect."""

from __future__ import annotations

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse

from llmdeck.console.auth import Viewer, check_csrf, csrf_protected, read_session, signed_in
from llmdeck.console.session import SessionData, clear_cookie, write_cookie
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import AuthenticationFailed, NotFound
from llmdeck.identity import service as identity
from llmdeck.identity.models import User

pages = PageSet("console", __file__)


def _local(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this site (never another host), else `default`."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return default


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@pages.router.get("/")
def home(request: Request, viewer: Viewer = Depends(signed_in)):
    """The first page the viewer's role opens."""
    items = [i for _, group in console_of(request).nav_for(viewer.role) for i in group]
    preferred = sorted(items, key=lambda i: i.order)
    return _redirect(preferred[0].path if preferred else "/requests")


@pages.router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None):
    data = read_session(request)
    if data is not None and data.user_id is not None:
        return _redirect(_local(next))
    data = data or SessionData()
    request.state.csrf = data.csrf
    response = console_of(request).render(request, "sign_in.html", {"next": _local(next, "")})
    write_cookie(response, request, console_of(request).signer, data)
    return response


@pages.router.post("/sign-in")
async def sign_in(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    next: str = Form(""),
):
    data = read_session(request)
    if data is None:
        # No cookie yet (it expired, or cookies are off): start over with a fresh form.
        return _redirect("/sign-in")
    await check_csrf(request, data.csrf)
    try:
        user, projects = await _authenticate(request, email, password)
    except AuthenticationFailed as exc:
        request.state.csrf = data.csrf
        context = {"error": exc.message, "email": email, "next": _local(next, "")}
        # 200, like every console form shown again with its problems: browsers log a 4xx
        # page as an error, and this is an ordinary step of signing in.
        return console_of(request).render(request, "sign_in.html", context)
    # A new session (and CSRF token) at sign-in, so a token seen before cannot be reused.
    session = SessionData(user_id=user, project_id=projects[0] if projects else None)
    response = _redirect(_local(next))
    write_cookie(response, request, console_of(request).signer, session)
    return response


async def _authenticate(request: Request, email: str, password: str) -> tuple[str, list[str]]:
    from starlette.concurrency import run_in_threadpool

    def check() -> tuple[str, list[str]]:
        with request.app.state.runtime.db.session() as session:
            user = identity.authenticate_password(session, email=email, password=password)
            return user.id, [p.id for p, _ in identity.projects_of(session, user=user)]

    # Password hashing is deliberately slow: keep it off the event loop.
    return await run_in_threadpool(check)


@pages.router.post("/sign-out", dependencies=[Depends(csrf_protected)])
def sign_out(request: Request):
    """End the session: the cookie goes, and the server refuses it (and any other session of
    this user issued until now) should a copy of it come back."""
    data = read_session(request)
    if data is not None and data.user_id is not None:
        with request.app.state.runtime.db.session() as session:
            user = session.get(User, data.user_id)
            if user is not None:
                identity.end_sessions(session, user=user)
    response = _redirect("/sign-in")
    clear_cookie(response, request)
    return response


@pages.router.post("/projects/switch", dependencies=[Depends(csrf_protected)])
def switch_project(
    request: Request,
    project: str = Form(...),
    back_to: str = Form("/", alias="next"),
    viewer: Viewer = Depends(signed_in),
):
    choice = next((c for c in viewer.projects if c.name == project), None)
    if choice is None:
        raise NotFound(f"You have no access to a project named {project!r}.", param="project")
    session = SessionData(csrf=viewer.session.csrf, user_id=viewer.user_id, project_id=choice.id)
    # Pages of one project (a trace, say) mean nothing in another: land on the section's list.
    section = "/" + _local(back_to).strip("/").split("/")[0]
    response = _redirect(section)
    write_cookie(response, request, console_of(request).signer, session)
    return response
