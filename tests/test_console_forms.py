"""Console forms as a user meets them: what they link to, what they refuse and what they keep."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from tests.test_console import add_user, page_csrf, sign_in, sse_events, wait_for_trace


@pytest.fixture
def admin() -> Iterator[tuple[TestClient, str]]:
    """A client signed in as a project admin, with the session's CSRF token."""
    with TestClient(create_app(get_settings()), follow_redirects=False) as client:
        add_user(client.app, "ada@example.com", "admin")
        sign_in(client, "ada@example.com")
        yield client, page_csrf(client)


def test_a_citation_opens_its_passage_in_the_console(admin) -> None:
    client, token = admin
    faq = b"Espresso is brewed by forcing hot water through finely ground coffee beans."
    client.post("/knowledge", data={"name": "notes", "csrf_token": token})
    files = [("files", ("faq.txt", faq))]
    client.post("/knowledge/notes/documents", data={"csrf_token": token}, files=files)
    deadline = time.monotonic() + 120
    while "ingesting" in client.get("/knowledge/notes").text and time.monotonic() < deadline:
        time.sleep(0.2)
    answer = client.post(
        "/knowledge/notes/ask", data={"question": "How is espresso brewed?", "csrf_token": token}
    )
    assert answer.status_code == 200 and 'id="cite-1"' in answer.text
    link = re.search(r'id="cite-1"><strong>\[1\]</strong> <a href="([^"]+)"', answer.text).group(1)
    assert not link.startswith("/api/")  # the API wants a key; the browser has a session
    passage = client.get(link)
    assert passage.status_code == 200
    assert "faq.txt" in passage.text and "finely ground coffee beans" in passage.text
    missing = client.get(link.rsplit("/", 1)[0] + "/999999")
    assert missing.status_code == 404 and "No passage 999999" in missing.text
    client.cookies.clear()
    assert client.get(link).headers["location"].startswith("/sign-in")


def add_model(client: TestClient, token: str, **fields: str):
    form = {"alias": "big", "upstream_name": "big-1", "base_url": "http://127.0.0.1:9/v1"}
    return client.post("/models", data={**form, **fields, "csrf_token": token})


def test_a_huge_context_window_is_a_field_error_and_the_form_is_kept(admin) -> None:
    client, token = admin
    page = add_model(client, token, context_window="99999999999999999999")
    assert page.status_code == 200
    assert "Must be at most 100,000,000." in page.text
    assert 'value="big"' in page.text and 'value="99999999999999999999"' in page.text
    assert add_model(client, token, context_window="100000000").status_code == 303


def test_prices_must_be_finite_numbers(admin) -> None:
    client, token = admin
    for price in ["inf", "nan", "-inf", "Infinity"]:
        page = add_model(client, token, input_price_per_mtok=price)
        assert page.status_code == 200 and "Enter a finite number." in page.text, price
        assert "Must not be negative" not in page.text
    assert "$inf" not in client.get("/models").text


def new_prompt(client: TestClient, token: str, **fields: str):
    form = {"name": "greet", "user": "Hello {{ who }}", "commit_message": "First version"}
    return client.post("/prompts", data={**form, **fields, "csrf_token": token})


def test_new_prompt_refuses_a_name_that_exists_and_keeps_the_form(admin) -> None:
    client, token = admin
    assert new_prompt(client, token, system="Be brief.").headers["location"] == "/prompts/greet?v=1"
    again = new_prompt(client, token, user="Bye {{ who }}", commit_message="mine")
    assert again.status_code == 200
    assert "A prompt named greet already exists." in again.text
    assert "Bye {{ who }}</textarea>" in again.text and 'value="mine"' in again.text
    editor = client.get("/prompts/greet").text
    assert "Save as v2" in editor and "Be brief." in editor  # greet still has one version


def test_a_new_keys_secret_shows_once_and_a_refresh_creates_no_second_key(admin) -> None:
    client, token = admin
    created = client.post("/keys", data={"name": "ci-bot", "role": "viewer", "csrf_token": token})
    assert created.status_code == 303 and created.headers["location"] == "/keys"
    assert "ldk-" not in created.text and "ldk-" not in created.headers["set-cookie"]
    shown = client.get("/keys")
    secret = re.search(r'id="new-secret" type="text" readonly value="(ldk-[^"]+)"', shown.text)
    assert secret and shown.headers["cache-control"] == "no-store"
    refreshed = client.get("/keys")  # what a refresh sends: a GET, no second POST
    assert secret.group(1) not in refreshed.text and "Created key" not in refreshed.text
    assert refreshed.text.count('<span class="cell-main">ci-bot</span>') == 1


def test_a_flash_left_for_one_session_is_not_shown_to_another(admin) -> None:
    client, token = admin
    client.post("/keys", data={"name": "ci-bot", "csrf_token": token})
    left = client.cookies.get("llmdeck_flash", path="/keys")
    add_user(client.app, "eve@example.com", "admin")
    client.cookies.clear()
    sign_in(client, "eve@example.com")  # another session in the same browser
    client.cookies.set("llmdeck_flash", left, path="/keys")
    assert 'id="new-secret"' not in client.get("/keys").text
    client.cookies.set("llmdeck_flash", "forged", path="/keys")
    assert client.get("/keys").status_code == 200


def test_the_prompt_editor_keeps_edits_and_says_what_is_wrong(admin) -> None:
    client, token = admin
    new_prompt(client, token)
    edits = {"system": "Be kind.", "user": "Hi {{ who }}!", "commit_message": "kinder"}
    page = client.post(
        "/prompts/greet/versions",
        data={**edits, "params": "{temperature: 0.2", "from_version": "1", "csrf_token": token},
    )
    assert page.status_code == 200  # the editor again, not the prompt list
    assert 'id="ed-params-error"' in page.text and "Enter a JSON object" in page.text
    assert "Expecting" not in page.text  # not the parser's own words
    assert "Be kind.</textarea>" in page.text and 'value="kinder"' in page.text
    assert 'value="{temperature: 0.2"' in page.text
    broken = client.post(
        "/prompts/greet/versions",
        data={**edits, "user": "Hi {{ who ", "params": "{}", "csrf_token": token},
    )
    assert 'id="ed-user-error"' in broken.text and "Hi {{ who </textarea>" in broken.text
    assert "Save as v2" in client.get("/prompts/greet").text  # nothing was saved
    saved = client.post("/prompts/greet/versions", data={**edits, "csrf_token": token})
    assert saved.headers["location"] == "/prompts/greet?v=2"
    moved = client.post(
        "/prompts/greet/labels",
        data={"label": "staging", "version": "9", "from_version": "2", "csrf_token": token},
    )
    assert 'id="lb-move_version-error"' in moved.text and "has no version 9" in moved.text
    assert 'value="staging"' in moved.text


def test_the_new_prompt_form_keeps_what_was_typed_on_any_error(admin) -> None:
    client, token = admin
    page = new_prompt(client, token, name="bad name!", system="Be brief.", user="Hi {{ x ")
    assert page.status_code == 200
    assert 'id="np-name-error"' in page.text and "Use letters, digits" in page.text
    assert 'id="np-user-error"' in page.text
    assert 'value="bad name!"' in page.text and "Be brief.</textarea>" in page.text
    assert "Hi {{ x </textarea>" in page.text


def test_labels_that_cannot_follow_an_at_sign_are_refused(admin) -> None:
    client, token = admin
    new_prompt(client, token)
    for label in ["bad label!", "12", "@prod", "-x"]:
        moved = client.post(
            "/prompts/greet/labels", data={"label": label, "version": "1", "csrf_token": token}
        )
        assert 'id="lb-move_label-error"' in moved.text, label
        assert "not only digits" in moved.text and "prompt:NAME@LABEL" in moved.text
    saved = client.post(
        "/prompts/greet/versions",
        data={"user": "Hi", "commit_message": "x", "label": "bad label!", "csrf_token": token},
    )
    assert 'id="ed-label-error"' in saved.text and 'value="bad label!"' in saved.text
    editor = client.get("/prompts/greet").text
    assert "Save as v2" in editor and "No labels yet." in editor
    ok = client.post(
        "/prompts/greet/labels", data={"label": "canary.2", "version": "1", "csrf_token": token}
    )
    assert ok.status_code == 303 and "canary.2 → v1" in client.get("/prompts/greet").text


def failed_requests(client: TestClient, token: str, n: int) -> list[str]:
    """Trace ids of `n` playground calls to a model that does not exist (each is recorded)."""
    run = {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"X-CSRF-Token": token, "Accept": "text/event-stream"}
    ids = []
    for _ in range(n):
        events = sse_events(client.post("/playground/stream", json=run, headers=headers).text)
        ids.append(events[0][1]["trace_id"])
    with client.app.state.runtime.db.session() as session:
        project_id = identity.get_project_by_name(session, name="default").id
    for trace_id in ids:
        wait_for_trace(client.app, project_id, trace_id)
    return ids


def ticked(page: str, trace_id: str) -> bool:
    return f'value="{trace_id}" form="to-dataset" checked' in page


def test_add_to_dataset_keeps_the_ticks_and_asks_before_adding_to_an_existing_one(admin) -> None:
    client, token = admin
    first, second = failed_requests(client, token, 2)
    form = {"csrf_token": token, "trace_ids": [first], "back": "/requests?model=&status=error"}
    page = client.post("/datasets/from-requests", data=form)
    assert page.status_code == 200  # the explorer again, not a redirect carrying the error
    assert "Pick a dataset, or name a new one." in page.text
    assert ticked(page.text, first) and not ticked(page.text, second)
    assert 'value="error" selected' in page.text  # the filters it was sent from
    assert "Pick a dataset" not in client.get("/requests").text  # said once
    made = client.post("/datasets/from-requests", data={**form, "new_dataset": "picked"})
    assert made.headers["location"] == "/datasets/picked?added=1"
    # Naming it again as "new" does not quietly add a version: it says so and offers to add.
    again = client.post(
        "/datasets/from-requests", data={**form, "trace_ids": [second], "new_dataset": "picked"}
    )
    assert again.status_code == 200 and "A dataset named picked already exists." in again.text
    assert 'name="existing" value="picked"' in again.text and ticked(again.text, second)
    assert "Version 1 of 1" in client.get("/datasets/picked").text
    added = client.post(
        "/datasets/from-requests",
        data={**form, "trace_ids": [second], "dataset": "picked", "existing": "picked"},
    )
    assert added.headers["location"] == "/datasets/picked?added=1"
    assert "Version 2 of 2" in client.get("/datasets/picked").text


def test_the_models_form_says_every_problem_in_words_and_asks_for_the_key_again(admin) -> None:
    client, token = admin
    empty = add_model(client, token, alias="", upstream_name="", base_url="", api_key="sk-x")
    assert empty.status_code == 200 and empty.text.count("Required.") == 3
    for name in ("alias", "upstream_name", "base_url"):
        assert f'id="m-{name}-error"' in empty.text
    assert "Enter the key again (it is never sent back to the browser)." in empty.text
    assert "sk-x" not in empty.text
    long = add_model(client, token, alias="a" * 201)
    assert "At most 200 characters." in long.text and "String should have" not in long.text
    assert "Enter the key again" not in long.text  # no key was typed


def test_say_puts_common_pydantic_errors_in_words() -> None:
    from pydantic import BaseModel, Field, ValidationError

    from llmdeck.console.forms import say

    class Form(BaseModel):
        name: str = Field(max_length=3)
        code: str = Field(min_length=4)
        n: int = Field(ge=1, lt=10)
        tags: list[str] = Field(max_length=1)

    with pytest.raises(ValidationError) as caught:
        Form(name="abcd", code="ab", n=0, tags=["a", "b"])
    said = {e["loc"][0]: say(e) for e in caught.value.errors()}
    assert said == {
        "name": "At most 3 characters.",
        "code": "At least 4 characters.",
        "n": "Must be at least 1.",
        "tags": "At most 1 item.",
    }


def test_a_refused_knowledge_base_name_keeps_the_description(admin) -> None:
    client, token = admin
    form = {"name": "bad name!", "description": "Team <handbook>", "csrf_token": token}
    page = client.post("/knowledge", data=form)
    assert page.status_code == 200 and "Use letters, digits" in page.text
    assert 'value="bad name!"' in page.text and 'value="Team &lt;handbook&gt;"' in page.text
    assert 'placeholder="What it holds" value=""' in client.get("/knowledge").text


def test_playground_settings_carry_the_schemas_bounds_and_a_refusal_is_in_words(admin) -> None:
    client, token = admin
    page = client.get("/playground").text
    assert 'id="temperature-value" data-param="temperature" min="0" max="2"' in page
    assert 'id="max-tokens" data-param="max_tokens" min="1" max="8192"' in page
    headers = {"X-CSRF-Token": token, "Accept": "text/event-stream"}
    run = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "hi"}]}
    for field, value, words in [
        ("temperature", 5, "Must be at most 2."),
        ("max_tokens", 99999, "Must be at most 8,192."),
        ("max_tokens", 0, "Must be at least 1."),
    ]:
        refused = client.post("/playground/stream", json=run | {field: value}, headers=headers)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == field and error["message"] == words
    empty = client.post("/playground/stream", json={"model": "x"}, headers=headers).json()
    assert empty["error"]["message"] == "Write a message to send, or pick a prompt."


def test_revoking_a_key_asks_first_without_javascript(admin) -> None:
    client, token = admin
    client.post("/keys", data={"name": "ci-bot", "role": "viewer", "csrf_token": token})
    page = client.get("/keys").text
    confirm = re.search(r'<details class="confirm">(.*?)</details>', page, re.S).group(1)
    assert "<summary" in confirm and "Revoke ci-bot? Calls with this key will fail" in confirm
    assert "Yes, revoke</button>" in confirm  # the only button that posts is behind the summary
    action = re.search(r'action="(/keys/[^"]+/revoke)"', confirm).group(1)
    assert client.post(action, data={"csrf_token": token}).status_code == 303
    assert 'badge-muted">revoked' in client.get("/keys").text


def test_a_new_prompt_starts_on_the_bundled_chat_model(admin) -> None:
    client, token = admin
    assert add_model(client, token, alias="aaa-mine").status_code == 303  # sorts first
    page = client.get("/prompts").text
    options = re.search(r'<select id="np-model" name="model">(.*?)</select>', page, re.S).group(1)
    assert "<option >aaa-mine</option>" in options.replace("\n", "")
    assert "<option selected>smollm2-135m</option>" in options
