"""`llmdeck up`: one process serving the console, the REST API and the gateway."""

from __future__ import annotations

import contextlib
import gc
import socket
import sys
import threading
import time

import httpx
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
    workers: int = typer.Option(
        None,
        min=1,
        help="Server processes (default: LLMDECK_WORKERS, or 1); they share the database.",
    ),
) -> None:
    """Start llmdeck: console at /, REST API at /api, OpenAI-compatible gateway at /v1."""
    from llmdeck import demo as demo_project
    from llmdeck.gateway.protocol import GatewayProtocol
    from llmdeck.runtime import prepare_database

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    # Migrate and seed once, here, rather than in several workers at the same moment.
    prepare_database(settings)
    access = None
    if demo:
        with db_session() as session:
            access = demo_project.seed(session, settings)
    threading.Thread(target=_announce, args=(host, port, workers, access), daemon=True).start()
    options = dict(
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        # A worker that has not answered the supervisor's ping for this long is restarted;
        # uvicorn's 5 s restarts healthy workers still starting up on a busy machine.
        timeout_worker_healthcheck=20,
        http=GatewayProtocol,
    )
    if workers == 1:
        uvicorn.run(serving_app(), **options)
    elif hasattr(socket, "SO_REUSEPORT") and sys.platform == "linux" and port:
        _serve_workers_with_own_sockets(workers, options)
    else:
        # Each worker imports and builds its own app; they share one listening socket.
        uvicorn.run("llmdeck.cli.server:serving_app", factory=True, workers=workers, **options)


def _serve_workers_with_own_sockets(workers: int, options: dict) -> None:
    """uvicorn's worker processes, each listening on a socket of its own.

    Workers that share one socket take whatever connection arrives while they are awake:
    under steady load one worker held 56 of 64 keep-alive connections while the other
    idled, so those clients had one core where they could have had all. With a socket
    each (SO_REUSEPORT), Linux spreads new connections over the workers evenly. The price:
    with every worker down at once, connections are refused (not queued) until the
    supervisor has started one again.
    """
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "llmdeck.cli.server:serving_app", factory=True, workers=workers, **options
    )
    # A port anyone listens on (another llmdeck's workers included) fails here, plainly,
    # rather than being shared.
    config.bind_socket().close()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: the supervisor stops its workers
        Multiprocess(config, sockets=[_OwnSocket(options["host"], options["port"])]).run()


class _OwnSocket:
    """Stands for a worker's listening socket: it is bound in the worker, when uvicorn
    hands its sockets over to the new process (pickled, see __reduce__)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    def __reduce__(self):
        return _bind_own_socket, (self.host, self.port)


def _bind_own_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    return sock


def serving_app():
    """The app a server process serves."""
    from llmdeck.app import create_app

    app = create_app(get_settings())
    # Everything built so far (modules, the app, its routes) lives as long as the process:
    # moved out of the collector's generations, it is no longer scanned on every collection,
    # which took about 15% of the gateway's CPU per request under load.
    gc.freeze()
    # Each request allocates a few hundred containers, so the default threshold (700) ran a
    # young-generation collection every other request, about 3% of the CPU under load
    # (perf). Most of it is freed by reference counting anyway; collect 30x less often.
    gc.set_threshold(20_000, 10, 10)
    # The event loop shares the GIL with background threads (trace writer, job poller); one
    # holding it in Python code kept a request waiting up to the default 5 ms switch
    # interval. At 0.2 ms the added p99 at concurrency 64 (bench/gateway, 100 ms upstream)
    # fell from +3.19 and +3.87 to +2.42 and +3.10 ms in two interleaved A/B runs, with
    # the same CPU per call.
    sys.setswitchinterval(0.0002)
    return app


def _announce(host: str, port: int, workers: int, access) -> None:
    """Print where to go once the server answers."""
    probe = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        # A bare connect first: it costs next to nothing while the server is still starting
        # (an HTTP client per try took CPU from the start-up it waits for).
        try:
            socket.create_connection((probe, port), timeout=1).close()
            if httpx.get(f"http://{probe}:{port}/api/health", timeout=5).status_code == 200:
                break
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    else:
        return
    url = f"http://{host}:{port}"
    processes = f" ({workers} server processes)" if workers > 1 else ""
    console.print(f"[bold green]llmdeck is ready[/bold green]{processes}")
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
