"""OTLP spans with tokens and a model but no cost are priced from the catalog."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from llmdeck.app import create_app
from llmdeck.catalog import service as catalog
from llmdeck.catalog.schemas import ModelCreate, ModelUpdate
from llmdeck.core.db import Database
from llmdeck.core.settings import Settings
from llmdeck.identity import service as identity
from llmdeck.identity.schemas import ApiKeyCreate
from tests.test_tracing_otlp import _kv

TRACE = "5b8efff798038103d269b633813fc60c"


@pytest.fixture
def api(db: Database, settings: Settings) -> Iterator[tuple[TestClient, Database]]:
    with db.session() as session:
        project = identity.ensure_project(session, name="priced")
        other = identity.ensure_project(session, name="other")
        _, secret = identity.create_key(
            session, project=project, data=ApiKeyCreate(name="k", role="builder")
        )
        for alias, upstream, prices, owner in (
            ("fast", "gpt-4o-mini", (0.15, 0.60), None),  # shared: alias and upstream name
            ("house-llama", "llama-3.1-8b", (0.05, 0.10), None),
            ("own-llama", "llama-3.1-8b", (1.0, 2.0), project.name),  # the project's own
            ("their-model", "secret-model", (9.0, 9.0), other.name),  # another project's
        ):
            catalog.create(
                session,
                settings=settings,
                data=ModelCreate(
                    alias=alias,
                    upstream_name=upstream,
                    base_url="http://127.0.0.1:9/v1",
                    input_price_per_mtok=prices[0],
                    output_price_per_mtok=prices[1],
                    project=owner,
                ),
            )
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {secret}"
        yield http, db


def _send(http: TestClient, spans: dict[str, dict]) -> None:
    now = time.time_ns()
    batch = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                scope_spans=[
                    ScopeSpans(
                        spans=[
                            Span(
                                trace_id=bytes.fromhex(TRACE),
                                span_id=bytes.fromhex(span_id),
                                name=f"span {span_id}",
                                start_time_unix_nano=now,
                                end_time_unix_nano=now + 1000,
                                attributes=[_kv(k, v) for k, v in attrs.items()],
                            )
                            for span_id, attrs in spans.items()
                        ]
                    )
                ]
            )
        ]
    )
    response = http.post(
        "/v1/traces",
        content=batch.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200, response.text


def test_otlp_spans_get_a_cost_from_catalog_prices(api) -> None:
    http, _db = api
    tokens = {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 500}
    _send(
        http,
        {
            # By upstream name, with a dated response model the catalog does not know.
            "0000000000000001": {
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                **tokens,
            },
            "0000000000000002": {"llm.model_name": "fast", "llm.token_count.prompt": 2000},
            # The project's own model before the shared one with the same upstream name.
            "0000000000000003": {"gen_ai.request.model": "llama-3.1-8b", **tokens},
            # A cost sent by the app is kept.
            "0000000000000004": {"gen_ai.request.model": "fast", "llmdeck.cost": 7.5, **tokens},
            # Unknown here (another project's model, or none): no cost is made up.
            "0000000000000005": {"gen_ai.request.model": "secret-model", **tokens},
            "0000000000000006": {"gen_ai.request.model": "unheard-of", **tokens},
            # No tokens: nothing to price.
            "0000000000000007": {"gen_ai.request.model": "fast"},
            # The SDK's span of a call through this gateway: the gateway's span has the cost.
            "0000000000000008": {"gen_ai.request.model": "fast", "llmdeck.gateway": True, **tokens},
        },
    )
    spans = {s["span_id"][-1]: s for s in http.get(f"/api/traces/{TRACE}").json()["spans"]}
    assert spans["1"]["cost"] == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    assert spans["1"]["attributes"]["llmdeck.cost_source"] == "catalog"
    assert spans["2"]["cost"] == pytest.approx(2000 * 0.15 / 1e6)
    assert spans["3"]["cost"] == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert spans["4"]["cost"] == 7.5 and "llmdeck.cost_source" not in spans["4"]["attributes"]
    assert spans["5"]["cost"] is None and spans["6"]["cost"] is None
    assert spans["7"]["cost"] is None and spans["8"]["cost"] is None
    # The dashboard's cost includes the external app's calls.
    summary = http.get("/api/monitoring/summary", params={"window": "1h"})
    assert summary.status_code == 200, summary.text
    assert summary.json()["cost"] == pytest.approx(sum(s["cost"] or 0.0 for s in spans.values()))


def test_a_price_change_applies_to_the_next_batch(api, settings: Settings) -> None:
    http, db = api
    tokens = {"gen_ai.request.model": "fast", "gen_ai.usage.input_tokens": 1_000_000}
    _send(http, {"00000000000000a1": tokens})
    with db.session() as session:
        model = catalog.get_by_alias_or_raise(session, alias="fast")
        catalog.update(session, model=model, data=ModelUpdate(input_price_per_mtok=3.0))
    _send(http, {"00000000000000a2": tokens})
    spans = {s["span_id"]: s["cost"] for s in http.get(f"/api/traces/{TRACE}").json()["spans"]}
    assert spans == {"00000000000000a1": pytest.approx(0.15), "00000000000000a2": 3.0}
