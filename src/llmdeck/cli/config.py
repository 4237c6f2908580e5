"""`llmdeck config show`: every setting, its value and what it does."""

from __future__ import annotations

import json

import typer
from pydantic import SecretStr

from llmdeck.cli.output import emit
from llmdeck.core.settings import Settings, get_settings

config = typer.Typer(help="Settings.", no_args_is_help=True)


@config.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print every setting with its current value and description."""
    settings = get_settings()
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = "(set, hidden)"
        rows.append(
            {
                "variable": f"LLMDECK_{name.upper()}",
                "value": "(unset)" if value is None else str(value),
                "description": field.description or "",
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    emit(rows, ["variable", "value", "description"], as_json=False)
