"""`python -m llmdeck` is the `llmdeck` command."""

from llmdeck.cli.main import app

app()
