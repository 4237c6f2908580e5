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
    # Shapes that crashed validation (500s) are told apart, each with what to fix.
    with pytest.raises(InvalidRequest, match="Step 1 must be a mapping"):
        chains.check_steps(["prompt"])
    with pytest.raises(InvalidRequest, match="`output` names the variable"):
        chains.check_steps([{"type": "transform", "output": {"a": 1}}])
    with pytest.raises(InvalidRequest, match="`template` must be text"):
        chains.check_steps([{"type": "transform", "template": ["x"]}])
    with pytest.raises(InvalidRequest, match="must be letters, digits") as err:
        chains.load_yaml("name: bad name!\nsteps: [{type: transform}]")
    assert err.value.param == "name"


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


def test_console_creates_a_chain_then_runs_it_step_by_step(db, settings, upstream) -> None:
    """New chain takes the pushed YAML; Run fills the variables its prompts need."""
    import re

    from fastapi.testclient import TestClient

    from llmdeck.app import create_app
    from llmdeck.catalog import service as catalog
    from llmdeck.catalog.schemas import ModelCreate
    from tests.test_console import add_user, page_csrf, sign_in

    upstream.default = {"kind": "ok", "text": "please sit down"}
    with TestClient(create_app(settings), follow_redirects=False) as http:
        add_user(http.app, "b@x.io", "builder")
        add_user(http.app, "v@x.io", "viewer")
        with http.app.state.runtime.db.session() as session:
            catalog.create(
                session,
                settings=http.app.state.runtime.settings,
                data=ModelCreate(alias="up", upstream_name="up-1", base_url=upstream.url),
            )
        sign_in(http, "b@x.io")
        token = page_csrf(http, "/prompts")
        prompt = {"name": "rewrite", "user": "please {{ text }}", "model": "up"}
        assert http.post("/prompts", data={**prompt, "csrf_token": token}).status_code == 303
        # A definition with a mistake comes back as typed, with what to fix under the box.
        broken = CHAIN.replace("type: transform", "type: shell")
        refused = http.post("/prompts/chains", data={"definition": broken, "csrf_token": token})
        assert refused.status_code == 200
        assert "Step 2: type must be one of prompt, retrieval, transform." in refused.text
        assert "type: shell" in refused.text and refused.text.count('class="field-error"') == 1
        created = http.post(
            "/prompts/chains",
            data={"definition": CHAIN.replace("@production", "@1"), "csrf_token": token},
        )
        assert created.status_code == 303 and created.headers["location"] == "/prompts/polite?v=1"
        again = http.post("/prompts/chains", data={"definition": CHAIN, "csrf_token": token})
        assert "A prompt or chain named polite already exists" in again.text
        page = http.get("/prompts/polite?v=1").text
        assert 'id="chain-run"' in page and 'name="var.text"' in page  # rewrite needs `text`
        ran = http.post(
            "/prompts/polite/runs",
            data={"version": "1", "var.text": "sit down", "csrf_token": token},
            headers={"HX-Request": "true"},
        )
        assert ran.status_code == 200 and ran.text.lstrip().startswith("<form")
        assert "prompt rewrite@1 → draft" in ran.text and "transform → final" in ran.text
        assert '<strong id="run-output">PLEASE SIT DOWN (CHECKED)</strong>' in ran.text
        assert ">sit down</textarea>" in ran.text  # what was typed stays
        assert "please sit down" in upstream.requests[-1]["messages"][-1]["content"]
        trace = re.search(r'id="run-trace" href="(/requests/\w+)"', ran.text).group(1)
        http.app.state.runtime.writer.flush()
        assert "chain polite" in http.get(trace).text
        # A failing step says why, with the trace of the failed run.
        upstream.default = {"kind": "status", "code": 500}
        failed = http.post("/prompts/polite/runs", data={"version": "1", "csrf_token": token})
        assert failed.status_code == 200 and 'id="run-error"' in failed.text
        assert 'id="chain-editor"' in failed.text  # without htmx: the whole page
        http.cookies.clear()
        sign_in(http, "v@x.io")
        token = page_csrf(http, "/prompts")
        assert "Running a chain needs the builder role." in http.get("/prompts/polite").text
        form = {"version": "1", "var.text": "x", "csrf_token": token}
        assert http.post("/prompts/polite/runs", data=form).status_code == 403
        form = {"definition": CHAIN.replace("polite", "p3"), "csrf_token": token}
        assert http.post("/prompts/chains", data=form).status_code == 403
        assert 'id="new-chain"' not in http.get("/prompts").text
