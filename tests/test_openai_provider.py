"""The `openai` provider: llmdeck relaying to a scripted OpenAI-compatible upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.settings import get_settings


@pytest.fixture
def gateway(
    upstream, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, openai.OpenAI]]:
    """The app in-process with a model `up` served by the scripted upstream."""
    monkeypatch.setenv("LLMDECK_MASTER_KEY", "ldk-master-test")
    monkeypatch.setenv("LLMDECK_UPSTREAM_READ_TIMEOUT", "1")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as http:
        http.headers["Authorization"] = "Bearer ldk-master-test"
        created = http.post(
            "/api/models",
            json={
                "alias": "up",
                "upstream_name": "upstream-model",
                "base_url": upstream.url,
                "api_key": "sk-upstream-secret",
                "input_price_per_mtok": 3,
                "output_price_per_mtok": 6,
            },
        )
        assert created.status_code == 201, created.text
        assert "sk-upstream-secret" not in created.text
        client = openai.OpenAI(
            base_url="http://testserver/v1",
            api_key="ldk-master-test",
            http_client=http,
            max_retries=0,
        )
        yield http, client


def _span(http: TestClient, trace_id: str) -> dict:
    for _ in range(100):
        response = http.get(f"/api/traces/{trace_id}")
        if response.status_code == 200:
            return response.json()["spans"][0]
        time.sleep(0.05)
    raise AssertionError("trace not recorded")


def test_relays_a_completion_with_the_stored_key(gateway, upstream) -> None:
    http, client = gateway
    raw = client.chat.completions.with_raw_response.create(
        model="up",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.5,
        max_tokens=20,
        seed=7,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from upstream."
    assert completion.model == "up"
    sent = upstream.requests[-1]
    assert sent["model"] == "upstream-model"
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.5, 20, 7)
    assert upstream.headers[-1]["authorization"] == "Bearer sk-upstream-secret"
    span = _span(http, raw.headers["x-llmdeck-trace-id"])
    assert (span["provider"], span["input_tokens"], span["output_tokens"]) == ("openai", 11, 3)
    assert span["cost"] == pytest.approx((11 * 3 + 3 * 6) / 1e6)


def test_relays_a_stream_chunk_by_chunk(gateway, upstream) -> None:
    http, client = gateway
    upstream.default = {"kind": "ok", "text": "one two three four five"}
    stream = client.chat.completions.create(
        model="up",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert deltas == ["one ", "two ", "three ", "four ", "five"]
    assert chunks[-1].usage.completion_tokens == 5


def test_relays_embeddings(gateway, upstream) -> None:
    http, client = gateway
    http.post(
        "/api/models",
        json={
            "alias": "up-embed",
            "kind": "embedding",
            "upstream_name": "e",
            "base_url": upstream.url,
        },
    )
    result = client.embeddings.create(model="up-embed", input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in result.data] == [[0.1, 0.2, 0.0], [0.1, 0.2, 1.0]]
    assert "dimensions" not in upstream.requests[-1]
    client.embeddings.create(model="up-embed", input="a", dimensions=3)
    assert upstream.requests[-1]["dimensions"] == 3


def test_upstream_500_is_502(gateway, upstream) -> None:
    _, client = gateway
    upstream.default = {"kind": "status", "code": 500}
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="up", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as streamed:
        list(
            client.chat.completions.create(
                model="up", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    assert streamed.value.status_code == 502


def test_upstream_hang_is_504(gateway, upstream) -> None:
    http, client = gateway
    upstream.default = {"kind": "hang"}
    started = time.monotonic()
    raw = None
    with pytest.raises(openai.APIStatusError) as err:
        raw = client.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "hi"}]
        )
    assert raw is None and err.value.status_code == 504
    assert time.monotonic() - started < 30
    errors = http.get("/api/traces", params={"status": "error", "model": "up"}).json()["data"]
    for _ in range(50):
        if errors:
            break
        time.sleep(0.05)
        errors = http.get("/api/traces", params={"status": "error", "model": "up"}).json()["data"]
    assert errors


def test_the_keep_alive_pool_reuses_connections_for_streams_and_answers() -> None:
    """Streamed and plain answers in the lean client: chunked SSE parsed across odd chunk
    boundaries, and one connection serving every call (the stream is read to its end)."""
    import asyncio
    import json

    from llmdeck.providers.base import ChatRequest, Connection
    from llmdeck.providers.openai_compat import OpenAICompatibleProvider

    def event(data: str) -> bytes:
        return f"data: {data}\n\n".encode()

    chunks = [
        {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        for word in ("Hé", "llo ", "there")
    ]
    sse = b"".join(event(json.dumps(c, ensure_ascii=False)) for c in chunks)
    sse += event(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    sse += event(json.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}}))
    sse += event("[DONE]")
    # Chunk boundaries that cut lines, and any multi-byte character, in half.
    pieces = [sse[i : i + 7] for i in range(0, len(sse), 7)]
    streamed = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
    plain = json.dumps(
        {
            "choices": [{"message": {"content": "héllo"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1},
        }
    ).encode()
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            if json.loads(body).get("stream"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n" + streamed
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(plain)}\r\n\r\n".encode()
                    + plain
                )
            await writer.drain()

    async def scenario() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        provider = OpenAICompatibleProvider(
            Connection(base_url=f"http://127.0.0.1:{port}/v1"), get_settings()
        )
        request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
        for _ in range(3):
            parts = [chunk async for chunk in provider.stream_chat(request)]
            assert "".join(c.delta for c in parts) == "Héllo there"
            assert (parts[-1].finish_reason, parts[-1].output_tokens) == ("stop", 3)
            answer = await provider.chat(request)
            assert (answer.content, answer.input_tokens) == ("héllo", 2)
        await provider.aclose()
        server.close()
        assert connections == 1

    asyncio.run(scenario())


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALLS = [{"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}]


def test_tool_calls_and_other_openai_fields_go_through(gateway, upstream) -> None:
    """An app that only changed its base_url keeps function calling, JSON mode, logprobs,
    penalties and a serving engine's own options; llmdeck's own fields stay here."""
    http, client = gateway
    upstream.default = {"kind": "tools", "calls": CALLS}
    raw = client.chat.completions.with_raw_response.create(
        model="up",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        tool_choice="required",
        response_format={"type": "json_object"},
        presence_penalty=0.5,
        logit_bias={"50256": -100},
        user="end-user-7",
        extra_body={"top_k": 5, "cache": False},
    )
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}')
    ]
    sent = upstream.requests[-1]
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "required"
    assert sent["response_format"] == {"type": "json_object"}
    assert (sent["presence_penalty"], sent["logit_bias"]) == (0.5, {"50256": -100})
    assert (sent["user"], sent["top_k"]) == ("end-user-7", 5)
    assert "cache" not in sent
    span = _span(http, raw.headers["x-llmdeck-trace-id"])
    assert span["attributes"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert span["attributes"]["request"]["tool_choice"] == "required"

    # The tool's answer goes back the same way.
    upstream.default = {"kind": "ok", "text": "It is sunny."}
    follow_up = client.chat.completions.create(
        model="up",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": choice.message.model_dump()["tool_calls"],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
        ],
        tools=TOOLS,
    )
    assert follow_up.choices[0].message.content == "It is sunny."
    assert upstream.requests[-1]["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"sky": "clear"}',
    }


def test_streamed_tool_calls_arrive_in_pieces_and_are_recorded_whole(gateway, upstream) -> None:
    http, client = gateway
    upstream.default = {"kind": "tools", "calls": CALLS}
    raw = client.chat.completions.with_raw_response.create(
        model="up",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        stream=True,
    )
    chunks = list(raw.parse())
    fragments = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert fragments[0].id == "call_1" and fragments[0].function.name == "get_weather"
    assert "".join(f.function.arguments or "" for f in fragments) == '{"city": "Paris"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    span = _span(http, raw.headers["x-llmdeck-trace-id"])
    assert span["attributes"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]


def test_logprobs_come_back_streamed_or_not(gateway, upstream) -> None:
    _, client = gateway
    upstream.default = {"kind": "ok", "text": "one two"}
    completion = client.chat.completions.create(
        model="up", messages=[{"role": "user", "content": "count"}], logprobs=True
    )
    assert [t.token for t in completion.choices[0].logprobs.content] == ["one ", "two"]
    stream = client.chat.completions.create(
        model="up", messages=[{"role": "user", "content": "count"}], logprobs=True, stream=True
    )
    tokens = [
        t.token
        for c in stream
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content
    ]
    assert tokens == ["one ", "two"]


def test_an_upstream_refusal_keeps_its_code_and_param(gateway, upstream) -> None:
    _, client = gateway
    upstream.default = {
        "kind": "status",
        "code": 400,
        "error_code": "context_length_exceeded",
        "param": "messages",
    }
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="up", messages=[{"role": "user", "content": "hi"}])
    assert (err.value.code, err.value.param) == ("context_length_exceeded", "messages")


def test_models_lists_catalog_models_and_routes(gateway, upstream) -> None:
    http, client = gateway
    route = {"deployments": [{"name": "a", "upstream": "m", "base_url": upstream.url}]}
    assert http.put("/api/gateway/routes/team/fast", json=route).status_code == 200
    ids = [m.id for m in client.models.list()]
    assert {"up", "smollm2-135m", "minilm-l6", "team/fast"} <= set(ids)
    assert ids == sorted(ids)
    assert client.models.retrieve("team/fast").owned_by == "llmdeck"
    assert client.models.retrieve("up").owned_by == "openai"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("nope")
    assert err.value.code == "model_not_found"
