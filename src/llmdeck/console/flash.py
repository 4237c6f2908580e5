"""One-time messages for the page a form redirects to (POST, redirect, GET).

A flash may hold a secret to show exactly once, such as a new API key, and sessions are kept
in the browser (nothing server-side), so it travels encrypted in its own short-lived cookie,
bound to the session that made it. The page that shows it deletes it: a refresh or the back
button shows nothing again and posts nothing again.
"""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from starlette.requests import Request
from starlette.responses import Response

from llmdeck.console.session import SessionData
from llmdeck.core import secrets

COOKIE = "llmdeck_flash"
MAX_AGE = 300  # long enough for a slow redirect, short enough not to linger unread


def _fernet(request: Request) -> Fernet:
    key = secrets.derived_key(request.app.state.runtime.settings, "console-flash")
    return Fernet(base64.urlsafe_b64encode(key))


def put(response: Response, request: Request, session: SessionData, path: str, value: Any):
    """Leave `value` for the next page under `path` that this session opens."""
    body = json.dumps({"s": session.csrf, "v": value}).encode()
    response.set_cookie(
        COOKIE,
        _fernet(request).encrypt(body).decode(),
        max_age=MAX_AGE,
        path=path,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def read(request: Request, session: SessionData) -> Any:
    """The value left for this session, or None; show it, then `clear` it."""
    raw = request.cookies.get(COOKIE)
    if raw is None:
        return None
    try:
        data = json.loads(_fernet(request).decrypt(raw.encode(), ttl=MAX_AGE))
    except (InvalidToken, ValueError):
        return None
    # Another session in this browser (signed out and in as someone else) gets nothing.
    return data["v"] if hmac.compare_digest(data["s"], session.csrf) else None


def clear(response: Response, request: Request, path: str) -> None:
    """Delete the flash, so that it shows only once."""
    if COOKIE in request.cookies:
        response.delete_cookie(
            COOKIE, path=path, httponly=True, samesite="lax", secure=request.url.scheme == "https"
        )
