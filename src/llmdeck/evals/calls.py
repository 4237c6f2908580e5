"""Model calls made by metrics and judges, through the gateway pipeline like any other."""

from __future__ import annotations

import math
from typing import Any

from llmdeck.evals.metrics.base import Sample
from llmdeck.gateway.schemas import ChatCompletionRequest
from llmdeck.gateway.service import chat_call, embedding_call

DEFAULT_JUDGE = "smollm2-135m"
DEFAULT_EMBEDDER = "minilm-l6"


def _need_runtime(sample: Sample) -> None:
    if sample.runtime is None or sample.principal is None:
        raise RuntimeError("This metric calls a model; run it inside an experiment.")


async def chat(sample: Sample, model: str, messages: list[dict[str, Any]], max_tokens: int) -> str:
    _need_runtime(sample)
    request = ChatCompletionRequest.model_validate(
        {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
    )
    call = chat_call(sample.principal, request, source="eval-judge")
    if sample.trace_id:
        call.trace_id = sample.trace_id
    result = await sample.runtime.gateway.chat(call)
    return result.content


async def embed(
    sample: Sample, model: str, texts: list[str], *, truncate: bool = False
) -> list[list[float]]:
    """Vectors of `texts`; one longer than the model reads is refused unless `truncate`."""
    _need_runtime(sample)
    call = embedding_call(sample.principal, model, texts, source="eval", truncate=truncate)
    if sample.trace_id:
        call.trace_id = sample.trace_id
    result = await sample.runtime.gateway.embed(call)
    return result.vectors


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
