"""Rendering prompt templates: every variable required, in the bounded sandbox
(prompts/sandbox.py), so any template a builder writes renders quickly or fails with a 400
that says what to change."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SecurityError

from llmdeck.core.errors import InvalidRequest, LLMDeckError, sentence
from llmdeck.prompts import sandbox
from llmdeck.prompts.sandbox_budget import TOO_BIG, TOO_DEEP, limit_error

# Autoescape off: these are chat messages, not HTML. StrictUndefined turns a missing
# variable into an error instead of "".
_env = sandbox.BoundedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)


def _syntax_error(exc: TemplateSyntaxError) -> InvalidRequest:
    if isinstance(exc, sandbox.Unsupported):
        return InvalidRequest(exc.message or "", param="messages", code="template_unsupported")
    return InvalidRequest(
        f"Template syntax error on line {exc.lineno}: {sentence(exc.message)}", param="messages"
    )


@lru_cache(maxsize=4096)
def _compile(source: str):
    try:
        return _env.from_string(source)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from None


def variables_of(source: str) -> set[str]:
    """The undeclared variables a template reads (refusing what prompts cannot do)."""
    try:
        return meta.find_undeclared_variables(_env.parse(source))
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from None


def _template_line(exc: BaseException) -> str:
    """' on line N' for the template line a render error came from (Jinja rewrites the
    traceback so that template frames carry the template's line numbers)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" on line {line}" if line else ""


def render_text(source: str, variables: dict[str, Any]) -> str:
    try:
        return sandbox.render(_env, _compile(source), variables)
    except LLMDeckError:
        raise
    except UndefinedError as exc:
        missing = sorted(variables_of(source) - set(variables))
        names = ", ".join(missing) if missing else str(exc.message)
        raise InvalidRequest(
            f"Missing prompt variable: {names}. Pass it in `variables` (API), "
            "`prompt_variables` (gateway) or `--var NAME=VALUE` (CLI).",
            param="variables",
            code="missing_variable",
        ) from None
    except SecurityError as exc:
        raise InvalidRequest(
            f"The template tried something unsafe: {sentence(exc)}", param="messages"
        ) from None
    except RecursionError:
        raise limit_error(TOO_DEEP) from None
    except MemoryError:
        raise limit_error(TOO_BIG) from None
    except Exception as exc:
        # Anything else a template raises (TypeError from a filter given the wrong type,
        # ZeroDivisionError, OverflowError...) is the template's or its variables' fault:
        # say what it was and where, as a 400, never a 500.
        detail = str(exc)[:300] or type(exc).__name__
        raise InvalidRequest(
            f"The template failed{_template_line(exc)}: {type(exc).__name__}: {sentence(detail)} "
            "Fix the template or the variables given to it.",
            param="messages",
            code="template_error",
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
