"""The built-in pipeline stages: record, resolve and invoke."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from llmdeck.catalog import service as catalog
from llmdeck.core.db import Database, utcnow
from llmdeck.core.errors import LLMDeckError
from llmdeck.core.settings import Settings
from llmdeck.gateway.pipeline import Call, Next, Outcome
from llmdeck.providers.base import ChatChunk, ChatResult, EmbeddingResult
from llmdeck.providers.service import get_provider
from llmdeck.tracing.writer import SpanRecord, TraceWriter


class Record:
    """Outermost stage: every call, answered or failed, becomes a span (written off-path)."""

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
        """Pass the stream through, noting time to first token, and record when it ends."""
        parts: list[str] = []
        last = ChatChunk()
        ttft: float | None = None
        error: BaseException | None = None
        try:
            async for chunk in stream:
                if ttft is None and chunk.delta:
                    ttft = (time.perf_counter() - call.started) * 1000
                parts.append(chunk.delta)
                last = chunk
                yield chunk
        except BaseException as exc:
            error = exc
            raise
        finally:
            if error is None and last.finish_reason is None:
                error = ConnectionAbortedError("The client closed the stream before its end.")
            result = ChatResult(
                content="".join(parts),
                finish_reason=last.finish_reason or "error",
                input_tokens=last.input_tokens or 0,
                output_tokens=last.output_tokens or 0,
            )
            self._submit(call, result=result, ttft_ms=ttft, error=error)

    def _submit(
        self,
        call: Call,
        *,
        result: ChatResult | None = None,
        embedding: EmbeddingResult | None = None,
        ttft_ms: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        latency = (time.perf_counter() - call.started) * 1000
        input_tokens = output_tokens = None
        if result is not None:
            input_tokens, output_tokens = result.input_tokens, result.output_tokens
        elif embedding is not None:
            input_tokens, output_tokens = embedding.input_tokens, 0
        cost = None
        if call.model is not None and input_tokens is not None:
            cost = catalog.cost(call.model, input_tokens, output_tokens or 0)
        attributes: dict[str, Any] = {"source": call.source, **call.attributes}
        if result is not None:
            attributes["finish_reason"] = result.finish_reason
        if embedding is not None:
            attributes["embedding.count"] = len(embedding.vectors)
            attributes["embedding.dimensions"] = (
                len(embedding.vectors[0]) if embedding.vectors else 0
            )
        if call.chat is not None:
            attributes["request"] = {
                k: v
                for k in ("temperature", "top_p", "max_tokens", "stop", "seed")
                if (v := getattr(call.chat, k)) is not None
            }
            attributes["stream"] = call.stream
        self.writer.submit(
            SpanRecord(
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
                started_at=call.started_at,
                ended_at=utcnow(),
            )
        )


class Resolve:
    """Find the catalog model behind the alias and check this project may use it."""

    def __init__(self, db: Database):
        self.db = db

    async def __call__(self, call: Call, next: Next) -> Outcome:
        def lookup():
            with self.db.session() as session:
                return catalog.get_for_project_or_raise(
                    session, alias=call.alias, project_id=call.principal.project_id, kind=call.kind
                )

        call.model = await anyio.to_thread.run_sync(lookup)
        if call.chat is not None:
            call.chat.model = call.model.upstream_name
            call.chat.context_window = call.model.context_window
        return await next(call)


class Invoke:
    """The terminal stage: call the model's provider."""

    def __init__(self, settings: Settings):
        self.settings = settings

    async def __call__(self, call: Call) -> Outcome:
        model = call.model
        provider = get_provider(
            model.provider, catalog.connection(model, self.settings), self.settings
        )
        if call.kind == "embedding":
            return await provider.embed(model.upstream_name, call.inputs or [])
        if call.stream:
            return provider.stream_chat(call.chat)
        return await provider.chat(call.chat)


def _describe(error: BaseException) -> str:
    if isinstance(error, LLMDeckError):
        return f"{error.error_type}: {error.message}"
    return f"{type(error).__name__}: {error}"
