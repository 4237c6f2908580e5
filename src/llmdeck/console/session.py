"""Console sessions: a small JSON payload in an HMAC-signed cookie, and its CSRF token.

Nothing is stored server-side, so any replica can read a session signed with the shared
platform secret (see `core.secrets.derived_key`). Signing out voids the user's sessions
issued until then (`User.sessions_valid_from`), so a copied cookie does not outlive it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "llmdeck_session"
MAX_AGE = 7 * 24 * 3600
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass
class SessionData:
    """What a browser's cookie says: who signed in, which project is open, the CSRF token."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user_id: str | None = None
    project_id: str | None = None
    issued_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        # The time whole: a session must tell apart from a sign-out in the same second.
        return {"c": self.csrf, "u": self.user_id, "p": self.project_id, "t": self.issued_at}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SessionData:
        return cls(csrf=raw["c"], user_id=raw.get("u"), project_id=raw.get("p"), issued_at=raw["t"])


class SessionSigner:
    """Turns sessions into tamper-proof cookie values and back."""

    def __init__(self, key: bytes, max_age: int = MAX_AGE):
        self.key = key
        self.max_age = max_age

    def _mac(self, body: bytes) -> str:
        digest = hmac.new(self.key, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dumps(self, data: SessionData) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data.to_dict()).encode()).decode().rstrip("=")
        return f"{body}.{self._mac(body.encode())}"

    def loads(self, value: str | None) -> SessionData | None:
        """The session in `value`, or None if it is missing, forged, malformed or expired."""
        if not value or "." not in value:
            return None
        body, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            data = SessionData.from_dict(raw)
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() - data.issued_at > self.max_age:
            return None
        return data


def write_cookie(response: Response, request: Request, signer: SessionSigner, data: SessionData):
    response.set_cookie(
        COOKIE,
        signer.dumps(data),
        max_age=signer.max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


def csrf_ok(expected: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(expected.encode(), sent.encode())
