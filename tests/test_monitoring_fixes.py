"""Monitoring and feedback as a user meets them: one value per feedback, on scale 0..1, only
on recorded traces (waiting for spans on their way), figures of application traffic that
credit a trace's end user and honour every filter, and forms that say what is wrong."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.db import Database
from llmdeck.core.ids import new_span_id, new_trace_id
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import UserCreate
from llmdeck.monitoring import feedback
from llmdeck.monitoring.models import Feedback
from llmdeck.tracing.ingest import write_spans
from tests.test_monitoring import _key, _span

PASSWORD = "correct horse battery"


@pytest.fixture
def api(db: Database, settings: Settings) -> Iterator[tuple[TestClient, Database, str]]:
    with TestClient(create_app(settings)) as http:
        project_id, secret = _key(db)
        http.headers["Authorization"] = f"Bearer {secret}"
        yield http, db, project_id


@pytest.fixture
def quick_404(monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing traces are waited for 0.3 s rather than 5 (what is waited for is tested apart)."""
    monkeypatch.setattr(feedback, "TRACE_WAIT", 0.3)


def _error(response) -> str:
    return response.json()["error"]["message"]


# 1. A score and a thumb together


def test_a_score_with_a_thumb_is_refused_and_nothing_is_stored(api) -> None:
    http, db, project_id = api
    trace = _span(project_id, datetime.now(UTC))
    write_spans(db, [trace])
    both = http.post(
        f"/api/traces/{trace.trace_id}/feedback",
        json={"score": 0.9, "thumbs": "up", "comment": "good"},
    )
    assert both.status_code == 400
    assert "score or a thumb, not both" in _error(both)
    assert both.json()["error"]["param"] == "thumbs"
    assert http.get(f"/api/traces/{trace.trace_id}/feedback").json()["data"] == []
    # Each on its own is taken, and kept as sent.
    for body, kind, score in (({"score": 0.9}, "score", 0.9), ({"thumbs": "up"}, "thumbs", 1.0)):
        made = http.post(f"/api/traces/{trace.trace_id}/feedback", json=body)
        assert made.status_code == 201 and (made.json()["kind"], made.json()["score"]) == (
            kind,
            score,
        )


# 2. Ids that are not hex, and traces that are not recorded


def test_ids_that_cannot_be_trace_or_span_ids_are_400(api) -> None:
    http, db, project_id = api
    trace = _span(project_id, datetime.now(UTC))
    write_spans(db, [trace])
    for bad in ("z" * 32, "0" * 32, "abc"):
        refused = http.post(f"/api/traces/{bad}/feedback", json={"score": 1})
        assert refused.status_code == 400, bad
        assert "32 hexadecimal digits" in _error(refused)
    for span_id in ("nonexistentspan", "0" * 16, "g" * 16):
        refused = http.post(
            f"/api/traces/{trace.trace_id}/feedback", json={"score": 1, "span_id": span_id}
        )
        assert refused.status_code == 400 and "16 hexadecimal digits" in _error(refused)
    upper = http.post(
        f"/api/traces/{trace.trace_id.upper()}/feedback",
        json={"score": 1, "span_id": trace.span_id.upper()},
    )
    assert upper.status_code == 201
    assert (upper.json()["trace_id"], upper.json()["span_id"]) == (trace.trace_id, trace.span_id)


def test_a_trace_not_recorded_in_the_project_is_404_and_not_counted(api, quick_404) -> None:
    http, db, project_id = api
    other_id, _ = _key(db, project="other")
    mine, theirs = _span(project_id, datetime.now(UTC)), _span(other_id, datetime.now(UTC))
    write_spans(db, [mine, theirs])
    for trace_id in (new_trace_id(), theirs.trace_id):
        missing = http.post(f"/api/traces/{trace_id}/feedback", json={"score": 1})
        assert missing.status_code == 404
        assert "is recorded in this project" in _error(missing)
    unknown_span = http.post(
        f"/api/traces/{mine.trace_id}/feedback", json={"score": 1, "span_id": new_span_id()}
    )
    assert unknown_span.status_code == 404 and "span" in _error(unknown_span)
    summary = http.get("/api/monitoring/summary", params={"window": "1h"}).json()
    assert summary["feedback_count"] == 0 and summary["feedback_score"] is None


def test_feedback_right_after_the_call_waits_for_its_spans(api) -> None:
    """The gateway's span is still in this server's writer; another's arrives a second late."""
    http, db, project_id = api
    writer = http.app.state.runtime.writer
    queued = _span(project_id, datetime.now(UTC))

    def slow_span():  # the writer makes a gateway span off the request path, like this
        time.sleep(0.5)
        return queued

    writer.submit(slow_span)
    made = http.post(f"/api/traces/{queued.trace_id}/feedback", json={"thumbs": "up"})
    assert made.status_code == 201, made.text

    late = _span(project_id, datetime.now(UTC))  # another replica's writer, an SDK's exporter
    timer = threading.Timer(1.0, write_spans, [db, [late]])
    timer.start()
    started = time.monotonic()
    made = http.post(
        f"/api/traces/{late.trace_id}/feedback", json={"score": 0.5, "span_id": late.span_id}
    )
    timer.join()
    assert made.status_code == 201, made.text
    assert 0.9 < time.monotonic() - started < feedback.TRACE_WAIT


def test_feedback_waiting_for_traces_leaves_the_server_free(api, monkeypatch) -> None:
    """60 feedback calls on traces that never come wait together, holding no server thread:
    the API answers others meanwhile (sync endpoints run on a pool of 40 threads)."""
    http, _, _ = api
    monkeypatch.setattr(feedback, "TRACE_WAIT", 3.0)
    with ThreadPoolExecutor(60) as pool:
        started = time.monotonic()
        waiting = [
            pool.submit(http.post, f"/api/traces/{new_trace_id()}/feedback", json={"score": 1})
            for _ in range(60)
        ]
        time.sleep(0.5)
        asked = time.monotonic()
        health, traces = http.get("/api/health"), http.get("/api/traces")
        answered_in = time.monotonic() - asked
        assert answered_in < 1.0, f"other requests waited {answered_in:.1f} s"
        assert not any(w.done() for w in waiting), "the feedback calls were still waiting"
        assert health.status_code == 200 and traces.status_code == 200
        assert [w.result().status_code for w in waiting] == [404] * 60
    assert time.monotonic() - started >= feedback.TRACE_WAIT


# 3. One scale, and the same filters as the other figures


def test_scores_are_from_0_to_1_and_the_mean_is_of_those(api) -> None:
    http, db, project_id = api
    now = datetime.now(UTC)
    alice = _span(project_id, now, user_id="alice", model="m-small")
    bob = _span(project_id, now, user_id="bob", model="m-large")
    write_spans(db, [alice, bob])
    for score in (1e308, 4, -0.1, 1.5):
        refused = http.post(f"/api/traces/{alice.trace_id}/feedback", json={"score": score})
        assert refused.status_code == 400, score
        assert "from 0 (bad) to 1 (good)" in _error(refused)
    nan = http.post(
        f"/api/traces/{alice.trace_id}/feedback",
        content='{"score": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code == 400
    sent = [
        (alice, {"thumbs": "up"}),
        (alice, {"score": 0.5, "name": "accuracy"}),
        (bob, {"thumbs": "down"}),
        (bob, {"comment": "slow"}),
    ]
    for span, body in sent:
        assert http.post(f"/api/traces/{span.trace_id}/feedback", json=body).status_code == 201
    # A score stored before scores were bounded stays listed but out of the mean.
    with db.session() as session:
        session.add(Feedback(project_id=project_id, trace_id=bob.trace_id, kind="score", score=4.0))

    def figures(**params) -> dict:
        return http.get("/api/monitoring/summary", params={"window": "1h", **params}).json()

    everything = figures()
    assert everything["feedback_count"] == 5
    assert everything["feedback_score"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert everything["feedback_by_name"] == {
        "accuracy": {"count": 1, "score": 0.5},
        "user": {"count": 2, "score": 0.5},
    }
    of_alice = figures(user="alice")
    assert (of_alice["requests"], of_alice["feedback_count"]) == (1, 2)
    assert of_alice["feedback_score"] == pytest.approx(0.75)
    assert (of_alice["thumbs_up"], of_alice["thumbs_down"]) == (1, 0)
    large = figures(model="m-large")
    assert (large["feedback_count"], large["thumbs_down"], large["feedback_score"]) == (3, 1, 0)
    nobody = figures(user="nobody")
    assert nobody["requests"] == 0 and nobody["feedback_count"] == 0
    assert nobody["feedback_score"] is None and nobody["feedback_by_name"] == {}


# 4. The end user of an OpenTelemetry app's root span


def _otlp(trace_id: str, spans: list[tuple[str, str | None, str, dict]]) -> str:
    now = time.time_ns()

    def attribute(key: str, value) -> dict:
        kind = "doubleValue" if isinstance(value, float) else "stringValue"
        return {"key": key, "value": {kind: value}}

    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [attribute("service.name", "otel-app")]},
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": trace_id,
                                    "spanId": span_id,
                                    **({"parentSpanId": parent} if parent else {}),
                                    "name": name,
                                    "startTimeUnixNano": str(now + i * 1000),
                                    "endTimeUnixNano": str(now + i * 1000 + 50_000_000),
                                    "attributes": [attribute(k, v) for k, v in attrs.items()],
                                }
                                for i, (span_id, parent, name, attrs) in enumerate(spans)
                            ]
                        }
                    ],
                }
            ]
        }
    )


def _chat(model: str, cost: float) -> dict:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "llmdeck.cost": cost,
    }


def test_a_calls_end_user_is_its_nearest_ancestors_or_the_roots(api) -> None:
    http, db, project_id = api
    trace = new_trace_id()
    body = _otlp(
        trace,
        [
            ("a" * 16, None, "POST /ask", {"user.id": "otel-user", "session.id": "s-9"}),
            ("b" * 16, "a" * 16, "agent step", {}),
            ("c" * 16, "b" * 16, "chat gpt-x", _chat("gpt-x", 0.25)),
            ("d" * 16, "a" * 16, "chat gpt-y", _chat("gpt-y", 0.5)),
        ],
    )
    stored = http.post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
    assert stored.status_code == 200, stored.text
    now = datetime.now(UTC)
    # An SDK app: its request span names the user; under it, the SDK's span of a call sent
    # to the gateway, and the gateway's span of that call (the one counted), knowing no one.
    sdk_trace = new_trace_id()
    root = _span(project_id, now, trace_id=sdk_trace, kind="chain", user_id="sdk-user")
    step = _span(project_id, now, trace_id=sdk_trace, kind="chain", parent_span_id=root.span_id)
    client = _span(
        project_id, now, trace_id=sdk_trace, parent_span_id=step.span_id, cost=None, user_id=None
    )
    gateway = _span(project_id, now, trace_id=sdk_trace, parent_span_id=client.span_id, cost=0.125)
    # A broken chain (the middle span is another project's, or purged): the root's user.
    orphan_trace = new_trace_id()
    orphan_root = _span(project_id, now, trace_id=orphan_trace, kind="chain", user_id="rooted")
    orphan = _span(
        project_id, now, trace_id=orphan_trace, parent_span_id=new_span_id(), cost=0.0625
    )
    write_spans(db, [root, step, client, gateway, orphan_root, orphan])

    users = http.get("/api/monitoring/top", params={"by": "user", "window": "1h"}).json()
    assert {u["group"]: u["cost"] for u in users} == {
        "otel-user": pytest.approx(0.75),
        "sdk-user": pytest.approx(0.125),
        "rooted": pytest.approx(0.0625),
    }
    mine = http.get("/api/monitoring/summary", params={"window": "1h", "user": "otel-user"})
    assert mine.json()["requests"] == 2 and mine.json()["cost"] == pytest.approx(0.75)
    # A call's own user wins over its ancestors'.
    own = _span(project_id, now, trace_id=sdk_trace, parent_span_id=root.span_id, user_id="me")
    write_spans(db, [own])
    users = http.get("/api/monitoring/top", params={"by": "user", "window": "1h"}).json()
    assert {u["group"]: u["requests"] for u in users}["me"] == 1


# 6. Drift checks the embedding model up front


def test_drift_refuses_a_model_that_is_not_an_embedding_model_before_any_data(api) -> None:
    http, db, project_id = api
    for model, says in (("nope", "does not exist"), ("smollm2-135m", "chat model")):
        refused = http.post(
            "/api/monitoring/drift-reports", json={"embedding_model": model, "recent_hours": 0.03}
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "embedding_model"
        assert says in _error(refused) and "embedding_model" in _error(refused)
    assert http.get("/api/monitoring/drift-reports").json() == []
    # The bundled embedding model, with too little data: a report that says so, and how
    # its own calls count.
    made = http.post("/api/monitoring/drift-reports", json={"recent_hours": 0.03})
    assert made.status_code == 201, made.text
    details = made.json()["details"]
    assert (
        details["note"].startswith("Too few inputs") and "source monitoring" in details["traffic"]
    )


# 7. The platform's own calls are traffic apart


def test_the_platforms_own_calls_are_left_out_of_figures_and_alerts(api) -> None:
    from tests.test_monitoring import _Receiver

    http, db, project_id = api
    now = datetime.now(UTC) - timedelta(seconds=5)
    own = [
        _span(project_id, now, kind="embedding", model="minilm-l6", cost=0.0, attributes=a)
        for a in ({"source": "monitoring"}, {"source": "eval"}, {"source": "eval-judge"})
    ]
    write_spans(db, own)
    receiver = _Receiver(failures=0)
    try:
        rule = {
            "name": "any traffic",
            "metric": "requests",
            "threshold": 0,
            "window_minutes": 1,
            "webhook_url": receiver.url,
        }
        assert http.post("/api/monitoring/alert-rules", json=rule).status_code == 201
        assert http.post("/api/monitoring/alert-rules/evaluate").json() == []  # no app traffic

        def requests(**params) -> int:
            params = {"window": "1h", **params}
            return http.get("/api/monitoring/summary", params=params).json()["requests"]

        assert requests() == 0 and requests(source="all") == 3
        assert requests(source="internal") == 3 and requests(source="monitoring") == 1
        by_source = http.get(
            "/api/monitoring/top", params={"by": "source", "window": "1h", "source": "all"}
        ).json()
        assert {t["group"] for t in by_source} == {"monitoring", "eval", "eval-judge"}

        # The application's calls count, whatever their source (OTLP, SDK, the gateway's).
        write_spans(
            db,
            [
                _span(project_id, now, attributes={"source": "gateway"}),
                _span(project_id, now, attributes={"source": "otlp"}),
                _span(project_id, now),
            ],
        )
        assert requests() == 3 and requests(source="all") == 6
        series = http.get(
            "/api/monitoring/timeseries",
            params={"window": "1h", "group_by": "source", "source": "all"},
        ).json()
        counted = {s["group"]: sum(p["requests"] for p in s["points"]) for s in series["series"]}
        assert counted == {
            "monitoring": 1,
            "eval": 1,
            "eval-judge": 1,
            "gateway": 1,
            "otlp": 1,
            "(none)": 1,
        }
        fired = http.post("/api/monitoring/alert-rules/evaluate").json()
        assert [e["state"] for e in fired] == ["firing"] and fired[0]["value"] == 3
    finally:
        receiver.close()


def _own_and_app_calls(db: Database, project_id: str) -> None:
    """Three application calls ($0.01 each) and four of the platform's own ($0.071)."""
    now = datetime.now(UTC) - timedelta(seconds=5)
    app = [_span(project_id, now, attributes={"source": s}) for s in ("gateway", "otlp")]
    app.append(_span(project_id, now, model="m-large"))
    own = [
        _span(project_id, now, model="m-large", cost=0.05, attributes={"source": "eval"}),
        _span(project_id, now, cost=0.02, attributes={"source": "eval-judge"}),
        _span(project_id, now, kind="embedding", cost=0.001, attributes={"source": "monitoring"}),
        _span(
            project_id, now, kind="embedding", cost=0.0, attributes={"source": "knowledge-ingest"}
        ),
    ]
    write_spans(db, app + own)


def test_the_summary_says_what_the_platforms_own_calls_cost(api) -> None:
    http, db, project_id = api
    _own_and_app_calls(db, project_id)

    def summary(**params) -> dict:
        return http.get("/api/monitoring/summary", params={"window": "1h", **params}).json()

    figures = summary()
    assert (figures["requests"], figures["cost"]) == (3, pytest.approx(0.03))  # the app's only
    own = figures["platform_calls"]
    assert own == {"source": "internal", "requests": 4, "cost": pytest.approx(0.071)}
    # What it points to lists those calls, and the figure is the same whatever the source.
    listed = summary(source=own["source"])
    assert (listed["requests"], listed["cost"]) == (4, pytest.approx(0.071))
    assert summary(source="all")["platform_calls"] == own
    assert summary(source="all")["cost"] == pytest.approx(0.101)
    # The other filters narrow it as they narrow the app's figures.
    large = summary(model="m-large")
    assert (large["requests"], large["platform_calls"]["requests"]) == (1, 1)
    assert large["platform_calls"]["cost"] == pytest.approx(0.05)
    # None in the window: zero, not missing.
    empty = http.get("/api/monitoring/summary", params={"window": "1h", "model": "none"}).json()
    assert empty["platform_calls"] == {"source": "internal", "requests": 0, "cost": 0.0}


def test_drift_samples_leave_out_evaluation_calls(db: Database) -> None:
    from llmdeck.monitoring import drift

    with db.session() as session:
        project = identity.ensure_project(session, name="default")
    now = datetime.now(UTC)
    app = [_span(project.id, now - timedelta(minutes=i)) for i in range(3)]
    evals = [
        _span(project.id, now - timedelta(minutes=i), attributes={"source": "eval"})
        for i in range(4)
    ]
    write_spans(db, app + evals)
    with db.session() as session:
        inputs, _ = drift.window_samples(
            session,
            project_id=project.id,
            since=now - timedelta(hours=1),
            until=now + timedelta(seconds=1),
            limit=100,
        )
        assert len(inputs) == 3


# The console


@pytest.fixture
def console(db: Database, settings: Settings) -> Iterator[tuple[TestClient, str, str]]:
    with TestClient(create_app(settings), follow_redirects=False) as client:
        with db.session() as session:
            user = identity.create_user(
                session, data=UserCreate(email="ana@example.com", password=PASSWORD)
            )
            project = identity.ensure_project(session, name="default")
            identity.add_member(session, user=user, project=project, role="admin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").text)
        client.post(
            "/sign-in",
            data={"email": "ana@example.com", "password": PASSWORD, "csrf_token": token.group(1)},
        )
        csrf = re.search(r'data-csrf="([^"]+)"', client.get("/monitoring").text).group(1)
        yield client, project.id, csrf


def _field_error(html: str, field: str) -> str:
    found = re.search(rf'<span class="field-error" id="{field}-error">([^<]*)</span>', html)
    return found.group(1) if found else ""


def test_the_alert_form_says_the_real_reason_beside_the_field(console) -> None:
    client, _, csrf = console
    typed = {
        "name": "busy",
        "metric": "requests",
        "comparison": "<",
        "threshold": "1",
        "webhook_url": "http://127.0.0.1:9/hook",
        "csrf_token": csrf,
    }
    for window, says in (("0", "Must be at least 1."), ("99999999", "Must be at most 43,200.")):
        page = client.post("/alerts", data={**typed, "window_minutes": window})
        assert page.status_code == 200
        assert _field_error(page.text, "window_minutes") == says
        assert "must be numbers" not in page.text
        # What was typed stays in the form.
        assert f'value="{window}"' in page.text and 'value="http://127.0.0.1:9/hook"' in page.text
        assert '<option value="&lt;" selected>' in page.text
    page = client.post("/alerts", data={**typed, "threshold": "lots", "window_minutes": "5"})
    assert _field_error(page.text, "threshold") == "Enter a number."
    page = client.post("/alerts", data={**typed, "webhook_url": "ftp://x", "window_minutes": "5"})
    assert "http(s) URL" in _field_error(page.text, "webhook_url")
    assert "No alert rules yet." in client.get("/alerts").text
    made = client.post("/alerts", data={**typed, "window_minutes": "5"})
    assert "shown only now" in made.text


def test_console_feedback_says_what_is_wrong_and_the_dashboard_credits_the_root_user(
    console, db: Database
) -> None:
    client, project_id, csrf = console
    now = datetime.now(UTC) - timedelta(minutes=1)
    trace = new_trace_id()
    root = _span(project_id, now, trace_id=trace, kind="chain", user_id="otel-user", cost=None)
    call = _span(project_id, now, trace_id=trace, parent_span_id=root.span_id, cost=0.75)
    drift_call = _span(
        project_id, now, kind="embedding", cost=0.0, attributes={"source": "monitoring"}
    )
    write_spans(db, [root, call, drift_call])
    both = client.post(
        f"/traces/{trace}/feedback",
        data={"thumbs": "up", "score": "0.9", "comment": "good", "csrf_token": csrf},
    )
    assert both.status_code == 200
    assert "not both" in _field_error(both.text, "score")
    assert 'value="0.9"' in both.text and ">good</textarea>" in both.text
    stars = client.post(f"/traces/{trace}/feedback", data={"score": "4", "csrf_token": csrf})
    assert "from 0 (bad) to 1 (good)" in _field_error(stars.text, "score")
    assert "No feedback on this trace yet." in stars.text
    sent = client.post(f"/traces/{trace}/feedback", data={"score": "0.25", "csrf_token": csrf})
    assert sent.status_code == 303

    page = client.get("/monitoring", params={"window": "1h"})
    costliest_users = page.text.split('aria-label="Costliest users"')[1].split("</section>")[0]
    assert "otel-user" in costliest_users and "(none)" not in costliest_users
    assert "0.25" in page.text  # the feedback score
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', page.text, re.S).group(1))
    assert sum(data["charts"][0]["series"][0]["values"]) == 1  # the drift call is left out
    assert "source monitoring" in page.text  # the drift section says so
    everything = client.get("/monitoring", params={"window": "1h", "source": "all"})
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', everything.text, re.S).group(1))
    assert sum(data["charts"][0]["series"][0]["values"]) == 2


def test_the_dashboard_shows_the_platforms_own_calls_beside_the_apps(console, db) -> None:
    client, project_id, _ = console
    _own_and_app_calls(db, project_id)
    page = client.get("/monitoring", params={"window": "1h"})
    assert re.search(r'data-metric="requests">3<', page.text)
    assert re.search(r'data-metric="cost">\$0\.0300<', page.text)  # the app's only
    line = re.search(r"<p[^>]*data-platform-calls>(.*?)</p>", page.text, re.S).group(1)
    assert "Platform's own calls (evaluations, drift checks, knowledge-base indexing)" in line
    assert "4 calls, $0.0710, not counted above" in line
    link = re.search(r'href="([^"]+)">show them', line).group(1).replace("&amp;", "&")
    assert "source=internal" in link and "window=1h" in link
    theirs = client.get(link)
    assert re.search(r'data-metric="requests">4<', theirs.text)
    assert re.search(r'data-metric="cost">\$0\.0710<', theirs.text)
    assert "data-platform-calls" not in theirs.text  # they are the figures themselves
    everything = client.get("/monitoring", params={"window": "1h", "source": "all"})
    assert re.search(r'data-metric="requests">7<', everything.text)
    assert "4 calls, $0.0710, counted above" in everything.text
