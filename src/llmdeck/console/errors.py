"""Errors on console pages: an HTML page (or a redirect to sign in) instead of JSON."""

from __future__ import annotations

import contextlib
from urllib.parse import quote

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from llmdeck.console.auth import SignInRequired, signed_in
from llmdeck.console.shell import console_of, is_console_path

TITLES = {
    400: "That did not work",
    401: "Please sign in",
    403: "You cannot do that here",
    404: "Page not found",
    409: "That already exists",
}


def wants_html(request: Request) -> bool:
    """A browser page of the console, rather than an API client or a script's fetch."""
    accept = request.headers.get("accept", "")
    return (
        is_console_path(request.url.path)
        and "application/json" not in accept
        and "text/event-stream" not in accept
    )


async def error_page(request: Request, status: int, message: str) -> Response:
    if getattr(request.state, "viewer", None) is None:
        # Show the error inside the shell when the visitor is signed in.
        with contextlib.suppress(Exception):
            await run_in_threadpool(signed_in, request)
    context = {"title": TITLES.get(status, "Something went wrong"), "message": message}
    return console_of(request).render(request, "error.html", context, status=status)


async def sign_in_required(request: Request, _: SignInRequired) -> Response:
    if request.headers.get("hx-request"):
        # htmx follows HX-Redirect with a full page load.
        return Response(status_code=200, headers={"HX-Redirect": "/sign-in"})
    if not wants_html(request):
        error = {"message": "Sign in first.", "type": "authentication_error", "param": None}
        return JSONResponse({"error": {**error, "code": "sign_in_required"}}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/"
    return RedirectResponse(f"/sign-in?next={quote(target)}", status_code=303)
