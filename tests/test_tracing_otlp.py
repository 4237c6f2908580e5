"""The OTLP receiver: protobuf and JSON, GenAI and OpenInference mapping, idempotence, push-back."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from llmdeck.app import create_app
from llmdeck.core.db import Database
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate
from tests.conftest import start_server, stop_server

TRACE = "0af7651916cd43dd8448eb211c80319c"


def _key(db: Database, project: str = "default", role: str = "builder") -> str:
    with db.session() as session:
        target = identity.ensure_project(session, name=project)
        _, secret = identity.create_key(
            session, project=target, data=ApiKeyCreate(name="t", role=role)
        )
    return secret


@pytest.fixture
def api(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {_key(db)}"
        yield http


def _kv(key: str, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _pb_span(span_id: str, parent: str | None, name: str, attrs: dict, start: int, **kw) -> Span:
    return Span(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 250_000_000,
        attributes=[_kv(k, v) for k, v in attrs.items()],
        **kw,
    )


def _protobuf_batch() -> bytes:
    now = time.time_ns()
    spans = [
        _pb_span("1111111111111111", None, "answer question", {"session.id": "s-1"}, now),
        _pb_span(
            "2222222222222222",
            "1111111111111111",
            "retrieve",
            {"openinference.span.kind": "RETRIEVER", "input.value": "what is rag?"},
            now + 1000,
        ),
        _pb_span(
            "3333333333333333",
            "1111111111111111",
            "chat gpt-4o-mini",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 5,
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "what is rag?",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "Retrieval-augmented generation.",
                "user.id": "alice",
                "tag.tags": '["beta", "rag"]',
            },
            now + 2000,
            status=Status(code=Status.STATUS_CODE_ERROR, message="upstream timeout"),
        ),
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [_kv("service.name", "shop-bot")]},
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def test_protobuf_genai_spans_form_a_tree(api: TestClient) -> None:
    body = _protobuf_batch()
    response = api.post(
        "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    # A retry of the same batch does not duplicate anything.
    assert (
        api.post(
            "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
        ).status_code
        == 200
    )

    trace = api.get(f"/api/traces/{TRACE}").json()
    spans = {s["span_id"]: s for s in trace["spans"]}
    assert len(trace["spans"]) == 3
    root, retrieve, llm = (
        spans["1111111111111111"],
        spans["2222222222222222"],
        spans["3333333333333333"],
    )
    assert root["parent_span_id"] is None and root["session_id"] == "s-1"
    assert root["attributes"]["service.name"] == "shop-bot"
    assert retrieve["parent_span_id"] == root["span_id"] and retrieve["kind"] == "retriever"
    assert retrieve["input"] == "what is rag?"
    assert (
        llm["kind"] == "llm" and llm["model"] == "gpt-4o-mini-2024" and llm["provider"] == "openai"
    )
    assert (llm["input_tokens"], llm["output_tokens"]) == (12, 5)
    assert llm["input"] == [{"role": "user", "content": "what is rag?"}]
    assert llm["output"] == "Retrieval-augmented generation."
    assert llm["status"] == "error" and llm["error"] == "upstream timeout"
    assert llm["user_id"] == "alice" and llm["tags"] == ["beta", "rag"]
    assert abs(llm["latency_ms"] - 250) < 1
    # The trace list shows the root.
    listed = api.get("/api/traces").json()["data"]
    assert [t["trace_id"] for t in listed] == [TRACE]


def test_json_openinference_spans(api: TestClient) -> None:
    now = time.time_ns()
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "oi-app"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "ChatCompletion",
                                "startTimeUnixNano": str(now),
                                "endTimeUnixNano": str(now + 40_000_000),
                                "attributes": [
                                    {
                                        "key": "openinference.span.kind",
                                        "value": {"stringValue": "LLM"},
                                    },
                                    {"key": "llm.model_name", "value": {"stringValue": "llama-3"}},
                                    {"key": "llm.token_count.prompt", "value": {"intValue": "7"}},
                                    {
                                        "key": "llm.token_count.completion",
                                        "value": {"intValue": "3"},
                                    },
                                    {
                                        "key": "llm.input_messages.0.message.role",
                                        "value": {"stringValue": "user"},
                                    },
                                    {
                                        "key": "llm.input_messages.0.message.content",
                                        "value": {"stringValue": "hi"},
                                    },
                                    {"key": "output.value", "value": {"stringValue": "hello!"}},
                                    {
                                        "key": "metadata",
                                        "value": {"stringValue": '{"tier": "gold"}'},
                                    },
                                    {
                                        "key": "tag.tags",
                                        "value": {
                                            "arrayValue": {"values": [{"stringValue": "prod"}]}
                                        },
                                    },
                                ],
                                "status": {"code": 1},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    response = api.post(
        "/v1/traces", content=json.dumps(document), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200 and response.json() == {}
    (span,) = api.get("/api/traces/5b8efff798038103d269b633813fc60c").json()["spans"]
    assert span["kind"] == "llm" and span["model"] == "llama-3"
    assert (span["input_tokens"], span["output_tokens"]) == (7, 3)
    assert span["input"] == [{"role": "user", "content": "hi"}] and span["output"] == "hello!"
    assert span["tags"] == ["prod"] and span["attributes"]["metadata"] == '{"tier": "gold"}'
    assert abs(span["latency_ms"] - 40) < 1


def test_receiver_rejects_bad_input_and_missing_keys(api: TestClient) -> None:
    bad = api.post(
        "/v1/traces", content=b"\xff\x00garbage", headers={"Content-Type": "application/x-protobuf"}
    )
    assert bad.status_code == 400
    assert (
        api.post(
            "/v1/traces", content=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    anonymous = api.post(
        "/v1/traces",
        content=_protobuf_batch(),
        headers={"Authorization": "", "Content-Type": "application/x-protobuf"},
    )
    assert anonymous.status_code == 401


def test_a_bad_id_is_named_with_its_own_field_and_size(api: TestClient) -> None:
    def post(**ids: str):
        span = {"traceId": TRACE, "spanId": "1111111111111111", "name": "s", **ids}
        document = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
        return api.post(
            "/v1/traces", content=json.dumps(document), headers={"Content-Type": "application/json"}
        )

    for field, size in (("traceId", 16), ("spanId", 8), ("parentSpanId", 8)):
        response = post(**{field: "zz"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["message"] == f"{field} 'zz' is neither hex nor base64 of {size} bytes."
        assert error["param"] == field


def test_compressed_batches_inflate_within_the_size_limit(api: TestClient) -> None:
    headers = {"Content-Type": "application/x-protobuf"}
    batch = _protobuf_batch()
    for encoding, packed in (("gzip", gzip.compress(batch)), ("deflate", zlib.compress(batch))):
        sent = api.post(
            "/v1/traces", content=packed, headers={**headers, "Content-Encoding": encoding}
        )
        assert sent.status_code == 200, (encoding, sent.text)
    # 64 MiB of zeros gzip to about 64 KiB: refused once inflating passes the limit, without
    # inflating the rest.
    bomb = gzip.compress(bytes(64 * 1024 * 1024))
    refused = api.post("/v1/traces", content=bomb, headers={**headers, "Content-Encoding": "gzip"})
    assert refused.status_code == 400
    assert "inflates to more than 32 MiB" in refused.json()["error"]["message"]
    cut = api.post(
        "/v1/traces",
        content=gzip.compress(batch)[:-12],
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert cut.status_code == 400 and "not valid gzip" in cut.json()["error"]["message"]


def test_the_body_limit_is_checked_before_reading_and_says_what_to_do(
    db: Database, settings: Settings
) -> None:
    secret = _key(db)
    small = settings.model_copy(update={"otlp_max_body_bytes": 1024 * 1024})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/x-protobuf"}
    with TestClient(create_app(small)) as http:

        def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
            for _ in range(4):
                yield bytes(512 * 1024)

        for content in (bytes(2 * 1024 * 1024), chunks()):
            response = http.post("/v1/traces", content=content, headers=headers)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "request_too_large" and error["param"] == "body"
            assert error["message"].startswith("The batch is more than 1 MiB")
            assert "LLMDECK_OTLP_MAX_BODY_BYTES" in error["message"]
            assert "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in error["message"]
        fine = http.post("/v1/traces", content=b"", headers=headers)
        assert fine.status_code == 200


def test_full_receiver_pushes_back_with_retry_after(api: TestClient) -> None:
    gate = api.app.state.otlp_gate if hasattr(api.app.state, "otlp_gate") else None
    from llmdeck.tracing.otlp_router import gate_of

    class _Req:
        app = api.app

    gate = gate or gate_of(_Req())  # type: ignore[arg-type]
    gate.wait = 0.05
    held = [gate.acquire() for _ in range(gate.capacity)]
    assert all(held)
    try:
        busy = api.post(
            "/v1/traces",
            content=_protobuf_batch(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert api.get(f"/api/traces/{TRACE}").status_code == 404  # refused, so not stored
    finally:
        for _ in held:
            gate.release()
    ok = api.post(
        "/v1/traces", content=_protobuf_batch(), headers={"Content-Type": "application/x-protobuf"}
    )
    assert ok.status_code == 200


def _otel_provider(endpoint: str, key: str):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "otel-app"}))
    exporter = OTLPSpanExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {key}"})
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.slow
def test_official_otel_sdk_and_kill_9(tmp_path: Path) -> None:
    """GenAI spans from the OpenTelemetry SDK exporter survive a kill -9 once acknowledged."""
    server = start_server(tmp_path / "home")
    try:
        provider = _otel_provider(f"{server.url}/v1/traces", server.master_key)
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("agent run") as root:
            root.set_attribute("session.id", "conv-9")
            with tracer.start_as_current_span("chat smollm2") as llm:
                llm.set_attribute("gen_ai.operation.name", "chat")
                llm.set_attribute("gen_ai.system", "openai")
                llm.set_attribute("gen_ai.request.model", "smollm2-135m")
                llm.set_attribute("gen_ai.usage.input_tokens", 21)
                llm.set_attribute("gen_ai.usage.output_tokens", 8)
                llm.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "Say hi"})
                llm.add_event("gen_ai.content.completion", {"gen_ai.completion": "Hi!"})
            trace_id = format(root.get_span_context().trace_id, "032x")
        # SimpleSpanProcessor exports synchronously: both spans are acknowledged now.
        provider.shutdown()
        server.process.kill()  # SIGKILL: no chance to flush anything
        server.process.wait(timeout=30)

        server = start_server(tmp_path / "home")
        with server.client() as http:
            trace = http.get(f"/api/traces/{trace_id}").json()
        spans = {s["name"]: s for s in trace["spans"]}
        assert set(spans) == {"agent run", "chat smollm2"}
        llm = spans["chat smollm2"]
        assert llm["parent_span_id"] == spans["agent run"]["span_id"]
        assert llm["model"] == "smollm2-135m" and llm["provider"] == "openai"
        assert (llm["input_tokens"], llm["output_tokens"]) == (21, 8)
        assert llm["input"] == "Say hi" and llm["output"] == "Hi!"
        assert spans["agent run"]["session_id"] == "conv-9"
        assert llm["attributes"]["service.name"] == "otel-app"
    finally:
        stop_server(server)
