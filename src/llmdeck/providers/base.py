"""The provider interface: chat completion, streamed chat completion and embeddings.

A provider holds a connection (base URL, key); the model it serves is named per call, and
that model's profile (context window, prices) lives in the catalog.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmdeck.core.errors import InvalidRequest
from llmdeck.core.settings import Settings


@dataclass(frozen=True)
class Connection:
    """Where a provider's models are served, and the key to use there."""

    base_url: str | None = None
    api_key: str | None = None


@dataclass(slots=True)
class ChatRequest:
    """A provider-neutral chat request; `model` is the upstream name."""

    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    context_window: int | None = None
    # The request's other OpenAI fields (tools, tool_choice, response_format, logprobs,
    # penalties, user, a serving engine's own options, ...), as the client sent them: an
    # upstream that takes them gets them; a provider that cannot honour one refuses it.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ChatResult:
    content: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    # OpenAI's message.tool_calls and choice.logprobs, when the model gave them.
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: dict[str, Any] | None = None


@dataclass(slots=True)
class ChatChunk:
    """A piece of a streamed answer; the last chunk carries finish_reason and token counts.

    `tool_calls` holds OpenAI's streamed tool-call fragments (by `index`), passed on as
    they came; `merge_tool_calls` joins them into whole calls.
    """

    delta: str = ""
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: dict[str, Any] | None = None


def merge_tool_calls(calls: list[dict[str, Any]], fragments: list[dict[str, Any]]) -> None:
    """Add streamed tool-call fragments to `calls`, the whole calls so far.

    The first fragment of a call carries its id, type and function name; later ones
    carry pieces of the function's arguments, which are concatenated.
    """
    for fragment in fragments:
        index = fragment.get("index", len(calls))
        while len(calls) <= index:
            calls.append(
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
        call = calls[index]
        if fragment.get("id"):
            call["id"] = fragment["id"]
        if fragment.get("type"):
            call["type"] = fragment["type"]
        function = fragment.get("function") or {}
        if function.get("name"):
            call["function"]["name"] += function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    # What the model read: with `truncate`, an input cut to the model's limit counts the limit.
    input_tokens: int
    # The indexes of the inputs cut to fit (asked for with `truncate`); empty where nothing
    # was cut or the provider cannot tell (an upstream does not say).
    truncated: list[int] = field(default_factory=list)


class Provider(ABC):
    """One connection to a source of models."""

    name: ClassVar[str]
    needs_base_url: ClassVar[bool] = False
    # Runs on this machine's CPU: a slow answer means queued work, not a hung upstream.
    runs_locally: ClassVar[bool] = False

    def __init__(self, connection: Connection, settings: Settings):
        self.connection = connection
        self.settings = settings

    @abstractmethod
    def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Yield the answer as it is generated."""

    async def chat(self, request: ChatRequest) -> ChatResult:
        """The whole answer at once (by default, the stream collected)."""
        parts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        last = ChatChunk()
        async for chunk in self.stream_chat(request):
            parts.append(chunk.delta)
            if chunk.tool_calls:
                merge_tool_calls(tool_calls, chunk.tool_calls)
            last = chunk
        return ChatResult(
            content="".join(parts),
            finish_reason=last.finish_reason or "stop",
            input_tokens=last.input_tokens or 0,
            output_tokens=last.output_tokens or 0,
            tool_calls=tool_calls or None,
        )

    async def embed(
        self,
        model: str,
        inputs: list[str],
        *,
        dimensions: int | None = None,
        truncate: bool = False,
    ) -> EmbeddingResult:
        """Embed `inputs`; `dimensions` asks for shorter vectors (refused if impossible).

        An input longer than the model reads is refused (`ContextWindowExceeded`), unless
        `truncate` asks to embed its start instead. A provider that cannot honour
        `truncate` leaves the choice to its upstream (which refuses or cuts as it does).
        """
        raise InvalidRequest(f"Provider {self.name!r} does not serve embeddings.", param="model")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections."""
