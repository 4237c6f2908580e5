"""The `llmdeck` command: `llmdeck <noun> <verb>`, composed from each domain's commands."""

from __future__ import annotations

import logging
from typing import Any

import click
import typer
from typer.core import TyperGroup

from llmdeck.catalog.cli import models
from llmdeck.cli.config import config
from llmdeck.cli.output import fail_cleanly
from llmdeck.cli.server import up
from llmdeck.evals.cli import datasets, evals
from llmdeck.gateway.cli import chat, gateway
from llmdeck.identity.cli import keys, projects, users
from llmdeck.knowledge.cli import kb
from llmdeck.monitoring.cli import monitoring
from llmdeck.prompts.cli import chains, prompts
from llmdeck.tracing.cli import traces


class _Commands(TyperGroup):
    """The command tree. Every command runs inside fail_cleanly(), so an LLMDeckError raised
    anywhere in one (an option value its schema refuses, say) ends it with one `error:` line
    and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        with fail_cleanly():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Commands,
    name="llmdeck",
    help="llmdeck: gateway, tracing, prompts, RAG, evaluation and governance for LLM apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(up)
app.command()(chat)
app.add_typer(projects, name="projects")
app.add_typer(users, name="users")
app.add_typer(keys, name="keys")
app.add_typer(models, name="models")
app.add_typer(traces, name="traces")
app.add_typer(monitoring, name="monitoring")
app.add_typer(kb, name="kb")
app.add_typer(gateway, name="gateway")
app.add_typer(prompts, name="prompts")
app.add_typer(chains, name="chains")
app.add_typer(datasets, name="datasets")
app.add_typer(evals, name="eval")
app.add_typer(config, name="config")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
