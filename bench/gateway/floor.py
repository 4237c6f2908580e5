"""The least a Python proxy can add: raw asyncio on uvloop, no HTTP library, no checks.

`python -m bench.gateway.floor PORT FAST_PORT MODEL_LIKE_PORT` forwards each POST to the
fast upstream, or to the model-like one when the body names `bench-model-like`, and sends
the answer back. It parses only what bench/gateway/upstream.py answers (Content-Length
bodies): a reference for the latency tables, not a gateway.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

MODEL_LIKE = b'"bench-model-like"'


def _split(buffer: bytes) -> tuple[bytes, bytes] | None:
    """(body, rest) of the first whole message in `buffer`, or None while it is partial."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].lower()
    at = head.find(b"content-length:")
    length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
    if len(buffer) < end + 4 + length:
        return None
    return buffer[end + 4 : end + 4 + length], buffer[end + 4 + length :]


class _Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if (message := _split(self.buffer)) is not None and self.waiter is not None:
            body, self.buffer = message
            self.waiter.set_result(body)
            self.waiter = None


class _Client(asyncio.Protocol):
    def __init__(self, upstreams: dict[bool, int], idle: dict[int, list[_Upstream]]) -> None:
        self.upstreams = upstreams
        self.idle = idle
        self.buffer = b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if (message := _split(self.buffer)) is not None:
            body, self.buffer = message
            asyncio.ensure_future(self._forward(body))

    async def _forward(self, body: bytes) -> None:
        port = self.upstreams[MODEL_LIKE in body]
        idle = self.idle[port]
        if idle:
            upstream = idle.pop()
        else:
            loop = asyncio.get_running_loop()
            _, upstream = await loop.create_connection(_Upstream, "127.0.0.1", port)
        upstream.waiter = asyncio.get_running_loop().create_future()
        upstream.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = await upstream.waiter
        idle.append(upstream)
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(answer) + answer
        )


async def serve(port: int, fast: int, model_like: int) -> None:
    upstreams = {False: fast, True: model_like}
    idle: dict[int, list[_Upstream]] = {fast: [], model_like: []}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Client(upstreams, idle), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(*(int(arg) for arg in sys.argv[1:4])))
