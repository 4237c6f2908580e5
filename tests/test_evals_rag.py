"""RAG targets and retrieval steps against a real knowledge base (bundled MiniLM embeddings,
scripted upstream as the answering model)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from llmdeck.app import create_app
from llmdeck.core.settings import get_settings
from tests.test_evals_support import echo_upstream
from tests.test_knowledge import FAQ, GUIDE, _key, create_kb, upload, wait


@pytest.fixture
def echo():
    yield from echo_upstream()


@pytest.fixture
def http(echo) -> Iterator[TestClient]:
    app = create_app(get_settings())
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {_key(app.state.runtime.db, 'default')}"
        r = client.post(
            "/api/models",
            json={"alias": "echo", "upstream_name": "m", "base_url": echo.url},
        )
        assert r.status_code == 201, r.text
        create_kb(client, "docs")
        wait(client, upload(client, "docs", {"faq.txt": FAQ, "guide.md": GUIDE})["job_id"])
        yield client


CHAIN = """
name: grounded
steps:
  - {type: retrieval, knowledge_base: docs, query: "{{ question }}", top_k: 2, output: context}
  - {type: transform, template: "Q: {{ question }} | {{ context }}", output: final}
"""


def test_rag_target_and_retrieval_chain(http) -> None:
    r = http.post(
        "/api/datasets",
        json={
            "name": "rag",
            "items": [
                {
                    "input": {"question": "How long does an espresso shot take?"},
                    "expected": "An espresso shot takes about twenty-five seconds.",
                }
            ],
        },
    )
    assert r.status_code == 201
    created = http.post(
        "/api/experiments",
        json={
            "dataset": "rag",
            "target": {"type": "rag", "knowledge_base": "docs", "model": "echo", "top_k": 2},
            "metrics": ["context_precision", "context_recall", "answer_relevance"],
        },
    )
    assert created.status_code == 201, created.text
    exp_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while http.get(f"/api/experiments/{exp_id}").json()["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [result] = http.get(f"/api/experiments/{exp_id}/results").json()
    assert result["error"] is None
    # The answering model echoes its prompt, which carries the retrieved sources.
    assert "twenty-five seconds" in result["output"]
    assert result["scores"]["context_recall"]["score"] == 1.0
    assert result["scores"]["context_precision"]["score"] > 0

    assert http.post("/api/chains", content=CHAIN).status_code == 201
    ran = http.post(
        "/api/chains/grounded/runs",
        json={"variables": {"question": "How do I clean solar panels?"}},
    )
    assert ran.status_code == 200, ran.text
    assert "twice a year" in ran.json()["output"]
    assert [s["type"] for s in ran.json()["steps"]] == ["retrieval", "transform"]
