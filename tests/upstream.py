"""A scripted OpenAI-compatible upstream on loopback, for testing the `openai` provider.

Each request takes the next behaviour from `script` (or `default` when it is empty):
  {"kind": "ok", "text": "..."}            answer normally (streamed when asked)
  {"kind": "status", "code": 503, "headers": {...}}   fail with that HTTP status
  {"kind": "hang"}                         never send headers
  {"kind": "cut", "after": k}              stream k chunks, then drop the connection
  {"kind": "stall", "after": k}            stream k chunks, then send nothing more
  {"kind": "error_chunk"}                  stream an error event as the first chunk
  {"kind": "delay", "seconds": s, ...}     wait s seconds, then behave as "ok"
  {"kind": "tools", "calls": [{"id", "name", "arguments"}]}   answer with tool calls
A "status" may set "error_code" and "param" for its error body. An "ok" (or "delay")
answer may set "completion_tokens" to report that usage; asked for `logprobs`, it gives
one per word.
`hits` counts chat requests, `abandoned` the streams whose reader left before their end;
set `default` to change what every unscripted request gets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


class ScriptedUpstream:
    def __init__(self) -> None:
        self.script: deque[dict[str, Any]] = deque()
        self.default: dict[str, Any] = {"kind": "ok", "text": "Hello from upstream."}
        self.requests: list[dict[str, Any]] = []
        self.hits = 0
        self.abandoned = 0
        self.headers: list[dict[str, str]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            ]
        )
        self.server: uvicorn.Server | None = None
        self.url = ""

    def next(self) -> dict[str, Any]:
        return self.script.popleft() if self.script else self.default

    async def chat(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.hits += 1
        act = self.next()
        if act["kind"] == "delay":
            await asyncio.sleep(act["seconds"])
            act = {**act, "kind": "ok", "text": act.get("text", self.default.get("text", "ok"))}
        if act["kind"] == "hang":
            await asyncio.sleep(3600)
        if act["kind"] == "status":
            error = {"message": f"scripted {act['code']}", "type": "server_error"}
            error.update(code=act.get("error_code"), param=act.get("param"))
            return JSONResponse(
                {"error": error},
                status_code=act["code"],
                headers=act.get("headers"),
            )
        text = act.get("text", "Hello from upstream.")
        words = [w + " " for w in text.split(" ")]
        words[-1] = words[-1].rstrip()
        completion = act.get("completion_tokens", len(words))
        usage = {
            "prompt_tokens": 11,
            "completion_tokens": completion,
            "total_tokens": 11 + completion,
        }
        calls = act.get("calls") if act["kind"] == "tools" else None
        tool_calls = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls or ()
        ]
        logprobs = None
        if body.get("logprobs"):
            logprobs = {
                "content": [{"token": w, "logprob": -0.5, "top_logprobs": []} for w in words]
            }
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if calls else text}
            if calls:
                message["tool_calls"] = tool_calls
            return JSONResponse(
                {
                    "id": "up-1",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": logprobs,
                            "finish_reason": "tool_calls" if calls else "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        async def events():
            def chunk(delta, finish=None, logprobs=None):
                return (
                    "data: "
                    + json.dumps(
                        {
                            "id": "up-1",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": delta,
                                    "logprobs": logprobs,
                                    "finish_reason": finish,
                                }
                            ],
                        }
                    )
                    + "\n\n"
                )

            if act["kind"] == "error_chunk":
                yield 'data: {"error": {"message": "scripted failure"}}\n\n'
                return
            yield chunk({"role": "assistant", "content": ""})
            if calls:
                # As OpenAI streams them: id and name first, then the arguments in pieces.
                for i, call in enumerate(tool_calls):
                    head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                    yield chunk({"tool_calls": [{"index": i, **head}]})
                    arguments = call["function"]["arguments"]
                    for piece in (
                        arguments[: len(arguments) // 2],
                        arguments[len(arguments) // 2 :],
                    ):
                        yield chunk(
                            {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                        )
                yield chunk({}, "tool_calls")
                yield "data: [DONE]\n\n"
                return
            for i, word in enumerate(words):
                if act["kind"] == "cut" and i == act["after"]:
                    raise ConnectionResetError("scripted cut")
                if act["kind"] == "stall" and i == act["after"]:
                    await asyncio.sleep(3600)
                yield chunk(
                    {"content": word}, logprobs=logprobs and {"content": [logprobs["content"][i]]}
                )
                await asyncio.sleep(0.005)
            yield chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                yield "data: " + json.dumps({"id": "up-1", "choices": [], "usage": usage}) + "\n\n"
            yield "data: [DONE]\n\n"

        async def watched():
            try:
                async for event in events():
                    yield event
            except (asyncio.CancelledError, GeneratorExit):
                self.abandoned += 1  # the reader left before the end
                raise

        return StreamingResponse(watched(), media_type="text/event-stream")

    async def embeddings(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, float(i)]}
                    for i in range(len(inputs))
                ],
                "model": body["model"],
                "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
            }
        )

    def start(self, port: int) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="error")
        self.server = uvicorn.Server(config)
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted upstream did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
