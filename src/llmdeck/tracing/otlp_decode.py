"""OTLP/HTTP trace payloads (protobuf and JSON) read into plain spans (`RawSpan`).

Both encodings are reduced to the same shape, which `genai.to_record` then maps into an
llmdeck span. Protobuf is parsed by the generated classes of `opentelemetry-proto`; nothing is
ever unpickled or evaluated. Every string is capped as it is read (how long by its key, see
`genai_messages.limit_of`) and non-finite doubles are spelled as OTLP JSON does ("NaN",
"Infinity"), so that every attribute stays valid JSON on both databases. A malformed body, id
or time is an `InvalidRequest` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from llmdeck.core.errors import InvalidRequest
from llmdeck.tracing.genai_messages import limit_of
from llmdeck.tracing.limits import ATTRIBUTE_LIMIT, CONTENT_LIMIT, cap, double, no_surrogates


@dataclass(slots=True)
class RawSpan:
    """One span as either encoding reads, before mapping; times in Unix nanoseconds."""

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


def _pb_value(value: Any, kv: Any, limit: int) -> Any:
    """The value of attribute `kv` (whose key sets the limit of strings when `limit` is 0)."""
    which = value.WhichOneof("value")
    if which == "string_value":  # the usual case first
        text = value.string_value
        return text if len(text) <= ATTRIBUTE_LIMIT else cap(text, limit or limit_of(kv.key))
    if which is None:
        return None
    if which == "double_value":
        return double(value.double_value)
    if which == "array_value":
        return [_pb_value(v, kv, limit) for v in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: _pb_value(item.value, kv, limit) for item in value.kvlist_value.values}
    if which == "bytes_value":
        return cap(base64.b64encode(value.bytes_value).decode(), limit or limit_of(kv.key))
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


def _json_text(value: str, limit: int, key: str = "") -> str:
    """A JSON string as text, capped at `limit` (by `key` when 0)."""
    value = no_surrogates(value)
    if len(value) <= ATTRIBUTE_LIMIT:
        return value
    return cap(value, limit or limit_of(key))


def _json_value(value: Any, key: str, limit: int) -> Any:
    if not isinstance(value, dict):
        return None
    if "arrayValue" in value:
        values = (value["arrayValue"] or {}).get("values", [])
        return [_json_value(v, key, limit) for v in values]
    if "kvlistValue" in value:
        return _json_attrs((value["kvlistValue"] or {}).get("values", []), limit or limit_of(key))
    for name in _JSON_SCALARS:
        if name in value:
            raw = value[name]
            if isinstance(raw, str):
                return _json_scalar(name, raw, key, limit)
            if isinstance(raw, float):  # json.loads reads NaN and Infinity literals too
                return int(raw) if name == "intValue" and raw.is_integer() else double(raw)
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
            return double(float(raw))
        except ValueError:
            pass
    return _json_text(raw, limit, key)


def _json_attrs(attributes: list[dict[str, Any]] | None, limit: int = 0) -> dict[str, Any]:
    """Attributes as a dict; strings capped at `limit`, or by their key when it is 0."""
    found = {}
    for kv in attributes or []:
        key = kv["key"]
        key = no_surrogates(key if isinstance(key, str) else str(key))
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
                            name=no_surrogates(str(span.get("name") or "span")),
                            start_ns=_json_time(span.get("startTimeUnixNano"), "startTimeUnixNano"),
                            end_ns=_json_time(span.get("endTimeUnixNano"), "endTimeUnixNano"),
                            status_code=int(code),
                            status_message=no_surrogates(str(status.get("message") or "")),
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
