"""Writes a call leaves behind once it is answered (a limit's reconciliation, a cache entry).

They run on worker threads off the response path. `drain` waits for them (tests, shutdown)
from any event loop: the gateway serves calls on the server's loop and on the job runner's,
and an asyncio future can only be awaited on the loop that made it, so these are
concurrent futures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llmdeck-offpath")


class OffPath:
    """Work one stage leaves behind; `what` names it in the log when it fails."""

    def __init__(self, what: str):
        self.what = what
        self._pending: set[Future] = set()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        future = _executor.submit(fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("%s failed: %r", self.what, future.exception())

    async def drain(self) -> None:
        while self._pending:
            pending = [asyncio.wrap_future(f) for f in list(self._pending)]
            await asyncio.gather(*pending, return_exceptions=True)
