"""The official `openai` client against a real `llmdeck up` process with the bundled models."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project_key(live_server: LiveServer) -> str:
    """A builder key of a fresh project; the bundled chat model gets prices so cost shows."""
    admin = live_server.client()
    assert admin.post("/api/projects", json={"name": "e2e"}).status_code == 201
    prices = {"input_price_per_mtok": 1000.0, "output_price_per_mtok": 2000.0}
    assert admin.patch("/api/models/smollm2-135m", json=prices).status_code == 200
    created = live_server.client(project="e2e").post("/api/keys", json={"name": "tests"})
    assert created.status_code == 201
    return created.json()["key"]


def _client(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)


def _trace(server: LiveServer, key: str, trace_id: str) -> dict:
    """The trace, once the batching writer has stored it."""
    with server.client(key) as api:
        for _ in range(100):
            response = api.get(f"/api/traces/{trace_id}")
            if response.status_code == 200:
                return response.json()
            time.sleep(0.05)
    raise AssertionError(f"trace {trace_id} never appeared")


def test_chat_completion_with_bundled_model(live_server: LiveServer, project_key: str) -> None:
    client = _client(live_server, project_key)
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    completion = raw.parse()
    assert "Paris" in completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 10 and 0 < completion.usage.completion_tokens <= 12
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    span = _trace(live_server, project_key, raw.headers["x-llmdeck-trace-id"])["spans"][0]
    assert span["model"] == "smollm2-135m" and span["provider"] == "local"
    assert span["status"] == "ok" and span["output"] == completion.choices[0].message.content
    assert span["input"][-1]["content"] == "What is the capital of France?"
    assert span["input_tokens"] == completion.usage.prompt_tokens
    assert span["output_tokens"] == completion.usage.completion_tokens
    expected = (span["input_tokens"] * 1000 + span["output_tokens"] * 2000) / 1e6
    assert span["cost"] == pytest.approx(expected)
    assert span["latency_ms"] > 0


def test_greedy_decoding_is_deterministic(live_server: LiveServer, project_key: str) -> None:
    client = _client(live_server, project_key)
    answers = {
        client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
        )
        .choices[0]
        .message.content
        for _ in range(2)
    }
    assert len(answers) == 1


def test_streamed_chat_with_usage(live_server: LiveServer, project_key: str) -> None:
    client = _client(live_server, project_key)
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    deltas = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 3 and text.strip()
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 16

    span = _trace(live_server, project_key, raw.headers["x-llmdeck-trace-id"])["spans"][0]
    assert span["output"] == text
    assert span["output_tokens"] == usage.completion_tokens
    assert 0 < span["ttft_ms"] < span["latency_ms"]
    assert span["attributes"]["stream"] is True


def test_stop_sequence_and_max_tokens(live_server: LiveServer, project_key: str) -> None:
    client = _client(live_server, project_key)
    free = (
        client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=12,
        )
        .choices[0]
        .message.content
    )
    cut = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        stop=["Paris"],
    )
    assert "Paris" in free
    assert cut.choices[0].message.content == free.split("Paris")[0]
    assert cut.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Tell me a long story."}],
        max_tokens=3,
    )
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"


def test_embeddings_of_a_string_and_a_list(live_server: LiveServer, project_key: str) -> None:
    client = _client(live_server, project_key)
    one = client.embeddings.create(model="minilm-l6", input="The cat sat on the mat.")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    many = client.embeddings.create(
        model="minilm-l6", input=["A cat sits on a mat.", "Stock markets fell sharply today."]
    )
    a, b = (d.embedding for d in many.data)
    c = one.data[0].embedding
    cos = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731 (normalised)
    assert cos(a, c) > cos(b, c) + 0.3
    assert many.usage.prompt_tokens > one.usage.prompt_tokens


def test_models_lists_what_the_project_may_use(live_server: LiveServer, project_key: str) -> None:
    ids = {m.id for m in _client(live_server, project_key).models.list()}
    assert {"smollm2-135m", "minilm-l6"} <= ids


def test_bad_and_revoked_keys_are_refused(live_server: LiveServer, project_key: str) -> None:
    with pytest.raises(openai.AuthenticationError) as bad:
        _client(live_server, "ldk-not-a-real-key").models.list()
    assert bad.value.status_code == 401
    assert bad.value.body["type"] == "authentication_error"

    key = live_server.client(project="e2e").post("/api/keys", json={"name": "short-lived"}).json()
    client = _client(live_server, key["key"])
    assert client.models.list().data
    assert live_server.client(project="e2e").delete(f"/api/keys/{key['id']}").status_code == 200
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "hi"}]
        )


def test_unknown_model_is_404(live_server: LiveServer, project_key: str) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        _client(live_server, project_key).chat.completions.create(
            model="gpt-unknown", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.body["code"] == "model_not_found" and err.value.body["param"] == "model"


def test_a_disabled_model_says_it_is_disabled(live_server: LiveServer, project_key: str) -> None:
    admin = live_server.client(project="e2e")
    model = {"alias": "e2e-off", "upstream_name": "m", "base_url": "http://127.0.0.1:9/v1"}
    assert admin.post("/api/models", json={**model, "project": "e2e"}).status_code == 201
    assert admin.patch("/api/models/e2e-off", json={"status": "disabled"}).status_code == 200
    with pytest.raises(openai.NotFoundError) as err:
        _client(live_server, project_key).chat.completions.create(
            model="e2e-off", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.body["code"] == "model_disabled"
    assert "`llmdeck models enable e2e-off` or the Models page" in err.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "smollm2-135m"}, "messages"),
        ({"model": "smollm2-135m", "messages": []}, "messages"),
        (
            {"model": "smollm2-135m", "messages": [{"role": "wizard", "content": "x"}]},
            "messages.0.role",
        ),
        (
            {
                "model": "smollm2-135m",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": 7,
            },
            "temperature",
        ),
        ({"model": "smollm2-135m", "messages": [{"role": "user", "content": "x"}], "n": 3}, "n"),
        (
            {
                "model": "smollm2-135m",
                "messages": [{"role": "user", "content": "x"}],
                "seed": 10**30,
            },
            "seed",
        ),
    ],
)
def test_malformed_requests_name_the_bad_field(
    live_server: LiveServer, project_key: str, body, param
) -> None:
    response = httpx.post(
        f"{live_server.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {project_key}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,"}},
                        ],
                    }
                ]
            },
            "messages.0.content",
        ),
    ],
)
def test_the_bundled_model_refuses_what_it_cannot_do(
    live_server: LiveServer, project_key: str, extra, param
) -> None:
    """Not a plain-text answer that pretends the tools, JSON mode or image were honoured."""
    body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "x"}], **extra}
    for stream in (False, True):
        response = httpx.post(
            f"{live_server.url}/v1/chat/completions",
            json={**body, "stream": stream},
            headers={"Authorization": f"Bearer {project_key}"},
            timeout=60,
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param and error["code"].startswith("unsupported")
        assert "bundled chat model" in error["message"]


def test_the_bundled_embedding_model_refuses_other_dimensions(
    live_server: LiveServer, project_key: str
) -> None:
    client = _client(live_server, project_key)
    assert (
        len(
            client.embeddings.create(model="minilm-l6", input="a", dimensions=384).data[0].embedding
        )
        == 384
    )
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="minilm-l6", input="a", dimensions=64)
    assert err.value.param == "dimensions" and "384" in err.value.message


def test_body_that_is_not_json_is_400(live_server: LiveServer, project_key: str) -> None:
    response = httpx.post(
        f"{live_server.url}/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {project_key}", "Content-Type": "application/json"},
    )
    assert (
        response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    )


def test_oversized_body_is_refused_with_a_clear_error(
    live_server: LiveServer, project_key: str
) -> None:
    content = b'{"model": "smollm2-135m", "messages": [{"role": "user", "content": "'
    content += b"x" * (17 * 2**20) + b'"}]}'
    response = httpx.post(
        f"{live_server.url}/v1/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {project_key}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and "16 MiB" in error["message"]


def test_prompt_longer_than_context_window_is_400(
    live_server: LiveServer, project_key: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(live_server, project_key).chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "word " * 9000}],
            stream=True,
        )
    assert err.value.body["code"] == "context_length_exceeded"
    assert err.value.body["param"] == "messages"


def test_traces_api_lists_only_this_projects_calls(
    live_server: LiveServer, project_key: str
) -> None:
    with live_server.client(project_key) as api:
        for _ in range(100):
            page = api.get("/api/traces", params={"model": "smollm2-135m", "limit": 2}).json()
            if page["next_cursor"]:
                break
            time.sleep(0.05)
        assert len(page["data"]) == 2 and page["next_cursor"]
        rest = api.get(
            "/api/traces", params={"model": "smollm2-135m", "cursor": page["next_cursor"]}
        ).json()
        assert {t["trace_id"] for t in rest["data"]}.isdisjoint(t["trace_id"] for t in page["data"])
        errors = api.get("/api/traces", params={"status": "error"}).json()["data"]
        assert any(t["model"] == "gpt-unknown" for t in errors)
    # The default project (master key) sees none of the e2e project's traces.
    default = live_server.client().get("/api/traces").json()["data"]
    assert all(t["model"] != "gpt-unknown" for t in default)
