"""Console pages of the gateway: the playground, where builders compare models side by side."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from llmdeck.catalog import service as catalog
from llmdeck.console.auth import Viewer, csrf_protected, signed_in
from llmdeck.console.shell import PageSet, console_of, format_money, format_ms
from llmdeck.core.errors import LLMDeckError
from llmdeck.gateway.schemas import ChatCompletionRequest, ChatMessage
from llmdeck.gateway.service import chat_call
from llmdeck.providers.base import ChatChunk

logger = logging.getLogger(__name__)
pages = PageSet("gateway", __file__)
pages.nav("Playground", "/playground", section="Build", min_role="builder", order=10, icon="chat")

MAX_MODELS = 3


class PlaygroundRun(BaseModel):
    """One model's share of a playground send."""

    model: str = Field(min_length=1)
    system: str = Field(default="", max_length=20_000)
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=256, ge=1, le=8192)


@pages.router.get("/playground")
def playground(request: Request, viewer: Viewer = Depends(signed_in)):
    viewer.require("builder", "use the playground")
    with request.app.state.runtime.db.session() as session:
        models = [
            catalog.to_public(m)
            for m in catalog.list_models(session, project_id=viewer.project.id)
            if m.kind == "chat"
        ]
    context = {"models": models, "max_models": MAX_MODELS}
    return console_of(request).render(request, "gateway/playground.html", context)


@pages.router.post("/playground/stream", dependencies=[Depends(csrf_protected)])
async def playground_stream(
    body: PlaygroundRun, request: Request, viewer: Viewer = Depends(signed_in)
):
    """Stream one model's answer as server-sent events: start, delta..., done (or error)."""
    viewer.require("builder", "call models")
    messages = list(body.messages)
    if body.system.strip():
        messages.insert(0, ChatMessage(role="system", content=body.system))
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


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
