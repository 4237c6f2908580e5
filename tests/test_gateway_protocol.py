"""`llmdeck up`'s HTTP protocol: gateway calls answered off the socket, the rest by uvicorn.

Raw sockets against a real server, so that what is on the wire is what is tested:
pipelining, split reads, hand-over to uvicorn mid-connection, and the requests only
uvicorn reads (chunked bodies, `Expect`, `Connection: close`, malformed heads).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer
from tests.live_server import serving
from tests.test_gateway_support import scripted_upstream
from tests.upstream import ScriptedUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    yield from scripted_upstream("Hello from upstream.")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream
) -> Iterator[LiveServer]:
    with serving(
        tmp_path_factory.mktemp("protocol") / "home",
        {"alias": "up", "upstream_name": "upstream-model", "base_url": upstream.url},
        {
            "alias": "up-embed",
            "kind": "embedding",
            "upstream_name": "upstream-embedder",
            "base_url": upstream.url,
        },
    ) as live:
        yield live


@pytest.fixture(autouse=True)
def answers_normally(upstream: ScriptedUpstream) -> None:
    upstream.script.clear()
    upstream.default = {"kind": "ok", "text": "Hello from upstream."}


class Wire:
    """A raw HTTP/1.1 connection: bytes out, whole responses in."""

    def __init__(self, server: LiveServer):
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.key = server.master_key
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def chat(self, extra: str = "", **body) -> bytes:
        """A chat request's bytes; `extra` is more header lines."""
        body = {"model": "up", "messages": [{"role": "user", "content": "Hi"}], **body}
        return self.post("/v1/chat/completions", body, extra)

    def post(self, path: str, body: dict, extra: str = "") -> bytes:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: llmdeck\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n{extra}\r\n"
        )
        return head.encode() + payload

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *fields = head.decode("latin-1").split("\r\n")
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            assert name.lower() not in headers, f"{name} sent twice"
            headers[name.lower()] = value.strip()
        if status_line.split()[1].startswith("1"):
            body = b""  # an interim response: no body
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line(), 16):
                body += self._take(size)
                assert self._line() == b""
            assert self._line() == b""
        else:
            body = self._take(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """True once the server has closed the connection (after what it had sent)."""
        try:
            self._fill()
        except (ConnectionError, TimeoutError):
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(server: LiveServer) -> Iterator[Wire]:
    conn = Wire(server)
    yield conn
    conn.close()


def _span(server: LiveServer, trace_id: str) -> dict:
    """The span of a trace, once the writer has stored it."""
    with server.client() as http:
        for _ in range(100):
            found = http.get(f"/api/traces/{trace_id}")
            if found.status_code == 200:
                return found.json()["spans"][0]
            time.sleep(0.1)
    raise AssertionError(f"trace {trace_id} was not recorded")


def _answer(body: bytes) -> str:
    return json.loads(body)["choices"][0]["message"]["content"]


def test_pipelined_and_split_calls_are_answered_in_order(wire: Wire) -> None:
    # Three calls in one write, then one split mid-head and one split mid-body.
    wire.send(wire.chat() * 3)
    fourth, fifth = wire.chat(), wire.chat()
    wire.send(fourth[:20])
    time.sleep(0.05)
    wire.send(fourth[20:] + fifth[:-5])
    time.sleep(0.05)
    wire.send(fifth[-5:])
    traces = set()
    for _ in range(5):
        status, headers, body = wire.response()
        assert status == 200, body
        assert _answer(body) == "Hello from upstream."
        assert headers["content-type"] == "application/json"
        assert "date" in headers
        traces.add(headers["x-llmdeck-trace-id"])
    assert len(traces) == 5


def test_a_connection_is_handed_to_uvicorn_at_its_first_other_request(wire: Wire) -> None:
    wire.send(wire.chat())
    assert wire.response()[0] == 200
    wire.send(b"GET /api/health HTTP/1.1\r\nHost: llmdeck\r\n\r\n")
    status, _, body = wire.response()
    assert status == 200 and json.loads(body)["status"] == "ok"
    # Gateway calls on the same connection now go through uvicorn and the ASGI app.
    wire.send(wire.chat() + wire.post("/v1/embeddings", {"model": "up-embed", "input": ["a", "b"]}))
    status, _, body = wire.response()
    assert status == 200 and _answer(body) == "Hello from upstream."
    status, _, body = wire.response()
    assert status == 200 and len(json.loads(body)["data"]) == 2


def test_errors_are_answered_on_the_connection_that_stays_open(
    wire: Wire, server: LiveServer
) -> None:
    not_json = wire.chat().replace(b'"messages"', b'"messages!')  # the same length
    wire.send(not_json + wire.chat(model="no-such-model") + wire.chat())
    status, headers, body = wire.response()
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert "x-llmdeck-trace-id" not in headers  # refused before it became a call
    status, headers, body = wire.response()
    assert status == 404 and "no-such-model" in json.loads(body)["error"]["message"]
    # A call that failed in the pipeline names its trace, as an answered one does.
    span = _span(server, headers["x-llmdeck-trace-id"])
    assert span["status"] == "error" and "no-such-model" in span["error"]
    assert wire.response()[0] == 200


@pytest.mark.parametrize(
    "extra",
    [
        "Expect: 100-continue\r\n",
        "Connection: close\r\n",
        "X-Folded: a\r\n b\r\n",
    ],
    ids=["expect", "connection-close", "folded-header"],
)
def test_unusual_heads_are_left_to_uvicorn(wire: Wire, extra: str) -> None:
    wire.send(wire.chat(extra=extra))
    status, _, body = wire.response()
    if extra.startswith("Expect"):
        assert status == 100
        status, _, body = wire.response()
    if extra.startswith("X-Folded"):
        assert status == 400  # uvicorn's parser refuses obsolete line folding
        return
    assert status == 200 and _answer(body) == "Hello from upstream."
    if extra.startswith("Connection"):
        assert wire.closed()


def test_the_official_clients_requests_take_the_fast_path() -> None:
    # httpx, and so the openai client, sends `Connection: keep-alive` on every request:
    # such heads were handed to uvicorn, so real clients never had the fast path.
    from openai import OpenAI

    from llmdeck.gateway.protocol import _read_head

    client = OpenAI(base_url="http://llmdeck/v1", api_key="ldk-test")
    request = client._client.build_request(  # its HTTP client's own headers
        "POST",
        "http://llmdeck/v1/chat/completions",
        json={"model": "up", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": "Bearer ldk-test"},
    )
    assert request.headers["connection"] == "keep-alive"
    lines = [f"POST {request.url.raw_path.decode()} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers.multi_items()]
    path, headers, length = _read_head("\r\n".join(lines).encode())
    assert path == "/v1/chat/completions" and length == len(request.content)
    assert headers["authorization"] == "Bearer ldk-test"
    # Anything else in Connection changes the connection: still uvicorn's.
    for value in ("close", "Upgrade", "keep-alive, Upgrade"):
        assert _read_head("\r\n".join([*lines, f"Connection: {value}"]).encode()) is None


def test_keep_alive_requests_are_answered_on_one_connection(wire: Wire) -> None:
    for _ in range(3):
        wire.send(wire.chat(extra="Connection: keep-alive\r\n"))
        status, headers, body = wire.response()
        assert status == 200 and _answer(body) == "Hello from upstream."
        assert "connection" not in headers  # kept open, as HTTP/1.1 does by default


def test_a_chunked_request_body_is_read_by_uvicorn(wire: Wire) -> None:
    request = wire.chat()
    head, body = request.split(b"\r\n\r\n", 1)
    head = head.replace(f"Content-Length: {len(body)}".encode(), b"Transfer-Encoding: chunked")
    chunks = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    wire.send(head + b"\r\n\r\n" + chunks + b"0\r\n\r\n")
    status, _, answer = wire.response()
    assert status == 200 and _answer(answer) == "Hello from upstream."


def test_a_bare_line_feed_in_a_head_is_not_read_as_a_header_here(wire: Wire) -> None:
    # Read here, the line after the bare LF would be hidden inside X-A's value; uvicorn's
    # parser reads it as a header of its own (or refuses the request), never both ways.
    request = wire.chat(extra="X-A: 1\nAuthorization: Bearer ldk-not-a-key\r\n")
    wire.send(request)
    status, _, _ = wire.response()
    assert status in (400, 401)


def test_a_stream_is_sent_chunked_and_ends_with_done(server: LiveServer) -> None:
    with (
        server.client() as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "up", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    text = "".join(
        json.loads(e.removeprefix("data: "))["choices"][0]["delta"].get("content", "")
        for e in events[:-1]
    )
    assert text == "Hello from upstream."


def test_a_client_leaving_a_stream_stops_the_upstream_call(
    wire: Wire, server: LiveServer, upstream: ScriptedUpstream
) -> None:
    upstream.script.append({"kind": "stall", "after": 1})
    before = upstream.abandoned
    wire.send(wire.chat(stream=True))
    while b"Hello" not in wire.buffer:  # the first word has arrived; the upstream now stalls
        wire._fill()
    trace = wire.buffer.split(b"x-llmdeck-trace-id: ")[1].split(b"\r\n")[0].decode()
    wire.close()
    deadline = time.monotonic() + 10
    while upstream.abandoned == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.abandoned == before + 1
    span = _span(server, trace)
    # The client left: no error, what was sent is kept, and the finish reason says so.
    assert span["status"] == "ok" and span["output"] == "Hello "
    assert span["attributes"]["finish_reason"] == "client_closed"


def test_a_client_gone_before_its_stream_began_closes_the_upstream_call(
    wire: Wire, server: LiveServer, upstream: ScriptedUpstream
) -> None:
    # The upstream is slow to start (1 s) and then streams for about 2 s.
    upstream.script.append({"kind": "delay", "seconds": 1.0, "text": " ".join(["w"] * 400)})
    before = upstream.abandoned
    wire.send(wire.chat(stream=True))
    time.sleep(0.3)
    wire.close()
    deadline = time.monotonic() + 10
    while upstream.abandoned == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.abandoned == before + 1


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(wire: Wire) -> None:
    # uvicorn's default: 5 s idle. A call inside it restarts the wait (the earlier deadline
    # is cancelled): at 6 s from the first call the connection still answers.
    for pause in (0, 3, 3):
        time.sleep(pause)
        wire.send(wire.chat())
        assert wire.response()[0] == 200
    answered = time.monotonic()
    wire.sock.settimeout(15)
    assert wire.sock.recv(1) == b""  # closed by the server, nothing more sent
    assert 4.5 < time.monotonic() - answered < 8


def test_a_call_too_large_to_read_here_gets_the_gateways_error(wire: Wire) -> None:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: llmdeck\r\nAuthorization: Bearer "
        f"{wire.key}\r\nContent-Type: application/json\r\nContent-Length: {17 * 2**20}\r\n\r\n"
    )
    wire.send(head.encode())
    status, _, body = wire.response()
    assert status == 400 and json.loads(body)["error"]["code"] == "request_too_large"


def test_shutdown_waits_for_a_call_in_flight(tmp_path, upstream: ScriptedUpstream) -> None:
    model = {"alias": "up", "upstream_name": "m", "base_url": upstream.url}
    with serving(tmp_path / "home", model) as live:
        upstream.script.append({"kind": "delay", "seconds": 1.0})
        conn = Wire(live)
        conn.send(conn.chat())
        time.sleep(0.3)
        live.process.terminate()
        status, _, body = conn.response()
        assert status == 200 and _answer(body) == "Hello from upstream."
        assert conn.closed()  # and then the connection is closed, not kept alive
        conn.close()
        # uvicorn shuts down gracefully, then ends by the signal it was sent.
        assert live.process.wait(timeout=30) in (0, -15)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{live.url}/api/health", timeout=1)
