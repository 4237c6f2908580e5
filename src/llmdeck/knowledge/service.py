"""Knowledge bases, their documents and index versions (ingestion lives in ingest.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from llmdeck.catalog import service as catalog
from llmdeck.core import jobs
from llmdeck.core.db import utcnow
from llmdeck.core.errors import Conflict, InvalidRequest, NotFound
from llmdeck.core.settings import Settings
from llmdeck.identity.schemas import Principal
from llmdeck.knowledge import parsing
from llmdeck.knowledge.indexes import mark_changed
from llmdeck.knowledge.models import Chunk, Document, IndexVersion, KnowledgeBase
from llmdeck.knowledge.schemas import (
    DocumentPublic,
    KnowledgeBaseCreate,
    KnowledgeBasePublic,
    KnowledgeBaseUpdate,
    VersionPublic,
)

INGEST_JOB = "knowledge.ingest"
MAX_DOCUMENTS = 10_000
MAX_LIMIT = 200
# Chunk metadata flag: the chunk is longer than its embedding model reads, so its vector was
# made from its start only (keyword search still sees all of it).
TRUNCATED = "embedding_truncated"


# The file store: <home>/files/knowledge/<kb id>/<document id>/, names built from ids only.


def store_root(settings: Settings) -> Path:
    return (Path(settings.home) / "files" / "knowledge").resolve()


def _document_dir(settings: Settings, kb_id: str, document_id: str) -> Path:
    root = store_root(settings)
    path = (root / kb_id / document_id).resolve()
    if root not in path.parents:  # ids are ULIDs; this only guards against a bug
        raise InvalidRequest("Refusing a file path outside the file store.")
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_original(settings: Settings, document: Document) -> bytes:
    return (_document_dir(settings, document.kb_id, document.id) / "original").read_bytes()


def write_parsed(settings: Settings, document: Document, text: str) -> None:
    _write_atomic(
        _document_dir(settings, document.kb_id, document.id) / "parsed.txt", text.encode()
    )


# Knowledge bases


def create(session: Session, *, project_id: str, data: KnowledgeBaseCreate) -> KnowledgeBase:
    if get_by_name(session, project_id=project_id, name=data.name) is not None:
        raise Conflict(f"A knowledge base named {data.name!r} already exists.", param="name")
    catalog.get_for_project_or_raise(
        session, alias=data.embedding_model, project_id=project_id, kind="embedding"
    )
    kb = KnowledgeBase(project_id=project_id, name=data.name, description=data.description)
    session.add(kb)
    session.flush()
    version = IndexVersion(
        kb_id=kb.id,
        number=1,
        embedding_model=data.embedding_model,
        chunking=data.chunking.model_dump(),
        status="active",
        activated_at=utcnow(),
    )
    session.add(version)
    session.flush()
    kb.active_version_id = version.id
    session.flush()
    return kb


def get_by_name(session: Session, *, project_id: str, name: str) -> KnowledgeBase | None:
    return session.scalar(
        select(KnowledgeBase).where(
            KnowledgeBase.project_id == project_id, KnowledgeBase.name == name
        )
    )


def get_or_raise(session: Session, *, project_id: str, ref: str) -> KnowledgeBase:
    """A knowledge base of this project by name or id; other projects' are invisible."""
    kb = get_by_name(session, project_id=project_id, name=ref)
    if kb is None:
        kb = session.get(KnowledgeBase, ref)
        if kb is not None and kb.project_id != project_id:
            kb = None
    if kb is None:
        raise NotFound(
            f"No knowledge base {ref!r} in this project. `llmdeck kb list` shows them.",
            param="kb",
        )
    return kb


def list(
    session: Session, *, project_id: str, limit: int = 50, cursor: str | None = None
) -> tuple[list[KnowledgeBase], str | None]:
    """A project's knowledge bases, oldest first; the cursor is the last id seen."""
    _check_limit(limit)
    query = select(KnowledgeBase).where(KnowledgeBase.project_id == project_id)
    if cursor:
        query = query.where(KnowledgeBase.id > cursor)
    rows = session.scalars(query.order_by(KnowledgeBase.id).limit(limit + 1)).all()
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}.", param="limit")


def version_of(session: Session, version_id: str | None) -> IndexVersion | None:
    return session.get(IndexVersion, version_id) if version_id else None


def active_version_or_raise(session: Session, kb: KnowledgeBase) -> IndexVersion:
    version = version_of(session, kb.active_version_id)
    if version is None:
        raise Conflict(f"The knowledge base {kb.name!r} has no index yet.")
    return version


def to_public(session: Session, kb: KnowledgeBase) -> KnowledgeBasePublic:
    active = version_of(session, kb.active_version_id)
    building = version_of(session, kb.building_version_id)
    current = building or active
    documents = session.scalar(select(func.count(Document.id)).where(Document.kb_id == kb.id))
    chunks = session.scalar(
        select(func.count(Chunk.id)).where(Chunk.version_id == kb.active_version_id)
    )
    truncated = sum(truncated_counts(session, version_id=kb.active_version_id).values())
    return KnowledgeBasePublic(
        id=kb.id,
        name=kb.name,
        description=kb.description,
        embedding_model=current.embedding_model if current else "",
        chunking=current.chunking if current else {},
        active_version=VersionPublic.model_validate(active) if active else None,
        building_version=VersionPublic.model_validate(building) if building else None,
        document_count=documents or 0,
        chunk_count=chunks or 0,
        truncated_chunks=truncated,
        truncation_notice=truncation_notice(
            session, model=active.embedding_model if active else "", count=truncated
        ),
        created_at=kb.created_at,
    )


def truncated_counts(
    session: Session, *, version_id: str | None, document_ids: Iterable[str] | None = None
) -> dict[str, int]:
    """Per document, its chunks in this version that are longer than the model reads."""
    if not version_id:
        return {}
    query = select(Chunk.document_id, func.count(Chunk.id)).where(
        Chunk.version_id == version_id, Chunk.metadata_[TRUNCATED].as_boolean()
    )
    if document_ids is not None:
        query = query.where(Chunk.document_id.in_(document_ids))
    return dict(session.execute(query.group_by(Chunk.document_id)).tuples().all())


def truncation_notice(session: Session, *, model: str, count: int) -> str | None:
    """What to tell of `count` chunks longer than `model` reads (None when there are none)."""
    if not count:
        return None
    found = catalog.get_by_alias(session, alias=model)
    limit = f" ({found.context_window} word pieces)" if found and found.context_window else ""
    chunks, their = ("1 chunk is", "its") if count == 1 else (f"{count} chunks are", "their")
    return (
        f"{chunks} longer than {model} reads{limit}; vector search sees only {their} start. "
        "Lower chunk_size."
    )


def update(
    session: Session, *, kb: KnowledgeBase, data: KnowledgeBaseUpdate
) -> tuple[KnowledgeBase, bool]:
    """Apply changes; True when a new index version must be built (model or chunking)."""
    if data.description is not None:
        kb.description = data.description
    current = version_of(session, kb.building_version_id) or active_version_or_raise(session, kb)
    model = data.embedding_model or current.embedding_model
    chunking = data.chunking.model_dump() if data.chunking else current.chunking
    if model == current.embedding_model and chunking == current.chunking:
        session.flush()
        return kb, False
    catalog.get_for_project_or_raise(
        session, alias=model, project_id=kb.project_id, kind="embedding"
    )
    if kb.building_version_id:  # a newer request replaces an unfinished build
        _drop_version(session, kb.building_version_id)
    number = session.scalar(
        select(func.max(IndexVersion.number)).where(IndexVersion.kb_id == kb.id)
    )
    version = IndexVersion(
        kb_id=kb.id, number=(number or 0) + 1, embedding_model=model, chunking=chunking
    )
    session.add(version)
    session.flush()
    kb.building_version_id = version.id
    session.flush()
    return kb, True


def activate(session: Session, *, kb: KnowledgeBase, version: IndexVersion) -> str | None:
    """Switch queries to a completed version; returns the replaced version's id.

    The replaced version is marked retired at once, but its chunks stay until
    `purge_retired` runs, so that queries already under way still find them.
    """
    old = kb.active_version_id
    version.status, version.activated_at = "active", utcnow()
    kb.active_version_id, kb.building_version_id = version.id, None
    session.flush()
    if old and old != version.id:
        _drop_version(session, old, keep_chunks=True)
        return old
    return None


def purge_retired(session: Session, *, kb_id: str) -> int:
    """Delete the chunks of a knowledge base's retired versions."""
    retired = select(IndexVersion.id).where(
        IndexVersion.kb_id == kb_id, IndexVersion.status == "retired"
    )
    mark_changed(session)
    return session.execute(sql_delete(Chunk).where(Chunk.version_id.in_(retired))).rowcount


def _drop_version(session: Session, version_id: str, *, keep_chunks: bool = False) -> None:
    if not keep_chunks:
        mark_changed(session)
        session.execute(sql_delete(Chunk).where(Chunk.version_id == version_id))
    session.execute(
        sql_update(IndexVersion).where(IndexVersion.id == version_id).values(status="retired")
    )


def delete(session: Session, *, settings: Settings, kb: KnowledgeBase) -> None:
    # Chunks first, one statement, so SQLite's FTS triggers run before the cascade.
    mark_changed(session)
    session.execute(sql_delete(Chunk).where(Chunk.kb_id == kb.id))
    session.delete(kb)
    session.flush()
    shutil.rmtree(store_root(settings) / kb.id, ignore_errors=True)


# Documents


def add_document(
    session: Session,
    *,
    settings: Settings,
    kb: KnowledgeBase,
    name: str,
    data: bytes,
    metadata: dict[str, Any] | None = None,
) -> tuple[Document, bool]:
    """Store an upload; (document, changed). Same name and content: nothing changes.

    A new file under a document's name replaces its content; `metadata` None keeps the
    metadata the document was given before (updating a file does not lose it), a dict, even
    empty, replaces it."""
    name = parsing.safe_name(name)
    kind = parsing.sniff(name, data)
    digest = hashlib.sha256(data).hexdigest()
    _check_metadata(metadata or {})
    document = session.scalar(
        select(Document).where(Document.kb_id == kb.id, Document.name == name)
    )
    if document is not None and document.content_hash == digest:
        return document, False
    if document is None:
        count = session.scalar(select(func.count(Document.id)).where(Document.kb_id == kb.id))
        if (count or 0) >= MAX_DOCUMENTS:
            raise InvalidRequest(
                f"A knowledge base holds at most {MAX_DOCUMENTS:,} documents; create another.",
                code="too_many_documents",
            )
        document = Document(
            kb_id=kb.id,
            project_id=kb.project_id,
            name=name,
            path="",
            content_type=parsing.CONTENT_TYPES[kind],
            size=len(data),
            content_hash=digest,
        )
        session.add(document)
        session.flush()
    else:
        # The old content's chunks leave every index version now, not at re-ingestion.
        mark_changed(session)
        session.execute(sql_delete(Chunk).where(Chunk.document_id == document.id))
    directory = _document_dir(settings, kb.id, document.id)
    _write_atomic(directory / "original", data)
    document.path = str(directory.relative_to(store_root(settings)) / "original")
    document.content_type = parsing.CONTENT_TYPES[kind]
    document.size = len(data)
    document.content_hash = digest
    document.status, document.error, document.chunk_count = "pending", None, 0
    if metadata is None:  # a replacement without metadata keeps the user's, not the format
        metadata = {k: v for k, v in (document.metadata_ or {}).items() if k != "format"}
    document.metadata_ = {**metadata, "format": kind}
    document.updated_at = utcnow()
    session.flush()
    return document, True


def _check_metadata(metadata: dict[str, Any]) -> None:
    if len(metadata) > 50 or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in metadata.items()
    ):
        raise InvalidRequest(
            "metadata must be a flat object of at most 50 string, number or boolean values.",
            param="metadata",
        )


# Keys every chunk carries whatever its document's metadata: its document's name, and the
# flag of a chunk longer than its embedding model reads.
BUILT_IN_KEYS = ("document", TRUNCATED)


def metadata_keys(session: Session, *, kb_id: str) -> tuple[set[str], bool]:
    """The metadata keys a search of this knowledge base can filter on, from its documents'
    metadata, and whether chunks may carry more (JSONL rows bring their own fields)."""
    keys, rows_have_fields = set(BUILT_IN_KEYS), False
    for (metadata,) in session.execute(select(Document.metadata_).where(Document.kb_id == kb_id)):
        keys.update(metadata or {})
        if (metadata or {}).get("format") in ("csv", "jsonl"):
            keys.add("row")
            rows_have_fields |= metadata.get("format") == "jsonl"
    return keys, rows_have_fields


def list_documents(
    session: Session, *, kb: KnowledgeBase, limit: int = 50, cursor: str | None = None
) -> tuple[list[Document], str | None]:
    _check_limit(limit)
    query = select(Document).where(Document.kb_id == kb.id)
    if cursor:
        query = query.where(Document.id > cursor)
    rows = session.scalars(query.order_by(Document.id).limit(limit + 1)).all()
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def failed_documents(session: Session, *, kb: KnowledgeBase, ids: Iterable[str]) -> list[Document]:
    """Those of these documents whose ingestion failed (each with its `error`), by name."""
    wanted = set(ids)
    rows = session.scalars(
        select(Document)
        .where(Document.kb_id == kb.id, Document.status == "failed")
        .order_by(Document.name)
    )
    return [d for d in rows if d.id in wanted]


def get_document_or_raise(session: Session, *, kb: KnowledgeBase, ref: str) -> Document:
    document = session.scalar(
        select(Document).where(
            Document.kb_id == kb.id, (Document.id == ref) | (Document.name == ref)
        )
    )
    if document is None:
        raise NotFound(f"No document {ref!r} in knowledge base {kb.name!r}.", param="document")
    return document


def delete_document(session: Session, *, settings: Settings, document: Document) -> None:
    """Remove a document and its chunks from every index version."""
    mark_changed(session)
    session.execute(sql_delete(Chunk).where(Chunk.document_id == document.id))
    session.delete(document)
    session.flush()
    shutil.rmtree(_document_dir(settings, document.kb_id, document.id), ignore_errors=True)


def documents_public(
    session: Session, *, kb: KnowledgeBase, documents: Iterable[Document]
) -> list[DocumentPublic]:
    """Documents as the API shows them, with their chunks the version now serving cut."""
    documents = [*documents]
    cut = truncated_counts(
        session, version_id=kb.active_version_id, document_ids=[d.id for d in documents]
    )
    shown = [DocumentPublic.model_validate(d) for d in documents]
    for public in shown:
        public.truncated_chunks = cut.get(public.id, 0)
    return shown


# Ingestion jobs


def queue_ingest(session: Session, *, kb: KnowledgeBase, principal: Principal) -> jobs.Job:
    """Queue ingestion of whatever this knowledge base's versions still miss."""
    return jobs.enqueue(
        session,
        kind=INGEST_JOB,
        project_id=kb.project_id,
        payload={
            "kb_id": kb.id,
            "principal": {
                "project_id": principal.project_id,
                "project_name": principal.project_name,
                "role": principal.role,
                "api_key_id": principal.api_key_id,
            },
        },
    )
