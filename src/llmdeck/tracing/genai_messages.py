"""A span's input and output, read from the GenAI and OpenInference content attributes and events.

A sender may give them whole (`gen_ai.input.messages`, `input.value`, ...), as flattened
indexed messages (`gen_ai.prompt.0.content`, `llm.input_messages.0.message.role`), or as span
events (`gen_ai.user.message`, `gen_ai.choice`, ...); the first that is present wins, in that
order.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llmdeck.tracing.limits import ATTRIBUTE_LIMIT, CONTENT_LIMIT, bounded, cap

# Content attributes move to the span's input/output columns instead of staying in attributes.
INPUT_KEYS = ("gen_ai.input.messages", "gen_ai.prompt", "input.value", "llmdeck.input")
OUTPUT_KEYS = ("gen_ai.output.messages", "gen_ai.completion", "output.value", "llmdeck.output")
CONTENT_KEYS = frozenset(INPUT_KEYS + OUTPUT_KEYS)
INDEXED_PREFIXES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
)
# Attributes that carry prompt-sized text but stay in the span's attributes.
_LONG_KEYS = frozenset(
    (
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    )
)


def limit_of(key: str) -> int:
    """How long a string value of attribute `key` may be: prompt-sized for content."""
    if key in CONTENT_KEYS or key in _LONG_KEYS or key.startswith(INDEXED_PREFIXES):
        return CONTENT_LIMIT
    return ATTRIBUTE_LIMIT


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 reads as infinity
        raise ValueError(text)
    return number


def _no_constant(text: str) -> Any:
    raise ValueError(text)


def maybe_json(value: Any) -> Any:
    """JSON text parsed, when it is a JSON array or object of finite numbers; else as is."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value, parse_float=_finite, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return value
    return value


def input_output(
    attrs: dict[str, Any],
    given_input: Any,
    given_output: Any,
    moved: list[str],
    events: list[tuple[str, dict[str, Any]]],
) -> tuple[Any, str | None, str | None]:
    """A span's input and output column values, and the exception message its events carry.

    `given_input` and `given_output` are the values of the first `INPUT_KEYS` and
    `OUTPUT_KEYS` attribute present; `moved` are the attribute keys that leave the span's
    attributes (content and, when some are indexed messages, those)."""
    ev_prompt, ev_completion, ev_error = _event_content(events) if events else (None,) * 3
    indexed = len(moved) > sum(1 for k in moved if k in CONTENT_KEYS)
    prompt = given_input
    if isinstance(prompt, str):
        prompt = maybe_json(prompt)  # text was capped when parsed
    else:
        if prompt is None:
            prompt = (
                indexed
                and (
                    _indexed_messages(attrs, "gen_ai.prompt.")
                    or _indexed_messages(attrs, "llm.input_messages.")
                )
            ) or ev_prompt
        prompt = bounded(prompt)
    completion = maybe_json(given_output) if given_output is not None else None
    if completion is None:
        completion = (
            indexed
            and (
                _indexed_messages(attrs, "gen_ai.completion.")
                or _indexed_messages(attrs, "llm.output_messages.")
            )
        ) or ev_completion
    return prompt, _text(completion), ev_error


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
        value = maybe_json(attrs.get(key))
        if isinstance(value, dict):
            inner = maybe_json(value.get("message"))
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
            prompt.append(maybe_json(attrs.get("gen_ai.prompt")))
        elif name == "gen_ai.content.completion":
            completion.append(maybe_json(attrs.get("gen_ai.completion")))
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
            prompt.append(maybe_json(attrs.get("gen_ai.input.messages")))
            completion.append(maybe_json(attrs.get("gen_ai.output.messages")))
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
            return cap("".join(p["content"] for p in parts), CONTENT_LIMIT)
    # Text came capped from the parser; what is made here is capped here.
    return cap(json.dumps(value, default=str), CONTENT_LIMIT)


def _is_text_part(part: Any) -> bool:
    return (
        isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("content"), str)
    )
