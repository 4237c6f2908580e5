"""The OpenAI-compatible surface: /v1/chat/completions, /v1/embeddings, /v1/models."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from llmdeck.catalog import service as catalog
from llmdeck.core.errors import LLMDeckError, NotFound
from llmdeck.gateway import config
from llmdeck.gateway.cache import CACHE_HEADER
from llmdeck.gateway.pipeline import Call
from llmdeck.gateway.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
)
from llmdeck.gateway.service import chat_call, embedding_call, join_trace
from llmdeck.identity.deps import get_principal, get_session, known_principal
from llmdeck.identity.roles import require
from llmdeck.identity.schemas import Principal
from llmdeck.providers.base import ChatChunk
from llmdeck.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["gateway"])
TRACE_HEADER = "x-llmdeck-trace-id"
DEPLOYMENT_HEADER = "x-llmdeck-deployment"
ATTEMPTS_HEADER = "x-llmdeck-attempts"
FALLBACK_HEADER = "x-llmdeck-fallback"


async def authenticate(
    runtime: Runtime, authorization: str | None, project: str | None
) -> Principal:
    """The caller behind a bearer key, who must be a builder or above. A key seen in the
    last moment is not looked up again: the hot path stays off the database."""
    principal = await runtime.keys.principal(authorization, project)
    require(principal.role, "builder", "call models")
    return principal


async def call_models(principal: Principal = Depends(known_principal)) -> Principal:
    require(principal.role, "builder", "call models")
    return principal


@router.post(
    "/chat/completions",
    operation_id="create_chat_completion",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    principal: Principal = Depends(call_models),
    x_llmdeck_cache: str | None = Header(
        default=None, description="`off` answers without the response cache."
    ),
) -> Response:
    """Create a chat completion; with `stream` true, as server-sent events."""
    return await chat_completion(
        request.app.state.runtime,
        principal,
        body,
        cache=x_llmdeck_cache,
        traceparent=request.headers.get("traceparent"),
    )


@router.post("/embeddings", operation_id="create_embeddings", response_model=EmbeddingResponse)
async def create_embeddings(
    body: EmbeddingRequest,
    request: Request,
    principal: Principal = Depends(call_models),
) -> Response:
    """Embed a string or a list of strings."""
    return await embeddings(
        request.app.state.runtime,
        principal,
        body,
        traceparent=request.headers.get("traceparent"),
    )


async def chat_completion(
    runtime: Runtime,
    principal: Principal,
    body: ChatCompletionRequest,
    *,
    cache: str | None,
    traceparent: str | None,
) -> Response:
    """The answer to a chat completion request (the route and gateway/fastpath.py share it)."""
    call = chat_call(principal, body, source="gateway", cache=cache)
    join_trace(call, traceparent)
    headers = {TRACE_HEADER: call.trace_id}
    created = int(call.started_at)
    completion_id = f"chatcmpl-{call.span_id}"
    if not body.stream:
        try:
            result = await runtime.gateway.chat(call)
        except LLMDeckError as exc:
            return error_response(exc, call)
        _note_answer(call, headers)
        message: dict[str, Any] = {"role": "assistant", "content": result.content}
        if result.tool_calls:
            message["tool_calls"] = result.tool_calls
            message["content"] = result.content or None  # as OpenAI answers a tool call
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": result.logprobs,
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": _usage(result.input_tokens, result.output_tokens),
        }
        return _JSONAnswer(payload, headers)

    # Pull the first chunk before answering, so that an error the model raises before
    # producing anything (context window, upstream down) gets its real HTTP status.
    try:
        stream = await runtime.gateway.stream_chat(call)
        first = await anext(stream, None)
    except LLMDeckError as exc:
        return error_response(exc, call)
    _note_answer(call, headers)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    events = _sse(stream, first, completion_id, created, body.model, include_usage)
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def embeddings(
    runtime: Runtime, principal: Principal, body: EmbeddingRequest, *, traceparent: str | None
) -> Response:
    """The answer to an embeddings request (the route and gateway/fastpath.py share it)."""
    call = embedding_call(
        principal,
        body.model,
        body.input,
        source="gateway",
        dimensions=body.dimensions,
        truncate=body.truncate,
    )
    join_trace(call, traceparent)
    try:
        result = await runtime.gateway.embed(call)
    except LLMDeckError as exc:
        return error_response(exc, call)
    encode = _base64_floats if body.encoding_format == "base64" else list
    payload = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(vector)}
            for i, vector in enumerate(result.vectors)
        ],
        "model": body.model,
        "usage": {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens},
    }
    return _JSONAnswer(payload, {TRACE_HEADER: call.trace_id})


async def _sse(
    stream: AsyncIterator[ChatChunk],
    first: ChatChunk | None,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    def event(delta: dict, finish_reason: str | None = None, logprobs: Any = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        return _event(chunk)

    last = ChatChunk()
    try:
        # Inside the try: a reader gone at the first event still closes the upstream stream.
        yield event({"role": "assistant", "content": ""})
        chunk = first
        while chunk is not None:
            if chunk.tool_calls or chunk.logprobs:
                delta: dict[str, Any] = {"content": chunk.delta} if chunk.delta else {}
                if chunk.tool_calls:
                    delta["tool_calls"] = chunk.tool_calls
                yield event(delta, logprobs=chunk.logprobs)
            elif chunk.delta:
                yield event({"content": chunk.delta})
            if chunk.finish_reason:
                last = chunk
            chunk = await anext(stream, None)
    except LLMDeckError as exc:
        # Headers are gone: the only honest ending is an explicit error event, no [DONE].
        yield _event(exc.to_dict())
        return
    finally:
        await stream.aclose()
    yield event({}, last.finish_reason or "stop")
    if include_usage:
        usage = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(last.input_tokens or 0, last.output_tokens or 0),
        }
        yield _event(usage)
    yield b"data: [DONE]\n\n"


@router.get("/models", operation_id="list_gateway_models", response_model=ModelList)
def list_gateway_models(
    principal: Principal = Depends(get_principal), session: Session = Depends(get_session)
):
    """The models this key's project may use: catalog models and gateway routes."""
    return {"object": "list", "data": _model_cards(session, principal.project_id)}


@router.get("/models/{model:path}", operation_id="get_gateway_model", response_model=ModelCard)
def get_gateway_model(
    model: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """One model this key's project may use."""
    for card in _model_cards(session, principal.project_id):
        if card["id"] == model:
            return card
    raise NotFound(
        f"The model {model!r} does not exist or is not available to this project. "
        "GET /v1/models lists the ones you may use.",
        param="model",
        code="model_not_found",
    )


def _model_cards(session: Session, project_id: str) -> list[dict[str, Any]]:
    # A route takes precedence over a catalog model of the same alias, as in calls (where
    # another project's route hides the model too).
    cards = {
        m.alias: {
            "id": m.alias,
            "object": "model",
            "created": int(m.created_at.timestamp()),
            "owned_by": m.provider,
        }
        for m in catalog.list_models(session, project_id=project_id)
    }
    for route in config.list_routes(session):
        if route.project_id not in (None, project_id):
            cards.pop(route.alias, None)
            continue
        cards[route.alias] = {
            "id": route.alias,
            "object": "model",
            "created": int(route.created_at.timestamp()),
            "owned_by": "llmdeck",
        }
    return sorted(cards.values(), key=lambda card: card["id"])


def _base64_floats(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def error_response(error: LLMDeckError, call: Call | None = None) -> Response:
    """The OpenAI-shaped error answer; once the request became a call, it names the call's
    trace, where every attempt is recorded."""
    headers = error.headers()
    if call is not None:
        headers = {**headers, TRACE_HEADER: call.trace_id}
        if attempts := call.attributes.get("attempts"):
            headers[ATTEMPTS_HEADER] = str(len(attempts))
    return JSONResponse(error.to_dict(), status_code=error.status_code, headers=headers)


class _JSONAnswer(Response):
    """A 200 JSON answer with its headers made as bytes directly: Response's general header
    building was about 6% of the gateway's own work per call. orjson writes the JSON in a
    tenth of json's time (JSONResponse uses json)."""

    media_type = "application/json"

    def __init__(self, payload: dict, headers: dict[str, str]):
        self.status_code = 200
        self.background = None
        self.body = orjson.dumps(payload)
        self.raw_headers = [
            (b"content-length", b"%d" % len(self.body)),
            (b"content-type", b"application/json"),
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()),
        ]


def _event(data: dict) -> bytes:
    """One server-sent event."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _note_answer(call: Call, headers: dict[str, str]) -> None:
    """Tell the client what answered: the cache (when the project has one), or which
    deployment, after how many attempts and through which fallback alias (LiteLLM and
    Portkey say the same in headers: debugging a route should not need the trace)."""
    attributes = call.attributes
    if "cache" in attributes:
        headers[CACHE_HEADER] = attributes["cache"]
    if "deployment" in attributes:
        headers[DEPLOYMENT_HEADER] = attributes["deployment"]
        headers[ATTEMPTS_HEADER] = str(len(attributes["attempts"]))
        if "fallback" in attributes:
            headers[FALLBACK_HEADER] = attributes["fallback"]


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
