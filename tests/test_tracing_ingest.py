"""The receiver's compiled insert: the same stored values as SQLAlchemy's own column types."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from fastapi.testclient import TestClient
from sqlalchemy import select

from llmdeck.app import create_app
from llmdeck.core.db import Database
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate
from llmdeck.tracing.ingest import _Insert, write_spans
from llmdeck.tracing.models import Span
from llmdeck.tracing.writer import SpanRecord


def _records(project_id: str) -> list[SpanRecord]:
    paris = timezone(timedelta(hours=1))
    return [
        SpanRecord(
            project_id=project_id,
            trace_id="a" * 32,
            span_id="1" * 16,
            name="plain",
            started_at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),  # no microseconds
        ),
        SpanRecord(
            project_id=project_id,
            trace_id="a" * 32,
            span_id="2" * 16,
            parent_span_id="1" * 16,
            name="rich",
            started_at=datetime(2026, 3, 1, 13, 0, 0, 250, tzinfo=paris),  # not UTC
            ended_at=datetime(2026, 3, 1, 12, 0, 1, 5),  # naive: UTC
            input=[{"role": "user", "content": 'héllo ✓ "quoted"\n'}],
            output="ok",
            input_tokens=3,
            cost=0.25,
            attributes={"nested": {"list": [1, 2.5, True, None]}, "ünï": "çødé"},
            tags=["a", "b"],
            session_id="s",
        ),
    ]


def test_rows_match_sqlalchemy_bind_processors(db: Database) -> None:
    insert = _Insert(db.engine)
    dialect = db.engine.dialect
    columns = {c.name: c for c in Span.__table__.columns}
    records = _records("p")
    for record, row in zip(records, insert.rows(records), strict=True):
        values = row if isinstance(row, dict) else dict(zip(insert.order, row, strict=True))
        for name, value in values.items():
            process = columns[name].type._cached_bind_processor(dialect)
            expected = process(getattr(record, name)) if process else getattr(record, name)
            if name in ("input", "attributes", "tags"):
                # psycopg's wrapper (PostgreSQL) or JSON text (SQLite): the same document.
                document = expected.obj if hasattr(expected, "obj") else json.loads(expected)
                assert json.loads(value) == document, name
            else:
                assert value == expected, name


def test_spans_read_back_as_written_and_only_once(db: Database) -> None:
    with db.session() as session:
        project_id = identity.ensure_project(session, name="ingest").id
    records = _records(project_id)
    assert write_spans(db, records) == 2
    write_spans(db, records)  # a retried batch: skipped
    with db.session() as session:
        rows = {
            s.name: s for s in session.scalars(select(Span).where(Span.project_id == project_id))
        }
    assert len(rows) == 2
    plain, rich = rows["plain"], rows["rich"]
    assert plain.input is None and plain.attributes == {} and plain.tags is None
    assert plain.started_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert rich.started_at == datetime(2026, 3, 1, 12, 0, 0, 250, tzinfo=UTC)
    assert rich.ended_at == datetime(2026, 3, 1, 12, 0, 1, 5, tzinfo=UTC)
    assert rich.input == [{"role": "user", "content": 'héllo ✓ "quoted"\n'}]
    assert rich.attributes == {"nested": {"list": [1, 2.5, True, None]}, "ünï": "çødé"}
    assert rich.tags == ["a", "b"] and rich.cost == 0.25 and rich.input_tokens == 3


def test_receiver_refuses_a_revoked_key_at_once(db: Database, settings: Settings) -> None:
    with db.session() as session:
        project = identity.ensure_project(session, name="keys")
        key, secret = identity.create_key(
            session, project=project, data=ApiKeyCreate(name="k", role="builder")
        )
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    with TestClient(create_app(settings)) as http:
        assert http.post("/v1/traces", content=b"{}", headers=headers).status_code == 200
        assert http.post("/v1/traces", content=b"{}", headers=headers).status_code == 200
        with db.session() as session:
            identity.revoke_key(session, key=session.merge(key))
        refused = http.post("/v1/traces", content=b"{}", headers=headers)
        assert refused.status_code == 401, refused.text
