"""What llmdeck keeps of the values an OTLP sender writes.

A sender's values are not trusted to be sane. Strings are capped (see `CONTENT_LIMIT` and
`ATTRIBUTE_LIMIT`) and cleaned of what a database cannot hold; a token count, cost or
duration is taken only when it is a finite, non-negative number the database can hold, and
anything else raises `Invalid`, so that the mapping can leave it out of the span's figures and
name it in the span's `llmdeck.ignored` attribute. One bad span neither fails its batch nor
poisons a project's totals.
"""

from __future__ import annotations

import json
import math
from typing import Any

# --- strings ----------------------------------------------------------------------------------

# The longest string kept from one value, in characters (as OpenTelemetry's SDK attribute
# limits count them); a longer one keeps its start and a marker saying how long it was.
# Prompts and completions (the attributes `genai_messages.limit_of` names) get 1 Mi characters:
# a long prompt (a 200k-token context is about 800k characters) is kept whole, a runaway one
# does not become a 20 MB span. Other attributes get 64 Ki characters, more than ids, names,
# tool schemas or a retrieved chunk need. Both are far below the batch's own size limit
# (`otlp_max_body_bytes`). An input assembled from parts (indexed messages, events, a
# structured attribute) may hold several long messages: it is kept as is up to 4 Mi characters
# of JSON, and beyond that stored as its JSON text, capped.
CONTENT_LIMIT = 1024 * 1024
ATTRIBUTE_LIMIT = 64 * 1024
INPUT_LIMIT = 4 * CONTENT_LIMIT


def cap(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with a marker when it is longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated by llmdeck from {len(text):,} characters]"


def bounded(value: Any) -> Any:
    """An input assembled from parts, within `INPUT_LIMIT`: else its JSON text, capped.

    Text needs no check: every string was capped when parsed."""
    if value is None or isinstance(value, str):
        return value
    text = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(text) <= INPUT_LIMIT else cap(text, INPUT_LIMIT)


def plain(value: Any, size: int) -> str:
    """A short text column's value: at most `size` characters."""
    return no_nul((value if isinstance(value, str) else str(value))[:size])


def no_nul(text: str) -> str:
    """`text` without NUL, which PostgreSQL text cannot hold (ingest replaces those in JSON
    columns)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def no_surrogates(value: str) -> str:
    """`value` with any lone surrogate replaced: a "\\ud800" escape is valid JSON but not text,
    and neither database nor a UTF-8 answer can hold one."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode(errors="replace").decode()
    return value


def double(value: float) -> float | str:
    """A finite double as is; NaN and infinities as OTLP JSON spells them.

    JSON has no literal for them: stored as numbers they would be invalid JSON (PostgreSQL
    refuses them, browsers cannot parse them)."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


# --- figures ----------------------------------------------------------------------------------

# A token count is stored in an INTEGER column, 32-bit on PostgreSQL.
_MAX_COUNT = 2**31 - 1
# No model call costs a million dollars: a bigger figure is a unit or encoding slip, and left
# in it would swamp the project's totals (or overflow their sum to infinity).
_MAX_COST = 1_000_000.0
# The longest an OTLP span can last (its times are unsigned 64-bit nanoseconds).
_MAX_MS = 2**64 / 1e6


class Invalid(ValueError):
    """A figure llmdeck does not take; the message says why, for `llmdeck.ignored`."""


def _shown(value: Any) -> str:
    """A value as it arrived, short, for a message."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _number(value: Any) -> int | float:
    """An attribute as a finite number: an int, a double, or text that spells one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"{_shown(value)} is not a number")
    number = value
    if isinstance(number, str):
        try:
            number = int(number)
        except ValueError:
            try:
                number = float(number)
            except ValueError:
                raise Invalid(f"{_shown(value)} is not a number") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise Invalid(f"{_shown(value)} is not a finite number")
    return number


def count(value: Any) -> int:
    """A token count: a whole number from 0 to the largest the database holds."""
    if type(value) is int and 0 <= value <= _MAX_COUNT:  # the usual case, quickly
        return value
    number = _number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise Invalid(f"{_shown(value)} is not a whole number")
        number = int(number)
    if number < 0:
        raise Invalid(f"{_shown(value)} is negative")
    if number > _MAX_COUNT:
        raise Invalid(f"{_shown(value)} is more than {_MAX_COUNT}")
    return number


def _amount(value: Any, maximum: float) -> float:
    """A cost or duration: a finite number from 0 to `maximum`."""
    number = _number(value)
    if number < 0:
        raise Invalid(f"{_shown(value)} is negative")
    if number > maximum:
        raise Invalid(f"{_shown(value)} is more than {maximum:g}")
    return float(number)


def cost(value: Any) -> float:
    """A cost in dollars, up to `_MAX_COST`."""
    return _amount(value, _MAX_COST)


def milliseconds(value: Any) -> float:
    """A duration in milliseconds, up to the longest an OTLP span can last."""
    return _amount(value, _MAX_MS)


def seconds(value: Any) -> float:
    """A duration in seconds, up to the longest an OTLP span can last."""
    return _amount(value, _MAX_MS / 1000)
