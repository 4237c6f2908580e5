"""OTLP spans mapped into llmdeck span records, by the semantic conventions senders follow.

The OpenTelemetry GenAI conventions (`gen_ai.*`) and the OpenInference attributes (`llm.*`,
`input.value`, `openinference.span.kind`, ...) give a span's model, provider, tokens, cost,
time to first token, session, user and tags; `genai_messages` reads its input and output.
A token count, cost or duration is taken only when `limits` accepts it; anything else is left
out of the span's figures and named in its `llmdeck.ignored` attribute (by key, with the
reason), as is an end time before the start.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from llmdeck.tracing.genai_messages import (
    INDEXED_PREFIXES,
    INPUT_KEYS,
    OUTPUT_KEYS,
    input_output,
    maybe_json,
)
from llmdeck.tracing.limits import (
    ATTRIBUTE_LIMIT,
    Invalid,
    cap,
    cost,
    count,
    milliseconds,
    no_nul,
    plain,
    seconds,
)
from llmdeck.tracing.otlp_decode import RawSpan
from llmdeck.tracing.writer import SpanRecord

_OPERATION_KIND = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
}

# Which span field each known attribute feeds, and its rank among the keys that feed it (the
# first present, non-empty one wins). One pass over a span's attributes reads them all.
_MODEL, _PROVIDER, _IN_TOKENS, _OUT_TOKENS, _COST, _TTFT, _TTFT_S = range(7)
_SESSION, _USER, _TAGS, _INPUT, _OUTPUT = range(7, 12)
_FIELD_KEYS: tuple[tuple[str, ...], ...] = (
    ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name", "embedding.model_name"),
    ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"),
    ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
    ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion"),
    ("llmdeck.cost", "gen_ai.usage.cost", "llm.cost.total"),
    ("llmdeck.ttft_ms",),
    ("gen_ai.server.time_to_first_token",),
    ("session.id", "llmdeck.session_id", "gen_ai.conversation.id"),
    ("user.id", "enduser.id", "llmdeck.user_id"),
    ("tag.tags", "llmdeck.tags", "langfuse.trace.tags"),
    INPUT_KEYS,
    OUTPUT_KEYS,
)
_FIELDS: dict[str, tuple[int, int]] = {
    key: (slot, rank) for slot, keys in enumerate(_FIELD_KEYS) for rank, key in enumerate(keys)
}
_NO_RANK = len(max(_FIELD_KEYS, key=len))


# How each numeric field is read; a value that fails is ignored and noted.
_CHECK_OF: dict[int, Callable[[Any], Any]] = {
    _IN_TOKENS: count,
    _OUT_TOKENS: count,
    _COST: cost,
    _TTFT: milliseconds,
    _TTFT_S: seconds,
}
_CHECKS = tuple(_CHECK_OF.get(slot) for slot in range(len(_FIELD_KEYS)))


def _read(attrs: dict[str, Any]) -> tuple[list[Any], list[str], dict[str, str] | None]:
    """The value of each field slot, the keys to move out of the attributes (content, and
    names too long to keep), and the values ignored (by key, with the reason)."""
    found: list[Any] = [None] * len(_FIELD_KEYS)
    ranks = [_NO_RANK] * len(_FIELD_KEYS)
    content: list[str] = []
    ignored: dict[str, str] | None = None
    fields, checks = _FIELDS, _CHECKS
    for key, value in attrs.items():
        slot = fields.get(key)
        if slot is None:
            if key.startswith(INDEXED_PREFIXES):
                content.append(key)
            elif len(key) > ATTRIBUTE_LIMIT:  # dropped, as no name is ever that long
                content.append(key)
                ignored = ignored or {}
                ignored[cap(key, 100)] = "an attribute name this long is not kept"
            continue
        index, rank = slot
        if index >= _INPUT:
            content.append(key)
        if value is None or value == "":
            continue
        check = checks[index]
        if check is not None:  # every one is checked, so that each bad one is noted
            try:
                value = check(value)
            except Invalid as reason:
                ignored = ignored or {}
                ignored[key] = str(reason)
                continue
        if rank < ranks[index]:
            found[index] = value
            ranks[index] = rank
    return found, content, ignored


def to_record(raw: RawSpan, *, project_id: str, api_key_id: str | None) -> SpanRecord:
    """One OTLP span as an llmdeck span, following GenAI and OpenInference conventions."""
    attrs = raw.attributes
    found, content, ignored = _read(attrs)
    model = found[_MODEL]
    provider = found[_PROVIDER]
    prompt, output, ev_error = input_output(
        attrs, found[_INPUT], found[_OUTPUT], content, raw.events
    )
    # The attribute dict is this span's own (made by the parser): content moves out of it.
    kept = attrs
    for key in content:
        del kept[key]
    kept["source"] = "otlp"
    service = raw.resource.get("service.name")
    if service:
        kept["service.name"] = service
    error = raw.status_message or ev_error if raw.status_code == 2 else None
    ttft = found[_TTFT]
    if ttft is None and (ttft_s := found[_TTFT_S]) is not None:
        ttft = ttft_s * 1000
    started, ended, latency = _times(raw)
    if latency is None:
        ignored = ignored or {}
        ignored["endTimeUnixNano"] = f"{raw.end_ns} is before startTimeUnixNano {raw.start_ns}"
    if ignored:
        kept["llmdeck.ignored"] = ignored
    session = found[_SESSION]
    user = found[_USER]
    tags = found[_TAGS]
    return SpanRecord(
        project_id=project_id,
        trace_id=raw.trace_id,
        span_id=raw.span_id,
        parent_span_id=raw.parent_span_id,
        api_key_id=api_key_id,
        name=plain(raw.name or "span", 200),
        kind=plain(_kind(attrs, model), 20),
        model=plain(model, 200) if model is not None else None,
        provider=plain(provider, 50) if provider is not None else None,
        input=prompt,
        output=no_nul(output) if output is not None else None,
        input_tokens=found[_IN_TOKENS],
        output_tokens=found[_OUT_TOKENS],
        cost=found[_COST],
        latency_ms=latency,
        ttft_ms=ttft,
        status="error" if raw.status_code == 2 else "ok",
        error=no_nul(cap(str(error), ATTRIBUTE_LIMIT)) if error else None,
        attributes=kept,
        started_at=started,
        ended_at=ended,
        session_id=plain(session, 200) if session is not None else None,
        user_id=plain(user, 200) if user is not None else None,
        tags=_tags(tags) if tags is not None else None,
    )


def _times(raw: RawSpan) -> tuple[datetime, datetime | None, float | None]:
    """When the span started and ended, and its latency in milliseconds; a span that ends
    before it starts (a clock that went back) has no end or latency rather than made-up ones."""
    start_ns = raw.start_ns
    end_ns = raw.end_ns or start_ns
    started = _time(start_ns)
    if end_ns < start_ns:
        return started, None, None
    ended = _time(end_ns) if end_ns != start_ns else started
    return started, ended, (end_ns - start_ns) / 1e6


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _kind(attrs: dict[str, Any], model: Any) -> str:
    oi_kind = attrs.get("openinference.span.kind")
    if isinstance(oi_kind, str) and oi_kind:
        return oi_kind.lower()[:20]
    operation = attrs.get("gen_ai.operation.name")
    if operation in _OPERATION_KIND:
        return _OPERATION_KIND[operation]
    if model is not None or "gen_ai.system" in attrs:
        return "llm"
    return "span"


def _tags(value: Any) -> list[str] | None:
    value = maybe_json(value)
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list):
        return [str(t)[:100] for t in value][:50]
    return None
