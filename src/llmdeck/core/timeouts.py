"""Timers for the hot path: asyncio.timeout's meaning at a fraction of its cost.

`asyncio.timeout` and `loop.call_at` allocate, schedule and free one event-loop timer each
time (4.7 and 2.5 us under uvloop, more when the CPU's caches are cold under load). The
gateway sets one per upstream attempt, one per chunk of a stream and one per idle
keep-alive connection, and nearly all of them are cancelled long before they fire. Here the
deadlines of one event loop share a heap under a single loop timer, set for the earliest;
adding a deadline is a heap push and cancelling it marks it dead. A deadline fires up to
GRAIN seconds late, which is nothing next to timeouts of seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

GRAIN = 0.005
# Dead entries are swept out of a heap once they outnumber the live ones by this much.
_SWEEP_AT = 4096


class Handle:
    """A deadline's callback; `cancel` stops it (asyncio.TimerHandle's shape)."""

    __slots__ = ("callback", "_deadlines")

    def __init__(self, callback: Callable[[], Any], deadlines: _Deadlines):
        self.callback: Callable[[], Any] | None = callback
        self._deadlines = deadlines

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self._deadlines.live -= 1

    def cancelled(self) -> bool:
        return self.callback is None


class _Deadlines:
    """The open deadlines of one event loop (used only from that loop's thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        # Weakly, and no loop timer handle is kept either: this is the value of the loop's
        # entry in a WeakKeyDictionary, and must not keep the loop alive.
        self._loop = weakref.ref(loop)
        self.heap: list[tuple[float, int, Handle]] = []
        self.live = 0
        self._order = itertools.count()  # ties: first set, first fired
        # When the loop timer in charge fires; one set for an earlier time takes over, and
        # the one it replaced does nothing when it fires.
        self._timer_at = float("inf")

    def call_at(self, when: float, callback: Callable[[], Any]) -> Handle:
        handle = Handle(callback, self)
        heapq.heappush(self.heap, (when, next(self._order), handle))
        self.live += 1
        if when < self._timer_at - GRAIN:
            self._schedule(when)
        elif len(self.heap) > _SWEEP_AT and len(self.heap) > 2 * self.live:
            self.heap = [entry for entry in self.heap if entry[2].callback is not None]
            heapq.heapify(self.heap)
        return handle

    def _schedule(self, when: float) -> None:
        loop = self._loop()
        if loop is not None:
            self._timer_at = when
            loop.call_at(when, self._fire, when)

    def _fire(self, when: float) -> None:
        loop = self._loop()
        if loop is None or when != self._timer_at:
            return  # replaced by a timer set for an earlier deadline
        self._timer_at = float("inf")
        heap, now = self.heap, loop.time()
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            callback = handle.callback
            if callback is not None:
                handle.cancel()
                # Called here, not through call_soon: by then the block may have ended.
                try:
                    callback()
                except Exception as exc:
                    loop.call_exception_handler(
                        {"message": "a deadline's callback failed", "exception": exc}
                    )
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
        if heap:
            # Not sooner than GRAIN from now: deadlines close together fire together.
            self._schedule(max(heap[0][0], now + GRAIN))


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()
# The last loop asked for, checked first (a server process has one); held weakly.
_last: tuple[Callable[[], asyncio.AbstractEventLoop | None], _Deadlines | None] = (
    lambda: None,
    None,
)


def _deadlines(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _last
    last_loop, deadlines = _last
    if last_loop() is loop and deadlines is not None:
        return deadlines
    with _lock:
        deadlines = _loops.get(loop)
        if deadlines is None:
            deadlines = _loops[loop] = _Deadlines(loop)
        _last = (weakref.ref(loop), deadlines)
    return deadlines


def call_at(when: float, callback: Callable[[], Any]) -> Handle:
    """Call `callback` at the running loop's time `when` (up to GRAIN later), unless the
    handle is cancelled first."""
    loop = asyncio.get_running_loop()
    return _deadlines(loop).call_at(when, callback)


def call_later(delay: float, callback: Callable[[], Any]) -> Handle:
    loop = asyncio.get_running_loop()
    return _deadlines(loop).call_at(loop.time() + delay, callback)


class timeout:
    """`async with timeout(seconds):` as asyncio.timeout does it (None: no limit): the block
    is cancelled once the time is up, and TimeoutError raised in its place."""

    __slots__ = ("_seconds", "_task", "_handle", "_expired", "_cancelling")

    def __init__(self, seconds: float | None):
        self._seconds = seconds
        self._handle: Handle | None = None
        self._expired = False

    async def __aenter__(self) -> timeout:
        if self._seconds is not None:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
            if task is None:
                raise RuntimeError("timeout() should be used inside a task")
            self._task = task
            self._cancelling = task.cancelling()
            self._handle = _deadlines(loop).call_at(loop.time() + self._seconds, self._expire)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if (
            self._expired
            and exc_type is asyncio.CancelledError
            and self._task.uncancel() <= self._cancelling
        ):
            raise TimeoutError from exc

    def expired(self) -> bool:
        return self._expired

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()
