"""The console's search and ask forms take every retrieval option the API and CLI take:
filters, hybrid weights, MMR and reranking, kept as typed and refused beside their field."""

from __future__ import annotations

import html
import json
import re
import time

from fastapi.testclient import TestClient

from tests.test_console import page_csrf
from tests.test_knowledge_console import console as console  # noqa: F401 - the fixture, shared
from tests.test_knowledge_console import search, switch_to

HIT = re.compile(
    r'id="hit-\d+">\s*<a href="[^"]+"><strong>([^<]+)</strong>.*?score (-?\d+\.\d{4})', re.S
)


def hits(page: str) -> list[tuple[str, float]]:
    """The ranked hits a search panel shows: (document, score), best first."""
    return [(name, float(score)) for name, score in HIT.findall(page)]


def documents(page: str) -> list[str]:
    return [name for name, _ in hits(page)]


def field_error(page: str, field_id: str) -> str:
    """The message shown beside one field, by the field's element id."""
    found = re.search(rf'class="field-error" id="{field_id}-error">([^<]*)<', page)
    assert found, f"no message beside {field_id}"
    return html.unescape(found.group(1))


def value_of(page: str, field_id: str) -> str:
    """What an input or textarea holds, by its element id."""
    found = re.search(rf'id="{field_id}"[^>]*?value="([^"]*)"', page) or re.search(
        rf'<textarea id="{field_id}"[^>]*>([^<]*)</textarea>', page
    )
    assert found, f"no field {field_id}"
    return html.unescape(found.group(1))


def advanced_open(page: str, form: str) -> bool:
    return f'<details id="{form}-advanced" style="flex-basis:100%" open>' in page


def ask(http: TestClient, **fields: str):
    form = {"csrf_token": page_csrf(http, "/knowledge/notes"), **fields}
    return http.post("/knowledge/notes/ask", data=form)


def test_filters_narrow_the_results_and_stay_as_typed(console) -> None:
    query = {"query": "solar panels and espresso coffee", "mode": "hybrid", "top_k": "5"}
    assert set(documents(search(console, **query).text)) == {"faq.txt", "solar.md"}
    page = console.get("/knowledge/notes").text
    assert "Advanced options" in page and 'name="filters"' in page
    assert "Keys here: document," in page  # what there is to filter on

    narrowed = search(console, **query, filters="document=solar.md").text
    assert documents(narrowed) == ["solar.md", "solar.md"]
    assert value_of(narrowed, "search-filters") == "document=solar.md"
    assert advanced_open(narrowed, "search") and not advanced_open(page, "search")
    # A key on several lines matches any of its values, as a JSON list does in the API.
    both = search(console, **query, filters="document=solar.md\ndocument=faq.txt\n").text
    assert set(documents(both)) == {"faq.txt", "solar.md"}
    # The API's JSON form is taken too, as the CLI's --filter takes it.
    as_json = search(console, **query, filters='{"document": ["faq.txt"]}').text
    assert documents(as_json) == ["faq.txt"]
    # Reading is a viewer's right, filters included, as in the API.
    switch_to(console, "viewer@x.io")
    panel = search(console, htmx=True, **query, filters="document = faq.txt")
    assert panel.status_code == 200 and documents(panel.text) == ["faq.txt"]


def test_weights_change_the_hybrid_ranking(console) -> None:
    # Keyword search ranks faq.txt first for these words ("hot water"), vector search
    # solar.md ("electricity"): the weights decide which ranking leads.
    query = {"query": "hot water electricity", "mode": "hybrid", "top_k": "1"}
    keyword_led = search(console, **query, keyword_weight="10", vector_weight="0").text
    vector_led = search(console, **query, keyword_weight="0", vector_weight="10").text
    assert hits(keyword_led) == [("faq.txt", 0.1639)]  # 10 / (60 + rank 1)
    assert "keyword #1" in keyword_led
    assert hits(vector_led) == [("solar.md", 0.1639)]
    assert "vector #1" in vector_led
    assert value_of(vector_led, "search-keyword-weight") == "0"
    assert value_of(vector_led, "search-vector-weight") == "10"
    # Left blank, a weight is the API's default (1), not an error.
    blank = search(console, **query, keyword_weight="", vector_weight="").text
    assert len(hits(blank)) == 1 and 'class="field-error"' not in blank


def test_mmr_and_rerank_work_from_the_console(console) -> None:
    query = {"query": "solar panels", "mode": "vector", "top_k": "2"}
    assert documents(search(console, **query).text) == ["solar.md", "solar.md"]
    # Diversity only (lambda 0): after the best passage, the one least like it.
    varied = search(console, **query, mmr="on", mmr_lambda="0").text
    assert documents(varied) == ["solar.md", "faq.txt"]
    assert 'id="search-mmr" name="mmr" value="on" checked' in varied
    assert value_of(varied, "search-mmr-lambda") == "0" and advanced_open(varied, "search")

    hybrid = {"query": "solar panels", "mode": "hybrid", "top_k": "2"}
    fused = hits(search(console, **hybrid).text)
    assert fused and all(score <= 2 / 61 + 1e-4 for _, score in fused)  # RRF scores
    reranked_page = search(console, **hybrid, rerank="embedding").text
    reranked = hits(reranked_page)
    # Re-scored by cosine similarity to the query: far above any RRF score, best first.
    assert [name for name, _ in reranked] == ["solar.md", "solar.md"]
    assert reranked[0][1] > 0.5 and reranked[0][1] >= reranked[1][1]
    assert '<option value="embedding" selected>' in reranked_page


def test_bad_options_are_said_beside_their_field_and_kept(console) -> None:
    refused = search(
        console,
        query="solar",
        keyword_weight="11",
        vector_weight="-1",
        mmr_lambda="2",
        rerank="bogus",
        filters="document=solar.md\ncolour red",
    )
    assert refused.status_code == 200 and not hits(refused.text)
    page = refused.text
    assert field_error(page, "search-keyword-weight") == "Enter a number from 0 to 10."
    assert field_error(page, "search-vector-weight") == "Enter a number from 0 to 10."
    assert field_error(page, "search-mmr-lambda") == "Enter a number from 0 to 1."
    assert field_error(page, "search-rerank") == "Choose none or embedding."
    assert field_error(page, "search-filters") == (
        "Filter line 2 has no '=' in 'colour red': write key=value, e.g. document=faq.md."
    )
    assert value_of(page, "search-keyword-weight") == "11"
    assert value_of(page, "search-vector-weight") == "-1"
    assert value_of(page, "search-mmr-lambda") == "2"
    assert value_of(page, "search-filters") == "document=solar.md\ncolour red"
    assert value_of(page, "search-query") == "solar" and advanced_open(page, "search")

    # The service's own refusals land beside the field too: a key no document has ...
    unknown = search(console, htmx=True, query="solar", filters="colour=red")
    assert unknown.status_code == 200 and unknown.text.lstrip().startswith("<section")
    message = field_error(unknown.text, "search-filters")
    assert message.startswith("Unknown filter key 'colour'") and "document" in message
    # ... and a key no metadata could have.
    odd = search(console, query="solar", filters="bad key=x").text
    assert "Filter key 'bad key' must be letters" in field_error(odd, "search-filters")


def test_an_unknown_key_that_jsonl_rows_might_have_is_a_notice(console) -> None:
    token = page_csrf(console, "/knowledge/notes")
    rows = b'{"text": "Volcanoes erupt molten lava and ash.", "lang": "en"}\n'
    files = [("files", ("rows.jsonl", rows))]
    console.post("/knowledge/notes/documents", data={"csrf_token": token}, files=files)
    deadline = time.monotonic() + 120
    while "ingesting" in console.get("/knowledge/notes").text:
        assert time.monotonic() < deadline, "ingestion did not finish"
        time.sleep(0.2)
    found = search(console, query="volcanoes lava", mode="keyword", filters="lang=en").text
    assert documents(found) == ["rows.jsonl"]
    page = search(console, query="volcanoes lava", mode="keyword", filters="colour=red").text
    assert not hits(page) and 'class="field-error"' not in page
    notice = re.search(r'id="search-filters-notice">.*?<span>([^<]+)</span>', page, re.S)
    assert notice and "'colour'" in html.unescape(notice.group(1))
    assert advanced_open(page, "search")


def test_the_ask_form_takes_the_same_options_and_honours_a_filter(console) -> None:
    page = console.get("/knowledge/notes").text
    assert 'id="ask-advanced"' in page and 'id="ask-filters"' in page
    question = "How often should the solar panels be cleaned?"
    # Unfiltered, this question finds the solar guide first.
    unfiltered = search(console, query=question, top_k="3").text
    assert documents(unfiltered)[0] == "solar.md"

    refused = ask(console, question=question, keyword_weight="11", filters="oops")
    assert refused.status_code == 200 and 'id="answer"' not in refused.text
    assert field_error(refused.text, "ask-keyword-weight") == "Enter a number from 0 to 10."
    assert field_error(refused.text, "ask-filters").startswith("Filter has no '=' in 'oops'")
    assert value_of(refused.text, "question") == question
    assert value_of(refused.text, "ask-filters") == "oops"
    assert value_of(refused.text, "ask-keyword-weight") == "11"
    unknown = ask(console, question=question, filters="colour=red").text
    assert field_error(unknown, "ask-filters").startswith("Unknown filter key 'colour'")
    blank = ask(console, question="  ").text
    assert field_error(blank, "question") == "Type a question (at most 4,000 characters)."

    answered = ask(console, question=question, top_k="3", filters="document=faq.txt").text
    assert 'id="answer"' in answered
    # Every retrieved chunk, cited or not, comes from the one document the filter lets in.
    sources = re.findall(r'id="cite-\d+"><strong>\[\d+\]</strong> <a [^>]+>([^<,]+)', answered)
    assert sources == ["faq.txt"]
    assert value_of(answered, "ask-filters") == "document=faq.txt"
    assert value_of(answered, "ask-top-k") == "3" and advanced_open(answered, "ask")

    switch_to(console, "viewer@x.io")  # asking is a builder's right, as in the API
    assert ask(console, question=question, filters="document=faq.txt").status_code == 403


def test_the_cli_takes_and_refuses_filters_as_the_console_does(console) -> None:
    from typer.testing import CliRunner

    from llmdeck.cli.main import app

    def cli(*args: str):
        return CliRunner().invoke(app, ["kb", "search", "notes", "solar and espresso", *args])

    lines = "document=faq.txt\ndocument=solar.md"
    found = cli("--json", "--mode", "keyword", "--filter", "document=faq.txt")
    assert found.exit_code == 0, found.output
    assert {h["document_name"] for h in json.loads(found.stdout)} == {"faq.txt"}
    both = cli("--json", "--mode", "keyword", "--filter", lines)
    assert {h["document_name"] for h in json.loads(both.stdout)} == {"faq.txt", "solar.md"}
    refused = cli("--filter", "oops")
    assert refused.exit_code == 1
    said = "has no '=' in 'oops': write key=value, e.g. document=faq.md."
    assert refused.stderr.strip() == f"error: --filter {said}"
    page = search(console, query="solar and espresso", filters="oops").text
    assert field_error(page, "search-filters") == f"Filter {said}"
