"""Knowledge bases in the console: search, and deleting documents and whole bases."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.db import Database
from llmdeck.core.settings import Settings
from tests.test_console import add_user, page_csrf, sign_in
from tests.test_knowledge import FAQ, GUIDE


@pytest.fixture
def console(db: Database, settings: Settings) -> Iterator[TestClient]:
    """A builder's browser session on a knowledge base `notes` with two ingested files."""
    with TestClient(create_app(settings), follow_redirects=False) as http:
        add_user(http.app, "builder@x.io", "builder")
        add_user(http.app, "viewer@x.io", "viewer")
        sign_in(http, "builder@x.io")
        token = page_csrf(http, "/knowledge")
        http.post("/knowledge", data={"name": "notes", "csrf_token": token})
        files = [("files", ("faq.txt", FAQ)), ("files", ("solar.md", GUIDE))]
        http.post("/knowledge/notes/documents", data={"csrf_token": token}, files=files)
        deadline = time.monotonic() + 120
        while "ingesting" in http.get("/knowledge/notes").text:
            assert time.monotonic() < deadline, "ingestion did not finish"
            time.sleep(0.2)
        yield http


def search(http: TestClient, htmx: bool = False, **fields: str):
    form = {"csrf_token": page_csrf(http, "/knowledge/notes"), **fields}
    headers = {"HX-Request": "true"} if htmx else {}
    return http.post("/knowledge/notes/search", data=form, headers=headers)


def switch_to(http: TestClient, email: str) -> None:
    http.cookies.clear()
    sign_in(http, email)


def test_search_ranks_chunks_with_their_document_score_and_passage(console) -> None:
    page = console.get("/knowledge/notes").text
    assert 'id="search-panel"' in page and 'name="mode"' in page and 'name="top_k"' in page
    switch_to(console, "viewer@x.io")  # reading is a viewer's right, as in the API
    found = search(console, query="clean solar panels inverter", mode="keyword", top_k="3")
    assert found.status_code == 200
    hit = re.search(r'id="hit-1">\s*<a href="([^"]+)"><strong>([^<]+)</strong>', found.text)
    assert hit and hit.group(2) == "solar.md"
    assert re.search(r"score \d+\.\d{4}", found.text)
    assert 'value="clean solar panels inverter"' in found.text  # the query stays in the box
    passage = console.get(hit.group(1))
    assert passage.status_code == 200 and "check the inverter" in passage.text
    # htmx swaps in just the panel, searched the same way (hybrid embeds the query).
    panel = search(console, htmx=True, query="How is coffee brewed?", mode="hybrid", top_k="1")
    assert panel.status_code == 200 and panel.text.lstrip().startswith("<section")
    assert "<html" not in panel.text and panel.text.count('id="hit-') == 1
    assert "faq.txt" in panel.text and "/traces/" in panel.text


def test_search_keeps_what_was_typed_and_says_what_to_fix(console) -> None:
    refused = search(console, query="  ", mode="fuzzy", top_k="lots")
    assert refused.status_code == 200
    assert "Type what to search for" in refused.text
    assert "Choose hybrid, keyword or vector." in refused.text
    assert "Enter a whole number from 1 to 100." in refused.text
    assert 'value="lots"' in refused.text and refused.text.count('class="field-error"') == 3
    too_many = search(console, query="espresso", mode="keyword", top_k="101")
    assert 'value="espresso"' in too_many.text and "from 1 to 100" in too_many.text
    assert 'id="hit-1"' not in too_many.text
    forged = console.post("/knowledge/notes/search", data={"query": "espresso"})
    assert forged.status_code == 403


def test_deleting_a_document_is_confirmed_then_it_is_gone(console) -> None:
    page = console.get("/knowledge/notes").text
    link = re.search(r'href="(/knowledge/notes/documents/\w+/delete)" aria-label="Delete faq', page)
    confirm = console.get(link.group(1))
    assert confirm.status_code == 200 and "Delete the document faq.txt?" in confirm.text
    switch_to(console, "viewer@x.io")
    assert "/delete" not in console.get("/knowledge/notes").text
    assert console.get(link.group(1)).status_code == 403
    token = page_csrf(console, "/knowledge/notes")
    assert console.post(link.group(1), data={"csrf_token": token}).status_code == 403
    switch_to(console, "builder@x.io")
    token = page_csrf(console, "/knowledge/notes")
    deleted = console.post(link.group(1), data={"csrf_token": token})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/knowledge/notes"
    shown = console.get("/knowledge/notes").text
    assert "Deleted the document faq.txt." in shown and "solar.md" in shown
    assert "faq.txt" not in shown.replace("Deleted the document faq.txt.", "")
    assert "Deleted the document" not in console.get("/knowledge/notes").text  # shown once
    gone = search(console, query="espresso coffee", mode="keyword")
    assert 'id="hit-1"' not in gone.text and "No chunk matches" in gone.text
    assert console.get(link.group(1)).status_code == 404


def test_deleting_a_knowledge_base_needs_its_name_typed(console) -> None:
    assert 'href="/knowledge/notes/delete"' in console.get("/knowledge/notes").text
    token = page_csrf(console, "/knowledge/notes")
    wrong = console.post("/knowledge/notes/delete", data={"confirm": "note", "csrf_token": token})
    assert wrong.status_code == 200 and "Type notes exactly to confirm" in wrong.text
    assert 'value="note"' in wrong.text and 'aria-invalid="true"' in wrong.text
    assert console.get("/knowledge/notes").status_code == 200
    switch_to(console, "viewer@x.io")
    token = page_csrf(console, "/knowledge")
    form = {"confirm": "notes", "csrf_token": token}
    assert console.post("/knowledge/notes/delete", data=form).status_code == 403
    switch_to(console, "builder@x.io")
    token = page_csrf(console, "/knowledge")
    done = console.post("/knowledge/notes/delete", data={"confirm": "notes", "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == "/knowledge"
    listed = console.get("/knowledge").text
    assert "Deleted the knowledge base notes with its documents." in listed
    assert 'href="/knowledge/notes"' not in listed
    assert console.get("/knowledge/notes").status_code == 404
