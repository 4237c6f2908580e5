"""CLI of the gateway: `llmdeck chat "..."` streams an answer through the pipeline."""

from __future__ import annotations

import asyncio
import sys

import typer

from llmdeck.cli.output import errors, fail_cleanly
from llmdeck.core.settings import get_settings
from llmdeck.gateway.schemas import ChatCompletionRequest, ChatMessage
from llmdeck.gateway.service import chat_call
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import Principal
from llmdeck.runtime import Runtime


def chat(
    prompt: str = typer.Argument(..., help="What to ask."),
    model: str = typer.Option("smollm2-135m", help="Catalog alias of the model."),
    system: str | None = typer.Option(None, help="A system prompt."),
    project: str = typer.Option("default", help="Project the call is traced and billed to."),
    max_tokens: int | None = typer.Option(None, help="Most tokens to generate."),
    temperature: float | None = typer.Option(None, help="0 (or unset) for greedy decoding."),
) -> None:
    """Ask a model and stream its answer to the terminal (traced like any gateway call)."""
    messages = ([ChatMessage(role="system", content=system)] if system else []) + [
        ChatMessage(role="user", content=prompt)
    ]
    request = ChatCompletionRequest(
        model=model, messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True
    )
    with fail_cleanly():
        asyncio.run(_chat(request, project))


async def _chat(request: ChatCompletionRequest, project_name: str) -> None:
    runtime = Runtime.start(get_settings())
    try:
        with runtime.db.session() as session:
            project = identity.get_project_by_name_or_raise(session, name=project_name)
            principal = Principal(project_id=project.id, project_name=project.name, role="admin")
        call = chat_call(principal, request, source="cli")
        stream = await runtime.gateway.stream_chat(call)
        last = None
        async for chunk in stream:
            sys.stdout.write(chunk.delta)
            sys.stdout.flush()
            last = chunk
        sys.stdout.write("\n")
        if last is not None and last.finish_reason:
            summary = f"{last.input_tokens} in, {last.output_tokens} out · trace {call.trace_id}"
            errors.print(f"[dim]{summary}[/dim]", highlight=False)
    finally:
        await runtime.stop()
