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
