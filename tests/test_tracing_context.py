"""W3C traceparent: the gateway's spans join the caller's trace (official `openai` client)."""

from __future__ import annotations

import time

import openai
import pytest

from llmdeck.tracing.context import format_traceparent, parse_traceparent
from tests.conftest import LiveServer

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def test_traceparent_parsing() -> None:
    assert parse_traceparent(f"00-{TRACE}-{PARENT}-01") == (TRACE, PARENT)
    assert parse_traceparent(f"00-{TRACE.upper()}-{PARENT}-00") == (TRACE, PARENT)
    # A later version may carry more fields; version 00 may not; ff is forbidden.
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-01-extra") == (TRACE, PARENT)
    for bad in (
        None,
        "",
        "garbage",
        f"00-{TRACE}-{PARENT}-01-extra",
        f"ff-{TRACE}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE[:-1]}x-{PARENT}-01",
        f"00_{TRACE}_{PARENT}_01",
    ):
        assert parse_traceparent(bad) is None, bad
    assert format_traceparent(TRACE, PARENT) == f"00-{TRACE}-{PARENT}-01"


def _spans(server: LiveServer, trace_id: str, count: int) -> list[dict]:
    with server.client() as api:
        for _ in range(200):
            response = api.get(f"/api/traces/{trace_id}")
            if response.status_code == 200 and len(response.json()["spans"]) >= count:
                return response.json()["spans"]
            time.sleep(0.05)
    raise AssertionError(f"trace {trace_id} never held {count} spans")


@pytest.mark.slow
def test_gateway_spans_join_the_callers_trace(live_server: LiveServer) -> None:
    client = openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=live_server.master_key, max_retries=0
    )
    header = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
    chat = client.chat.completions.with_raw_response.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=2,
        extra_headers=header,
    )
    embed = client.embeddings.with_raw_response.create(
        model="minilm-l6", input=["a", "b"], extra_headers=header
    )
    assert chat.headers["x-llmdeck-trace-id"] == TRACE
    assert embed.headers["x-llmdeck-trace-id"] == TRACE
    spans = _spans(live_server, TRACE, 2)
    assert sorted(s["kind"] for s in spans) == ["embedding", "llm"]
    assert {s["parent_span_id"] for s in spans} == {PARENT}

    # A malformed header is ignored: the call starts its own trace, as without one.
    other = client.chat.completions.with_raw_response.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=2,
        extra_headers={"traceparent": "00-not-a-trace-01"},
    )
    fresh = other.headers["x-llmdeck-trace-id"]
    assert fresh != TRACE
    assert _spans(live_server, fresh, 1)[0]["parent_span_id"] is None
