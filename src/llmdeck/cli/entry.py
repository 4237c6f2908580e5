"""The `llmdeck` executable: `llmdeck up` starts without loading every other command."""

from __future__ import annotations

import sys


def main() -> None:
    # `up` is the one command whose start time users feel; building the whole command tree
    # imports every domain's CLI (about 0.3 s) that the server never uses.
    if len(sys.argv) > 1 and sys.argv[1] == "up":
        import typer

        from llmdeck.cli.server import up

        sys.argv = [f"{sys.argv[0]} up", *sys.argv[2:]]
        typer.run(up)
        return
    from llmdeck.cli.main import app

    app()
