"""Pydantic's validation errors in the words a person filling a console form understands."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError


def _number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a float field's bound of 2 reads "2", not "2.0"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def say(error: dict) -> str:
    """One error of `ValidationError.errors()`, as a form field's message."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length", 1) <= 1):
        return "Required."
    if kind == "string_too_short":
        return f"At least {_number(ctx['min_length'])} characters."
    if kind == "string_too_long":
        return f"At most {_number(ctx['max_length'])} characters."
    if kind == "too_short":
        return "Add at least one deployment."
    if kind == "too_long":
        limit = ctx["max_length"]
        return f"At most {_number(limit)} item{'' if limit == 1 else 's'}."
    if kind == "string_pattern_mismatch":
        return "Use letters, digits and . _ : / - only, starting with a letter or digit."
    if kind in ("string_type", "string_unicode"):
        return "Enter text."
    if kind == "finite_number":
        return "Enter a finite number."
    if kind.startswith("float"):
        return "Enter a number."
    if kind.startswith("int"):
        return "Enter a whole number."
    if kind.startswith("bool"):
        return "Choose yes or no."
    if kind == "less_than_equal":
        return f"Must be at most {_number(ctx['le'])}."
    if kind == "less_than":
        return f"Must be less than {_number(ctx['lt'])}."
    if kind == "greater_than":
        return (
            "Must be above zero."
            if ctx.get("gt") == 0
            else f"Must be more than {_number(ctx['gt'])}."
        )
    if kind == "greater_than_equal":
        return (
            "Must not be negative."
            if ctx.get("ge") == 0
            else f"Must be at least {_number(ctx['ge'])}."
        )
    if kind in ("literal_error", "enum"):
        return f"Pick one of {ctx.get('expected', 'the choices')}."
    if kind.startswith("url"):
        return "Enter a full URL, such as https://api.example.com/v1."
    if kind in ("json_invalid", "json_type"):
        return "Enter valid JSON."
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "Enter a JSON object."
    if kind == "list_type":
        return "Enter a list."
    return str(error.get("msg", "Invalid value.")).removeprefix("Value error, ")


def field_errors(
    exc: ValidationError, *, default: str = "form", rename: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A form's messages by field: the first of each field's errors, in words.

    An error about no field (a model validator's) goes to `default`; `rename` shows a
    field's message beside another (a pair of buttons' beside the box next to them)."""
    rename = rename or {}
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else default
        errors.setdefault(rename.get(field, field), say(error))
    return errors
