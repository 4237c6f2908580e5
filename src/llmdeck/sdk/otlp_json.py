"""SDK spans written as an OTLP/HTTP JSON ExportTraceServiceRequest (on the export thread)."""

from __future__ import annotations

import json
from typing import Any

from llmdeck import __version__

_MAX_TEXT = 64_000


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-friendly copy of what a function received or returned; never raises."""
    try:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return value[:_MAX_TEXT]
        if depth > 6:
            return repr(value)[:1000]
        if isinstance(value, dict):
            return {str(k): jsonable(v, depth + 1) for k, v in list(value.items())[:200]}
        if isinstance(value, list | tuple | set):
            return [jsonable(v, depth + 1) for v in list(value)[:200]]
        dump = getattr(value, "model_dump", None)  # pydantic objects, e.g. openai's responses
        if callable(dump):
            return jsonable(dump(), depth + 1)
        return repr(value)[:1000]
    except Exception:
        return "<unserializable>"


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return {"arrayValue": {"values": [{"stringValue": v} for v in value]}}
    return {"stringValue": json.dumps(jsonable(value), default=str)}


def _attributes(span: Any) -> list[dict[str, Any]]:
    attrs: dict[str, Any] = dict(span.attributes)
    attrs["openinference.span.kind"] = span.kind.upper()
    if span.model:
        attrs.setdefault("gen_ai.request.model", span.model)
    if span.input is not None:
        value = jsonable(span.input)
        attrs["llmdeck.input"] = value if isinstance(value, str) else json.dumps(value)
    if span.output is not None:
        value = jsonable(span.output)
        attrs["llmdeck.output"] = value if isinstance(value, str) else json.dumps(value)
    if span.session_id:
        attrs["session.id"] = span.session_id
    if span.user_id:
        attrs["user.id"] = span.user_id
    if span.tags:
        attrs["llmdeck.tags"] = list(span.tags)
    if span.metadata:
        attrs["metadata"] = json.dumps(jsonable(span.metadata))
    return [{"key": k, "value": _value(v)} for k, v in attrs.items() if v is not None]


def encode(spans: list[Any]) -> dict[str, Any]:
    out = []
    for span in spans:
        item: dict[str, Any] = {
            "traceId": span.trace_id,
            "spanId": span.span_id,
            "name": span.name,
            "kind": 1,
            "startTimeUnixNano": str(span.start_ns),
            "endTimeUnixNano": str(span.end_ns),
            "attributes": _attributes(span),
            "status": {"code": 2, "message": span.error} if span.error else {"code": 1},
        }
        if span.parent_span_id:
            item["parentSpanId"] = span.parent_span_id
        out.append(item)
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "telemetry.sdk.name", "value": {"stringValue": "llmdeck"}},
                        {"key": "telemetry.sdk.version", "value": {"stringValue": __version__}},
                    ]
                },
                "scopeSpans": [{"scope": {"name": "llmdeck.sdk"}, "spans": out}],
            }
        ]
    }
