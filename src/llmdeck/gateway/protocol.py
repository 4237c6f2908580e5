"""The HTTP/1.1 protocol `llmdeck up` serves with: gateway calls are answered off the socket.

Through uvicorn and ASGI a gateway call paid for building a scope, an ASGI task with its
message events, the response as two ASGI messages checked header by header, and two
socket writes (head, then body). Here a connection's requests are read directly while
they are plain `POST /v1/chat/completions` or `/v1/embeddings` requests (HTTP/1.1,
Content-Length body, nothing unusual), answered by gateway/fastpath.py, and written in
one piece: a call took 12-42% less of the server's CPU (interleaved runs under
`bench/gateway` load: 965 -> 747 us per call at concurrency 64 on one worker, 1,280 ->
743 us one at a time). The first request that is anything else (the console, the API, a
chunked body, `Expect`, a `Connection` header other than keep-alive, a malformed head)
hands the connection over to uvicorn's own protocol, unread, for good: uvicorn stays the
one judge of everything but the two hot paths.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.responses import Response, StreamingResponse
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from llmdeck.core import timeouts
from llmdeck.gateway import fastpath

_REQUEST_LINES = {
    f"POST {path} HTTP/1.1".encode(): path for path in (fastpath.CHAT, fastpath.EMBEDDINGS)
}
# Headers that change how a request must be read or answered: uvicorn handles those
# (and a Connection header other than keep-alive, below).
_NOT_HERE = {b"transfer-encoding", b"expect", b"upgrade"}
# A head that has not ended by this size is not a gateway call's.
_MAX_HEAD = 64 * 1024

log = logging.getLogger(__name__)


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with gateway calls read and answered here."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The lifespan's state has the runtime once the app has started.
        self._runtime = self.app_state.get("runtime")
        self._native = self._runtime is not None
        self._pending = bytearray()
        self._answering: asyncio.Task | None = None
        self._streaming = False
        self._close_after = False

    # Reading.

    def data_received(self, data: bytes) -> None:
        if not self._native:
            super().data_received(data)
            return
        self._unset_keepalive_if_required()
        self._pending += data
        if self._answering is None:
            self._take_next()
        elif len(self._pending) > fastpath.MAX_BODY_BYTES + _MAX_HEAD:
            self.flow.pause_reading()  # pipelined requests wait for this answer

    def _take_next(self) -> None:
        pending = self._pending
        end = pending.find(b"\r\n\r\n")
        if end < 0:
            if len(pending) > _MAX_HEAD:
                self._hand_over()
            return
        request = _read_head(bytes(pending[:end]))
        if request is None:
            self._hand_over()
            return
        path, headers, length = request
        start = end + 4
        if len(pending) - start < length:
            return  # the body is still arriving
        body = bytes(pending[start : start + length])
        del pending[: start + length]
        self._answering = task = self.loop.create_task(self._answer(path, headers, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _hand_over(self) -> None:
        """From this request on, the connection is uvicorn's."""
        self._native = False
        data, self._pending = bytes(self._pending), bytearray()
        self.flow.resume_reading()
        super().data_received(data)

    # Answering.

    async def _answer(self, path: str, headers: dict[str, str], body: bytes) -> None:
        try:
            response = await fastpath.respond(self._runtime, path, headers, body)
            if self.transport.is_closing():
                # The client has gone (a whole answer's call is recorded all the same).
                # A stream is closed, and its upstream call with it: a generator's clean-up
                # runs only once it has begun, so it is begun first.
                if isinstance(response, StreamingResponse):
                    events = response.body_iterator
                    await anext(events, None)  # type: ignore[call-overload]
                    await events.aclose()  # type: ignore[attr-defined]
                return
            if isinstance(response, StreamingResponse):
                self._streaming = True
                await self._stream(response)
            else:
                self.transport.write(self._head(response) + response.body)
            if response.background is not None:
                await response.background()
        except Exception:
            log.exception("the gateway failed while answering %s", path)
            self.transport.close()  # the answer is cut short: the client must not wait for more
        finally:
            self._answering = None
            self._streaming = False
            self._answered()

    async def _stream(self, response: StreamingResponse) -> None:
        write = self.transport.write
        write(self._head(response, [(b"transfer-encoding", b"chunked")]))
        events = response.body_iterator
        try:
            async for event in events:
                chunk = event.encode() if isinstance(event, str) else event
                if chunk:
                    write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    if self.flow.write_paused:
                        await self.flow.drain()
            write(b"0\r\n\r\n")
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    def _head(self, response: Response, more: list[tuple[bytes, bytes]] = ()) -> bytes:
        parts = [STATUS_LINE[response.status_code]]
        for name, value in (*self.server_state.default_headers, *response.raw_headers, *more):
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _answered(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self._close_after:
            self.transport.close()
            return
        self.flow.resume_reading()
        if self._pending:
            self._take_next()  # a pipelined request
        if self._native and self._answering is None:
            # A deadline in the shared heap, not a loop timer per request (core/timeouts.py).
            self.timeout_keep_alive_task = timeouts.call_later(  # type: ignore[assignment]
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    # The connection's end.

    def connection_lost(self, exc: Exception | None) -> None:
        # A stream has no one left to read it: stop it now, which closes its upstream call
        # (a plain answer is left to finish, so that the call is recorded whole).
        if self._streaming and self._answering is not None:
            self._answering.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if not self._native:
            super().shutdown()
        elif self._answering is None:
            self.transport.close()
        else:
            self._close_after = True


def _read_head(head: bytes) -> tuple[str, dict[str, str], int] | None:
    """The path, wanted headers and body length of a request answered here; None for any
    other request, which uvicorn reads instead."""
    # Bare CR or LF inside a head is for uvicorn's parser to judge (header smuggling).
    lines = head.count(b"\r\n")
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        return None
    request_line, *fields = head.split(b"\r\n")
    path = _REQUEST_LINES.get(request_line)
    if path is None:
        return None
    headers: dict[str, str] = {}
    length = None
    for field in fields:
        name, colon, value = field.partition(b":")
        name = name.lower()
        if not colon or not name or name != name.strip() or name in _NOT_HERE:
            return None
        if name == b"connection":
            # HTTP/1.1's default, and what httpx (so the openai client) always sends;
            # anything else (close, upgrade) changes the connection: uvicorn's to handle.
            if value.strip().lower() != b"keep-alive":
                return None
            continue
        if name == b"content-length":
            value = value.strip()
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name in fastpath.WANTED:
            headers[fastpath.WANTED[name]] = value.strip().decode("latin-1")
    if length is None or length > fastpath.MAX_BODY_BYTES:
        return None  # no body, or too large: answered through ASGI, with its error
    return path, headers, length
