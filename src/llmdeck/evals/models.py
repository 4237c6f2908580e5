"""Evaluation tables: datasets and their items, experiments and their per-item results,
review queues and the experts' reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from llmdeck.core.db import Base, UTCDateTime, utcnow
from llmdeck.core.ids import new_id


class Dataset(Base):
    """A named, versioned collection of items; every change makes a new version."""

    __tablename__ = "eval_datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetItem(Base):
    """An item lives in versions [added_in, removed_in): versions share unchanged rows."""

    __tablename__ = "eval_dataset_items"
    __table_args__ = (Index("ix_eval_dataset_items_dataset_added", "dataset_id", "added_in"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("eval_datasets.id", ondelete="CASCADE"))
    added_in: Mapped[int] = mapped_column(Integer)
    # Order of the items in the dataset (ids made in the same millisecond do not sort).
    position: Mapped[int] = mapped_column(Integer, default=0)
    removed_in: Mapped[int | None] = mapped_column(Integer)
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    expected: Mapped[Any | None] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    source_trace_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Experiment(Base):
    """A target run over one dataset version with a set of metrics."""

    __tablename__ = "eval_experiments"
    __table_args__ = (Index("ix_eval_experiments_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("eval_datasets.id", ondelete="CASCADE"))
    dataset_version: Mapped[int] = mapped_column(Integer)
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[list[Any]] = mapped_column(JSON, default=list)
    concurrency: Mapped[int] = mapped_column(Integer, default=8)
    # pending | queued (a job waits for a worker) | running | interrupted | done | failed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ExperimentResult(Base):
    """One item's outcome, stored as soon as it finishes (what makes a run resumable)."""

    __tablename__ = "eval_results"
    __table_args__ = (UniqueConstraint("experiment_id", "item_id"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("eval_experiments.id", ondelete="CASCADE")
    )
    item_id: Mapped[str] = mapped_column(String(26))
    output: Mapped[str | None] = mapped_column(Text)
    contexts: Mapped[list[str] | None] = mapped_column(JSON)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    cost: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    # {metric: {"score": float | None, "explanation": str}}
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewQueue(Base):
    __tablename__ = "eval_review_queues"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewTask(Base):
    """One thing to review (an experiment result or a trace) and, once done, the verdict."""

    __tablename__ = "eval_review_tasks"
    __table_args__ = (Index("ix_eval_review_tasks_queue", "queue_id", "reviewed_at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    queue_id: Mapped[str] = mapped_column(ForeignKey("eval_review_queues.id", ondelete="CASCADE"))
    result_id: Mapped[str | None] = mapped_column(ForeignKey("eval_results.id", ondelete="CASCADE"))
    trace_id: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    score: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(String(100))
    comment: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
