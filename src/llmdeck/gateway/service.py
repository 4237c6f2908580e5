"""The gateway: the entry point every feature uses to call a model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from llmdeck.core.db import Database
from llmdeck.core.errors import InvalidRequest
from llmdeck.core.settings import Settings
from llmdeck.gateway.cache import Cache
from llmdeck.gateway.directory import Directory
from llmdeck.gateway.dispatch import Dispatch
from llmdeck.gateway.limits import Limits
from llmdeck.gateway.pipeline import Call, Pipeline, Stage
from llmdeck.gateway.routing import Balancer
from llmdeck.gateway.schemas import ChatCompletionRequest
from llmdeck.gateway.stages import Record, Resolve
from llmdeck.identity.schemas import Principal
from llmdeck.prompts.stage import MODEL_FIELD, VARIABLES_FIELD, RenderPrompt
from llmdeck.providers.base import ChatChunk, ChatRequest, ChatResult, EmbeddingResult
from llmdeck.tracing.context import parse_traceparent
from llmdeck.tracing.writer import TraceWriter

# Request-body fields that are llmdeck's own: the cache switch and a prompt's inputs.
OWN_FIELDS = ("cache", VARIABLES_FIELD, MODEL_FIELD)


class Gateway:
    """Runs calls through the pipeline; `extra_stages` go between limits and the cache."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        writer: TraceWriter,
        extra_stages: Sequence[Stage] = (),
    ):
        self.directory = Directory(db, settings)
        self.balancer = Balancer(
            failures=settings.gateway_breaker_failures, cooldown=settings.gateway_breaker_cooldown
        )
        self.limits = Limits(db, self.directory, settings)
        self.cache = Cache(db, self.directory, settings)
        self.pipeline = Pipeline(
            [
                Record(writer),
                RenderPrompt(db, settings.gateway_lookup_ttl),
                Resolve(self.directory),
                self.limits,
                *extra_stages,
                self.cache,
            ],
            terminal=Dispatch(settings, self.directory, self.balancer),
        )

    async def chat(self, call: Call) -> ChatResult:
        call.stream = False
        return await self.pipeline.run(call)

    async def stream_chat(self, call: Call) -> AsyncIterator[ChatChunk]:
        call.stream = True
        return await self.pipeline.run(call)

    async def embed(self, call: Call) -> EmbeddingResult:
        return await self.pipeline.run(call)

    async def drain(self) -> None:
        """Finish the bookkeeping still running off the response path."""
        await self.limits.drain()
        await self.cache.drain()


def _wants_cache(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() not in ("off", "false", "no", "0", "no-cache", "no-store")
    if isinstance(value, dict):  # {"no-cache": true}, as some clients send it
        return not (value.get("no-cache") or value.get("no_cache"))
    return bool(value)


def chat_call(
    principal: Principal,
    request: ChatCompletionRequest,
    *,
    source: str,
    cache: Any = None,
) -> Call:
    """A pipeline call from an OpenAI-format chat request.

    `cache` (or a `cache` field in the request body) set to false/"off" skips the cache.
    """
    if not request.messages and not request.model.startswith("prompt:"):
        raise InvalidRequest("messages must hold at least one message.", param="messages")
    stop = request.stop
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and len(stop) > 4:
        raise InvalidRequest("stop takes at most 4 sequences.", param="stop")
    # The body's other fields go upstream as they came (tools, response_format, ...),
    # but for llmdeck's own.
    extra = dict(request.model_extra or {})
    options = {name: extra.pop(name) for name in OWN_FIELDS if name in extra}
    if request.user is not None:
        extra["user"] = request.user
    return Call(
        principal=principal,
        kind="chat",
        alias=request.model,
        source=source,
        stream=request.stream,
        use_cache=_wants_cache(cache) and _wants_cache(options.pop("cache", None)),
        options=options,
        chat=ChatRequest(
            model=request.model,
            messages=request.messages,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_completion_tokens or request.max_tokens,
            stop=stop,
            seed=request.seed,
            extra=extra,
        ),
    )


def embedding_call(
    principal: Principal,
    alias: str,
    inputs: str | list[str],
    *,
    source: str,
    dimensions: int | None = None,
    truncate: bool = False,
) -> Call:
    """A pipeline call embedding `inputs`.

    An input longer than the model reads is refused; `truncate` embeds its start instead.
    """
    items = [inputs] if isinstance(inputs, str) else inputs
    if not items or any(not isinstance(t, str) or not t for t in items):
        raise InvalidRequest("input must be a non-empty string or list of them.", param="input")
    if len(items) > 2048:
        raise InvalidRequest("input takes at most 2048 items per request.", param="input")
    return Call(
        principal=principal,
        kind="embedding",
        alias=alias,
        inputs=items,
        source=source,
        dimensions=dimensions,
        options={"truncate": True} if truncate else {},
    )


def join_trace(call: Call, traceparent: str | None) -> Call:
    """Make the call's span a child of the caller's span named by a W3C `traceparent` header.

    Without a valid header the call keeps the new trace it was made with.
    """
    parent = parse_traceparent(traceparent)
    if parent is not None:
        call.trace_id, call.parent_span_id = parent
    return call
