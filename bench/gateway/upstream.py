"""A fast OpenAI-compatible upstream for the gateway benchmark: raw asyncio, fixed answers.

`python -m bench.gateway.upstream PORT [DELAY_MS]` serves POST /v1/chat/completions on
loopback with keep-alive; a body with `"stream": true` gets a short server-sent event stream.
With DELAY_MS each answer is sent that long after its request, like a model that takes time
to answer, without using any CPU meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import sys

ANSWER = json.dumps(
    {
        "id": "bench-1",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
).encode()
PLAIN = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(ANSWER)).encode()
    + b"\r\n\r\n"
    + ANSWER
)


def _event(data: dict | str) -> bytes:
    payload = (data if isinstance(data, str) else json.dumps(data)).encode()
    line = b"data: " + payload + b"\n\n"
    return f"{len(line):x}\r\n".encode() + line + b"\r\n"


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "bench-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


STREAM = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + _event(_chunk({"role": "assistant", "content": ""}))
    + b"".join(_event(_chunk({"content": w})) for w in ("Hello ", "from ", "the ", "upstream."))
    + _event(_chunk({}, "stop"))
    + _event(
        {
            "id": "bench-1",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
        }
    )
    + _event("[DONE]")
    + b"0\r\n\r\n"
)


class Upstream(asyncio.Protocol):
    delay = 0.0  # seconds before each answer

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            streamed = b'"stream":true' in body.replace(b" ", b"")
            answer = STREAM if streamed else PLAIN
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self._send, answer)
            else:
                self.transport.write(answer)

    def _send(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def _precise_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire within microseconds of their time.

    uvloop's (libuv's) timers and epoll's timeouts count whole milliseconds: answers due
    within the same millisecond go out together, and over a run the closed-loop clients
    gather into bursts that measure the burst, not the gateway. select() takes its
    timeout in microseconds.
    """
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


if __name__ == "__main__":
    if len(sys.argv) > 2:
        Upstream.delay = float(sys.argv[2]) / 1000
        with asyncio.Runner(loop_factory=_precise_loop) as runner:
            runner.run(serve(int(sys.argv[1])))
    else:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(serve(int(sys.argv[1])))
