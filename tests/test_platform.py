"""The server as a whole: start-up, the API description, PostgreSQL, concurrent local calls."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.settings import get_settings
from tests.conftest import LiveServer, _fresh_postgres_database, start_server, stop_server


def test_every_route_is_described_with_an_operation_id() -> None:
    with TestClient(create_app(get_settings())) as client:
        spec = client.get("/openapi.json").json()
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        if path.startswith(("/api", "/v1"))
        for method, op in item.items()
    ]
    assert len(operations) >= 15
    missing = [(p, m) for p, m, op in operations if not op.get("operationId")]
    assert missing == []
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids))
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/api/traces"} <= set(
        spec["paths"]
    )


def test_unknown_routes_answer_in_the_error_shape() -> None:
    with TestClient(create_app(get_settings())) as client:
        response = client.get("/api/nothing-here")
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
        missing_key = client.get("/api/traces")
        assert missing_key.status_code == 401
        assert "Authorization: Bearer" in missing_key.json()["error"]["message"]


def test_project_keys_cannot_administer_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMDECK_MASTER_KEY", "ldk-master-x")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as client:
        admin = {"Authorization": "Bearer ldk-master-x"}
        assert client.post("/api/projects", json={"name": "p1"}, headers=admin).status_code == 201
        viewer = client.post(
            "/api/keys", json={"role": "viewer"}, headers={**admin, "X-Llmdeck-Project": "p1"}
        ).json()["key"]
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        assert (
            client.post("/api/projects", json={"name": "p2"}, headers=as_viewer).status_code == 403
        )
        assert client.get("/api/keys", headers=as_viewer).status_code == 403
        refused = client.post(
            "/v1/chat/completions",
            headers=as_viewer,
            json={"model": "smollm2-135m", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert refused.status_code == 403 and "needs builder" in refused.json()["error"]["message"]
        assert client.get("/api/traces", headers=as_viewer).status_code == 200


def test_revoking_a_key_twice_is_a_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMDECK_MASTER_KEY", "ldk-master-x")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as client:
        admin = {"Authorization": "Bearer ldk-master-x"}
        key = client.post("/api/keys", json={"name": "ci"}, headers=admin).json()
        assert client.delete(f"/api/keys/{key['id']}", headers=admin).status_code == 200
        again = client.delete(f"/api/keys/{key['id']}", headers=admin)
        assert again.status_code == 409
        assert "already revoked" in again.json()["error"]["message"]


def test_start_up_loads_no_model() -> None:
    """Models load lazily, on first use: starting the server imports no ML library."""
    import subprocess
    import sys

    probe = (
        "import sys, asyncio\n"
        "from llmdeck.app import create_app\n"
        "from llmdeck.core.settings import get_settings\n"
        "app = create_app(get_settings())\n"
        "async def main():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_server_is_ready_quickly(tmp_path) -> None:
    # The goal is under 3 s on an idle 2-core machine (bench/core measures it); this bound
    # only catches a regression such as loading a model at start, on a possibly busy runner.
    started = time.perf_counter()
    server = start_server(tmp_path / "home")
    try:
        ready = time.perf_counter() - started
        assert ready < 10.0, f"ready after {ready:.2f} s"
        assert server.client().get("/v1/models").status_code == 200
    finally:
        stop_server(server)


@pytest.mark.slow
def test_gateway_and_traces_on_postgresql(tmp_path, postgres_server: str) -> None:
    url = _fresh_postgres_database(postgres_server)
    server = start_server(
        tmp_path / "home", database_url=url, extra_env={"LLMDECK_SECRET_KEY": "pg-test"}
    )
    try:
        client = openai.OpenAI(
            base_url=f"{server.url}/v1", api_key=server.master_key, max_retries=0
        )
        raw = client.embeddings.with_raw_response.create(
            model="minilm-l6", input=["hello", "world"]
        )
        assert len(raw.parse().data) == 2
        trace_id = raw.headers["x-llmdeck-trace-id"]
        for _ in range(100):
            found = server.client().get(f"/api/traces/{trace_id}")
            if found.status_code == 200:
                break
            time.sleep(0.05)
        span = found.json()["spans"][0]
        assert (
            span["kind"] == "embedding"
            and span["input_tokens"] > 0
            and span["input"] == ["hello", "world"]
        )
    finally:
        stop_server(server)


@pytest.mark.slow
def test_concurrent_local_calls_match_sequential_ones(live_server: LiveServer) -> None:
    client = openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=live_server.master_key, max_retries=0
    )
    questions = ["What is 2+2?", "Name a fruit.", "Say hello."]

    def ask(question: str) -> str:
        return (
            client.chat.completions.create(
                model="smollm2-135m", messages=[{"role": "user", "content": question}], max_tokens=8
            )
            .choices[0]
            .message.content
        )

    sequential = [ask(q) for q in questions]
    with ThreadPoolExecutor(len(questions)) as pool:
        concurrent = list(pool.map(ask, questions))
    assert concurrent == sequential
    # The server stayed responsive while generating.
    assert httpx.get(f"{live_server.url}/api/health", timeout=5).status_code == 200


@pytest.mark.slow
def test_local_models_are_not_cut_off_by_the_upstream_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A local answer takes as long as the CPU needs; the per-attempt timeout is for upstreams.
    monkeypatch.setenv("LLMDECK_MASTER_KEY", "ldk-master-t")
    monkeypatch.setenv("LLMDECK_GATEWAY_ATTEMPT_TIMEOUT", "0.2")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as client:
        response = client.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer ldk-master-t"},
            json={
                "model": "smollm2-135m",
                "messages": [{"role": "user", "content": "Tell me about the sea."}],
                "max_tokens": 12,
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 12
