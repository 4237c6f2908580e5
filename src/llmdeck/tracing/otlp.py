"""OTLP/HTTP trace payloads (protobuf and JSON) read into llmdeck span records.

Both encodings are first reduced to the same plain shape (`RawSpan`), then one mapping turns
the OpenTelemetry GenAI semantic conventions (`gen_ai.*`) and the OpenInference attributes
(`llm.*`, `input.value`, `openinference.span.kind`, ...) into a `SpanRecord`. Protobuf is
parsed by the generated classes of `opentelemetry-proto`; nothing is ever unpickled or
evaluated.

A sender's values are not trusted to be sane. Parsing caps every string (see `CONTENT_LIMIT`
and `ATTRIBUTE_LIMIT`) and spells non-finite doubles as OTLP JSON does ("NaN", "Infinity"),
so that every attribute stays valid JSON on both databases. Mapping takes a token count,
cost or duration only when it is a finite, non-negative number the database can hold;
anything else is left out of the span's figures and named in its `llmdeck.ignored`
attribute, so one bad span neither fails its batch nor poisons a project's totals.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
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


# --- limits -----------------------------------------------------------------------------------

# The longest string kept from one value, in characters (as OpenTelemetry's SDK attribute
# limits count them); a longer one keeps its start and a marker saying how long it was.
# Prompts and completions get 1 Mi characters: a long prompt (a 200k-token context is about
# 800k characters) is kept whole, a runaway one does not become a 20 MB span. Other attributes
# get 64 Ki characters, more than ids, names, tool schemas or a retrieved chunk need. Both are
# far below the batch's own size limit (`otlp_max_body_bytes`). An input assembled from parts
# (indexed messages, events, a structured attribute) may hold several long messages: it is
# kept as is up to 4 Mi characters of JSON, and beyond that stored as its JSON text, capped.
CONTENT_LIMIT = 1024 * 1024
ATTRIBUTE_LIMIT = 64 * 1024
INPUT_LIMIT = 4 * CONTENT_LIMIT
# Attributes that carry prompt-sized text but stay in the span's attributes.
_LONG_KEYS = frozenset(
    (
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    )
)


def _cap(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with a marker when it is longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated by llmdeck from {len(text):,} characters]"


def _limit_of(key: str) -> int:
    """How long a string value of attribute `key` may be."""
    if key in _CONTENT_KEYS or key in _LONG_KEYS or key.startswith(_INDEXED_PREFIXES):
        return CONTENT_LIMIT
    return ATTRIBUTE_LIMIT


def _double(value: float) -> float | str:
    """A finite double as is; NaN and infinities as OTLP JSON spells them.

    JSON has no literal for them: stored as numbers they would be invalid JSON (PostgreSQL
    refuses them, browsers cannot parse them)."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


# --- protobuf ---------------------------------------------------------------------------------


def _pb_value(value: Any, kv: Any, limit: int) -> Any:
    """The value of attribute `kv` (whose key sets the limit of strings when `limit` is 0)."""
    which = value.WhichOneof("value")
    if which == "string_value":  # the usual case first
        text = value.string_value
        return text if len(text) <= ATTRIBUTE_LIMIT else _cap(text, limit or _limit_of(kv.key))
    if which is None:
        return None
    if which == "double_value":
        return _double(value.double_value)
    if which == "array_value":
        return [_pb_value(v, kv, limit) for v in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: _pb_value(item.value, kv, limit) for item in value.kvlist_value.values}
    if which == "bytes_value":
        return _cap(base64.b64encode(value.bytes_value).decode(), limit or _limit_of(kv.key))
    return getattr(value, which)


def _pb_attrs(attributes: Any, limit: int = 0) -> dict[str, Any]:
    """Attributes as a dict; strings capped at `limit`, or by their key when it is 0."""
    return {kv.key: _pb_value(kv.value, kv, limit) for kv in attributes}


def _pb_ids(trace_id: str, span_id: str, parent: str) -> None:
    """Refuses ids of the wrong size (in hex); empty ones are unset, and such spans skipped."""
    for name, value, size in (
        ("trace_id", trace_id, 16),
        ("span_id", span_id, 8),
        ("parent_span_id", parent, 8),
    ):
        if value and len(value) != size * 2:
            raise InvalidRequest(
                f"{name} is {len(value) // 2} bytes; OTLP ids of that kind are {size} bytes.",
                param=name,
            )


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
                trace_id = span.trace_id.hex()
                span_id = span.span_id.hex()
                parent = span.parent_span_id.hex()
                if len(trace_id) != 32 or len(span_id) != 16 or len(parent) not in (0, 16):
                    _pb_ids(trace_id, span_id, parent)
                spans.append(
                    RawSpan(
                        trace_id=trace_id,
                        span_id=span_id,
                        parent_span_id=parent or None,
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        status_message=span.status.message,
                        attributes=_pb_attrs(span.attributes),
                        resource=resource,
                        # Events are read for their content only: prompt-sized throughout.
                        events=[
                            (e.name, _pb_attrs(e.attributes, CONTENT_LIMIT)) for e in span.events
                        ],
                    )
                )
    return spans


# --- JSON -------------------------------------------------------------------------------------

_JSON_SCALARS = ("stringValue", "boolValue", "intValue", "doubleValue", "bytesValue")


def _unicode(value: str) -> str:
    """`value` with any lone surrogate replaced: a "\\ud800" escape is valid JSON but not text,
    and neither database nor a UTF-8 answer can hold one."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode(errors="replace").decode()
    return value


def _json_text(value: str, limit: int, key: str = "") -> str:
    """A JSON string as text, capped at `limit` (by `key` when 0)."""
    value = _unicode(value)
    if len(value) <= ATTRIBUTE_LIMIT:
        return value
    return _cap(value, limit or _limit_of(key))


def _json_value(value: Any, key: str, limit: int) -> Any:
    if not isinstance(value, dict):
        return None
    if "arrayValue" in value:
        values = (value["arrayValue"] or {}).get("values", [])
        return [_json_value(v, key, limit) for v in values]
    if "kvlistValue" in value:
        return _json_attrs((value["kvlistValue"] or {}).get("values", []), limit or _limit_of(key))
    for name in _JSON_SCALARS:
        if name in value:
            raw = value[name]
            if isinstance(raw, str):
                return _json_scalar(name, raw, key, limit)
            if isinstance(raw, float):  # json.loads reads NaN and Infinity literals too
                return int(raw) if name == "intValue" and raw.is_integer() else _double(raw)
            if isinstance(raw, (dict, list)):  # not a scalar: kept as its JSON text
                return _json_text(json.dumps(raw), limit, key)
            return raw
    return None


def _json_scalar(name: str, raw: str, key: str, limit: int) -> Any:
    """A scalar written as a JSON string. A number that does not parse stays text (mapping
    then ignores it where a number was expected) rather than failing the batch."""
    if name == "intValue":  # int64 is a string in OTLP JSON
        try:
            return int(raw)
        except ValueError:
            pass
    elif name == "doubleValue":  # "NaN" and "Infinity" are valid protobuf-JSON doubles
        try:
            return _double(float(raw))
        except ValueError:
            pass
    return _json_text(raw, limit, key)


def _json_attrs(attributes: list[dict[str, Any]] | None, limit: int = 0) -> dict[str, Any]:
    """Attributes as a dict; strings capped at `limit`, or by their key when it is 0."""
    found = {}
    for kv in attributes or []:
        key = kv["key"]
        key = _unicode(key if isinstance(key, str) else str(key))
        found[key] = _json_value(kv.get("value"), key, limit)
    return found


def _json_time(value: Any, field_name: str) -> int:
    """A fixed64 nanosecond timestamp: a string or a number from 0 to 2^64 - 1."""
    ns = int(value or 0)
    if not 0 <= ns < 2**64:
        raise InvalidRequest(
            f"{field_name} {str(value)[:40]!r} is not a time in nanoseconds since 1970.",
            param=field_name,
        )
    return ns


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
                            name=_unicode(str(span.get("name") or "span")),
                            start_ns=_json_time(span.get("startTimeUnixNano"), "startTimeUnixNano"),
                            end_ns=_json_time(span.get("endTimeUnixNano"), "endTimeUnixNano"),
                            status_code=int(code),
                            status_message=_unicode(str(status.get("message") or "")),
                            attributes=_json_attrs(span.get("attributes")),
                            resource=resource,
                            events=[
                                (
                                    str(e.get("name") or ""),
                                    _json_attrs(e.get("attributes"), CONTENT_LIMIT),
                                )
                                for e in span.get("events") or []
                            ],
                        )
                    )
        return spans
    except InvalidRequest:
        raise
    # RecursionError: nesting deeper than Python's stack; OverflowError: a huge number.
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError):
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


# --- figures ----------------------------------------------------------------------------------

# A token count is stored in an INTEGER column, 32-bit on PostgreSQL.
_MAX_COUNT = 2**31 - 1
# No model call costs a million dollars: a bigger figure is a unit or encoding slip, and left
# in it would swamp the project's totals (or overflow their sum to infinity).
_MAX_COST = 1_000_000.0
# The longest an OTLP span can last (its times are unsigned 64-bit nanoseconds).
_MAX_MS = 2**64 / 1e6


class _Invalid(ValueError):
    """A figure llmdeck does not take; the message says why, for `llmdeck.ignored`."""


def _shown(value: Any) -> str:
    """A value as it arrived, short, for a message."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _number(value: Any) -> int | float:
    """An attribute as a finite number: an int, a double, or text that spells one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Invalid(f"{_shown(value)} is not a number")
    number = value
    if isinstance(number, str):
        try:
            number = int(number)
        except ValueError:
            try:
                number = float(number)
            except ValueError:
                raise _Invalid(f"{_shown(value)} is not a number") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise _Invalid(f"{_shown(value)} is not a finite number")
    return number


def _count(value: Any) -> int:
    """A token count: a whole number from 0 to the largest the database holds."""
    if type(value) is int and 0 <= value <= _MAX_COUNT:  # the usual case, quickly
        return value
    number = _number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise _Invalid(f"{_shown(value)} is not a whole number")
        number = int(number)
    if number < 0:
        raise _Invalid(f"{_shown(value)} is negative")
    if number > _MAX_COUNT:
        raise _Invalid(f"{_shown(value)} is more than {_MAX_COUNT}")
    return number


def _amount(value: Any, maximum: float) -> float:
    """A cost or duration: a finite number from 0 to `maximum`."""
    number = _number(value)
    if number < 0:
        raise _Invalid(f"{_shown(value)} is negative")
    if number > maximum:
        raise _Invalid(f"{_shown(value)} is more than {maximum:g}")
    return float(number)


def _cost(value: Any) -> float:
    return _amount(value, _MAX_COST)


def _milliseconds(value: Any) -> float:
    return _amount(value, _MAX_MS)


def _seconds(value: Any) -> float:
    return _amount(value, _MAX_MS / 1000)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 reads as infinity
        raise ValueError(text)
    return number


def _no_constant(text: str) -> Any:
    raise ValueError(text)


def _maybe_json(value: Any) -> Any:
    """JSON text parsed, when it is a JSON array or object of finite numbers; else as is."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value, parse_float=_finite, parse_constant=_no_constant)
        except (ValueError, RecursionError):
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


# The per-message events of the GenAI conventions, and the role each stands for.
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def _event_message(attrs: dict[str, Any]) -> dict[str, Any]:
    """The message a GenAI message or choice event carries, however the sender spelled it.

    The conventions define it as the event's body (`content`, `role`, `tool_calls`, `id`; a
    `gen_ai.choice` body holds it under `message`, beside `index` and `finish_reason`). On a
    span event it arrives as attributes: a `body` or `message` map, the same as JSON text (the
    only way where event attributes cannot be maps, as in the Python SDK), flattened keys
    (`message.content`), or the fields themselves (`content`). Later forms win."""
    message: dict[str, Any] = {}
    for key in ("body", "message"):
        value = _maybe_json(attrs.get(key))
        if isinstance(value, dict):
            inner = _maybe_json(value.get("message"))
            message.update(inner if isinstance(inner, dict) else value)
        elif value is not None:
            message["content"] = value
    for key, value in attrs.items():
        if key.startswith("message."):
            message[key[8:]] = value
    for key in ("content", "role", "tool_calls", "id"):
        if key in attrs:
            message[key] = attrs[key]
    return message


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
        elif name in _MESSAGE_EVENTS:
            message = _event_message(attrs)
            entry = {
                "role": message.get("role") or _MESSAGE_EVENTS[name],
                "content": message.get("content"),
            }
            for key in ("tool_calls", "id"):
                if message.get(key) is not None:
                    entry[key] = message[key]
            prompt.append(entry)
        elif name == "gen_ai.choice":
            message = _event_message(attrs)
            content = message.get("content")
            if (content is None or content == "") and message.get("tool_calls"):
                content = {"tool_calls": message["tool_calls"]}  # a call instead of text
            completion.append(content if content != "" else None)
        elif name == "gen_ai.client.inference.operation.details":
            prompt.append(_maybe_json(attrs.get("gen_ai.input.messages")))
            completion.append(_maybe_json(attrs.get("gen_ai.output.messages")))
        elif name == "exception":
            error = attrs.get("exception.message") or attrs.get("exception.type")
    flat_prompt = prompt[0] if len(prompt) == 1 else (prompt or None)
    flat_completion = completion[0] if len(completion) == 1 else (completion or None)
    return flat_prompt, flat_completion, error


def _text(value: Any) -> str | None:
    """An output column value: text as is, one message as its text, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        message = value[0]
        content = message.get("content")
        if isinstance(content, str):
            return content
        # gen_ai.output.messages: {"role", "parts": [{"type": "text", "content"}, ...]}.
        parts = message.get("parts")
        if isinstance(parts, list) and parts and all(_is_text_part(p) for p in parts):
            return _cap("".join(p["content"] for p in parts), CONTENT_LIMIT)
    # Text came capped from the parser; what is made here is capped here.
    return _cap(json.dumps(value, default=str), CONTENT_LIMIT)


def _is_text_part(part: Any) -> bool:
    return (
        isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("content"), str)
    )


def _plain(value: Any, size: int) -> str:
    """A short text column's value: at most `size` characters."""
    return _no_nul((value if isinstance(value, str) else str(value))[:size])


def _no_nul(text: str) -> str:
    """`text` without NUL, which PostgreSQL text cannot hold (ingest replaces those in JSON
    columns)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _bounded(value: Any) -> Any:
    """An input assembled from parts, within `INPUT_LIMIT`: else its JSON text, capped.

    Text needs no check: every string was capped when parsed."""
    if value is None or isinstance(value, str):
        return value
    text = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(text) <= INPUT_LIMIT else _cap(text, INPUT_LIMIT)


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


# How each numeric field is read; a value that fails is ignored and noted.
_CHECK_OF: dict[int, Callable[[Any], Any]] = {
    _IN_TOKENS: _count,
    _OUT_TOKENS: _count,
    _COST: _cost,
    _TTFT: _milliseconds,
    _TTFT_S: _seconds,
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
            if key.startswith(_INDEXED_PREFIXES):
                content.append(key)
            elif len(key) > ATTRIBUTE_LIMIT:  # dropped, as no name is ever that long
                content.append(key)
                ignored = ignored or {}
                ignored[_cap(key, 100)] = "an attribute name this long is not kept"
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
            except _Invalid as reason:
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
    ev_prompt, ev_completion, ev_error = _event_content(raw.events) if raw.events else (None,) * 3
    indexed = len(content) > sum(1 for k in content if k in _CONTENT_KEYS)
    prompt = found[_INPUT]
    if isinstance(prompt, str):
        prompt = _maybe_json(prompt)  # text was capped when parsed
    else:
        if prompt is None:
            prompt = (
                indexed
                and (
                    _indexed_messages(attrs, "gen_ai.prompt.")
                    or _indexed_messages(attrs, "llm.input_messages.")
                )
            ) or ev_prompt
        prompt = _bounded(prompt)
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
    output = _text(completion)
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
    if ttft is None and (seconds := found[_TTFT_S]) is not None:
        ttft = seconds * 1000
    start_ns = raw.start_ns
    end_ns = raw.end_ns or start_ns
    started = _time(start_ns)
    latency: float | None = (end_ns - start_ns) / 1e6
    ended = _time(end_ns) if end_ns != start_ns else started
    if end_ns < start_ns:  # a clock that went back: no duration rather than a made-up one
        latency = ended = None
        ignored = ignored or {}
        ignored["endTimeUnixNano"] = f"{end_ns} is before startTimeUnixNano {start_ns}"
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
        name=_plain(raw.name or "span", 200),
        kind=_plain(_kind(attrs, model), 20),
        model=_plain(model, 200) if model is not None else None,
        provider=_plain(provider, 50) if provider is not None else None,
        input=prompt,
        output=_no_nul(output) if output is not None else None,
        input_tokens=found[_IN_TOKENS],
        output_tokens=found[_OUT_TOKENS],
        cost=found[_COST],
        latency_ms=latency,
        ttft_ms=ttft,
        status="error" if raw.status_code == 2 else "ok",
        error=_no_nul(_cap(str(error), ATTRIBUTE_LIMIT)) if error else None,
        attributes=kept,
        started_at=started,
        ended_at=ended,
        session_id=_plain(session, 200) if session is not None else None,
        user_id=_plain(user, 200) if user is not None else None,
        tags=_tags(tags) if tags is not None else None,
    )
