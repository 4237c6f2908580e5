"""REST API of the prompt registry: /api/prompts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from llmdeck.identity.deps import get_principal, get_runtime, get_session, known_principal, requires
from llmdeck.identity.schemas import Principal
from llmdeck.prompts import authors, chains, service
from llmdeck.prompts.cache import cache_for
from llmdeck.prompts.schemas import (
    NAME,
    LabelMove,
    PromptDiff,
    PromptPage,
    PromptVersionCreate,
    PromptVersionPublic,
    PromptVersionPushed,
    RenderedPrompt,
    RenderRequest,
)
from llmdeck.runtime import Runtime

router = APIRouter(prefix="/api/prompts", tags=["prompts"])
builder = requires("builder", "change prompts")
reviewer = requires("reviewer", "move prompt labels")
PromptName = Path(pattern=NAME, max_length=200)


@router.get("", operation_id="list_prompts", response_model=PromptPage)
def list_prompts(
    kind: str | None = Query(default=None, description="prompt or chain"),
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """The project's prompts and chains with their labels."""
    rows = service.list(session, project_id=principal.project_id, kind=kind)
    return {"data": [service.to_public(session, p) for p in rows], "next_cursor": None}


UNCHANGED = {
    200: {
        "model": PromptVersionPushed,
        "description": "The content equals the latest version's: that version, unchanged "
        "(`created` is false), with the labels asked for now pointing at it.",
    }
}


def _pushed(session: Session, pushed: service.Pushed, response: Response) -> PromptVersionPushed:
    """The version a push left as latest: 201 when it is new, 200 when it was kept."""
    response.status_code = 201 if pushed.created else 200
    label_map = service.labels(session, prompt=pushed.prompt)
    public = service.version_public(
        pushed.prompt, pushed.row, label_map, authors.names(session, [pushed.row.created_by])
    )
    return PromptVersionPushed(**public.model_dump(), created=pushed.created)


@router.post(
    "/{name}/versions",
    operation_id="create_prompt_version",
    response_model=PromptVersionPushed,
    status_code=201,
    responses=UNCHANGED,
)
def create_prompt_version(
    body: PromptVersionCreate,
    response: Response,
    name: str = PromptName,
    principal: Principal = Depends(builder),
    session: Session = Depends(get_session),
):
    """Add an immutable version (the first one creates the prompt); `labels` point at it.

    When the content (messages or steps, model, params) equals the latest version's, no
    version is added: the answer is that version with 200 and `created: false`.
    """
    pushed = service.push_version(
        session,
        project_id=principal.project_id,
        name=name,
        data=body,
        role=principal.role,
        author=authors.of(session, principal),
    )
    return _pushed(session, pushed, response)


@router.get("/{name}", operation_id="get_prompt", response_model=PromptVersionPublic)
async def get_prompt(
    request: Request,
    name: str,
    label: str | None = Query(default=None, description="e.g. production; default: latest"),
    version: int | None = Query(default=None, ge=1),
    principal: Principal = Depends(known_principal),
):
    """One version of a prompt, by label or number (the SDK's fetch).

    Answered from memory once fetched: a label moved in this process shows at once, one
    moved by another server process within half a second (see prompts/cache.py).
    """
    cache = cache_for(request.app.state.runtime.db)
    body = await cache.fetch(principal.project_id, name, label, version)
    return Response(body, media_type="application/json")


@router.get(
    "/{name}/versions",
    operation_id="list_prompt_versions",
    response_model=list[PromptVersionPublic],
)
def list_prompt_versions(
    name: str,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """Every version, newest first."""
    prompt = service.get_by_name_or_raise(session, project_id=principal.project_id, name=name)
    label_map = service.labels(session, prompt=prompt)
    versions = service.versions(session, prompt=prompt)
    names = authors.names(session, [v.created_by for v in versions])
    return [service.version_public(prompt, v, label_map, names) for v in versions]


@router.put("/{name}/labels/{label}", operation_id="set_prompt_label", response_model=dict)
def set_prompt_label(
    name: str,
    label: str,
    body: LabelMove,
    principal: Principal = Depends(reviewer),
    session: Session = Depends(get_session),
):
    """Point a label at a version; moving it back is a rollback. `production` needs builder."""
    prompt = service.get_by_name_or_raise(session, project_id=principal.project_id, name=name)
    service.set_label(
        session,
        prompt=prompt,
        label=label,
        version=body.version,
        role=principal.role,
        author=authors.of(session, principal),
    )
    return {"name": name, "label": label, "version": body.version}


@router.delete("/{name}/labels/{label}", operation_id="delete_prompt_label", status_code=204)
def delete_prompt_label(
    name: str,
    label: str,
    principal: Principal = Depends(reviewer),
    session: Session = Depends(get_session),
):
    """Remove a label."""
    prompt = service.get_by_name_or_raise(session, project_id=principal.project_id, name=name)
    service.delete_label(session, prompt=prompt, label=label, role=principal.role)


@router.get("/{name}/diff", operation_id="diff_prompt_versions", response_model=PromptDiff)
def diff_prompt_versions(
    name: str,
    from_version: int = Query(alias="from", ge=1),
    to_version: int = Query(alias="to", ge=1),
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """A unified diff between two versions."""
    prompt = service.get_by_name_or_raise(session, project_id=principal.project_id, name=name)
    a = service.get_version_or_raise(session, prompt=prompt, version=from_version)
    b = service.get_version_or_raise(session, prompt=prompt, version=to_version)
    return PromptDiff(
        name=name, from_version=from_version, to_version=to_version, diff=service.diff(prompt, a, b)
    )


@router.post("/{name}/render", operation_id="render_prompt", response_model=RenderedPrompt)
def render_prompt(
    name: str,
    body: RenderRequest,
    principal: Principal = Depends(get_principal),
    session: Session = Depends(get_session),
):
    """The messages a version renders to with these variables (400 names a missing one)."""
    prompt, row = service.resolve(
        session, project_id=principal.project_id, name=name, label=body.label, version=body.version
    )
    return service.render(prompt, row, body.variables, body.label)


chains_router = APIRouter(prefix="/api/chains", tags=["prompts"])


class ChainRun(BaseModel):
    variables: dict[str, Any] = Field(default_factory=dict)


@chains_router.post(
    "",
    operation_id="create_chain_version",
    response_model=PromptVersionPushed,
    status_code=201,
    responses=UNCHANGED,
)
async def create_chain_version(
    request: Request,
    response: Response,
    principal: Principal = Depends(builder),
    runtime: Runtime = Depends(get_runtime),
):
    """Add a chain version from a YAML body (`name`, `steps`; loaded with safe_load).

    Steps equal to the latest version's add no version: 200 and `created: false`.
    """
    name, data = chains.load_yaml((await request.body()).decode("utf-8"))
    with runtime.db.session() as session:
        pushed = service.push_version(
            session,
            project_id=principal.project_id,
            name=name,
            data=data,
            role=principal.role,
            author=authors.of(session, principal),
        )
        return _pushed(session, pushed, response)


@chains_router.post("/{ref}/runs", operation_id="run_chain", response_model=dict)
async def run_chain(
    ref: str,
    body: ChainRun,
    principal: Principal = Depends(requires("builder", "run chains")),
    runtime: Runtime = Depends(get_runtime),
):
    """Run a chain (NAME, NAME@LABEL or NAME@VERSION); each step is a span in its trace."""
    result = await chains.run_chain(runtime, principal, ref, body.variables, source="api")
    return {
        "output": result.output,
        "trace_id": result.trace_id,
        "version": result.version,
        "steps": [
            {"type": s.type, "output": s.output, "latency_ms": s.latency_ms} for s in result.steps
        ],
    }
