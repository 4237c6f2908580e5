"""Rendering templates in the Jinja2 sandbox: no attribute tricks, every variable required."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from llmdeck.core.errors import InvalidRequest

# Autoescape off: these are chat messages, not HTML. The sandbox blocks unsafe attribute
# access and StrictUndefined turns a missing variable into an error instead of "".
_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=4096)
def _compile(source: str):
    try:
        return _env.from_string(source)
    except TemplateSyntaxError as exc:
        raise InvalidRequest(
            f"Template syntax error on line {exc.lineno}: {exc.message}.", param="messages"
        ) from None


def variables_of(source: str) -> set[str]:
    """The undeclared variables a template reads."""
    try:
        return meta.find_undeclared_variables(_env.parse(source))
    except TemplateSyntaxError as exc:
        raise InvalidRequest(
            f"Template syntax error on line {exc.lineno}: {exc.message}.", param="messages"
        ) from None


def render_text(source: str, variables: dict[str, Any]) -> str:
    template = _compile(source)
    try:
        return template.render(variables)
    except UndefinedError as exc:
        missing = sorted(variables_of(source) - set(variables))
        names = ", ".join(missing) if missing else str(exc.message)
        raise InvalidRequest(
            f"Missing prompt variable: {names}. Pass it in `variables` (or `prompt_variables`).",
            param="variables",
            code="missing_variable",
        ) from None
    except SecurityError as exc:
        raise InvalidRequest(
            f"The template tried something unsafe: {exc}.", param="messages"
        ) from None


def render_messages(
    messages: list[dict[str, Any]], variables: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each message with its text content rendered."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            message = {**message, "content": render_text(content, variables)}
        out.append(message)
    return out


def messages_variables(messages: list[dict[str, Any]]) -> list[str]:
    found: set[str] = set()
    for message in messages:
        if isinstance(message.get("content"), str):
            found |= variables_of(message["content"])
    return sorted(found)
