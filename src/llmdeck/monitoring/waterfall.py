"""A trace's spans laid out as a tree on a time line (the waterfall view)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from llmdeck.tracing.schemas import SpanPublic


@dataclass
class WaterfallRow:
    span: SpanPublic
    depth: int
    offset_pct: float  # where the bar starts, in % of the trace's duration
    width_pct: float
    offset_ms: float


def _end(span: SpanPublic) -> datetime:
    if span.latency_ms is not None:
        return span.started_at + timedelta(milliseconds=span.latency_ms)
    return span.ended_at or span.started_at


def waterfall(spans: list[SpanPublic]) -> list[WaterfallRow]:
    """Spans in tree order (each parent before its children, siblings by start time)."""
    if not spans:
        return []
    start = min(s.started_at for s in spans)
    end = max(_end(s) for s in spans)
    total_ms = max((end - start).total_seconds() * 1000, 0.001)
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanPublic]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None  # orphans: roots
        children.setdefault(parent, []).append(span)
    rows: list[WaterfallRow] = []
    seen: set[str] = set()

    def visit(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.started_at):
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            offset = (span.started_at - start).total_seconds() * 1000
            duration = span.latency_ms or 0.0
            rows.append(
                WaterfallRow(
                    span=span,
                    depth=min(depth, 12),
                    offset_pct=100 * offset / total_ms,
                    width_pct=max(100 * duration / total_ms, 0.5),
                    offset_ms=offset,
                )
            )
            visit(span.span_id, depth + 1)

    visit(None, 0)
    for span in spans:  # spans whose parents form a cycle (bad input) still show, at the top
        if span.span_id not in seen:
            children[None] = [span]
            visit(None, 0)
    return rows
