"""Console pages of knowledge bases: list and create, upload (drag and drop) with live
status, search, ask with citations, and delete (documents and whole bases, confirmed)."""

from __future__ import annotations

from fastapi import Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from llmdeck.console import flash
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.forms import field_errors
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import InvalidRequest, LLMDeckError, NotFound
from llmdeck.knowledge import filters as metadata_filters
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
# The retrieval options the search and ask forms post, named as in SearchRequest; the
# last ones sit under "Advanced options". A blank or missing one takes the API's default.
OPTIONS = (
    "mode",
    "top_k",
    "filters",
    "keyword_weight",
    "vector_weight",
    "mmr",
    "mmr_lambda",
    "rerank",
)
ADVANCED = OPTIONS[2:]
# What to fix, per field, when SearchRequest refuses it (the rules stay in the schema).
SEARCH_HELP = {
    "query": "Type what to search for (at most 4,000 characters).",
    "mode": "Choose hybrid, keyword or vector.",
    "top_k": "Enter a whole number from 1 to 100.",
    "keyword_weight": "Enter a number from 0 to 10.",
    "vector_weight": "Enter a number from 0 to 10.",
    "mmr_lambda": "Enter a number from 0 to 1.",
    "rerank": "Choose none or embedding.",
}
ASK_HELP = {**SEARCH_HELP, "query": "Type a question (at most 4,000 characters)."}


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
            "filter_keys": sorted(service.metadata_keys(session, kb_id=kb.id)[0]),
            "error": None,
            "search": _panel(_blank_form(), {}),
            "ask": _panel(_blank_form(), {}),
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


def _shown(value) -> str:
    """A request field's value as its form input holds it."""
    if isinstance(value, bool):
        return "on" if value else ""  # a ticked checkbox posts "on"
    if isinstance(value, dict):
        return ""  # filters: none
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _blank_form() -> dict[str, str]:
    """The search and ask forms as first shown: the API's defaults."""
    fields = SearchRequest.model_fields
    defaults = {name: fields[name].get_default(call_default_factory=True) for name in OPTIONS}
    return {"query": "", **{name: _shown(value) for name, value in defaults.items()}}


async def _posted(request: Request, query_field: str) -> dict[str, str]:
    """The search or ask form as typed, kept to show again; a field not sent is its default,
    except the MMR box, which a browser leaves out when unticked."""
    data = await request.form()
    form = {**_blank_form(), "mmr": ""}
    form["query"] = str(data.get(query_field, ""))
    form.update({name: str(data[name]) for name in OPTIONS if name in data})
    return form


def _request(schema, form: dict[str, str], hints: dict[str, str], **fixed):
    """`schema`'s request from a posted form, or a message per field it refuses."""
    errors: dict[str, str] = {}
    payload = {"query": form["query"].strip(), **fixed}
    payload.update({name: form[name] for name in OPTIONS if form[name].strip()})
    try:
        payload["filters"] = metadata_filters.parse(form["filters"], name="Filter")
    except InvalidRequest as exc:
        errors["filters"] = exc.message
        payload["filters"] = {}  # still check the other fields, to say everything at once
    try:
        body = schema.model_validate(payload)
    except ValidationError as exc:
        for field, message in field_errors(exc).items():
            errors.setdefault(field, hints.get(field) or message)
        return None, errors
    return (None if errors else body), errors


def _refused(errors: dict[str, str], exc: LLMDeckError) -> None:
    """Put a service's refusal beside the field it names (e.g. an unknown filter key)."""
    errors[exc.param if exc.param in ("query", *OPTIONS) else "form"] = exc.message


def _panel(form: dict[str, str], errors: dict[str, str], result=None) -> dict:
    """What the search or ask form shows: as typed, with its messages and its result.
    "Advanced options" start open when anything in them was changed or needs a look."""
    blank = _blank_form()
    notice = getattr(result, "notice", None)
    touched = any(form[name].strip() != blank[name] for name in ADVANCED)
    needs_look = bool(notice) or any(name in errors for name in ADVANCED)
    return {
        "form": form,
        "errors": errors,
        "result": result,
        "notice": notice,
        "open": touched or needs_look,
    }


@pages.router.post("/knowledge/{kb}/ask", dependencies=[Depends(csrf_protected)])
async def ask_page(request: Request, kb: str, viewer: Viewer = Depends(signed_in)):
    """An answer with citations, through the same ask as the API and its retrieval options."""
    viewer.require("builder", "ask knowledge bases")
    form = await _posted(request, "question")
    body, errors = _request(AskRequest, form, ASK_HELP, max_tokens=200)
    answer = None
    if body is not None:
        try:
            answer = await retrieval.ask(request.app.state.runtime, viewer.principal, kb, body)
        except LLMDeckError as exc:
            _refused(errors, exc)
    return _detail(request, viewer, kb, ask=_panel(form, errors, answer))


@pages.router.post("/knowledge/{kb}/search", dependencies=[Depends(csrf_protected)])
async def search_page(request: Request, kb: str, viewer: Viewer = Depends(signed_in)):
    """Ranked chunks, through the same search as the API; htmx swaps in just the panel."""
    form = await _posted(request, "query")
    body, errors = _request(SearchRequest, form, SEARCH_HELP)
    result = None
    if body is not None:
        try:
            result = await retrieval.search(request.app.state.runtime, viewer.principal, kb, body)
        except LLMDeckError as exc:
            _refused(errors, exc)
    partial = "knowledge/_search.html" if request.headers.get("hx-request") else None
    return _detail(request, viewer, kb, template=partial, search=_panel(form, errors, result))


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
