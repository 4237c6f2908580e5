"""Gateway tables: routes and their deployments, limits and budgets, counters, the cache."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from llmdeck.core.db import Base, UTCDateTime, utcnow
from llmdeck.core.ids import new_id


class Route(Base):
    """A model alias served by one or more deployments, with its retry and fallback policy."""

    __tablename__ = "gateway_routes"

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    alias: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="chat")  # chat | embedding
    # Empty: every project may use it; set: only that project.
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    strategy: Mapped[str] = mapped_column(String(20), default="weighted")  # | least_busy
    fallbacks: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Empty: the gateway_* settings apply.
    retries: Mapped[int | None] = mapped_column(Integer)
    attempt_timeout: Mapped[float | None] = mapped_column(Float)
    deadline: Mapped[float | None] = mapped_column(Float)
    context_window: Mapped[int] = mapped_column(Integer, default=8192)
    input_price_per_mtok: Mapped[float] = mapped_column(Float, default=0.0)
    output_price_per_mtok: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deployments: Mapped[list[Deployment]] = relationship(
        back_populates="route", cascade="all, delete-orphan", order_by="Deployment.name"
    )


class Deployment(Base):
    """One place a route's requests can go: a provider connection and the model it serves."""

    __tablename__ = "gateway_deployments"
    __table_args__ = (UniqueConstraint("route_id", "name"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    route_id: Mapped[str] = mapped_column(
        ForeignKey("gateway_routes.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(50), default="openai")
    upstream_name: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str | None] = mapped_column(String(500))
    api_key_encrypted: Mapped[str | None] = mapped_column(String(2000))
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    route: Mapped[Route] = relationship(back_populates="deployments")


class Limit(Base):
    """Rate limits and a spend budget for one project or one API key."""

    __tablename__ = "gateway_limits"
    __table_args__ = (UniqueConstraint("scope", "scope_id"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    scope: Mapped[str] = mapped_column(String(10))  # project | key
    scope_id: Mapped[str] = mapped_column(String(26))
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    budget: Mapped[float | None] = mapped_column(Float)  # dollars per period
    budget_period: Mapped[str] = mapped_column(String(10), default="month")  # day|week|month


class Counter(Base):
    """A shared counter (requests, tokens or dollars in one window), updated atomically."""

    __tablename__ = "gateway_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class CachePolicy(Base):
    """How a project's answers are cached: exact-match TTL and semantic threshold."""

    __tablename__ = "gateway_cache_policies"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    ttl_seconds: Mapped[int] = mapped_column(Integer, default=300)
    exact: Mapped[bool] = mapped_column(default=True)
    # Empty: no semantic cache; set: cosine similarity needed for a semantic hit.
    semantic_threshold: Mapped[float | None] = mapped_column(Float)
    embedding_model: Mapped[str] = mapped_column(String(200), default="minilm-l6")


class CacheEntry(Base):
    """A cached answer, keyed on the normalised request within a project."""

    __tablename__ = "gateway_cache_entries"
    __table_args__ = (Index("ix_gateway_cache_entries_expires_at", "expires_at"),)

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    alias: Mapped[str] = mapped_column(String(200))
    # Requests with the same model and parameters share a scope; semantic hits stay inside it.
    scope: Mapped[str] = mapped_column(String(64), index=True)
    prompt: Mapped[str] = mapped_column(String(20000), default="")
    embedding: Mapped[list[float] | None] = mapped_column(JSON)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
