"""Monitoring tables: feedback on traces, alert rules and their history, retention settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from llmdeck.core.db import Base, UTCDateTime, utcnow
from llmdeck.core.ids import new_id


class Feedback(Base):
    """A score, thumb or comment on a trace (or one span of it)."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_project_created", "project_id", "created_at"),
        Index("ix_feedback_project_trace", "project_id", "trace_id"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100), default="user")
    score: Mapped[float | None] = mapped_column(Float)  # thumbs: 1.0 up, 0.0 down
    kind: Mapped[str] = mapped_column(String(20), default="score")  # score | thumbs | comment
    comment: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20), default="api")  # api | sdk | console
    author: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertRule(Base):
    """Fires when a dashboard metric over a window crosses a threshold; delivers to a webhook."""

    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(50))
    comparison: Mapped[str] = mapped_column(String(2), default=">")  # > | <
    threshold: Mapped[float] = mapped_column(Float)
    window_minutes: Mapped[int] = mapped_column(Integer, default=60)
    webhook_url: Mapped[str] = mapped_column(String(1000))
    secret_encrypted: Mapped[str] = mapped_column(String(2000))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(10), default="ok")  # ok | firing
    last_value: Mapped[float | None] = mapped_column(Float)
    last_evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertEvent(Base):
    """One state change of a rule, and how its webhook delivery went."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    rule_id: Mapped[str] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(10))  # firing | resolved
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    delivery: Mapped[str] = mapped_column(String(20), default="pending")  # delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ObservabilitySettings(Base):
    """Per-project observability settings: how long spans and feedback are kept."""

    __tablename__ = "observability_settings"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    retention_days: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DriftReport(Base):
    """One comparison of a recent window of inputs against a baseline window."""

    __tablename__ = "drift_reports"
    __table_args__ = (Index("ix_drift_reports_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(50))
    baseline_count: Mapped[int] = mapped_column(Integer)
    recent_count: Mapped[int] = mapped_column(Integer)
    statistic: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(Boolean, default=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
