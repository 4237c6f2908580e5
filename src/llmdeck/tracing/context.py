"""W3C Trace Context: the `traceparent` header, read and written without OpenTelemetry.

`00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`. A header that does not parse,
or carries the all-zero ids the spec forbids, is ignored: the call starts its own trace.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid `traceparent`, else None."""
    if not header or len(header) < 55:
        return None
    value = header.strip().lower()
    # Version 00 is exactly 55 characters; later versions may append fields after a dash.
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if version == "ff" or (version == "00" and len(value) != 55):
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    if not _HEX.issuperset(version + trace_id + span_id + flags):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id


def format_traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str:
    """The `traceparent` value naming this span as the parent of the next hop."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
