"""`llmdeck up`: one process serving the console, the REST API and the gateway."""

from __future__ import annotations

import threading
import time

import typer
import uvicorn

from llmdeck.cli.output import console, db_session
from llmdeck.core.settings import get_settings


def up(
    host: str = typer.Option(
        None, help="Address to listen on (default: LLMDECK_HOST, or 127.0.0.1)."
    ),
    port: int = typer.Option(None, help="Port to listen on (default: LLMDECK_PORT, or 8000)."),
    demo: bool = typer.Option(
        False, "--demo", help="Seed the demo project and print how to sign in."
    ),
) -> None:
    """Start llmdeck: console at /, REST API at /api, OpenAI-compatible gateway at /v1."""
    from llmdeck import demo as demo_project
    from llmdeck.app import create_app

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    access = None
    if demo:
        with db_session() as session:
            access = demo_project.seed(session, settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host=host, port=port, log_level="warning", access_log=False
        )
    )

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if not server.started:
            return
        url = f"http://{host}:{port}"
        console.print("[bold green]llmdeck is ready[/bold green]")
        console.print(f"  Console:   {url}/")
        console.print(f"  Gateway:   {url}/v1   (OpenAI-compatible)")
        console.print(f"  REST API:  {url}/api  (OpenAPI at /openapi.json)")
        if access is not None:
            password = access.password or "(changed since first start)"
            console.print(f"  Sign in:   {access.email} / {password}", highlight=False)
            console.print(
                f"  API key:   {access.api_key}   (project {access.project})", highlight=False
            )
            console.print(
                f"  Try it:    curl {url}/v1/chat/completions -H 'Authorization: Bearer "
                f"{access.api_key}' -H 'Content-Type: application/json' -d "
                '\'{"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi!"}]}\'',
                highlight=False,
                soft_wrap=True,
            )
        console.print("Press Ctrl+C to stop.")

    threading.Thread(target=announce, daemon=True).start()
    server.run()
