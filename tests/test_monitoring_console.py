"""Console pages of monitoring: dashboard, trace waterfall with feedback, alerts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.ids import new_trace_id
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import UserCreate
from llmdeck.tracing.ingest import write_spans
from llmdeck.tracing.writer import SpanRecord

PASSWORD = "correct horse battery"


@pytest.fixture
def console() -> Iterator[tuple[TestClient, str, str]]:
    app = create_app(get_settings())
    with TestClient(app, follow_redirects=False) as client:
        with app.state.runtime.db.session() as session:
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
        trace_id = new_trace_id()
        now = datetime.now(UTC) - timedelta(minutes=5)
        ms = timedelta(milliseconds=1)

        def span(span_id, parent, name, kind, at, latency, **kw):
            return SpanRecord(
                project_id=project.id,
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                kind=kind,
                started_at=now + at * ms,
                latency_ms=latency,
                **kw,
            )

        write_spans(
            app.state.runtime.db,
            [
                span("a" * 16, None, "agent", "agent", 0, 1000, user_id="bob", tags=["web"]),
                span("b" * 16, "a" * 16, "retrieve docs", "retriever", 10, 200),
                span("c" * 16, "a" * 16, "chat small", "llm", 250, 700, model="m1", cost=0.02),
                span("d" * 16, "c" * 16, "lookup tool", "tool", 300, 100, status="error"),
            ],
        )
        csrf = re.search(r'data-csrf="([^"]+)"', client.get("/monitoring").text).group(1)
        yield client, trace_id, csrf


def test_dashboard_shows_figures_and_chart_data(console) -> None:
    client, _, _ = console
    page = client.get("/monitoring", params={"window": "1h", "group_by": "model"})
    assert page.status_code == 200
    assert 'href="/monitoring"' in page.text and 'href="/alerts"' in page.text  # in the nav
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', page.text, re.S).group(1))
    assert [c["id"] for c in data["charts"]] == [
        "requests",
        "errors",
        "latency",
        "ttft",
        "tokens",
        "cost",
    ]
    requests = data["charts"][0]["series"]
    assert [s["label"] for s in requests] == ["m1"] and sum(requests[0]["values"]) == 1
    assert "Costliest models" in page.text and "m1" in page.text
    script = client.get("/monitoring/assets/uPlot.iife.min.js")
    assert script.status_code == 200 and "uPlot" in script.text
    assert "javascript" in script.headers["content-type"]
    assert client.get("/monitoring/assets/..%2Fpages.py").status_code == 404


def test_trace_waterfall_and_feedback_from_the_console(console) -> None:
    client, trace_id, csrf = console
    detail = client.get(f"/requests/{trace_id}")  # the requests explorer links to the tree
    assert f'href="/traces/{trace_id}"' in detail.text
    page = client.get(f"/traces/{trace_id}")
    assert page.status_code == 200
    order = re.findall(r'data-span="(\w+)" data-depth="(\d)"', page.text)
    assert order == [("a" * 16, "0"), ("b" * 16, "1"), ("c" * 16, "1"), ("d" * 16, "2")]
    # The chat span starts a quarter into the trace and lasts 70% of it.
    assert "left:25.0%;width:70.0%" in page.text

    sent = client.post(
        f"/traces/{trace_id}/feedback",
        data={"thumbs": "up", "comment": "useful", "csrf_token": csrf},
    )
    assert sent.status_code == 303
    page = client.get(f"/traces/{trace_id}")
    assert "👍 up" in page.text and "useful" in page.text
    forged = client.post(f"/traces/{trace_id}/feedback", data={"thumbs": "down"})
    assert forged.status_code in (400, 403)
    dashboard = client.get("/monitoring", params={"window": "1h"})
    assert "1.00" in dashboard.text  # the feedback score on the dashboard


def test_alert_rules_from_the_console(console) -> None:
    client, _, csrf = console
    created = client.post(
        "/alerts",
        data={
            "name": "too slow",
            "metric": "latency_p95",
            "comparison": ">",
            "threshold": "500",
            "window_minutes": "30",
            "webhook_url": "http://127.0.0.1:9/hook",
            "csrf_token": csrf,
        },
    )
    assert created.status_code == 200 and "shown only now" in created.text
    page = client.get("/alerts")
    assert "too slow" in page.text and "latency_p95 &gt; 500.0" in page.text
    bad = client.post(
        "/alerts",
        data={
            "name": "x",
            "metric": "nonsense",
            "threshold": "1",
            "webhook_url": "http://h/",
            "csrf_token": csrf,
        },
    )
    assert "Unknown metric" in bad.text


class _Forms(HTMLParser):
    """The POST forms of a page: action, the fields a browser would send, the first named button."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.open = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.open = (a.get("method") or "").lower() == "post"
            if self.open:
                self.forms.append({"action": a.get("action"), "fields": {}, "button": None})
        elif self.open and tag == "input" and a.get("name"):
            self.forms[-1]["fields"].setdefault(a["name"], a.get("value") or "")
        elif self.open and tag == "button" and a.get("name") and not self.forms[-1]["button"]:
            self.forms[-1]["button"] = (a["name"], a.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.open = False


def post_forms(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def test_every_observe_form_carries_its_token_and_submits(console) -> None:
    client, trace_id, csrf = console
    typed = {"name": "slow", "threshold": "500", "webhook_url": "http://127.0.0.1:9/hook"}
    client.post("/alerts", data={**typed, "csrf_token": csrf})  # so that /alerts has a Delete
    submitted = []
    for path in ["/monitoring", f"/traces/{trace_id}", "/alerts"]:
        for form in post_forms(client.get(path).text):
            # The form's own hidden field is the only token a browser sends with it.
            assert form["fields"].get("csrf_token") == csrf, (path, form["action"])
            if form["action"] in ("/sign-out", "/projects/switch"):
                continue  # the shell's forms, on every page
            data = {name: value or typed.get(name, "") for name, value in form["fields"].items()}
            if form["action"] == "/alerts":
                data.update(typed)  # what the user types into the New rule form
            if form["button"]:
                data.setdefault(*form["button"])
            response = client.post(form["action"], data=data)
            assert response.status_code in (200, 303), (form["action"], response.text[:300])
            assert "has expired" not in response.text
            submitted.append(form["action"])
    assert {"/monitoring/drift", "/monitoring/retention", "/alerts"} <= set(submitted)
    assert f"/traces/{trace_id}/feedback" in submitted
    assert any(action.endswith("/delete") for action in submitted)
    assert "👍 up" in client.get(f"/traces/{trace_id}").text
