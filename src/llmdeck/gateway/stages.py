"""The built-in pipeline stages at both ends of the chain: record and resolve."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

from llmdeck.catalog import service as catalog
from llmdeck.core.errors import LLMDeckError, UpstreamError
from llmdeck.gateway.directory import Directory
from llmdeck.gateway.limits import estimate_tokens
from llmdeck.gateway.pipeline import Call, Next, Outcome, close_stream
from llmdeck.providers.base import ChatChunk, ChatResult, EmbeddingResult, merge_tool_calls
from llmdeck.tracing.writer import SpanRecord, TraceWriter

# The finish reason of a stream whose reader stopped before the model's end.
CLIENT_CLOSED = "client_closed"


class Record:
    """Outermost stage: every call, answered or failed, becomes a span (made and written by
    the trace writer's thread, off the request path)."""

    def __init__(self, writer: TraceWriter):
        self.writer = writer

    async def __call__(self, call: Call, next: Next) -> Outcome:
        try:
            outcome = await next(call)
        except BaseException as exc:
            self._submit(call, error=exc)
            raise
        if isinstance(outcome, ChatResult):
            self._submit(call, result=outcome)
            return outcome
        if isinstance(outcome, EmbeddingResult):
            self._submit(call, embedding=outcome)
            return outcome
        return self._watch(call, outcome)

    async def _watch(
        self, call: Call, stream: AsyncIterator[ChatChunk]
    ) -> AsyncIterator[ChatChunk]:
        """Pass the stream through, noting time to first token, and record when it ends.

        A reader that stops before the model's end (a client that closes the stream or goes
        away: the stream is closed, or the task reading it cancelled) is no failure: the
        span is ok, with what was generated, finish reason `client_closed` and
        `stopped_by_client`, and the tokens spent so far (estimated when the upstream's
        count never came, which is then said too).
        """
        parts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        last = ChatChunk()
        ttft: float | None = None
        error: BaseException | None = None
        stopped = False
        try:
            async for chunk in stream:
                if ttft is None and (chunk.delta or chunk.tool_calls):
                    ttft = (time.perf_counter() - call.started) * 1000
                parts.append(chunk.delta)
                if chunk.tool_calls:
                    merge_tool_calls(tool_calls, chunk.tool_calls)
                last = chunk
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            # Closed at a yield, or cancelled while waiting for the model: the reader left.
            # After the model's last chunk the answer was whole: an ordinary end.
            stopped = last.finish_reason is None
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            input_tokens, output_tokens = last.input_tokens or 0, last.output_tokens or 0
            if stopped:
                call.attributes["stopped_by_client"] = True
                if not (input_tokens or output_tokens):  # the upstream's count never came
                    input_tokens, output_tokens = _estimate_usage(call, parts)
                    call.attributes["tokens_estimated"] = True
            elif error is None and last.finish_reason is None:
                error = UpstreamError("The model's stream ended without a finish reason.")
            result = ChatResult(
                content="".join(parts),
                finish_reason=CLIENT_CLOSED if stopped else (last.finish_reason or "error"),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                tool_calls=tool_calls or None,
            )
            self._submit(call, result=result, ttft_ms=ttft, error=error)
            await close_stream(stream)

    def _submit(
        self,
        call: Call,
        *,
        result: ChatResult | None = None,
        embedding: EmbeddingResult | None = None,
        ttft_ms: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        # Only the latency must be taken now; the span is made by the writer's thread.
        latency = (time.perf_counter() - call.started) * 1000
        self.writer.submit(partial(_span, call, result, embedding, ttft_ms, error, latency))


def _span(
    call: Call,
    result: ChatResult | None,
    embedding: EmbeddingResult | None,
    ttft_ms: float | None,
    error: BaseException | None,
    latency: float,
) -> SpanRecord:
    """The span of a finished call (the call is no longer changed by then)."""
    input_tokens = output_tokens = None
    if result is not None:
        input_tokens, output_tokens = result.input_tokens, result.output_tokens
    elif embedding is not None:
        input_tokens, output_tokens = embedding.input_tokens, 0
    cost = None
    if str(call.attributes.get("cache", "")).endswith("hit"):
        cost = 0.0  # answered from the cache: no upstream was paid
    elif call.model is not None and input_tokens is not None:
        cost = catalog.cost(call.model, input_tokens, output_tokens or 0)
    attributes: dict[str, Any] = {"source": call.source, **call.attributes}
    if result is not None:
        attributes["finish_reason"] = result.finish_reason
        if result.tool_calls:
            attributes["tool_calls"] = result.tool_calls
    if embedding is not None:
        attributes["embedding.count"] = len(embedding.vectors)
        attributes["embedding.dimensions"] = len(embedding.vectors[0]) if embedding.vectors else 0
    if call.chat is not None:
        attributes["request"] = {
            **call.chat.extra,  # tools, response_format, ...: what the answer depended on
            **{
                k: v
                for k in ("temperature", "top_p", "max_tokens", "stop", "seed")
                if (v := getattr(call.chat, k)) is not None
            },
        }
        attributes["stream"] = call.stream
    return SpanRecord(
        project_id=call.principal.project_id,
        trace_id=call.trace_id,
        span_id=call.span_id,
        parent_span_id=call.parent_span_id,
        api_key_id=call.principal.api_key_id,
        name=f"{call.kind} {call.alias}",
        kind="llm" if call.kind == "chat" else "embedding",
        model=call.alias,
        provider=call.model.provider if call.model else None,
        input=call.chat.messages if call.chat is not None else call.inputs,
        output=result.content if result is not None else None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost,
        latency_ms=latency,
        ttft_ms=ttft_ms if call.stream else (latency if result is not None else None),
        status="error" if error is not None else "ok",
        error=_describe(error) if error is not None else None,
        attributes=attributes,
        started_at=datetime.fromtimestamp(call.started_at, UTC),
        ended_at=datetime.fromtimestamp(call.started_at + latency / 1000, UTC),
    )


class Resolve:
    """Find what the alias names (a route or a catalog model) and check this project may use it."""

    def __init__(self, directory: Directory):
        self.directory = directory

    async def __call__(self, call: Call, next: Next) -> Outcome:
        target = await self.directory.target(call.alias, call.principal, call.kind)
        call.target = target
        call.model = target.model
        return await next(call)


def _estimate_usage(call: Call, parts: list[str]) -> tuple[int, int]:
    """The tokens of a stream stopped before the upstream said how many it used.

    The prompt is estimated as the limits stage reserves it (about 4 characters a token);
    the output at 4 characters a token, and at least one a piece streamed (upstreams and
    the bundled model stream a token or more per piece).
    """
    prompt = estimate_tokens(call, 0)[0]
    pieces = sum(1 for part in parts if part)
    characters = sum(len(part) for part in parts)
    return prompt, max(pieces, -(-characters // 4))


def _describe(error: BaseException) -> str:
    if isinstance(error, LLMDeckError):
        return f"{error.error_type}: {error.message}"
    if isinstance(error, asyncio.CancelledError):
        # Its message can be a task's repr, which says nothing to whoever reads the trace.
        return "cancelled: the call was stopped before it was answered."
    return f"{type(error).__name__}: {error}"
