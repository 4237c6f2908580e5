"""Console pages of prompts: the list, and an editor with version history, diff, labels and
"try it" across models (through the gateway, like the playground); chains are created from
the same YAML the API and CLI push, and run from their page."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import yaml
from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from llmdeck.catalog import service as catalog
from llmdeck.console import flash
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import PageSet, console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.core.ids import new_trace_id
from llmdeck.gateway.schemas import ChatCompletionRequest
from llmdeck.gateway.service import chat_call
from llmdeck.prompts import chains, service
from llmdeck.prompts.rendering import messages_variables, variables_of
from llmdeck.prompts.schemas import NAME, Message, PromptVersionCreate

pages = PageSet("prompts", __file__)
pages.nav("Prompts", "/prompts", section="Build", order=15, icon="file")
MAX_MODELS = 3
NAME_RULE = "Use letters, digits, '.', '_' or '-', starting with a letter or digit."


def _chat_models(request: Request, viewer: Viewer) -> list[str]:
    with request.app.state.runtime.db.session() as session:
        return [
            m.alias
            for m in catalog.list_models(session, project_id=viewer.project.id)
            if m.kind == "chat"
        ]


# The bundled chat model works out of the box; a user-added one may not (no key, wrong URL).
BUNDLED_CHAT = next(m["alias"] for m in catalog.BUILTIN_MODELS if m["kind"] == "chat")


def _default_model(models: list[str]) -> str:
    """What a new prompt starts on: the bundled chat model if offered, else the first."""
    return BUNDLED_CHAT if BUNDLED_CHAT in models else (models[0] if models else "")


@pages.router.get("/prompts")
def prompts_page(request: Request, error: str = "", viewer: Viewer = Depends(signed_in)):
    return _list_page(request, viewer, errors={"form": error} if error else None)


def _list_page(request: Request, viewer: Viewer, *, form=None, errors=None):
    """The prompt list with the New prompt form, refilled with what was typed when refused."""
    with request.app.state.runtime.db.session() as session:
        rows = [
            service.to_public(session, p)
            for p in service.list(session, project_id=viewer.project.id)
        ]
    models = _chat_models(request, viewer)
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


def _messages(system: str, user: str) -> list[Message]:
    out = []
    if system.strip():
        out.append(Message(role="system", content=system))
    if user.strip():
        out.append(Message(role="user", content=user))
    return out


@pages.router.post("/prompts", dependencies=[Depends(csrf_protected)])
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
    errors = _message_errors(system, user)
    if not re.fullmatch(NAME, name) or len(name) > 200:
        errors["name"] = NAME_RULE
    if not errors:
        data = PromptVersionCreate(
            messages=_messages(system, user), model=model or None, commit_message=commit_message
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


def _add_version(session, viewer: Viewer, name: str, data: PromptVersionCreate) -> service.Pushed:
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


def _create(request: Request, viewer: Viewer, name: str, data: PromptVersionCreate) -> bool:
    """Create a prompt or chain with its first version; False when the name is taken (the
    API's push adds a version to an existing one; the console's New forms only create)."""
    with request.app.state.runtime.db.session() as session:
        if service.get_by_name(session, project_id=viewer.project.id, name=name):
            return False
        _add_version(session, viewer, name, data)
    return True


def _message_errors(system: str, user: str) -> dict[str, str]:
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


@pages.router.post("/prompts/{name}/versions", dependencies=[Depends(csrf_protected)])
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
    errors = _message_errors(system, user)
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
                messages=_messages(system, user),
                model=model or None,
                params=parsed,
                commit_message=commit_message,
                labels=[label.strip()] if label.strip() else [],
            )
            with request.app.state.runtime.db.session() as session:
                pushed = _add_version(session, viewer, name, data)
        except ValidationError as exc:
            errors = {str(e["loc"][0]): e["msg"] for e in exc.errors()}
        except LLMDeckError as exc:
            errors["label" if exc.param == "label" else "form"] = exc.message
    if errors:
        return _editor(request, viewer, name, v=from_version, form=form, errors=errors)
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


@pages.router.get("/prompts/{name}")
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
    response = _editor(
        request, viewer, name, v=v, diff_from=diff_from, errors=errors, notice=notice
    )
    flash.clear(response, request, f"/prompts/{name}")
    return response


def _editor(
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
        public = [service.version_public(prompt, x, labels) for x in versions]
        inputs = (
            _chain_inputs(session, viewer.project.id, current.steps or [], current.variables or [])
            if current is not None and prompt.kind == "chain"
            else []
        )
    chosen = next((p for p in public if current and p.version == current.version), None)
    messages = chosen.messages if chosen else []
    values = {
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
    values |= form or {}
    context = {
        "prompt": prompt,
        "versions": public,
        "current": chosen,
        "values": values,
        "labels": labels,
        "diff": diff,
        "diff_from": diff_from,
        "models": _chat_models(request, viewer),
        "can_edit": viewer.can("builder"),
        "can_label": viewer.can("reviewer"),
        "errors": errors or {},
        "inputs": inputs,
        "run": run or {},
        "notice": notice,
    }
    template = "prompts/_run.html" if partial else "prompts/editor.html"
    return console_of(request).render(request, template, context)


@pages.router.post("/prompts/{name}/chain-versions", dependencies=[Depends(csrf_protected)])
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
            pushed = _add_version(session, viewer, name, data)
    except LLMDeckError as exc:
        form = {"steps": steps, "commit_message": commit_message}
        errors = {"steps": exc.message}
        return _editor(request, viewer, name, v=from_version, form=form, errors=errors)
    return _saved(request, viewer, name, pushed, data.labels)


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())


@pages.router.post("/prompts/{name}/labels", dependencies=[Depends(csrf_protected)])
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
        return _editor(request, viewer, name, v=from_version, form=form, errors=errors)
    return RedirectResponse(f"/prompts/{name}?v={version}", status_code=303)


@pages.router.post("/prompts/{name}/try", dependencies=[Depends(csrf_protected)])
async def try_prompt(
    request: Request,
    name: str,
    version: int = Form(...),
    variables: str = Form("{}"),
    models: list[str] = Form(default=[]),
    max_tokens: int = Form(64),
    viewer: Viewer = Depends(signed_in),
):
    """Run one version on up to three models side by side, through the gateway."""
    viewer.require("builder", "call models")
    try:
        values = json.loads(variables or "{}")
        if not isinstance(values, dict):
            raise ValueError("Variables must be a JSON object.")
    except ValueError as exc:
        return HTMLResponse(f'<p class="field-error">{_escape(str(exc))}</p>')
    gateway = request.app.state.runtime.gateway

    async def one(model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": f"prompt:{name}@{version}",
            "messages": [{"role": "user", "content": ""}],
            "prompt_variables": values,
            "max_tokens": max(1, min(max_tokens, 2048)),
        }
        if model:
            body["prompt_model"] = model
        call = chat_call(
            viewer.principal, ChatCompletionRequest.model_validate(body), source="playground"
        )
        try:
            result = await gateway.chat(call)
            return {"model": call.alias, "text": result.content, "trace_id": call.trace_id}
        except LLMDeckError as exc:
            return {
                "model": model or "(prompt's model)",
                "error": exc.message,
                "trace_id": call.trace_id,
            }

    chosen = models[:MAX_MODELS] or [None]
    results = await asyncio.gather(*(one(m) for m in chosen))
    html = console_of(request).env.get_template("prompts/_try.html").render(results=results)
    return HTMLResponse(html)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pages.router.post("/prompts/chains", dependencies=[Depends(csrf_protected)])
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


@pages.router.post("/prompts/{name}/runs", dependencies=[Depends(csrf_protected)])
async def run_chain(request: Request, name: str, viewer: Viewer = Depends(signed_in)):
    """Run a chain version through the same function as `POST /api/chains/{name}/runs`."""
    viewer.require("builder", "run chains")
    form = await request.form()
    version = str(form.get("version", ""))
    values = {k[4:]: str(v) for k, v in form.items() if k.startswith("var.")}
    ref = f"{name}@{version}" if version.isdigit() else name
    run: dict[str, Any] = {"values": values, "trace_id": new_trace_id()}
    runtime = request.app.state.runtime
    try:
        result = await chains.run_chain(
            runtime, viewer.principal, ref, values, source="console", trace_id=run["trace_id"]
        )
        with runtime.db.session() as session:
            _, row = service.resolve(
                session, project_id=viewer.project.id, name=name, version=result.version
            )
            labels = [
                f"{s.get('type')} {s.get('prompt') or s.get('knowledge_base') or ''}".strip()
                + f" → {s.get('output') or f'step{i + 1}'}"
                for i, s in enumerate(row.steps or [])
            ]
        run["steps"] = [
            {"label": label, "output": s.output, "latency_ms": s.latency_ms}
            for label, s in zip(labels, result.steps, strict=False)
        ]
        run["output"], run["version"] = result.output, result.version
    except LLMDeckError as exc:
        run["error"] = exc.message
    chosen = int(version) if version.isdigit() else None
    partial = bool(request.headers.get("hx-request"))  # htmx swaps in just the run panel
    return _editor(request, viewer, name, v=chosen, run=run, partial=partial)
