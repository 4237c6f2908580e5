"""Prompt fetch latency end to end: `GET /api/prompts/{name}?label=production` against a
real `llmdeck up` process on loopback, from an asyncio httpx client at modest concurrency.

`python -m bench.evals.fetch` prints the figures; `bench/evals/run.py` includes them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
REQUESTS = int(os.environ.get("BENCH_FETCH_REQUESTS", "4000"))
CONCURRENCIES = [int(c) for c in os.environ.get("BENCH_FETCH_CONCURRENCY", "1,4").split(",")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


async def _load(url: str, key: str, concurrency: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        for _ in range(50):  # warm up: connections, caches
            (
                await client.get("/api/prompts/bench", params={"label": "production"})
            ).raise_for_status()
        latencies: list[float] = []
        remaining = REQUESTS

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                r = await client.get("/api/prompts/bench", params={"label": "production"})
                latencies.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "p50": _pct(latencies, 0.5),
        "p99": _pct(latencies, 0.99),
        "max": max(latencies),
        "rps": len(latencies) / elapsed,
    }


def measure() -> list[dict[str, float]]:
    """Start a server on a fresh home, register a prompt, and time fetches of it."""
    with tempfile.TemporaryDirectory() as tmp:
        port, key = _free_port(), "ldk-bench-" + secrets.token_hex(8)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMDECK_")}
        env.update(LLMDECK_HOME=str(Path(tmp) / "home"), LLMDECK_MASTER_KEY=key)
        env.setdefault("HF_HUB_OFFLINE", "1")
        server = subprocess.Popen(
            [sys.executable, "-m", "llmdeck", "up", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("llmdeck up did not start")
                time.sleep(0.1)
            created = httpx.post(
                f"{url}/api/prompts/bench/versions",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "messages": [{"role": "user", "content": "Answer: {{ question }}"}],
                    "model": "smollm2-135m",
                    "labels": ["production"],
                },
            )
            created.raise_for_status()
            return [asyncio.run(_load(url, key, c)) for c in CONCURRENCIES]
        finally:
            server.terminate()
            server.wait()


async def _asgi(requests: int) -> dict[str, float]:
    from llmdeck.app import create_app
    from llmdeck.core.settings import Settings

    key = "ldk-bench-" + secrets.token_hex(8)
    app = create_app(Settings(master_key=key))
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"host", b"bench")]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {key}"}
        ) as client:
            body = {
                "messages": [{"role": "user", "content": "Answer: {{ question }}"}],
                "model": "smollm2-135m",
                "labels": ["production"],
            }
            (await client.post("/api/prompts/bench/versions", json=body)).raise_for_status()

        async def one() -> None:
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/api/prompts/bench",
                "raw_path": b"/api/prompts/bench",
                "root_path": "",
                "query_string": b"label=production",
                "headers": headers,
                "client": ("127.0.0.1", 1),
                "server": ("bench", 80),
                "state": {},
            }
            sent: list[dict] = []

            async def receive() -> dict:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict) -> None:
                sent.append(message)

            await app(scope, receive, send)
            if sent[0]["status"] != 200:
                raise RuntimeError(f"fetch answered {sent[0]['status']}")

        for _ in range(100):
            await one()
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            await one()
            latencies.append((time.perf_counter() - started) * 1000)
    return {"p50": _pct(latencies, 0.5), "p99": _pct(latencies, 0.99), "max": max(latencies)}


def measure_asgi(requests: int = REQUESTS) -> dict[str, float]:
    """The server's whole work for one fetch (routing, auth, cache, answer), no network:
    the app called directly as ASGI, one request at a time, on a fresh home."""
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("LLMDECK_HOME")
        os.environ["LLMDECK_HOME"] = str(Path(tmp) / "home")
        try:
            return asyncio.run(_asgi(requests))
        finally:
            if old is None:
                os.environ.pop("LLMDECK_HOME", None)
            else:
                os.environ["LLMDECK_HOME"] = old


def asgi_table(figures: dict[str, float]) -> str:
    return (
        f"The server's whole work per fetch (the app called as ASGI in process: routing, "
        f"cached key check, cached answer; no network, no client), {REQUESTS} fetches:\n\n"
        "| p50 | p99 | max |\n|---|---|---|\n"
        f"| {figures['p50']:.3f} ms | {figures['p99']:.3f} ms | {figures['max']:.1f} ms |"
    )


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        f"End to end over HTTP against `llmdeck up` (SQLite), {REQUESTS} fetches per row over "
        "keep-alive connections (httpx, asyncio), client and server sharing the same cores:",
        "",
        "| concurrent clients | p50 | p99 | max | requests/s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['concurrency']} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | {r['max']:.1f} ms "
            f"| {r['rps']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(asgi_table(measure_asgi()))
    print()
    print(table(measure()))
