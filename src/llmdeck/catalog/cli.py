"""CLI of the catalog: `llmdeck models list|add|disable|enable`."""

from __future__ import annotations

import typer

from llmdeck.catalog import service
from llmdeck.catalog.schemas import ModelCreate, ModelUpdate
from llmdeck.cli.output import console, db_session, emit, validated
from llmdeck.core.settings import get_settings

models = typer.Typer(help="The model catalog.", no_args_is_help=True)


@models.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List catalog models with their prices and context windows."""
    with db_session() as session:
        rows = [service.to_public(m).model_dump() for m in service.list_models(session)]
    emit(
        rows,
        [
            "alias",
            "kind",
            "provider",
            "upstream_name",
            "context_window",
            "input_price_per_mtok",
            "output_price_per_mtok",
            "status",
        ],
        as_json=as_json,
    )


@models.command("add")
def models_add(
    alias: str = typer.Argument(..., help="Name clients use in `model`."),
    base_url: str = typer.Option(..., help="OpenAI-compatible base URL, e.g. http://host:8000/v1."),
    upstream: str = typer.Option(..., help="The model's name on that server."),
    api_key: str | None = typer.Option(
        None, envvar="LLMDECK_NEW_MODEL_API_KEY", help="The server's key (stored encrypted)."
    ),
    kind: str = typer.Option("chat", help="chat or embedding."),
    context_window: int = typer.Option(8192, help="Tokens the model accepts."),
    input_price: float = typer.Option(0.0, help="Dollars per million input tokens."),
    output_price: float = typer.Option(0.0, help="Dollars per million output tokens."),
    project: str | None = typer.Option(None, help="Only this project may use it."),
) -> None:
    """Add an OpenAI-compatible model by base URL; its key is stored encrypted."""
    with db_session() as session:
        model = service.create(
            session,
            settings=get_settings(),
            data=validated(
                ModelCreate,
                alias=alias,
                provider="openai",
                upstream_name=upstream,
                base_url=base_url,
                api_key=api_key,
                kind=kind,
                context_window=context_window,
                input_price_per_mtok=input_price,
                output_price_per_mtok=output_price,
                project=project,
            ),
        )
    key_note = " Its key is stored encrypted and will not be shown again." if api_key else ""
    console.print(f"Added model [bold]{model.alias}[/bold] ({upstream} at {base_url}).{key_note}")


def _set_status(alias: str, status: str) -> None:
    with db_session() as session:
        model = service.get_by_alias_or_raise(session, alias=alias)
        service.update(session, model=model, data=ModelUpdate(status=status))
    console.print(f"Model [bold]{alias}[/bold] is now {status}.")


@models.command("disable")
def models_disable(alias: str) -> None:
    """Stop serving a model (calls get 404 until it is enabled)."""
    _set_status(alias, "disabled")


@models.command("enable")
def models_enable(alias: str) -> None:
    """Serve a disabled model again."""
    _set_status(alias, "active")
