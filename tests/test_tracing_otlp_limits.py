"""The OTLP receiver with hostile or broken values: non-finite, negative and oversized figures,
malformed values of every kind, runaway sizes, and GenAI events spelled as SDKs can send them.

One bad span must neither lose its batch nor break a project's dashboards."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from llmdeck.app import create_app
from llmdeck.catalog import service as catalog
from llmdeck.catalog.schemas import ModelCreate
from llmdeck.core.db import Database
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate
from llmdeck.tracing.limits import ATTRIBUTE_LIMIT, CONTENT_LIMIT
from tests.conftest import LiveServer
from tests.test_tracing_otlp import _kv, _otel_provider

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRICES = (0.15, 0.60)  # gpt-4o-mini, dollars per million input / output tokens


def _strict(text: str | bytes) -> Any:
    """JSON as a browser reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in a JSON answer")

    return json.loads(text, parse_constant=refuse)


def _priced(input_tokens: int = 0, output_tokens: int = 0) -> float:
    return (input_tokens * PRICES[0] + output_tokens * PRICES[1]) / 1e6


@pytest.fixture
def api(db: Database, settings: Settings) -> Iterator[TestClient]:
    with db.session() as session:
        project = identity.ensure_project(session, name="limits")
        _, secret = identity.create_key(
            session, project=project, data=ApiKeyCreate(name="k", role="builder")
        )
        catalog.create(
            session,
            settings=settings,
            data=ModelCreate(
                alias="fast",
                upstream_name="gpt-4o-mini",
                base_url="http://127.0.0.1:9/v1",
                input_price_per_mtok=PRICES[0],
                output_price_per_mtok=PRICES[1],
            ),
        )
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {secret}"
        yield http


def _json_span(span_id: str, attrs: dict[str, dict], **fields: Any) -> dict[str, Any]:
    now = time.time_ns()
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "chat gpt-4o-mini",
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 50_000_000),
        "attributes": [{"key": key, "value": value} for key, value in attrs.items()],
        **fields,
    }


def _post_json(http: TestClient, *spans: dict[str, Any], gzipped: bool = False):
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return http.post("/v1/traces", content=body, headers=headers)


def _post_protobuf(http: TestClient, *spans: Span):
    batch = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])]
    )
    return http.post(
        "/v1/traces",
        content=batch.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )


def _pb_span(span_id: str, attrs: list[KeyValue], **fields: Any) -> Span:
    now = time.time_ns()
    return Span(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex(span_id),
        name="chat",
        start_time_unix_nano=now,
        end_time_unix_nano=now + 50_000_000,
        attributes=attrs,
        **fields,
    )


def _spans(http: TestClient, trace: str = TRACE) -> dict[str, dict[str, Any]]:
    response = http.get(f"/api/traces/{trace}")
    assert response.status_code == 200, response.text
    return {s["span_id"]: s for s in _strict(response.content)["spans"]}


def _summary(http: TestClient) -> dict[str, Any]:
    response = http.get("/api/monitoring/summary", params={"window": "1h"})
    assert response.status_code == 200, response.text
    return _strict(response.content)


MODEL = {"gen_ai.request.model": {"stringValue": "gpt-4o-mini"}}


def test_non_finite_costs_and_durations_are_ignored_noted_and_priced(api: TestClient) -> None:
    inf = float("inf")
    response = _post_json(
        api,
        # The QA report: Infinity as text, with tokens to price instead.
        _json_span(
            "00000000000000a1",
            {
                **MODEL,
                "gen_ai.usage.cost": {"stringValue": "Infinity"},
                "gen_ai.usage.input_tokens": {"intValue": "1000"},
            },
        ),
        # A doubleValue of Infinity as protobuf-JSON spells it, and as a JSON literal
        # (Python's json.dumps writes one); no tokens, so nothing to price.
        _json_span("00000000000000a2", {**MODEL, "gen_ai.usage.cost": {"doubleValue": "Infinity"}}),
        _json_span("00000000000000a3", {**MODEL, "llmdeck.cost": {"doubleValue": inf}}),
        _json_span(
            "00000000000000a4",
            {
                **MODEL,
                "gen_ai.usage.cost": {"doubleValue": "NaN"},
                "llmdeck.ttft_ms": {"doubleValue": "-Infinity"},
                "gen_ai.usage.input_tokens": {"doubleValue": "NaN"},
                "gen_ai.usage.output_tokens": {"intValue": "500"},
            },
        ),
        # 1e999 is finite text that reads as infinity.
        _json_span("00000000000000a5", {**MODEL, "gen_ai.usage.cost": {"stringValue": "1e999"}}),
    )
    assert response.status_code == 200, response.text
    spans = _spans(api)
    assert len(spans) == 5

    first = spans["00000000000000a1"]
    assert first["cost"] == pytest.approx(_priced(1000))
    assert first["attributes"]["llmdeck.cost_source"] == "catalog"
    assert first["attributes"]["llmdeck.ignored"] == {
        "gen_ai.usage.cost": "'Infinity' is not a finite number"
    }
    assert first["attributes"]["gen_ai.usage.cost"] == "Infinity"  # what was sent, as text
    for span_id in ("00000000000000a2", "00000000000000a3", "00000000000000a5"):
        span = spans[span_id]
        assert span["cost"] is None, span_id
        (reason,) = span["attributes"]["llmdeck.ignored"].values()
        assert "is not a finite number" in reason, span_id
    assert spans["00000000000000a3"]["attributes"]["llmdeck.cost"] == "Infinity"
    fourth = spans["00000000000000a4"]
    assert fourth["ttft_ms"] is None and fourth["input_tokens"] is None
    assert fourth["output_tokens"] == 500
    assert fourth["cost"] == pytest.approx(_priced(0, 500))
    assert set(fourth["attributes"]["llmdeck.ignored"]) == {
        "gen_ai.usage.cost",
        "llmdeck.ttft_ms",
        "gen_ai.usage.input_tokens",
    }

    summary = _summary(api)
    assert summary["cost"] == pytest.approx(_priced(1000) + _priced(0, 500))
    assert summary["ttft_p50"] is None
    # The CLI and the console read the same figures: every series is valid JSON too.
    for path in ("/api/monitoring/timeseries", "/api/monitoring/top"):
        answer = api.get(path, params={"window": "1h"})
        if answer.status_code != 404:
            assert answer.status_code in (200, 400), answer.text
            _strict(answer.content)


def test_non_finite_doubles_over_protobuf(api: TestClient) -> None:
    response = _post_protobuf(
        api,
        _pb_span(
            "00000000000000b1",
            [
                _kv("gen_ai.request.model", "gpt-4o-mini"),
                _kv("gen_ai.usage.cost", float("inf")),
                _kv("gen_ai.server.time_to_first_token", float("nan")),
                _kv("gen_ai.usage.input_tokens", 2000),
                _kv("custom.ratio", float("-inf")),
            ],
        ),
    )
    assert response.status_code == 200, response.text
    (span,) = _spans(api).values()
    assert span["cost"] == pytest.approx(_priced(2000)) and span["ttft_ms"] is None
    assert set(span["attributes"]["llmdeck.ignored"]) == {
        "gen_ai.usage.cost",
        "gen_ai.server.time_to_first_token",
    }
    assert span["attributes"]["custom.ratio"] == "-Infinity"
    assert _summary(api)["cost"] == pytest.approx(_priced(2000))


def test_out_of_range_negative_and_non_numeric_figures(api: TestClient) -> None:
    now = time.time_ns()
    response = _post_json(
        api,
        # The QA report: a 500 that lost the batch (OverflowError in SQLite's INTEGER).
        _json_span(
            "00000000000000c1",
            {**MODEL, "gen_ai.usage.input_tokens": {"intValue": "99999999999999999999"}},
        ),
        # Fits int64 (SQLite) but not PostgreSQL's 32-bit INTEGER.
        _json_span(
            "00000000000000c2", {**MODEL, "gen_ai.usage.output_tokens": {"intValue": "3000000000"}}
        ),
        # Negative counts made negative costs; a count that is text says so now.
        _json_span(
            "00000000000000c3",
            {
                **MODEL,
                "gen_ai.usage.input_tokens": {"intValue": "-100"},
                "gen_ai.usage.output_tokens": {"stringValue": "abc"},
            },
        ),
        _json_span(
            "00000000000000c4",
            {
                **MODEL,
                "gen_ai.usage.cost": {"doubleValue": -0.5},
                "gen_ai.usage.input_tokens": {"doubleValue": 12.5},
                "gen_ai.usage.output_tokens": {"stringValue": "40"},  # a number as text is fine
            },
        ),
        _json_span(
            "00000000000000c5",
            {
                **MODEL,
                # The first valid cost key wins, the bad one is noted.
                "llmdeck.cost": {"stringValue": "NaN"},
                "gen_ai.usage.cost": {"doubleValue": 0.25},
                "llm.cost.total": {"doubleValue": 5e6},  # no call costs millions
                "llmdeck.ttft_ms": {"intValue": "-5"},
                "gen_ai.server.time_to_first_token": {"doubleValue": 0.0},
                "gen_ai.usage.input_tokens": {"doubleValue": 12.0},
                "gen_ai.usage.output_tokens": {"boolValue": True},
            },
        ),
        # A clock that went back: no latency rather than a negative or made-up one.
        _json_span(
            "00000000000000c6",
            {**MODEL},
            startTimeUnixNano=str(now),
            endTimeUnixNano=str(now - 5_000_000),
        ),
        _json_span(
            "00000000000000c7",
            {
                **MODEL,
                "gen_ai.usage.input_tokens": {"intValue": "100"},
                "gen_ai.usage.output_tokens": {"intValue": "10"},
            },
        ),
    )
    assert response.status_code == 200, response.text
    spans = _spans(api)
    assert len(spans) == 7

    def ignored(span_id: str) -> dict[str, str]:
        return spans[span_id]["attributes"]["llmdeck.ignored"]

    assert spans["00000000000000c1"]["input_tokens"] is None
    assert ignored("00000000000000c1") == {
        "gen_ai.usage.input_tokens": "99999999999999999999 is more than 2147483647"
    }
    assert spans["00000000000000c2"]["output_tokens"] is None
    assert ignored("00000000000000c2") == {
        "gen_ai.usage.output_tokens": "3000000000 is more than 2147483647"
    }
    third = spans["00000000000000c3"]
    assert (third["input_tokens"], third["output_tokens"], third["cost"]) == (None, None, None)
    assert ignored("00000000000000c3") == {
        "gen_ai.usage.input_tokens": "-100 is negative",
        "gen_ai.usage.output_tokens": "'abc' is not a number",
    }
    fourth = spans["00000000000000c4"]
    assert (fourth["input_tokens"], fourth["output_tokens"]) == (None, 40)
    assert fourth["cost"] == pytest.approx(_priced(0, 40))  # priced, as when none is sent
    assert ignored("00000000000000c4") == {
        "gen_ai.usage.cost": "-0.5 is negative",
        "gen_ai.usage.input_tokens": "12.5 is not a whole number",
    }
    fifth = spans["00000000000000c5"]
    assert fifth["cost"] == 0.25 and fifth["ttft_ms"] == 0.0
    assert (fifth["input_tokens"], fifth["output_tokens"]) == (12, None)
    assert ignored("00000000000000c5") == {
        "llmdeck.cost": "'NaN' is not a finite number",
        "llm.cost.total": "5000000.0 is more than 1e+06",
        "llmdeck.ttft_ms": "-5 is negative",
        "gen_ai.usage.output_tokens": "True is not a number",
    }
    sixth = spans["00000000000000c6"]
    assert sixth["latency_ms"] is None and sixth["ended_at"] is None
    assert "endTimeUnixNano" in ignored("00000000000000c6")
    good = spans["00000000000000c7"]
    assert (good["input_tokens"], good["output_tokens"]) == (100, 10)
    assert "llmdeck.ignored" not in good["attributes"]

    summary = _summary(api)
    assert summary["input_tokens"] == 12 + 100 and summary["output_tokens"] == 40 + 10
    assert summary["cost"] == pytest.approx(_priced(0, 40) + 0.25 + _priced(100, 10))
    assert summary["latency_p50"] >= 0


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "bottom"}
    for _ in range(depth):
        value = {"arrayValue": {"values": [value]}}
    return value


# Values no sane sender makes, each of which once failed the batch or a later read (on
# SQLite, PostgreSQL or both), with what the stored span shows instead.
MALFORMED: dict[str, dict[str, Any]] = {
    "NUL in text columns": {
        "attrs": {
            "output.value": {"stringValue": "a\x00b"},
            "gen_ai.request.model": {"stringValue": "m\x00"},
            "session.id": {"stringValue": "s\x00"},
            "note": {"stringValue": "n\x00"},
        },
        "fields": {"name": "na\x00me", "status": {"code": 2, "message": "bad\x00"}},
        "expect": {"output": "a\ufffdb", "model": "m\ufffd", "name": "na\ufffdme"},
        "expect_attributes": {"note": "n\ufffd"},
    },
    "lone surrogates": {
        "attrs": {
            "x": {"stringValue": "\ud800"},
            "\udfff": {"stringValue": "key"},
            "output.value": {"stringValue": "out\udc00"},
        },
        "fields": {"name": "\ud83d"},
        "expect": {"output": "out?", "name": "?"},
        "expect_attributes": {"x": "?", "?": "key"},
    },
    "NaN and 1e999 inside JSON text": {
        "attrs": {
            "gen_ai.input.messages": {"stringValue": '[{"role": "user", "content": NaN}]'},
            "gen_ai.output.messages": {"stringValue": '[{"content": 1e999}]'},
        },
        "expect": {  # kept as the text that was sent
            "input": '[{"role": "user", "content": NaN}]',
            "output": '[{"content": 1e999}]',
        },
    },
    "non-integer intValues": {
        "attrs": {
            "a": {"intValue": 1e400},
            "b": {"intValue": "abc"},
            "c": {"intValue": 2.5},
            "d": {"doubleValue": "x"},
            "e": {"intValue": "9" * 5000},
        },
        "expect_attributes": {"a": "Infinity", "b": "abc", "c": 2.5, "d": "x"},
    },
    "objects where scalars belong": {
        "attrs": {
            "a": {"stringValue": {"n": float("nan"), "s": "\ud800"}},
            "gen_ai.request.model": {"arrayValue": {"values": [{"stringValue": "m"}]}},
            "gen_ai.usage.input_tokens": {"kvlistValue": {"values": []}},
            "gen_ai.usage.output_tokens": {"intValue": "5"},
            "b": {"boolValue": "yes"},
            "c": "not an AnyValue",
        },
        "fields": {"name": {"not": "text"}},
        "expect": {"model": "['m']", "input_tokens": None, "output_tokens": 5},
        "expect_attributes": {"a": '{"n": NaN, "s": "\\ud800"}', "c": None},
    },
    "a deep array": {"attrs": {"deep": _nested(150)}},
    "an attribute name of 100k characters": {
        "attrs": {"k" * 100_000: {"stringValue": "v"}},
        "ignored_suffix": "… [truncated by llmdeck from 100,000 characters]",
    },
    "a huge status message": {
        "attrs": {},
        "fields": {"status": {"code": 2, "message": "e" * 10**6}},
        "expect": {
            "error": "e" * ATTRIBUTE_LIMIT + "… [truncated by llmdeck from 1,000,000 characters]"
        },
    },
}


@pytest.mark.parametrize("case", MALFORMED)
def test_no_malformed_value_fails_the_batch(api: TestClient, case: str) -> None:
    spec = MALFORMED[case]
    response = _post_json(
        api,
        _json_span("00000000000000d1", spec["attrs"], **spec.get("fields", {})),
        _json_span("00000000000000d2", {"gen_ai.usage.input_tokens": {"intValue": "7"}}),
    )
    assert response.status_code == 200, response.text
    spans = _spans(api)
    assert spans["00000000000000d2"]["input_tokens"] == 7  # the batch's other span is there
    span = spans["00000000000000d1"]
    for name, value in spec.get("expect", {}).items():
        assert span[name] == value, name
    for name, value in spec.get("expect_attributes", {}).items():
        assert span["attributes"][name] == value, name
    if "ignored_suffix" in spec:
        (name,) = span["attributes"]["llmdeck.ignored"]
        assert name.endswith(spec["ignored_suffix"])
    _summary(api)  # the project's figures still read


def test_malformed_structure_is_a_400_not_a_500(api: TestClient) -> None:
    cases = {
        "startTimeUnixNano": _json_span("00000000000000e1", {}, startTimeUnixNano="9" * 30),
        "endTimeUnixNano": _json_span("00000000000000e2", {}, endTimeUnixNano="-1"),
    }
    for param, span in cases.items():
        response = _post_json(api, span)
        assert response.status_code == 400, (param, response.text)
        assert response.json()["error"]["param"] == param
    # Nesting deeper than Python's stack (json.dumps cannot even write it).
    deep = '{"arrayValue":{"values":[' * 5000 + '{"stringValue":"x"}' + "]}}" * 5000
    span = json.dumps(_json_span("00000000000000e3", {"deep": {}})).replace("{}", deep)
    document = '{"resourceSpans":[{"scopeSpans":[{"spans":[' + span + "]}]}]}"
    response = api.post(
        "/v1/traces", content=document, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "body"
    # Protobuf ids of the wrong size would not fit the id columns.
    span = _pb_span("00000000000000e4", [])
    span.trace_id = bytes(20)
    response = _post_protobuf(api, span)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "trace_id" and "20 bytes" in error["message"]


def test_long_values_are_capped_with_a_marker(api: TestClient) -> None:
    big = "x" * (20 * 1024 * 1024)
    prompt = "p" * (900 * 1024)  # a long prompt is kept whole
    response = _post_json(
        api,
        _json_span(
            "00000000000000f1",
            {
                "big": {"stringValue": big},
                "input.value": {"stringValue": prompt},
                "output.value": {"stringValue": "o" * (2 * CONTENT_LIMIT)},
                "gen_ai.system_instructions": {"stringValue": "s" * (100 * 1024)},
                "listed": {"arrayValue": {"values": [{"stringValue": big[: 2 * ATTRIBUTE_LIMIT]}]}},
            },
        ),
        gzipped=True,
    )
    assert response.status_code == 200, response.text
    raw = api.get(f"/api/traces/{TRACE}")
    assert len(raw.content) < 4 * CONTENT_LIMIT  # was 20.9 MB
    (span,) = _spans(api).values()
    attributes = span["attributes"]
    assert attributes["big"] == (
        "x" * ATTRIBUTE_LIMIT + "… [truncated by llmdeck from 20,971,520 characters]"
    )
    assert attributes["listed"] == [
        "x" * ATTRIBUTE_LIMIT + f"… [truncated by llmdeck from {2 * ATTRIBUTE_LIMIT:,} characters]"
    ]
    assert attributes["gen_ai.system_instructions"] == "s" * (100 * 1024)  # prompt-sized
    assert span["input"] == prompt
    assert span["output"] == (
        "o" * CONTENT_LIMIT + f"… [truncated by llmdeck from {2 * CONTENT_LIMIT:,} characters]"
    )


def test_long_values_over_protobuf_and_a_long_assembled_input(api: TestClient) -> None:
    attrs = [_kv("big", "y" * (2 * 1024 * 1024))]
    # 6 indexed messages of 1 MiB each: each is kept whole, the whole input is too much.
    for i in range(6):
        attrs += [
            _kv(f"gen_ai.prompt.{i}.role", "user"),
            _kv(f"gen_ai.prompt.{i}.content", "m" * CONTENT_LIMIT),
        ]
    attrs.append(KeyValue(key="blob", value=AnyValue(bytes_value=bytes(2 * ATTRIBUTE_LIMIT))))
    response = _post_protobuf(api, _pb_span("00000000000000f2", attrs))
    assert response.status_code == 200, response.text
    (span,) = _spans(api).values()
    assert span["attributes"]["big"].endswith("… [truncated by llmdeck from 2,097,152 characters]")
    assert len(span["attributes"]["big"]) < ATTRIBUTE_LIMIT + 100
    assert span["attributes"]["blob"].startswith("AAAA")
    assert "truncated by llmdeck" in span["attributes"]["blob"]
    assert isinstance(span["input"], str)  # stored as its JSON text, cut
    assert span["input"].startswith('[{"role": "user", "content": "mmm')
    assert span["input"].endswith(" characters]")
    assert len(span["input"]) < 4 * CONTENT_LIMIT + 100


def _event_span(span_id: str, events: list[tuple[str, dict[str, dict]]]) -> dict[str, Any]:
    span = _json_span(span_id, {**MODEL})
    span["events"] = [
        {
            "name": name,
            "timeUnixNano": span["startTimeUnixNano"],
            "attributes": [{"key": k, "value": v} for k, v in attrs.items()],
        }
        for name, attrs in events
    ]
    return span


def test_genai_events_in_every_spelling_give_input_and_output(api: TestClient) -> None:
    text = lambda value: {"stringValue": value}  # noqa: E731
    kvlist = lambda **kw: {  # noqa: E731
        "kvlistValue": {"values": [{"key": k, "value": v} for k, v in kw.items()]}
    }
    shapes = {
        # The Python SDK: event attributes cannot be maps, so the message is JSON text.
        "00000000000000a1": [
            ("gen_ai.user.message", {"body": text(json.dumps({"content": "2+2?"}))}),
            ("gen_ai.choice", {"message": text(json.dumps({"role": "assistant", "content": "4"}))}),
        ],
        # The whole choice body as JSON text, message inside.
        "00000000000000a2": [
            ("gen_ai.user.message", {"content": text("hi")}),
            (
                "gen_ai.choice",
                {"body": text(json.dumps({"index": 0, "message": {"content": "hello"}}))},
            ),
        ],
        # Flattened keys, and a map (OTLP can carry one).
        "00000000000000a3": [
            ("gen_ai.system.message", {"message.content": text("be brief")}),
            ("gen_ai.choice", {"message.content": text("ok"), "index": {"intValue": "0"}}),
        ],
        "00000000000000a4": [
            ("gen_ai.user.message", {"content": text("x")}),
            ("gen_ai.choice", {"message": kvlist(content=text("y"))}),
        ],
        # The message's fields themselves; a plain string message.
        "00000000000000a5": [("gen_ai.choice", {"content": text("plain")})],
        "00000000000000a6": [("gen_ai.choice", {"message": text("just text")})],
        # A tool call instead of text, and the tool's answer in the next prompt.
        "00000000000000a7": [
            ("gen_ai.assistant.message", {"tool_calls": text('[{"id": "c1"}]')}),
            ("gen_ai.tool.message", {"content": text("sunny"), "id": text("c1")}),
            (
                "gen_ai.choice",
                {"message": text(json.dumps({"tool_calls": [{"id": "c2", "type": "function"}]}))},
            ),
        ],
    }
    response = _post_json(api, *(_event_span(i, events) for i, events in shapes.items()))
    assert response.status_code == 200, response.text
    spans = _spans(api)
    outputs = {span_id: span["output"] for span_id, span in spans.items()}
    assert outputs == {
        "00000000000000a1": "4",
        "00000000000000a2": "hello",
        "00000000000000a3": "ok",
        "00000000000000a4": "y",
        "00000000000000a5": "plain",
        "00000000000000a6": "just text",
        "00000000000000a7": '{"tool_calls": [{"id": "c2", "type": "function"}]}',
    }
    assert spans["00000000000000a1"]["input"] == {"role": "user", "content": "2+2?"}
    assert spans["00000000000000a3"]["input"] == {"role": "system", "content": "be brief"}
    assert spans["00000000000000a7"]["input"] == [
        {"role": "assistant", "content": None, "tool_calls": '[{"id": "c1"}]'},
        {"role": "tool", "content": "sunny", "id": "c1"},
    ]


def test_output_messages_in_parts_read_as_their_text(api: TestClient) -> None:
    """gen_ai.output.messages of the current conventions: a message's text is in its parts."""
    messages = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello, "}, {"type": "text", "content": "you"}],
            "finish_reason": "stop",
        }
    ]
    response = _post_json(
        api,
        _json_span(
            "00000000000000b1", {"gen_ai.output.messages": {"stringValue": json.dumps(messages)}}
        ),
    )
    assert response.status_code == 200, response.text
    (span,) = _spans(api).values()
    assert span["output"] == "Hello, you"


@pytest.mark.slow
def test_official_otel_sdk_choice_events_and_bad_figures(live_server: LiveServer) -> None:
    """What the OpenTelemetry Python SDK sends: JSON-string event messages, inf, -1, 2 MB."""
    provider = _otel_provider(f"{live_server.url}/v1/traces", live_server.master_key)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        span.set_attribute("gen_ai.usage.cost", float("inf"))
        span.set_attribute("gen_ai.usage.input_tokens", -100)
        span.set_attribute("gen_ai.usage.output_tokens", 3)
        span.set_attribute("big", "z" * (2 * 1024 * 1024))
        span.add_event("gen_ai.user.message", {"content": "What is 2+2?"})
        span.add_event("gen_ai.choice", {"message": json.dumps({"content": "4"}), "index": 0})
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()  # SimpleSpanProcessor: exported (and acknowledged) by now
    with live_server.client() as http:
        (stored,) = _strict(http.get(f"/api/traces/{trace_id}").content)["spans"]
        summary = http.get("/api/monitoring/summary", params={"window": "1h"})
    assert stored["output"] == "4"
    assert stored["input"] == {"role": "user", "content": "What is 2+2?"}
    assert (stored["input_tokens"], stored["output_tokens"]) == (None, 3)
    assert stored["cost"] is None  # no catalog price for it on this server
    assert stored["attributes"]["llmdeck.ignored"] == {
        "gen_ai.usage.cost": "'Infinity' is not a finite number",
        "gen_ai.usage.input_tokens": "-100 is negative",
    }
    assert stored["attributes"]["big"].endswith(
        "… [truncated by llmdeck from 2,097,152 characters]"
    )
    assert summary.status_code == 200
    cost = _strict(summary.content)["cost"]
    assert cost is not None and cost >= 0
