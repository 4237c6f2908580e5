"""Console pages of the gateway: the playground, where builders compare models side by side.

The playground sends either messages, or a registered prompt (`NAME@LABEL` or `NAME@VERSION`)
with its variables: each model picked gets `"model": "prompt:NAME@LABEL"` with
`prompt_variables`, and `prompt_model` set to that model (the prompt stage's override:
"this prompt, but on model X"), through the same pipeline as /v1/chat/completions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Body, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, ValidationError, model_validator

from llmdeck.catalog import service as catalog
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.forms import say
from llmdeck.console.shell import PageSet, console_of, format_money, format_ms
from llmdeck.core.errors import InvalidRequest, LLMDeckError, sentence
from llmdeck.gateway import cache_pages, config_pages, limit_pages, route_pages, yaml_pages
from llmdeck.gateway.schemas import ChatCompletionRequest, ChatMessage
from llmdeck.gateway.service import chat_call
from llmdeck.providers import local_models
from llmdeck.providers.base import ChatChunk
from llmdeck.providers.local import LocalProvider

logger = logging.getLogger(__name__)
pages = PageSet("gateway", __file__)
pages.nav("Playground", "/playground", section="Build", min_role="builder", order=10, icon="chat")
pages.nav("Gateway", "/gateway", section="Settings", order=88, icon="shield")
# The Gateway page (config_pages.py) and the forms of its sections.
for config_section in (config_pages, route_pages, limit_pages, cache_pages, yaml_pages):
    pages.router.include_router(config_section.router)

MAX_MODELS = 3


class PlaygroundRun(BaseModel):
    """One model's share of a playground send: messages, or a registered prompt."""

    model: str = Field(min_length=1)
    system: str = Field(default="", max_length=20_000)
    messages: list[ChatMessage] = Field(default_factory=list, max_length=100)
    prompt: str | None = Field(
        default=None, max_length=300, description="NAME@LABEL or NAME@VERSION of a prompt."
    )
    variables: dict[str, Any] = Field(default_factory=dict)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=256, ge=1, le=8192)

    @model_validator(mode="after")
    def _something_to_send(self) -> PlaygroundRun:
        if not self.prompt and not self.messages:
            raise ValueError("Write a message to send, or pick a prompt.")
        return self


def _limits(field: str) -> dict[str, float]:
    """The schema's bounds on a number, for the form's min and max attributes."""
    bounds = {}
    for rule in PlaygroundRun.model_fields[field].metadata:
        for attr in ("ge", "le"):
            if getattr(rule, attr, None) is not None:
                bounds["min" if attr == "ge" else "max"] = getattr(rule, attr)
    return bounds


LIMITS = {name: _limits(name) for name in ("temperature", "max_tokens")}


def _prompt_choice(session, viewer: Viewer, ref: str, variables: str) -> dict[str, Any]:
    """The prompt version `ref` names, shaped for the composer, with variable values filled."""
    from llmdeck.prompts import service as prompts  # prompts build on the gateway's stage

    values = json.loads(variables) if variables.strip() else {}
    if not isinstance(values, dict):
        raise ValueError("variables must be a JSON object")
    name, label, version = prompts.parse_ref(ref)
    prompt, row = prompts.resolve(
        session, project_id=viewer.project.id, name=name, label=label, version=version
    )
    if prompt.kind != "prompt":
        raise LLMDeckError(f"{prompt.name!r} is a chain; run it from its page.")
    return {
        "ref": f"{prompt.name}@{label or row.version}",
        "name": prompt.name,
        "version": row.version,
        "model": row.model,
        "params": row.params or {},
        "messages": row.messages,
        "variables": [
            {"name": v, "value": values[v] if isinstance(values.get(v), str) else ""}
            for v in row.variables
        ],
    }


@pages.router.get("/playground")
def playground(
    request: Request,
    prompt: str = "",
    variables: str = "",
    viewer: Viewer = Depends(signed_in),
):
    """The playground; `?prompt=NAME@LABEL&variables={...}` opens it on a registered prompt."""
    viewer.require("builder", "use the playground")
    from llmdeck.prompts import service as prompts

    chosen, problem = None, ""
    with request.app.state.runtime.db.session() as session:
        models = [
            catalog.to_public(m)
            for m in catalog.list_models(session, project_id=viewer.project.id)
            if m.kind == "chat"
        ]
        prompt_names = [
            p.name for p in prompts.list(session, project_id=viewer.project.id, kind="prompt")
        ]
        if prompt.strip():
            try:
                chosen = _prompt_choice(session, viewer, prompt.strip(), variables)
            except LLMDeckError as exc:
                problem = exc.message
            except ValueError as exc:
                problem = f"Could not read the variables: {sentence(exc)}"
    picked = {chosen["model"]} if chosen and chosen["model"] else set()
    if not any(m.alias in picked for m in models):
        picked = {models[0].alias} if models else set()
    context = {
        "models": models,
        "max_models": MAX_MODELS,
        "picked": picked,
        "prompt": chosen,
        "prompt_names": prompt_names,
        "prompt_ref": prompt,
        "problem": problem,
        "limits": LIMITS,
    }
    return console_of(request).render(request, "gateway/playground.html", context)


@pages.router.post("/playground/stream", dependencies=[Depends(csrf_protected)])
async def playground_stream(
    request: Request, payload: dict[str, Any] = Body(...), viewer: Viewer = Depends(signed_in)
):
    """Stream one model's answer as server-sent events: start, delta..., done (or error)."""
    viewer.require("builder", "call models")
    try:
        body = PlaygroundRun.model_validate(payload)
    except ValidationError as exc:
        # In the form's words, with the field it belongs to (the composer shows it there).
        first = exc.errors()[0]
        raise InvalidRequest(say(first), param=".".join(map(str, first["loc"])) or None) from None
    messages = list(body.messages)
    if body.system.strip() and not body.prompt:
        messages.insert(0, ChatMessage(role="system", content=body.system))
    if body.prompt:
        # The prompt renders first (its messages, then these), on the model picked.
        chat = ChatCompletionRequest.model_validate(
            {
                "model": f"prompt:{body.prompt}",
                "messages": messages,
                "prompt_variables": body.variables,
                "prompt_model": body.model,
                "temperature": body.temperature,
                "max_tokens": body.max_tokens,
                "stream": True,
            }
        )
    else:
        chat = ChatCompletionRequest(
            model=body.model,
            messages=messages,
            temperature=body.temperature,
            max_tokens=body.max_tokens,
            stream=True,
        )
    # The same pipeline as /v1/chat/completions: policy, limits and tracing apply alike.
    call = chat_call(viewer.principal, chat, source="playground")
    gateway = request.app.state.runtime.gateway

    async def events() -> AsyncIterator[str]:
        yield _event("start", {"trace_id": call.trace_id, "model": body.model})
        if await _loads_the_local_model(gateway, call.principal, body.model):
            # Otherwise the first answer after a start waits ~15 s with nothing said.
            text = "Loading the bundled model (once after each start, about 15 s)"
            yield _event("status", {"text": text})
        started = time.perf_counter()
        ttft: float | None = None
        last = ChatChunk()
        try:
            stream = await gateway.stream_chat(call)
            try:
                async for chunk in stream:
                    if chunk.delta:
                        if ttft is None:
                            ttft = (time.perf_counter() - started) * 1000
                        yield _event("delta", {"text": chunk.delta})
                    if chunk.finish_reason:
                        last = chunk
            finally:
                await stream.aclose()
        except LLMDeckError as exc:
            yield _event("error", {"message": exc.message, "trace_id": call.trace_id})
            return
        except Exception:
            logger.exception("playground call %s failed", call.trace_id)
            message = "The call failed on the server; its log has the details."
            yield _event("error", {"message": message, "trace_id": call.trace_id})
            return
        latency = (time.perf_counter() - started) * 1000
        input_tokens, output_tokens = last.input_tokens or 0, last.output_tokens or 0
        cost = catalog.cost(call.model, input_tokens, output_tokens) if call.model else None
        yield _event(
            "done",
            {
                "trace_id": call.trace_id,
                "finish_reason": last.finish_reason,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost": cost,
                "cost_display": format_money(cost),
                "latency_ms": latency,
                "latency_display": format_ms(latency),
                "ttft_ms": ttft,
                "ttft_display": format_ms(ttft),
            },
        )

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def _loads_the_local_model(gateway, principal, alias: str) -> bool:
    """Whether a call to `alias` may go to the bundled chat model before it is in memory."""
    if local_models.chat_model_loaded():
        return False
    try:
        target = await gateway.directory.target(alias, principal, "chat")
    except LLMDeckError:
        return False  # the call itself will say what is wrong
    return any(d.provider == LocalProvider.name for d in target.deployments)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
