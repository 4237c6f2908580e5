"""Knowledge-base defects QA found, each checked the way a user meets it: the CLI in-process,
the REST API through the app on both databases."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmdeck.cli.main import app
from llmdeck.knowledge import parsing
from tests.test_knowledge import api as api  # noqa: F401 - the fixture, shared
from tests.test_knowledge import create_kb, search, upload, wait

DOCX_XML = (
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    b"<w:body><w:p><w:r><w:t>Warranty lasts two years.</w:t></w:r></w:p></w:body></w:document>"
)


def llmdeck(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(result, says: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines


@pytest.mark.parametrize(
    ("value", "says"),
    [("{bad", "--filter must be a JSON object"), ("[1]", "--filter must be a JSON object")],
)
def test_kb_search_refuses_a_filter_that_is_not_a_json_object(db, value: str, says: str) -> None:
    one_error_line(llmdeck("kb", "search", "support", "hello", "--filter", value), says)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def _refused(http, files: dict[str, bytes]) -> dict:
    response = http.post(
        "/api/knowledge-bases/docs/documents",
        files=[("files", (name, body)) for name, body in files.items()],
    )
    assert response.status_code == 400, response.text
    return response.json()["error"]


def test_a_zip_archive_is_refused_at_upload_and_nothing_is_stored(api) -> None:
    http, _ = api
    create_kb(http)
    bundle = _zip({"returns.md": b"# Returns\n\nWithin 30 days.", "notes.txt": b"Hello."})
    error = _refused(http, {"bundle.zip": bundle, "ok.txt": b"A fine file."})
    assert error["code"] == "unsupported_type"
    assert error["message"].startswith("bundle.zip is a zip archive, which is not supported")
    assert "upload the files in it instead" in error["message"]
    # A zip named .docx that holds no Word document is not readable as one either.
    error = _refused(http, {"report.docx": bundle})
    assert error["message"].startswith("report.docx is not a readable Word document")
    kb = http.get("/api/knowledge-bases/docs").json()
    assert kb["document_count"] == 0
    assert http.get("/api/knowledge-bases/docs/documents").json()["data"] == []
    # A real Word document still goes in.
    docx = _zip({"word/document.xml": DOCX_XML})
    assert (
        upload(http, "docs", {"real.docx": docx})["documents"][0]["content_type"]
        == (parsing.CONTENT_TYPES["docx"])
    )


def test_a_file_whose_content_is_not_its_extensions_format_says_so(api) -> None:
    http, _ = api
    create_kb(http)
    error = _refused(http, {"bad.pdf": b"\x00\x01\x02garbage"})
    assert error["message"].startswith("bad.pdf is not a readable PDF (")
    assert "not a supported file type" not in error["message"]
    assert _refused(http, {"bad.csv": b"\x00\x01\x02"})["message"].startswith(
        "bad.csv is not a readable CSV file (it holds binary data)"
    )
    # An extension we do not read still gets the list of those we do.
    error = _refused(http, {"image.png": b"\x89PNG\x00\x00"})
    assert error["message"] == (
        f"image.png is not a supported file type; upload one of: {parsing.SUPPORTED}."
    )


def test_kb_add_refuses_a_zip_named_as_text_with_its_reason(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bundle.txt").write_bytes(_zip({"a.md": b"# A"}))
    (docs / "fine.md").write_text("# Fine\n\nShipping takes two days.")
    result = llmdeck("kb", "add", "support", str(docs))
    assert result.exit_code == 1
    assert "bundle.txt: bundle.txt is a zip archive, which is not supported" in result.stderr
    assert "1 new or changed, 0 unchanged, 1 refused" in result.stdout


def test_a_replaced_document_keeps_its_metadata_unless_new_metadata_is_sent(
    api, tmp_path: Path
) -> None:
    http, _ = api
    create_kb(http, "support")
    first = upload(
        http,
        "support",
        {"returns.md": b"# Returns\n\nReturns within 30 days."},
        metadata='{"team": "cs"}',
    )
    wait(http, first["job_id"])
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "returns.md").write_text("# Returns\n\nReturns within 60 days, with the receipt.")
    added = llmdeck("kb", "add", "support", str(docs))
    assert added.exit_code == 0, added.output
    assert "1 new or changed" in added.stdout
    (document,) = http.get("/api/knowledge-bases/support/documents").json()["data"]
    assert document["metadata"] == {"team": "cs", "format": "md"}
    hits = search(http, "support", "returns receipt", filters={"team": "cs"})
    assert [h["document_name"] for h in hits] == ["returns.md"]
    assert "60 days" in hits[0]["text"]
    # An upload that sends metadata sets it.
    again = upload(
        http, "support", {"returns.md": b"# Returns\n\nNo returns."}, metadata='{"team": "ops"}'
    )
    wait(http, again["job_id"])
    (document,) = http.get("/api/knowledge-bases/support/documents").json()["data"]
    assert document["metadata"] == {"team": "ops", "format": "md"}
    assert search(http, "support", "returns", filters={"team": "cs"}) == []


def test_an_unknown_filter_key_is_refused_naming_the_keys_there_are(api) -> None:
    http, _ = api
    create_kb(http, "support")
    done = upload(
        http,
        "support",
        {"warranty.md": b"# Warranty\n\nThe warranty lasts two years."},
        metadata='{"team": "cs"}',
    )
    wait(http, done["job_id"])
    response = http.post(
        "/api/knowledge-bases/support/search",
        json={"query": "warranty", "filters": {"bogus": "x"}},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_filter_key"
    assert error["message"].startswith("Unknown filter key 'bogus'")
    for key in ("document", "format", "team"):
        assert key in error["message"]
    # Known keys filter as before, matching or not.
    assert search(http, "support", "warranty", filters={"team": "cs"})
    assert search(http, "support", "warranty", filters={"team": "ops"}) == []
    assert search(http, "support", "warranty", filters={"document": "warranty.md"})
    one_error_line(
        llmdeck("kb", "search", "support", "warranty", "--filter", '{"bogus": "x"}'),
        "Unknown filter key 'bogus'",
    )


def test_jsonl_rows_bring_their_own_keys_so_an_unknown_one_is_a_notice(api) -> None:
    http, _ = api
    create_kb(http, "lines")
    rows = b'{"text": "Volcanoes erupt lava.", "lang": "en"}\n'
    wait(http, upload(http, "lines", {"rows.jsonl": rows})["job_id"])
    assert search(http, "lines", "volcanoes", filters={"lang": "en"})  # a row's own key
    response = http.post(
        "/api/knowledge-bases/lines/search",
        json={"query": "volcanoes", "filters": {"bogus": "x"}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []
    assert "'bogus'" in response.json()["notice"]


def test_kb_ask_and_search_take_the_apis_retrieval_options(api, upstream) -> None:
    http, _ = api
    added = http.post(
        "/api/models", json={"alias": "scripted", "upstream_name": "m", "base_url": upstream.url}
    )
    assert added.status_code == 201, added.text
    create_kb(http, "support")
    files = {
        "warranty.md": b"# Warranty\n\nThe warranty lasts two years.",
        "returns.md": b"# Returns\n\nReturns are accepted within 30 days of the warranty start.",
    }
    wait(http, upload(http, "support", files)["job_id"])
    upstream.default = {"kind": "ok", "text": "Thirty days [1]."}
    asked = llmdeck(
        "kb", "ask", "support", "warranty returns", "--model", "scripted", "--json",
        "--mode", "keyword", "--top-k", "1", "--filter", '{"document": "returns.md"}',
    )  # fmt: skip
    assert asked.exit_code == 0, asked.output
    sources = json.loads(asked.stdout)["sources"]
    assert [s["document_name"] for s in sources] == ["returns.md"]

    found = llmdeck(
        "kb", "search", "support", "warranty", "--json", "--keyword-weight", "2",
        "--vector-weight", "0.5", "--mmr", "--mmr-lambda", "0.7", "--rerank", "embedding",
    )  # fmt: skip
    assert found.exit_code == 0, found.output
    assert {h["document_name"] for h in json.loads(found.stdout)} == set(files)

    # Refused by the API's own schema, named as typed.
    one_error_line(llmdeck("kb", "ask", "support", "q", "--top-k", "0"), "--top-k: Input should be")
    one_error_line(
        llmdeck("kb", "search", "support", "q", "--mmr-lambda", "2"), "--mmr-lambda: Input should"
    )
    one_error_line(llmdeck("kb", "ask", "support", "q", "--rerank", "bogus"), "rerank")
    one_error_line(llmdeck("kb", "ask", "support", "q", "--filter", "{bad"), "--filter must be")
