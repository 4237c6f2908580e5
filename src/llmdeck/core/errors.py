"""The one exception tree of llmdeck; third-party errors are translated into it at the edges.

    LLMDeckError                      500  api_error
    ├── InvalidRequest                400  invalid_request_error   (.param names the field)
    │   └── ContextWindowExceeded     400  invalid_request_error   (code context_length_exceeded)
    ├── AuthenticationFailed          401  authentication_error
    ├── PermissionDenied              403  permission_error
    ├── NotFound                      404  not_found_error
    ├── Conflict                      409  conflict_error
    ├── RateLimited                   429  rate_limit_error        (.retry_after seconds)
    ├── MissingDependency             500  api_error               (names the pip install)
    └── UpstreamError                 502  upstream_error
        ├── UpstreamTimeout           504  timeout_error
        ├── UpstreamRejected          502  upstream_error          (401/403: never retried)
        └── CircuitOpen               503  upstream_error          (.retry_after: next probe)

Every error renders as the OpenAI error object, for the gateway and the REST API alike:
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


class LLMDeckError(Exception):
    status_code = 500
    error_type = "api_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """HTTP headers the error's response carries."""
        return {}


def sentence(text: object) -> str:
    """`text` ending in one full stop: messages quoted from exceptions often end in one."""
    text = str(text).rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


class InvalidRequest(LLMDeckError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextWindowExceeded(InvalidRequest):
    def __init__(self, message: str, *, param: str = "messages"):
        super().__init__(message, param=param, code="context_length_exceeded")


class AuthenticationFailed(LLMDeckError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDenied(LLMDeckError):
    status_code = 403
    error_type = "permission_error"


class NotFound(LLMDeckError):
    status_code = 404
    error_type = "not_found_error"


class Conflict(LLMDeckError):
    status_code = 409
    error_type = "conflict_error"


class RateLimited(LLMDeckError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class MissingDependency(LLMDeckError):
    """An optional dependency is absent; the message names the `pip install` that fixes it."""


class UpstreamError(LLMDeckError):
    status_code = 502
    error_type = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    error_type = "timeout_error"


class UpstreamRejected(UpstreamError):
    """The upstream refused llmdeck's credentials (401/403): retrying cannot help."""


class CircuitOpen(UpstreamError):
    """Every deployment behind a model is failing; calls fail fast until a probe succeeds."""

    status_code = 503

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


# Where FastAPI found a value; it comes first in a request validation error's `loc`.
_LOCATIONS = ("body", "query", "path", "header", "cookie")


def invalid_fields(errors: Sequence[Mapping[str, Any]]) -> InvalidRequest:
    """The first of pydantic's validation errors as an InvalidRequest that names the field.

    Takes FastAPI's errors (`loc` starts with where the value came from: `("body", "query")`
    is the body's field `query`) and pydantic's own (`loc` is the field path)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ())]
    kind = first.get("type")
    if kind == "json_invalid":
        # FastAPI puts the offset of the error after "body"; pydantic has line and column
        # in its own detail.
        detail = (first.get("ctx") or {}).get("error") or first.get("msg")
        where = f" (at character {loc[1]})" if loc[:1] == ["body"] and len(loc) > 1 else ""
        return InvalidRequest(
            "The request body is not valid JSON: " + sentence(f"{detail}{where}"),
            code="invalid_value",
        )
    # Only the leading location goes: a field may itself be named `query` or `path`.
    if loc[:1] == ["body"] or (len(loc) > 1 and loc[0] in _LOCATIONS):
        loc = loc[1:]
    param = ".".join(loc) or None
    if param is None and kind in ("model_attributes_type", "model_type", "dict_type"):
        return InvalidRequest("The request body must be a JSON object.", code="invalid_value")
    if kind == "missing" and param:
        message = f"Invalid request: {param} is required."
    else:
        message = f"Invalid request: {param + ': ' if param else ''}{sentence(first.get('msg'))}"
    return InvalidRequest(message, param=param, code="invalid_value")
