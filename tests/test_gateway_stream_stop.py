"""A client that stops reading a stream is no server error: the gateway records what it sent.

On every way a stream reaches a client: the official `openai` client against `llmdeck up`
(its requests go through uvicorn's own protocol and the ASGI app), raw HTTP on `llmdeck up`'s
own protocol (gateway/protocol.py), and the ASGI app driven in-process as other servers
drive it (a disconnect cancels the response, ASGI spec 2.3; or sending fails, spec 2.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from starlette.requests import ClientDisconnect

from tests.conftest import LiveServer
from tests.live_server import serving
from tests.test_gateway_protocol import Wire
from tests.test_gateway_support import MASTER, running, scripted_upstream
from tests.upstream import ScriptedUpstream

# The upstream sends two words, then waits for ever: the client stops there.
TWO_WORDS_THEN_NOTHING = {"kind": "stall", "after": 2}
PARTIAL = "Hello from "


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    yield from scripted_upstream("Hello from upstream.")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream
) -> Iterator[LiveServer]:
    model = {
        "alias": "up",
        "upstream_name": "upstream-model",
        "base_url": upstream.url,
        "input_price_per_mtok": 1000.0,
        "output_price_per_mtok": 2000.0,
    }
    with serving(tmp_path_factory.mktemp("stream-stop") / "home", model) as live:
        yield live


@pytest.fixture(autouse=True)
def scripted(upstream: ScriptedUpstream) -> None:
    upstream.script.clear()
    upstream.default = {"kind": "ok", "text": "Hello from upstream."}


def _span(server: LiveServer, trace_id: str) -> dict[str, Any]:
    with server.client() as http:
        for _ in range(100):
            found = http.get(f"/api/traces/{trace_id}")
            if found.status_code == 200:
                return found.json()["spans"][0]
            time.sleep(0.1)
    raise AssertionError(f"trace {trace_id} was not recorded")


def _summary(server: LiveServer) -> dict[str, Any]:
    with server.client() as http:
        return http.get("/api/monitoring/summary", params={"source": "all"}).json()


def _wait_abandoned(upstream: ScriptedUpstream, before: int) -> None:
    deadline = time.monotonic() + 10
    while upstream.abandoned == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.abandoned == before + 1  # the upstream call was stopped too


def assert_stopped_by_client(span: dict[str, Any], output: str = PARTIAL) -> None:
    """What the trace shows for a stream the client left after `output`."""
    assert span["status"] == "ok" and span["error"] is None
    assert span["output"] == output
    attributes = span["attributes"]
    assert attributes["finish_reason"] == "client_closed"
    assert attributes["stopped_by_client"] is True
    # The upstream's usage comes with its last chunk, which never came: estimated, and said so.
    assert attributes["tokens_estimated"] is True
    assert span["input_tokens"] > 0
    assert span["output_tokens"] >= 2  # at least a token a word streamed
    assert "Cancelled" not in json.dumps(span) and "GeneratorExit" not in json.dumps(span)


def test_openai_client_closing_a_stream_after_two_chunks(
    server: LiveServer, upstream: ScriptedUpstream
) -> None:
    upstream.script.append(TWO_WORDS_THEN_NOTHING)
    before, abandoned = _summary(server), upstream.abandoned
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.master_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="up", messages=[{"role": "user", "content": "Hi"}], max_tokens=20, stream=True
    )
    trace_id = raw.headers["x-llmdeck-trace-id"]
    stream = raw.parse()
    received = []
    for i, chunk in enumerate(stream):
        received.append(chunk.choices[0].delta.content or "")
        if i == 2:  # the role, "Hello ", "from "
            break
    stream.close()
    assert "".join(received) == PARTIAL
    _wait_abandoned(upstream, abandoned)

    span = _span(server, trace_id)
    assert_stopped_by_client(span)
    assert span["cost"] > 0  # the tokens spent are paid for
    after = _summary(server)
    assert after["requests"] == before["requests"] + 1
    assert after["errors"] == before["errors"]  # no error in the error rate or alerts


def test_raw_client_leaving_a_stream_on_llmdecks_own_protocol(
    server: LiveServer, upstream: ScriptedUpstream
) -> None:
    upstream.script.append(TWO_WORDS_THEN_NOTHING)
    abandoned = upstream.abandoned
    wire = Wire(server)  # no Connection header: the request is answered by protocol.py
    wire.send(wire.chat(stream=True, max_tokens=20))
    while b"from" not in wire.buffer:
        wire._fill()
    trace_id = wire.buffer.split(b"x-llmdeck-trace-id: ")[1].split(b"\r\n")[0].decode()
    wire.close()
    _wait_abandoned(upstream, abandoned)
    assert_stopped_by_client(_span(server, trace_id))


def test_a_stream_read_to_its_end_is_not_marked_stopped(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.master_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="up", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    span = _span(server, raw.headers["x-llmdeck-trace-id"])
    assert text == span["output"] == "Hello from upstream."
    assert span["attributes"]["finish_reason"] == "stop"
    assert "stopped_by_client" not in span["attributes"]
    assert "tokens_estimated" not in span["attributes"]


async def _drive(app, body: bytes, spec: str, stop_after: int) -> list[dict[str, Any]]:
    """Run one request through the ASGI app as a server would, the client leaving after
    `stop_after` body messages: the server then says so (`http.disconnect`) and, under
    ASGI 2.4, fails the next send."""
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if gone.is_set() and spec == "2.4":
            raise OSError("the client has gone")
        sent.append(message)
        if sum(m["type"] == "http.response.body" for m in sent) == stop_after:
            gone.set()

    headers = [
        (b"authorization", f"Bearer {MASTER}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    # ClientDisconnect: how starlette tells a 2.4 server that the client left.
    with contextlib.suppress(ClientDisconnect):
        await app(scope, receive, send)
    return sent


LONG = " ".join(f"w{i}" for i in range(200))


@pytest.mark.parametrize(
    ("spec", "script", "partial"),
    [
        # A 2.3 server cancels the response once the client has gone, even while the
        # upstream is silent.
        ("2.3", TWO_WORDS_THEN_NOTHING, PARTIAL),
        # A 2.4 server learns it only when sending the next piece fails: the piece read
        # for it is part of what was generated.
        ("2.4", {"kind": "ok", "text": LONG}, "w0 w1 w2 "),
    ],
    ids=["asgi-2.3", "asgi-2.4"],
)
def test_asgi_app_records_a_client_that_left(
    upstream: ScriptedUpstream, spec: str, script: dict, partial: str
) -> None:
    upstream.script.append(script)
    abandoned = upstream.abandoned

    async def scenario() -> None:
        async with running() as gw:
            await gw.put_route("r", [("a", upstream.url)])
            body = {"model": "r", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
            # The role and two words reach the client, which then leaves.
            sent = await _drive(gw.app, json.dumps(body).encode(), spec, stop_after=3)
            trace_id = dict(sent[0]["headers"])[b"x-llmdeck-trace-id"].decode()
            deadline = time.monotonic() + 10
            while upstream.abandoned == abandoned and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

            class Answer:
                headers = {"x-llmdeck-trace-id": trace_id}

            span = await gw.span(Answer)
            assert_stopped_by_client(
                {
                    "status": span.status,
                    "error": span.error,
                    "output": span.output,
                    "attributes": span.attributes,
                    "input_tokens": span.input_tokens,
                    "output_tokens": span.output_tokens,
                },
                partial,
            )

    asyncio.run(scenario())
    assert upstream.abandoned == abandoned + 1
