"""The gateway's hot endpoints, served in front of the web framework.

`POST /v1/chat/completions` and `/v1/embeddings` are on the path of every LLM call. Through
FastAPI each request paid for eight middleware layers, matching against every API and
console route, and dependency solving: about 40% of the gateway's CPU per request (py-spy
with --gil under `bench/gateway` load). The app hands these two paths here instead, and
`llmdeck up` reads them straight off the socket (gateway/protocol.py); they run the same
code as the routes in gateway/router.py (authentication, validation, the pipeline, the
response), with the same errors. The routes remain for the OpenAPI document and for any
app that mounts the router on its own.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic
from starlette.responses import Response

from llmdeck.core.errors import InvalidRequest, LLMDeckError, invalid_fields
from llmdeck.gateway.router import authenticate, chat_completion, embeddings, error_response
from llmdeck.gateway.schemas import ChatCompletionRequest, EmbeddingRequest
from llmdeck.runtime import Runtime

log = logging.getLogger(__name__)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MAX_BODY_BYTES = 16 * 1024 * 1024
# The request headers the gateway reads, by their lower-case names; the rest are never
# decoded.
WANTED = {
    name.encode(): name
    for name in (
        "authorization",
        "x-llmdeck-project",
        "x-llmdeck-cache",
        "traceparent",
        "content-length",
    )
}


def serves(scope: dict[str, Any]) -> bool:
    return scope["method"] == "POST" and scope["path"] in (CHAT, EMBEDDINGS)


async def serve(runtime: Runtime, scope: dict[str, Any], receive, send) -> None:
    """Answer a hot request given as ASGI (gateway/protocol.py reads it off the socket)."""
    # ASGI servers give header names in lower case.
    headers = {
        WANTED[name]: value.decode("latin-1") for name, value in scope["headers"] if name in WANTED
    }
    try:
        body = await _body(receive, headers.get("content-length"))
    except LLMDeckError as exc:
        response = error_response(exc)
    else:
        response = await respond(runtime, scope["path"], headers, body)
    await response(scope, receive, send)


async def respond(runtime: Runtime, path: str, headers: dict[str, str], body: bytes) -> Response:
    """The answer to a request for CHAT or EMBEDDINGS, errors included.

    `headers` holds the wanted headers by their lower-case names.
    """
    try:
        return await _answer(runtime, path, headers, body)
    except LLMDeckError as exc:
        return error_response(exc)
    except Exception:
        log.exception("the gateway failed on %s", path)
        return error_response(
            LLMDeckError("The gateway failed on this request; its log has the details.")
        )


async def _answer(runtime: Runtime, path: str, headers: dict[str, str], body: bytes) -> Response:
    principal = await authenticate(
        runtime, headers.get("authorization"), headers.get("x-llmdeck-project")
    )
    traceparent = headers.get("traceparent")
    if path == CHAT:
        request = _parse(ChatCompletionRequest, body)
        return await chat_completion(
            runtime,
            principal,
            request,
            cache=headers.get("x-llmdeck-cache"),
            traceparent=traceparent,
        )
    return await embeddings(
        runtime, principal, _parse(EmbeddingRequest, body), traceparent=traceparent
    )


async def _body(receive, declared: str | None) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The client went away before sending the whole request.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse(model: type[pydantic.BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise invalid_fields(exc.errors(include_url=False)) from None


def _too_large() -> InvalidRequest:
    return InvalidRequest(
        f"The request body is larger than {MAX_BODY_BYTES // 2**20} MiB; send fewer or "
        "shorter inputs per request.",
        code="request_too_large",
    )
