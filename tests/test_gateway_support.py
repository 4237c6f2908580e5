"""Shared helpers of the gateway tests: an in-process llmdeck and a second scripted upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from llmdeck.app import create_app
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.runtime import Runtime
from llmdeck.tracing import service as tracing

MASTER = "ldk-master-gateway-tests"


def scripted_upstream(text: str) -> Iterator:
    """Another scripted upstream (for failover), as a fixture body: `yield from` it."""
    from tests.conftest import free_port
    from tests.upstream import ScriptedUpstream

    server = ScriptedUpstream()
    server.default = {"kind": "ok", "text": text}
    server.start(free_port())
    yield server
    server.stop()


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    async def put_route(
        self, alias: str, deployments: list[tuple[str, str]] | list[dict], **fields: Any
    ) -> dict:
        specs = [
            d if isinstance(d, dict) else {"name": d[0], "upstream": "up-model", "base_url": d[1]}
            for d in deployments
        ]
        response = await self.client.put(
            f"/api/gateway/routes/{alias}", json={"alias": alias, "deployments": specs, **fields}
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def chat(self, alias: str, text: str = "Hi", **body: Any) -> httpx.Response:
        # `messages=[...]` replaces the one user message made of `text`.
        payload = {"model": alias, "messages": [{"role": "user", "content": text}], **body}
        headers = body.pop("_headers", None)
        payload.pop("_headers", None)
        return await self.client.post("/v1/chat/completions", json=payload, headers=headers)

    async def span(self, response: httpx.Response) -> Any:
        """The recorded span of a gateway response, answered or failed (both name it)."""
        await self.runtime.gateway.drain()
        assert self.runtime.writer.flush()
        with self.runtime.db.session() as session:
            project_id = identity.get_project_by_name_or_raise(session, name="default").id
            trace_id = response.headers["x-llmdeck-trace-id"]
            trace = tracing.get_trace_or_raise(session, project_id=project_id, trace_id=trace_id)
        return trace.spans[0]


def settings_for_tests(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        master_key=MASTER,
        gateway_backoff_base=0.01,
        gateway_backoff_max=0.05,
        trace_flush_interval=0.05,
    )
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[Harness]:
    """llmdeck in this process, driven through an ASGI transport."""
    app = create_app(settings_for_tests(**overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://llmdeck",
            headers={"Authorization": f"Bearer {MASTER}"},
            timeout=60,
        ) as client:
            yield Harness(app, client)


def sse(response: httpx.Response) -> list[Any]:
    """The server-sent events of a response: parsed JSON, or the string "[DONE]"."""
    events = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def streamed_text(events: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", [])
    )
