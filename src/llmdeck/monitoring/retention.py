"""Retention: each project keeps its spans (and feedback, drift reports, alert history) for a
set number of days; the purge job deletes what is older."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from llmdeck.core.db import Database, utcnow
from llmdeck.monitoring.models import AlertEvent, DriftReport, Feedback, ObservabilitySettings
from llmdeck.tracing.models import Span


def get_retention(session: Session, *, project_id: str) -> int | None:
    row = session.get(ObservabilitySettings, project_id)
    return row.retention_days if row is not None else None


def set_retention(session: Session, *, project_id: str, days: int | None) -> int | None:
    row = session.get(ObservabilitySettings, project_id)
    if row is None:
        row = ObservabilitySettings(project_id=project_id)
        session.add(row)
    row.retention_days = days
    row.updated_at = utcnow()
    return days


def purge(db: Database, *, now: datetime | None = None) -> dict[str, int]:
    """Delete, per project, everything older than its retention; spans deleted per project."""
    now = now or datetime.now(UTC)
    deleted: dict[str, int] = {}
    with db.session() as session:
        settings = list(
            session.execute(
                select(
                    ObservabilitySettings.project_id, ObservabilitySettings.retention_days
                ).where(ObservabilitySettings.retention_days.is_not(None))
            )
        )
    for project_id, days in settings:
        cutoff = now - timedelta(days=days)
        with db.session() as session:
            result = session.execute(
                delete(Span).where(Span.project_id == project_id, Span.started_at < cutoff)
            )
            for table in (Feedback, DriftReport, AlertEvent):
                session.execute(
                    delete(table).where(table.project_id == project_id, table.created_at < cutoff)
                )
            deleted[project_id] = result.rowcount or 0
    return deleted
