"""The one request pipeline every LLM call goes through, whichever feature makes it.

A call passes through a chain of stages; each stage is `async (call, next) -> outcome` and
may act before or after the rest of the chain, or answer without calling it. The built-in
chain is: record (trace span) -> resolve (route or catalog, access) -> limits (rate limits,
budgets) -> [extra stages, e.g. guardrails] -> cache -> dispatch (deployments, retries,
fallbacks, breakers; see dispatch.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmdeck.catalog.models import Model
from llmdeck.identity.schemas import Principal
from llmdeck.providers.base import ChatChunk, ChatRequest, ChatResult, EmbeddingResult

# Trace and span ids need to be unique, not secret (reading a trace needs the project's key),
# so the hot path takes them from a seeded generator instead of a system call per id: under
# load a syscall releases the GIL and waits for it again behind the trace writer's thread.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def _trace_id() -> str:
    return f"{_ids.getrandbits(128):032x}"


def _span_id() -> str:
    return f"{_ids.getrandbits(64):016x}"


Outcome = ChatResult | AsyncIterator[ChatChunk] | EmbeddingResult
Next = Callable[["Call"], Awaitable[Outcome]]
Stage = Callable[["Call", Next], Awaitable[Outcome]]


@dataclass(slots=True)
class Call:
    """One LLM call on its way through the pipeline."""

    principal: Principal
    kind: Literal["chat", "embedding"]
    alias: str
    chat: ChatRequest | None = None
    inputs: list[str] | None = None
    # Embeddings: the vector length asked for (None: the model's own).
    dimensions: int | None = None
    stream: bool = False
    source: str = "gateway"
    # False when the request opted out of the response cache.
    use_cache: bool = True
    # llmdeck's own request fields (a prompt's variables, ...): they steer the pipeline
    # and never go upstream.
    options: dict[str, Any] = field(default_factory=dict)
    trace_id: str = field(default_factory=_trace_id)
    span_id: str = field(default_factory=_span_id)
    parent_span_id: str | None = None
    model: Model | None = None
    # What the alias resolved to (a gateway.directory.Target), set by the resolve stage.
    target: Any = None
    started: float = field(default_factory=time.perf_counter)
    # Wall-clock seconds; the trace writer makes the span's datetime off the request path.
    started_at: float = field(default_factory=time.time)
    # Decisions and facts stages want on the trace (route taken, cache hit, ...).
    attributes: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    """An ordered chain of stages ending in `terminal`."""

    def __init__(self, stages: Sequence[Stage], terminal: Callable[[Call], Awaitable[Outcome]]):
        # Linked once, here: each stage's `next` is the rest of the chain, so a call runs
        # through one coroutine per stage and no per-call glue.
        chain: Next = terminal
        for stage in reversed(stages):
            chain = _link(stage, chain)
        self.run: Next = chain


def _link(stage: Stage, rest: Next) -> Next:
    return lambda call: stage(call, rest)


async def close_stream(stream: AsyncIterator[ChatChunk]) -> None:
    """Close the stream a stage wraps, once the wrapper ends for any reason.

    An async generator does not close the ones it iterates when it is closed itself, so
    each wrapper closes its own: a reader that stops early (a client gone) then ends the
    upstream call at once, not whenever the collector gets to it.
    """
    with contextlib.suppress(Exception):  # it failed already; that error is the one to tell
        await stream.aclose()  # type: ignore[attr-defined]
