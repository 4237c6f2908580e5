"""The console's prompt list, with its New prompt and New chain forms (a chain from the same
YAML definition the API and CLI push); what they create opens in the editor."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from llmdeck.catalog import service as catalog
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.prompts import chains, service
from llmdeck.prompts.editor_pages import chat_models
from llmdeck.prompts.schemas import NAME, PromptVersionCreate
from llmdeck.prompts.version_pages import add_version, message_errors, messages

router = APIRouter(include_in_schema=False)
NAME_RULE = "Use letters, digits, '.', '_' or '-', starting with a letter or digit."
# The bundled chat model works out of the box; a user-added one may not (no key, wrong URL).
BUNDLED_CHAT = next(m["alias"] for m in catalog.BUILTIN_MODELS if m["kind"] == "chat")


def _default_model(models: list[str]) -> str:
    """What a new prompt starts on: the bundled chat model if offered, else the first."""
    return BUNDLED_CHAT if BUNDLED_CHAT in models else (models[0] if models else "")


@router.get("/prompts")
def prompts_page(request: Request, error: str = "", viewer: Viewer = Depends(signed_in)):
    return _list_page(request, viewer, errors={"form": error} if error else None)


def _list_page(request: Request, viewer: Viewer, *, form=None, errors=None):
    """The prompt list with the New prompt form, refilled with what was typed when refused."""
    with request.app.state.runtime.db.session() as session:
        rows = [
            service.to_public(session, p)
            for p in service.list(session, project_id=viewer.project.id)
        ]
    models = chat_models(request, viewer)
    defaults = {
        "commit_message": "First version",
        "definition": "",
        "model": _default_model(models),
    }
    context = {
        "prompts": rows,
        "models": models,
        "can_edit": viewer.can("builder"),
        "form": {**defaults, **(form or {})},
        "errors": errors or {},
    }
    return console_of(request).render(request, "prompts/list.html", context)


@router.post("/prompts", dependencies=[Depends(csrf_protected)])
def create_prompt(
    request: Request,
    name: str = Form(""),
    system: str = Form(""),
    user: str = Form(""),
    model: str = Form(""),
    commit_message: str = Form(""),
    viewer: Viewer = Depends(signed_in),
):
    """Create a prompt with its first version; an existing name is refused, not added to."""
    viewer.require("builder", "change prompts")
    name = name.strip()
    form = {"name": name, "system": system, "user": user, "model": model}
    form["commit_message"] = commit_message
    errors = message_errors(system, user)
    if not re.fullmatch(NAME, name) or len(name) > 200:
        errors["name"] = NAME_RULE
    if not errors:
        data = PromptVersionCreate(
            messages=messages(system, user), model=model or None, commit_message=commit_message
        )
        try:
            if not _create(request, viewer, name, data):
                errors["name"] = (
                    f"A prompt named {name} already exists. Open it to save a new version, "
                    "or choose another name."
                )
        except LLMDeckError as exc:
            errors["form"] = exc.message
    if errors:
        return _list_page(request, viewer, form=form, errors=errors)
    return RedirectResponse(f"/prompts/{name}?v=1", status_code=303)


def _create(request: Request, viewer: Viewer, name: str, data: PromptVersionCreate) -> bool:
    """Create a prompt or chain with its first version; False when the name is taken (the
    API's push adds a version to an existing one; the console's New forms only create)."""
    with request.app.state.runtime.db.session() as session:
        if service.get_by_name(session, project_id=viewer.project.id, name=name):
            return False
        add_version(session, viewer, name, data)
    return True


@router.post("/prompts/chains", dependencies=[Depends(csrf_protected)])
def create_chain(request: Request, definition: str = Form(""), viewer: Viewer = Depends(signed_in)):
    """Create a chain from the YAML definition `POST /api/chains` and `chains push` take."""
    viewer.require("builder", "change chains")
    problem, name = None, ""
    try:
        name, data = chains.load_yaml(definition)
        if not isinstance(name, str) or not re.fullmatch(NAME, name) or len(name) > 200:
            problem = f"name: {NAME_RULE}"
        else:
            if not _create(request, viewer, name, data):
                problem = (
                    f"A prompt or chain named {name} already exists. Open it to save a new "
                    "version, or change `name`."
                )
    except ValidationError as exc:
        problem = _definition_problem(exc)
    except LLMDeckError as exc:
        problem = exc.message
    if problem:
        form = {"definition": definition}
        return _list_page(request, viewer, form=form, errors={"definition": problem})
    return RedirectResponse(f"/prompts/{name}?v=1", status_code=303)


def _definition_problem(exc: ValidationError) -> str:
    """What to fix in a chain definition that PromptVersionCreate refused, in YAML terms."""
    first = exc.errors()[0]
    where = first["loc"]
    if where[0] == "steps" and len(where) > 1 and isinstance(where[1], int):
        return (
            f"Step {where[1] + 1}: write each step as a mapping, such as "
            "{type: prompt, prompt: NAME@LABEL, output: answer}."
        )
    return f"{'.'.join(str(x) for x in where)}: {first['msg']}."
