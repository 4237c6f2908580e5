"""Gateway configuration through YAML, the CLI and the REST API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from llmdeck.core.db import Database
from llmdeck.core.errors import InvalidRequest
from llmdeck.gateway import config
from llmdeck.gateway.models import Deployment
from tests.test_gateway_support import running

YAML = """
routes:
  - alias: chat
    strategy: least_busy
    fallbacks: [chat-backup]
    retries: 3
    attempt_timeout: 10
    deadline: 30
    output_price_per_mtok: 2.5
    deployments:
      - {name: east, upstream: gpt-x, base_url: "http://127.0.0.1:9001/v1", weight: 3,
         api_key_env: EAST_KEY}
      - {name: west, upstream: gpt-x, base_url: "http://127.0.0.1:9002/v1"}
  - alias: chat-backup
    deployments:
      - {name: local, provider: local, upstream: smollm2-135m-instruct}
limits:
  - {project: default, rpm: 60, tpm: 100000, budget: 25, budget_period: week}
cache:
  - {project: default, ttl_seconds: 600, semantic_threshold: 0.92}
"""


def test_yaml_applies_idempotently_and_exports_without_secrets(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EAST_KEY", "sk-east-secret")
    for _ in range(2):  # applying twice changes nothing
        with db.session() as session:
            result = config.apply(session, settings=db.settings, config=config.parse_yaml(YAML))
        assert (result.routes, result.limits, result.cache) == (2, 1, 1)
    with db.session() as session:
        stored = session.scalars(select(Deployment)).all()
        assert len(stored) == 3
        assert all("sk-east" not in (d.api_key_encrypted or "") for d in stored)
        exported = config.to_yaml(config.export(session))
    assert "sk-east-secret" not in exported
    again = config.parse_yaml(exported)
    original = config.parse_yaml(YAML)
    assert again.limits == original.limits and again.cache == original.cache
    chat = next(r for r in again.routes if r.alias == "chat")
    assert chat.strategy == "least_busy" and chat.fallbacks == ["chat-backup"]
    assert [(d.name, d.weight) for d in chat.deployments] == [("east", 3), ("west", 1)]
    assert chat.deployments[0].api_key_env  # says where the key must come from

    # Re-applying the export (its key variable unset) changes nothing, the stored key included.
    monkeypatch.delenv("EAST_KEY")
    assert chat.deployments[0].api_key_env not in os.environ
    with db.session() as session:
        before = _stored(session)
        config.apply(session, settings=db.settings, config=again)
    with db.session() as session:
        assert _stored(session) == before
        assert before[1]["east"] is not None
        config.apply(session, settings=db.settings, config=again, prune=True)
        only = config.parse_yaml(
            "routes: [{alias: chat-backup, deployments: [{name: l, provider: local, upstream: x}]}]"
        )
        assert config.apply(session, settings=db.settings, config=only, prune=True).removed == [
            "chat"
        ]


def _stored(session) -> tuple[list, dict]:
    """Every route as the API shows it, and each deployment's stored (encrypted) key."""
    routes = [config.route_public(session, r) for r in config.list_routes(session)]
    keys = {d.name: d.api_key_encrypted for d in session.scalars(select(Deployment))}
    return routes, keys


@pytest.mark.parametrize(
    "text",
    [
        "routes: !!python/object/apply:os.system ['echo unsafe']",
        "routes: [{alias: x}]",
        "limits: [{project: default, key: abc}]",
        "routes: [{alias: x, deployments: [{name: a, upstream: m}]}]",  # openai needs a base URL
        # A key variable that is unset, and no key stored to keep.
        "routes: [{alias: x, deployments: [{name: a, upstream: m, base_url: 'http://h/v1', "
        "api_key_env: LLMDECK_KEY_UNSET}]}]",
    ],
)
def test_bad_yaml_is_refused_with_a_reason(db: Database, text: str) -> None:
    with pytest.raises(InvalidRequest), db.session() as session:
        config.apply(session, settings=db.settings, config=config.parse_yaml(text))


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMDECK_")}
    env["LLMDECK_HOME"] = str(tmp_path / "home")
    env["EAST_KEY"] = "sk-east-secret"
    return subprocess.run(
        [sys.executable, "-m", "llmdeck", *args], env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_cli_applies_exports_and_sets_limits(tmp_path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(YAML)
    applied = _cli(tmp_path, "gateway", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    assert "Applied 2 routes, 1 limits and 1 cache policies" in applied.stdout
    routes = json.loads(_cli(tmp_path, "gateway", "routes", "list", "--json").stdout)
    assert {r["alias"] for r in routes} == {"chat", "chat-backup"}
    limited = _cli(tmp_path, "gateway", "limits", "set", "--project", "default", "--rpm", "5")
    assert limited.returncode == 0, limited.stderr
    exported = _cli(tmp_path, "gateway", "export")
    assert "rpm: 5" in exported.stdout and "sk-east" not in exported.stdout
    bad = _cli(tmp_path, "gateway", "limits", "set", "--project", "nope", "--rpm", "1")
    assert bad.returncode == 1 and "No project named 'nope'" in bad.stderr


def test_api_configures_routes_and_refuses_non_admins(upstream) -> None:
    async def scenario():
        async with running() as gw:
            route = await gw.put_route("r", [("a", upstream.url)], fallbacks=["smollm2-135m"])
            assert route["project"] is None and route["deployments"][0]["has_api_key"] is False
            listed = (await gw.client.get("/api/gateway/routes")).json()["data"]
            assert [r["alias"] for r in listed] == ["r"]
            exported = await gw.client.get("/api/gateway/config", params={"format": "yaml"})
            assert exported.headers["content-type"].startswith("application/yaml")
            assert config.parse_yaml(exported.text).routes[0].alias == "r"

            builder = (await gw.client.post("/api/keys", json={"name": "b"})).json()["key"]
            refused = await gw.client.put(
                "/api/gateway/routes/r2",
                json={"deployments": [{"name": "a", "upstream": "m", "base_url": upstream.url}]},
                headers={"Authorization": f"Bearer {builder}"},
            )
            assert refused.status_code == 403
            assert (await gw.client.delete("/api/gateway/routes/r")).status_code == 204
            assert (await gw.chat("r")).status_code == 404

    asyncio.run(scenario())


def test_api_refuses_a_bad_alias_or_limit_scope_with_400_naming_the_field(upstream) -> None:
    async def scenario():
        async with running() as gw:
            route = {"deployments": [{"name": "a", "upstream": "m", "base_url": upstream.url}]}
            bad = await gw.client.put("/api/gateway/routes/bad%20alias", json=route)
            assert bad.status_code == 400, bad.text
            error = bad.json()["error"]
            assert (error["type"], error["param"]) == ("invalid_request_error", "alias")
            assert "'bad alias'" in error["message"] and "letters, digits" in error["message"]
            long = await gw.client.put(f"/api/gateway/routes/{'x' * 201}", json=route)
            assert long.status_code == 400 and long.json()["error"]["param"] == "alias"

            other = await gw.client.put("/api/gateway/routes/r1", json={**route, "alias": "r2"})
            assert other.status_code == 400, other.text
            error = other.json()["error"]
            assert error["param"] == "alias" and "'r1'" in error["message"]
            assert "body's `alias` is 'r2'" in error["message"]
            assert (await gw.client.get("/api/gateway/routes")).json()["data"] == []
            same = await gw.client.put("/api/gateway/routes/r1", json={**route, "alias": "r1"})
            assert same.status_code == 200 and same.json()["alias"] == "r1"

            for params in ({}, {"project": "default", "key": "abc"}):
                refused = await gw.client.delete("/api/gateway/limits", params=params)
                assert refused.status_code == 400, refused.text
                error = refused.json()["error"]
                assert error["param"] in ("project", "key")
                assert "exactly one of" in error["message"] and "?project=" in error["message"]
            empty = await gw.client.put("/api/gateway/limits", json={"rpm": 5})
            assert empty.status_code == 400 and "project or key" in empty.json()["error"]["message"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("nope", "there is no model 'nope' that project 'default' may use"),
        ("smollm2-135m", "'smollm2-135m' is a chat model"),
    ],
)
def test_a_semantic_cache_needs_an_embedding_model_the_project_may_use(
    db: Database, model: str, says: str
) -> None:
    text = f"cache: [{{project: default, semantic_threshold: 0.9, embedding_model: {model}}}]"
    with pytest.raises(InvalidRequest) as refused, db.session() as session:
        config.apply(session, settings=db.settings, config=config.parse_yaml(text))
    assert refused.value.param == "embedding_model"
    assert says in refused.value.message and "Embedding models it may use: minilm-l6" in (
        refused.value.message
    )
    with db.session() as session:
        assert config.list_cache_policies(session) == []


def test_a_semantic_cache_may_embed_with_an_embedding_route_of_the_same_file(db: Database) -> None:
    text = """
routes:
  - {alias: embedder, kind: embedding,
     deployments: [{name: l, provider: local, upstream: all-minilm-l6-v2}]}
cache:
  - {project: default, semantic_threshold: 0.9, embedding_model: embedder}
  - {project: default, exact: true, embedding_model: unused-while-semantic-is-off}
"""
    with db.session() as session:
        result = config.apply(session, settings=db.settings, config=config.parse_yaml(text))
        assert result.cache == 2


def test_api_refuses_a_cache_policy_whose_embedding_model_is_wrong() -> None:
    async def scenario():
        async with running() as gw:
            policy = {"project": "default", "semantic_threshold": 0.9, "embedding_model": "nope"}
            refused = await gw.client.put("/api/gateway/cache", json=policy)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["param"] == "embedding_model"
            assert (await gw.client.get("/api/gateway/cache")).json()["data"] == []

    asyncio.run(scenario())
