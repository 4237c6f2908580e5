"""OTLP/HTTP trace payloads (protobuf and JSON) read into llmdeck span records.

Both encodings are first reduced to the same plain shape (`RawSpan`), then one mapping turns
the OpenTelemetry GenAI semantic conventions (`gen_ai.*`) and the OpenInference attributes
(`llm.*`, `input.value`, `openinference.span.kind`, ...) into a `SpanRecord`. Protobuf is
parsed by the generated classes of `opentelemetry-proto`; nothing is ever unpickled or
evaluated.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmdeck.core.errors import InvalidRequest
from llmdeck.tracing.writer import SpanRecord


@dataclass(slots=True)
class RawSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


# --- protobuf ---------------------------------------------------------------------------------


def _pb_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def _pb_attrs(attributes: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in attributes}


def parse_protobuf(body: bytes) -> list[RawSpan]:
    """Spans of an `ExportTraceServiceRequest` in protobuf."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError:
        raise InvalidRequest(
            "The body is not an OTLP ExportTraceServiceRequest in protobuf.", param="body"
        ) from None
    spans: list[RawSpan] = []
    for resource_spans in request.resource_spans:
        resource = _pb_attrs(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    RawSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        status_message=span.status.message,
                        attributes=_pb_attrs(span.attributes),
                        resource=resource,
                        events=[(e.name, _pb_attrs(e.attributes)) for e in span.events],
                    )
                )
    return spans


# --- JSON -------------------------------------------------------------------------------------

_JSON_SCALARS = ("stringValue", "boolValue", "intValue", "doubleValue", "bytesValue")


def _json_value(value: dict[str, Any]) -> Any:
    if not isinstance(value, dict):
        return None
    if "arrayValue" in value:
        return [_json_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return _json_attrs((value["kvlistValue"] or {}).get("values", []))
    for key in _JSON_SCALARS:
        if key in value:
            raw = value[key]
            if key == "intValue":  # int64 is a string in OTLP JSON
                return int(raw)
            if key == "doubleValue":
                return float(raw)
            return raw
    return None


def _json_attrs(attributes: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _json_value(kv.get("value") or {}) for kv in attributes or []}


def _json_id(value: str | None, size: int, field: str) -> str | None:
    """OTLP JSON writes ids in hex; some senders use protobuf-JSON's base64, so accept both.

    `field` is the JSON key (traceId, spanId, parentSpanId), so an error names the right id."""
    if not value:
        return None
    if len(value) == size * 2:
        try:
            bytes.fromhex(value)
            return value.lower()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise InvalidRequest(
            f"{field} {value!r} is neither hex nor base64 of {size} bytes.", param=field
        )
    return raw.hex()


def parse_json(body: bytes) -> list[RawSpan]:
    """Spans of an `ExportTraceServiceRequest` in OTLP JSON."""
    try:
        document = json.loads(body)
        spans: list[RawSpan] = []
        for resource_spans in document.get("resourceSpans") or []:
            resource = _json_attrs((resource_spans.get("resource") or {}).get("attributes"))
            for scope_spans in resource_spans.get("scopeSpans") or []:
                for span in scope_spans.get("spans") or []:
                    status = span.get("status") or {}
                    code = status.get("code", 0)
                    if isinstance(code, str):  # the enum's name is valid protobuf-JSON too
                        code = {"STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}.get(code, 0)
                    spans.append(
                        RawSpan(
                            trace_id=_json_id(span["traceId"], 16, "traceId") or "",
                            span_id=_json_id(span["spanId"], 8, "spanId") or "",
                            parent_span_id=_json_id(span.get("parentSpanId"), 8, "parentSpanId"),
                            name=span.get("name") or "span",
                            start_ns=int(span.get("startTimeUnixNano") or 0),
                            end_ns=int(span.get("endTimeUnixNano") or 0),
                            status_code=int(code),
                            status_message=status.get("message") or "",
                            attributes=_json_attrs(span.get("attributes")),
                            resource=resource,
                            events=[
                                (e.get("name") or "", _json_attrs(e.get("attributes")))
                                for e in span.get("events") or []
                            ],
                        )
                    )
        return spans
    except InvalidRequest:
        raise
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InvalidRequest(
            "The body is not an OTLP ExportTraceServiceRequest in JSON.", param="body"
        ) from None


# --- mapping ----------------------------------------------------------------------------------

_OPERATION_KIND = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
}
# Content attributes move to the span's input/output columns instead of staying in attributes.
_INPUT_KEYS = ("gen_ai.input.messages", "gen_ai.prompt", "input.value", "llmdeck.input")
_OUTPUT_KEYS = ("gen_ai.output.messages", "gen_ai.completion", "output.value", "llmdeck.output")
_CONTENT_KEYS = frozenset(_INPUT_KEYS + _OUTPUT_KEYS)
_INDEXED_PREFIXES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
)


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _indexed_messages(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]] | None:
    """`gen_ai.prompt.0.role` / `llm.input_messages.0.message.content` style flattened lists."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if not index.isdigit() or not rest:
            continue
        field_name = rest.removeprefix("message.")
        found.setdefault(int(index), {})[field_name] = value
    if not found:
        return None
    return [found[i] for i in sorted(found)]


def _event_content(events: list[tuple[str, dict[str, Any]]]) -> tuple[Any, Any, str | None]:
    """Prompt, completion and exception message carried in span events."""
    prompt: list[Any] = []
    completion: list[Any] = []
    error = None
    for name, attrs in events:
        if name == "gen_ai.content.prompt":
            prompt.append(_maybe_json(attrs.get("gen_ai.prompt")))
        elif name == "gen_ai.content.completion":
            completion.append(_maybe_json(attrs.get("gen_ai.completion")))
        elif name in ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message"):
            role = name.split(".")[1]
            prompt.append({"role": role, "content": attrs.get("content", attrs.get("body"))})
        elif name == "gen_ai.choice":
            message = attrs.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            completion.append(content or attrs.get("content") or attrs.get("body"))
        elif name == "gen_ai.client.inference.operation.details":
            prompt.append(_maybe_json(attrs.get("gen_ai.input.messages")))
            completion.append(_maybe_json(attrs.get("gen_ai.output.messages")))
        elif name == "exception":
            error = attrs.get("exception.message") or attrs.get("exception.type")
    flat_prompt = prompt[0] if len(prompt) == 1 else (prompt or None)
    flat_completion = completion[0] if len(completion) == 1 else (completion or None)
    return flat_prompt, flat_completion, error


def _text(value: Any) -> str | None:
    """An output column value: text as is, anything structured as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        content = value[0].get("content")
        if isinstance(content, str):
            return content
    return json.dumps(value, default=str)


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
    value = _maybe_json(value)
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list):
        return [str(t)[:100] for t in value][:50]
    return None


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


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
    _INPUT_KEYS,
    _OUTPUT_KEYS,
)
_FIELDS: dict[str, tuple[int, int]] = {
    key: (slot, rank) for slot, keys in enumerate(_FIELD_KEYS) for rank, key in enumerate(keys)
}
_NO_RANK = len(max(_FIELD_KEYS, key=len))


def _read(attrs: dict[str, Any]) -> tuple[list[Any], list[str]]:
    """The value of each field slot, and the content keys to move out of the attributes."""
    found: list[Any] = [None] * len(_FIELD_KEYS)
    ranks = [_NO_RANK] * len(_FIELD_KEYS)
    content: list[str] = []
    fields = _FIELDS
    for key, value in attrs.items():
        slot = fields.get(key)
        if slot is None:
            if key.startswith(_INDEXED_PREFIXES):
                content.append(key)
            continue
        index, rank = slot
        if index >= _INPUT:
            content.append(key)
        if value is not None and value != "" and rank < ranks[index]:
            found[index] = value
            ranks[index] = rank
    return found, content


def to_record(raw: RawSpan, *, project_id: str, api_key_id: str | None) -> SpanRecord:
    """One OTLP span as an llmdeck span, following GenAI and OpenInference conventions."""
    attrs = raw.attributes
    found, content = _read(attrs)
    model = found[_MODEL]
    provider = found[_PROVIDER]
    ev_prompt, ev_completion, ev_error = _event_content(raw.events) if raw.events else (None,) * 3
    indexed = len(content) > sum(1 for k in content if k in _CONTENT_KEYS)
    prompt = found[_INPUT]
    prompt = _maybe_json(prompt) if prompt is not None else None
    if prompt is None:
        prompt = (
            indexed
            and (
                _indexed_messages(attrs, "gen_ai.prompt.")
                or _indexed_messages(attrs, "llm.input_messages.")
            )
        ) or ev_prompt
    completion = found[_OUTPUT]
    completion = _maybe_json(completion) if completion is not None else None
    if completion is None:
        completion = (
            indexed
            and (
                _indexed_messages(attrs, "gen_ai.completion.")
                or _indexed_messages(attrs, "llm.output_messages.")
            )
        ) or ev_completion
    # The attribute dict is this span's own (made by the parser): content moves out of it.
    kept = attrs
    for key in content:
        del kept[key]
    kept["source"] = "otlp"
    service = raw.resource.get("service.name")
    if service:
        kept["service.name"] = service
    error = raw.status_message or ev_error if raw.status_code == 2 else None
    ttft = _as_float(found[_TTFT])
    if ttft is None and (seconds := _as_float(found[_TTFT_S])):
        ttft = seconds * 1000
    start_ns = raw.start_ns
    end_ns = raw.end_ns or start_ns
    started = _time(start_ns)
    session = found[_SESSION]
    user = found[_USER]
    tags = found[_TAGS]
    return SpanRecord(
        project_id=project_id,
        trace_id=raw.trace_id,
        span_id=raw.span_id,
        parent_span_id=raw.parent_span_id,
        api_key_id=api_key_id,
        name=(raw.name or "span")[:200],
        kind=_kind(attrs, model),
        model=str(model)[:200] if model is not None else None,
        provider=str(provider)[:50] if provider is not None else None,
        input=prompt,
        output=_text(completion),
        input_tokens=_as_int(found[_IN_TOKENS]),
        output_tokens=_as_int(found[_OUT_TOKENS]),
        cost=_as_float(found[_COST]),
        latency_ms=max(0.0, (end_ns - start_ns) / 1e6),
        ttft_ms=ttft,
        status="error" if raw.status_code == 2 else "ok",
        error=str(error) if error else None,
        attributes=kept,
        started_at=started,
        ended_at=_time(end_ns) if end_ns != start_ns else started,
        session_id=str(session)[:200] if session is not None else None,
        user_id=str(user)[:200] if user is not None else None,
        tags=_tags(tags) if tags is not None else None,
    )
