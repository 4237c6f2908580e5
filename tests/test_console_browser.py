"""The console in a real browser: headless Chromium (Debian's) against a real `llmdeck up`.

Every test fails on a JavaScript error or console error in the page, and saves a screenshot
of each page it visits under test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, LiveServer

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
EMAIL, PASSWORD = "ada@example.com", "correct horse battery"

if not CHROMIUM.exists():  # `make test` installs it; say how when it is missing
    pytest.skip("needs Debian's chromium: apt-get install -y chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def server(live_server: LiveServer) -> LiveServer:
    """The live server with an admin user of the default project."""
    with live_server.client() as api:
        user = {"email": EMAIL, "password": PASSWORD, "name": "Ada Lovelace"}
        api.post("/api/users", json=user).raise_for_status()
        api.put("/api/members", json={"email": EMAIL, "role": "admin"}).raise_for_status()
        # Load the bundled model once, so the playground shows steady-state timings.
        hello = {"role": "user", "content": "Say hello."}
        warm = {"model": "smollm2-135m", "messages": [hello], "max_tokens": 4}
        api.post("/v1/chat/completions", json=warm).raise_for_status()
    return live_server


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server: LiveServer) -> Iterator:
    """A fresh browser context; the test fails if the page logs an error."""
    context = browser.new_context(
        base_url=server.url,
        viewport={"width": 1360, "height": 860},
        permissions=["clipboard-read", "clipboard-write"],
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    yield page
    context.close()
    assert errors == [], "the page logged errors"


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def sign_in(page, email: str = EMAIL, password: str = PASSWORD) -> None:
    page.goto("/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_wrong_password_is_refused(page) -> None:
    page.goto("/")
    assert page.url.endswith("/sign-in?next=/")
    shot(page, "sign-in")
    sign_in(page, password="not the password")
    sync_api.expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")
    assert "/sign-in" in page.url
    # The email stays filled in and focus goes to the password, to try again quickly.
    sync_api.expect(page.get_by_label("Email")).to_have_value(EMAIL)
    sync_api.expect(page.get_by_label("Password")).to_be_focused()
    shot(page, "sign-in-refused")


def test_playground_streams_the_answer_and_links_to_its_trace(page) -> None:
    sign_in(page)
    page.wait_for_url("**/playground")
    sync_api.expect(page.get_by_role("navigation", name="Main")).to_contain_text("API keys")
    sync_api.expect(page.get_by_label("smollm2-135m")).to_be_checked()
    page.get_by_label("System prompt").fill("You are a friendly assistant. Answer briefly.")
    page.get_by_label("Message 1", exact=True).fill("What is the capital of France?")
    page.get_by_label("Temperature", exact=True).fill("0")
    page.get_by_label("Max tokens").fill("16")
    shot(page, "playground-compose")
    page.get_by_role("button", name="Send").click()

    answer = page.locator("article.answer[data-model='smollm2-135m']")
    output = answer.locator(".answer-output")
    # The text arrives in pieces while the model generates, before the answer is done.
    page.wait_for_function(
        "() => { const c = document.querySelector('article.answer');"
        " return c && Number(c.dataset.chunks || 0) >= 1 && c.dataset.state !== 'done'; }",
        timeout=180_000,
    )
    sync_api.expect(answer).to_have_attribute("data-state", "done", timeout=120_000)
    assert int(answer.get_attribute("data-chunks")) >= 2
    text = output.inner_text().strip()
    assert text
    tokens = answer.locator("[data-field=tokens]").inner_text()
    assert re.fullmatch(r"\d+ in · ([1-9]|1[0-6]) out", tokens), tokens
    assert answer.locator("[data-field=cost]").inner_text() == "$0"  # bundled: free
    assert re.search(r"\d", answer.locator("[data-field=latency]").inner_text())
    shot(page, "playground")

    answer.get_by_role("link", name="View trace").click()
    page.wait_for_url(re.compile(r".*/requests/[0-9a-f]{32}$"))
    main = page.locator("main")
    sync_api.expect(main.locator(".message-user")).to_contain_text("capital of France")
    sync_api.expect(main.locator(".message-system")).to_contain_text("friendly assistant")
    sync_api.expect(main.locator(".message-assistant")).to_contain_text(text[:10])
    sync_api.expect(main.get_by_text("Time to first token")).to_be_visible()
    sync_api.expect(main).to_contain_text("playground")
    shot(page, "request-detail")


def test_playground_compares_up_to_three_models_side_by_side(page, server, upstream) -> None:
    upstream.default = {"kind": "ok", "text": "An answer from upstream."}
    with server.client() as api:
        for alias in ("up-a", "up-b", "up-c"):
            model = {"alias": alias, "upstream_name": alias, "base_url": upstream.url}
            api.post("/api/models", json=model).raise_for_status()
    sign_in(page)
    page.wait_for_url("**/playground")
    page.get_by_label("smollm2-135m").uncheck()
    for alias in ("up-a", "up-b", "up-c"):
        page.get_by_label(alias).check()
    # A fourth model cannot be added while three are picked.
    sync_api.expect(page.get_by_label("smollm2-135m")).to_be_disabled()
    sync_api.expect(page.get_by_text("3 of 3 selected")).to_be_visible()
    page.get_by_label("Message 1", exact=True).fill("Hello?")
    page.keyboard.press("Control+Enter")
    cards = page.locator("article.answer")
    sync_api.expect(cards).to_have_count(3)
    for card in cards.all():
        sync_api.expect(card).to_have_attribute("data-state", "done")
        sync_api.expect(card.locator(".answer-output")).to_have_text("An answer from upstream.")
    assert [c.get_attribute("data-model") for c in cards.all()] == ["up-a", "up-b", "up-c"]
    shot(page, "playground-side-by-side")


def test_prompt_page_opens_the_playground_on_the_prompt(page, server, upstream) -> None:
    upstream.default = {"kind": "ok", "text": "A streamed prompt answer."}
    with server.client() as api:
        for alias in ("try-a", "try-b"):
            model = {"alias": alias, "upstream_name": alias, "base_url": upstream.url}
            api.post("/api/models", json=model).raise_for_status()
        version = {
            "messages": [{"role": "user", "content": "Summarise {{ topic }} in one line."}],
            "model": "try-a",
            "labels": ["production"],
        }
        api.post("/api/prompts/summarise/versions", json=version).raise_for_status()
    sign_in(page)
    page.goto("/prompts/summarise")
    busy = page.locator("#try-busy")
    sync_api.expect(busy).to_be_hidden()  # "running…" only while a Try is in flight
    page.get_by_label("Variables (JSON)").fill('{"topic": "the water cycle"}')
    page.get_by_role("button", name="Run", exact=True).click()
    sync_api.expect(page.locator("#try-results")).to_contain_text("A streamed prompt answer.")
    sync_api.expect(busy).to_be_hidden()
    page.get_by_role("link", name="try summarise@production in the Playground").click()
    page.wait_for_url("**/playground?prompt=summarise%40production&variables=*")
    sync_api.expect(page.locator("#prompt-fields")).to_contain_text("summarise@production")
    sync_api.expect(page.get_by_label("try-a")).to_be_checked()  # the prompt's model
    sync_api.expect(page.get_by_label("topic")).to_have_value("the water cycle")
    page.get_by_label("try-b").check()
    shot(page, "playground-prompt")
    page.get_by_role("button", name="Send").click()
    cards = page.locator("article.answer")
    sync_api.expect(cards).to_have_count(2)
    for card in cards.all():
        sync_api.expect(card).to_have_attribute("data-state", "done")
        sync_api.expect(card.locator(".answer-output")).to_have_text("A streamed prompt answer.")
    assert [c.get_attribute("data-model") for c in cards.all()] == ["try-a", "try-b"]
    # Both models got the prompt rendered with the variable.
    sent = [r for r in upstream.requests if r["model"] in ("try-a", "try-b")]
    assert {r["model"] for r in sent} == {"try-a", "try-b"}
    for r in sent:
        assert r["messages"] == [
            {"role": "user", "content": "Summarise the water cycle in one line."}
        ]
    shot(page, "playground-prompt-answers")


def test_requests_explorer_shows_new_requests_without_reload(page, server) -> None:
    sign_in(page)
    page.goto("/requests")
    rows = page.locator("#request-rows tr[data-trace-id]")
    before = rows.count()
    # Another client calls a model that does not exist: the failure is traced too.
    with server.client() as api:
        response = api.post(
            "/v1/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 404
    new = rows.filter(has_text="no-such-model")
    sync_api.expect(new).to_have_count(1, timeout=10_000)
    assert rows.count() == before + 1
    sync_api.expect(new).to_contain_text("error")
    trace_id = new.get_attribute("data-trace-id")
    row = page.locator(f"tr[data-trace-id='{trace_id}']")
    shot(page, "requests")

    page.get_by_label("Status").evaluate("el => el.dataset.kept = 'yes'")
    page.get_by_label("Status").select_option("error")
    page.wait_for_url("**/requests?model=&status=error")  # a filtered view can be shared
    sync_api.expect(rows.first).to_have_attribute("data-trace-id", trace_id)
    # Only the rows were swapped: the filters (and the keyboard focus on them) stay put.
    sync_api.expect(page.get_by_label("Status")).to_have_attribute("data-kept", "yes")
    for status in rows.locator(".badge").all_inner_texts():
        assert status == "error"
    page.get_by_label("Status").select_option("")
    page.get_by_label("Model").select_option("smollm2-135m")
    sync_api.expect(row).to_have_count(0)

    page.get_by_label("Model").select_option("")
    sync_api.expect(row).to_be_visible()
    row.get_by_role("link").click()
    page.wait_for_url(f"**/requests/{trace_id}")
    sync_api.expect(page.get_by_role("alert")).to_contain_text("does not exist")


def test_explorer_adds_selected_requests_to_a_dataset(page, server, upstream) -> None:
    upstream.default = {"kind": "ok", "text": "Picked answer."}
    questions = ("First picked question?", "Second picked question?", "Not this one?")
    with server.client() as api:
        model = {"alias": "up-pick", "upstream_name": "up-pick", "base_url": upstream.url}
        api.post("/api/models", json=model).raise_for_status()
        for q in questions:
            body = {"model": "up-pick", "messages": [{"role": "user", "content": q}]}
            api.post("/v1/chat/completions", json=body).raise_for_status()
    sign_in(page)
    page.goto("/requests?model=up-pick")
    rows = page.locator("#request-rows tr[data-trace-id]")
    sync_api.expect(rows).to_have_count(3, timeout=10_000)
    sync_api.expect(page.get_by_role("button", name="Add to dataset")).to_be_disabled()
    # Select all on the page, then untick one: two remain.
    page.get_by_label("Select all requests on this page").check()
    sync_api.expect(page.get_by_text("3 requests selected")).to_be_visible()
    rows.first.get_by_role("checkbox").uncheck()  # newest first: "Not this one?"
    sync_api.expect(page.get_by_text("2 requests selected")).to_be_visible()
    picked = [r.get_attribute("data-trace-id") for r in rows.all()[1:]]
    # The live table refreshes under the selection; the ticks stay.
    page.wait_for_timeout(2500)
    for trace_id in picked:
        sync_api.expect(page.locator(f"tr[data-trace-id='{trace_id}'] input")).to_be_checked()
    page.get_by_label("or name a new one").fill("picked-in-browser")
    shot(page, "requests-selected")
    page.get_by_role("button", name="Add to dataset").click()
    page.wait_for_url("**/datasets/picked-in-browser?added=2")
    sync_api.expect(page.get_by_role("status")).to_contain_text(
        "Added the requests as version 1: 2 added"
    )
    table = page.locator("main table")
    sync_api.expect(table).to_contain_text("First picked question?")
    sync_api.expect(table).to_contain_text("Second picked question?")
    sync_api.expect(table).not_to_contain_text("Not this one?")
    sync_api.expect(table).to_contain_text("Picked answer.")
    sync_api.expect(table.get_by_role("link", name="trace")).to_have_count(2)
    shot(page, "dataset-from-requests")


def test_api_keys_are_created_shown_once_and_revoked(page, server) -> None:
    sign_in(page)
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("ci-bot")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("New API key").input_value()
    assert secret.startswith("ldk-")
    page.get_by_role("button", name="Copy").click()
    sync_api.expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "keys")
    with server.client(key=secret) as api:
        assert api.get("/api/me").json()["role"] == "viewer"

    # Shown once: the list has only the prefix, and reloading neither brings it back nor
    # posts the form again (the create answered with a redirect).
    page.reload()
    assert secret not in page.content()
    sync_api.expect(page.locator("tr", has_text="ci-bot")).to_have_count(1)
    row = page.locator("tr", has_text="ci-bot")
    sync_api.expect(row).to_contain_text(secret[:12])
    row.locator("summary", has_text="Revoke").click()  # irreversible: asks first
    row.get_by_role("button", name=re.compile("Yes, revoke key ci-bot")).click()
    sync_api.expect(row).to_contain_text("revoked")
    with server.client(key=secret) as api:
        assert api.get("/api/me").status_code == 401


def test_models_page_adds_an_openai_compatible_model(page) -> None:
    sign_in(page)
    page.get_by_role("link", name="Models").click()
    sync_api.expect(page.locator("tbody")).to_contain_text("smollm2-135m")
    form = page.locator("form[action='/models']")
    form.get_by_label("Alias").fill("team-gpt")
    form.get_by_label("Upstream model name").fill("gpt-4o-mini")
    form.get_by_label("Base URL").fill("http://127.0.0.1:9/v1")
    form.get_by_label("API key").fill("sk-test-never-shown-again")
    form.get_by_label("Input price").fill("0.15")
    form.get_by_label("Output price").fill("0.6")
    form.get_by_role("button", name="Add model").click()
    sync_api.expect(page.get_by_role("status")).to_contain_text("Added team-gpt")
    row = page.locator("tr", has_text="team-gpt")
    sync_api.expect(row).to_contain_text("$0.15")
    sync_api.expect(row).to_contain_text("stored")
    assert "sk-test-never-shown-again" not in page.content()
    shot(page, "models")


def test_gateway_page_adds_edits_and_deletes_a_route(page) -> None:
    sign_in(page)
    page.get_by_role("link", name="Gateway").click()
    sync_api.expect(page.get_by_role("heading", name="Routes")).to_be_visible()
    page.get_by_role("link", name="Add route").click()
    form = page.locator("#route-form")
    form.get_by_label("Alias").fill("browser chat!")
    first = form.locator("fieldset").first
    first.get_by_label("Name").fill("primary")
    first.get_by_label("Upstream model").fill("gpt-4o-mini")
    first.get_by_label("Base URL").fill("http://127.0.0.1:9/v1")
    first.get_by_label("API key").fill("sk-browser-never-shown")
    first.get_by_label("API key").press("Enter")  # Enter saves (not "Another deployment")
    sync_api.expect(form.get_by_text("Use letters, digits")).to_be_visible()
    sync_api.expect(form.locator("fieldset").first.get_by_label("Name")).to_have_value("primary")
    form.get_by_label("Alias").fill("browser-chat")
    form.locator("fieldset").first.get_by_label("API key").fill("sk-browser-never-shown")
    form.get_by_role("button", name="Add route").click()
    sync_api.expect(page.get_by_role("status")).to_contain_text("Added route browser-chat.")
    card = page.locator(".gw-route", has_text="browser-chat")
    sync_api.expect(card).to_contain_text("gpt-4o-mini")
    sync_api.expect(card).to_contain_text("stored")
    assert "sk-browser-never-shown" not in page.content()
    page.locator("form[aria-label='Set limits']").get_by_label("Requests per minute").fill("60")
    page.get_by_role("button", name="Save limits").click()
    sync_api.expect(page.get_by_role("status")).to_contain_text("Saved the limits")
    shot(page, "gateway")
    card.get_by_text("Delete", exact=True).click()
    card.get_by_role("button", name="Yes, delete").click()
    sync_api.expect(page.get_by_role("status")).to_contain_text("Deleted route browser-chat.")
    sync_api.expect(page.locator(".gw-route", has_text="browser-chat")).to_have_count(0)


def test_stop_cancels_a_running_answer(page, server, upstream) -> None:
    upstream.default = {"kind": "delay", "seconds": 4, "text": "Too late."}
    with server.client() as api:
        model = {"alias": "slow", "upstream_name": "slow", "base_url": upstream.url}
        api.post("/api/models", json=model).raise_for_status()
    sign_in(page)
    page.wait_for_url("**/playground")
    page.get_by_label("smollm2-135m").uncheck()
    page.get_by_label("slow").check()
    page.get_by_label("Message 1", exact=True).fill("Hello?")
    page.get_by_role("button", name="Send").click()
    sync_api.expect(page.locator("[data-field=status]")).to_have_text(
        "Waiting for the first token…"
    )
    page.get_by_role("button", name="Stop").click()
    card = page.locator("article.answer")
    sync_api.expect(card).to_have_attribute("data-state", "error")
    sync_api.expect(card.get_by_role("alert")).to_have_text("Stopped.")
    sync_api.expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_sign_out_ends_the_session(page) -> None:
    sign_in(page)
    page.wait_for_url("**/playground")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in")
    page.goto("/requests")
    assert "/sign-in" in page.url


def test_the_console_is_keyboard_usable(page) -> None:
    sign_in(page)
    page.wait_for_url("**/playground")
    page.keyboard.press("Tab")  # the skip link comes first, then straight into the page
    sync_api.expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    first_model = page.locator("input[name=model]").first
    sync_api.expect(first_model).to_be_focused()
    sync_api.expect(first_model).to_be_checked()
    page.keyboard.press("Space")  # unchecking with the keyboard works like a click
    sync_api.expect(first_model).not_to_be_checked()
    # Every form control of the playground has an accessible name.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll(
                '#composer input, #composer select, #composer textarea, #composer button')]
            .filter(el => !el.labels?.length && !el.getAttribute('aria-label')
                          && !el.textContent.trim())
            .map(el => el.outerHTML)"""
    )
    assert unnamed == []


@pytest.mark.parametrize("width", [1024, 800])
def test_pages_fit_a_small_laptop_screen(page, width: int) -> None:
    sign_in(page)
    page.wait_for_url("**/playground")
    page.set_viewport_size({"width": width, "height": 700})
    for path in ("/playground", "/requests", "/models", "/keys"):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(el => el.getBoundingClientRect().right > innerWidth + 1)
                .filter(el => el.parentElement.getBoundingClientRect().right <= innerWidth + 1)
                .map(el => el.tagName + '.' + el.className)"""
        )
        assert overflow <= 0, f"{path} scrolls sideways at {width}px: {wide}"
        shot(page, f"small-{width}{path.replace('/', '-')}")
