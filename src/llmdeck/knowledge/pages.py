"""Console pages of knowledge bases: list and create, upload (drag and drop) with live
status, and ask with citations."""

from __future__ import annotations

from fastapi import Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import LLMDeckError, NotFound
from llmdeck.knowledge import ingest as _ingest  # noqa: F401 - registers the ingestion job
from llmdeck.knowledge import parsing, retrieval, service
from llmdeck.knowledge.models import Chunk
from llmdeck.knowledge.schemas import AskRequest, DocumentPublic, KnowledgeBaseCreate

pages = PageSet("knowledge", __file__)
pages.nav("Knowledge", "/knowledge", section="Build", order=40, icon="box")
CHANGE = "change knowledge bases"


def _list(request: Request, viewer: Viewer, *, error: str | None = None, name: str = ""):
    with request.app.state.runtime.db.session() as session:
        rows, _ = service.list(session, project_id=viewer.project.id, limit=200)
        bases = [service.to_public(session, kb) for kb in rows]
    context = {"bases": bases, "error": error, "name": name}
    return console_of(request).render(request, "knowledge/list.html", context)


@pages.router.get("/knowledge")
def knowledge_page(request: Request, viewer: Viewer = Depends(signed_in)):
    return _list(request, viewer)


@pages.router.post("/knowledge", dependencies=[Depends(csrf_protected)])
def create_page(
    request: Request,
    name: str = Form(""),
    description: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    viewer.require("builder", CHANGE)
    try:
        data = KnowledgeBaseCreate(name=name.strip(), description=description)
        with request.app.state.runtime.db.session() as session:
            service.create(session, project_id=viewer.project.id, data=data)
    except ValidationError:
        return _list(request, viewer, error="Use letters, digits, '.', '_' or '-'.", name=name)
    except LLMDeckError as exc:
        return _list(request, viewer, error=exc.message, name=name)
    return RedirectResponse(f"/knowledge/{data.name}", status_code=303)


def _detail(request: Request, viewer: Viewer, ref: str, **extra):
    with request.app.state.runtime.db.session() as session:
        kb = service.get_or_raise(session, project_id=viewer.project.id, ref=ref)
        documents, _ = service.list_documents(session, kb=kb, limit=200)
        context = {
            "kb": service.to_public(session, kb),
            "documents": [DocumentPublic.model_validate(d) for d in documents],
            "supported": parsing.SUPPORTED,
            "answer": None,
            "question": "",
            "error": None,
            **extra,
        }
    context["busy"] = bool(context["kb"].building_version) or any(
        d.status == "pending" for d in context["documents"]
    )
    template = (
        "knowledge/_documents.html" if request.headers.get("hx-request") else "knowledge/kb.html"
    )
    return console_of(request).render(request, template, context)


@pages.router.get("/knowledge/{kb}")
def kb_page(request: Request, kb: str, viewer: Viewer = Depends(signed_in)):
    return _detail(request, viewer, kb)


@pages.router.get("/knowledge/{kb}/documents/{document}/chunks/{chunk_id}")
def chunk_page(
    request: Request, kb: str, document: str, chunk_id: int, viewer: Viewer = Depends(signed_in)
):
    """The passage a citation points at, with the document it comes from."""
    with request.app.state.runtime.db.session() as session:
        target = service.get_or_raise(session, project_id=viewer.project.id, ref=kb)
        found = service.get_document_or_raise(session, kb=target, ref=document)
        chunk = session.get(Chunk, chunk_id)
        if chunk is None or chunk.document_id != found.id:
            raise NotFound(f"No passage {chunk_id} in document {found.name!r}.")
        context = {
            "kb": service.to_public(session, target),
            "document": DocumentPublic.model_validate(found),
            "chunk": chunk,
        }
        return console_of(request).render(request, "knowledge/chunk.html", context)


@pages.router.post("/knowledge/{kb}/documents", dependencies=[Depends(csrf_protected)])
async def upload_page(
    request: Request,
    kb: str,
    files: list[UploadFile] = File(default_factory=list),
    viewer: Viewer = Depends(signed_in),
):
    viewer.require("builder", CHANGE)
    runtime = request.app.state.runtime
    problems = []
    with runtime.db.session() as session:
        target = service.get_or_raise(session, project_id=viewer.project.id, ref=kb)
        changed = 0
        for upload in files[:100]:
            try:
                data = await parsing.read_upload(upload)
                _, was_changed = service.add_document(
                    session,
                    settings=runtime.settings,
                    kb=target,
                    name=upload.filename or "upload",
                    data=data,
                )
                changed += was_changed
            except LLMDeckError as exc:
                problems.append(exc.message)
        if changed:
            service.queue_ingest(session, kb=target, principal=viewer.principal)
    if changed:
        runtime.wake_jobs()
    if problems:
        return _detail(request, viewer, kb, error=" ".join(problems))
    return RedirectResponse(f"/knowledge/{kb}", status_code=303)


@pages.router.post("/knowledge/{kb}/ask", dependencies=[Depends(csrf_protected)])
async def ask_page(
    request: Request, kb: str, question: str = Form(""), viewer: Viewer = Depends(signed_in)
):
    viewer.require("builder", "ask knowledge bases")
    try:
        body = AskRequest(query=question.strip(), max_tokens=200)
        answer = await retrieval.ask(request.app.state.runtime, viewer.principal, kb, body)
    except ValidationError:
        return _detail(request, viewer, kb, error="Type a question first.")
    except LLMDeckError as exc:
        return _detail(request, viewer, kb, error=exc.message, question=question)
    return _detail(request, viewer, kb, answer=answer, question=question)
