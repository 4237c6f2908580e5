"""Chains: steps (prompt, retrieval, transform) run in order, one child span per step.

A chain is a prompt of kind `chain` whose versions hold `steps` instead of messages, so it is
versioned and labelled exactly like a prompt. In YAML:

    name: answer-with-sources
    steps:
      - {type: retrieval, knowledge_base: handbook, query: "{{ question }}", output: context}
      - {type: prompt, prompt: "qa@production", output: answer}
      - {type: transform, template: "{{ answer | trim }}", output: final}

Each step reads the chain's variables plus every earlier step's `output`; the chain's result
is the last step's output.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from llmdeck.core.db import utcnow
from llmdeck.core.errors import InvalidRequest, LLMDeckError, sentence
from llmdeck.core.ids import new_span_id, new_trace_id
from llmdeck.identity.schemas import Principal
from llmdeck.prompts import service
from llmdeck.prompts.rendering import render_text, variables_of
from llmdeck.prompts.schemas import NAME, PromptVersionCreate
from llmdeck.tracing.writer import SpanRecord

STEP_TYPES = ("prompt", "retrieval", "transform")
TRANSFORM_OPS = {
    "strip": str.strip,
    "lower": str.lower,
    "upper": str.upper,
    "first_line": lambda s: s.strip().splitlines()[0] if s.strip() else "",
}


def check_steps(steps: list[dict[str, Any]]) -> list[str]:
    """Validate steps; returns the variables the chain needs from its caller."""
    if not steps:
        raise InvalidRequest("A chain needs at least one step.", param="steps")
    produced: set[str] = set()
    needed: set[str] = set()
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise InvalidRequest(
                f"Step {i + 1} must be a mapping with a `type`, such as "
                "{type: prompt, prompt: NAME}.",
                param="steps",
            )
        kind = step.get("type")
        if kind not in STEP_TYPES:
            raise InvalidRequest(
                f"Step {i + 1}: type must be one of {', '.join(STEP_TYPES)}.", param="steps"
            )
        if kind == "prompt" and not step.get("prompt"):
            raise InvalidRequest(f"Step {i + 1}: a prompt step names `prompt`.", param="steps")
        if kind == "retrieval" and not step.get("knowledge_base"):
            raise InvalidRequest(
                f"Step {i + 1}: a retrieval step names `knowledge_base`.", param="steps"
            )
        if kind == "transform" and step.get("op") and step["op"] not in TRANSFORM_OPS:
            raise InvalidRequest(
                f"Step {i + 1}: op must be one of {', '.join(TRANSFORM_OPS)}.", param="steps"
            )
        for key in ("query", "template"):
            if step.get(key) is not None and not isinstance(step[key], str):
                raise InvalidRequest(f"Step {i + 1}: `{key}` must be text.", param="steps")
            if isinstance(step.get(key), str):
                needed |= variables_of(step[key]) - produced
        output = step.get("output") or f"step{i + 1}"
        if not isinstance(output, str) or not output.isidentifier():
            raise InvalidRequest(
                f"Step {i + 1}: `output` names the variable later steps read, so it must be "
                "letters, digits and _ (not starting with a digit), such as `answer`.",
                param="steps",
            )
        produced.add(output)
    return sorted(needed)


def load_yaml(text: str) -> tuple[str, PromptVersionCreate]:
    """A chain definition from YAML (safe_load: data only, no objects)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"The chain is not valid YAML: {sentence(exc)}") from None
    if not isinstance(doc, dict) or not doc.get("name") or not isinstance(doc.get("steps"), list):
        raise InvalidRequest("A chain file needs `name` and a list of `steps`.")
    if not isinstance(doc["name"], str) or not re.fullmatch(NAME, doc["name"]):
        raise InvalidRequest(
            f"The chain's name {doc['name']!r} must be letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            param="name",
        )
    return doc["name"], PromptVersionCreate(
        steps=doc["steps"],
        commit_message=str(doc.get("commit_message", "")),
        labels=list(doc.get("labels", [])),
        description=doc.get("description"),
    )


@dataclass
class StepResult:
    type: str
    output: Any
    latency_ms: float
    span_id: str


@dataclass
class ChainResult:
    output: Any
    trace_id: str
    version: int
    steps: list[StepResult] = field(default_factory=list)
    cost: float = 0.0
    contexts: list[str] = field(default_factory=list)


async def run_chain(
    runtime,
    principal: Principal,
    ref: str,
    variables: dict[str, Any],
    *,
    source: str = "chain",
    trace_id: str | None = None,
) -> ChainResult:
    """Run a chain version; its trace holds a chain span and one child span per step."""
    name, label, number = service.parse_ref(ref)
    with runtime.db.session() as session:
        prompt, version = service.resolve(
            session, project_id=principal.project_id, name=name, label=label, version=number
        )
    if prompt.kind != "chain":
        raise InvalidRequest(f"{name!r} is a prompt, not a chain.", param="name")
    trace_id = trace_id or new_trace_id()
    chain_span, started, started_at = new_span_id(), time.perf_counter(), utcnow()
    scope = dict(variables)
    result = ChainResult(output=None, trace_id=trace_id, version=version.version)
    error: BaseException | None = None
    try:
        for i, step in enumerate(version.steps or []):
            try:
                step_result = await _run_step(
                    runtime, principal, step, scope, result, trace_id, chain_span, source
                )
            except LLMDeckError as exc:
                # Say which step failed (a prompt may have gone since the chain was saved).
                _in_step(exc, name, i, step)
                raise
            scope[step.get("output") or f"step{i + 1}"] = step_result.output
            result.steps.append(step_result)
            result.output = step_result.output
    except BaseException as exc:
        error = exc
        raise
    finally:
        runtime.writer.submit(
            SpanRecord(
                project_id=principal.project_id,
                trace_id=trace_id,
                span_id=chain_span,
                api_key_id=principal.api_key_id,
                name=f"chain {name}",
                kind="chain",
                input=variables,
                output=None if result.output is None else str(result.output),
                cost=result.cost,
                latency_ms=(time.perf_counter() - started) * 1000,
                status="error" if error else "ok",
                error=f"{type(error).__name__}: {error}" if error else None,
                attributes={
                    "source": source,
                    "prompt": {"name": name, "version": version.version, "label": label},
                },
                started_at=started_at,
                ended_at=utcnow(),
            )
        )
    return result


async def _run_step(
    runtime, principal, step, scope, result: ChainResult, trace_id, parent, source
) -> StepResult:
    kind = step["type"]
    span_id, started, started_at = new_span_id(), time.perf_counter(), utcnow()
    output: Any
    if kind == "prompt":
        output = await _prompt_step(
            runtime, principal, step, scope, result, trace_id, span_id, source
        )
    elif kind == "retrieval":
        output = await _retrieval_step(runtime, principal, step, scope, result, trace_id)
    else:
        text = render_text(step.get("template", "{{ " + _last(scope) + " }}"), scope)
        output = TRANSFORM_OPS[step["op"]](text) if step.get("op") else text
    latency = (time.perf_counter() - started) * 1000
    runtime.writer.submit(
        SpanRecord(
            project_id=principal.project_id,
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            api_key_id=principal.api_key_id,
            name=f"{kind} {_step_label(step)}",
            kind="chain_step",
            input=dict(step),
            output=str(output),
            latency_ms=latency,
            attributes={"source": source, "chain.step": kind},
            started_at=started_at,
            ended_at=utcnow(),
        )
    )
    return StepResult(type=kind, output=output, latency_ms=latency, span_id=span_id)


def _in_step(exc: LLMDeckError, chain: str, i: int, step: dict[str, Any]) -> None:
    """Make the error's message name the step and the chain it failed in."""
    where = f"{step['type']} {_step_label(step)}".strip()
    exc.message = f"Step {i + 1} ({where}) of chain {chain!r}: {exc.message}"
    exc.args = (exc.message,)


def _step_label(step: dict[str, Any]) -> str:
    return str(step.get("prompt") or step.get("knowledge_base") or step.get("output", ""))


def _last(scope: dict[str, Any]) -> str:
    return next(reversed(scope)) if scope else "input"


async def _prompt_step(runtime, principal, step, scope, result, trace_id, span_id, source) -> str:
    from llmdeck.gateway.schemas import ChatCompletionRequest
    from llmdeck.gateway.service import chat_call

    body: dict[str, Any] = {
        "model": "prompt:" + step["prompt"],
        "messages": [{"role": "user", "content": ""}],
        "prompt_variables": {
            k: v for k, v in scope.items() if isinstance(v, (str, int, float, list, dict))
        },
    }
    if step.get("model"):
        body["prompt_model"] = step["model"]
    for key in ("max_tokens", "temperature"):
        if key in step:
            body[key] = step[key]
    call = chat_call(principal, ChatCompletionRequest.model_validate(body), source=source)
    call.trace_id, call.parent_span_id = trace_id, span_id
    answer = await runtime.gateway.chat(call)
    if call.model is not None:
        from llmdeck.catalog import service as catalog

        result.cost += catalog.cost(call.model, answer.input_tokens, answer.output_tokens)
    return answer.content


async def _retrieval_step(runtime, principal, step, scope, result, trace_id) -> str:
    try:
        from llmdeck.knowledge import retrieval
        from llmdeck.knowledge.schemas import SearchRequest
    except ImportError:  # pragma: no cover - knowledge is optional in a trimmed install
        raise InvalidRequest("Retrieval steps need the knowledge module.") from None
    query = render_text(step.get("query", "{{ question }}"), scope)
    found = await retrieval.search(
        runtime,
        principal,
        step["knowledge_base"],
        SearchRequest(query=query, top_k=int(step.get("top_k", 4))),
        trace_id=trace_id,
    )
    texts = [hit.text for hit in found.data]
    result.contexts.extend(texts)
    return "\n\n".join(f"[{i + 1}] {t}" for i, t in enumerate(texts))
