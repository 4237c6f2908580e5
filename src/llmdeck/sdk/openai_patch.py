"""Automatic spans for calls made with the official `openai` client (chat completions).

`instrument_openai()` wraps `chat.completions.create` of the sync and async clients once,
process-wide. Each call becomes an `llm` span, nested under the current `observe` span, with
the GenAI attributes: system, request and response model, tokens, messages and the answer;
streams are followed to their end, with the time to first token. A stream the app stops
reading and closes (or drops) early is no error: its span has what was read and says
`llmdeck.stopped_early`. Each request carries a W3C
`traceparent` header naming that span, so the llmdeck gateway (or any traced server) records
its own spans as children of it: one trace from the app through the gateway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from llmdeck.sdk.tracer import SpanData, detach, end_span, exporter, start_span
from llmdeck.tracing.context import format_traceparent

log = logging.getLogger("llmdeck.sdk")
_PATCHED = "__llmdeck_patched__"
_REQUEST_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "seed")


def instrument_openai() -> bool:
    """Record every `openai` chat completion as a span; False if `openai` is not installed."""
    try:
        from openai.resources.chat.completions import AsyncCompletions, Completions
    except ImportError:
        return False
    if not getattr(Completions.create, _PATCHED, False):
        Completions.create = _wrap_sync(Completions.create)
    if not getattr(AsyncCompletions.create, _PATCHED, False):
        AsyncCompletions.create = _wrap_async(AsyncCompletions.create)
    return True


def uninstrument_openai() -> None:
    """Undo `instrument_openai`: `openai` calls are no longer recorded."""
    try:
        from openai.resources.chat.completions import AsyncCompletions, Completions
    except ImportError:
        return
    for resource in (Completions, AsyncCompletions):
        if getattr(resource.create, _PATCHED, False):
            resource.create = resource.create.__wrapped__  # functools.wraps kept it


def _begin(client: Any, kwargs: dict[str, Any]) -> SpanData | None:
    try:
        model = kwargs.get("model")
        span = start_span(f"chat {model}", "llm")
        span.model = model
        span.input = kwargs.get("messages")
        attrs = span.attributes
        attrs["gen_ai.operation.name"] = "chat"
        attrs["gen_ai.system"] = "openai"
        base_url = getattr(getattr(client, "_client", None), "base_url", None)
        if base_url is not None:
            attrs["server.address"] = str(base_url)
            sink = exporter()
            if sink is not None and str(base_url).startswith(sink.base_url + "/"):
                # A call to the llmdeck gateway this SDK reports to: the gateway's own span
                # (a child of this one) carries the call's cost, so none is added for this one.
                attrs["llmdeck.gateway"] = True
        for param in _REQUEST_PARAMS:
            if kwargs.get(param) is not None:
                attrs[f"gen_ai.request.{param}"] = kwargs[param]
        if kwargs.get("stream"):
            attrs["llmdeck.stream"] = True
        _propagate(span, kwargs)
        return span
    except Exception:
        log.exception("llmdeck: starting an openai span failed")
        return None


def _propagate(span: SpanData, kwargs: dict[str, Any]) -> None:
    """Send the span as the request's `traceparent`, unless the caller set one."""
    headers = kwargs.get("extra_headers") or {}
    if not any(str(name).lower() == "traceparent" for name in headers):
        traceparent = format_traceparent(span.trace_id, span.span_id)
        kwargs["extra_headers"] = {**headers, "traceparent": traceparent}


def _finish(span: SpanData | None, response: Any, error: BaseException | None) -> None:
    if span is None:
        return
    try:
        if response is not None:
            span.attributes["gen_ai.response.model"] = getattr(response, "model", None)
            usage = getattr(response, "usage", None)
            if usage is not None:
                span.attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
                span.attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            choices = getattr(response, "choices", None) or []
            if choices:
                span.output = choices[0].message.content
                span.attributes["gen_ai.response.finish_reasons"] = [
                    str(c.finish_reason) for c in choices
                ]
        end_span(span, error)
    except Exception:
        log.exception("llmdeck: ending an openai span failed")


class _StreamState:
    def __init__(self, span: SpanData | None):
        self.span = span
        self.parts: list[str] = []
        self.first: float | None = None
        self.model = None
        self.usage = None

    def see(self, chunk: Any) -> None:
        try:
            if self.first is None:
                self.first = time.time_ns()
            self.model = getattr(chunk, "model", None) or self.model
            self.usage = getattr(chunk, "usage", None) or self.usage
            for choice in getattr(chunk, "choices", None) or []:
                content = getattr(choice.delta, "content", None)
                if content:
                    self.parts.append(content)
        except Exception:
            pass

    def done(self, error: BaseException | None, *, stopped: bool = False) -> None:
        """End the span once: at the stream's end, on its error, or when the app stops."""
        span = self.span
        if span is None:
            return
        self.span = None
        try:
            span.output = "".join(self.parts)
            if self.model:
                span.attributes["gen_ai.response.model"] = self.model
            if self.usage is not None:
                span.attributes["gen_ai.usage.input_tokens"] = self.usage.prompt_tokens
                span.attributes["gen_ai.usage.output_tokens"] = self.usage.completion_tokens
            if self.first is not None:
                span.attributes["llmdeck.ttft_ms"] = (self.first - span.start_ns) / 1e6
            if stopped:
                span.attributes["llmdeck.stopped_early"] = True
            end_span(span, error)
        except Exception:
            log.exception("llmdeck: ending an openai stream span failed")


class _Stream:
    """What the sync and async wrappers share: the wrapped stream's other attributes."""

    _stream: Any
    _state: _StreamState

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        # Dropped unfinished, without close(): the app stopped reading it.
        state = self.__dict__.get("_state")
        if state is not None:
            state.done(None, stopped=True)


class _SyncStream(_Stream):
    """Passes the stream through, chunk by chunk, and ends the span when it is exhausted,
    fails, or is closed. An iterator (as openai's Stream is), not a generator: a loop the
    app breaks out of leaves the span open until the stream is closed or read on."""

    def __init__(self, stream: Any, state: _StreamState):
        self._stream = stream
        self._state = state
        self._chunks = iter(stream)

    def __iter__(self) -> _SyncStream:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._state.done(None)
            raise
        except BaseException as exc:
            self._state.done(exc)
            raise
        self._state.see(chunk)
        return chunk

    def __enter__(self) -> _SyncStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._state.done(None, stopped=True)  # nothing left to do if it ended already
        close = getattr(self._stream, "close", None)
        if close:
            close()


class _AsyncStream(_Stream):
    def __init__(self, stream: Any, state: _StreamState):
        self._stream = stream
        self._state = state
        self._chunks = aiter(stream)

    def __aiter__(self) -> _AsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._state.done(None)
            raise
        except asyncio.CancelledError:  # the app's task stopped waiting for the stream
            self._state.done(None, stopped=True)
            raise
        except BaseException as exc:
            self._state.done(exc)
            raise
        self._state.see(chunk)
        return chunk

    async def __aenter__(self) -> _AsyncStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        self._state.done(None, stopped=True)
        close = getattr(self._stream, "close", None)
        if close:
            await close()


def _wrap_sync(create: Any) -> Any:
    @functools.wraps(create)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        span = _begin(self, kwargs)
        try:
            response = create(self, *args, **kwargs)
        except BaseException as exc:
            _finish(span, None, exc)
            raise
        # A raw response (`with_raw_response`) is no stream to follow: its span ends now.
        if kwargs.get("stream") and hasattr(response, "__iter__"):
            if span is not None:
                detach(span)
            return _SyncStream(response, _StreamState(span))
        _finish(span, response, None)
        return response

    setattr(wrapper, _PATCHED, True)
    return wrapper


def _wrap_async(create: Any) -> Any:
    @functools.wraps(create)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        span = _begin(self, kwargs)
        try:
            response = await create(self, *args, **kwargs)
        except BaseException as exc:
            _finish(span, None, exc)
            raise
        if kwargs.get("stream") and hasattr(response, "__aiter__"):
            if span is not None:
                detach(span)
            return _AsyncStream(response, _StreamState(span))
        _finish(span, response, None)
        return response

    setattr(wrapper, _PATCHED, True)
    return wrapper
