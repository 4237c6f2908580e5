"""What a metric is: something that scores one output and explains the score."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Score:
    """A score in [0, 1] (None when it could not be computed) and why."""

    value: float | None
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.value, "explanation": self.explanation}


@dataclass
class Sample:
    """What a metric sees of one dataset item and the target's answer to it."""

    input: dict[str, Any]
    output: str
    expected: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    contexts: list[str] = field(default_factory=list)
    # For metrics that call models (judges, embeddings): the runtime and the principal,
    # so that those calls go through the gateway pipeline like every other call.
    runtime: Any = None
    principal: Any = None
    trace_id: str | None = None
    # The messages the target actually sent, when it rendered them (a prompt target):
    # the question is then what was asked, not the variables that filled the template.
    messages: list[dict[str, Any]] | None = None

    @property
    def asked(self) -> list[dict[str, Any]] | None:
        """The conversation that was asked: the target's rendered messages, else the item's."""
        if self.messages:
            return self.messages
        if isinstance(self.input.get("messages"), list):
            return self.input["messages"]
        return None

    @property
    def question(self) -> str:
        """The last user message asked (what judges and relevance metrics compare against)."""
        asked = self.asked
        if asked:
            users = [_text(m) for m in asked if isinstance(m, dict) and m.get("role") == "user"]
            users = [u for u in users if u]
            if users:
                return users[-1]
        for key in ("question", "query", "input", "prompt", "text"):
            if isinstance(self.input.get(key), str):
                return self.input[key]
        return " ".join(str(v) for v in self.input.values())

    @property
    def conversation(self) -> str | None:
        """The turns before the answer as 'role: text' lines, when there is more than one
        user or assistant turn (else None: the question says it all)."""
        turns = [m for m in self.asked or [] if isinstance(m, dict) and m.get("role") != "system"]
        if len(turns) < 2:
            return None
        return "\n".join(f"{m.get('role')}: {_text(m)}" for m in turns)

    @property
    def expected_text(self) -> str:
        if self.expected is None:
            return ""
        return self.expected if isinstance(self.expected, str) else str(self.expected)


def _text(message: dict[str, Any]) -> str:
    """A message's text: its string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


class Metric(Protocol):
    """A metric: `await metric.score(sample)`; `uses_model` says whether it calls models."""

    name: str
    uses_model: bool

    async def score(self, sample: Sample) -> Score: ...


class FunctionMetric:
    """A metric from a plain function `(sample, **params) -> Score` that calls no model."""

    uses_model = False

    def __init__(self, name: str, fn, **params: Any):
        self.name = name
        self.fn = fn
        self.params = params

    async def score(self, sample: Sample) -> Score:
        return self.fn(sample, **self.params)
