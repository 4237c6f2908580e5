"""CLI of knowledge bases: `llmdeck kb create|list|add|rm|delete|search|ask`."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmdeck.cli.output import console, db_session, emit, errors, fail_cleanly, validated
from llmdeck.core import jobs
from llmdeck.core.errors import InvalidRequest
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import Principal
from llmdeck.knowledge import filters as metadata_filters
from llmdeck.knowledge import ingest as _ingest  # noqa: F401 - registers the ingestion job
from llmdeck.knowledge import parsing, retrieval, service
from llmdeck.knowledge.chunking import ChunkingConfig
from llmdeck.knowledge.schemas import AskRequest, KnowledgeBaseCreate, SearchRequest

kb = typer.Typer(help="Knowledge bases: documents, search and answers.", no_args_is_help=True)
PROJECT = typer.Option("default", "--project", help="Project of the knowledge base.")


def _principal(project: str) -> Principal:
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        return Principal(project_id=target.id, project_name=target.name, role="admin")


def _runtime():
    from llmdeck.runtime import Runtime

    return Runtime.start(get_settings())


def _with_runtime(work):
    """`work(runtime)` run to its end in a runtime started for it, then stopped."""
    with fail_cleanly():
        runtime = _runtime()
        try:
            return asyncio.run(work(runtime))
        finally:
            asyncio.run(runtime.stop())


@kb.command("create")
def kb_create(
    name: str,
    project: str = PROJECT,
    description: str = typer.Option("", help="What it holds."),
    embedding_model: str = typer.Option("minilm-l6", help="Catalog alias of the embedder."),
    strategy: str = typer.Option("recursive", help="recursive or fixed."),
    chunk_size: int = typer.Option(180, help="Tokens per chunk, at most."),
    chunk_overlap: int = typer.Option(30, help="Tokens shared by neighbouring windows."),
) -> None:
    """Create a knowledge base."""
    with fail_cleanly():
        chunking = validated(
            ChunkingConfig, strategy=strategy, chunk_size=chunk_size, chunk_overlap=chunk_overlap
        )
        data = validated(
            KnowledgeBaseCreate,
            name=name,
            description=description,
            embedding_model=embedding_model,
            chunking=chunking,
        )
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        service.create(session, project_id=target.id, data=data)
    console.print(f"Created knowledge base [bold]{name}[/bold] in project {project}.")


@kb.command("list")
def kb_list(
    project: str = PROJECT, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List the project's knowledge bases."""
    with db_session() as session:
        target = identity.get_project_by_name_or_raise(session, name=project)
        rows, _ = service.list(session, project_id=target.id, limit=200)
        data = [service.to_public(session, k).model_dump(mode="json") for k in rows]
    for row in data:
        row["version"] = (row.get("active_version") or {}).get("number")
    emit(
        data,
        ["name", "embedding_model", "document_count", "chunk_count", "version", "description"],
        as_json=as_json,
    )


@kb.command("delete")
def kb_delete(
    name: str = typer.Argument(help="Knowledge base, by name or id."),
    project: str = PROJECT,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a knowledge base with its documents, chunks and index versions."""
    principal = _principal(project)
    with db_session() as session:
        target = service.get_or_raise(session, project_id=principal.project_id, ref=name)
        label, documents = target.name, service.to_public(session, target).document_count
    if not yes:
        typer.confirm(
            f"Delete knowledge base {label!r} and its {documents} documents from {project}?",
            abort=True,
        )
    with db_session() as session:
        target = service.get_or_raise(session, project_id=principal.project_id, ref=name)
        service.delete(session, settings=get_settings(), kb=target)
    console.print(f"Deleted knowledge base [bold]{label}[/bold] from project {project}.")


@kb.command("rm")
def kb_rm(
    name: str = typer.Argument(help="Knowledge base, by name or id."),
    document: str = typer.Argument(help="Document, by name or id."),
    project: str = PROJECT,
) -> None:
    """Delete a document and its chunks from every index version."""
    principal = _principal(project)
    with db_session() as session:
        target = service.get_or_raise(session, project_id=principal.project_id, ref=name)
        found = service.get_document_or_raise(session, kb=target, ref=document)
        label, kb_name = found.name, target.name
        service.delete_document(session, settings=get_settings(), document=found)
    console.print(f"Deleted document [bold]{label}[/bold] from knowledge base {kb_name}.")


def _files(path: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files to add from `path`, and those of a folder that are left out, with why."""
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise typer.BadParameter(f"{path} is neither a file nor a directory.")
    found, skipped = [], []
    for file in sorted(path.rglob("*")):
        if file.is_symlink():
            # Links could point anywhere on disk; only regular files below the folder are read.
            skipped.append((file, "it is a symbolic link, and links are not followed"))
        elif not file.is_file():
            continue
        elif file.suffix.lower() in parsing.EXTENSIONS:
            found.append(file)
        else:
            kind = f"{file.suffix} files are" if file.suffix else "a file with no extension is"
            skipped.append((file, f"{kind} not supported"))
    return found, skipped


SHOWN = 20  # skipped files listed one by one; past that, a count


def _report_skipped(skipped: list[tuple[Path, str]]) -> None:
    for file, why in skipped[:SHOWN]:
        errors.print(f"[yellow]skipped[/yellow] {file}: {why}.", highlight=False, soft_wrap=True)
    if len(skipped) > SHOWN:
        errors.print(f"… and {len(skipped) - SHOWN} more skipped files.", highlight=False)
    if skipped:
        errors.print(f"Supported file types: {parsing.SUPPORTED}.", highlight=False)


@dataclass
class _Stored:
    kb_id: str
    accepted: list[str] = field(default_factory=list)  # document ids, changed or not
    added: int = 0
    unchanged: int = 0
    refused: int = 0


def _store(principal: Principal, name: str, path: Path, files: list[Path]) -> _Stored:
    """Store each file as a document; a refused one is reported with its reason."""
    settings = get_settings()
    with db_session() as session:
        target = service.get_by_name(session, project_id=principal.project_id, name=name)
        if target is None:
            target = service.create(
                session, project_id=principal.project_id, data=KnowledgeBaseCreate(name=name)
            )
        stored = _Stored(kb_id=target.id)
        named: dict[str, Path] = {}  # document name -> the file stored under it
        for file in files:
            try:
                # A document is named by its file's base name: a second file of the same
                # name elsewhere in the folder would silently replace the first.
                document_name = parsing.safe_name(file.name)
                if document_name in named:
                    raise InvalidRequest(
                        f"its name {document_name!r} is already taken by {named[document_name]}; "
                        "rename one of them"
                    )
                named[document_name] = file
                document, changed = service.add_document(
                    session,
                    settings=settings,
                    kb=target,
                    name=document_name,
                    data=file.read_bytes(),
                )
            except InvalidRequest as exc:
                errors.print(
                    f"[red]refused[/red] {file}: {exc.message}", highlight=False, soft_wrap=True
                )
                stored.refused += 1
                continue
            stored.accepted.append(document.id)
            stored.added += changed
            stored.unchanged += not changed
    return stored


@kb.command("add")
def kb_add(
    name: str = typer.Argument(help="Knowledge base (created with defaults if missing)."),
    path: Path = typer.Argument(help="A file or a folder of files to add."),
    project: str = PROJECT,
) -> None:
    """Add files (or a folder of them) and ingest them, with a progress bar.

    Exits 1 when a file is refused or fails to ingest; each one is listed with the reason."""
    principal = _principal(project)
    files, skipped = _files(path)
    _report_skipped(skipped)
    if not files:
        errors.print(f"No supported files under {path} ({parsing.SUPPORTED}).")
        raise typer.Exit(1)
    stored = _store(principal, name, path, files)
    console.print(
        f"{stored.added} new or changed, {stored.unchanged} unchanged, {stored.refused} refused"
        + (f", {len(skipped)} skipped." if skipped else ".")
    )
    failed = []
    if stored.accepted:  # with every file refused there is nothing to ingest
        with db_session() as session:
            target = service.get_or_raise(
                session, project_id=principal.project_id, ref=stored.kb_id
            )
            job_id = service.queue_ingest(session, kb=target, principal=principal).id
        _run_with_progress(job_id)
        with db_session() as session:
            target = service.get_or_raise(
                session, project_id=principal.project_id, ref=stored.kb_id
            )
            failed = [
                (d.name, d.error)
                for d in service.failed_documents(session, kb=target, ids=stored.accepted)
            ]
    for document, error in failed:
        errors.print(f"[red]failed[/red] {document}: {error}", highlight=False, soft_wrap=True)
    if stored.refused or failed:
        errors.print(
            f"[red]error:[/red] {stored.refused + len(failed)} of {len(files)} files were not "
            f"ingested ({stored.refused} refused, {len(failed)} failed); the reasons are above.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _run_with_progress(job_id: str) -> None:
    runtime = _runtime()
    db = runtime.db
    # Claimed like any worker claims it, so that a running server does not take it too; if
    # a server's worker got it first, this command follows its progress instead.
    owner = jobs.claim_job(db, job_id)
    with db.session() as session:
        job = jobs.get_or_raise(session, job_id=job_id)
        session.expunge(job)
    worker = None
    if owner is not None:
        lease = runtime.settings.job_lease
        worker = threading.Thread(
            target=lambda: asyncio.run(jobs.run_one(db, job, runtime, worker=owner, lease=lease))
        )
        worker.start()
    columns = (
        TextColumn("[bold]ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("", total=None)
        row = job
        while row.status in ("queued", "running"):
            time.sleep(0.2)
            with db.session() as session:
                row = jobs.get_or_raise(session, job_id=job_id)
                progress.update(task, completed=row.done, total=row.total or None)
        if worker is not None:
            worker.join()
        with db.session() as session:
            row = jobs.get_or_raise(session, job_id=job_id)
            # An empty job shows 0/0, not a bar that never filled.
            progress.update(task, completed=row.done, total=row.total)
    asyncio.run(runtime.stop())
    if row.status == "failed":
        errors.print(f"[red]error:[/red] {row.error}", highlight=False)
        raise typer.Exit(1)
    result = row.result or {}
    if not result.get("documents"):
        console.print("Nothing new to ingest.")
        return
    console.print(
        f"Ingested {result.get('documents', 0)} documents into {result.get('chunks', 0)} "
        f"chunks ({result.get('failed', 0)} failed)."
    )
    for notice in result.get("notices") or ():
        errors.print(f"[yellow]note:[/yellow] {notice}", highlight=False, soft_wrap=True)


def _default(field: str):
    return AskRequest.model_fields[field].default


# Retrieval options of `kb search` and `kb ask`: the API's fields, names and defaults.
MODE = typer.Option(_default("mode"), help="hybrid, keyword or vector.")
TOP_K = typer.Option(_default("top_k"), help="How many chunks.")
FILTERS = typer.Option(
    "",
    "--filter",
    help="Metadata filters: key=value (one per line; a key on several lines matches any of "
    'its values), or JSON: {"document": "faq.md", "row": [1, 2]}.',
)
KEYWORD_WEIGHT = typer.Option(_default("keyword_weight"), help="Keyword ranking's RRF weight.")
VECTOR_WEIGHT = typer.Option(_default("vector_weight"), help="Vector ranking's RRF weight.")
MMR = typer.Option(_default("mmr"), "--mmr", help="Diversify results (maximal marginal relevance).")
MMR_LAMBDA = typer.Option(_default("mmr_lambda"), help="MMR trade-off; 1: relevance only.")
RERANK = typer.Option(
    _default("rerank"), help="none, or embedding: re-score candidates by cosine similarity."
)
# The CLI option that sets each field, so that a refusal names what the user typed.
OPTIONS = {
    "top_k": "--top-k",
    "filters": "--filter",
    "keyword_weight": "--keyword-weight",
    "vector_weight": "--vector-weight",
    "mmr_lambda": "--mmr-lambda",
    "max_tokens": "--max-tokens",
}


def _retrieval(**values):
    """The retrieval fields as the API takes them, --filter parsed as the console parses it."""
    return {**values, "filters": metadata_filters.parse(values["filters"], name="--filter")}


@kb.command("search")
def kb_search(
    name: str,
    query: str,
    project: str = PROJECT,
    mode: str = MODE,
    top_k: int = TOP_K,
    filters: str = FILTERS,
    keyword_weight: float = KEYWORD_WEIGHT,
    vector_weight: float = VECTOR_WEIGHT,
    mmr: bool = MMR,
    mmr_lambda: float = MMR_LAMBDA,
    rerank: str = RERANK,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search a knowledge base."""
    with fail_cleanly():
        request = validated(
            SearchRequest,
            options=OPTIONS,
            query=query,
            **_retrieval(
                mode=mode,
                top_k=top_k,
                filters=filters,
                keyword_weight=keyword_weight,
                vector_weight=vector_weight,
                mmr=mmr,
                mmr_lambda=mmr_lambda,
                rerank=rerank,
            ),
        )
    principal = _principal(project)
    result = _with_runtime(lambda runtime: retrieval.search(runtime, principal, name, request))
    rows = [h.model_dump() for h in result.data]
    if not as_json:  # JSON carries each chunk whole, as the REST search does
        for row in rows:
            row["text"] = row["text"][:100].replace("\n", " ")
    emit(rows, ["rank", "score", "document_name", "page", "text"], as_json=as_json)
    if result.notice:
        errors.print(f"[yellow]note:[/yellow] {result.notice}", highlight=False, soft_wrap=True)


@kb.command("ask")
def kb_ask(
    name: str,
    question: str,
    project: str = PROJECT,
    model: str = typer.Option(_default("model"), help="Chat model alias."),
    max_tokens: int = typer.Option(_default("max_tokens"), help="Longest answer, in tokens."),
    temperature: float | None = typer.Option(None, help="Sampling temperature, 0 to 2."),
    mode: str = MODE,
    top_k: int = TOP_K,
    filters: str = FILTERS,
    keyword_weight: float = KEYWORD_WEIGHT,
    vector_weight: float = VECTOR_WEIGHT,
    mmr: bool = MMR,
    mmr_lambda: float = MMR_LAMBDA,
    rerank: str = RERANK,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Answer a question from a knowledge base, with citations."""
    with fail_cleanly():
        request = validated(
            AskRequest,
            options=OPTIONS,
            query=question,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            **_retrieval(
                mode=mode,
                top_k=top_k,
                filters=filters,
                keyword_weight=keyword_weight,
                vector_weight=vector_weight,
                mmr=mmr,
                mmr_lambda=mmr_lambda,
                rerank=rerank,
            ),
        )
    principal = _principal(project)
    result = _with_runtime(lambda runtime: retrieval.ask(runtime, principal, name, request))
    if as_json:
        console.print_json(result.model_dump_json())
        return
    console.print(result.answer, highlight=False)
    for c in result.citations:
        where = f", page {c.page}" if c.page else ""
        # markup=False: "[1]" is the citation, not a Rich tag.
        console.print(f"  [{c.number}] {c.document_name}{where}", highlight=False, markup=False)
    if not result.citations:
        console.print(
            f"(The answer cites none of the {len(result.sources)} retrieved chunks; "
            "--json lists them under sources.)",
            highlight=False,
        )
    console.print(f"trace: {result.trace_id}")
