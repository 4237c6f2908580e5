"""Running from the editor: a prompt version tried on up to three models side by side, and a
chain version run, both through the gateway like the playground."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import console_of
from llmdeck.core.errors import LLMDeckError
from llmdeck.core.ids import new_trace_id
from llmdeck.gateway.schemas import ChatCompletionRequest
from llmdeck.gateway.service import chat_call
from llmdeck.prompts import chains, service
from llmdeck.prompts.editor_pages import editor

router = APIRouter(include_in_schema=False)
MAX_MODELS = 3


@router.post("/prompts/{name}/try", dependencies=[Depends(csrf_protected)])
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


@router.post("/prompts/{name}/runs", dependencies=[Depends(csrf_protected)])
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
    return editor(request, viewer, name, v=chosen, run=run, partial=partial)
