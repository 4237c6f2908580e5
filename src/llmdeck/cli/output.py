"""Shared CLI plumbing: settings and database, tables or JSON, errors that say what to do."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest, LLMDeckError
from llmdeck.core.settings import get_settings
from llmdeck.runtime import prepare_database

console = Console()
errors = Console(stderr=True)


@contextmanager
def db_session() -> Iterator[Session]:
    """A session on the configured database (migrated on first use); errors exit cleanly."""
    with fail_cleanly(), prepare_database(get_settings()).session() as session:
        yield session


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn an LLMDeckError into one `error:` line and exit code 1 (every command runs in it:
    see cli.main)."""
    try:
        yield
    except LLMDeckError as exc:
        # soft_wrap: one line however long, as scripts and `grep` expect.
        errors.print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def emit(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, as_json: bool, title: str = ""
) -> None:
    """Print rows as a table, or as JSON for scripts."""
    if as_json:
        json.dump(list(rows), sys.stdout, default=_json_default, indent=2)
        sys.stdout.write("\n")
        return
    table = Table(title=title or None, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def validated(schema, /, *, options: Mapping[str, str] | None = None, **values):
    """Validate CLI input with the API's schema, so both refuse the same things.

    `options` names the CLI option that sets a field (`{"ttl_seconds": "--ttl"}`), so the
    message says what the user typed rather than the schema's field name."""
    try:
        return schema(**values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        name = (options or {}).get(field, field)
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequest(
            f"{name}: {message}" if name else message, param=field or None
        ) from None
