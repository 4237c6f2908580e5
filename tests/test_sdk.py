"""The Python SDK: `observe`, automatic `openai` spans to the gateway, context, feedback, cost."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

import llmdeck
from llmdeck.sdk import tracer
from tests.conftest import LiveServer, free_port


def test_instrumenting_openai_can_be_undone(sdk) -> None:
    from openai.resources.chat.completions import AsyncCompletions, Completions

    originals = Completions.create, AsyncCompletions.create
    assert llmdeck.instrument_openai() and llmdeck.instrument_openai()  # twice: one patch
    assert Completions.create is not originals[0]
    assert Completions.create.__wrapped__ is originals[0]
    llmdeck.uninstrument_openai()
    assert (Completions.create, AsyncCompletions.create) == originals


def test_import_llmdeck_stays_light() -> None:
    code = (
        "import sys, llmdeck; llmdeck.observe; llmdeck.instrument_openai;"
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'torch', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_observe_and_openai_calls_to_the_gateway(live_server: LiveServer, sdk) -> None:
    import openai

    llmdeck.configure(base_url=live_server.url, api_key=live_server.master_key, interval=0.1)
    assert llmdeck.instrument_openai()
    client = openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=live_server.master_key, max_retries=0
    )
    seen: dict[str, str] = {}

    @llmdeck.observe(name="answer")
    def answer(question: str) -> str:
        seen["trace_id"] = llmdeck.current_trace_id()
        with llmdeck.observe("retrieve", kind="retriever") as step:
            step.update(output=["doc-1", "doc-2"], attributes={"top_k": 2})
        reply = client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": question}],
            max_tokens=4,
            temperature=0,
        )
        streamed = client.chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": question}],
            max_tokens=4,
            stream=True,
        )
        tail = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        return reply.choices[0].message.content + tail

    @llmdeck.observe
    def broken() -> None:
        raise ValueError("no answer")

    with llmdeck.context(session_id="sess-1", user_id="user-7", tags=["sdk", "test"]):
        text = answer("What is 2 + 2?")
        with pytest.raises(ValueError, match="no answer"):  # user errors pass through untouched
            broken()
    assert text
    assert llmdeck.flush(timeout=20)
    assert llmdeck.feedback(seen["trace_id"], thumbs=True, comment="right")

    with live_server.client() as http:
        # The gateway's own spans join the same trace (traceparent), written by its writer.
        deadline = time.monotonic() + 20
        while True:
            trace = http.get(f"/api/traces/{seen['trace_id']}").json()
            if len(trace["spans"]) >= 6 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        feedback = http.get(f"/api/traces/{seen['trace_id']}/feedback").json()["data"]
        errors = http.get("/api/traces", params={"status": "error"}).json()["data"]
    gateway = [s for s in trace["spans"] if s["attributes"].get("source") == "gateway"]
    spans = [s for s in trace["spans"] if s["attributes"].get("source") != "gateway"]
    by_name: dict[str, list[dict]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    root = by_name["answer"][0]
    assert root["parent_span_id"] is None and root["input"] == ["What is 2 + 2?"]
    assert root["output"] == text
    (retrieve,) = by_name["retrieve"]
    assert retrieve["kind"] == "retriever" and retrieve["parent_span_id"] == root["span_id"]
    calls = by_name["chat smollm2-135m"]
    assert len(calls) == 2
    for call in calls:
        assert call["parent_span_id"] == root["span_id"] and call["kind"] == "llm"
        # Sent to this llmdeck's gateway: its span has the cost; this one is not priced again.
        assert call["attributes"]["llmdeck.gateway"] is True and call["cost"] is None
        assert call["model"] == "smollm2-135m" and call["provider"] == "openai"
        assert call["input"] == [{"role": "user", "content": "What is 2 + 2?"}]
        assert call["output"]
    plain = next(c for c in calls if not c["attributes"].get("llmdeck.stream"))
    assert plain["input_tokens"] > 0 and plain["output_tokens"] > 0
    assert plain["output"] == text[: len(plain["output"])]
    streamed = next(c for c in calls if c["attributes"].get("llmdeck.stream"))
    assert streamed["ttft_ms"] is not None and streamed["ttft_ms"] <= streamed["latency_ms"]
    # One tree: app span -> SDK openai span -> gateway span, for the plain and streamed call.
    assert sorted(g["parent_span_id"] for g in gateway) == sorted(c["span_id"] for c in calls)
    for span in gateway:
        assert span["trace_id"] == seen["trace_id"] and span["model"] == "smollm2-135m"
    for span in spans:
        assert (span["session_id"], span["user_id"], span["tags"]) == (
            "sess-1",
            "user-7",
            ["sdk", "test"],
        )
    assert [(f["kind"], f["score"], f["source"]) for f in feedback] == [("thumbs", 1.0, "sdk")]
    assert any(e["name"].endswith(".broken") for e in errors), errors


def test_sdk_never_raises_when_the_server_is_down(sdk) -> None:
    llmdeck.configure(base_url=f"http://127.0.0.1:{free_port()}", api_key="ldk-nothing")

    @llmdeck.observe
    def add(a: int, b: int) -> int:
        return a + b

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with llmdeck.observe("outer") as span:
        span.update(input=Unprintable())
        assert add(2, 3) == 5
    assert llmdeck.feedback("0" * 32, score=1.0) is False
    assert llmdeck.flush(timeout=0.5) is False  # still retrying in the background


def test_span_costs_under_50_microseconds_on_the_calling_thread(sdk) -> None:
    # A batch size the loop never reaches and a long interval: the export thread sleeps, so
    # this measures what the caller pays (creating, nesting and queueing spans).
    llmdeck.configure(
        base_url=f"http://127.0.0.1:{free_port()}", api_key="k", batch_size=10**9, interval=3600
    )

    @llmdeck.observe
    def work(x: int) -> int:
        return x + 1

    n = 5000
    cpu, wall = [], []
    for _ in range(5):
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        for i in range(n):
            with llmdeck.observe("step"):
                work(i)
        # Two spans per iteration. The CPU time of this thread is what the SDK costs the
        # caller; wall time also counts waiting for a core on a shared machine.
        cpu.append((time.thread_time() - start_cpu) / (2 * n))
        wall.append((time.perf_counter() - start_wall) / (2 * n))
    per_span_us = statistics.median(cpu) * 1e6
    print(
        f"\nSDK cost per span on the calling thread: {per_span_us:.1f} us CPU, "
        f"{statistics.median(wall) * 1e6:.1f} us wall"
    )
    assert per_span_us < 50
    assert len(tracer._exporter._queue) == 5 * 2 * n
