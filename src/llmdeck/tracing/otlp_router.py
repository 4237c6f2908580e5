"""The OTLP/HTTP receiver: POST /v1/traces, in protobuf or JSON, authenticated by API key.

Exporters post a batch every few milliseconds, so the route does its work in one place: the
raw body is read on the event loop, and everything that costs CPU or touches the database
(the key check when it is not cached, decompressing, parsing, mapping, storing) runs in one
worker thread per batch, answered once the batch is committed.
"""

from __future__ import annotations

import math
import zlib

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from llmdeck.catalog.pricing import PriceBook, cost
from llmdeck.core.db import Database
from llmdeck.core.errors import InvalidRequest
from llmdeck.identity.deps import known_principal
from llmdeck.identity.roles import require
from llmdeck.identity.schemas import Principal
from llmdeck.tracing import genai, ingest, otlp_decode
from llmdeck.tracing.writer import SpanRecord

router = APIRouter(prefix="/v1", tags=["tracing"])
PROTOBUF = "application/x-protobuf"
# An empty ExportTraceServiceResponse (no partial_success) is zero bytes in protobuf.
_EMPTY_PROTOBUF_RESPONSE = b""


def gate_of(request: Request) -> ingest.IngestGate:
    """The app's ingestion gate, made on first use with the configured bounds."""
    gate = getattr(request.app.state, "otlp_gate", None)
    if gate is None:
        settings = request.app.state.runtime.settings
        gate = request.app.state.otlp_gate = ingest.IngestGate(
            settings.otlp_max_in_flight, settings.otlp_admission_wait
        )
    return gate


def _prices_of(request: Request) -> PriceBook:
    book = getattr(request.app.state, "otlp_prices", None)
    if book is None:
        runtime = request.app.state.runtime
        book = request.app.state.otlp_prices = PriceBook(
            runtime.db, runtime.settings.gateway_lookup_ttl
        )
    return book


def _too_large(what: str, limit: int) -> InvalidRequest:
    """The error for a batch over the receiver's size limit, saying what to change."""
    size = f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit:,} bytes"
    return InvalidRequest(
        f"The batch {what} more than {size}, the receiver's limit "
        "(LLMDECK_OTLP_MAX_BODY_BYTES); export smaller batches (with the OpenTelemetry SDK, "
        "a lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE).",
        param="body",
        code="request_too_large",
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as its declared or read size passes `limit` bytes
    (reading all of it first would let one request take any amount of memory)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large("is", limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large("is", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as sent, inflated to at most `limit` bytes (a small gzip can hold gigabytes)."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidRequest(f"Content-Encoding {encoding!r} is not supported; use gzip.")
    # wbits: 16 + MAX_WBITS reads a gzip header and trailer, MAX_WBITS a zlib stream.
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        data = inflate.decompress(body, limit)
        if inflate.unconsumed_tail:
            raise _too_large("inflates to", limit)
        if not inflate.eof:
            raise zlib.error("truncated")
    except zlib.error:
        raise InvalidRequest(f"The body is not valid {encoding}.", param="body") from None
    return data


def _busy(retry_after: int) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": "The trace receiver is busy; retry after the given seconds.",
                "type": "overloaded_error",
                "param": None,
                "code": "ingestion_busy",
            }
        },
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )


@router.post(
    "/traces",
    operation_id="export_traces",
    responses={
        200: {"content": {PROTOBUF: {}, "application/json": {}}},
        503: {"description": "Too many batches in flight; retry after Retry-After seconds."},
    },
)
async def export_traces(
    request: Request, principal: Principal = Depends(known_principal)
) -> Response:
    """Receive OpenTelemetry spans (OTLP/HTTP); answered once they are stored."""
    runtime = request.app.state.runtime
    settings = runtime.settings
    require(principal.role, "builder", "send traces")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json"
    if not is_json and content_type not in (PROTOBUF, "application/protobuf", ""):
        raise InvalidRequest(
            f"Content-Type {content_type!r} is not OTLP; send {PROTOBUF} or application/json."
        )
    encoding = request.headers.get("content-encoding", "").lower().strip()
    body = await _read_body(request, settings.otlp_max_body_bytes)
    gate = gate_of(request)
    if not gate.try_acquire() and not await run_in_threadpool(gate.acquire):
        return _busy(settings.otlp_retry_after)
    try:
        await run_in_threadpool(
            _store,
            runtime.db,
            body,
            encoding,
            is_json,
            principal,
            _prices_of(request),
            settings.otlp_max_body_bytes,
        )
    finally:
        gate.release()
    if is_json:
        return JSONResponse({})
    return Response(_EMPTY_PROTOBUF_RESPONSE, media_type=PROTOBUF)


def _store(
    db: Database,
    body: bytes,
    encoding: str,
    is_json: bool,
    principal: Principal,
    prices: PriceBook | None,
    limit: int,
) -> int:
    """Decompress, parse, map, price and store one batch; the number of spans received."""
    data = _decompress(body, encoding, limit)

    def build() -> list[SpanRecord]:
        raw = otlp_decode.parse_json(data) if is_json else otlp_decode.parse_protobuf(data)
        project_id, api_key_id = principal.project_id, principal.api_key_id
        to_record = genai.to_record
        records = [
            to_record(span, project_id=project_id, api_key_id=api_key_id)
            for span in raw
            if span.trace_id and span.span_id
        ]
        if prices is not None:
            _price(records, prices, project_id)
        return records

    return ingest.store_batch(db, build)


def _price(records: list[SpanRecord], prices: PriceBook, project_id: str) -> None:
    """A cost from the catalog's prices for model calls that came with tokens but no cost
    (or with one that `genai` did not take, such as Infinity)."""
    for record in records:
        if record.cost is not None or record.model is None:
            continue
        if record.attributes.get("llmdeck.gateway"):  # priced by the gateway's own span
            continue
        if record.input_tokens is None and record.output_tokens is None:
            continue
        requested = record.attributes.get("gen_ai.request.model")  # a name only if text
        found = prices.prices(
            project_id, record.model, requested if isinstance(requested, str) else None
        )
        if found is not None:
            priced = cost(found, record.input_tokens, record.output_tokens)
            if math.isfinite(priced):  # a catalog price of 1e308 is no reason to break totals
                record.cost = priced
                record.attributes["llmdeck.cost_source"] = "catalog"
