"""Prompt registry: immutable versions, labels and roles, sandboxed rendering, diff, the
gateway's `prompt:NAME@LABEL`, the SDK's cached fetch, and fetch latency."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from sqlalchemy.orm import Session

from llmdeck.core.errors import InvalidRequest, NotFound, PermissionDenied
from llmdeck.identity import service as identity
from llmdeck.prompts import service
from llmdeck.prompts.cache import PromptCache, cache_for
from llmdeck.prompts.rendering import render_text
from llmdeck.prompts.schemas import Message, PromptVersionCreate
from tests.test_evals_support import add_model, echo_upstream
from tests.test_gateway_support import running


@pytest.fixture
def echo():
    yield from echo_upstream()


def version(text: str, **kw) -> PromptVersionCreate:
    return PromptVersionCreate(
        messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)],
        model="smollm2-135m",
        **kw,
    )


def test_versions_are_immutable_and_labels_move_with_roles(db) -> None:
    with db.session() as session:
        session: Session
        project = identity.get_project_by_name_or_raise(session, name="default").id
        v1 = service.create_version(
            session,
            project_id=project,
            name="greet",
            data=version("Hi {{ name }}"),
            role="builder",
        )
        v2 = service.create_version(
            session,
            project_id=project,
            name="greet",
            data=version("Hello {{ name }}!", commit_message="warmer", labels=["staging"]),
            role="builder",
        )
        assert (v1.version, v2.version) == (1, 2)
        assert v2.variables == ["name"]
        prompt = service.get_by_name_or_raise(session, project_id=project, name="greet")
        # production needs builder; a reviewer may move other labels, a viewer none.
        with pytest.raises(PermissionDenied):
            service.set_label(
                session, prompt=prompt, label="production", version=2, role="reviewer"
            )
        with pytest.raises(PermissionDenied):
            service.set_label(session, prompt=prompt, label="staging", version=1, role="viewer")
        service.set_label(session, prompt=prompt, label="production", version=2, role="builder")
        _, row = service.resolve(session, project_id=project, name="greet", label="production")
        assert row.version == 2
        # Rollback is moving the label back; the versions themselves never change.
        service.set_label(session, prompt=prompt, label="production", version=1, role="admin")
        _, row = service.resolve(session, project_id=project, name="greet", label="production")
        assert row.version == 1 and row.messages[1]["content"] == "Hi {{ name }}"
        assert service.labels(session, prompt=prompt) == {"production": 1, "staging": 2}
        _, latest = service.resolve(session, project_id=project, name="greet")
        assert latest.version == 2
        with pytest.raises(NotFound):
            service.resolve(session, project_id=project, name="greet", label="canary")
        diff = service.diff(prompt, v1, v2)
        assert "-  content: Hi {{ name }}" in diff and "+  content: Hello {{ name }}!" in diff


def test_rendering_is_sandboxed_and_names_missing_variables() -> None:
    assert render_text("Hi {{ name | upper }}", {"name": "ada"}) == "Hi ADA"
    with pytest.raises(InvalidRequest) as missing:
        render_text("{{ greeting }}, {{ name }}", {"name": "ada"})
    assert "greeting" in missing.value.message and missing.value.status_code == 400
    with pytest.raises(InvalidRequest) as unsafe:
        render_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
    assert "unsafe" in unsafe.value.message
    with pytest.raises(InvalidRequest):
        render_text("{% for x in %}", {})


def test_gateway_serves_prompt_by_label_and_records_the_version(echo) -> None:
    async def scenario():
        async with running() as gw:
            await add_model(gw.client, "echo", echo.url)
            for text, labels in (("Say {{ word }}", ["production"]), ("Shout {{ word }}", [])):
                r = await gw.client.post(
                    "/api/prompts/say/versions",
                    json={
                        "messages": [{"role": "user", "content": text}],
                        "model": "echo",
                        "params": {"max_tokens": 5},
                        "labels": labels,
                    },
                )
                assert r.status_code == 201, r.text
            body = {
                "model": "prompt:say@production",
                "messages": [{"role": "user", "content": ""}],
                "prompt_variables": {"word": "cheese"},
            }
            response = await gw.client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "Say cheese"
            assert echo.requests[-1]["max_tokens"] == 5  # the prompt's parameters apply
            span = await gw.span(response)
            assert span.attributes["prompt"] == {"name": "say", "version": 1, "label": "production"}
            assert span.model == "echo"
            # Moving the label (or rolling it back) shows on the very next call.
            moved = await gw.client.put("/api/prompts/say/labels/production", json={"version": 2})
            assert moved.status_code == 200
            # A label prompt:NAME@LABEL could not name is refused, by the API as by the console.
            for bad in ("bad label!", "12"):
                refused = await gw.client.put(f"/api/prompts/say/labels/{bad}", json={"version": 1})
                assert refused.status_code == 400 and refused.json()["error"]["param"] == "label"
            response = await gw.client.post("/v1/chat/completions", json=body)
            assert response.json()["choices"][0]["message"]["content"] == "Shout cheese"
            # An explicit version, and a missing variable as a clear 400.
            body["model"] = "prompt:say@2"
            response = await gw.client.post("/v1/chat/completions", json=body)
            assert response.json()["choices"][0]["message"]["content"] == "Shout cheese"
            body["prompt_variables"] = {}
            response = await gw.client.post("/v1/chat/completions", json=body)
            assert response.status_code == 400 and "word" in response.json()["error"]["message"]
            body["model"] = "prompt:nope@production"
            response = await gw.client.post("/v1/chat/completions", json=body)
            assert response.status_code == 404

    asyncio.run(scenario())


def test_api_labels_diff_render_and_fast_fetch() -> None:
    async def scenario():
        async with running() as gw:
            c = gw.client
            for text in ("v1 {{ q }}", "v2 {{ q }}"):
                r = await c.post(
                    "/api/prompts/qa/versions",
                    json={"messages": [{"role": "user", "content": text}], "model": "m"},
                )
                assert r.status_code == 201
            assert (
                await c.put("/api/prompts/qa/labels/production", json={"version": 2})
            ).status_code == 200
            got = (await c.get("/api/prompts/qa", params={"label": "production"})).json()
            assert got["version"] == 2 and got["labels"] == ["production"]
            diff = (await c.get("/api/prompts/qa/diff", params={"from": 1, "to": 2})).json()["diff"]
            assert "-- content: v1 {{ q }}" in diff or "-  content: v1 {{ q }}" in diff
            rendered = await c.post(
                "/api/prompts/qa/render", json={"variables": {"q": "why"}, "version": 1}
            )
            assert rendered.json()["messages"][0]["content"] == "v1 why"
            bad = await c.post("/api/prompts/qa/render", json={"variables": {}})
            assert bad.status_code == 400 and "q" in bad.json()["error"]["message"]
            listed = (await c.get("/api/prompts")).json()["data"]
            assert listed[0]["labels"] == {"production": 2} and listed[0]["latest_version"] == 2
            # The server's work for a fetch by label takes under 5 ms at p99, a few misses
            # included. (Whole HTTP round trips are measured in bench/evals; on this shared
            # 2-core machine they are dominated by other processes' load.)
            cache = cache_for(gw.runtime.db)
            with gw.runtime.db.session() as session:
                pid = identity.get_project_by_name_or_raise(session, name="default").id
            timings = []
            for i in range(400):
                if i % 100 == 0:
                    cache.clear()  # include uncached fetches in the sample
                started = time.perf_counter()
                body = await cache.fetch(pid, "qa", "production", None)
                timings.append((time.perf_counter() - started) * 1000)
            assert json.loads(body)["version"] == 2
            timings.sort()
            p99 = timings[int(len(timings) * 0.99) - 1]
            print(f"prompt fetch (server work) p50 {timings[200]:.3f} ms, p99 {p99:.3f} ms")
            assert p99 < 5.0

    asyncio.run(scenario())


def test_sdk_client_caches_with_ttl(live_server) -> None:
    from llmdeck.prompts.client import PromptClient

    with live_server.client() as http:
        r = http.post(
            "/api/prompts/sdk/versions",
            json={
                "messages": [{"role": "user", "content": "Hi {{ who }}"}],
                "model": "smollm2-135m",
                "labels": ["production"],
            },
        )
        assert r.status_code == 201, r.text
    client = PromptClient(live_server.url, api_key=live_server.master_key, ttl=0.3)
    first = client.get("sdk")
    assert first.render(who="Ada") == [{"role": "user", "content": "Hi Ada"}]
    client.get("sdk")
    assert client.fetches == 1  # served from the cache
    time.sleep(0.35)
    client.get("sdk")
    assert client.fetches == 2  # expired, fetched again
    client.close()


def test_fetch_cache_sees_changes_here_at_once_and_elsewhere_within_half_a_second(db) -> None:
    """A label moved in this process shows on the next fetch; one moved by another process
    (its commit carries no in-process signal here) within 2 * CHECK_INTERVAL."""
    cache = PromptCache(db, check_interval=0.2)
    with db.session() as session:
        pid = identity.get_project_by_name_or_raise(session, name="default").id
        for text in ("one", "two", "three"):
            service.create_version(
                session,
                project_id=pid,
                name="p",
                data=PromptVersionCreate(messages=[Message(role="user", content=text)]),
                role="admin",
            )
        prompt = service.get_by_name_or_raise(session, project_id=pid, name="p")
        service.set_label(session, prompt=prompt, label="production", version=1, role="admin")

    async def version() -> int:
        return json.loads(await cache.fetch(pid, "p", "production", None))["version"]

    def move(to: int, *, elsewhere: bool) -> None:
        with db.session() as session:
            prompt = service.get_by_name_or_raise(session, project_id=pid, name="p")
            service.set_label(session, prompt=prompt, label="production", version=to, role="admin")
            if elsewhere:
                session.info.pop(service.CHANGED_FLAG)  # as if committed by another process

    async def scenario():
        assert await version() == 1
        move(2, elsewhere=False)
        assert await version() == 2  # at once
        move(3, elsewhere=True)
        assert await version() == 2  # still the cached answer for a moment
        started = time.monotonic()
        while await version() != 3:
            assert time.monotonic() - started < 0.4 + 0.2, "not seen within 2 * CHECK_INTERVAL"
            await asyncio.sleep(0.01)
        with pytest.raises(NotFound):
            await cache.fetch(pid, "p", "nope", None)

    asyncio.run(scenario())
