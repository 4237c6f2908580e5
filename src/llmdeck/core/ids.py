"""Identifiers: time-ordered ids for rows, OpenTelemetry-shaped ids for traces."""

from __future__ import annotations

import os
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A 26-character ULID: sorts by creation time, so it doubles as a pagination cursor."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_trace_id() -> str:
    """A 32-hex-digit trace id, as OpenTelemetry writes them."""
    return secrets.token_hex(16)


def new_span_id() -> str:
    """A 16-hex-digit span id, as OpenTelemetry writes them."""
    return secrets.token_hex(8)
