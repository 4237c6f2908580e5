"""A prompt's or chain's console page: the editor at a version, with the version history,
a diff between two versions, the labels, and what a chain run asks for. The forms of
version_pages and run_pages come back to it, with their errors or their result."""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Request

from llmdeck.catalog import service as catalog
from llmdeck.console import flash
from llmdeck.console.auth import Viewer, signed_in
from llmdeck.console.shell import console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.prompts import authors, service
from llmdeck.prompts.rendering import variables_of

router = APIRouter(include_in_schema=False)


def chat_models(request: Request, viewer: Viewer) -> list[str]:
    with request.app.state.runtime.db.session() as session:
        return [
            m.alias
            for m in catalog.list_models(session, project_id=viewer.project.id)
            if m.kind == "chat"
        ]


@router.get("/prompts/{name}")
def prompt_page(
    request: Request,
    name: str,
    v: int | None = None,
    diff_from: int | None = None,
    error: str = "",
    viewer: Viewer = Depends(signed_in),
):
    errors = {"form": error} if error else None
    notice = flash.read(request, viewer.session)
    response = editor(request, viewer, name, v=v, diff_from=diff_from, errors=errors, notice=notice)
    flash.clear(response, request, f"/prompts/{name}")
    return response


def editor(
    request: Request,
    viewer: Viewer,
    name: str,
    *,
    v: int | None = None,
    diff_from: int | None = None,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    run: dict[str, Any] | None = None,
    partial: bool = False,
    notice: str | None = None,
):
    """The editor at version `v`, its fields refilled with what was typed when refused."""
    with request.app.state.runtime.db.session() as session:
        prompt = service.get_by_name_or_raise(session, project_id=viewer.project.id, name=name)
        versions = service.versions(session, prompt=prompt)
        labels = service.labels(session, prompt=prompt)
        current = next((x for x in versions if x.version == v), versions[0] if versions else None)
        diff = ""
        if current is not None and diff_from:
            older = service.get_version_or_raise(session, prompt=prompt, version=diff_from)
            diff = service.diff(prompt, older, current)
        names = authors.names(session, [x.created_by for x in versions])
        public = [service.version_public(prompt, x, labels, names) for x in versions]
        inputs = (
            _chain_inputs(session, viewer.project.id, current.steps or [], current.variables or [])
            if current is not None and prompt.kind == "chain"
            else []
        )
    chosen = next((p for p in public if current and p.version == current.version), None)
    values = _values(chosen) | (form or {})
    context = {
        "prompt": prompt,
        "versions": public,
        "current": chosen,
        "values": values,
        "labels": labels,
        "diff": diff,
        "diff_from": diff_from,
        "models": chat_models(request, viewer),
        "can_edit": viewer.can("builder"),
        "can_label": viewer.can("reviewer"),
        "errors": errors or {},
        "inputs": inputs,
        "run": run or {},
        "notice": notice,
    }
    template = "prompts/_run.html" if partial else "prompts/editor.html"
    return console_of(request).render(request, template, context)


def _values(chosen) -> dict[str, str]:
    """The editor's fields as version `chosen` fills them (empty when there is none)."""
    messages = chosen.messages if chosen else []
    return {
        "system": next((m["content"] for m in messages if m["role"] == "system"), ""),
        "user": next((m["content"] for m in messages if m["role"] == "user"), ""),
        "model": chosen.model if chosen else "",
        "params": json.dumps(chosen.params if chosen else {}),
        "commit_message": "",
        "label": "",
        "steps": (
            yaml.safe_dump(chosen.steps, sort_keys=False, allow_unicode=True)
            if chosen and chosen.steps
            else ""
        ),
        "move_label": "production",
        "move_version": str(chosen.version) if chosen else "",
    }


def _chain_inputs(session, project_id: str, steps: list[dict[str, Any]], declared: list[str]):
    """The variables a run asks for: the chain's own, plus what its prompts need from it."""
    needed, produced = list(declared), set()
    for i, step in enumerate(steps):
        if step.get("type") == "prompt" and isinstance(step.get("prompt"), str):
            try:
                name, label, number = service.parse_ref(step["prompt"])
                _, row = service.resolve(
                    session, project_id=project_id, name=name, label=label, version=number
                )
                wanted = set(row.variables or []) - produced
            except LLMDeckError:  # the run will say what is missing
                wanted = set()
            needed += sorted(wanted - set(needed))
        for key in ("query", "template"):
            if isinstance(step.get(key), str):
                needed += sorted(variables_of(step[key]) - produced - set(needed))
        produced.add(step.get("output") or f"step{i + 1}")
    return needed
