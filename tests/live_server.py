"""A real `llmdeck up` on loopback with models already registered, for the gateway's wire tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import LiveServer, start_server, stop_server


@contextmanager
def serving(home: Path, *models: dict) -> Iterator[LiveServer]:
    """Start `llmdeck up` on SQLite in `home`, create `models` (`POST /api/models` bodies),
    and stop the server on the way out, whatever happened inside."""
    live = start_server(home)
    try:
        with live.client() as http:
            for model in models:
                created = http.post("/api/models", json=model)
                assert created.status_code == 201, created.text
        yield live
    finally:
        stop_server(live)
