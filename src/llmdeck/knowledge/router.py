"""REST API of knowledge bases: /api/knowledge-bases/... and /api/jobs/{id}."""

from __future__ import annotations

import json

import anyio
from fastapi import APIRouter, Depends, File, Form, UploadFile
from sqlalchemy.orm import Session

from llmdeck.core import jobs
from llmdeck.core.errors import InvalidRequest, NotFound
from llmdeck.identity.deps import get_runtime, get_session, requires
from llmdeck.identity.schemas import Principal
from llmdeck.knowledge import ingest as _ingest  # noqa: F401 - registers the ingestion job
from llmdeck.knowledge import parsing, retrieval, service
from llmdeck.knowledge.models import Chunk
from llmdeck.knowledge.schemas import (
    AskRequest,
    AskResult,
    DocumentPage,
    DocumentPublic,
    JobPublic,
    KnowledgeBaseCreate,
    KnowledgeBasePage,
    KnowledgeBasePublic,
    KnowledgeBaseUpdate,
    SearchHit,
    SearchRequest,
    SearchResult,
    UploadResult,
)
from llmdeck.runtime import Runtime

router = APIRouter(prefix="/api", tags=["knowledge"])
reader = requires("viewer", "read knowledge bases")
builder = requires("builder", "change knowledge bases or ask them")
MAX_FILES_PER_UPLOAD = 100
MAX_UPLOAD_BYTES = 100 * 2**20  # per request, all files together


@router.get(
    "/knowledge-bases", operation_id="list_knowledge_bases", response_model=KnowledgeBasePage
)
def list_knowledge_bases(
    limit: int = 50,
    cursor: str | None = None,
    principal: Principal = Depends(reader),
    session: Session = Depends(get_session),
):
    """This project's knowledge bases."""
    rows, next_cursor = service.list(
        session, project_id=principal.project_id, limit=limit, cursor=cursor
    )
    return {"data": [service.to_public(session, kb) for kb in rows], "next_cursor": next_cursor}


@router.post(
    "/knowledge-bases",
    operation_id="create_knowledge_base",
    response_model=KnowledgeBasePublic,
    status_code=201,
)
def create_knowledge_base(
    body: KnowledgeBaseCreate,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
):
    """Create a knowledge base with its embedding model and chunking."""
    kb = service.create(session, project_id=principal.project_id, data=body)
    return service.to_public(session, kb)


@router.get(
    "/knowledge-bases/{kb}", operation_id="get_knowledge_base", response_model=KnowledgeBasePublic
)
def get_knowledge_base(
    kb: str, principal: Principal = Depends(reader), session: Session = Depends(get_session)
):
    """One knowledge base, by name or id, with its serving and building index versions."""
    return service.to_public(
        session, service.get_or_raise(session, project_id=principal.project_id, ref=kb)
    )


@router.patch(
    "/knowledge-bases/{kb}",
    operation_id="update_knowledge_base",
    response_model=KnowledgeBasePublic,
)
def update_knowledge_base(
    kb: str,
    body: KnowledgeBaseUpdate,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
):
    """Change it; a new model or chunking builds a new version while the current one serves."""
    target = service.get_or_raise(session, project_id=principal.project_id, ref=kb)
    target, rebuild = service.update(session, kb=target, data=body)
    if rebuild:
        service.queue_ingest(session, kb=target, principal=principal)
        session.commit()
        runtime.wake_jobs()
    return service.to_public(session, target)


@router.delete("/knowledge-bases/{kb}", operation_id="delete_knowledge_base", status_code=204)
def delete_knowledge_base(
    kb: str,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
):
    """Delete it with all its documents, chunks and stored files."""
    target = service.get_or_raise(session, project_id=principal.project_id, ref=kb)
    service.delete(session, settings=runtime.settings, kb=target)


@router.post(
    "/knowledge-bases/{kb}/documents",
    operation_id="upload_documents",
    response_model=UploadResult,
    status_code=202,
)
async def upload_documents(
    kb: str,
    files: list[UploadFile] = File(description=f"Files: {parsing.SUPPORTED}."),
    metadata: str | None = Form(
        default=None,
        description="JSON object stored on each file. Without it, a file that replaces a "
        "document of the same name keeps that document's metadata.",
    ),
    principal: Principal = Depends(builder),
    runtime: Runtime = Depends(get_runtime),
):
    """Upload files; ingestion runs as a background job (see `job_id`)."""
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise InvalidRequest(
            f"At most {MAX_FILES_PER_UPLOAD} files per upload; send the rest in another.",
            param="files",
        )
    try:
        meta = json.loads(metadata) if metadata else None
    except json.JSONDecodeError:
        raise InvalidRequest("metadata must be a JSON object.", param="metadata") from None
    if meta is not None and not isinstance(meta, dict):
        raise InvalidRequest("metadata must be a JSON object.", param="metadata")
    uploads, total = [], 0
    for upload in files:
        data = await parsing.read_upload(upload)
        parsing.sniff(upload.filename or "upload", data)
        total += len(data)
        if total > MAX_UPLOAD_BYTES:
            raise InvalidRequest(
                f"One upload takes at most {MAX_UPLOAD_BYTES // 2**20} MiB in all; "
                "send the files in several uploads.",
                param="files",
                code="upload_too_large",
            )
        uploads.append((upload.filename or "upload", data))

    def store() -> UploadResult:
        with runtime.db.session() as session:
            target = service.get_or_raise(session, project_id=principal.project_id, ref=kb)
            documents, unchanged = [], []
            for name, data in uploads:
                document, changed = service.add_document(
                    session,
                    settings=runtime.settings,
                    kb=target,
                    name=name,
                    data=data,
                    metadata=meta,
                )
                (documents if changed else unchanged).append(document)
            job = (
                service.queue_ingest(session, kb=target, principal=principal) if documents else None
            )
            return UploadResult(
                documents=[DocumentPublic.model_validate(d) for d in documents],
                unchanged=[d.name for d in unchanged],
                job_id=job.id if job else None,
            )

    result = await anyio.to_thread.run_sync(store)
    if result.job_id:
        runtime.wake_jobs()
    return result


@router.get(
    "/knowledge-bases/{kb}/documents", operation_id="list_documents", response_model=DocumentPage
)
def list_documents(
    kb: str,
    limit: int = 50,
    cursor: str | None = None,
    principal: Principal = Depends(reader),
    session: Session = Depends(get_session),
):
    """The documents of a knowledge base, with their ingestion status."""
    target = service.get_or_raise(session, project_id=principal.project_id, ref=kb)
    rows, next_cursor = service.list_documents(session, kb=target, limit=limit, cursor=cursor)
    data = service.documents_public(session, kb=target, documents=rows)
    return {"data": data, "next_cursor": next_cursor}


@router.get(
    "/knowledge-bases/{kb}/documents/{document}",
    operation_id="get_document",
    response_model=DocumentPublic,
)
def get_document(
    kb: str,
    document: str,
    principal: Principal = Depends(reader),
    session: Session = Depends(get_session),
):
    """One document, by id or name."""
    target = service.get_or_raise(session, project_id=principal.project_id, ref=kb)
    found = service.get_document_or_raise(session, kb=target, ref=document)
    return service.documents_public(session, kb=target, documents=[found])[0]


@router.delete(
    "/knowledge-bases/{kb}/documents/{document}",
    operation_id="delete_document",
    status_code=204,
)
def delete_document(
    kb: str,
    document: str,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
):
    """Delete a document; its chunks leave every index version at once."""
    target = service.get_or_raise(session, project_id=principal.project_id, ref=kb)
    found = service.get_document_or_raise(session, kb=target, ref=document)
    service.delete_document(session, settings=runtime.settings, document=found)


@router.get(
    "/knowledge-bases/{kb}/documents/{document}/chunks/{chunk_id}",
    operation_id="get_chunk",
    response_model=SearchHit,
)
def get_chunk(
    kb: str,
    document: str,
    chunk_id: int,
    principal: Principal = Depends(reader),
    session: Session = Depends(get_session),
):
    """One chunk: what a citation links to."""
    target = service.get_or_raise(session, project_id=principal.project_id, ref=kb)
    found = service.get_document_or_raise(session, kb=target, ref=document)
    chunk = session.get(Chunk, chunk_id)
    if chunk is None or chunk.document_id != found.id:
        raise NotFound(f"No chunk {chunk_id} in document {found.name!r}.", param="chunk_id")
    return SearchHit(
        rank=1,
        chunk_id=chunk.id,
        document_id=found.id,
        document_name=found.name,
        text=chunk.text,
        score=0.0,
        page=chunk.page,
        heading_path=chunk.heading_path or [],
        start_offset=chunk.start_offset,
        end_offset=chunk.end_offset,
        metadata=chunk.metadata_ or {},
    )


@router.post(
    "/knowledge-bases/{kb}/search",
    operation_id="search_knowledge_base",
    response_model=SearchResult,
)
async def search_knowledge_base(
    kb: str,
    body: SearchRequest,
    principal: Principal = Depends(reader),
    runtime: Runtime = Depends(get_runtime),
):
    """Keyword, vector or hybrid search with filters, MMR and optional reranking."""
    return await retrieval.search(runtime, principal, kb, body)


@router.post(
    "/knowledge-bases/{kb}/ask", operation_id="ask_knowledge_base", response_model=AskResult
)
async def ask_knowledge_base(
    kb: str,
    body: AskRequest,
    principal: Principal = Depends(builder),
    runtime: Runtime = Depends(get_runtime),
):
    """Answer a question from the knowledge base, citing numbered chunks."""
    return await retrieval.ask(runtime, principal, kb, body)


@router.get("/jobs/{job_id}", operation_id="get_job", response_model=JobPublic)
def get_job(
    job_id: str, principal: Principal = Depends(reader), session: Session = Depends(get_session)
):
    """A background job's status and progress."""
    return jobs.get_or_raise(session, job_id=job_id, project_id=principal.project_id)
