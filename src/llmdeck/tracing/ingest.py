"""Durable ingestion: spans are committed to the database before the sender is answered.

An OTLP batch is acknowledged only once it is stored, so a crash (even kill -9) right after
the answer loses nothing. Retries of the same batch are harmless: rows are unique on
(project, trace id, span id) and a duplicate is skipped. When more batches are in flight
than the database keeps up with, the gate refuses new ones with 503 and `Retry-After`
(OTLP exporters retry those) rather than queueing without bound or dropping.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from operator import attrgetter
from typing import Any

from sqlalchemy import JSON, Engine
from sqlalchemy.dialects import postgresql, sqlite

from llmdeck.core.db import Database, UTCDateTime
from llmdeck.tracing.models import Span
from llmdeck.tracing.writer import SpanRecord


class IngestGate:
    """A bounded number of batches written at once; the rest are pushed back.

    `capacity` and `wait` come from the settings `otlp_max_in_flight` and
    `otlp_admission_wait`.
    """

    def __init__(self, capacity: int, wait: float):
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


def _default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One C encoder made once: `json.dumps` builds a new one per call, which was a tenth of the
# per-span cost. No cycle check: values come from parsed payloads and dataclass fields.
# allow_nan off: NaN and Infinity are not JSON (PostgreSQL refuses them, and so do browsers).
_encoder = (
    c_make_encoder(None, _default, encode_basestring_ascii, None, ":", ",", False, False, False)
    if c_make_encoder is not None
    else None
)


def _json(value: Any) -> str:
    """JSON text of a JSON column's value; None is JSON null, as SQLAlchemy's JSON type does.

    What would make the text unusable is replaced rather than failing the batch's write: a
    non-finite float by its name in a string ("NaN", "Infinity"), as OTLP JSON spells it, and
    a NUL character by U+FFFD (PostgreSQL stores `\\u0000` in a json column, but then fails
    every query that reads a field of that row, such as the dashboards')."""
    if value is None:
        return "null"
    try:
        if _encoder is None:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        else:
            text = "".join(_encoder(value, 0))
    except ValueError:
        text = json.dumps(_finite(value), separators=(",", ":"), allow_nan=False)
    if "\\u0000" in text:
        # Only an escape: an even run of backslashes before it (a literal "\\u0000") stays.
        text = _NUL_ESCAPE.sub(r"\1\\ufffd", text)
    return text


_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _finite(value: Any) -> Any:
    """`value` with each non-finite float replaced by its name."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _utc(value: datetime | None) -> datetime | None:
    """`UTCDateTime`'s bind rule: naive means UTC; aware is converted to UTC."""
    if value is None or value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _sqlite_time(value: datetime | None) -> str | None:
    """SQLite's stored form of a UTC timestamp, the same text SQLAlchemy's DATETIME writes."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = _utc(value)
    return _SQLITE_TIME % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


_SQLITE_TIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


class _Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` into spans, compiled once per engine.

    Spans arrive by the hundred per request, so the ORM's per-statement work (compiling,
    copying records) costs more than the database does. The statement is compiled once and
    rows go to the driver's executemany; JSON and timestamp columns are converted by the
    small functions above (the same values SQLAlchemy's bind processors produce, checked by
    tests/test_tracing_ingest.py), the other columns by SQLAlchemy's own processors, if any.
    """

    def __init__(self, engine: Engine):
        dialect = engine.dialect
        columns = [c for c in Span.__table__.columns if c.name != "id"]
        self.names = [c.name for c in columns]
        sqlite_dialect = dialect.name == "sqlite"
        self.processors: list[Any] = []
        for column in columns:
            if isinstance(column.type, JSON):
                self.processors.append(_json)
            elif isinstance(column.type, UTCDateTime):
                self.processors.append(_sqlite_time if sqlite_dialect else _utc)
            else:
                self.processors.append(column.type._cached_bind_processor(dialect))
        insert = sqlite.insert if sqlite_dialect else postgresql.insert
        # inline(): no RETURNING of the new ids, which nobody reads.
        statement = (
            insert(Span.__table__)
            .inline()
            .on_conflict_do_nothing(index_elements=["project_id", "trace_id", "span_id"])
        )
        compiled = statement.compile(dialect=dialect, column_keys=self.names)
        self.sql = str(compiled)
        self.positional = compiled.positiontup  # qmark drivers (sqlite3): values in this order
        index = {name: i for i, name in enumerate(self.names)}
        order = self.positional or self.names
        self.order = order
        # Every field in one C call; then only the few columns that need converting.
        self.get = attrgetter(*order)
        self.convert = [
            (i, process)
            for i, name in enumerate(order)
            if (process := self.processors[index[name]]) is not None
        ]
        # Batches are built (parsed, mapped, converted) one at a time: on 2 cores, threads
        # contending for the GIL cost more than they overlap. On SQLite the write is part of
        # the same turn: SQLite takes one writer at a time anyway (a writer that finds the
        # file locked sleeps in SQLite's growing busy-handler steps), and a write that runs
        # while another thread parses waits for the GIL after every row. PostgreSQL batches
        # are written concurrently, outside the turn.
        self.serial = sqlite_dialect
        self.building = threading.RLock()
        self.writing: Any = self.building if sqlite_dialect else contextlib.nullcontext()

    def rows(self, records: list[SpanRecord]) -> list[Any]:
        get, convert = self.get, self.convert
        rows = []
        for record in records:
            row = list(get(record))
            for i, process in convert:
                row[i] = process(row[i])
            rows.append(tuple(row))
        if self.positional:
            return rows
        order = self.order
        return [dict(zip(order, row, strict=True)) for row in rows]


# Keyed by the engine itself (weakly): an id() could be reused by another dialect's engine.
_inserts: weakref.WeakKeyDictionary[Engine, _Insert] = weakref.WeakKeyDictionary()


def _insert_of(db: Database) -> _Insert:
    insert = _inserts.get(db.engine)
    if insert is None:
        insert = _inserts[db.engine] = _Insert(db.engine)
    return insert


def _execute(db: Database, insert: _Insert, rows: list[Any]) -> None:
    with insert.writing, db.engine.begin() as connection:
        connection.exec_driver_sql(insert.sql, rows)


def write_spans(db: Database, records: list[SpanRecord]) -> int:
    """Store spans in one transaction, skipping any already stored; the number received."""
    if not records:
        return 0
    insert = _insert_of(db)
    with insert.building:
        rows = insert.rows(records)
    _execute(db, insert, rows)
    return len(rows)


def store_batch(db: Database, build: Callable[[], list[SpanRecord]]) -> int:
    """Build a batch's spans with `build` (parse, map) in this process's turn, and store them."""
    insert = _insert_of(db)
    with insert.building:
        records = build()
        if not records:
            return 0
        rows = insert.rows(records)
        if insert.serial:
            _execute(db, insert, rows)
            return len(rows)
    _execute(db, insert, rows)
    return len(rows)
