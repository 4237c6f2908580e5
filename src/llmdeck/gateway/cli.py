"""CLI of the gateway: `llmdeck chat "..."` streams an answer through the pipeline, and
`llmdeck gateway ...` configures routes, limits, budgets and the cache (or applies YAML)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from llmdeck.cli.output import console, db_session, emit, errors, fail_cleanly, validated
from llmdeck.core.errors import InvalidRequest
from llmdeck.core.settings import get_settings
from llmdeck.gateway import config
from llmdeck.gateway.schemas import CacheSpec, ChatCompletionRequest, ChatMessage, LimitSpec
from llmdeck.gateway.service import chat_call
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import Principal
from llmdeck.runtime import Runtime


def chat(
    prompt: str = typer.Argument(..., help="What to ask."),
    model: str = typer.Option("smollm2-135m", help="Catalog alias of the model."),
    system: str | None = typer.Option(None, help="A system prompt."),
    project: str = typer.Option("default", help="Project the call is traced and billed to."),
    max_tokens: int | None = typer.Option(None, help="Most tokens to generate."),
    temperature: float | None = typer.Option(None, help="0 (or unset) for greedy decoding."),
) -> None:
    """Ask a model and stream its answer to the terminal (traced like any gateway call)."""
    messages = ([ChatMessage(role="system", content=system)] if system else []) + [
        ChatMessage(role="user", content=prompt)
    ]
    request = validated(
        ChatCompletionRequest,
        options={"model": "--model", "max_tokens": "--max-tokens", "temperature": "--temperature"},
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        stream=True,
    )
    with fail_cleanly():
        asyncio.run(_chat(request, project))


async def _chat(request: ChatCompletionRequest, project_name: str) -> None:
    runtime = Runtime.start(get_settings())
    try:
        with runtime.db.session() as session:
            project = identity.get_project_by_name_or_raise(session, name=project_name)
            principal = Principal(project_id=project.id, project_name=project.name, role="admin")
        call = chat_call(principal, request, source="cli")
        stream = await runtime.gateway.stream_chat(call)
        last = None
        async for chunk in stream:
            sys.stdout.write(chunk.delta)
            sys.stdout.flush()
            last = chunk
        sys.stdout.write("\n")
        if last is not None and last.finish_reason:
            summary = f"{last.input_tokens} in, {last.output_tokens} out · trace {call.trace_id}"
            errors.print(f"[dim]{summary}[/dim]", highlight=False)
    finally:
        await runtime.stop()


gateway = typer.Typer(
    help="Gateway configuration: routes, limits and budgets, cache.", no_args_is_help=True
)
routes = typer.Typer(help="Model aliases served by weighted deployments.", no_args_is_help=True)
limits = typer.Typer(help="Rate limits and spend budgets.", no_args_is_help=True)
cache = typer.Typer(help="Response cache policies.", no_args_is_help=True)
gateway.add_typer(routes, name="routes")
gateway.add_typer(limits, name="limits")
gateway.add_typer(cache, name="cache")


@gateway.command("apply")
def gateway_apply(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A YAML file."),
    prune: bool = typer.Option(False, help="Also remove routes the file does not name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Apply a YAML configuration (routes, limits, cache); `export` writes one."""
    with db_session() as session:
        result = config.apply(
            session,
            settings=get_settings(),
            config=config.parse_yaml(_read(path)),
            prune=prune,
        )
    if as_json:
        emit([result.model_dump()], [], as_json=True)
        return
    removed = f", removed {', '.join(result.removed)}" if result.removed else ""
    console.print(
        f"Applied {result.routes} routes, {result.limits} limits and {result.cache} cache "
        f"policies{removed}."
    )


@gateway.command("export")
def gateway_export(
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write."),
) -> None:
    """Print (or write) the configuration as YAML, without keys."""
    with db_session() as session:
        text = config.to_yaml(config.export(session))
    if output is None:
        sys.stdout.write(text)
        return
    if not output.parent.is_dir():
        raise InvalidRequest(
            f"Cannot write {output}: the folder {output.parent} does not exist.", param="output"
        )
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(
            f"Cannot write {output}: {exc.strerror or exc}.", param="output"
        ) from None
    console.print(f"Wrote {output}.")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(
            f"{path} is not UTF-8 text; save the YAML file as UTF-8 and apply it again.",
            param="path",
        ) from None
    except OSError as exc:
        raise InvalidRequest(f"Cannot read {path}: {exc.strerror or exc}.", param="path") from None


@routes.command("list")
def routes_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List routes and their deployments."""
    with db_session() as session:
        rows = [config.route_public(session, r).model_dump() for r in config.list_routes(session)]
    if as_json:
        emit(rows, [], as_json=True)
        return
    for row in rows:
        row["deployments"] = ", ".join(
            f"{d['name']} ({d['upstream']}, w={d['weight']:g})" for d in row["deployments"]
        )
        row["fallbacks"] = ", ".join(row["fallbacks"]) or "-"
    emit(rows, ["alias", "kind", "strategy", "deployments", "fallbacks", "project"], as_json=False)


@routes.command("delete")
def routes_delete(alias: str) -> None:
    """Remove a route."""
    with db_session() as session:
        config.delete_route(session, route=config.get_route_by_alias_or_raise(session, alias=alias))
    console.print(f"Removed route [bold]{alias}[/bold].")


@limits.command("set")
def limits_set(
    project: str | None = typer.Option(None, help="Limit this project..."),
    key: str | None = typer.Option(None, help="...or this API key (id or prefix)."),
    rpm: int | None = typer.Option(None, help="Requests per minute."),
    tpm: int | None = typer.Option(None, help="Tokens per minute."),
    budget: float | None = typer.Option(None, help="Dollars per period."),
    period: str = typer.Option("month", help="day, week or month."),
) -> None:
    """Set the limits of a project or key (options left out mean unlimited)."""
    if (project is None) == (key is None):
        raise InvalidRequest("Say what to limit: give --project NAME or --key KEY (one of them).")
    spec = validated(
        LimitSpec,
        options={"rpm": "--rpm", "tpm": "--tpm", "budget": "--budget", "budget_period": "--period"},
        project=project,
        key=key,
        rpm=rpm,
        tpm=tpm,
        budget=budget,
        budget_period=period,
    )
    with db_session() as session:
        config.set_limit(session, spec=spec)
    console.print(f"Limits set for {'project ' + project if project else 'key ' + str(key)}.")


@limits.command("list")
def limits_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List limits and budgets."""
    with db_session() as session:
        rows = [config.limit_spec(session, x).model_dump() for x in config.list_limits(session)]
    emit(rows, ["project", "key", "rpm", "tpm", "budget", "budget_period"], as_json=as_json)


@cache.command("set")
def cache_set(
    project: str = typer.Option(..., help="The project whose answers are cached."),
    ttl: int = typer.Option(300, help="Seconds an answer is kept."),
    exact: bool = typer.Option(True, help="Answer identical requests from the cache."),
    semantic_threshold: float | None = typer.Option(
        None, help="Cosine similarity for a semantic hit (e.g. 0.9); unset: off."
    ),
    embedding_model: str = typer.Option("minilm-l6", help="Embedding model alias."),
) -> None:
    """Turn on (or change) a project's response cache."""
    spec = validated(
        CacheSpec,
        options={
            "project": "--project",
            "ttl_seconds": "--ttl",
            "semantic_threshold": "--semantic-threshold",
            "embedding_model": "--embedding-model",
        },
        project=project,
        ttl_seconds=ttl,
        exact=exact,
        semantic_threshold=semantic_threshold,
        embedding_model=embedding_model,
    )
    with db_session() as session:
        config.set_cache_policy(session, spec=spec)
    console.print(f"Cache policy set for project {project}.")
