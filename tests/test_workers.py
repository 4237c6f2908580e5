"""`llmdeck up --workers N`: processes that share one port and one database."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import psutil

from llmdeck.core.claim import Claim
from llmdeck.core.db import get_database
from llmdeck.core.settings import Settings
from tests.conftest import LiveServer, start_server, stop_server
from tests.test_gateway_limits import _avoid_minute_boundary


def _workers(server: LiveServer) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children()
    return [p for p in children if "spawn_main" in " ".join(p.cmdline())]


def _claimed_by_a_worker(settings: Settings, within: float) -> bool:
    """True once another process holds the background claim (ours is dropped at once)."""
    db = get_database(settings)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        mine = Claim.take(db)
        if mine is None:
            return True
        mine.release()
        time.sleep(0.25)
    return False


def _answers(url: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=10).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def test_workers_share_limits_and_one_runs_the_background_work(
    tmp_path, database_url, upstream
) -> None:
    home = tmp_path / "home"
    server = start_server(home, database_url=database_url, args=("--workers", "2"))
    settings = Settings(home=home, **({"database_url": database_url} if database_url else {}))
    try:
        assert len(_workers(server)) == 2
        with server.client() as admin:
            route = {"deployments": [{"name": "a", "upstream": "m", "base_url": upstream.url}]}
            assert admin.put("/api/gateway/routes/r", json=route).status_code == 200
            limit = {"project": "default", "rpm": 6}
            assert admin.put("/api/gateway/limits", json=limit).status_code == 200
        _avoid_minute_boundary()
        body = {"model": "r", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {server.master_key}"}
        # A new connection for each request, so the kernel spreads them over the workers.
        codes = [
            httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers).status_code
            for _ in range(14)
        ]
        assert codes.count(200) == 6 and codes.count(429) == 8, codes
        assert upstream.hits == 6

        assert _claimed_by_a_worker(settings, within=10)
        # Whichever worker held the claim, one of these kills ends it; another takes over.
        for worker in _workers(server):
            os.kill(worker.pid, signal.SIGKILL)
            assert _claimed_by_a_worker(settings, within=30)
        # Each worker listens on its own socket: with both just killed, nobody listens
        # until the supervisor has started one again.
        assert _answers(f"{server.url}/api/health", within=60)
    finally:
        stop_server(server)


def test_keep_alive_connections_spread_over_the_workers(tmp_path) -> None:
    """Each worker listens on its own socket, so a busy worker does not collect them all."""
    server = start_server(tmp_path / "home", args=("--workers", "2"))
    port = int(server.url.rsplit(":", 1)[1])
    try:
        workers = _workers(server)
        assert len(workers) == 2
        # The server answers once one worker listens; a worker still starting takes none.
        assert _listening(workers, port, within=60)
        held = asyncio.run(_busy_connections(port, workers, count=32))
        # Spread by a hash of each connection: 16 each on average, fewer than 6 about once
        # in 100,000 runs. Workers sharing one socket: the busy one took nearly all.
        assert sum(held) == 32 and min(held) >= 6, held
    finally:
        stop_server(server)


def _listening(workers: list[psutil.Process], port: int, within: float) -> bool:
    """True once every worker listens on `port`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(
            any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)
            for conns in (w.net_connections() for w in workers)
        ):
            return True
        time.sleep(0.1)
    return False


async def _busy_connections(port: int, workers: list[psutil.Process], count: int) -> list[int]:
    """Open `count` keep-alive connections, a few ms apart, each asking again and again (as
    a client's pool does); how many each worker holds while they are all busy."""
    request = f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    stop = asyncio.Event()
    opened: list[asyncio.StreamWriter] = []
    answered: set[int] = set()

    async def client(index: int) -> None:
        await asyncio.sleep(index * 0.005)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append(writer)
        while not stop.is_set():
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            answered.add(index)

    tasks = [asyncio.create_task(client(i)) for i in range(count)]
    async with asyncio.timeout(60):
        while len(answered) < count:  # every connection open and served at least once
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    held = [
        sum(
            1
            for c in worker.net_connections("tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        )
        for worker in workers
    ]
    stop.set()
    await asyncio.gather(*tasks)
    for writer in opened:
        writer.close()
    return held
