"""Alert rules: a dashboard metric over a window against a threshold, delivered to webhooks.

A rule fires when its metric crosses the threshold and resolves when it comes back; each
change is an event in the history and one signed POST to the rule's webhook:

    X-Llmdeck-Timestamp: <unix seconds>
    X-Llmdeck-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the rule's secret>

Deliveries are retried with backoff on network errors and 5xx/429 answers. The secret is
stored encrypted and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets as stdlib_secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmdeck.core import secrets
from llmdeck.core.db import Database
from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.core.settings import Settings
from llmdeck.monitoring import metrics
from llmdeck.monitoring.models import AlertEvent, AlertRule, DriftReport
from llmdeck.monitoring.schemas import AlertRuleCreate

log = logging.getLogger(__name__)
ALERT_METRICS = (*metrics.METRICS, "drift_p_value")
SIGNATURE_HEADER = "X-Llmdeck-Signature"
TIMESTAMP_HEADER = "X-Llmdeck-Timestamp"


def create_rule(
    session: Session, settings: Settings, *, project_id: str, data: AlertRuleCreate
) -> tuple[AlertRule, str]:
    """A new rule and its webhook secret (returned once, stored encrypted)."""
    if data.metric not in ALERT_METRICS:
        raise InvalidRequest(
            f"Unknown metric {data.metric!r}; choose one of: {', '.join(ALERT_METRICS)}.",
            param="metric",
        )
    url = urlparse(data.webhook_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise InvalidRequest("webhook_url must be an http(s) URL.", param="webhook_url")
    secret = data.secret or stdlib_secrets.token_urlsafe(32)
    rule = AlertRule(
        project_id=project_id,
        name=data.name,
        metric=data.metric,
        comparison=data.comparison,
        threshold=data.threshold,
        window_minutes=data.window_minutes,
        webhook_url=data.webhook_url,
        secret_encrypted=secrets.encrypt(settings, secret),
        enabled=True,
        state="ok",
    )
    session.add(rule)
    session.flush()
    return rule, secret


def list_rules(session: Session, *, project_id: str) -> list[AlertRule]:
    return list(
        session.scalars(
            select(AlertRule).where(AlertRule.project_id == project_id).order_by(AlertRule.id)
        )
    )


def delete_rule(session: Session, *, project_id: str, rule_id: str) -> None:
    rule = session.get(AlertRule, rule_id)
    if rule is None or rule.project_id != project_id:
        raise NotFound(f"No alert rule {rule_id!r} in this project.", param="rule_id")
    session.delete(rule)


def list_events(session: Session, *, project_id: str, limit: int = 100) -> list[AlertEvent]:
    return list(
        session.scalars(
            select(AlertEvent)
            .where(AlertEvent.project_id == project_id)
            .order_by(AlertEvent.created_at.desc(), AlertEvent.id.desc())
            .limit(limit)
        )
    )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _value(session: Session, rule: AlertRule, now: datetime) -> float | None:
    if rule.metric == "drift_p_value":
        since = now - timedelta(minutes=rule.window_minutes)
        report = session.scalars(
            select(DriftReport)
            .where(DriftReport.project_id == rule.project_id, DriftReport.created_at >= since)
            .order_by(DriftReport.created_at.desc())
            .limit(1)
        ).first()
        return report.p_value if report is not None else None
    return metrics.metric_value(
        session,
        project_id=rule.project_id,
        metric=rule.metric,
        minutes=rule.window_minutes,
        now=now,
    )


@dataclass
class Delivery:
    event_id: str
    url: str
    secret: str
    body: bytes


def evaluate(
    db: Database,
    settings: Settings,
    *,
    project_id: str | None = None,
    now: datetime | None = None,
    attempts: int = 4,
    backoff: float = 0.5,
) -> list[str]:
    """Check every enabled rule, record state changes and deliver them; the new event ids."""
    now = now or datetime.now(UTC)
    deliveries: list[Delivery] = []
    with db.session() as session:
        query = select(AlertRule).where(AlertRule.enabled.is_(True))
        if project_id:
            query = query.where(AlertRule.project_id == project_id)
        for rule in session.scalars(query):
            value = _value(session, rule, now)
            rule.last_value, rule.last_evaluated_at = value, now
            breached = value is not None and (
                value > rule.threshold if rule.comparison == ">" else value < rule.threshold
            )
            state = "firing" if breached else "ok"
            if state == rule.state:
                continue
            rule.state = state
            shown = "no data" if value is None else f"{value:.4g}"
            verb = "crossed" if breached else "is back within"
            message = (
                f"{rule.name}: {rule.metric} over {rule.window_minutes} min is {shown}, "
                f"{verb} the threshold {rule.comparison} {rule.threshold:g}."
            )
            event = AlertEvent(
                rule_id=rule.id,
                project_id=rule.project_id,
                state="firing" if breached else "resolved",
                value=value,
                threshold=rule.threshold,
                message=message,
                delivery="pending",
                attempts=0,
            )
            session.add(event)
            session.flush()
            payload = {
                "event_id": event.id,
                "rule": {"id": rule.id, "name": rule.name, "metric": rule.metric},
                "state": event.state,
                "value": value,
                "threshold": rule.threshold,
                "comparison": rule.comparison,
                "window_minutes": rule.window_minutes,
                "message": message,
                "at": now.isoformat(),
            }
            deliveries.append(
                Delivery(
                    event.id,
                    rule.webhook_url,
                    secrets.decrypt(settings, rule.secret_encrypted),
                    json.dumps(payload).encode(),
                )
            )
    for delivery in deliveries:
        tries, ok = deliver(delivery, attempts=attempts, backoff=backoff)
        with db.session() as session:
            event = session.get(AlertEvent, delivery.event_id)
            if event is not None:
                event.attempts, event.delivery = tries, "delivered" if ok else "failed"
    return [d.event_id for d in deliveries]


def deliver(delivery: Delivery, *, attempts: int = 4, backoff: float = 0.5) -> tuple[int, bool]:
    """POST one signed event, retrying; (attempts made, delivered)."""
    import httpx

    for attempt in range(1, attempts + 1):
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(delivery.secret, timestamp, delivery.body),
        }
        try:
            response = httpx.post(delivery.url, content=delivery.body, headers=headers, timeout=10)
            if response.status_code < 300:
                return attempt, True
            if response.status_code < 500 and response.status_code != 429:
                log.warning("alert webhook refused the event: HTTP %s", response.status_code)
                return attempt, False
            log.warning("alert webhook answered HTTP %s; retrying", response.status_code)
        except httpx.HTTPError as exc:
            log.warning("alert webhook unreachable (%s); retrying", type(exc).__name__)
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    return attempts, False
