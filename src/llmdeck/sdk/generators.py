"""`observe` on generator and async generator functions: one span over the whole iteration.

The span opens when the first item is asked for and ends when the generator is exhausted,
fails, or is closed (early: no error, the span says `llmdeck.stopped_early`); its output is
what was yielded. While the generator's body runs, its span is the current one, so what the
body observes nests under it; at each `yield` the caller's own span is current again. The
wrapper drives the generator as `yield from` would: `send`, `throw` and `close` reach it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from typing import Any

from llmdeck.sdk import tracer
from llmdeck.sdk.tracer import SpanData

log = logging.getLogger("llmdeck.sdk")

_MAX_ITEMS = 1000  # yielded items kept as a generator span's output; later ones are counted


class _Frame:
    """A generator's own current span and scope, put in place while its body runs and taken
    out again at each `yield`: the caller goes on with its own, as if no span were open.

    The generator's values are kept across yields, so a span its body opens around a
    `yield` stays the parent of what the body does next.
    """

    def __init__(self, span: SpanData, scope: dict | None):
        self.current: SpanData | None = span
        self.scope = scope
        self._tokens: tuple[Any, Any] | None = None

    def enter(self) -> None:
        self._tokens = (tracer._current.set(self.current), tracer._scope.set(self.scope))

    def leave(self) -> None:
        if self._tokens is None:
            return
        self.current, self.scope = tracer._current.get(), tracer._scope.get()
        current, scope = self._tokens
        self._tokens = None
        # Entered and left within one step, so in one context: the resets cannot fail.
        with contextlib.suppress(ValueError):
            tracer._current.reset(current)
        with contextlib.suppress(ValueError):
            tracer._scope.reset(scope)


class _Items:
    """What a generator yielded, for its span's output."""

    def __init__(self, capture: bool):
        self.capture = capture
        self.kept: list[Any] = []
        self.count = 0

    def add(self, item: Any) -> None:
        self.count += 1
        if self.capture and len(self.kept) < _MAX_ITEMS:
            self.kept.append(item)

    def output(self) -> Any:
        if all(isinstance(item, str) for item in self.kept):
            return "".join(self.kept)
        return self.kept


def _open_generator_span(
    name: str, kind: str, capture: bool, scope: dict, args: tuple, kwargs: dict
) -> tuple[SpanData, _Frame] | None:
    try:
        outer = tracer._scope.get()
        inner_scope = {**(outer or {}), **scope} if scope else outer
        # A child of the caller's current span, but not made the caller's current span.
        span = SpanData(name, kind, tracer._current.get(), inner_scope)
        if capture:
            span.input = {"args": args, "kwargs": kwargs} if kwargs else args
        return span, _Frame(span, inner_scope)
    except Exception:
        log.exception("llmdeck: starting a span failed")
        return None


def _close_generator_span(
    span: SpanData, items: _Items, error: BaseException | None, stopped: bool
) -> None:
    try:
        if items.capture and error is None:
            span.output = items.output()
        span.attributes["llmdeck.yielded"] = items.count
        if stopped:
            span.attributes["llmdeck.stopped_early"] = True
        tracer.end_span(span, error)
    except Exception:
        log.exception("llmdeck: ending a span failed")


def observe_generator(func: Any, name: str, kind: str, capture: bool, scope: dict) -> Any:
    """`func` observed over its iteration; the wrapper drives it as `yield from` would
    (send, throw and close reach it), putting its frame in place around each step."""

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def async_generator(*args: Any, **kwargs: Any) -> Any:
            inner = func(*args, **kwargs)  # wrong arguments raise before a span opens
            opened = _open_generator_span(name, kind, capture, scope, args, kwargs)
            if opened is None:
                async for item in inner:
                    yield item
                return
            span, frame = opened
            items = _Items(capture)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                frame.enter()
                try:
                    if thrown is not None:
                        error, thrown = thrown, None
                        item = await inner.athrow(error)
                    else:
                        item = await inner.asend(sent)
                except StopAsyncIteration:
                    _close_generator_span(span, items, None, False)
                    return
                except BaseException as exc:
                    _close_generator_span(span, items, exc, False)
                    raise
                finally:
                    frame.leave()
                items.add(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    failure: BaseException | None = None
                    frame.enter()
                    try:
                        await inner.aclose()
                    except BaseException as exc:  # its clean-up failed: that is an error
                        failure = exc
                        raise
                    finally:
                        frame.leave()
                        _close_generator_span(span, items, failure, failure is None)
                    raise
                except BaseException as exc:
                    thrown = exc

        return async_generator

    @functools.wraps(func)
    def generator(*args: Any, **kwargs: Any) -> Any:
        inner = func(*args, **kwargs)  # wrong arguments raise before a span opens
        opened = _open_generator_span(name, kind, capture, scope, args, kwargs)
        if opened is None:
            return (yield from inner)
        span, frame = opened
        items = _Items(capture)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            frame.enter()
            try:
                if thrown is not None:
                    error, thrown = thrown, None
                    item = inner.throw(error)
                else:
                    item = inner.send(sent)
            except StopIteration as stop:
                _close_generator_span(span, items, None, False)
                return stop.value
            except BaseException as exc:
                _close_generator_span(span, items, exc, False)
                raise
            finally:
                frame.leave()
            items.add(item)
            try:
                sent = yield item
            except GeneratorExit:
                failure: BaseException | None = None
                frame.enter()
                try:
                    inner.close()
                except BaseException as exc:  # its clean-up failed: that is an error
                    failure = exc
                    raise
                finally:
                    frame.leave()
                    _close_generator_span(span, items, failure, failure is None)
                raise
            except BaseException as exc:
                thrown = exc

    return generator
