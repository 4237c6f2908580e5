"""Knowledge bases through the REST API, on SQLite and PostgreSQL: ingest, search, update,
delete, hostile files, versions, answers with citations, and project isolation."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llmdeck.app import create_app
from llmdeck.core.db import Database
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate, ProjectCreate
from llmdeck.knowledge import parsing
from llmdeck.knowledge.models import Chunk
from llmdeck.tracing import service as tracing
from llmdeck.tracing.models import Span
from tests.test_knowledge_parsing import make_pdf

GUIDE = b"""# Solar guide

Solar panels turn sunlight into electricity with photovoltaic cells.

## Maintenance

Clean the solar panels twice a year and check the inverter for faults.
"""
FAQ = b"""Espresso is brewed by forcing hot water through finely ground coffee beans.

A good espresso shot takes about twenty-five seconds."""
PAGE = b"<html><body><h1>Birds</h1><p>Penguins cannot fly but swim very well.</p></body></html>"
ROWS = b"city,country\nLisbon,Portugal\nOslo,Norway\n"
LINES = (
    b'{"text": "Volcanoes erupt molten lava and ash.", "lang": "en"}\n'
    b'{"text": "Les glaciers fondent lentement.", "lang": "fr"}\n'
)


def _key(db: Database, project: str) -> str:
    with db.session() as session:
        target = identity.ensure_project(session, name=project)
        _, secret = identity.create_key(
            session, project=target, data=ApiKeyCreate(name="t", role="admin")
        )
    return secret


@pytest.fixture
def api(db: Database, settings: Settings) -> Iterator[tuple[TestClient, Database]]:
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {_key(db, 'default')}"
        yield http, db


def wait(http: TestClient, job_id: str, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = http.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("done", "failed"):
            assert job["status"] == "done", job
            return job
        time.sleep(0.1)
    raise AssertionError("the ingestion job did not finish")


def upload(http: TestClient, kb: str, files: dict[str, bytes], headers=None, **data) -> dict:
    response = http.post(
        f"/api/knowledge-bases/{kb}/documents",
        files=[("files", (name, body)) for name, body in files.items()],
        data=data,
        headers=headers,
    )
    assert response.status_code == 202, response.text
    return response.json()


def search(http: TestClient, kb: str, query: str, headers=None, **options) -> list[dict]:
    response = http.post(
        f"/api/knowledge-bases/{kb}/search", json={"query": query, **options}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def create_kb(http: TestClient, name: str = "docs", headers=None, **options) -> dict:
    response = http.post("/api/knowledge-bases", json={"name": name, **options}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_ingest_search_update_and_delete(api) -> None:
    http, db = api
    create_kb(http)
    result = upload(
        http,
        "docs",
        {
            "guide.md": GUIDE,
            "faq.txt": FAQ,
            "birds.html": PAGE,
            "cities.csv": ROWS,
            "notes.jsonl": LINES,
            "manual.pdf": make_pdf(["Turbines convert wind into power"]),
        },
    )
    job = wait(http, result["job_id"])
    assert job["result"]["failed"] == 0 and job["done"] == job["total"] == 6
    documents = http.get("/api/knowledge-bases/docs/documents").json()["data"]
    assert {d["name"]: d["status"] for d in documents} == dict.fromkeys(
        ["guide.md", "faq.txt", "birds.html", "cities.csv", "notes.jsonl", "manual.pdf"], "ready"
    )

    for mode in ("keyword", "vector", "hybrid"):
        hits = search(http, "docs", "how is espresso coffee brewed", mode=mode, top_k=3)
        assert hits[0]["document_name"] == "faq.txt", (mode, hits)
    hits = search(http, "docs", "check the inverter for faults", top_k=2)
    assert hits[0]["heading_path"] == ["Solar guide", "Maintenance"]
    assert hits[0]["keyword_rank"] and hits[0]["vector_rank"]
    pdf_hit = search(http, "docs", "wind turbines", top_k=1)[0]
    assert (pdf_hit["document_name"], pdf_hit["page"]) == ("manual.pdf", 1)
    # Metadata filters: on document name and on a JSONL row's own field.
    hits = search(http, "docs", "espresso", filters={"document": "guide.md"})
    assert hits and {h["document_name"] for h in hits} == {"guide.md"}
    hits = search(http, "docs", "melting ice", mode="vector", filters={"lang": "fr"})
    assert [h["text"] for h in hits] == ["Les glaciers fondent lentement."]
    # MMR and reranking still return the right document first.
    hits = search(http, "docs", "espresso shot", mmr=True, rerank="embedding", top_k=3)
    assert hits[0]["document_name"] == "faq.txt"

    # Embedding went through the gateway: traced, costed, marked as indexing (the
    # platform's own work: out of the dashboard's application traffic) or, for the
    # searches' queries, as the application's knowledge calls.
    http.app.state.runtime.writer.flush()
    with db.session() as session:
        spans = session.scalars(select(Span).where(Span.kind == "embedding")).all()
    sources = Counter(s.attributes["source"] for s in spans)
    assert set(sources) == {"knowledge-ingest", "knowledge"} and sources["knowledge-ingest"]
    assert all(s.cost is not None and s.input_tokens > 0 for s in spans)
    figures = http.get("/api/monitoring/summary", params={"window": "1h"}).json()
    assert figures["requests"] == sources["knowledge"]
    everything = http.get("/api/monitoring/summary", params={"window": "1h", "source": "all"})
    assert everything.json()["requests"] == len(spans)

    # The same content again does nothing.
    again = upload(http, "docs", {"faq.txt": FAQ})
    assert again == {"documents": [], "unchanged": ["faq.txt"], "job_id": None}

    # New content replaces the old chunks everywhere.
    changed = upload(http, "docs", {"faq.txt": b"Green tea is steeped in water below boiling."})
    wait(http, changed["job_id"])
    assert all("spresso" not in h["text"] for h in search(http, "docs", "espresso", top_k=10))
    hits = search(http, "docs", "espresso coffee", mode="vector", top_k=10)
    assert all("spresso" not in h["text"] for h in hits)
    assert search(http, "docs", "green tea", top_k=1)[0]["document_name"] == "faq.txt"

    # Deleting a document removes its chunks from every index.
    assert http.delete("/api/knowledge-bases/docs/documents/guide.md").status_code == 204
    assert search(http, "docs", "solar panels inverter", mode="keyword") == []
    hits = search(http, "docs", "solar panels inverter", mode="vector", top_k=20)
    assert "guide.md" not in {h["document_name"] for h in hits}
    with db.session() as session:
        assert session.scalar(select(func.count(Chunk.id))) == len(
            search(http, "docs", "x", mode="vector", top_k=100)
        )


def test_invalid_requests_name_the_field_or_say_the_body_is_not_json(api) -> None:
    http, _ = api
    create_kb(http)

    def error(path: str, **request) -> dict:
        response = http.post(f"/api/knowledge-bases/docs/{path}", **request)
        assert response.status_code == 400, response.text
        return response.json()["error"]

    for path in ("search", "ask"):
        missing = error(path, json={})
        assert missing["param"] == "query"
        assert missing["message"] == "Invalid request: query is required."
        wrong = error(path, json={"query": "solar", "top_k": 0})
        assert wrong["param"] == "top_k" and "top_k" in wrong["message"]
        garbled = error(path, content=b"{query", headers={"Content-Type": "application/json"})
        assert garbled["message"].startswith("The request body is not valid JSON: Expecting")
        assert "0:" not in garbled["message"] and garbled["param"] is None
        listed = error(path, json=["solar"])
        assert listed["message"] == "The request body must be a JSON object."
    limit = http.get("/api/knowledge-bases", params={"limit": "many"})
    assert limit.status_code == 400 and limit.json()["error"]["param"] == "limit"


def test_hostile_files_are_refused_or_contained(api, tmp_path: Path) -> None:
    http, db = api
    create_kb(http)
    big = http.post(
        "/api/knowledge-bases/docs/documents",
        files=[("files", ("big.txt", b"a" * (20 * 2**20 + 1)))],
    )
    assert big.status_code == 400 and big.json()["error"]["code"] == "file_too_large"
    huge = http.post(
        "/api/knowledge-bases/docs/documents",
        files=[("files", ("huge.txt", b"a" * (41 * 2**20)))],
    )
    assert huge.status_code == 400  # its real size, not the part read before refusing it
    assert huge.json()["error"]["message"].startswith("huge.txt is 41.0 MiB; the limit is 20 MiB")
    binary = http.post(
        "/api/knowledge-bases/docs/documents", files=[("files", ("x.txt", b"\x00\x01\x02" * 9))]
    )
    assert binary.status_code == 400
    assert "x.txt is not a readable text file" in binary.json()["error"]["message"]

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<" + b"a" * 60_000_000 + b"/>")
    result = upload(
        http,
        "docs",
        {
            "../../../escape.txt": b"Path tricks stay inside the store.",
            "bomb.docx": buffer.getvalue(),
            "broken.pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\ntrailer <<>>",
        },
    )
    wait(http, result["job_id"])
    documents = {
        d["name"]: d for d in http.get("/api/knowledge-bases/docs/documents").json()["data"]
    }
    assert documents["escape.txt"]["status"] == "ready"
    assert documents["bomb.docx"]["status"] == "failed"
    assert "zip bomb" in documents["bomb.docx"]["error"]
    assert documents["broken.pdf"]["status"] == "failed"
    assert http.get("/api/health").status_code == 200
    # Every stored byte is under the file store; nothing was written beside it.
    store = Path(db.settings.home).resolve() / "files" / "knowledge"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "escape" in p.name]
    assert written == []
    assert any(store.rglob("original"))
    assert search(http, "docs", "path tricks", top_k=1)[0]["document_name"] == "escape.txt"


def test_a_project_cannot_reach_another_projects_chunks(api) -> None:
    http, db = api
    with db.session() as session:
        identity.create_project(session, data=ProjectCreate(name="other"))
    other = {"Authorization": f"Bearer {_key(db, 'other')}"}
    create_kb(http, "shared-name")
    wait(http, upload(http, "shared-name", {"secret.txt": b"The launch code is 0000."})["job_id"])
    kb_id = http.get("/api/knowledge-bases/shared-name").json()["id"]

    assert http.get(f"/api/knowledge-bases/{kb_id}", headers=other).status_code == 404
    response = http.post(
        f"/api/knowledge-bases/{kb_id}/search", json={"query": "launch code"}, headers=other
    )
    assert response.status_code == 404
    create_kb(http, "shared-name", headers=other)
    job = upload(http, "shared-name", {"public.txt": b"Launch times are public."}, headers=other)
    wait(http, job["job_id"], headers=other)
    for mode in ("keyword", "vector", "hybrid"):
        hits = search(http, "shared-name", "launch code", headers=other, mode=mode, top_k=50)
        assert [h["document_name"] for h in hits] == ["public.txt"]
    listed = http.get("/api/knowledge-bases", headers=other).json()["data"]
    assert [k["id"] for k in listed] != [kb_id] and len(listed) == 1


def test_new_chunking_builds_a_new_version_then_switches(api) -> None:
    http, db = api
    create_kb(http, chunking={"strategy": "recursive", "chunk_size": 200, "chunk_overlap": 0})
    long = b" ".join(f"Fact {i} about rivers and lakes.".encode() for i in range(60))
    wait(http, upload(http, "docs", {"long.txt": long})["job_id"])
    before = http.get("/api/knowledge-bases/docs").json()
    assert before["active_version"]["number"] == 1

    response = http.patch(
        "/api/knowledge-bases/docs",
        json={"chunking": {"strategy": "fixed", "chunk_size": 40, "chunk_overlap": 8}},
    )
    assert response.status_code == 200, response.text
    during = response.json()
    assert during["building_version"]["number"] == 2
    assert during["active_version"]["number"] == 1  # still serving
    assert search(http, "docs", "rivers", top_k=1)  # queries keep working meanwhile
    jobs = http.get("/api/knowledge-bases/docs").json()
    deadline = time.monotonic() + 120
    while jobs["building_version"] and time.monotonic() < deadline:
        time.sleep(0.2)
        jobs = http.get("/api/knowledge-bases/docs").json()
    assert jobs["building_version"] is None
    assert jobs["active_version"]["number"] == 2
    assert jobs["chunk_count"] > before["chunk_count"]
    response = http.post("/api/knowledge-bases/docs/search", json={"query": "rivers"})
    assert response.json()["version"] == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the old version's chunks go after a short grace
        with db.session() as session:
            if session.scalar(select(func.count(Chunk.id))) == jobs["chunk_count"]:
                break
        time.sleep(0.2)
    else:
        raise AssertionError("the replaced version's chunks were not removed")


def test_ask_cites_only_the_sources_its_answer_names(api, upstream) -> None:
    http, _ = api
    added = http.post(
        "/api/models", json={"alias": "scripted", "upstream_name": "m", "base_url": upstream.url}
    )
    assert added.status_code == 201, added.text
    create_kb(http)
    wait(http, upload(http, "docs", {"faq.txt": FAQ, "guide.md": GUIDE})["job_id"])
    # [7] names no source: a model's invented number cites nothing.
    upstream.default = {"kind": "ok", "text": "About twenty-five seconds [2], or so [7]."}
    response = http.post(
        "/api/knowledge-bases/docs/ask",
        json={"query": "How long does an espresso shot take?", "top_k": 2, "model": "scripted"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["number"] for s in body["sources"]] == [1, 2]  # every retrieved chunk, kept
    assert body["cited"] == [2]
    assert body["citations"] == [body["sources"][1]]
    cited = body["sources"][1]["document_name"]

    from typer.testing import CliRunner

    from llmdeck.cli.main import app

    question = ["kb", "ask", "docs", "How long does an espresso shot take?", "--model", "scripted"]
    shown = CliRunner().invoke(app, question)
    assert shown.exit_code == 0, shown.output
    assert f"  [2] {cited}" in shown.output and "[1]" not in shown.output

    upstream.default = {"kind": "ok", "text": "I do not know."}
    silent = http.post(
        "/api/knowledge-bases/docs/ask",
        json={"query": "espresso", "top_k": 2, "model": "scripted"},
    ).json()
    assert silent["citations"] == [] and silent["cited"] == [] and len(silent["sources"]) == 2


@pytest.mark.slow
def test_ask_answers_with_citations_and_a_trace(api) -> None:
    http, db = api
    create_kb(http)
    wait(http, upload(http, "docs", {"faq.txt": FAQ, "guide.md": GUIDE})["job_id"])
    response = http.post(
        "/api/knowledge-bases/docs/ask",
        json={"query": "How long does an espresso shot take?", "top_k": 2, "max_tokens": 24},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"].strip()
    first = body["sources"][0]
    assert first["number"] == 1 and first["document_name"] == "faq.txt"
    chunk = http.get(first["url"]).json()  # a citation links to its chunk
    assert chunk["text"] == first["text"]

    http.app.state.runtime.writer.flush()
    with db.session() as session:
        project = identity.get_project_by_name_or_raise(session, name="default")
        trace = tracing.get_trace_or_raise(
            session, project_id=project.id, trace_id=body["trace_id"]
        )
    spans = {s.kind: s for s in trace.spans}
    retrieval, llm = spans["retrieval"], spans["llm"]
    assert llm.parent_span_id == retrieval.span_id
    assert retrieval.input == "How long does an espresso shot take?"
    chunks = retrieval.attributes["retrieval.chunks"]
    assert chunks[0]["document"] == "faq.txt" and "score" in chunks[0]
    assert spans["embedding"].parent_span_id == retrieval.span_id
    assert "espresso" in str(llm.input).lower()


def test_demo_project_gets_a_small_knowledge_base(api) -> None:
    from llmdeck import demo
    from llmdeck.core.jobs import Job

    http, db = api
    with db.session() as session:
        access = demo.seed(session, db.settings)
    headers = {"Authorization": f"Bearer {access.api_key}"}
    with db.session() as session:
        job_id = session.scalar(select(Job.id).where(Job.kind == "knowledge.ingest"))
    http.app.state.runtime.jobs.wake()
    wait(http, job_id, headers=headers)
    hits = search(http, "handbook", "what are the support hours", headers=headers, top_k=1)
    assert hits[0]["document_name"] == "support.txt"
    with db.session() as session:  # seeding again adds nothing
        demo.seed(session, db.settings)
        assert session.scalar(select(func.count(Job.id))) == 1


def test_cli_adds_a_folder_with_progress_and_searches_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmdeck.cli.main import app

    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "faq.txt").write_bytes(FAQ)
    (docs / "sub" / "guide.md").write_bytes(GUIDE)
    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # not a supported type
    (docs / "fake.pdf").write_bytes(b"not a pdf")  # refused, the rest goes on
    (docs / "link.txt").symlink_to(docs / "faq.txt")  # links are not followed
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << >>\ntrailer <<>>")  # fails later
    runner = CliRunner()
    result = runner.invoke(app, ["kb", "add", "notes", str(docs)])
    # A file that was refused or failed to ingest is named with its reason, and fails the run.
    assert result.exit_code == 1, result.output
    assert "3 new or changed, 0 unchanged, 1 refused" in result.output
    assert "ingesting" in result.output and "Ingested 3 documents" in result.output
    assert f"refused {docs / 'fake.pdf'}: fake.pdf is not a readable PDF" in result.output
    assert "failed broken.pdf: The pdf file could not be read" in result.output
    assert "2 of 4 files were not ingested (1 refused, 1 failed)" in result.output
    # A file the folder walk leaves out is named too, never dropped silently.
    assert f"skipped {docs / 'image.png'}: .png files are not supported." in result.output
    assert f"Supported file types: {parsing.SUPPORTED}." in result.output
    assert f"skipped {docs / 'link.txt'}: it is a symbolic link" in result.output
    assert "1 refused, 2 skipped." in result.output
    again = runner.invoke(app, ["kb", "add", "notes", str(docs)])
    assert "0 new or changed, 3 unchanged" in again.output
    assert "Nothing new to ingest" in again.output
    assert again.exit_code == 1 and "failed broken.pdf" in again.output  # still not ingested
    (docs / "fake.pdf").unlink()
    (docs / "broken.pdf").unlink()
    clean = runner.invoke(app, ["kb", "add", "clean", str(docs)])
    assert clean.exit_code == 0, clean.output
    refused = runner.invoke(app, ["kb", "add", "notes", str(docs / "image.png")])
    assert refused.exit_code == 1, refused.output
    assert "image.png is not a supported file type; upload one of: txt" in refused.output
    assert "ingesting" not in refused.output  # nothing to ingest: no job, no 0/1 bar
    found = runner.invoke(app, ["kb", "search", "notes", "espresso", "--json", "--mode", "keyword"])
    assert found.exit_code == 0, found.output
    assert '"document_name": "faq.txt"' in found.output
    hit = json.loads(found.stdout)[0]
    assert hit["text"] == FAQ.decode() and len(hit["text"]) > 100  # whole, not cut for a table
    listed = runner.invoke(app, ["kb", "list", "--json"])
    assert '"name": "notes"' in listed.output and '"document_count": 2' in listed.output


def test_cli_refuses_a_second_file_of_the_same_name_in_a_folder(tmp_path: Path) -> None:
    """Documents are named by base name: sub/faq.txt would silently replace faq.txt."""
    from typer.testing import CliRunner

    from llmdeck.cli.main import app

    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "faq.txt").write_bytes(FAQ)
    (docs / "sub" / "faq.txt").write_bytes(GUIDE)
    result = CliRunner().invoke(app, ["kb", "add", "twins", str(docs)])
    assert result.exit_code == 1, result.output
    assert f"refused {docs / 'sub' / 'faq.txt'}: its name 'faq.txt' is already taken by" in (
        " ".join(result.output.split())
    )
    assert "1 new or changed, 0 unchanged, 1 refused" in result.output


def test_console_pages_upload_show_status_and_ask(db: Database, settings: Settings) -> None:
    from tests.test_console import add_user, page_csrf, sign_in

    with TestClient(create_app(settings), follow_redirects=False) as http:
        add_user(http.app, "kb@x.io", "builder")
        sign_in(http, "kb@x.io")
        token = page_csrf(http, "/knowledge")
        created = http.post("/knowledge", data={"name": "notes", "csrf_token": token})
        assert created.status_code == 303 and created.headers["location"] == "/knowledge/notes"
        uploaded = http.post(
            "/knowledge/notes/documents",
            data={"csrf_token": token},
            files=[("files", ("faq.txt", FAQ)), ("files", ("x.pdf", b"not a pdf"))],
        )
        assert uploaded.status_code == 200 and "x.pdf is not a readable PDF" in uploaded.text
        assert "faq.txt" in uploaded.text and "hx-trigger" in uploaded.text  # live status
        deadline = time.monotonic() + 120
        page = http.get("/knowledge/notes").text
        while "ingesting" in page and time.monotonic() < deadline:
            time.sleep(0.2)
            page = http.get("/knowledge/notes").text
        assert "ready" in page and "ingesting" not in page
        assert "notes" in http.get("/knowledge").text
