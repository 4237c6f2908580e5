"""The SDK against a real server: start-up without import races, flush() telling of dropped
spans, feedback's one value, generators observed whole, and streams the app stops early."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import llmdeck
from llmdeck.sdk import tracer
from tests.conftest import LiveServer


def _configure(server: LiveServer, key: str | None = None) -> None:
    llmdeck.configure(base_url=server.url, api_key=key or server.master_key, interval=0.05)


def _trace(server: LiveServer, trace_id: str, spans: int) -> list[dict[str, Any]]:
    """The trace's spans once at least `spans` of them are stored."""
    with server.client() as http:
        deadline = time.monotonic() + 20
        while True:
            found = http.get(f"/api/traces/{trace_id}")
            if found.status_code == 200 and len(found.json()["spans"]) >= spans:
                return found.json()["spans"]
            if time.monotonic() > deadline:
                raise AssertionError(f"trace {trace_id} has not {spans} spans: {found.text}")
            time.sleep(0.1)


def _named(spans: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    (span,) = [s for s in spans if s["name"].endswith(suffix)]
    return span


# -- start-up: nothing is imported off the app's thread -------------------------------------

# Records which thread imports each module; the SDK's export thread must import none: a
# module imported by two threads at once can be handed half-initialised to one of them
# ("partially initialized module 'httpx' has no attribute 'URL'" from OpenAI(), now and then).
SPY = """
import json, sys, threading

exporter_imports = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread().name == "llmdeck-sdk-export":
            exporter_imports.append(name)
        return None

sys.meta_path.insert(0, Spy())

import llmdeck
from openai import OpenAI

url, key = sys.argv[1], sys.argv[2]
llmdeck.configure(base_url=url, api_key=key, interval=0.05)  # as the README shows it
llmdeck.instrument_openai()
client = OpenAI(base_url=url + "/v1", api_key=key)

@llmdeck.observe
def step(x):
    return {"x": x}

step(1)
sent = llmdeck.flush(timeout=20)
llmdeck.configure(base_url=url, api_key="ldk-wrong", interval=0.05)  # a refusal is read too
step(2)
refused = not llmdeck.flush(timeout=20)
print(json.dumps({"sent": sent, "refused": refused, "exporter_imports": exporter_imports}))
"""


def test_the_export_thread_imports_nothing(live_server: LiveServer) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SPY, live_server.url, live_server.master_key],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result == {"sent": True, "refused": True, "exporter_imports": []}


# -- flush ----------------------------------------------------------------------------------


def test_flush_is_false_when_spans_were_refused(live_server: LiveServer, sdk) -> None:
    _configure(live_server, key="ldk-wrong")
    with llmdeck.observe("refused"):
        pass
    assert llmdeck.flush(timeout=20) is False  # the server answered 401: the span is lost
    assert tracer.exporter().dropped == 1
    assert llmdeck.flush(timeout=20) is True  # nothing dropped since the last flush

    _configure(live_server)
    with llmdeck.observe("accepted"):
        pass
    assert llmdeck.flush(timeout=20) is True


# -- feedback -------------------------------------------------------------------------------


def test_feedback_is_a_score_or_a_thumb_not_both(live_server: LiveServer, sdk) -> None:
    _configure(live_server)
    with llmdeck.observe("answer"):
        trace_id = llmdeck.current_trace_id()
        with pytest.raises(ValueError, match="a score or thumbs, not both"):
            llmdeck.feedback(score=0.8, thumbs=True)
    assert llmdeck.flush(timeout=20)
    # True once stored, each value in a feedback of its own.
    assert llmdeck.feedback(trace_id, score=0.8) is True
    assert llmdeck.feedback(trace_id, thumbs=False, comment="too long") is True
    with live_server.client() as http:
        stored = http.get(f"/api/traces/{trace_id}/feedback").json()["data"]
    assert sorted((f["kind"], f["score"]) for f in stored) == [("score", 0.8), ("thumbs", 0.0)]
    # Refused by the server: False, not an exception.
    assert llmdeck.feedback(trace_id, thumbs="sideways") is False


# -- observe on generators ------------------------------------------------------------------


def test_observe_follows_a_generator_over_its_iteration(live_server: LiveServer, sdk) -> None:
    _configure(live_server)
    inside: list[str | None] = []

    @llmdeck.observe
    def numbers(n: int) -> Iterator[int]:
        for i in range(n):
            with llmdeck.observe(f"step {i}"):
                inside.append(llmdeck.current_trace_id())
                time.sleep(0.02)
            yield i

    with llmdeck.observe("request") as root:
        items = []
        for item in numbers(3):
            assert llmdeck.current_span() is root  # the caller keeps its own span
            items.append(item)
        assert items == [0, 1, 2]
        stopped = numbers(5)
        assert next(stopped) == 0
        stopped.close()  # the app stops early: no error
    assert llmdeck.flush(timeout=20)

    spans = _trace(live_server, root.trace_id, 7)
    assert inside == [root.trace_id] * 4
    whole, early = sorted(
        (s for s in spans if s["name"].endswith("numbers")), key=lambda s: s["started_at"]
    )
    for span in whole, early:
        assert span["parent_span_id"] == root.span_id and span["status"] == "ok"
    assert whole["latency_ms"] >= 60  # open from the first item to the last
    assert json.loads(whole["output"]) == [0, 1, 2]
    assert whole["attributes"]["llmdeck.yielded"] == 3
    assert early["attributes"]["llmdeck.stopped_early"] is True
    steps = [s for s in spans if s["name"].startswith("step")]
    assert {s["parent_span_id"] for s in steps} == {whole["span_id"], early["span_id"]}


def test_a_generator_keeps_send_throw_and_its_errors(sdk) -> None:
    @llmdeck.observe
    def running_total() -> Iterator[int]:
        total = 0
        while True:
            try:
                total += yield total
            except KeyError:
                total = 0

    totals = running_total()
    assert next(totals) == 0
    assert totals.send(5) == 5 and totals.send(2) == 7
    assert totals.throw(KeyError("reset")) == 0

    @llmdeck.observe
    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("no more")

    with pytest.raises(ValueError, match="no more"):
        list(broken())


def test_observe_follows_an_async_generator(live_server: LiveServer, sdk) -> None:
    import asyncio

    _configure(live_server)

    @llmdeck.observe(name="tokens")
    async def tokens(text: str):
        for word in text.split():
            await asyncio.sleep(0.02)
            with llmdeck.observe("piece"):
                pass
            yield word + " "

    async def app() -> tuple[str, Any]:
        with llmdeck.observe("request") as root:
            words = [w async for w in tokens("one two three")]
            stopped = tokens("a b c d")
            async for _ in stopped:
                break
            await stopped.aclose()
            assert llmdeck.current_span() is root
        return "".join(words), root

    text, root = asyncio.run(app())
    assert text == "one two three "
    assert llmdeck.flush(timeout=20)
    spans = _trace(live_server, root.trace_id, 7)
    whole, early = sorted(
        (s for s in spans if s["name"] == "tokens"), key=lambda s: s["started_at"]
    )
    assert whole["output"] == "one two three " and whole["latency_ms"] >= 60
    assert early["status"] == "ok" and early["attributes"]["llmdeck.stopped_early"] is True
    pieces = [s for s in spans if s["name"] == "piece"]
    assert len(pieces) == 4
    assert {p["parent_span_id"] for p in pieces} == {whole["span_id"], early["span_id"]}


# -- openai streams the app stops reading ---------------------------------------------------


def _call_spans(spans: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SDK's span of a call and the gateway's (its child)."""
    (app,) = [s for s in spans if s["kind"] == "llm" and s["attributes"].get("llmdeck.gateway")]
    (gateway,) = [s for s in spans if s["attributes"].get("source") == "gateway"]
    assert gateway["parent_span_id"] == app["span_id"]
    return app, gateway


@pytest.mark.slow
def test_a_stream_the_app_closes_after_two_chunks(live_server: LiveServer, sdk) -> None:
    import openai

    _configure(live_server)
    assert llmdeck.instrument_openai()
    client = openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=live_server.master_key, max_retries=0
    )
    with llmdeck.observe("request") as root:
        stream = client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "Count from one to twenty in words."}],
            max_tokens=20,
            stream=True,
        )
        received = []
        for i, chunk in enumerate(stream):
            received.append(chunk.choices[0].delta.content or "")
            if i == 2:
                break
        stream.close()
    assert llmdeck.flush(timeout=20)

    app, gateway = _call_spans(_trace(live_server, root.trace_id, 3))
    text = "".join(received)
    assert text
    # The app's span: no error, what the app read, and that it stopped.
    assert app["status"] == "ok" and app["error"] is None
    assert app["output"] == text
    assert app["attributes"]["llmdeck.stopped_early"] is True
    # The gateway's: no error either, what it generated and the tokens it spent on it.
    assert gateway["status"] == "ok" and gateway["error"] is None
    assert gateway["output"].startswith(text)
    assert gateway["attributes"]["finish_reason"] == "client_closed"
    assert gateway["attributes"]["stopped_by_client"] is True
    assert gateway["input_tokens"] > 0 and gateway["output_tokens"] >= 2
    # The bundled model counts as it goes: exact figures, not estimates.
    assert "tokens_estimated" not in gateway["attributes"]


def _upstream_model(server: LiveServer, upstream) -> str:
    """A model on the scripted upstream, by a new alias."""
    alias = f"up-{upstream.url.split(':')[-1].split('/')[0]}"
    with server.client() as http:
        created = http.post(
            "/api/models", json={"alias": alias, "upstream_name": "m", "base_url": upstream.url}
        )
        assert created.status_code == 201, created.text
    return alias


def test_an_async_stream_left_inside_async_with(live_server: LiveServer, upstream, sdk) -> None:
    import asyncio

    import openai

    alias = _upstream_model(live_server, upstream)
    upstream.script.append({"kind": "stall", "after": 2})  # two words, then nothing
    _configure(live_server)
    assert llmdeck.instrument_openai()

    async def app() -> tuple[str, Any]:
        client = openai.AsyncOpenAI(
            base_url=f"{live_server.url}/v1", api_key=live_server.master_key, max_retries=0
        )
        received = []
        with llmdeck.observe("request") as root:
            stream = await client.chat.completions.create(
                model=alias, messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            async with stream:
                async for chunk in stream:
                    received.append(chunk.choices[0].delta.content or "")
                    if len(received) == 3:
                        break
        await client.close()
        return "".join(received), root

    text, root = asyncio.run(app())
    assert text == "Hello from "
    assert llmdeck.flush(timeout=20)
    app_span, gateway = _call_spans(_trace(live_server, root.trace_id, 3))
    assert app_span["status"] == "ok" and app_span["output"] == text
    assert app_span["attributes"]["llmdeck.stopped_early"] is True
    assert gateway["status"] == "ok" and gateway["output"] == text
    assert gateway["attributes"]["finish_reason"] == "client_closed"


def test_a_raw_streamed_response_is_passed_through(live_server: LiveServer, upstream, sdk) -> None:
    import openai

    alias = _upstream_model(live_server, upstream)
    _configure(live_server)
    assert llmdeck.instrument_openai()
    client = openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=live_server.master_key, max_retries=0
    )
    raw = client.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    assert raw.headers["x-llmdeck-trace-id"]
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Hello from upstream."
