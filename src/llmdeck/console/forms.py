"""Pydantic's validation errors in the words a person filling a console form understands."""

from __future__ import annotations


def say(error: dict) -> str:
    """One error of `ValidationError.errors()`, as a form field's message."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in ("missing", "string_too_short"):
        return "Required."
    if kind == "too_short":
        return "Add at least one deployment."
    if kind == "string_pattern_mismatch":
        return "Use letters, digits and . _ : / - only, starting with a letter or digit."
    if kind == "finite_number":
        return "Enter a finite number."
    if kind.startswith("float"):
        return "Enter a number."
    if kind.startswith("int"):
        return "Enter a whole number."
    if kind == "less_than_equal":
        return f"Must be at most {ctx['le']:,}."
    if kind == "greater_than":
        return "Must be above zero."
    if kind == "greater_than_equal":
        return "Must not be negative."
    if kind == "literal_error":
        return f"Pick one of {ctx.get('expected', 'the choices')}."
    return str(error.get("msg", "Invalid value.")).removeprefix("Value error, ")
