"""The console in-process: sign-in, sessions, CSRF, roles and the playground's pipeline path."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.catalog import service as catalog
from llmdeck.catalog.schemas import ModelCreate
from llmdeck.console.session import COOKIE
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ProjectCreate, UserCreate
from llmdeck.providers import local_models
from llmdeck.tracing import service as tracing

PASSWORD = "correct horse battery"


@pytest.fixture
def app():
    return create_app(get_settings())


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as client:
        yield client


def add_user(app, email: str, role: str | None, project: str = "default", **kw) -> None:
    with app.state.runtime.db.session() as session:
        user = identity.create_user(
            session, data=UserCreate(email=email, password=PASSWORD, name=kw.pop("name", ""), **kw)
        )
        if role:
            target = identity.ensure_project(session, name=project)
            identity.add_member(session, user=user, project=target, role=role)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD):
    token = csrf_of(client.get("/sign-in").text)
    return client.post("/sign-in", data={"email": email, "password": password, "csrf_token": token})


def page_csrf(client: TestClient, path: str = "/requests") -> str:
    return re.search(r'data-csrf="([^"]+)"', client.get(path).text).group(1)


def test_pages_send_strangers_to_sign_in(client) -> None:
    response = client.get("/requests?model=x")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/requests%3Fmodel%3Dx"
    # htmx requests (polling) are told to reload into the sign-in page instead.
    response = client.get("/requests/rows", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"] == "/sign-in"
    # The API keeps answering JSON; unknown console paths get an HTML page.
    assert client.get("/api/traces").json()["error"]["type"] == "authentication_error"
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "Page not found" in missing.text


def test_sign_in_sets_a_hardened_session_cookie(app, client) -> None:
    add_user(app, "ada@example.com", "admin", name="Ada")
    response = sign_in(client, "Ada@Example.com")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert PASSWORD not in cookie
    assert client.get("/").headers["location"] == "/playground"
    page = client.get("/playground")
    assert page.status_code == 200 and "Ada" in page.text


def test_the_cookie_is_secure_over_https(app) -> None:
    with TestClient(app, base_url="https://console.test", follow_redirects=False) as client:
        add_user(app, "ada@example.com", "admin")
        response = sign_in(client, "ada@example.com")
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_wrong_password_or_unknown_email_is_refused(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    for email, password in [("ada@example.com", "wrong password"), ("eve@example.com", PASSWORD)]:
        response = sign_in(client, email, password)
        assert response.status_code == 200
        assert "Wrong email or password." in response.text
        assert client.get("/requests").status_code == 303  # still signed out


def test_a_forged_or_tampered_cookie_is_ignored(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    sign_in(client, "ada@example.com")
    value = client.cookies[COOKIE]
    body, mac = value.rsplit(".", 1)
    client.cookies.clear()
    client.cookies.set(COOKIE, body[:-2] + "xx." + mac)
    assert client.get("/requests").status_code == 303
    client.cookies.clear()
    client.cookies.set(COOKIE, "not-a-session")
    assert client.get("/requests").status_code == 303


def test_a_signed_out_session_is_refused_even_as_a_copy(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    sign_in(client, "ada@example.com")
    other_browser = client.cookies[COOKIE]
    client.cookies.clear()
    sign_in(client, "ada@example.com")
    copied = client.cookies[COOKIE]
    assert client.post("/sign-out", data={"csrf_token": page_csrf(client)}).status_code == 303
    # The cookie someone copied before the sign-out no longer opens the console...
    client.cookies.set(COOKIE, copied)
    assert client.get("/requests").headers["location"].startswith("/sign-in")
    # ...nor does the user's session in another browser: signing out ends them all.
    client.cookies.set(COOKIE, other_browser)
    assert client.get("/requests").status_code == 303
    # Signing in again, at once, gives a session that works.
    client.cookies.clear()
    sign_in(client, "ada@example.com")
    assert client.get("/requests").status_code == 200


def test_a_new_password_ends_the_old_sessions(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    sign_in(client, "ada@example.com")
    assert client.get("/requests").status_code == 200
    with app.state.runtime.db.session() as session:
        user = identity.get_user_by_email(session, email="ada@example.com")
        identity.set_password(session, user=user, password="a brand new passphrase")
    assert client.get("/requests").status_code == 303


def test_state_changing_forms_need_the_csrf_token(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    # Signing in itself needs the token the sign-in page handed out (no login CSRF).
    client.get("/sign-in")
    refused = client.post("/sign-in", data={"email": "ada@example.com", "password": PASSWORD})
    assert refused.status_code == 403
    sign_in(client, "ada@example.com")
    for token in (None, "forged-token"):
        data = {"name": "ci", "role": "builder"} | ({"csrf_token": token} if token else {})
        response = client.post("/keys", data=data)
        assert response.status_code == 403
        assert "did not come from the console" in response.text
    assert "ldk-" not in client.get("/keys").text  # no key was created
    token = page_csrf(client)
    # Forms send it as a field, htmx and fetch as a header.
    assert client.post("/keys", data={"name": "ci", "csrf_token": token}).status_code == 303
    assert "ldk-" in client.get("/keys").text
    response = client.post("/keys", data={"name": "ci2"}, headers={"X-CSRF-Token": token})
    assert response.status_code == 303 and "ldk-" in client.get("/keys").text
    assert client.post("/sign-out").status_code == 403
    assert client.get("/requests").status_code == 200  # still signed in
    response = client.post("/sign-out", data={"csrf_token": token})
    assert response.headers["location"] == "/sign-in"
    assert client.get("/requests").status_code == 303


def test_what_a_user_sees_and_does_follows_their_role(app, client) -> None:
    add_user(app, "vic@example.com", "viewer")
    sign_in(client, "vic@example.com")
    home = client.get("/").headers["location"]
    assert home not in ("/playground", "/keys") and client.get(home).status_code == 200
    page = client.get("/requests")
    assert page.status_code == 200
    assert 'href="/playground"' not in page.text and 'href="/keys"' not in page.text
    assert client.get("/keys").status_code == 403
    assert client.get("/playground").status_code == 403
    token = page_csrf(client)
    run = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "hi"}]}
    response = client.post(
        "/playground/stream",
        json=run,
        headers={"X-CSRF-Token": token, "Accept": "text/event-stream"},
    )
    assert response.status_code == 403
    assert "needs builder" in response.json()["error"]["message"]
    models = client.get("/models").text
    assert "Add an OpenAI-compatible model" not in models
    form = {"alias": "m", "upstream_name": "m", "base_url": "http://h/v1", "csrf_token": token}
    assert client.post("/models", data=form).status_code == 403


def test_a_builder_uses_the_playground_but_not_keys(app, client) -> None:
    add_user(app, "bob@example.com", "builder")
    sign_in(client, "bob@example.com")
    page = client.get("/playground")
    assert page.status_code == 200 and 'value="smollm2-135m"' in page.text
    assert 'value="minilm-l6"' not in page.text  # only chat models
    assert 'href="/keys"' not in page.text
    assert client.get("/keys").status_code == 403


def test_the_project_switcher_only_opens_the_users_projects(app, client) -> None:
    add_user(app, "ada@example.com", "viewer")
    with app.state.runtime.db.session() as session:
        acme = identity.create_project(session, data=ProjectCreate(name="acme"))
        identity.create_project(session, data=ProjectCreate(name="secret"))
        user = identity.get_user_by_email(session, email="ada@example.com")
        identity.add_member(session, user=user, project=acme, role="admin")
    sign_in(client, "ada@example.com")
    page = client.get("/requests").text
    assert 'value="acme"' in page and 'value="default"' in page and "secret" not in page
    token = page_csrf(client)
    response = client.post(
        "/projects/switch", data={"project": "acme", "next": "/requests/x", "csrf_token": token}
    )
    assert response.headers["location"] == "/requests"
    assert client.get("/keys").status_code == 200  # admin in acme
    response = client.post("/projects/switch", data={"project": "secret", "csrf_token": token})
    assert response.status_code == 404
    assert client.get("/keys").status_code == 200  # still in acme


def test_a_user_without_a_project_is_told_what_to_do(app, client) -> None:
    add_user(app, "new@example.com", None)
    sign_in(client, "new@example.com")
    response = client.get("/requests")
    assert response.status_code == 403
    assert "not a member of any project" in response.text
    token = csrf_of(response.text)  # the page offers to sign out, to use another account
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 303
    assert client.get("/requests").status_code == 303


def test_the_demo_admin_can_sign_in(app, client) -> None:
    from llmdeck import demo

    with app.state.runtime.db.session() as session:
        access = demo.seed(session, app.state.runtime.settings)
    response = sign_in(client, access.email, access.password)
    assert response.status_code == 303
    token = page_csrf(client, "/keys")
    client.post("/projects/switch", data={"project": "demo", "csrf_token": token})
    page = client.get("/keys").text
    assert 'aria-current="true"' in page and "demo (make run)" in page
    # The demo's gateway configuration shows, and seeding again (each start) changes nothing.
    with app.state.runtime.db.session() as session:
        demo.seed(session, app.state.runtime.settings)
    gateway = client.get("/gateway").text
    assert "demo-assistant" in gateway and "600" in gateway


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def wait_for_trace(app, project_id: str, trace_id: str):
    deadline = time.monotonic() + 5
    while True:
        with app.state.runtime.db.session() as session:
            try:
                return tracing.get_trace_or_raise(session, project_id=project_id, trace_id=trace_id)
            except Exception:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)


def test_the_playground_calls_models_through_the_gateway(app, client, upstream) -> None:
    add_user(app, "ada@example.com", "admin")
    upstream.default = {"kind": "ok", "text": "Paris is the capital of France."}
    with app.state.runtime.db.session() as session:
        catalog.create(
            session,
            settings=app.state.runtime.settings,
            data=ModelCreate(
                alias="up",
                upstream_name="up-1",
                base_url=upstream.url,
                input_price_per_mtok=1000,
                output_price_per_mtok=2000,
            ),
        )
        project_id = identity.get_project_by_name(session, name="default").id
    sign_in(client, "ada@example.com")
    token = page_csrf(client)
    run = {
        "model": "up",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "temperature": 0,
        "max_tokens": 16,
    }
    headers = {"X-CSRF-Token": token, "Accept": "text/event-stream"}
    response = client.post("/playground/stream", json=run, headers=headers)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[0][0] == "start" and events[-1][0] == "done"
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == "Paris is the capital of France."
    done = events[-1][1]
    assert done["output_tokens"] > 0 and done["cost"] > 0 and done["latency_ms"] > 0
    # The upstream saw the system prompt and the parameters.
    sent = upstream.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (
        sent["temperature"] == 0 and sent.get("max_tokens", sent.get("max_completion_tokens")) == 16
    )
    # Recorded like any gateway call, marked as coming from the playground.
    trace = wait_for_trace(app, project_id, events[0][1]["trace_id"])
    assert trace.spans[0].attributes["source"] == "playground"
    assert trace.spans[0].output == text
    detail = client.get(f"/requests/{trace.trace_id}").text
    assert "Capital of France?" in detail and "Be brief." in detail and text in detail

    # A model the project cannot use fails inside the stream, with its trace.
    response = client.post("/playground/stream", json=run | {"model": "nope"}, headers=headers)
    name, data = sse_events(response.text)[-1]
    assert name == "error" and "does not exist" in data["message"]
    assert wait_for_trace(app, project_id, data["trace_id"]).spans[0].status == "error"


def test_the_playground_says_when_the_bundled_model_is_loading(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    sign_in(client, "ada@example.com")
    headers = {"X-CSRF-Token": page_csrf(client), "Accept": "text/event-stream"}
    run = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0,
        "max_tokens": 2,
    }
    # As after a fresh start: the model is not in this process's memory yet.
    local_models._chat = None
    events = sse_events(client.post("/playground/stream", json=run, headers=headers).text)
    names = [name for name, _ in events]
    assert names[:2] == ["start", "status"] and names[-1] == "done"
    assert "Loading the bundled model" in events[1][1]["text"]
    # Loaded now: nothing to wait for, nothing said.
    events = sse_events(client.post("/playground/stream", json=run, headers=headers).text)
    assert "status" not in [name for name, _ in events] and events[-1][0] == "done"


def test_requests_explorer_filters_and_escapes(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    sign_in(client, "ada@example.com")
    token = page_csrf(client)
    run = {"model": "nope", "messages": [{"role": "user", "content": "<script>alert(1)</script>"}]}
    headers = {"X-CSRF-Token": token, "Accept": "text/event-stream"}
    trace_id = sse_events(client.post("/playground/stream", json=run, headers=headers).text)[0][1][
        "trace_id"
    ]
    with app.state.runtime.db.session() as session:
        project_id = identity.get_project_by_name(session, name="default").id
    wait_for_trace(app, project_id, trace_id)
    rows = client.get("/requests/rows?status=error").text
    assert trace_id in rows
    assert trace_id not in client.get("/requests/rows?status=ok").text
    assert trace_id not in client.get("/requests/rows?model=smollm2-135m").text
    # Polling with what the page already shows gets 204: nothing to swap.
    known = re.search(r'"known": "([^"]+)"', rows.replace("&#34;", '"')).group(1)
    assert client.get(f"/requests/rows?status=error&known={known}").status_code == 204
    detail = client.get(f"/requests/{trace_id}").text
    assert "<script>alert(1)</script>" not in detail
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_domains_extend_the_navigation_by_role_and_section(app) -> None:
    from llmdeck.catalog.pages import pages as catalog_pages
    from llmdeck.console.router import pages as shell_pages
    from llmdeck.console.shell import Console, PageSet
    from llmdeck.gateway.pages import pages as gateway_pages
    from llmdeck.identity.pages import pages as identity_pages
    from llmdeck.tracing.pages import pages as tracing_pages

    scoring = PageSet("scoring", __file__)
    scoring.nav("Scorecards", "/scorecards", section="Evaluate", min_role="reviewer", order=50)
    extra = PageSet("extra", __file__)
    extra.nav("Reports", "/reports", section="Insights", order=5)
    page_sets = [shell_pages, gateway_pages, catalog_pages, tracing_pages, identity_pages]
    console = Console(app, [*page_sets, scoring, extra])

    def sections(role: str) -> list[tuple[str, list[str]]]:
        return [(s, [i.label for i in items]) for s, items in console.nav_for(role)]

    assert sections("viewer") == [
        ("Build", ["Models"]),
        ("Observe", ["Requests"]),
        ("Settings", ["Gateway", "People"]),
        ("Insights", ["Reports"]),
    ]
    assert sections("admin") == [
        ("Build", ["Playground", "Models"]),
        ("Evaluate", ["Scorecards"]),
        ("Observe", ["Requests"]),
        ("Settings", ["Gateway", "People", "API keys"]),
        ("Insights", ["Reports"]),
    ]
    # The app mounts every domain's pages through the same registry.
    labels = {i.label for _, items in app.state.console.nav_for("admin") for i in items}
    assert {"Playground", "Models", "Requests", "People", "API keys"} <= labels


def test_a_request_not_recorded_yet_is_looked_up_again(app, client) -> None:
    add_user(app, "ada@example.com", "viewer")
    sign_in(client, "ada@example.com")
    page = client.get("/requests/0123456789abcdef0123456789abcdef")
    assert page.status_code == 200  # not an error: spans land a moment after the answer
    assert "Request not found" in page.text
    assert 'hx-get="/requests/0123456789abcdef0123456789abcdef"' in page.text


def test_admins_enable_and_disable_their_projects_models(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    add_user(app, "vic@example.com", "viewer")
    with app.state.runtime.db.session() as session:
        catalog.create(
            session,
            settings=app.state.runtime.settings,
            data=ModelCreate(
                alias="ours", upstream_name="o", base_url="http://h/v1", project="default"
            ),
        )
    sign_in(client, "ada@example.com")
    token = page_csrf(client)
    page = client.get("/models").text
    assert 'aria-label="Disable ours"' in page
    assert 'aria-label="Disable smollm2-135m"' not in page  # shared: superusers only
    response = client.post(
        "/models/status", data={"alias": "ours", "status": "disabled", "csrf_token": token}
    )
    assert response.status_code == 303
    assert 'value="ours"' not in client.get("/playground").text
    assert 'aria-label="Enable ours"' in client.get("/models").text
    shared = {"alias": "smollm2-135m", "status": "disabled", "csrf_token": token}
    assert client.post("/models/status", data=shared).status_code == 403
    client.post("/sign-out", data={"csrf_token": token})
    sign_in(client, "vic@example.com")
    token = page_csrf(client)
    enable = {"alias": "ours", "status": "active", "csrf_token": token}
    assert client.post("/models/status", data=enable).status_code == 403


def test_every_form_on_the_nav_pages_carries_the_sessions_token(app, client) -> None:
    add_user(app, "ada@example.com", "admin")
    sign_in(client, "ada@example.com")
    token = page_csrf(client)
    pages = ["/playground", "/prompts", "/models", "/knowledge", "/experiments", "/datasets"]
    pages += ["/review", "/requests", "/monitoring", "/alerts", "/keys"]
    for path in pages:
        html = client.get(path).text
        for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", html, re.S):
            # A macro imported without context renders an empty token: 403 on submit.
            assert f'name="csrf_token" value="{token}"' in form, (path, form[:120])
