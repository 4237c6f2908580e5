"""The batching trace writer and trace queries on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llmdeck.core.db import Database
from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.core.ids import new_span_id, new_trace_id
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ProjectCreate
from llmdeck.tracing import service
from llmdeck.tracing.writer import SpanRecord, TraceWriter


def _span(project_id: str, at: datetime, **fields) -> SpanRecord:
    defaults = dict(
        project_id=project_id,
        trace_id=new_trace_id(),
        span_id=new_span_id(),
        name="chat m",
        started_at=at,
        model="m",
        input=[{"role": "user", "content": "hi"}],
        output="hello",
        input_tokens=3,
        output_tokens=2,
        cost=0.001,
        latency_ms=12.0,
    )
    return SpanRecord(**{**defaults, **fields})


def test_writer_batches_and_flushes(db: Database) -> None:
    with db.session() as session:
        project = identity.create_project(session, data=ProjectCreate(name="acme"))
    writer = TraceWriter(db, interval=0.05, batch_size=50)
    start = datetime.now(UTC)
    for i in range(120):
        writer.submit(_span(project.id, start + timedelta(milliseconds=i)))
    writer.close()  # flushes what is queued
    with db.session() as session:
        page = service.list_traces(session, project_id=project.id, limit=200)
    assert len(page.data) == 120 and page.next_cursor is None


def test_duplicate_spans_are_written_once(db: Database) -> None:
    with db.session() as session:
        project = identity.create_project(session, data=ProjectCreate(name="acme"))
    record = _span(project.id, datetime.now(UTC))
    writer = TraceWriter(db, interval=0.05)
    writer.submit(record)
    writer.flush()
    writer.submit(record)
    writer.close()
    with db.session() as session:
        assert (
            len(
                service.get_trace_or_raise(
                    session, project_id=project.id, trace_id=record.trace_id
                ).spans
            )
            == 1
        )


def test_list_filters_and_cursor_pagination(db: Database) -> None:
    with db.session() as session:
        project = identity.create_project(session, data=ProjectCreate(name="acme"))
    writer = TraceWriter(db, interval=0.05)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(7):
        writer.submit(
            _span(
                project.id,
                base + timedelta(minutes=i),
                model="a" if i % 2 else "b",
                status="error" if i == 3 else "ok",
            )
        )
    writer.close()
    with db.session() as session:
        seen, cursor = [], None
        while True:
            page = service.list_traces(session, project_id=project.id, limit=3, cursor=cursor)
            seen += [t.started_at for t in page.data]
            if not (cursor := page.next_cursor):
                break
        assert seen == sorted(seen, reverse=True) and len(seen) == 7
        assert {
            t.model for t in service.list_traces(session, project_id=project.id, model="a").data
        } == {"a"}
        errors = service.list_traces(session, project_id=project.id, status="error").data
        assert [e.started_at for e in errors] == [base + timedelta(minutes=3)]
        window = service.list_traces(
            session,
            project_id=project.id,
            since=base + timedelta(minutes=2),
            until=base + timedelta(minutes=4),
        ).data
        assert len(window) == 2
        with pytest.raises(InvalidRequest, match="cursor"):
            service.list_traces(session, project_id=project.id, cursor="garbage")


def test_a_project_sees_only_its_own_traces(db: Database) -> None:
    with db.session() as session:
        acme = identity.create_project(session, data=ProjectCreate(name="acme"))
        other = identity.create_project(session, data=ProjectCreate(name="other"))
    record = _span(acme.id, datetime.now(UTC))
    writer = TraceWriter(db, interval=0.05)
    writer.submit(record)
    writer.close()
    with db.session() as session:
        assert service.list_traces(session, project_id=other.id).data == []
        with pytest.raises(NotFound):
            service.get_trace_or_raise(session, project_id=other.id, trace_id=record.trace_id)
        trace = service.get_trace_or_raise(session, project_id=acme.id, trace_id=record.trace_id)
    span = trace.spans[0]
    assert (span.input_tokens, span.output_tokens, span.output) == (3, 2, "hello")
    assert span.started_at.tzinfo is not None


def test_a_trace_is_found_through_its_own_index_in_time_order(db: Database) -> None:
    """Opening a trace reads its spans, not every span of the project (SQLite's planner
    walked the project's time index when the query ordered by time)."""
    from sqlalchemy import event

    from llmdeck.tracing.ingest import write_spans

    with db.session() as session:
        project = identity.create_project(session, data=ProjectCreate(name="acme"))
    start = datetime.now(UTC)
    trace_id = new_trace_id()
    write_spans(db, [_span(project.id, start - timedelta(seconds=i)) for i in range(200)])
    write_spans(
        db, [_span(project.id, start + timedelta(seconds=s), trace_id=trace_id) for s in (3, 1, 2)]
    )
    statements: list[tuple[str, object]] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM spans" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        with db.session() as session:
            trace = service.get_trace_or_raise(session, project_id=project.id, trace_id=trace_id)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert [s.started_at for s in trace.spans] == sorted(s.started_at for s in trace.spans)
    assert len(trace.spans) == 3
    if db.engine.dialect.name == "sqlite":  # PostgreSQL plans from its statistics
        (statement, parameters), *_ = statements
        with db.engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        assert "trace_id=?" in str(plan), plan


def test_a_trace_row_shows_the_model_and_tokens_of_its_calls(db: Database) -> None:
    """An instrumented app's root span is not the LLM call: the list sums its calls, each
    counted once (an SDK span over the gateway's span of the same call counts once)."""
    with db.session() as session:
        project = identity.create_project(session, data=ProjectCreate(name="acme"))
    at, trace = datetime(2026, 1, 1, tzinfo=UTC), new_trace_id()
    root = _span(
        project.id,
        at,
        trace_id=trace,
        name="answer question",
        kind="chain",
        model=None,
        input_tokens=None,
        output_tokens=None,
        cost=None,
        latency_ms=90.0,
    )
    first = _span(project.id, at, trace_id=trace, parent_span_id=root.span_id, model="m1")
    sdk = _span(project.id, at, trace_id=trace, parent_span_id=root.span_id, model="m2")
    gateway = _span(
        project.id,
        at,
        trace_id=trace,
        parent_span_id=sdk.span_id,
        model="m2",
        input_tokens=10,
        output_tokens=5,
        cost=0.01,
    )
    writer = TraceWriter(db, interval=0.05)
    for record in (root, first, sdk, gateway):
        writer.submit(record)
    writer.close()
    with db.session() as session:
        [row] = service.list_traces(session, project_id=project.id).data
        assert (row.name, row.model, row.latency_ms) == ("answer question", "m1, m2", 90.0)
        assert (row.input_tokens, row.output_tokens) == (13, 7)
        assert row.cost == pytest.approx(0.011)
        assert [
            t.trace_id for t in service.list_traces(session, project_id=project.id, model="m2").data
        ] == [trace]
