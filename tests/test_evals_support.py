"""Shared helpers of the prompt and evaluation tests: an echoing upstream, a registered model."""

from __future__ import annotations

import time
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse

from tests.upstream import ScriptedUpstream


class EchoUpstream(ScriptedUpstream):
    """Answers each chat with its last user message (after `prefix`), deterministically."""

    prefix = ""

    async def chat(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        self.hits += 1
        if self.script:
            return await super().chat(request)
        user = [m["content"] for m in body["messages"] if m["role"] == "user"]
        text = self.prefix + (user[-1] if user else "")
        words = len(text.split())
        return JSONResponse(
            {
                "id": "echo",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": words,
                    "total_tokens": 10 + words,
                },
            }
        )


def echo_upstream() -> Iterator[EchoUpstream]:
    from tests.conftest import free_port

    server = EchoUpstream()
    server.start(free_port())
    yield server
    server.stop()


async def add_model(client, alias: str, base_url: str, **fields) -> None:
    response = await client.post(
        "/api/models",
        json={
            "alias": alias,
            "provider": "openai",
            "upstream_name": "echo-model",
            "base_url": base_url,
            "input_price_per_mtok": 1.0,
            "output_price_per_mtok": 2.0,
            **fields,
        },
    )
    assert response.status_code == 201, response.text
