"""CLI of prompts: `llmdeck prompts list|push|show|label|diff|render` and `llmdeck chains ...`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
import yaml

from llmdeck.cli.output import console, db_session, emit, fail_cleanly, validated
from llmdeck.core.errors import InvalidRequest
from llmdeck.core.settings import get_settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import Principal
from llmdeck.prompts import authors, service
from llmdeck.prompts import chains as chain_logic
from llmdeck.prompts.schemas import PromptVersionCreate
from llmdeck.runtime import Runtime

prompts = typer.Typer(help="Versioned prompt templates and their labels.", no_args_is_help=True)
chains = typer.Typer(help="Chains of prompt, retrieval and transform steps.", no_args_is_help=True)
PROJECT = typer.Option("default", help="Project to act in.")
JSON = typer.Option(False, "--json", help="Print JSON.")


def _pid(session, project: str) -> str:
    return identity.get_project_by_name_or_raise(session, name=project).id


@prompts.command("list")
def prompts_list(project: str = PROJECT, as_json: bool = JSON) -> None:
    """Prompts and chains with their latest version and labels."""
    with db_session() as session:
        rows = [
            service.to_public(session, p).model_dump()
            for p in service.list(session, project_id=_pid(session, project))
        ]
    for row in rows:
        row["labels"] = ", ".join(f"{k}→{v}" for k, v in sorted(row["labels"].items()))
    emit(rows, ["name", "kind", "latest_version", "labels", "description"], as_json=as_json)


@prompts.command("push")
def prompts_push(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A prompt YAML file."),
    label: list[str] = typer.Option([], "--label", help="Point this label at the new version."),
    project: str = PROJECT,
) -> None:
    """Add a version from YAML: name, messages, model, params, commit_message.

    Content equal to the latest version's (messages, model, params) adds no version; the
    labels still point at that version."""
    with fail_cleanly():
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict) or not doc.get("name"):
            raise InvalidRequest("The file needs a `name` and `messages`.")
        name = doc.pop("name")
        doc["labels"] = list(doc.get("labels", [])) + label
        data = validated(PromptVersionCreate, **doc)
    with db_session() as session:
        pushed = service.push_version(
            session,
            project_id=_pid(session, project),
            name=name,
            data=data,
            role="admin",
            author=authors.CLI,
        )
    _report("Prompt", name, pushed, data.labels)


def _report(what: str, name: str, pushed: service.Pushed, labels: list[str]) -> None:
    """Say whether a push added a version, and which labels now point at it."""
    number = pushed.row.version
    if pushed.created:
        said = f"{what} [bold]{name}[/bold] version {number} saved."
    else:
        said = f"{what} [bold]{name}[/bold] unchanged: still version {number}."
    # soft_wrap: each on one line however long, as CI logs and `grep` expect.
    console.print(said, soft_wrap=True)
    for label in dict.fromkeys(labels):
        console.print(f"{name}@{label} → version {number}.", soft_wrap=True)


@prompts.command("show")
def prompts_show(
    name: str,
    label: str | None = typer.Option(None),
    version: int | None = typer.Option(None),
    project: str = PROJECT,
) -> None:
    """Print a version as YAML."""
    with db_session() as session:
        public = service.fetch(
            session, project_id=_pid(session, project), name=name, label=label, version=version
        )
    typer.echo(yaml.safe_dump(public.model_dump(mode="json"), sort_keys=False, allow_unicode=True))


@prompts.command("label")
def prompts_label(name: str, label: str, version: int, project: str = PROJECT) -> None:
    """Point LABEL at VERSION (rolling back is pointing it at an older one)."""
    with db_session() as session:
        prompt = service.get_by_name_or_raise(session, project_id=_pid(session, project), name=name)
        service.set_label(
            session,
            prompt=prompt,
            label=label,
            version=version,
            role="admin",
            author=authors.CLI,
        )
    console.print(f"{name}@{label} → version {version}.")


@prompts.command("diff")
def prompts_diff(name: str, a: int, b: int, project: str = PROJECT) -> None:
    """Unified diff between two versions."""
    with db_session() as session:
        prompt = service.get_by_name_or_raise(session, project_id=_pid(session, project), name=name)
        text = service.diff(
            prompt,
            service.get_version_or_raise(session, prompt=prompt, version=a),
            service.get_version_or_raise(session, prompt=prompt, version=b),
        )
    typer.echo(text or "(no difference)")


def _variables(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise typer.BadParameter(f"--var takes NAME=VALUE, not {value!r}.")
        out[key] = val
    return out


@prompts.command("render")
def prompts_render(
    name: str,
    var: list[str] = typer.Option([], "--var", help="NAME=VALUE. Repeatable."),
    label: str | None = typer.Option(None),
    project: str = PROJECT,
) -> None:
    """Print the messages a version renders to."""
    with db_session() as session:
        prompt, row = service.resolve(
            session, project_id=_pid(session, project), name=name, label=label
        )
        rendered = service.render(prompt, row, _variables(var), label)
    typer.echo(json.dumps(rendered.messages, indent=2, ensure_ascii=False))


@chains.command("push")
def chains_push(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A chain YAML file."),
    project: str = PROJECT,
) -> None:
    """Add a chain version from YAML (name, steps); steps equal to the latest version's add
    none."""
    with db_session() as session:
        name, data = chain_logic.load_yaml(path.read_text())
        pushed = service.push_version(
            session,
            project_id=_pid(session, project),
            name=name,
            data=data,
            role="admin",
            author=authors.CLI,
        )
    _report("Chain", name, pushed, data.labels)


@chains.command("run")
def chains_run(
    ref: str = typer.Argument(..., help="NAME, NAME@LABEL or NAME@VERSION."),
    var: list[str] = typer.Option([], "--var", help="NAME=VALUE. Repeatable."),
    project: str = PROJECT,
) -> None:
    """Run a chain; each step is a child span of the chain's trace."""

    async def go():
        runtime = Runtime.start(get_settings())
        try:
            with runtime.db.session() as session:
                p = identity.get_project_by_name_or_raise(session, name=project)
            principal = Principal(project_id=p.id, project_name=p.name, role="admin")
            return await chain_logic.run_chain(
                runtime, principal, ref, _variables(var), source="cli"
            )
        finally:
            await runtime.stop()

    with fail_cleanly():
        result = asyncio.run(go())
    typer.echo(result.output)
    console.print(f"[dim]trace {result.trace_id} · {len(result.steps)} steps[/dim]")
