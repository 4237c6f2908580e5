"""Running one dataset item against a target, through the gateway pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from llmdeck.catalog import service as catalog
from llmdeck.core.errors import InvalidRequest
from llmdeck.evals.schemas import Target
from llmdeck.gateway.schemas import ChatCompletionRequest
from llmdeck.gateway.service import chat_call
from llmdeck.identity.schemas import Principal
from llmdeck.prompts.rendering import render_messages

SOURCE = "eval"


@dataclass
class Outcome:
    output: str
    latency_ms: float
    cost: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    trace_id: str | None = None
    contexts: list[str] = field(default_factory=list)
    # What was sent when the target rendered it (a prompt): the judges' question.
    messages: list[dict[str, Any]] | None = None


def check(target: Target) -> Target:
    needs = {"prompt": "prompt", "chain": "chain", "model": "model", "rag": "knowledge_base"}
    if not getattr(target, needs[target.type]):
        raise InvalidRequest(
            f"A {target.type} target needs `{needs[target.type]}`.", param="target"
        )
    if target.type == "rag" and not target.model:
        raise InvalidRequest("A rag target needs `model` too.", param="target")
    return target


def _default_messages(variables: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(variables.get("messages"), list):
        return variables["messages"]
    for key in ("input", "question", "query", "prompt", "text"):
        if isinstance(variables.get(key), str):
            return [{"role": "user", "content": variables[key]}]
    raise InvalidRequest(
        "A model target without `messages` needs an item variable named input or question.",
        param="target",
    )


async def _chat(runtime, principal: Principal, body: dict[str, Any], trace_id=None) -> Outcome:
    started = time.perf_counter()
    call = chat_call(principal, ChatCompletionRequest.model_validate(body), source=SOURCE)
    if trace_id:
        call.trace_id = trace_id
    result = await runtime.gateway.chat(call)
    cost = None
    if str(call.attributes.get("cache", "")).endswith("hit"):
        cost = 0.0
    elif call.model is not None:
        cost = catalog.cost(call.model, result.input_tokens, result.output_tokens)
    return Outcome(
        output=result.content,
        latency_ms=(time.perf_counter() - started) * 1000,
        cost=cost,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        trace_id=call.trace_id,
        # The gateway's prompt stage renders into the call's messages in place: what was
        # asked, known without rendering again.
        messages=[dict(m) for m in call.chat.messages] if call.chat is not None else None,
    )


async def run(runtime, principal: Principal, target: Target, variables: dict[str, Any]) -> Outcome:
    """The target's answer to one item's variables (one trace per item)."""
    params = {
        k: v
        for k, v in target.params.items()
        if k in ("max_tokens", "temperature", "top_p", "seed", "stop")
    }
    if target.type == "prompt":
        body = {
            "model": "prompt:" + (target.prompt or ""),
            "messages": [{"role": "user", "content": ""}],
            "prompt_variables": variables,
            **params,
        }
        if target.model:
            body["prompt_model"] = target.model
        return await _chat(runtime, principal, body)
    if target.type == "model":
        messages = (
            render_messages(target.messages, variables)
            if target.messages
            else _default_messages(variables)
        )
        outcome = await _chat(
            runtime, principal, {"model": target.model, "messages": messages, **params}
        )
        # A model target's question stays the item's (its `messages` or question variable):
        # its template may wrap anything, even a canned answer, around it.
        outcome.messages = None
        return outcome
    if target.type == "chain":
        from llmdeck.prompts.chains import run_chain

        started = time.perf_counter()
        result = await run_chain(runtime, principal, target.chain or "", variables, source=SOURCE)
        return Outcome(
            output="" if result.output is None else str(result.output),
            latency_ms=(time.perf_counter() - started) * 1000,
            cost=result.cost,
            trace_id=result.trace_id,
            contexts=result.contexts,
        )
    return await _rag(runtime, principal, target, variables)


async def _rag(runtime, principal: Principal, target: Target, variables: dict[str, Any]) -> Outcome:
    from llmdeck.knowledge import retrieval
    from llmdeck.knowledge.schemas import AskRequest

    question = next(
        (variables[k] for k in ("question", "query", "input") if isinstance(variables.get(k), str)),
        None,
    )
    if question is None:
        raise InvalidRequest("A rag target needs an item variable named question.")
    started = time.perf_counter()
    answer = await retrieval.ask(
        runtime,
        principal,
        target.knowledge_base or "",
        AskRequest(
            query=question,
            model=target.model or "smollm2-135m",
            top_k=target.top_k,
            max_tokens=int(target.params.get("max_tokens", 128)),
            temperature=target.params.get("temperature"),
        ),
    )
    return Outcome(
        output=answer.answer,
        latency_ms=(time.perf_counter() - started) * 1000,
        trace_id=answer.trace_id,
        contexts=[c.text for c in answer.sources],  # what was retrieved, cited or not
    )
