"""The batching trace writer: spans are queued on the request path and written in batches."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmdeck.core.db import Database

log = logging.getLogger(__name__)


@dataclass
class SpanRecord:
    project_id: str
    trace_id: str
    span_id: str
    name: str
    started_at: datetime
    kind: str = "llm"
    parent_span_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    input: Any | None = None
    output: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    status: str = "ok"
    error: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    ended_at: datetime | None = None
    session_id: str | None = None
    user_id: str | None = None
    tags: list[str] | None = None


class TraceWriter:
    """Writes queued spans from one background thread; `flush` waits until they are stored."""

    def __init__(self, db: Database, *, interval: float = 0.2, batch_size: int = 200):
        self.db = db
        self.interval = interval
        self.batch_size = batch_size
        # Submitting is one append to a deque (atomic, no lock, nobody woken): a queue that
        # woke the writer for every span cost the gateway a thread switch per request.
        # The writer wakes every `interval` instead, or at once when asked to flush.
        self._buffer: collections.deque[SpanRecord | Callable[[], SpanRecord]] = collections.deque()
        self._writing = False
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmdeck-trace-writer", daemon=True)
        self._thread.start()

    def submit(self, record: SpanRecord | Callable[[], SpanRecord]) -> None:
        """Queue a span, or a function that makes it: the gateway's are made by this
        writer's thread, so that building them costs the request path nothing."""
        self._buffer.append(record)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted span is written; False if that took too long."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._cond:
            while self._buffer or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, self.interval))
        return True

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            while self._buffer:
                with self._cond:
                    self._writing = True  # before taking spans out, so flush() waits for them
                batch = []
                while self._buffer and len(batch) < self.batch_size:
                    item = self._buffer.popleft()
                    try:
                        batch.append(item if isinstance(item, SpanRecord) else item())
                    except Exception:
                        log.exception("a span could not be made; it is left out")
                try:
                    self._write(batch)
                finally:
                    with self._cond:
                        self._writing = False
                        self._cond.notify_all()

    def _write(self, batch: list[SpanRecord]) -> None:
        # The OTLP receiver's compiled executemany: the ORM's per-row work cost more than
        # SQLite did. Imported here because ingest builds on this module's SpanRecord.
        from llmdeck.tracing.ingest import write_spans

        for attempt in range(5):
            try:
                write_spans(self.db, batch)
                return
            except Exception:
                # Spans must not be dropped on a transient error (a locked file, a restart).
                log.exception("writing %d spans failed (attempt %d)", len(batch), attempt + 1)
                time.sleep(0.2 * 2**attempt)
        log.error("dropped %d spans after repeated write failures", len(batch))
