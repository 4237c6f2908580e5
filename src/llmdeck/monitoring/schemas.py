"""Shapes of feedback, alert rules and events, drift reports and retention settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

# Every score is on one scale, so that averages and alert thresholds mean one thing: 0 is
# bad, 1 is good, and a thumb is 0 (down) or 1 (up). A 1-to-5 rating could not be told
# apart from a 0-to-1 score of 1, so other scales are converted by the sender.
SCORE_RANGE = "a number from 0 (bad) to 1 (good)"
_HEX = frozenset("0123456789abcdefABCDEF")


def is_hex_id(value: str, digits: int) -> bool:
    """A W3C trace (32 digits) or span (16) id: hexadecimal, and not all zero (invalid)."""
    return len(value) == digits and set(value) <= _HEX and set(value) != {"0"}


class FeedbackCreate(BaseModel):
    """One judgement of a trace: a score or a thumb (not both), with or without a comment."""

    name: str = Field(
        default="user", min_length=1, max_length=100, description="What is judged, e.g. user."
    )
    score: float | None = Field(
        default=None,
        description="From 0 (bad) to 1 (good); convert other scales, e.g. 1-5 stars as "
        "(stars - 1) / 4. Not with thumbs.",
        json_schema_extra={"minimum": 0, "maximum": 1},
    )
    thumbs: Literal["up", "down"] | None = Field(
        default=None, description="up (counts as 1) or down (counts as 0). Not with score."
    )
    comment: str | None = Field(default=None, max_length=10_000)
    span_id: str | None = Field(
        default=None, description="One span of the trace: 16 hexadecimal digits."
    )
    author: str | None = Field(default=None, max_length=200)
    source: Literal["api", "sdk", "console"] = "api"

    @field_validator("score")
    @classmethod
    def _in_range(cls, score: float | None) -> float | None:
        if score is not None and not 0 <= score <= 1:  # NaN fails this too
            raise PydanticCustomError(
                "score_range",
                f"a score is {SCORE_RANGE} (convert other scales, e.g. 1-5 stars as "
                "(stars - 1) / 4)",
            )
        return score

    @field_validator("span_id")
    @classmethod
    def _span_id(cls, span_id: str | None) -> str | None:
        if span_id is not None and not is_hex_id(span_id, 16):
            raise PydanticCustomError("span_id", "a span id is 16 hexadecimal digits, not all zero")
        return span_id.lower() if span_id else span_id

    @field_validator("thumbs")
    @classmethod
    def _not_with_score(cls, thumbs: str | None, info: ValidationInfo) -> str | None:
        # Feedback is one value, as a Langfuse score is: a thumb would silently replace the
        # score (or the score the thumb) in the averages.
        if thumbs is not None and info.data.get("score") is not None:
            raise PydanticCustomError(
                "score_and_thumbs",
                "send a score or a thumb, not both (one value per feedback; send a second "
                "feedback for the other)",
            )
        return thumbs


class FeedbackPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    trace_id: str
    span_id: str | None
    name: str
    kind: str
    score: float | None
    comment: str | None
    source: str
    author: str | None
    created_at: datetime


class FeedbackPage(BaseModel):
    data: list[FeedbackPublic]
    next_cursor: str | None = None


class AlertRuleCreate(BaseModel):
    name: str = Field(max_length=200)
    metric: str = Field(
        description="A dashboard metric: latency_p95, error_rate, cost_per_day, "
        "feedback_score, drift_p_value, ..."
    )
    comparison: Literal[">", "<"] = ">"
    threshold: float
    window_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    webhook_url: str = Field(max_length=1000, description="Where firing and resolved go (POST).")
    secret: str | None = Field(
        default=None, min_length=16, description="HMAC key; generated when left out."
    )


class AlertRulePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    metric: str
    comparison: str
    threshold: float
    window_minutes: int
    webhook_url: str
    enabled: bool
    state: str
    last_value: float | None
    last_evaluated_at: datetime | None
    created_at: datetime


class AlertRuleCreated(AlertRulePublic):
    secret: str = Field(description="HMAC-SHA256 key of the webhook; shown only once.")


class AlertEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    rule_id: str
    state: str
    value: float | None
    threshold: float
    message: str
    delivery: str
    attempts: int
    created_at: datetime


class DriftReportPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    method: str
    baseline_count: int
    recent_count: int
    statistic: float | None
    p_value: float | None
    drifted: bool
    details: dict[str, Any]
    created_at: datetime


class DriftRequest(BaseModel):
    baseline_days: float = Field(default=7, gt=0, description="Baseline: this many days ...")
    recent_hours: float = Field(default=24, gt=0, description="... before the recent window.")
    embedding_model: str = Field(default="minilm-l6")
    max_samples: int = Field(default=200, ge=10, le=2000)
    permutations: int = Field(default=500, ge=50, le=10_000)


class RetentionPublic(BaseModel):
    retention_days: int | None = Field(description="Days spans are kept; null keeps them forever.")


class RetentionUpdate(BaseModel):
    retention_days: int | None = Field(
        le=3650, description="Days spans are kept, 1 to 3650; null keeps them forever."
    )

    @field_validator("retention_days")
    @classmethod
    def _positive(cls, days: int | None) -> int | None:
        if days is not None and days < 1:
            raise ValueError("give a number of days from 1 to 3650, or null to keep spans forever")
        return days
