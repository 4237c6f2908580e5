"""Saving a prompt's or chain's content from the editor as a new immutable version, and
pointing a label at a version (a rollback when it is an older one)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from llmdeck.console import flash
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.core.errors import LLMDeckError
from llmdeck.prompts import chains, service
from llmdeck.prompts.editor_pages import editor
from llmdeck.prompts.rendering import messages_variables
from llmdeck.prompts.schemas import Message, PromptVersionCreate

router = APIRouter(include_in_schema=False)


def messages(system: str, user: str) -> list[Message]:
    out = []
    if system.strip():
        out.append(Message(role="system", content=system))
    if user.strip():
        out.append(Message(role="user", content=user))
    return out


def message_errors(system: str, user: str) -> dict[str, str]:
    """A plain message under each message box that is empty or not a valid template."""
    if not system.strip() and not user.strip():
        return {"user": "Write the user message (or a system message)."}
    errors = {}
    for field, text in (("system", system), ("user", user)):
        try:
            messages_variables([{"role": "user", "content": text}])
        except LLMDeckError as exc:
            errors[field] = exc.message
    return errors


def add_version(session, viewer: Viewer, name: str, data: PromptVersionCreate) -> service.Pushed:
    """A new version of `name` (created on its first), by the signed-in person; none when
    the content equals the latest version's."""
    return service.push_version(
        session,
        project_id=viewer.project.id,
        name=name,
        data=data,
        role=viewer.role,
        author=viewer.email,
    )


@router.post("/prompts/{name}/versions", dependencies=[Depends(csrf_protected)])
def save_version(
    request: Request,
    name: str,
    system: str = Form(""),
    user: str = Form(""),
    model: str = Form(""),
    params: str = Form("{}"),
    commit_message: str = Form(""),
    label: str = Form(""),
    from_version: int | None = Form(None),
    viewer: Viewer = Depends(signed_in),
):
    """Save the editor's content as a new immutable version."""
    viewer.require("builder", "change prompts")
    form = {"system": system, "user": user, "model": model, "params": params}
    form |= {"commit_message": commit_message, "label": label}
    errors = message_errors(system, user)
    try:
        parsed = json.loads(params or "{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        errors["params"] = 'Enter a JSON object, such as {"temperature": 0.2}, or {} for none.'
    if label.strip() and (problem := service.label_problem(label.strip())):
        errors["label"] = problem
    if not errors:
        try:
            data = PromptVersionCreate(
                messages=messages(system, user),
                model=model or None,
                params=parsed,
                commit_message=commit_message,
                labels=[label.strip()] if label.strip() else [],
            )
            with request.app.state.runtime.db.session() as session:
                pushed = add_version(session, viewer, name, data)
        except ValidationError as exc:
            errors = {str(e["loc"][0]): e["msg"] for e in exc.errors()}
        except LLMDeckError as exc:
            errors["label" if exc.param == "label" else "form"] = exc.message
    if errors:
        return editor(request, viewer, name, v=from_version, form=form, errors=errors)
    return _saved(request, viewer, name, pushed, data.labels)


def _saved(
    request: Request, viewer: Viewer, name: str, pushed: service.Pushed, labels: list[str]
) -> RedirectResponse:
    """Open the version saved; when nothing changed, say so there (and where labels went)."""
    number = pushed.row.version
    response = RedirectResponse(f"/prompts/{name}?v={number}", status_code=303)
    if not pushed.created:
        notice = f"Nothing to save: {name} is unchanged, still version {number}."
        if labels:
            moved = ", ".join(labels)
            notice += f" {moved} {'now points' if len(labels) == 1 else 'now point'} at it."
        flash.put(response, request, viewer.session, f"/prompts/{name}", notice)
    return response


@router.post("/prompts/{name}/chain-versions", dependencies=[Depends(csrf_protected)])
def save_chain_version(
    request: Request,
    name: str,
    steps: str = Form(...),
    commit_message: str = Form(""),
    from_version: int | None = Form(None),
    viewer: Viewer = Depends(signed_in),
):
    """Save a chain's steps (YAML, loaded with safe_load) as a new version."""
    viewer.require("builder", "change chains")
    try:
        document = f"name: {json.dumps(name)}\ncommit_message: {json.dumps(commit_message)}\n"
        _, data = chains.load_yaml(document + "steps:\n" + _indent(steps))
        with request.app.state.runtime.db.session() as session:
            pushed = add_version(session, viewer, name, data)
    except LLMDeckError as exc:
        form = {"steps": steps, "commit_message": commit_message}
        errors = {"steps": exc.message}
        return editor(request, viewer, name, v=from_version, form=form, errors=errors)
    return _saved(request, viewer, name, pushed, data.labels)


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())


@router.post("/prompts/{name}/labels", dependencies=[Depends(csrf_protected)])
def move_label(
    request: Request,
    name: str,
    label: str = Form(""),
    version: str = Form(""),
    from_version: int | None = Form(None),
    viewer: Viewer = Depends(signed_in),
):
    """Point a label at a version (a rollback when it is an older one)."""
    errors = {}
    if problem := service.label_problem(label.strip()):
        errors["move_label"] = problem
    if not version.strip().isdigit():
        errors["move_version"] = "Enter a version number, such as 1."
    if not errors:
        try:
            with request.app.state.runtime.db.session() as session:
                prompt = service.get_by_name_or_raise(
                    session, project_id=viewer.project.id, name=name
                )
                service.set_label(
                    session,
                    prompt=prompt,
                    label=label.strip(),
                    version=int(version),
                    role=viewer.role,
                    author=viewer.email,
                )
        except LLMDeckError as exc:
            errors["move_version" if exc.param == "version" else "move_label"] = exc.message
    if errors:
        form = {"move_label": label, "move_version": version}
        return editor(request, viewer, name, v=from_version, form=form, errors=errors)
    return RedirectResponse(f"/prompts/{name}?v={version}", status_code=303)
