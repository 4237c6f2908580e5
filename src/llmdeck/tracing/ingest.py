"""Durable ingestion: spans are committed to the database before the sender is answered.

An OTLP batch is acknowledged only once it is stored, so a crash (even kill -9) right after
the answer loses nothing. Retries of the same batch are harmless: rows are unique on
(project, trace id, span id) and a duplicate is skipped. When more batches are in flight
than the database keeps up with, the gate refuses new ones with 503 and `Retry-After`
(OTLP exporters retry those) rather than queueing without bound or dropping.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import Engine
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

    def try_acquire(self) -> bool:
        """A free slot now, without waiting (the common case, on the event loop)."""
        return self._slots.acquire(blocking=False)

    def acquire(self) -> bool:
        return self._slots.acquire(timeout=self.wait)

    def release(self) -> None:
        self._slots.release()


class _Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` into spans, compiled once per engine.

    Spans arrive by the hundred per request, so the ORM's per-statement work (compiling,
    copying records) costs more than the database does. This keeps SQLAlchemy's own column
    types (JSON, UTC timestamps) by calling their bind processors directly, and hands the
    rows to the driver's executemany.
    """

    def __init__(self, engine: Engine):
        dialect = engine.dialect
        columns = [c for c in Span.__table__.columns if c.name != "id"]
        self.names = [c.name for c in columns]
        self.processors = [c.type._cached_bind_processor(dialect) for c in columns]
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = insert(Span.__table__).on_conflict_do_nothing(
            index_elements=["project_id", "trace_id", "span_id"]
        )
        compiled = statement.compile(dialect=dialect, column_keys=self.names)
        self.sql = str(compiled)
        self.positional = compiled.positiontup  # qmark drivers (sqlite3): values in this order
        self.index = {name: i for i, name in enumerate(self.names)}

    def rows(self, records: list[SpanRecord]) -> list[Any]:
        order = self.positional or self.names
        procs = [(n, self.processors[self.index[n]]) for n in order]
        out = []
        for record in records:
            values = record.__dict__
            row = [p(values[n]) if p is not None else values[n] for n, p in procs]
            out.append(tuple(row) if self.positional else dict(zip(order, row, strict=True)))
        return out


# Keyed by the engine itself (weakly): an id() could be reused by another dialect's engine.
_inserts: weakref.WeakKeyDictionary[Engine, _Insert] = weakref.WeakKeyDictionary()


def write_spans(db: Database, records: list[SpanRecord]) -> int:
    """Store spans in one transaction, skipping any already stored; the number received."""
    if not records:
        return 0
    insert = _inserts.get(db.engine)
    if insert is None:
        insert = _inserts[db.engine] = _Insert(db.engine)
    rows = insert.rows(records)
    with db.engine.begin() as connection:
        connection.exec_driver_sql(insert.sql, rows)
    return len(rows)
