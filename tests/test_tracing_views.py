"""How traces are listed and shown: the trace's model calls summarised on the request page,
a trace that failed anywhere listed as an error (API, CLI, console), an unknown status
refused, and the CLI naming the projects that have traces when the one asked has none."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import llmdeck
from llmdeck.app import create_app
from llmdeck.core.db import Database
from llmdeck.core.settings import Settings, get_settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate, UserCreate
from tests.conftest import LiveServer, free_port, reset_sdk
from tests.upstream import ScriptedUpstream

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"
OK_TRACE = "0af7651916cd43dd8448eb211c80319c"
FAILED_TRACE = "5b8efff798038103d269b633813fc60c"


def _value(value: Any) -> dict:
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def _span(trace: str, span: str, parent: str | None, name: str, attrs: dict, **kw) -> dict:
    start = time.time_ns() - 1_000_000_000
    offset, duration = kw.pop("at_ms", 0), kw.pop("ms", 900)
    return {
        "traceId": trace,
        "spanId": span,
        **({"parentSpanId": parent} if parent else {}),
        "name": name,
        "startTimeUnixNano": str(start + offset * 1_000_000),
        "endTimeUnixNano": str(start + (offset + duration) * 1_000_000),
        "attributes": [{"key": k, "value": _value(v)} for k, v in attrs.items()],
        **kw,
    }


CALL = {
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "smollm2-135m",
    "gen_ai.usage.input_tokens": 31,
    "gen_ai.usage.output_tokens": 4,
    "gen_ai.prompt.0.role": "user",
    "gen_ai.prompt.0.content": "Name a colour.",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "Blue.",
}


def _post_traces(http: TestClient, key: str, ago_s: int = 1) -> None:
    """An app's ok root over a model call that streamed (TTFT 201 ms), and an ok root over a
    model call that failed: the QA engineer's OTLP repro."""
    spans = [
        _span(OK_TRACE, "1111111111111111", None, "root-json", {}, at_ms=0, ms=900),
        _span(
            OK_TRACE,
            "2222222222222222",
            "1111111111111111",
            "chat json",
            {**CALL, "llmdeck.ttft_ms": 201.0},
            at_ms=100,
            ms=700,
        ),
        _span(FAILED_TRACE, "3333333333333333", None, "root-json", {}, at_ms=0, ms=500),
        _span(
            FAILED_TRACE,
            "4444444444444444",
            "3333333333333333",
            "chat json",
            {k: v for k, v in CALL.items() if not k.startswith("gen_ai.completion")},
            at_ms=10,
            ms=400,
            status={"code": "STATUS_CODE_ERROR", "message": "timeout"},
        ),
    ]
    for span in spans:
        shift = (ago_s - 1) * 1_000_000_000
        span["startTimeUnixNano"] = str(int(span["startTimeUnixNano"]) - shift)
        span["endTimeUnixNano"] = str(int(span["endTimeUnixNano"]) - shift)
    document = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    response = http.post(
        "/v1/traces",
        content=json.dumps(document),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text


def _key(db: Database, project: str = "default") -> str:
    with db.session() as session:
        target = identity.ensure_project(session, name=project)
        _, secret = identity.create_key(
            session, project=target, data=ApiKeyCreate(name="t", role="builder")
        )
    return secret


def _sign_in(http: TestClient | httpx.Client) -> None:
    page = http.get("/sign-in").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    signed = http.post("/sign-in", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})
    assert signed.status_code in (200, 303), signed.text


def _stats(html: str) -> dict[str, str]:
    """The request page's figures, as a user reads them."""
    block = re.search(r'<dl class="stats".*?</dl>', html, re.S).group(0)
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block))


def _heading(html: str) -> list[str]:
    return re.sub(r"<[^>]+>", "", re.search(r"<h1>(.*?)</h1>", html, re.S).group(1)).split()


@pytest.fixture
def console(db: Database, settings: Settings) -> Iterator[tuple[TestClient, str]]:
    """The app in-process, an admin signed in to the console, and an API key of the project."""
    with db.session() as session:
        user = identity.create_user(session, data=UserCreate(email=EMAIL, password=PASSWORD))
        project = identity.ensure_project(session, name="default")
        identity.add_member(session, user=user, project=project, role="admin")
    key = _key(db)
    with TestClient(create_app(settings), follow_redirects=False) as http:
        _sign_in(http)
        _post_traces(http, key)
        yield http, key


def test_the_request_page_summarises_the_model_call_under_the_root(console) -> None:
    http, key = console
    api = {"Authorization": f"Bearer {key}"}
    trace = http.get(f"/api/traces/{OK_TRACE}", headers=api).json()
    assert trace["call_span_ids"] == ["2222222222222222"]
    summary = trace["summary"]
    assert (summary["model"], summary["input_tokens"], summary["output_tokens"]) == (
        "smollm2-135m",
        31,
        4,
    )
    assert summary["ttft_ms"] == 201 and summary["cost"] == 0 and summary["status"] == "ok"

    page = http.get(f"/requests/{OK_TRACE}")
    assert page.status_code == 200
    html = page.text
    assert _heading(html) == ["smollm2-135m", "ok"]
    assert _stats(html) == {
        "Time to first token": "201 ms",
        "Total latency": "900 ms",
        "Input tokens": "31",
        "Output tokens": "4",
        "Cost": "$0",
    }
    user = re.search(r'message-user">.*?message-content">(.*?)</div>', html, re.S).group(1)
    answer = re.search(r'message-assistant">.*?message-content">(.*?)</div>', html, re.S)
    assert (user, answer.group(1)) == ("Name a colour.", "Blue.")
    assert "No input was recorded." not in html
    # The app's root span has no input of its own: said of it, not of the call.
    assert "No input was recorded for root-json." in html
    assert 'id="call">Model call: chat json' in html

    # The list says the same: the call's model, tokens, cost and first token.
    [row] = [
        t for t in http.get("/api/traces", headers=api).json()["data"] if t["trace_id"] == OK_TRACE
    ]
    assert (row["model"], row["input_tokens"], row["output_tokens"], row["cost"]) == (
        "smollm2-135m",
        31,
        4,
        0,
    )
    assert row["ttft_ms"] == 201
    cells = re.search(
        rf'data-trace-id="{OK_TRACE}".*?</tr>', http.get("/requests/rows").text, re.S
    ).group(0)
    assert "201 ms" in cells and "31 / 4" in cells and "$0" in cells


def test_a_trace_whose_model_call_failed_is_an_error_everywhere(console) -> None:
    http, key = console
    api = {"Authorization": f"Bearer {key}"}
    data = http.get("/api/traces", headers=api).json()["data"]
    listed = {t["trace_id"]: t["status"] for t in data}
    assert listed == {OK_TRACE: "ok", FAILED_TRACE: "error"}

    def ids(**params) -> list[str]:
        page = http.get("/api/traces", params=params, headers=api)
        assert page.status_code == 200, page.text
        return [t["trace_id"] for t in page.json()["data"]]

    assert ids(status="error") == [FAILED_TRACE]
    assert ids(status="ok") == [OK_TRACE]
    assert ids(status="error", model="smollm2-135m") == [FAILED_TRACE]
    assert http.get(f"/api/traces/{FAILED_TRACE}", headers=api).json()["summary"]["status"] == (
        "error"
    )

    # The console's Failed and Succeeded filters, and the rows' badges.
    failed = http.get("/requests/rows", params={"status": "error"}).text
    assert FAILED_TRACE in failed and OK_TRACE not in failed
    row = re.search(rf'data-trace-id="{FAILED_TRACE}".*?</tr>', failed, re.S).group(0)
    assert 'badge-error">error<' in row
    succeeded = http.get("/requests/rows", params={"status": "ok"}).text
    assert OK_TRACE in succeeded and FAILED_TRACE not in succeeded

    # The request page's header says error, and which span failed with what.
    html = http.get(f"/requests/{FAILED_TRACE}").text
    assert _heading(html) == ["smollm2-135m", "error"]
    alert = re.search(r'role="alert">(.*?)</div>', html, re.S).group(1)
    assert re.sub(r"<[^>]+>", "", alert).strip() == "chat json failed: timeout"
    assert "No output: the call failed." in html


def test_an_unknown_status_is_refused_by_the_api_not_the_console(console) -> None:
    http, key = console
    refused = http.get(
        "/api/traces", params={"status": "bogus"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "status"
    assert error["message"] == "Unknown status 'bogus'; choose one of: ok, error."
    # The console's filter ignores a status it does not offer (a hand-edited URL).
    rows = http.get("/requests/rows", params={"status": "bogus"})
    assert rows.status_code == 200
    assert OK_TRACE in rows.text and FAILED_TRACE in rows.text


def _llmdeck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmdeck", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


@pytest.fixture
def sqlite_app() -> Iterator[tuple[TestClient, Database]]:
    settings = get_settings()
    app = create_app(settings)
    with TestClient(app) as http:
        yield http, app.state.runtime.db


def test_the_cli_lists_failed_traces_and_refuses_an_unknown_status(sqlite_app) -> None:
    http, db = sqlite_app
    _post_traces(http, _key(db))
    failed = _llmdeck("traces", "list", "--status", "error", "--json")
    assert failed.returncode == 0, failed.stderr
    assert [(t["trace_id"], t["status"]) for t in json.loads(failed.stdout)] == [
        (FAILED_TRACE, "error")
    ]
    listed = {t["trace_id"]: t for t in json.loads(_llmdeck("traces", "list", "--json").stdout)}
    assert listed[FAILED_TRACE]["status"] == "error" and listed[OK_TRACE]["ttft_ms"] == 201

    bogus = _llmdeck("traces", "list", "--status", "bogus")
    assert bogus.returncode == 1 and bogus.stdout == ""
    assert bogus.stderr == "error: Unknown status 'bogus'; choose one of: ok, error.\n"


def test_an_empty_listing_names_the_projects_that_have_traces(sqlite_app) -> None:
    http, db = sqlite_app
    _post_traces(http, _key(db, project="demo"))  # as `llmdeck up --demo` traces to `demo`
    hint = "No traces in project default. Traces are in: demo (use --project demo).\n"
    for command in (
        ("traces", "list"),
        ("traces", "list", "--json"),
        ("monitoring", "summary"),
        ("monitoring", "summary", "--json"),
        ("monitoring", "top"),
    ):
        ran = _llmdeck(*command)
        assert ran.returncode == 0 and ran.stderr == hint, (command, ran.stderr)
    # JSON on stdout stays JSON: the hint goes to stderr.
    assert json.loads(_llmdeck("traces", "list", "--json").stdout) == []

    # Asked of the project that has them: the figures, and no hint.
    shown = _llmdeck("traces", "list", "--project", "demo", "--json")
    assert len(json.loads(shown.stdout)) == 2 and shown.stderr == ""
    summary = _llmdeck("monitoring", "summary", "--project", "demo", "--json")
    assert json.loads(summary.stdout)["requests"] == 2 and summary.stderr == ""
    # A filter that leaves nothing is said to be the filter.
    narrowed = _llmdeck("traces", "list", "--project", "demo", "--model", "other")
    assert narrowed.stderr == "No traces in project demo match these filters.\n"


def test_figures_outside_the_window_say_to_look_further_back(sqlite_app) -> None:
    http, db = sqlite_app
    _post_traces(http, _key(db, project="archive"), ago_s=2 * 86400)
    ran = _llmdeck("monitoring", "summary", "--project", "archive")
    assert ran.returncode == 0
    assert ran.stderr == (
        "No model calls in project archive in the last 24h; "
        "a longer --window (7d, 30d) looks further back.\n"
    )
    assert _llmdeck("monitoring", "summary", "--project", "archive", "--window", "7d").stderr == ""


# The SDK through a real server: an observed function streaming a call through the gateway,
# and one that catches a failed call.


@pytest.fixture(scope="module")
def server(live_server: LiveServer) -> LiveServer:
    with live_server.client() as api:
        user = {"email": EMAIL, "password": PASSWORD, "name": "Ada"}
        api.post("/api/users", json=user).raise_for_status()
        api.put("/api/members", json={"email": EMAIL, "role": "admin"}).raise_for_status()
    return live_server


def _wait_for_spans(api: httpx.Client, trace_id: str, count: int) -> dict:
    deadline = time.monotonic() + 20
    while True:
        response = api.get(f"/api/traces/{trace_id}")
        if response.status_code == 200 and len(response.json()["spans"]) >= count:
            return response.json()
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


@pytest.fixture(scope="module")
def sdk_traces(server: LiveServer) -> dict[str, str]:
    """Trace ids of the two SDK traces, sent once for the module's tests."""
    import openai

    upstream = ScriptedUpstream()
    upstream.default = {"kind": "ok", "text": "Blue is a colour."}
    upstream.start(free_port())
    try:
        with server.client() as api:
            model = {
                "alias": "up-views",
                "upstream_name": "up-views",
                "base_url": upstream.url,
                "input_price_per_mtok": 1000,
                "output_price_per_mtok": 2000,
            }
            api.post("/api/models", json=model).raise_for_status()
        llmdeck.configure(base_url=server.url, api_key=server.master_key, interval=0.1)
        assert llmdeck.instrument_openai()
        client = openai.OpenAI(
            base_url=f"{server.url}/v1", api_key=server.master_key, max_retries=0
        )
        ids: dict[str, str] = {}

        @llmdeck.observe(name="answer")
        def answer(question: str) -> str:
            ids["ok"] = llmdeck.current_trace_id()
            stream = client.chat.completions.create(
                model="up-views", messages=[{"role": "user", "content": question}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        @llmdeck.observe(name="guarded")
        def guarded(question: str) -> str:
            ids["failed"] = llmdeck.current_trace_id()
            try:
                client.chat.completions.create(
                    model="no-such-model", messages=[{"role": "user", "content": question}]
                )
            except openai.APIError:
                return "Sorry, no answer."
            return "answered"

        assert answer("Name a colour.") == "Blue is a colour."
        assert guarded("Name a colour.") == "Sorry, no answer."
        assert llmdeck.flush(timeout=20)
        with server.client() as api:
            _wait_for_spans(api, ids["ok"], 3)  # answer, the SDK's call, the gateway's span
            _wait_for_spans(api, ids["failed"], 2)
        return ids
    finally:
        reset_sdk()
        upstream.stop()


@pytest.mark.slow
def test_an_sdk_trace_is_listed_and_shown_by_its_calls(server: LiveServer, sdk_traces) -> None:
    ok, failed = sdk_traces["ok"], sdk_traces["failed"]
    with server.client() as api:
        rows = {t["trace_id"]: t for t in api.get("/api/traces").json()["data"]}
        errors = [t["trace_id"] for t in api.get("/api/traces?status=error").json()["data"]]
        oks = [t["trace_id"] for t in api.get("/api/traces?status=ok").json()["data"]]
        gateway = [
            s
            for s in api.get(f"/api/traces/{ok}").json()["spans"]
            if s["attributes"].get("source") == "gateway"
        ]
    row = rows[ok]
    assert (row["name"], row["model"], row["status"]) == ("answer", "up-views", "ok")
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    # The first token the app waited for: the streamed call's (the root has none of its own).
    [call] = gateway
    assert row["ttft_ms"] == call["ttft_ms"] is not None
    assert rows[failed]["status"] == "error" and rows[failed]["name"] == "guarded"
    assert failed in errors and ok not in errors
    assert ok in oks and failed not in oks

    cli = server.cli("traces", "list", "--status", "error", "--json")
    assert cli.returncode == 0, cli.stderr
    assert [t["trace_id"] for t in json.loads(cli.stdout)] == [failed]

    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
        _sign_in(browser)
        html = browser.get(f"/requests/{ok}").text
        stats = _stats(html)
        assert _heading(html) == ["up-views", "ok"]
        assert re.fullmatch(r"\d+ ms|\d\.\d\d s", stats["Time to first token"])
        assert stats["Input tokens"] == str(row["input_tokens"])
        assert stats["Output tokens"] == str(row["output_tokens"])
        assert stats["Cost"].startswith("$") and stats["Cost"] != "$0"
        assert "Name a colour." in html and "Blue is a colour." in html
        assert "No input was recorded" not in html
        assert 'id="app-io"' in html  # the app's own input and output, above the call
        failed_html = browser.get(f"/requests/{failed}").text
        assert _heading(failed_html)[-1] == "error"
        assert "Sorry, no answer." in failed_html  # what the app returned
        rows_html = browser.get("/requests/rows", params={"status": "error"}).text
        assert failed in rows_html and ok not in rows_html


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
def test_the_request_page_in_a_browser(server: LiveServer, sdk_traces) -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    from tests.test_console_browser import CHROMIUM_ARGS, SCREENSHOTS

    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = chromium.new_page(base_url=server.url)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/sign-in")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/playground")
        page.goto("/requests")
        page.locator(f"tr[data-trace-id='{sdk_traces['ok']}']").get_by_role("link").click()
        page.wait_for_url(f"**/requests/{sdk_traces['ok']}")
        main = page.locator("main")
        stats = main.get_by_label("Timing, tokens and cost")
        sync_api.expect(stats).to_contain_text("Time to first token")
        assert "—" not in stats.inner_text()
        sync_api.expect(main.locator("h1")).to_contain_text("up-views")
        sync_api.expect(main.locator(".message-user")).to_contain_text("Name a colour.")
        sync_api.expect(main.locator(".message-assistant")).to_contain_text("Blue is a colour.")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "request-detail-app.png"), full_page=True)
        chromium.close()
        assert errors == []
