"""The batching trace writer: spans are queued on the request path and written in batches."""

from __future__ import annotations

import logging
import queue
import threading
import time
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
        self._queue: queue.Queue[SpanRecord] = queue.Queue()
        self._pending = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmdeck-trace-writer", daemon=True)
        self._thread.start()

    def submit(self, record: SpanRecord) -> None:
        with self._cond:
            self._pending += 1
        self._queue.put(record)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted span is written; False if that took too long."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=self.interval)]
            except queue.Empty:
                continue
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)
            with self._cond:
                self._pending -= len(batch)
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
