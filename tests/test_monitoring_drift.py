"""Drift: a synthetic topic shift is detected on embeddings; a no-shift control is not."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.ids import new_span_id, new_trace_id
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate
from llmdeck.monitoring.drift import mmd_test
from llmdeck.runtime import prepare_database
from llmdeck.tracing.ingest import write_spans
from llmdeck.tracing.writer import SpanRecord

COOKING = [
    f"How long should I {verb} {food} {how}?"
    for verb, food, how in itertools.product(
        ["bake", "roast", "simmer", "grill", "steam"],
        ["chicken thighs", "a salmon fillet", "potatoes", "carrots", "sourdough bread"],
        ["in the oven", "for dinner tonight", "without drying it out"],
    )
]
FINANCE = [
    f"Should I {verb} {asset} {how}?"
    for verb, asset in itertools.product(
        ["buy", "sell", "rebalance", "hedge", "short"],
        ["index funds", "government bonds", "tech stocks", "my pension", "gold"],
    )
    for how in ["before the interest rate decision", "to lower my tax bill", "this quarter"]
]


def test_mmd_separates_shifted_gaussians_but_not_equal_ones() -> None:
    rng = np.random.default_rng(1)
    same = mmd_test(rng.normal(size=(60, 8)), rng.normal(size=(60, 8)), permutations=200)
    shifted = mmd_test(rng.normal(size=(60, 8)), rng.normal(0.8, 1, size=(60, 8)), permutations=200)
    assert same[1] > 0.05 and shifted[1] < 0.01 and shifted[0] > same[0]


def _seed(db, project_id: str, baseline: list[str], recent: list[str], now: datetime) -> None:
    spans = []
    for i, text in enumerate(baseline):
        at = now - timedelta(days=2, minutes=i)
        spans.append((text, at, "Here is how." if i % 5 else "I'm sorry, I can't help."))
    for i, text in enumerate(recent):
        spans.append((text, now - timedelta(hours=1, minutes=i), "Here is how."))
    write_spans(
        db,
        [
            SpanRecord(
                project_id=project_id,
                trace_id=new_trace_id(),
                span_id=new_span_id(),
                name="chat",
                kind="llm",
                started_at=at,
                input=[{"role": "user", "content": text}],
                output=output,
            )
            for text, at, output in spans
        ],
    )


@pytest.mark.slow
def test_topic_shift_is_detected_and_a_control_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMDECK_DRIFT_INTERVAL", "0")  # on demand only: no scheduled report
    get_settings.cache_clear()
    settings = get_settings()
    db = prepare_database(settings)
    rng = random.Random(7)
    pool = COOKING[:]
    rng.shuffle(pool)
    now = datetime.now(UTC)
    with db.session() as session:
        shifted = identity.ensure_project(session, name="shifted")
        control = identity.ensure_project(session, name="control")
        _, key = identity.create_key(
            session, project=shifted, data=ApiKeyCreate(name="s", role="builder")
        )
        _, control_key = identity.create_key(
            session, project=control, data=ApiKeyCreate(name="c", role="builder")
        )
    _seed(db, shifted.id, pool[:40], rng.sample(FINANCE, 40), now)
    _seed(db, control.id, pool[:40], pool[40:], now)  # same topic, different questions

    body = {"baseline_days": 7, "recent_hours": 24, "permutations": 300}
    with TestClient(create_app(settings)) as http:
        drift = http.post(
            "/api/monitoring/drift-reports", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        calm = http.post(
            "/api/monitoring/drift-reports",
            json=body,
            headers={"Authorization": f"Bearer {control_key}"},
        )
        assert drift.status_code == 201, drift.text
        report, control_report = drift.json(), calm.json()
        assert report["baseline_count"] == 40 and report["recent_count"] == 40
        assert report["drifted"] and report["p_value"] < 0.01
        assert not control_report["drifted"] and control_report["p_value"] > 0.05
        assert report["statistic"] > control_report["statistic"]
        # Outputs: one refusal in five before, none now.
        refusals = report["details"]["refusal_rate"]
        assert refusals["baseline"] == pytest.approx(0.2) and refusals["recent"] == 0.0
        assert (
            report["details"]["output_length"]["recent_mean"]
            < report["details"]["output_length"]["baseline_mean"]
        )
        # The embedding calls went through the gateway, so they are traced.
        traces = http.get(
            "/api/traces", params={"model": "minilm-l6"}, headers={"Authorization": f"Bearer {key}"}
        ).json()["data"]
        assert traces
        listed = http.get(
            "/api/monitoring/drift-reports", headers={"Authorization": f"Bearer {key}"}
        ).json()
        assert [r["id"] for r in listed] == [report["id"]]


@pytest.mark.slow
def test_scheduled_drift_report_fires_an_alert_without_a_manual_call(
    database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With short intervals the server's own loop reports the topic shift and alerts on it."""
    import json
    import time

    from llmdeck.core.settings import Settings
    from llmdeck.monitoring import alerts, drift
    from llmdeck.monitoring.schemas import AlertRuleCreate
    from tests.test_monitoring import _Receiver

    intervals = {"ALERT_INTERVAL": "0.5", "DRIFT_INTERVAL": "3", "DRIFT_MIN_CALLS": "30"}
    for name, value in intervals.items():
        monkeypatch.setenv(f"LLMDECK_{name}", value)
    get_settings.cache_clear()
    settings: Settings = get_settings()
    assert (settings.alert_interval, settings.drift_interval) == (0.5, 3.0)
    db = prepare_database(settings)
    rng = random.Random(11)
    pool = COOKING[:]
    rng.shuffle(pool)
    now = datetime.now(UTC)
    receiver = _Receiver(failures=0)
    try:
        with db.session() as session:
            shifted = identity.ensure_project(session, name="shifted")
            quiet = identity.ensure_project(session, name="quiet")
            alerts.create_rule(
                session,
                settings,
                project_id=shifted.id,
                data=AlertRuleCreate(
                    name="topic drift",
                    metric="drift_p_value",
                    comparison="<",
                    threshold=0.05,
                    webhook_url=receiver.url,
                ),
            )
        _seed(db, shifted.id, pool[:40], rng.sample(FINANCE, 40), now)
        _seed(db, quiet.id, pool[:10], rng.sample(FINANCE, 10), now)  # under the floor

        with TestClient(create_app(settings)):  # no request: the loop does it all
            deadline = time.monotonic() + 180
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.2)
        assert receiver.received, "no drift alert was delivered"
        payload = json.loads(receiver.received[0][1])
        assert payload["state"] == "firing" and payload["rule"]["metric"] == "drift_p_value"
        assert payload["value"] < 0.05
        with db.session() as session:
            (report,) = drift.list_reports(session, project_id=shifted.id)
            assert report.drifted and report.baseline_count == 40 and report.recent_count == 40
            assert drift.list_reports(session, project_id=quiet.id) == []
            # The next round finds the report fresh and makes no other.
            assert drift.due_projects(session, settings=settings, now=datetime.now(UTC)) == []
    finally:
        receiver.close()
