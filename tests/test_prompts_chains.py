"""Chains: YAML definitions versioned like prompts; each step a child span of the chain."""

from __future__ import annotations

import asyncio

import pytest

from llmdeck.core.errors import InvalidRequest
from llmdeck.prompts import chains
from tests.test_evals_experiments import _principal
from tests.test_evals_support import add_model, echo_upstream
from tests.test_gateway_support import running

CHAIN = """
name: polite
description: rewrite, then tidy
steps:
  - {type: prompt, prompt: "rewrite@production", output: draft}
  - {type: transform, template: "{{ draft }} (checked)", op: upper, output: final}
"""


@pytest.fixture
def echo():
    yield from echo_upstream()


def test_chain_yaml_is_validated() -> None:
    name, data = chains.load_yaml(CHAIN)
    assert name == "polite" and len(data.steps) == 2
    with pytest.raises(InvalidRequest, match="type must be one of"):
        chains.check_steps([{"type": "shell", "cmd": "rm -rf /"}])
    with pytest.raises(InvalidRequest, match="names `prompt`"):
        chains.check_steps([{"type": "prompt"}])
    with pytest.raises(InvalidRequest, match="not valid YAML"):
        chains.load_yaml("steps: [")


def test_chain_runs_steps_as_child_spans(echo) -> None:
    async def scenario():
        async with running() as gw:
            await add_model(gw.client, "echo", echo.url)
            r = await gw.client.post(
                "/api/prompts/rewrite/versions",
                json={
                    "messages": [{"role": "user", "content": "please {{ text }}"}],
                    "model": "echo",
                    "labels": ["production"],
                },
            )
            assert r.status_code == 201
            from llmdeck.prompts import service

            name, data = chains.load_yaml(CHAIN)
            with gw.runtime.db.session() as session:
                pid = _principal(gw.runtime.db).project_id
                v = service.create_version(
                    session, project_id=pid, name=name, data=data, role="admin"
                )
                assert v.variables == [] and v.steps[0]["type"] == "prompt"
            result = await chains.run_chain(
                gw.runtime, _principal(gw.runtime.db), "polite", {"text": "sit down"}
            )
            assert result.output == "PLEASE SIT DOWN (CHECKED)"
            await gw.runtime.gateway.drain()
            gw.runtime.writer.flush()
            trace = (await gw.client.get(f"/api/traces/{result.trace_id}")).json()
            spans = {s["span_id"]: s for s in trace["spans"]}
            root = next(s for s in spans.values() if s["kind"] == "chain")
            steps = [s for s in spans.values() if s["kind"] == "chain_step"]
            llm = next(s for s in spans.values() if s["kind"] == "llm")
            assert root["parent_span_id"] is None
            assert {s["parent_span_id"] for s in steps} == {root["span_id"]}
            assert spans[llm["parent_span_id"]]["kind"] == "chain_step"
            assert llm["attributes"]["prompt"]["name"] == "rewrite"
            # The same through the REST API: YAML in, a run out.
            pushed = await gw.client.post("/api/chains", content=CHAIN.replace("polite", "p2"))
            assert pushed.status_code == 201, pushed.text
            assert pushed.json()["kind"] == "chain" and pushed.json()["version"] == 1
            ran = await gw.client.post("/api/chains/p2@1/runs", json={"variables": {"text": "go"}})
            assert ran.status_code == 200, ran.text
            assert ran.json()["output"] == "PLEASE GO (CHECKED)" and len(ran.json()["steps"]) == 2
            as_prompt = await gw.client.post(
                "/v1/chat/completions",
                json={"model": "prompt:p2", "messages": [{"role": "user", "content": ""}]},
            )
            assert as_prompt.status_code == 400 and "chain" in as_prompt.json()["error"]["message"]

    asyncio.run(scenario())
