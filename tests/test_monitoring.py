"""Monitoring: dashboard figures, feedback, alert webhooks (real receiver), retention."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.db import Database
from llmdeck.core.ids import new_span_id, new_trace_id
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate
from llmdeck.tracing.ingest import write_spans
from llmdeck.tracing.writer import SpanRecord


def _key(db: Database, project: str = "default", role: str = "admin") -> tuple[str, str]:
    with db.session() as session:
        target = identity.ensure_project(session, name=project)
        _, secret = identity.create_key(
            session, project=target, data=ApiKeyCreate(name="t", role=role)
        )
    return target.id, secret


@pytest.fixture
def api(db: Database, settings: Settings) -> Iterator[tuple[TestClient, Database, str]]:
    with TestClient(create_app(settings)) as http:
        project_id, secret = _key(db)
        http.headers["Authorization"] = f"Bearer {secret}"
        yield http, db, project_id


def _span(project_id: str, at: datetime, **fields) -> SpanRecord:
    defaults = dict(
        project_id=project_id,
        trace_id=new_trace_id(),
        span_id=new_span_id(),
        name="chat",
        started_at=at,
        kind="llm",
        model="m-small",
        input=[{"role": "user", "content": "hi"}],
        output="hello",
        input_tokens=10,
        output_tokens=5,
        cost=0.01,
        latency_ms=100.0,
        ttft_ms=20.0,
    )
    return SpanRecord(**{**defaults, **fields})


def _seed(db: Database, project_id: str) -> list[SpanRecord]:
    now = datetime.now(UTC)
    spans = []
    for i in range(20):  # a cheap model, fast, used by alice
        spans.append(_span(project_id, now - timedelta(minutes=i), user_id="alice", tags=["beta"]))
    for i in range(10):  # an expensive model, slow, bob, half of them failing
        spans.append(
            _span(
                project_id,
                now - timedelta(minutes=30 + i),
                model="m-large",
                cost=0.5,
                latency_ms=1000.0 + i,
                user_id="bob",
                status="error" if i % 2 else "ok",
                tags=["prod", "beta"],
            )
        )
    # A non-LLM span (a retrieval step) is not a request.
    spans.append(_span(project_id, now, kind="retriever", model=None, cost=None))
    # Outside the 1h window.
    spans.append(_span(project_id, now - timedelta(hours=3), model="m-old", cost=9.0))
    write_spans(db, spans)
    return spans


def test_dashboard_figures_and_slices(api) -> None:
    http, db, project_id = api
    _seed(db, project_id)
    summary = http.get("/api/monitoring/summary", params={"window": "1h"}).json()
    assert summary["requests"] == 30 and summary["errors"] == 5
    assert summary["error_rate"] == pytest.approx(5 / 30)
    assert summary["latency_p50"] == pytest.approx(100.0)
    assert summary["latency_p99"] > 1000
    assert summary["cost"] == pytest.approx(20 * 0.01 + 10 * 0.5)
    assert summary["input_tokens"] == 300 and summary["ttft_p50"] == pytest.approx(20.0)

    top_models = http.get("/api/monitoring/top", params={"by": "model", "window": "1h"}).json()
    assert [t["group"] for t in top_models] == ["m-large", "m-small"]
    top_users = http.get("/api/monitoring/top", params={"by": "user", "window": "24h"}).json()
    assert top_users[0]["group"] == "(none)" and top_users[0]["cost"] == pytest.approx(9.0)
    assert top_users[1] == {
        "group": "bob",
        "cost": pytest.approx(5.0),
        "requests": 10,
        "tokens": 150,
    }

    series = http.get(
        "/api/monitoring/timeseries", params={"window": "1h", "group_by": "model"}
    ).json()
    assert len(series["times"]) == 60 and series["bucket_seconds"] == 60
    by_group = {s["group"]: s["points"] for s in series["series"]}
    assert set(by_group) == {"m-small", "m-large"}
    assert sum(p["requests"] for p in by_group["m-large"]) == 10
    assert sum(p["errors"] for p in by_group["m-large"]) == 5

    tagged = http.get("/api/monitoring/summary", params={"window": "1h", "tag": "prod"}).json()
    assert tagged["requests"] == 10
    by_tag = http.get(
        "/api/monitoring/timeseries", params={"window": "1h", "group_by": "tag"}
    ).json()
    assert {s["group"]: sum(p["requests"] for p in s["points"]) for s in by_tag["series"]} == {
        "beta": 30,
        "prod": 10,
    }
    bad = http.get("/api/monitoring/summary", params={"window": "2y"})
    assert bad.status_code == 400 and "window" in bad.json()["error"]["message"]


def test_a_call_traced_by_the_app_and_the_gateway_counts_once(api) -> None:
    http, db, project_id = api
    now = datetime.now(UTC)
    trace = new_trace_id()
    root = _span(project_id, now, trace_id=trace, kind="chain", user_id="carol", tags=["app"])
    # The SDK's span of a call sent to the gateway (no cost: the gateway prices it) ...
    client = _span(
        project_id,
        now,
        trace_id=trace,
        parent_span_id=root.span_id,
        cost=None,
        latency_ms=130.0,
        user_id="carol",
        tags=["app"],
        attributes={"llmdeck.gateway": True},
    )
    # ... and the gateway's span of the same call, its child, which knows no end user.
    gateway = _span(
        project_id, now, trace_id=trace, parent_span_id=client.span_id, cost=0.02, user_id=None
    )
    # A call the app made elsewhere: its only span counts.
    direct = _span(project_id, now, user_id="carol", tags=["app"], cost=0.5)
    # Another project's gateway span under this project's client span: each project counts
    # the call it recorded.
    other_id, _ = _key(db, project="other")
    lone = _span(project_id, now, user_id="dave", cost=None, latency_ms=90.0)
    elsewhere = _span(other_id, now, trace_id=lone.trace_id, parent_span_id=lone.span_id)
    write_spans(db, [root, client, gateway, direct, lone, elsewhere])

    summary = http.get("/api/monitoring/summary", params={"window": "1h"}).json()
    assert summary["requests"] == 3
    assert summary["input_tokens"] == 30 and summary["cost"] == pytest.approx(0.52)
    assert summary["latency_p50"] == pytest.approx(100.0)  # the gateway's, not the app's 130
    users = http.get("/api/monitoring/top", params={"by": "user", "window": "1h"}).json()
    assert {u["group"]: u["requests"] for u in users} == {"carol": 2, "dave": 1}
    carol = http.get("/api/monitoring/summary", params={"window": "1h", "user": "carol"}).json()
    assert carol["requests"] == 2 and carol["cost"] == pytest.approx(0.52)
    tagged = http.get("/api/monitoring/summary", params={"window": "1h", "tag": "app"}).json()
    assert tagged["requests"] == 2


def test_feedback_from_the_api_is_aggregated(api) -> None:
    http, db, project_id = api
    spans = _seed(db, project_id)
    trace = spans[0].trace_id
    assert http.post(f"/api/traces/{trace}/feedback", json={"thumbs": "up"}).status_code == 201
    assert http.post(f"/api/traces/{trace}/feedback", json={"thumbs": "down"}).status_code == 201
    made = http.post(
        f"/api/traces/{trace}/feedback",
        json={"score": 0.8, "name": "accuracy", "comment": "mostly right"},
    )
    assert made.status_code == 201 and made.json()["kind"] == "score"
    empty = http.post(f"/api/traces/{trace}/feedback", json={})
    assert empty.status_code == 400
    listed = http.get(f"/api/traces/{trace}/feedback").json()["data"]
    assert [f["kind"] for f in listed] == ["score", "thumbs", "thumbs"]
    summary = http.get("/api/monitoring/summary", params={"window": "1h"}).json()
    assert summary["feedback_count"] == 3
    assert (summary["thumbs_up"], summary["thumbs_down"]) == (1, 1)
    assert summary["feedback_score"] == pytest.approx((1 + 0 + 0.8) / 3)
    # A viewer can read but not give feedback.
    _, viewer = _key(db, role="viewer")
    refused = http.post(
        f"/api/traces/{trace}/feedback",
        json={"thumbs": "up"},
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert refused.status_code == 403


class _Receiver:
    """A real webhook receiver on loopback that fails its first `failures` deliveries."""

    def __init__(self, failures: int):
        self.failures = failures
        self.received: list[tuple[dict, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.failures > 0:
                    outer.failures -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_alert_fires_to_a_signed_webhook_with_retries_and_resolves(api) -> None:
    http, db, project_id = api
    receiver = _Receiver(failures=1)
    try:
        secret = "s" * 32
        made = http.post(
            "/api/monitoring/alert-rules",
            json={
                "name": "slow answers",
                "metric": "latency_p95",
                "threshold": 500,
                "window_minutes": 60,
                "webhook_url": receiver.url,
                "secret": secret,
            },
        )
        assert made.status_code == 201 and made.json()["secret"] == secret
        rule_id = made.json()["id"]
        assert "secret" not in http.get("/api/monitoring/alert-rules").json()[0]

        # No traffic: nothing fires.
        assert http.post("/api/monitoring/alert-rules/evaluate").json() == []
        _seed(db, project_id)  # p95 latency over the hour is about 1000 ms
        fired = http.post("/api/monitoring/alert-rules/evaluate").json()
        assert [e["state"] for e in fired] == ["firing"]
        assert fired[0]["delivery"] == "delivered" and fired[0]["attempts"] == 2
        # Still firing: no second event.
        assert http.post("/api/monitoring/alert-rules/evaluate").json() == []

        ((headers, body),) = receiver.received
        payload = json.loads(body)
        assert payload["state"] == "firing" and payload["rule"]["id"] == rule_id
        assert payload["value"] > 500
        timestamp = headers["X-Llmdeck-Timestamp"]
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        assert headers["X-Llmdeck-Signature"] == "sha256=" + expected.hexdigest()

        # Raising the bar resolves it (the rule is replaced by a stricter-threshold one).
        with db.session() as session:
            from llmdeck.monitoring.models import AlertRule

            session.get(AlertRule, rule_id).threshold = 5000
        resolved = http.post("/api/monitoring/alert-rules/evaluate").json()
        assert [e["state"] for e in resolved] == ["resolved"]
        history = http.get("/api/monitoring/alert-events").json()
        assert [e["state"] for e in history] == ["resolved", "firing"]
        assert len(receiver.received) == 2
    finally:
        receiver.close()


def test_alert_delivery_gives_up_after_retries(api) -> None:
    http, db, project_id = api
    receiver = _Receiver(failures=100)
    try:
        http.post(
            "/api/monitoring/alert-rules",
            json={
                "name": "errors",
                "metric": "error_rate",
                "threshold": 0.1,
                "webhook_url": receiver.url,
            },
        )
        _seed(db, project_id)
        from llmdeck.monitoring import alerts

        app_runtime = http.app.state.runtime
        ids = alerts.evaluate(app_runtime.db, app_runtime.settings, attempts=3, backoff=0.01)
        assert len(ids) == 1
        (event,) = http.get("/api/monitoring/alert-events").json()
        assert event["delivery"] == "failed" and event["attempts"] == 3
    finally:
        receiver.close()


def test_retention_purges_old_spans(api) -> None:
    http, db, project_id = api
    now = datetime.now(UTC)
    old = _span(project_id, now - timedelta(days=10))
    recent = _span(project_id, now - timedelta(days=1))
    write_spans(db, [old, recent])
    assert http.get("/api/monitoring/retention").json() == {"retention_days": None}
    assert http.post("/api/monitoring/retention/purge").json() == {"deleted_spans": 0}
    assert http.put("/api/monitoring/retention", json={"retention_days": 7}).json() == {
        "retention_days": 7
    }
    assert http.post("/api/monitoring/retention/purge").json() == {"deleted_spans": 1}
    assert http.get(f"/api/traces/{old.trace_id}").status_code == 404
    assert http.get(f"/api/traces/{recent.trace_id}").status_code == 200
    zero = http.put("/api/monitoring/retention", json={"retention_days": 0})
    assert zero.status_code == 400 and "null to keep spans forever" in zero.text


def test_cli_retention_purge_and_summary(db: Database) -> None:
    from typer.testing import CliRunner

    from llmdeck.cli.main import app

    with db.session() as session:
        project = identity.ensure_project(session, name="default")
    now = datetime.now(UTC)
    old, recent = _span(project.id, now - timedelta(days=40)), _span(project.id, now)
    write_spans(db, [old, recent])
    runner = CliRunner()
    assert runner.invoke(app, ["monitoring", "retention", "30"]).exit_code == 0
    purged = runner.invoke(app, ["monitoring", "purge"])
    assert purged.exit_code == 0 and "Deleted 1 spans" in purged.output
    summary = runner.invoke(app, ["monitoring", "summary", "--window", "1h", "--json"])
    assert json.loads(summary.output)["requests"] == 1


def test_drift_and_feedback_rules_fire(api) -> None:
    from llmdeck.monitoring.models import DriftReport

    http, db, project_id = api
    receiver = _Receiver(failures=0)
    try:
        for metric, comparison, threshold in (
            ("drift_p_value", "<", 0.05),
            ("feedback_score", "<", 0.5),
        ):
            rule = {
                "name": metric,
                "metric": metric,
                "comparison": comparison,
                "threshold": threshold,
                "webhook_url": receiver.url,
            }
            assert http.post("/api/monitoring/alert-rules", json=rule).status_code == 201
        with db.session() as session:
            session.add(
                DriftReport(
                    project_id=project_id,
                    method="mmd-rbf-permutation",
                    baseline_count=40,
                    recent_count=40,
                    statistic=0.2,
                    p_value=0.002,
                    drifted=True,
                    details={},
                )
            )
        trace = _seed(db, project_id)[0].trace_id
        http.post(f"/api/traces/{trace}/feedback", json={"thumbs": "down"})
        fired = http.post("/api/monitoring/alert-rules/evaluate").json()
        assert sorted(e["message"].split(":")[0] for e in fired) == [
            "drift_p_value",
            "feedback_score",
        ]
        assert len(receiver.received) == 2
    finally:
        receiver.close()
