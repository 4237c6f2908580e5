"""A small knowledge base for the demo project, ingested in the background at start."""

from __future__ import annotations

from sqlalchemy.orm import Session

from llmdeck.core.settings import Settings
from llmdeck.identity.models import Project
from llmdeck.identity.schemas import Principal
from llmdeck.knowledge import service
from llmdeck.knowledge.schemas import KnowledgeBaseCreate

DEMO_KB = "handbook"
DOCUMENTS = {
    "getting-started.md": b"""# Getting started

## Install

Run `make run` to start llmdeck with a demo project. The console opens at the root URL.

## First chat

Open the playground, pick the smollm2-135m model and send a message. Every call is traced.
""",
    "knowledge-bases.md": b"""# Knowledge bases

Upload txt, md, html, pdf, docx, csv or jsonl files. Each file is parsed, cut into chunks
and embedded with the bundled MiniLM model.

## Asking questions

The ask endpoint retrieves the best chunks with hybrid search and answers with numbered
citations that link back to the source documents.
""",
    "support.txt": b"""Support hours are Monday to Friday, 9:00 to 17:00 UTC.

Urgent incidents can be reported at any time through the on-call rota.""",
}


def seed(session: Session, settings: Settings, project: Project) -> None:
    """Create the demo knowledge base once and queue its ingestion (seconds, in the background)."""
    if service.get_by_name(session, project_id=project.id, name=DEMO_KB) is not None:
        return
    kb = service.create(
        session,
        project_id=project.id,
        data=KnowledgeBaseCreate(name=DEMO_KB, description="How to use llmdeck (demo)."),
    )
    for name, data in DOCUMENTS.items():
        service.add_document(session, settings=settings, kb=kb, name=name, data=data)
    principal = Principal(project_id=project.id, project_name=project.name, role="admin")
    service.queue_ingest(session, kb=kb, principal=principal)
