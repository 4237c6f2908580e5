"""`llmdeck up --workers N`: processes that share one port and one database."""

from __future__ import annotations

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
        assert httpx.get(f"{server.url}/api/health", timeout=30).status_code == 200
    finally:
        stop_server(server)
