"""Console pages of knowledge bases: list and create, upload (drag and drop) with live
status, search, ask with citations, and delete (documents and whole bases, confirmed)."""

from __future__ import annotations

from fastapi import Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from llmdeck.console import flash
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import LLMDeckError, NotFound
from llmdeck.knowledge import ingest as _ingest  # noqa: F401 - registers the ingestion job
from llmdeck.knowledge import parsing, retrieval, service
from llmdeck.knowledge.models import Chunk
from llmdeck.knowledge.schemas import (
    AskRequest,
    DocumentPublic,
    KnowledgeBaseCreate,
    SearchRequest,
)

pages = PageSet("knowledge", __file__)
pages.nav("Knowledge", "/knowledge", section="Build", order=40, icon="box")
CHANGE = "change knowledge bases"
# What to fix, per search field, when SearchRequest refuses it (the rules stay in the schema).
SEARCH_HELP = {
    "query": "Type what to search for (at most 4,000 characters).",
    "mode": "Choose hybrid, keyword or vector.",
    "top_k": "Enter a whole number from 1 to 100.",
}


def _list(
    request: Request,
    viewer: Viewer,
    *,
    error: str | None = None,
    name: str = "",
    description: str = "",
):
    with request.app.state.runtime.db.session() as session:
        rows, _ = service.list(session, project_id=viewer.project.id, limit=200)
        bases = [service.to_public(session, kb) for kb in rows]
    notice = flash.read(request, viewer.session)
    context = {
        "bases": bases,
        "error": error,
        "name": name,
        "description": description,
        "notice": notice,
    }
    response = console_of(request).render(request, "knowledge/list.html", context)
    flash.clear(response, request, "/knowledge")
    return response


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
        error = "Use letters, digits, '.', '_' or '-'."
        return _list(request, viewer, error=error, name=name, description=description)
    except LLMDeckError as exc:
        return _list(request, viewer, error=exc.message, name=name, description=description)
    return RedirectResponse(f"/knowledge/{data.name}", status_code=303)


def _detail(request: Request, viewer: Viewer, ref: str, *, template: str | None = None, **extra):
    with request.app.state.runtime.db.session() as session:
        kb = service.get_or_raise(session, project_id=viewer.project.id, ref=ref)
        documents, _ = service.list_documents(session, kb=kb, limit=200)
        context = {
            "kb": service.to_public(session, kb),
            "documents": service.documents_public(session, kb=kb, documents=documents),
            "supported": parsing.SUPPORTED,
            "answer": None,
            "question": "",
            "error": None,
            "search": {"form": {"mode": "hybrid", "top_k": "5"}, "errors": {}},
            **extra,
        }
    context["busy"] = bool(context["kb"].building_version) or any(
        d.status == "pending" for d in context["documents"]
    )
    if template is None:
        polled = request.headers.get("hx-request")
        template = "knowledge/_documents.html" if polled else "knowledge/kb.html"
    return console_of(request).render(request, template, context)


@pages.router.get("/knowledge/{kb}")
def kb_page(request: Request, kb: str, viewer: Viewer = Depends(signed_in)):
    if request.headers.get("hx-request"):  # the document list polling its status
        return _detail(request, viewer, kb)
    path = f"/knowledge/{kb}"
    response = _detail(request, viewer, kb, notice=flash.read(request, viewer.session))
    flash.clear(response, request, path)
    return response


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


@pages.router.post("/knowledge/{kb}/search", dependencies=[Depends(csrf_protected)])
async def search_page(
    request: Request,
    kb: str,
    query: str = Form(""),
    mode: str = Form("hybrid"),
    top_k: str = Form("5"),
    viewer: Viewer = Depends(signed_in),
):
    """Ranked chunks, through the same search as the API; htmx swaps in just the panel."""
    form = {"query": query, "mode": mode, "top_k": top_k}
    errors: dict[str, str] = {}
    result = None
    try:
        body = SearchRequest.model_validate({"query": query.strip(), "mode": mode, "top_k": top_k})
        result = await retrieval.search(request.app.state.runtime, viewer.principal, kb, body)
    except ValidationError as exc:
        for problem in exc.errors():
            field = str(problem["loc"][0])
            errors.setdefault(field, SEARCH_HELP.get(field, problem["msg"]))
    except LLMDeckError as exc:
        errors[exc.param if exc.param in SEARCH_HELP else "form"] = exc.message
    search = {"form": form, "errors": errors, "result": result}
    partial = "knowledge/_search.html" if request.headers.get("hx-request") else None
    return _detail(request, viewer, kb, template=partial, search=search)


@pages.router.get("/knowledge/{kb}/documents/{document}/delete")
def confirm_delete_document(
    request: Request, kb: str, document: str, viewer: Viewer = Depends(signed_in)
):
    viewer.require("builder", CHANGE)
    with request.app.state.runtime.db.session() as session:
        target = service.get_or_raise(session, project_id=viewer.project.id, ref=kb)
        found = service.get_document_or_raise(session, kb=target, ref=document)
        context = {
            "kb": target.name,
            "document": DocumentPublic.model_validate(found),
            "what": f"the document {found.name}",
        }
    return console_of(request).render(request, "knowledge/delete.html", context)


@pages.router.post(
    "/knowledge/{kb}/documents/{document}/delete", dependencies=[Depends(csrf_protected)]
)
def delete_document_page(
    request: Request, kb: str, document: str, viewer: Viewer = Depends(signed_in)
):
    """Delete one document (the service drops its chunks from every index version)."""
    viewer.require("builder", CHANGE)
    runtime = request.app.state.runtime
    with runtime.db.session() as session:
        target = service.get_or_raise(session, project_id=viewer.project.id, ref=kb)
        found = service.get_document_or_raise(session, kb=target, ref=document)
        name, path = found.name, f"/knowledge/{target.name}"
        service.delete_document(session, settings=runtime.settings, document=found)
    response = RedirectResponse(path, status_code=303)
    flash.put(response, request, viewer.session, path, f"Deleted the document {name}.")
    return response


def _confirm_kb(request: Request, viewer: Viewer, ref: str, *, typed: str = "", error=None):
    with request.app.state.runtime.db.session() as session:
        target = service.to_public(
            session, service.get_or_raise(session, project_id=viewer.project.id, ref=ref)
        )
    context = {"kb": target.name, "base": target, "typed": typed, "error": error}
    context["what"] = f"the knowledge base {target.name}"
    return console_of(request).render(request, "knowledge/delete.html", context)


@pages.router.get("/knowledge/{kb}/delete")
def confirm_delete_kb(request: Request, kb: str, viewer: Viewer = Depends(signed_in)):
    viewer.require("builder", CHANGE)
    return _confirm_kb(request, viewer, kb)


@pages.router.post("/knowledge/{kb}/delete", dependencies=[Depends(csrf_protected)])
def delete_kb_page(
    request: Request, kb: str, confirm: str = Form(""), viewer: Viewer = Depends(signed_in)
):
    """Delete a knowledge base with everything in it, once its name is typed to confirm."""
    viewer.require("builder", CHANGE)
    runtime = request.app.state.runtime
    with runtime.db.session() as session:
        target = service.get_or_raise(session, project_id=viewer.project.id, ref=kb)
        name = target.name
        if confirm.strip() == name:
            service.delete(session, settings=runtime.settings, kb=target)
    if confirm.strip() != name:
        error = f"Type {name} exactly to confirm, or go back to keep it."
        return _confirm_kb(request, viewer, kb, typed=confirm, error=error)
    response = RedirectResponse("/knowledge", status_code=303)
    message = f"Deleted the knowledge base {name} with its documents."
    flash.put(response, request, viewer.session, "/knowledge", message)
    return response
