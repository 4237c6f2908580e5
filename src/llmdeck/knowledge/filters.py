"""Metadata filters as people type them, for the CLI's `--filter` and the console's filter
box alike, so that both take and refuse the same things: the API's JSON object, or
`key=value` lines where a key given on several lines matches any of its values."""

from __future__ import annotations

import json
from typing import Any

from llmdeck.core.errors import InvalidRequest

EXAMPLE = '{"document": "faq.md"}'


def parse(text: str, *, name: str) -> dict[str, Any]:
    """The filters `text` holds; `name` (what the user filled in) starts each refusal."""
    text = text.strip()
    if text.startswith(("{", "[")):  # JSON, as the API takes it
        return _json_object(name, text)
    return _lines(name, text)


def _json_object(name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"{name} must be a JSON object, e.g. {EXAMPLE} ({exc.msg} at character {exc.pos + 1}).",
            param="filters",
        ) from None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"{name} must be a JSON object, e.g. {EXAMPLE}; got {type(value).__name__}.",
            param="filters",
        )
    return value


def _lines(name: str, text: str) -> dict[str, Any]:
    # Values stay text: filters compare metadata as text, so row=2 matches the number 2 and
    # flag=true the boolean, as {"row": 2} and {"flag": true} do.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        where = f"{name} line {number}" if len(lines) > 1 else name
        key, equals, value = (part.strip() for part in line.partition("="))
        if not equals:
            raise InvalidRequest(
                f"{where} has no '=' in {line!r}: write key=value, e.g. document=faq.md.",
                param="filters",
            )
        if not key or not value:
            raise InvalidRequest(
                f"{where} needs a key before '=' and a value after it, not {line!r}; "
                "e.g. document=faq.md.",
                param="filters",
            )
        values = found.setdefault(key, [])
        if value not in values:
            values.append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in found.items()}
