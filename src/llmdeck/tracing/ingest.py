"""Durable ingestion: spans are committed to the database before the sender is answered.

An OTLP batch is acknowledged only once it is stored, so a crash (even kill -9) right after
the answer loses nothing. Retries of the same batch are harmless: rows are unique on
(project, trace id, span id) and a duplicate is skipped. When more batches are in flight
than the database keeps up with, the gate refuses new ones with 503 and `Retry-After`
(OTLP exporters retry those) rather than queueing without bound or dropping.
"""

from __future__ import annotations

import threading
from dataclasses import asdict

from sqlalchemy.dialects import postgresql, sqlite

from llmdeck.core.db import Database
from llmdeck.tracing.models import Span
from llmdeck.tracing.writer import SpanRecord

MAX_IN_FLIGHT = 8  # concurrent batches being written; more wait their turn, then are refused
ADMISSION_WAIT = 2.0  # seconds a batch waits for a slot before it is refused
RETRY_AFTER = 1  # seconds senders are told to wait when refused
MAX_BODY_BYTES = 32 * 1024 * 1024


class IngestGate:
    """A bounded number of batches written at once; the rest are pushed back."""

    def __init__(self, capacity: int = MAX_IN_FLIGHT, wait: float = ADMISSION_WAIT):
        self.capacity = capacity
        self.wait = wait
        self._slots = threading.BoundedSemaphore(capacity)

    def acquire(self) -> bool:
        return self._slots.acquire(timeout=self.wait)

    def release(self) -> None:
        self._slots.release()


def write_spans(db: Database, records: list[SpanRecord]) -> int:
    """Store spans in one transaction, skipping any already stored; the number received."""
    if not records:
        return 0
    rows = [asdict(record) for record in records]
    insert = postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(Span).on_conflict_do_nothing(
        index_elements=["project_id", "trace_id", "span_id"]
    )
    with db.engine.begin() as connection:
        connection.execute(statement, rows)
    return len(rows)
