"""`observe`: nested spans from a decorator or a `with` block, with sessions, users and tags.

Everything on the caller's thread is kept to a few object allocations: ids come from
`random.getrandbits`, timestamps from `time.time_ns`, and the finished span is appended to
the exporter's deque. Serialisation and sending happen on the export thread. No method here
raises into user code: a failure inside the SDK is logged and the user's call goes on.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import os
import random
import time
from typing import Any

from llmdeck.sdk.exporter import Exporter

log = logging.getLogger("llmdeck.sdk")

_current: contextvars.ContextVar[SpanData | None] = contextvars.ContextVar(
    "llmdeck_span", default=None
)
_scope: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "llmdeck_scope", default=None
)
_exporter: Exporter | None = None
_rand = random.Random()


class SpanData:
    """One span being recorded; the handle `with observe(...) as span` gives."""

    # Class-level defaults: a span only pays for the fields it sets.
    parent_span_id: str | None = None
    model: str | None = None
    input: Any = None
    output: Any = None
    error: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    tags: list[str] | None = None
    metadata: dict | None = None
    end_ns: int = 0
    _token: Any = None

    def __init__(self, name: str, kind: str, parent: SpanData | None, scope: dict | None):
        self.name = name
        self.kind = kind
        self.span_id = f"{_rand.getrandbits(64):016x}"
        if parent is not None:
            self.trace_id = parent.trace_id
            self.parent_span_id = parent.span_id
        else:
            self.trace_id = f"{_rand.getrandbits(128):032x}"
        self.attributes: dict[str, Any] = {}
        if scope:
            self.session_id = scope.get("session_id")
            self.user_id = scope.get("user_id")
            self.tags = scope.get("tags")
            self.metadata = scope.get("metadata")
        self.start_ns = time.time_ns()

    def update(self, **fields: Any) -> SpanData:
        """Set input, output, model, session_id, user_id, tags, metadata or attributes."""
        for key, value in fields.items():
            if key == "attributes":
                self.attributes.update(value or {})
            elif key in ("input", "output", "model", "session_id", "user_id", "tags", "metadata"):
                setattr(self, key, value)
            else:
                self.attributes[key] = value
        return self

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


def configure(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    project: str | None = None,
    batch_size: int = 100,
    interval: float = 0.5,
) -> None:
    """Send spans to this llmdeck server (default: LLMDECK_BASE_URL / LLMDECK_API_KEY)."""
    global _exporter
    if _exporter is not None:
        _exporter.shutdown()
    _exporter = Exporter(
        base_url or os.environ.get("LLMDECK_BASE_URL", "http://127.0.0.1:8000"),
        api_key or os.environ.get("LLMDECK_API_KEY"),
        project=project,
        batch_size=batch_size,
        interval=interval,
    )


def exporter() -> Exporter | None:
    return _exporter


def flush(timeout: float = 10.0) -> bool:
    """Send every finished span now (called at exit too).

    False if that took longer than `timeout`, or if any span was dropped since the last
    flush: refused by the server (a wrong API key, say; the log says why), given up on
    while the server stayed unreachable, or pushed out of a full queue.
    """
    return _exporter.flush(timeout) if _exporter is not None else True


def start_span(name: str, kind: str = "chain") -> SpanData:
    span = SpanData(name, kind, _current.get(), _scope.get())
    span._token = _current.set(span)
    return span


def end_span(span: SpanData, error: BaseException | None = None) -> None:
    span.end_ns = time.time_ns()
    if error is not None:
        span.error = f"{type(error).__name__}: {error}"
    if span._token is not None:
        try:
            _current.reset(span._token)
        except ValueError:  # ended in another context (a generator resumed elsewhere)
            _current.set(None)
        span._token = None
    if _exporter is not None:
        _exporter.enqueue(span)


def detach(span: SpanData) -> None:
    """Stop `span` being the parent of new spans while it stays open (a stream being read)."""
    if span._token is not None:
        with contextlib.suppress(ValueError):
            _current.reset(span._token)
        span._token = None


def current_span() -> SpanData | None:
    return _current.get()


def current_trace_id() -> str | None:
    span = _current.get()
    return span.trace_id if span is not None else None


class context:  # noqa: N801 - used like a function: `with llmdeck.context(user_id=...)`
    """Session, end user, tags and metadata for every span started inside."""

    def __init__(self, *, session_id=None, user_id=None, tags=None, metadata=None):
        self.values = {
            k: v
            for k, v in dict(
                session_id=session_id, user_id=user_id, tags=tags, metadata=metadata
            ).items()
            if v is not None
        }

    def __enter__(self) -> context:
        self._token = _scope.set({**(_scope.get() or {}), **self.values})
        return self

    def __exit__(self, *exc: Any) -> None:
        _scope.reset(self._token)


class observe:  # noqa: N801 - a decorator and context manager, named like one
    """Record a span: `@observe`, `@observe(name=..., kind=...)` or `with observe("step"):`.

    As a decorator it records the call's arguments as input and its return value as output
    (turned into JSON on the export thread); exceptions are recorded and re-raised untouched.
    A generator or async generator function is observed over its whole iteration: the span
    opens at the first item asked for and ends when the generator is exhausted, fails or is
    closed (closing it early is no error: the span says `llmdeck.stopped_early`). Its
    output is the items yielded, joined when they are all strings.
    """

    def __new__(cls, name: Any = None, **options: Any) -> Any:
        if callable(name):  # bare @observe: hand back the wrapped function itself
            instance = super().__new__(cls)
            instance.__init__(None, **options)
            return instance._wrap(name)
        return super().__new__(cls)

    def __init__(
        self,
        name: str | None = None,
        *,
        kind: str = "chain",
        capture: bool = True,
        session_id: str | None = None,
        user_id: str | None = None,
        tags: list[str] | None = None,
        metadata: dict | None = None,
    ):
        self.name = name
        self.kind = kind
        self.capture = capture
        self.scope = {
            k: v
            for k, v in dict(
                session_id=session_id, user_id=user_id, tags=tags, metadata=metadata
            ).items()
            if v is not None
        }
        self._span: SpanData | None = None
        self._scope_token: Any = None

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> SpanData:
        if self.scope:
            self._scope_token = _scope.set({**(_scope.get() or {}), **self.scope})
        self._span = start_span(self.name or "span", self.kind)
        return self._span

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._span is not None:
                end_span(self._span, exc)
            if self._scope_token is not None:
                _scope.reset(self._scope_token)
        except Exception:
            log.exception("llmdeck: ending a span failed")

    # -- decorator ---------------------------------------------------------------------------

    def __call__(self, func: Any) -> Any:
        """`@observe(name=...)` applied to a function."""
        return self._wrap(func)

    def _wrap(self, func: Any) -> Any:
        name = self.name or getattr(func, "__qualname__", "function")
        kind, capture, scope = self.kind, self.capture, self.scope

        def begin(args: tuple, kwargs: dict) -> tuple[SpanData | None, Any]:
            try:
                token = _scope.set({**(_scope.get() or {}), **scope}) if scope else None
                span = start_span(name, kind)
                if capture:
                    span.input = {"args": args, "kwargs": kwargs} if kwargs else args
                return span, token
            except Exception:
                log.exception("llmdeck: starting a span failed")
                return None, None

        def finish(span: SpanData | None, token: Any, result: Any, error: Any) -> None:
            if span is None:
                return
            try:
                if capture and error is None:
                    span.output = result
                end_span(span, error)
                if token is not None:
                    _scope.reset(token)
            except Exception:
                log.exception("llmdeck: ending a span failed")

        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            from llmdeck.sdk.generators import observe_generator  # it builds on this module

            return observe_generator(func, name, kind, capture, scope)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                span, token = begin(args, kwargs)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    finish(span, token, None, exc)
                    raise
                finish(span, token, result, None)
                return result

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span, token = begin(args, kwargs)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                finish(span, token, None, exc)
                raise
            finish(span, token, result, None)
            return result

        return wrapper
